"""Issue 9: start-up recovery checks only what a crash can have touched (rows marked deleting,
each camera's newest row and the files after it); every older row and file is checked in the
background while the recorder runs, with progress for `nvr status`."""

from __future__ import annotations

import os
from pathlib import Path

from nvr.storage.recovery import BackgroundCheck, reconcile_startup
from nvr.timeutil import segment_name
from tests.retention.env import T0, Clock, open_env, tiny_fmp4

MIN = 60_000_000


async def test_startup_checks_the_newest_and_the_background_the_rest(tmp_path: Path) -> None:
    root = tmp_path / "nvr"
    env = await open_env(root, root / "index.db", ("a",), Clock(T0))
    try:
        paths = [await env.add_segment("a", T0 + i * 2 * MIN, tiny_fmp4(i)) for i in range(5)]
        folder = root / "segments" / "a"
        os.unlink(paths[1])  # a row whose file is gone, in the middle
        middle = folder / segment_name(T0 + 5 * MIN)  # a file without a row, in the middle
        middle.write_bytes(tiny_fmp4(7))
        crashed = folder / segment_name(T0 + 9 * MIN)  # the segment open at the crash
        crashed.write_bytes(tiny_fmp4(8))

        report, boundary = await reconcile_startup(env.index, root, ["a"])
        assert [r["path"] for r in report.recovered] == [str(crashed)]
        assert report.missing == []  # not looked at before the socket opens
        assert await env.index.segment_by_path(paths[1]) is not None

        # The live recorder's next file, written after start-up: never the background's.
        live = folder / segment_name(boundary["a"] + MIN)
        live.write_bytes(b"being written")

        check = BackgroundCheck(env.index, root, boundary, batch=2, pause_s=0)
        assert check.progress()["state"] == "pending"
        await check.run()
        progress = check.progress()
        assert progress["state"] == "done" and progress["missing"] == 1
        assert progress["recovered"] == 1 and progress["checked"] == progress["total"] == 6
        assert await env.index.segment_by_path(paths[1]) is None
        assert [g.reason for g in await env.index.gaps("a")] == ["missing"]
        assert (await env.index.segment_by_path(str(middle))) is not None
        assert live.read_bytes() == b"being written"
        assert await env.index.segment_by_path(str(live)) is None
    finally:
        await env.db.close()

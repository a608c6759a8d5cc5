"""Disk pressure on a real, small filesystem (an 8 MiB tmpfs): unheld footage goes oldest first,
held footage stays byte-for-byte, and recording pauses when only held footage is left."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from nvr.retention.disk import disk_state
from tests.retention.env import DAY, T0, Clock, Env, open_env, sha256

pytestmark = pytest.mark.root
SEG = 512 * 1024
MIB = 1024 * 1024


@pytest.fixture
def tmpfs(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (tests run as root here and in CI)")
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
                         capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


@pytest.fixture
async def env(tmpfs: Path, tmp_path: Path) -> AsyncIterator[Env]:
    # The index lives outside the tmpfs so that its WAL does not blur the byte counts.
    e = await open_env(tmpfs, tmp_path / "index.db", ("front", "lobby"), Clock(T0 + DAY),
                       min_free=22)
    yield e
    await e.db.close()


async def test_fill_the_disk(env: Env) -> None:
    assert disk_state(env.root).total_bytes == 8 * MIB
    paths = [await env.add_segment("front", T0 + i * 60_000_000, os.urandom(SEG))
             for i in range(13)]
    shas = {p: sha256(p) for p in paths}
    h1 = await env.holds.create(["front"], T0, T0 + 3 * 60_000_000, "vandalism", "INC-1", None,
                                "director", env.clock())
    ex = env.executor()

    # 6.5 MiB used, 1.5 MiB free < 22 %: the oldest unheld segment (#3) is enough.
    report = await ex.run_once()
    assert report.deleted == 1 and env.files_on_disk() == set(paths) - {paths[3]}
    assert disk_state(env.root).free_percent >= 22
    assert env.pauses == []

    # Only held footage left (a second hold reaching into the future), and the disk fills up.
    h2 = await env.holds.create(["front"], T0, T0 + 30 * DAY, "litigation", None, None,
                                "director", env.clock())
    paths += [await env.add_segment("front", T0 + i * 60_000_000, os.urandom(SEG))
              for i in range(13, 16)]
    shas.update({p: sha256(p) for p in paths[13:]})
    report = await ex.run_once()
    assert report.deleted == 0 and report.paused_cameras == {"front", "lobby"}
    assert len(env.pauses) == 1 and env.pauses[0][0] == {"front", "lobby"}
    alert = env.pauses[0][1]
    assert alert is not None and "min_free_percent 22%" in alert and h2.id in alert
    await ex.run_once()
    assert len(env.pauses) == 1, "the pause is reported once, not every pass"
    plan = await ex.plan_dict()
    assert plan["delete"] == [] and plan["alert"] == ex.alert
    assert {k["path"] for k in plan["keep"]} == env.files_on_disk()
    assert {k["why"].split()[2] for k in plan["keep"]} <= {h1.id, h2.id}
    for p in env.files_on_disk():
        assert sha256(p) == shas[p]

    # The litigation hold is released: space returns at the next pass, recording resumes.
    await env.holds.release(h2.id, "director", "settled", env.clock())
    report = await ex.run_once()
    assert report.deleted == 3  # #4, #5, #6: the oldest unheld, 1.5 MiB
    assert env.pauses[-1] == (set(), None)
    assert env.files_on_disk() == set(paths) - {paths[i] for i in (3, 4, 5, 6)}
    for i in range(3):  # still under h1, byte-for-byte
        assert sha256(paths[i]) == shas[paths[i]]
    assert (await env.audit.verify()).ok

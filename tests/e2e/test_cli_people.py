"""Acceptance of "the command line a librarian can read", against the real daemon recording the
real test camera: with TZ=America/New_York, `nvr status` and `nvr recordings` print local
times with the zone and fit 80 columns; --json prints UTC; --paths and --json give paths."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
from collections.abc import Iterator
from zoneinfo import ZoneInfo

import pytest

from tests.camserver import TestCamera
from tests.cli.test_people import on_terminal
from tests.e2e.harness import Recorder, cams_for
from tests.support import NVR, is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs the daemon as root: needs root")
NY = ZoneInfo("America/New_York")


@pytest.fixture(scope="module")
def rec(testcam: TestCamera) -> Iterator[Recorder]:
    r = Recorder(cams_for(testcam)[:1]).start()
    try:
        r.wait_for_segments("lobby", 2)
        yield r
    finally:
        r.cleanup()


def nvr(rec: Recorder, *argv: str) -> str:
    proc = subprocess.run([NVR, *argv, "--socket", str(rec.socket)], capture_output=True,
                          text=True, timeout=60, env={**os.environ, "TZ": "America/New_York"})
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def test_local_times_with_zone_json_utc_and_paths(rec: Recorder) -> None:
    data = json.loads(nvr(rec, "recordings", "--camera", "lobby", "--json"))
    first = data["segments"][0]
    assert first["start"].endswith("Z") and "." in first["start"]  # UTC, full precision
    assert os.path.isabs(first["path"])
    start = dt.datetime.fromisoformat(first["start"].replace("Z", "+00:00")).astimezone(NY)
    shown = start.strftime("%Y-%m-%d %H:%M:%S ") + str(start.tzname())
    table = nvr(rec, "recordings", "--camera", "lobby")
    assert table.splitlines()[1].split("\t")[0] == shown
    assert first["path"] not in table
    assert first["path"] in nvr(rec, "recordings", "--camera", "lobby", "--paths")
    status = nvr(rec, "status")
    assert status.splitlines()[1].startswith("lobby\t")
    assert " GB free of " in status or " MB free of " in status
    assert start.tzname() in status  # the last segment's end, in the zone


@pytest.mark.parametrize("argv", [("status",), ("recordings", "--camera", "lobby"),
                                  ("recordings", "--camera", "lobby", "--paths"),
                                  ("retention", "plan", "--paths")])  # fmt: skip
def test_tables_fit_80_columns(rec: Recorder, argv: tuple[str, ...]) -> None:
    lines = on_terminal(rec.socket, *argv)
    assert [line for line in lines if len(line) > 80] == []

"""Small helpers for camera-map tests: write a map, find the line a person would edit."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from nvr.config.check import main

REPO = Path(__file__).resolve().parents[2]

# A valid map the tests break one piece at a time.
GOOD = """\
site: Test branch
storage:
  root: data
people:
  - {user: alice, role: director}
  - {user: bob, role: staff}
cameras:
  - id: front
    name: Front
    area: entrance
    rtsp: rtsp://127.0.0.1:8554/h264
"""


def write(tmp_path: Path, text: str, name: str = "nvr.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def line_of(path: Path, needle: str, nth: int = 1) -> int:
    """1-based line of the nth line containing `needle`."""
    hits = [i for i, line in enumerate(path.read_text().splitlines(), 1) if needle in line]
    return hits[nth - 1]


def check(path: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, list[str], str]:
    """(exit code, stderr lines, stdout) of `nvr check-config PATH`."""
    rc = main(str(path))
    out, err = capsys.readouterr()
    return rc, err.splitlines(), out

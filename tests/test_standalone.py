"""The repository stands alone: no file points at design notes outside it."""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
OUTSIDE = ("../" + "shared", "/work/" + "shared")  # spelled in two parts so this file passes


def test_no_file_names_the_shared_design_folder() -> None:
    try:
        files = subprocess.run(["git", "ls-files"], cwd=REPO, check=True, capture_output=True,
                               text=True).stdout.split()
    except (OSError, subprocess.CalledProcessError):
        pytest.skip("not a git checkout")
    hits = []
    for name in files:
        path = REPO / name
        if not path.is_file():
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        hits += [f"{name}: {needle}" for needle in OUTSIDE if needle in text]
    assert hits == []

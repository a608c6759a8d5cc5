"""`nvr check-config FILE`: validate a camera map without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

from nvr.config.loader import ConfigError, ConfigProblem, load_camera_map
from nvr.errors import EX_DATAERR, EX_OK


def main(path: str) -> int:
    """Print `FILE: ok (N cameras, M people)` and return 0, or print every problem as
    `FILE:LINE: key.path: message` on stderr and return 65. Warnings (`FILE:LINE: key.path:
    warning: …`) go to stderr with exit 0. Never exits the process."""
    warnings: list[ConfigProblem] = []
    try:
        cmap = load_camera_map(Path(path), warnings=warnings)
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"{problem}\n")
        return EX_DATAERR
    for warning in warnings:  # allowed, but probably not meant: exit 0 all the same
        sys.stderr.write(f"{warning}\n")
    cams, people = len(cmap.cameras), len(cmap.people)
    sys.stdout.write(f"{path}: ok ({cams} camera{'' if cams == 1 else 's'}, "
                     f"{people} {'person' if people == 1 else 'people'})\n")
    return EX_OK

"""`nvr check-config FILE`: validate a camera map without starting anything."""

from __future__ import annotations

import sys
from pathlib import Path

from nvr.config.loader import ConfigError, load_camera_map
from nvr.errors import EX_DATAERR, EX_OK


def main(path: str) -> int:
    """Print `FILE: ok (N cameras, M people)` and return 0, or print every problem as
    `FILE:LINE: key.path: message` on stderr and return 65. Never exits the process."""
    try:
        cmap = load_camera_map(Path(path))
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"{problem}\n")
        return EX_DATAERR
    cams, people = len(cmap.cameras), len(cmap.people)
    sys.stdout.write(f"{path}: ok ({cams} camera{'' if cams == 1 else 's'}, "
                     f"{people} {'person' if people == 1 else 'people'})\n")
    return EX_OK

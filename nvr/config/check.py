"""`nvr check-config FILE`: validate a camera map without starting anything."""

from __future__ import annotations

import pwd
import sys
from pathlib import Path
from typing import Any

from nvr.config.loader import ConfigError, ConfigProblem, load_camera_map
from nvr.config.model import CameraMap
from nvr.errors import EX_DATAERR, EX_OK


def main(path: str) -> int:
    """Print `FILE: ok (N cameras, M people)` and return 0, or print every problem as
    `FILE:LINE: key.path: message` on stderr and return 65. Never exits the process.
    Warnings (the map is valid, but something is probably not meant, or does not match this
    box) go to stderr as `FILE:LINE: key.path: warning: …` and do not change the exit
    status."""
    warnings: list[ConfigProblem] = []
    try:
        cmap = load_camera_map(Path(path), warnings=warnings)
    except ConfigError as e:
        for problem in e.problems:
            sys.stderr.write(f"{problem}\n")
        return EX_DATAERR
    accounts = account_warnings(path, cmap)
    for warning in [*warnings, *accounts]:  # allowed, but probably not meant: exit 0
        sys.stderr.write(f"{warning}\n")
    cams, people = len(cmap.cameras), len(cmap.people)
    also = f"; {len(accounts)} of them without an account on this machine" if accounts else ""
    sys.stdout.write(f"{path}: ok ({cams} camera{'' if cams == 1 else 's'}, "
                     f"{people} {'person' if people == 1 else 'people'}){also}\n")
    return EX_OK


def account_warnings(path: str, cmap: CameraMap) -> list[str]:
    """A `people:` entry whose account does not exist here: valid (the account may be made
    later, or come from a directory service not reachable now), but until it exists that
    person cannot run a command, so say so."""
    lines = _user_lines(path)
    out = []
    for i, person in enumerate(cmap.people):
        try:
            pwd.getpwnam(person.user)
        except KeyError:
            line = lines.get(i, 0)
            where = f"{path}:{line}" if line else path
            out.append(f"{where}: people[{i}].user: warning: no account {person.user!r} on "
                       "this machine; create it (adduser) or put that person's real login "
                       "name here, or they are refused as the public")
    return out


def _user_lines(path: str) -> dict[int, int]:
    """people[i] → the 1-based line of its `user:` key (0 when it cannot be told)."""
    from ruamel.yaml import YAML

    try:
        data = YAML(typ="rt").load(Path(path).read_text(encoding="utf-8"))
        people: Any = data.get("people") or []
        found = {}
        for i, item in enumerate(people):
            try:
                found[i] = item.lc.key("user")[0] + 1
            except (AttributeError, KeyError, TypeError):
                found[i] = people.lc.item(i)[0] + 1
        return found
    except Exception:  # noqa: BLE001 - a line number is a courtesy; the warning stands without
        return {}

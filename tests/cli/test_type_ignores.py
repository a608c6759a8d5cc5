"""Every `type: ignore` in nvr names its error code and says why beside it."""

from __future__ import annotations

import re
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[2] / "nvr"
REASONED = re.compile(r"type: ignore\[[a-z-]+(, ?[a-z-]+)*\]  # \S")


def test_every_type_ignore_carries_its_code_and_its_reason() -> None:
    bare = [f"{path.relative_to(PACKAGE.parent)}:{n}: {line.strip()}"
            for path in sorted(PACKAGE.rglob("*.py"))
            for n, line in enumerate(path.read_text().splitlines(), 1)
            if "type: ignore" in line and not REASONED.search(line)]
    assert not bare, "a type: ignore without `[code]  # why`:\n" + "\n".join(bare)

"""`nvr audit verify --journal FILE`: which checkpoint lines the CLI finds in a journal dump and
sends (nvr.cli.commands.journal_checkpoints), from real signed lines."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nvr.cli.commands import JOURNAL_NEWEST, journal_checkpoints
from nvr.errors import UsageError
from nvr.export.signing import load_or_create_key
from nvr.policy import checkpoint
from nvr.policy.audit import canonical_json

T0 = 1_767_225_600_000_000


def _lines(tmp_path: Path, n: int, name: str = "c.jsonl") -> list[str]:
    key = load_or_create_key(tmp_path)
    return [canonical_json(checkpoint.append(tmp_path / name, checkpoint.Checkpoint(
        "head", i, f"{i:064x}", T0 + i), key)) for i in range(1, n + 1)]


def _dump(tmp_path: Path, lines: list[str], *, as_bytes: bool = False) -> str:
    path = tmp_path / "journal.json"
    with path.open("w") as f:
        f.write("not json\n" + json.dumps({"MESSAGE": "plain text from another program"}) + "\n")
        for line in lines:
            log = json.dumps({"event": "audit_checkpoint", "line": line})
            message: object = list(log.encode()) if as_bytes else log
            f.write(json.dumps({"MESSAGE": message, "_SYSTEMD_UNIT": "nvr.service"}) + "\n")
    return str(path)


def test_newest_lines_and_the_line_before_a_break_are_sent(tmp_path: Path) -> None:
    lines = _lines(tmp_path, 50)
    sent = journal_checkpoints(_dump(tmp_path, lines, as_bytes=True))
    assert sent == lines[-JOURNAL_NEWEST:]  # an unbroken chain: only the newest
    # Line 10 cut from the file, and the daemon went on: line 11' names line 9, not line 10.
    cut = lines[:10]
    key = load_or_create_key(tmp_path)
    (tmp_path / "d.jsonl").write_text("".join(x + "\n" for x in lines[:9]))
    resumed = [canonical_json(checkpoint.append(tmp_path / "d.jsonl", checkpoint.Checkpoint(
        "head", i, f"{i:064x}", T0 + 100 + i), key)) for i in range(10, 60)]
    sent = journal_checkpoints(_dump(tmp_path, cut + resumed))
    assert lines[9] in sent and sent[-JOURNAL_NEWEST:] == resumed[-JOURNAL_NEWEST:]


def test_a_dump_without_checkpoint_lines_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="journalctl -u nvr -o json"):
        journal_checkpoints(_dump(tmp_path, []))

"""`nvr audit verify` through the daemon: exit 0 on an intact log, 65 naming the first bad seq
after someone edits, deletes or swaps rows in the index with sqlite3."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator

import pytest

from nvr.policy.audit import canonical_json, chain_hash
from tests.e2e.harness import Recorder
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder([]).start()
    try:
        for i in range(6):  # some decisions to chain: allowed and refused
            r.cli("staff", "breach", "report", "--details", f"note {i}")
            r.cli("staff", "audit", "list")
        yield r
    finally:
        r.cleanup()


def tamper(rec: Recorder, sql: str) -> None:
    with sqlite3.connect(rec.root / "index.db") as db:
        db.executescript(sql)


@pytest.mark.parametrize(
    ("name", "sql", "bad_seq"),
    [
        ("edit-allowed", "UPDATE audit SET allowed = 1 WHERE seq = 4;", 4),
        ("edit-actor", "UPDATE audit SET actor = 'nvrtest-director' WHERE seq = 3;", 3),
        ("delete", "DELETE FROM audit WHERE seq = 5;", 5),
        ("swap", "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
                 " UPDATE audit SET seq = 3 WHERE seq = -1;", 2),
    ],
)
def test_tampering_is_found_at_the_first_bad_row(rec: Recorder, name: str, sql: str,
                                                 bad_seq: int) -> None:
    ok = rec.cli("staff", "audit", "verify")
    assert ok.code == 0, ok.err
    tamper(rec, sql)
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65, (res.code, res.err)
    assert f"seq {bad_seq}" in res.err, res.err


def _restart(rec: Recorder) -> None:
    rec.stop()
    rec.daemon.start()


def test_rows_cut_from_the_end_while_stopped_are_found(rec: Recorder) -> None:
    """Issue 10: delete the last 5 rows with sqlite3 while the daemon is stopped, restart:
    `audit verify` fails and says where the chain was cut."""
    rec.stop()  # writes a signed checkpoint of the head
    cps = (rec.root / "audit-checkpoints.jsonl").read_text().splitlines()
    assert cps, "no checkpoint written at stop"
    newest = json.loads(cps[-1])
    assert newest["kind"] == "head" and len(newest["sig"]) > 80
    last = newest["seq"]
    tamper(rec, f"DELETE FROM audit WHERE seq > {last - 5};")
    rec.daemon.start()
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65, (res.code, res.err)
    assert f"the chain was cut after seq {last - 5}" in res.err, res.err
    # Recording more decisions and restarting again does not make it go away.
    rec.cli("staff", "breach", "report", "--details", "after the cut")
    _restart(rec)
    res = rec.cli("director", "audit", "verify")
    assert res.code == 65 and f"cut after seq {last - 5}" in res.err, res.err


def test_rows_cut_and_rewritten_while_stopped_disagree_with_the_checkpoint(rec: Recorder) -> None:
    rec.stop()
    # A rewrite that keeps the length: the last row replaced by a valid-looking one.
    with sqlite3.connect(rec.root / "index.db") as db:
        seq, prev = db.execute("SELECT seq, prev_hash FROM audit ORDER BY seq DESC LIMIT 1").fetchone()
        db.execute("DELETE FROM audit WHERE seq = ?", (seq,))
        detail = {"note": "nothing happened"}
        digest = chain_hash(prev, seq=seq, at_us=0, actor="nvr", uid=0, role="system",
                            action="status", allowed=True, detail=detail)
        db.execute("INSERT INTO audit VALUES (?, 0, 'nvr', 0, 'system', 'status', 1, ?, ?, ?)",
                   (seq, canonical_json(detail), prev, digest))
    rec.daemon.start()
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65, (res.code, res.err)
    assert f"seq {seq} differs from the signed checkpoint" in res.err, res.err


def test_checkpoint_file_edited_is_found(rec: Recorder) -> None:
    rec.stop()
    path = rec.root / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    forged = json.loads(lines[-1])
    forged["seq"] = 1  # pretend the chain was shorter
    path.write_text("\n".join([*lines[:-1], json.dumps(forged)]) + "\n")
    rec.daemon.start()
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65 and "checkpoint file was edited" in res.err, res.err


def test_intact_log_verifies_across_restarts(rec: Recorder) -> None:
    _restart(rec)
    _restart(rec)
    res = rec.cli("staff", "audit", "verify", "--json")
    assert res.code == 0, res.err
    assert res.json()["checkpoints"] >= 2
    # The journal has the same signed checkpoints.
    logged = [json.loads(line) for line in rec.daemon.logs().splitlines()
              if '"audit_checkpoint"' in line]
    filed = [json.loads(line) for line in
             (rec.root / "audit-checkpoints.jsonl").read_text().splitlines()]
    assert logged and {e["sig"] for e in logged} <= {c["sig"] for c in filed}


def _journal_dump(rec: Recorder) -> str:
    """The daemon's log as `journalctl -u nvr -o json` shows it: each line in MESSAGE."""
    path = rec.out_path("journal.json")
    with open(path, "w") as f:
        for line in rec.daemon.logs().splitlines():
            f.write(json.dumps({"MESSAGE": line, "_SYSTEMD_UNIT": "nvr.service"}) + "\n")
    return path


def test_log_tail_and_checkpoint_tail_cut_together_are_found_against_the_journal(
        rec: Recorder) -> None:
    """Issue 27: the last rows deleted AND the checkpoint line naming them removed from the
    file, while stopped. The file's chain of lines cannot show a cut end; the journal can."""
    _restart(rec)  # a first checkpoint, at the stop
    for i in range(4):
        rec.cli("staff", "breach", "report", "--details", f"later {i}")
    rec.stop()  # the checkpoint of the newest head, the line the attacker removes
    path = rec.root / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) >= 2 and json.loads(lines[-1])["prev"], lines
    last = json.loads(lines[-1])["seq"]
    assert json.loads(lines[-2])["seq"] <= last - 3
    tamper(rec, f"DELETE FROM audit WHERE seq > {last - 3};")
    path.write_text("\n".join(lines[:-1]) + "\n")
    rec.daemon.start()
    # Without the journal: the documented limit (docs/design.md "Identity, policy and the
    # audit log").
    assert rec.cli("staff", "audit", "verify").code == 0
    res = rec.cli("staff", "audit", "verify", "--journal", _journal_dump(rec))
    assert res.code == 65, (res.code, res.out, res.err)
    # "the chain was cut after seq N: the journal's signed checkpoint … reached seq LAST", or,
    # once the daemon has checkpointed again since its start, the missing line itself.
    assert "the journal's signed checkpoint of" in res.err and f"seq {last}" in res.err, res.err
    # The daemon goes on and appends new checkpoint lines after the cut, so the journal's
    # newest line is in the file again: the cut line is still found, where the chain breaks.
    for i in range(4):
        rec.cli("staff", "breach", "report", "--details", f"after the cut {i}")
    _restart(rec)
    journal = _journal_dump(rec)
    res = rec.cli("staff", "audit", "verify", "--journal", journal)
    assert res.code == 65, (res.code, res.out, res.err)
    assert f"(head, seq {last}) is not in the checkpoint file" in res.err, res.err


def test_removed_middle_checkpoint_line_is_found_and_the_journal_agrees_when_intact(
        rec: Recorder) -> None:
    _restart(rec)
    rec.cli("staff", "breach", "report", "--details", "more")
    _restart(rec)
    rec.cli("staff", "breach", "report", "--details", "more still")
    rec.stop()
    path = rec.root / "audit-checkpoints.jsonl"
    lines = path.read_text().splitlines()
    assert len(lines) >= 3, lines
    journal = _journal_dump(rec)
    rec.daemon.start()
    res = rec.cli("staff", "audit", "verify", "--journal", journal, "--json")
    assert res.code == 0, res.err
    assert res.json()["journal_checkpoint_seq"] == json.loads(lines[-1])["seq"]
    rec.stop()
    path.write_text("\n".join([lines[0], *lines[2:]]) + "\n")
    rec.daemon.start()
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65, (res.code, res.err)
    assert "line 2 names a line before it that is not there" in res.err, res.err

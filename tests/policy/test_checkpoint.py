"""Signed audit checkpoints (issue 10): a chain cut from the end, or rewritten, is caught; the
walk streams from its own connection in a worker thread and never stalls the event loop."""

from __future__ import annotations

import asyncio
import base64
import json
import sqlite3
import time
from pathlib import Path

from nvr.control.handlers import AUDIT_PAGE
from nvr.control.protocol import ok_line
from nvr.export.signing import load_or_create_key
from nvr.policy import checkpoint
from nvr.policy.audit import GENESIS, canonical_json, chain_hash, read_page
from nvr.storage.db import connect

T0 = 1_767_225_600_000_000


def _fill_fast(db_path: Path, n: int) -> tuple[int, str]:
    """n valid rows written straight with sqlite3 (fast), returning the head."""
    con = sqlite3.connect(db_path)
    prev = GENESIS
    rows = []
    for seq in range(1, n + 1):
        detail = {"reason": f"r{seq}"}
        digest = chain_hash(prev, seq=seq, at_us=T0 + seq, actor="a", uid=1, role="director",
                            action="status", allowed=True, detail=detail)
        rows.append((seq, T0 + seq, "a", 1, "director", "status", 1, canonical_json(detail),
                     prev, digest))
        prev = digest
    with con:
        con.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    con.close()
    return n, prev


async def _db(tmp_path: Path) -> Path:
    db = await connect(tmp_path / "index.db")
    await db.close()
    return tmp_path / "index.db"


async def test_cut_tail_is_named_and_a_forged_line_is_refused(tmp_path: Path) -> None:
    db_path = await _db(tmp_path)
    key = load_or_create_key(tmp_path)
    path = checkpoint.checkpoint_path(tmp_path)
    head = _fill_fast(db_path, 20)
    checkpoint.append(path, checkpoint.Checkpoint("head", *head, T0), key)
    read = checkpoint.read(path, key.public_key())
    assert checkpoint.verify_db(db_path, read).ok
    with sqlite3.connect(db_path) as con:
        con.execute("DELETE FROM audit WHERE seq > 15")
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()))
    assert not verdict.ok and "the chain was cut after seq 15" in verdict.problem
    # What the daemon writes at start so the finding survives rows appended afterwards.
    cut = checkpoint.cut_record((15, "x"), checkpoint.newest_head(read.checkpoints), T0 + 1)
    assert cut is not None
    checkpoint.append(path, cut, key)
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()))
    assert "cut after seq 15" in verdict.problem and "seqs 16..20 were deleted" in verdict.problem
    # A line signed by another key is refused, not believed.
    other = load_or_create_key(tmp_path / "other")
    checkpoint.append(path, checkpoint.Checkpoint("head", 1, "y", T0), other)
    read = checkpoint.read(path, key.public_key())
    assert read.problems and "line 3" in read.problems[0]


async def test_verify_and_list_of_a_big_log_never_stall_the_loop(tmp_path: Path) -> None:
    db_path = await _db(tmp_path)
    key = load_or_create_key(tmp_path)
    _fill_fast(db_path, 60_000)
    read = checkpoint.Read([], [])
    worst = 0.0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            worst, last = max(worst, now - last), now

    tick = asyncio.create_task(ticker())
    verdict = await asyncio.to_thread(checkpoint.verify_db, db_path, read)
    # `audit list` as the daemon serves it: a page read in a worker thread, encoded on the loop.
    pages, after = 0, 0
    while rows := await asyncio.to_thread(read_page, db_path, after_seq=after, limit=AUDIT_PAGE):
        ok_line({"rows": rows})
        pages, after = pages + 1, rows[-1]["seq"]
    done.set()
    await tick
    assert verdict.ok and verdict.rows == 60_000, verdict
    assert pages == 60_000 // AUDIT_PAGE
    # Generous on a loaded 2-core machine; a blocking walk of 60k rows takes ~1 s.
    assert worst < 0.25, f"event loop stalled {worst * 1000:.0f} ms"
    del key


def _checkpoints(path: Path, key: object, db_path: Path, seqs: list[int]) -> list[str]:
    """Head checkpoints at the given seqs (rows filled up to the largest), as the daemon writes
    them: each line also logged (its text is what the journal holds)."""
    head = _fill_fast(db_path, max(seqs))
    journal = []
    with sqlite3.connect(db_path) as con:
        hashes = dict(con.execute("SELECT seq, hash FROM audit"))
    for i, seq in enumerate(seqs):
        line = checkpoint.append(path, checkpoint.Checkpoint("head", seq, hashes[seq], T0 + i),
                                 key)  # type: ignore[arg-type]
        journal.append(canonical_json(line))
    assert hashes[head[0]] == head[1]
    return journal


async def test_a_removed_or_edited_middle_line_breaks_the_chain_of_checkpoints(
        tmp_path: Path) -> None:
    db_path = await _db(tmp_path)
    key = load_or_create_key(tmp_path)
    path = checkpoint.checkpoint_path(tmp_path)
    _checkpoints(path, key, db_path, [5, 10, 15, 20])
    lines = path.read_bytes().splitlines(keepends=True)
    assert json.loads(lines[0])["prev"] is None
    assert json.loads(lines[1])["prev"] == checkpoint.line_hash(lines[0])
    assert checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key())).ok

    path.write_bytes(b"".join([lines[0], lines[2], lines[3]]))  # line 2 (seq 10) removed
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()))
    assert not verdict.ok
    assert "line 2 names a line before it that is not there" in verdict.problem
    assert "removed or edited" in verdict.problem

    path.write_bytes(b"".join(lines[1:]))  # the first line removed
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()))
    assert "removed from the start of the checkpoint file" in verdict.problem, verdict.problem

    edited = lines[1].replace(b'"seq":10', b'"seq":9')  # an edit: the signature fails
    assert edited != lines[1]
    path.write_bytes(b"".join([lines[0], edited, *lines[2:]]))
    read = checkpoint.read(path, key.public_key())
    assert "line 2 is not a checkpoint signed by this recorder" in read.problems[0]
    assert any("line 3 names a line before it" in p for p in read.problems)


async def test_a_cut_tail_of_both_log_and_file_is_found_only_against_the_journal(
        tmp_path: Path) -> None:
    """The attack of issue 27: rows 17..20 deleted and the checkpoint of seq 20 removed from the
    file. The file alone cannot show it (a shorter chain of lines is still a chain); the
    journal's copy of the newest line does."""
    db_path = await _db(tmp_path)
    key = load_or_create_key(tmp_path)
    path = checkpoint.checkpoint_path(tmp_path)
    journal = _checkpoints(path, key, db_path, [8, 16, 20])
    lines = path.read_bytes().splitlines(keepends=True)
    with sqlite3.connect(db_path) as con:
        cut_rows = con.execute("SELECT * FROM audit WHERE seq > 16").fetchall()
        con.execute("DELETE FROM audit WHERE seq > 16")
    path.write_bytes(b"".join(lines[:-1]))
    read = checkpoint.read(path, key.public_key())
    assert checkpoint.verify_db(db_path, read).ok  # the documented limit without the journal
    verdict = checkpoint.verify_db(db_path, read, checkpoint.read_journal(journal,
                                                                          key.public_key()))
    assert not verdict.ok
    assert "the chain was cut after seq 16" in verdict.problem
    assert "journal's signed checkpoint" in verdict.problem and "reached seq 20" in verdict.problem

    # Only the file's tail cut (the log intact): still named.
    with sqlite3.connect(db_path) as con:
        con.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", cut_rows)
    verdict = checkpoint.verify_db(db_path, read, checkpoint.read_journal(journal,
                                                                          key.public_key()))
    assert "the checkpoint file ends before the journal's newest" in verdict.problem

    # A forged journal line is ignored with a warning, not believed.
    other = load_or_create_key(tmp_path / "other")
    forged = checkpoint.append(tmp_path / "other.jsonl",
                               checkpoint.Checkpoint("head", 99, "f", T0 + 99), other)
    path.write_bytes(b"".join(lines))
    j = checkpoint.read_journal([*journal, canonical_json(forged)], key.public_key())
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()), j)
    assert verdict.ok, verdict.problem
    assert any("not signed by this recorder" in w for w in verdict.warnings)


async def test_an_old_file_without_previous_hashes_verifies_with_a_warning(
        tmp_path: Path) -> None:
    db_path = await _db(tmp_path)
    key = load_or_create_key(tmp_path)
    path = checkpoint.checkpoint_path(tmp_path)
    head = _fill_fast(db_path, 10)
    # A line as the daemon wrote it before issue 27: the same fields, no `prev`.
    body = {"kind": "head", "seq": head[0], "hash": head[1], "at_us": T0}
    sig = base64.b64encode(key.sign(canonical_json(body).encode())).decode()
    old = dict(body, at="x", fingerprint=key.fingerprint(), sig=sig)
    path.write_text(canonical_json(old) + "\n")
    checkpoint.append(path, checkpoint.Checkpoint("head", *head, T0 + 1), key)  # new after old
    verdict = checkpoint.verify_db(db_path, checkpoint.read(path, key.public_key()))
    assert verdict.ok, verdict.problem
    assert verdict.warnings and "before checkpoints were chained" in verdict.warnings[0]


async def test_the_journal_lines_sent_fit_one_request(tmp_path: Path) -> None:
    """`audit verify --journal` sends up to 96 lines; the longest kind (a cut line with big
    numbers) must fit the socket's request limit, JSON-escaped."""
    from nvr.cli.commands import JOURNAL_BREAKS, JOURNAL_NEWEST
    from nvr.control.protocol import ARGS, MAX_REQUEST_BYTES

    key = load_or_create_key(tmp_path)
    big = 2**62  # seqs; times: the year 2100
    when = 4_102_444_800_000_000
    cut = checkpoint.Checkpoint("cut", big, "f" * 64, when,
                                {"checkpoint_seq": big, "checkpoint_at_us": when})
    line = checkpoint.append(tmp_path / "c.jsonl", cut, key)
    lines = [canonical_json(line)] * (JOURNAL_NEWEST + JOURNAL_BREAKS)
    request = json.dumps({"op": "audit_verify", "args": {"journal": lines}})
    assert len(request.encode()) < MAX_REQUEST_BYTES, len(request)
    ARGS["audit_verify"].model_validate({"journal": lines})

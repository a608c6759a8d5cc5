"""Signed audit checkpoints (issue 10): a chain cut from the end, or rewritten, is caught; the
walk streams from its own connection in a worker thread and never stalls the event loop."""

from __future__ import annotations

import asyncio
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

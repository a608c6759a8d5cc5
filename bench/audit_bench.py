"""Audit log benchmark: `audit verify` and `audit list` over a big log, and the event loop.

    .venv/bin/python bench/audit_bench.py [--rows 200000]

Writes ROWS valid chained rows into a fresh index, then does what the daemon does for
`audit verify` (checkpoint.verify_db in a worker thread) and for `audit list` (read_page of
AUDIT_PAGE rows in a worker thread, the reply line encoded on the loop), while a 1 ms ticker on
the loop records the longest time it was kept waiting.
"""

from __future__ import annotations

import argparse
import asyncio
import sqlite3
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

from nvr.control.handlers import AUDIT_PAGE
from nvr.control.protocol import ok_line
from nvr.policy import checkpoint
from nvr.policy.audit import GENESIS, canonical_json, chain_hash, read_page
from nvr.storage.db import connect


def fill(db_path: Path, n: int) -> None:
    prev, rows = GENESIS, []
    for seq in range(1, n + 1):
        detail = {"reason": f"r{seq}", "camera": "lobby"}
        digest = chain_hash(prev, seq=seq, at_us=seq, actor="a", uid=1, role="director",
                            action="export", allowed=True, detail=detail)
        rows.append((seq, seq, "a", 1, "director", "export", 1, canonical_json(detail), prev,
                     digest))
        prev = digest
    con = sqlite3.connect(db_path)
    try:
        with con:
            con.executemany("INSERT INTO audit VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
    finally:
        con.close()  # checkpoints the WAL, as the daemon's autocheckpoint keeps it small


async def measured(what: str, work: Callable[[], Awaitable[None]]) -> None:
    worst, done = 0.0, asyncio.Event()

    async def ticker() -> None:
        nonlocal worst
        last = time.monotonic()
        while not done.is_set():
            await asyncio.sleep(0.001)
            now = time.monotonic()
            worst, last = max(worst, now - last), now

    tick = asyncio.create_task(ticker())
    started = time.monotonic()
    await work()
    took = time.monotonic() - started
    done.set()
    await tick
    print(f"{what}: {took:.2f} s, worst event-loop stall {worst * 1000:.1f} ms")


async def main(rows: int) -> None:
    db_path = Path(tempfile.mkdtemp(prefix="nvr-audit-bench-")) / "index.db"
    await (await connect(db_path)).close()
    fill(db_path, rows)

    async def verify() -> None:
        verdict = await asyncio.to_thread(checkpoint.verify_db, db_path, checkpoint.Read([], []))
        assert verdict.ok and verdict.rows == rows

    async def listing() -> None:
        after = 0
        while page := await asyncio.to_thread(read_page, db_path, after_seq=after,
                                              limit=AUDIT_PAGE):
            ok_line({"rows": page})
            after = page[-1]["seq"]

    await measured(f"audit verify, {rows} rows", verify)
    await measured(f"audit list, {rows} rows in {AUDIT_PAGE}-row pages", listing)


if __name__ == "__main__":
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=200_000)
    asyncio.run(main(ap.parse_args().rows))

"""`nvr status` cost on a big index: what the status op adds for people (nvr.control.status:
oldest and held footage, today's rate, days left, alerts) over a month of 64 cameras.

    .venv/bin/python bench/status_bench.py --cameras 64 --days 30 --segment-seconds 60

Seeds an index (schema and triggers as the daemon makes them) with one row per segment, back to
back, 1 MB each, and a few holds (a day on 4 cameras, an hour on 8, a week on 1); then times the
status figures several times, on the warm connection as the daemon would run them. Target
(issue 13): status answers in under 200 ms with millions of rows. Printed: rows, seed time, each
run's milliseconds, and the query plans (each must SEARCH an index, never SCAN segments).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sqlite3
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nvr.control import status  # noqa: E402
from nvr.retention.holds import Holds  # noqa: E402
from nvr.storage import db as dbmod  # noqa: E402
from nvr.storage.index import Index  # noqa: E402


def seed(path: Path, cameras: int, days: float, seg_s: int, now_us: int) -> int:
    conn = sqlite3.connect(path)
    conn.execute("PRAGMA synchronous=OFF")
    per_cam = int(days * 86400 / seg_s)
    seg_us = seg_s * 1_000_000
    first = now_us - per_cam * seg_us

    def rows() -> Any:
        for c in range(cameras):
            for i in range(per_cam):
                start = first + i * seg_us
                yield (f"cam{c:02d}", start, start + seg_us, f"/s/cam{c:02d}/{i}.mp4",
                       1_000_000, 900, 15, "h264", 1280, 720, "x")

    with conn:
        conn.executemany(
            "INSERT INTO segments (camera, start_us, end_us, path, bytes, frames, keyframes, "
            "codec, width, height, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows())
    holds = [(4, 86400), (8, 3600), (1, 7 * 86400)]
    with conn:
        for n, (count, secs) in enumerate(holds):
            start = now_us - (n + 2) * 86400 * 1_000_000
            conn.execute(
                "INSERT INTO holds (id, cameras, start_us, end_us, reason, created_us, "
                "created_by) VALUES (?, ?, ?, ?, 'bench', ?, 'bench')",
                (f"H-{n}", json.dumps([f"cam{c:02d}" for c in range(count)]), start,
                 start + secs * 1_000_000, now_us))
    conn.close()
    return cameras * per_cam


async def measure(path: Path, cameras: int, now_us: int, runs: int) -> list[float]:
    db = await dbmod.connect(path)
    svc = SimpleNamespace(
        db=db, holds=Holds(db), clock=lambda: now_us, paused=set(), pause_alert=None,
        recorders={}, config=SimpleNamespace(cameras=[SimpleNamespace(id=f"cam{c:02d}")
                                                      for c in range(cameras)]))
    index = Index(db)
    times = []
    for _ in range(runs):
        result = {"cameras": [{"id": f"cam{c:02d}", "state": "recording"}
                              for c in range(cameras)],
                  "disk": {"total_bytes": 4 * 10**12, "free_bytes": 10**12,
                           "min_free_percent": 5}}
        began = time.perf_counter()
        # What op_status already read before issue 13 (the oldest row, the total bytes)...
        await index.oldest_start()
        await index.total_bytes()
        # ...and what it adds now.
        shown = await status.enrich(svc, result)  # type: ignore[arg-type]  # the keys enrich reads
        times.append(1000 * (time.perf_counter() - began))
    print("days_left", shown["disk"]["days_left"], "held", shown["held"])
    for sql, args in [
        ("SELECT MIN(start_us) FROM segments WHERE camera = ?", ("cam00",)),
        ("SELECT COALESCE(SUM(bytes), 0), MIN(start_us) FROM segments WHERE camera = ? AND "
         "start_us >= ? AND start_us < ?", ("cam00", now_us - 86400 * 10**6, now_us)),
        ("SELECT start_us, end_us, bytes FROM segments WHERE camera = ? AND start_us < ? "
         "ORDER BY start_us DESC LIMIT 1", ("cam00", now_us)),
        ("SELECT COALESCE(SUM(bytes), 0), COALESCE(SUM(end_us - start_us), 0), COUNT(*) "
         "FROM segments WHERE camera = ? AND start_us >= ? AND start_us < ?",
         ("cam00", 0, now_us)),
    ]:
        async with db.execute("EXPLAIN QUERY PLAN " + sql, args) as cur:
            plan = " | ".join(str(r[3]) for r in await cur.fetchall())
        print("plan:", plan)
    await db.close()
    return times


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--cameras", type=int, default=64)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--segment-seconds", type=int, default=60)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--index", type=Path, help="reuse (or keep) this index file")
    a = ap.parse_args()
    now_us = int(time.time() * 1e6)
    with tempfile.TemporaryDirectory() as tmp:
        path = a.index or Path(tmp) / "index.db"
        if not path.exists():
            asyncio.run(_create(path))
            began = time.perf_counter()
            n = seed(path, a.cameras, a.days, a.segment_seconds, now_us)
            print(f"seeded {n} rows in {time.perf_counter() - began:.1f} s")
        times = asyncio.run(measure(path, a.cameras, now_us, a.runs))
    print("status figures ms (oldest, totals, enrich):", " ".join(f"{t:.1f}" for t in times),
          f"(median {sorted(times)[len(times) // 2]:.1f})")


async def _create(path: Path) -> None:
    db = await dbmod.connect(path)
    await db.close()


if __name__ == "__main__":
    main()

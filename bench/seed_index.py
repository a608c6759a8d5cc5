"""Seed a storage root with a month of footage rows, for the scale benchmark (issue 9).

    .venv/bin/python bench/seed_index.py ROOT [--cameras 64] [--days 30] [--seconds 60]
                                              [--holds 50] [--files link|none]

Writes ROOT/index.db (current schema) with cameras × days × 86400/seconds segment rows
(64 × 30 × 1440 = 2,764,800 by default) ending now, plus `--holds` holds of one hour on one to
four cameras each, half of them on footage already past 30 days so retention has something to
keep. With --files link (the default) every row's path is a hard link to a small real
fragmented MP4 (one per camera), so start-up recovery and the background check find every file without
2.8 million copies (one directory entry each, a few hundred MB of metadata); with --files
none only the rows exist (the background check will then drop them all as missing).
Row bytes claim a 4 Mb/s camera (30 MB a minute), which is what retention's disk arithmetic
sees; keep storage.min_free_percent below the real free space when you run the daemon on it.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import random
import sqlite3
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nvr.storage.db import connect  # noqa: E402
from nvr.timeutil import US, now_us, segment_name  # noqa: E402
from tests.retention.env import tiny_fmp4  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[1])
    ap.add_argument("root", type=Path)
    ap.add_argument("--cameras", type=int, default=64)
    ap.add_argument("--days", type=float, default=30)
    ap.add_argument("--seconds", type=int, default=60)
    ap.add_argument("--holds", type=int, default=50)
    ap.add_argument("--extra-minutes", type=int, default=10,
                    help="footage older than --days, for the first retention pass to delete")
    ap.add_argument("--files", choices=("link", "none"), default="link")
    a = ap.parse_args()
    root: Path = a.root
    root.mkdir(mode=0o700, parents=True, exist_ok=True)
    for sub in ("segments", "keys", "stills", "tmp", "quarantine"):
        (root / sub).mkdir(mode=0o700, exist_ok=True)

    async def create() -> None:
        db = await connect(root / "index.db")
        await db.close()

    asyncio.run(create())
    data = tiny_fmp4(1)
    (root / "seed").mkdir(exist_ok=True)
    sha = hashlib.sha256(data).hexdigest()
    claimed = 4_000_000 // 8 * a.seconds
    end = now_us() // US * US
    per_cam = int((a.days * 86400 + a.extra_minutes * 60) // a.seconds)
    start0 = end - per_cam * a.seconds * US
    cams = [f"cam{i:02d}" for i in range(a.cameras)]
    t0 = time.monotonic()
    db = sqlite3.connect(root / "index.db", isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=OFF")  # a seed, not footage
    db.execute("BEGIN")
    db.executemany("INSERT OR IGNORE INTO cameras (id, name, first_seen_us) VALUES (?, ?, ?)",
                   [(c, c.upper(), start0) for c in cams])
    for cam in cams:
        folder = root / "segments" / cam
        folder.mkdir(mode=0o700, exist_ok=True)
        source = root / "seed" / f"{cam}.mp4"  # one per camera: ext4 allows 65,000 links
        source.write_bytes(data)
        rows = []
        for i in range(per_cam):
            s = start0 + i * a.seconds * US
            path = folder / segment_name(s)
            rows.append((cam, s, s + a.seconds * US, str(path), claimed, a.seconds * 15, a.seconds // 2,
                         "h264", 1280, 720, sha))
            if a.files == "link":
                os.link(source, path)
        db.executemany(
            "INSERT INTO segments (camera, start_us, end_us, path, bytes, frames, keyframes, "
            "codec, width, height, sha256) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", rows)
        print(f"{cam}: {per_cam} rows ({time.monotonic() - t0:.0f} s)", flush=True)
    rnd = random.Random(9)
    for i in range(a.holds):
        hold_cams = rnd.sample(cams, rnd.randint(1, min(4, len(cams))))
        old = i % 2 == 0  # half on footage already past retention: kept, and listed as kept
        s = start0 + rnd.randint(0, a.extra_minutes * 60 * US if old else
                                 int(a.days * 86400 * US) - 3600 * US)
        s = s // (a.seconds * US) * (a.seconds * US)
        db.execute(
            "INSERT INTO holds (id, cameras, start_us, end_us, reason, incident, until_us, "
            "created_us, created_by) VALUES (?, ?, ?, ?, ?, NULL, NULL, ?, 'director')",
            (f"H-seed{i:03d}", json.dumps(hold_cams), s, s + 3600 * US, f"seeded hold {i}", end))
    db.execute("COMMIT")
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    n = db.execute("SELECT COUNT(*) FROM segments").fetchone()[0]
    db.close()
    print(f"seeded {n} segment rows, {a.holds} holds in {time.monotonic() - t0:.0f} s")


if __name__ == "__main__":
    main()

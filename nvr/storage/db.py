"""The index: one SQLite database (WAL) under storage.root, opened through aiosqlite.

Every instant is INTEGER microseconds since the epoch, UTC (nvr.timeutil). The schema carries a
version from day one; `MIGRATIONS[n]` takes a database from version n to n+1, in one
transaction, so an upgrade interrupted by a crash is retried whole on the next start.

Module ownership of tables (each module keeps its own queries):
  segments, gaps, cameras       nvr.storage.index
  holds                         nvr.retention.holds
  grants, requests, breaches    nvr.policy.store
  audit                         nvr.policy.audit
  stills, exports               nvr.export
  meta                          here (schema version, clean-shutdown flag)
"""

from __future__ import annotations

import asyncio
import sqlite3
import weakref
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

import aiosqlite

SCHEMA_V1 = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);

CREATE TABLE cameras (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    first_seen_us INTEGER NOT NULL
);

-- A row exists only for a segment whose file and folder were fsynced (docs/design.md).
-- state: 'complete', or 'deleting' while retention removes it (crash-safe delete).
CREATE TABLE segments (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    path TEXT NOT NULL UNIQUE,
    bytes INTEGER NOT NULL,
    frames INTEGER NOT NULL,
    keyframes INTEGER NOT NULL,
    codec TEXT NOT NULL,
    width INTEGER NOT NULL,
    height INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    state TEXT NOT NULL DEFAULT 'complete',
    recovered INTEGER NOT NULL DEFAULT 0,
    CHECK (end_us >= start_us)
);
CREATE INDEX segments_camera_time ON segments (camera, start_us);

-- reason: offline, credentials, timeout, no_video, recorder_stopped, crash, disk_full, ...
CREATE TABLE gaps (
    id INTEGER PRIMARY KEY,
    camera TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT ''
);
CREATE INDEX gaps_camera_time ON gaps (camera, start_us);

CREATE TABLE holds (
    id TEXT PRIMARY KEY,
    cameras TEXT NOT NULL,            -- JSON list of camera ids
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    incident TEXT,
    until_us INTEGER,                 -- NULL: until released
    created_us INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    released_us INTEGER,
    released_by TEXT,
    release_reason TEXT
);

CREATE TABLE grants (
    id TEXT PRIMARY KEY,
    user TEXT NOT NULL,
    cameras TEXT NOT NULL,            -- JSON list
    start_us INTEGER NOT NULL,        -- footage window
    end_us INTEGER NOT NULL,
    expires_us INTEGER NOT NULL,
    reason TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    revoked_us INTEGER,
    revoked_by TEXT
);

CREATE TABLE requests (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,               -- subpoena, court_order, voluntary, emergency, public
    requester TEXT NOT NULL,
    details TEXT NOT NULL,
    status TEXT NOT NULL,             -- pending, approved, denied, refused
    created_us INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    decided_us INTEGER,
    decided_by TEXT,
    decision_reason TEXT,
    releases TEXT NOT NULL DEFAULT '[]'  -- JSON list of export records tied to it
);

CREATE TABLE breaches (
    id TEXT PRIMARY KEY,
    at_us INTEGER NOT NULL,
    reporter TEXT NOT NULL,
    details TEXT NOT NULL
);

-- Hash-chained: hash = sha256(prev_hash || canonical content). See nvr.policy.audit.
CREATE TABLE audit (
    seq INTEGER PRIMARY KEY,
    at_us INTEGER NOT NULL,
    actor TEXT NOT NULL,
    uid INTEGER,
    role TEXT NOT NULL,
    action TEXT NOT NULL,
    allowed INTEGER NOT NULL,
    detail TEXT NOT NULL,             -- canonical JSON
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);

CREATE TABLE stills (
    id TEXT PRIMARY KEY,
    camera TEXT NOT NULL,
    at_us INTEGER NOT NULL,
    until_us INTEGER NOT NULL,
    path TEXT NOT NULL,               -- the recorder's own copy, deleted at until_us
    sha256 TEXT NOT NULL,
    reason TEXT NOT NULL,
    created_by TEXT NOT NULL,
    deleted_us INTEGER
);

CREATE TABLE exports (
    id TEXT PRIMARY KEY,
    at_us INTEGER NOT NULL,
    camera TEXT NOT NULL,
    start_us INTEGER NOT NULL,
    end_us INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    manifest TEXT NOT NULL,           -- the signed manifest JSON, kept as the record
    requester TEXT NOT NULL,
    request_id TEXT,
    incident TEXT
);
"""

# v2 (issue 10): a request carries its scope — cameras and footage window — and an approval
# its expiry. NULL scope: a request recorded before v2, which can release nothing.
SCHEMA_V2 = """
ALTER TABLE requests ADD COLUMN cameras TEXT;         -- JSON list of camera ids
ALTER TABLE requests ADD COLUMN start_us INTEGER;     -- footage window
ALTER TABLE requests ADD COLUMN end_us INTEGER;
ALTER TABLE requests ADD COLUMN expires_us INTEGER;   -- set when approved
"""

MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """Raised when the index was written by a newer nvr than this one."""


async def connect(path: Path) -> aiosqlite.Connection:
    """Open (creating if needed) and migrate the index. Rows come back as sqlite3.Row."""
    db = await aiosqlite.connect(path, isolation_level=None)
    db.row_factory = sqlite3.Row
    await db.execute("PRAGMA journal_mode=WAL")
    # FULL: a committed row survives a power cut, the promise the segment lifecycle rests on.
    await db.execute("PRAGMA synchronous=FULL")
    await db.execute("PRAGMA foreign_keys=ON")
    await db.execute("PRAGMA busy_timeout=5000")
    await migrate(db)
    return db


async def schema_version(db: aiosqlite.Connection) -> int:
    async with db.execute("PRAGMA user_version") as cur:
        row = await cur.fetchone()
    return int(row[0]) if row else 0


async def migrate(db: aiosqlite.Connection) -> None:
    version = await schema_version(db)
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(
            f"index schema version {version} is newer than this nvr ({SCHEMA_VERSION}); "
            "upgrade nvr or restore the index from before the downgrade"
        )
    for target in range(version, SCHEMA_VERSION):
        await db.execute("BEGIN IMMEDIATE")
        try:
            for stmt in _statements(MIGRATIONS[target]):
                await db.execute(stmt)
            await db.execute(f"PRAGMA user_version = {target + 1}")
            await db.execute("COMMIT")
        except BaseException:
            await db.execute("ROLLBACK")
            raise


def _statements(script: str) -> list[str]:
    """Split a migration into statements (executescript would commit mid-migration)."""
    out: list[str] = []
    buf = ""
    for line in script.splitlines(keepends=True):
        buf += line
        if sqlite3.complete_statement(buf):
            out.append(buf.strip())
            buf = ""
    if buf.strip():
        out.append(buf.strip())
    return out


async def get_meta(db: aiosqlite.Connection, key: str) -> str | None:
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_meta(db: aiosqlite.Connection, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# One connection is shared by every task of the daemon; SQLite has one transaction per
# connection. Tasks that need several statements to commit together take this lock, so two
# tasks never interleave their BEGIN … COMMIT (which SQLite would refuse, or worse, merge).
_tx_locks: weakref.WeakKeyDictionary[aiosqlite.Connection, asyncio.Lock] = (
    weakref.WeakKeyDictionary()
)


@asynccontextmanager
async def transaction(db: aiosqlite.Connection) -> AsyncIterator[aiosqlite.Connection]:
    """BEGIN IMMEDIATE … COMMIT, or ROLLBACK on error, serialized per connection."""
    lock = _tx_locks.setdefault(db, asyncio.Lock())
    async with lock:
        await db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            await db.execute("ROLLBACK")
            raise
        await db.execute("COMMIT")

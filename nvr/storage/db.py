"""The index: one SQLite database (WAL) under storage.root, opened through aiosqlite.

Every instant is INTEGER microseconds since the epoch, UTC (nvr.timeutil). The schema carries a
version from day one; `MIGRATIONS[n]` takes a database from version n to n+1, in one
transaction, so an upgrade interrupted by a crash is retried whole on the next start.

Every SQL statement of nvr is in nvr/storage/: a store module per table or concern holds the
statements, and the rest of nvr calls its functions. Ownership (the owner is the one module
that writes the table; tests/storage/test_ownership.py holds this list against sqlite_master
of a freshly migrated index and against the statements in the tree):
  cameras, segments, gaps, segment_totals    nvr.storage.index
  holds                                      nvr.storage.holds_store
  grants, requests, breaches                 nvr.storage.policy_store
  audit                                      nvr.storage.audit_store
  exports, stills                            nvr.storage.exports_store
  view_links                                 nvr.storage.links_store
  meta                                       nvr.storage.db
An index or trigger belongs to the owner of its table; segment_totals is kept by the triggers
on segments (SCHEMA_V2) and read by nvr.storage.footage_stats too.

Connections. The daemon has one: `connect()` returns the `Db` every store runs its statements
through, in units of work (see "units of work" below). The only other way to open the index is
`open_file()` (and `open_image()` for bytes already in memory), for work that must not hold the
daemon's connection or runs without the daemon: a read-only walk in a worker thread (`audit
list`, `audit verify`), `nvr backup`, and `nvr restore` on its staged copy.
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Coroutine, Generator, Iterable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

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

# v2: queries that scale to a month of 64 cameras (2.8 million rows): retention asks for
# the rows that ended before a camera's horizon, and the disk sweep for the oldest rows, by
# index; `nvr status` reads per-camera totals kept by triggers instead of summing every row.
SCHEMA_V2 = """
CREATE INDEX segments_camera_end ON segments (camera, end_us);
CREATE INDEX segments_start ON segments (start_us);
-- Every pass and every start asks for the rows being deleted: a few among millions.
CREATE INDEX segments_deleting ON segments (start_us) WHERE state = 'deleting';

-- max_len_us: the longest segment the camera ever had (never lowered), so "segments overlapping
-- [a, b)" can be asked as start_us in (a - max_len_us, b): an index range, not a camera scan.
CREATE TABLE segment_totals (
    camera TEXT PRIMARY KEY,
    segments INTEGER NOT NULL,
    bytes INTEGER NOT NULL,
    max_len_us INTEGER NOT NULL DEFAULT 0
);
INSERT INTO segment_totals (camera, segments, bytes, max_len_us)
    SELECT camera, COUNT(*), SUM(bytes), MAX(end_us - start_us) FROM segments GROUP BY camera;

CREATE TRIGGER segments_totals_insert AFTER INSERT ON segments BEGIN
    INSERT INTO segment_totals (camera, segments, bytes, max_len_us)
    VALUES (NEW.camera, 1, NEW.bytes, NEW.end_us - NEW.start_us)
    ON CONFLICT (camera) DO UPDATE SET segments = segments + 1, bytes = bytes + NEW.bytes,
        max_len_us = MAX(max_len_us, NEW.end_us - NEW.start_us);
END;

CREATE TRIGGER segments_totals_delete AFTER DELETE ON segments BEGIN
    UPDATE segment_totals SET segments = segments - 1, bytes = bytes - OLD.bytes
    WHERE camera = OLD.camera;
END;

CREATE TRIGGER segments_totals_update AFTER UPDATE OF bytes, camera, start_us, end_us
ON segments BEGIN
    UPDATE segment_totals SET segments = segments - 1, bytes = bytes - OLD.bytes
    WHERE camera = OLD.camera;
    INSERT INTO segment_totals (camera, segments, bytes, max_len_us)
    VALUES (NEW.camera, 1, NEW.bytes, NEW.end_us - NEW.start_us)
    ON CONFLICT (camera) DO UPDATE SET segments = segments + 1, bytes = bytes + NEW.bytes,
        max_len_us = MAX(max_len_us, NEW.end_us - NEW.start_us);
END;
"""

# v3: a request carries its scope — cameras and footage window — and an approval
# its expiry. NULL scope: a request recorded before v3, which can release nothing.
SCHEMA_V3 = """
ALTER TABLE requests ADD COLUMN cameras TEXT;         -- JSON list of camera ids
ALTER TABLE requests ADD COLUMN start_us INTEGER;     -- footage window
ALTER TABLE requests ADD COLUMN end_us INTEGER;
ALTER TABLE requests ADD COLUMN expires_us INTEGER;   -- set when approved
"""

# v4: viewing links (nvr.web.links); only the token's sha256 is stored.
SCHEMA_V4 = """
CREATE TABLE view_links (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    actor       TEXT NOT NULL,
    uid         INTEGER,
    role        TEXT NOT NULL,
    cameras     TEXT NOT NULL,
    start_us    INTEGER,
    end_us      INTEGER,
    purpose     TEXT NOT NULL,
    created_us  INTEGER NOT NULL,
    expires_us  INTEGER NOT NULL,
    ended_us    INTEGER,
    ended_why   TEXT
)
"""

MIGRATIONS: list[str] = [SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4]
SCHEMA_VERSION = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """Raised when the index was written by a newer nvr than this one."""


def open_file(path: Path | str, *, readonly: bool = True,
              check_same_thread: bool = True) -> sqlite3.Connection:
    """A plain connection of its own to an index file, not migrated and not through `Db`
    (see "Connections" above). Read-only unless `readonly=False` (a copy no daemon uses)."""
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30,
                               check_same_thread=check_same_thread)
    return sqlite3.connect(path, timeout=30, check_same_thread=check_same_thread)


def open_image(data: bytearray) -> sqlite3.Connection:
    """An in-memory database of exactly `data` (an index's serialized pages). Views and
    triggers of those pages run no function not marked harmless: whoever wrote the bytes is
    not trusted by the reader. Raises sqlite3.Error if the bytes are not a database."""
    db = sqlite3.connect(":memory:")
    try:
        db.execute("PRAGMA trusted_schema=OFF")
        db.deserialize(data)
    except BaseException:
        db.close()
        raise
    return db


def integrity(db: sqlite3.Connection) -> str:
    """SQLite's integrity check: "ok", or its first complaint."""
    return str(db.execute("PRAGMA integrity_check").fetchone()[0])


def user_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def serialize(path: Path | str) -> bytes:
    """Every page of the index (the WAL's newest included), read in one read transaction: one
    consistent snapshot, safe while the daemon writes."""
    src = open_file(path)
    try:
        return src.serialize()
    finally:
        src.close()


async def connect(path: Path) -> Db:
    """Open (creating if needed) and migrate the index. Rows come back as sqlite3.Row."""
    conn = await _connect(path)
    db = Db(conn)
    db.path = str(path)
    return db


async def _connect(path: Path) -> aiosqlite.Connection:
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


async def get_meta(db: Db, key: str) -> str | None:
    async with db.execute("SELECT value FROM meta WHERE key = ?", (key,)) as cur:
        row = await cur.fetchone()
    return None if row is None else str(row[0])


async def set_meta(db: Db, key: str, value: str) -> None:
    await db.execute(
        "INSERT INTO meta (key, value) VALUES (?, ?) "
        "ON CONFLICT(key) DO UPDATE SET value = excluded.value",
        (key, value),
    )


# ---- units of work ---------------------------------------------------------------------------
#
# One connection is shared by every task of the daemon, and SQLite has one transaction per
# connection: a statement a task sends while another task's BEGIN is open joins that
# transaction, and that task's ROLLBACK takes it along. So every statement goes through the
# `Db` below, which owns one lock for the connection:
#
#   * `async with db.unit():` takes the lock, BEGIN IMMEDIATE … COMMIT (or ROLLBACK on any
#     exception). Every statement the *same task* runs meanwhile, through any store (Index,
#     Holds, AuditLog, …), is part of that unit; a unit opened inside it is a SAVEPOINT.
#   * a statement outside any unit is a unit of one: it waits for the lock and runs alone in
#     autocommit, its rows fetched before the lock is let go.
#
# No task can therefore run a statement inside another task's transaction, and an action and
# its audit row, written in one unit, commit or vanish together. A unit belongs to the task
# that opened it: a task it spawns (asyncio.gather, wait_for, create_task) is outside it and
# waits for it, so never await such a child's database work from inside a unit.


class Rows:
    """What a statement returned, fetched whole while the connection was ours."""

    __slots__ = ("_rows", "rowcount", "lastrowid")

    def __init__(self, rows: list[sqlite3.Row], rowcount: int, lastrowid: int | None) -> None:
        self._rows, self.rowcount, self.lastrowid = rows, rowcount, lastrowid

    async def fetchone(self) -> sqlite3.Row | None:
        return self._rows[0] if self._rows else None

    async def fetchall(self) -> list[sqlite3.Row]:
        return self._rows

    async def __aenter__(self) -> Rows:
        return self

    async def __aexit__(self, *exc: object) -> None:
        return None


class _Statement:
    """`await db.execute(...)` and `async with db.execute(...) as cur:` both work."""

    def __init__(self, coro: Coroutine[Any, Any, Rows]) -> None:
        self._coro = coro

    def __await__(self) -> Generator[Any, None, Rows]:
        return self._coro.__await__()

    async def __aenter__(self) -> Rows:
        return await self._coro

    async def __aexit__(self, *exc: object) -> None:
        return None


class Db:
    """The index connection, reachable only through units of work (see above)."""

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self.conn = conn
        self._lock = asyncio.Lock()
        self._owner: asyncio.Task[Any] | None = None
        self._depth = 0
        self.path = ""

    def in_unit(self) -> bool:
        """True when the calling task holds the connection (inside its unit)."""
        return self._owner is not None and self._owner is asyncio.current_task()

    @asynccontextmanager
    async def unit(self) -> AsyncIterator[Db]:
        """One unit of work: everything this task runs inside commits or rolls back as one."""
        if self.in_unit():
            self._depth += 1
            name = f"unit{self._depth}"
            await self.conn.execute(f"SAVEPOINT {name}")
            try:
                yield self
            except BaseException:
                await self.conn.execute(f"ROLLBACK TO {name}")
                await self.conn.execute(f"RELEASE {name}")
                raise
            else:
                await self.conn.execute(f"RELEASE {name}")
            finally:
                self._depth -= 1
            return
        async with self._lock:
            self._owner = asyncio.current_task()
            try:
                await self.conn.execute("BEGIN IMMEDIATE")
                try:
                    yield self
                except BaseException:
                    await self.conn.execute("ROLLBACK")
                    raise
                await self.conn.execute("COMMIT")
            finally:
                self._owner = None

    async def _run(self, sql: str, params: Any, many: bool) -> Rows:
        if self.in_unit():
            return await self._raw(sql, params, many)
        async with self._lock:  # a unit of one statement
            self._owner = asyncio.current_task()
            try:
                return await self._raw(sql, params, many)
            finally:
                self._owner = None

    async def _raw(self, sql: str, params: Any, many: bool) -> Rows:
        if many:
            cur = await self.conn.executemany(sql, params)
        else:
            cur = await self.conn.execute(sql, params)
        try:
            rows = list(await cur.fetchall())
            return Rows(rows, cur.rowcount, cur.lastrowid)
        finally:
            await cur.close()

    def execute(self, sql: str, params: Any = ()) -> _Statement:
        return _Statement(self._run(sql, params, False))

    def executemany(self, sql: str, params: Iterable[Any]) -> _Statement:
        return _Statement(self._run(sql, params, True))

    async def close(self) -> None:
        async with self._lock:
            await self.conn.close()


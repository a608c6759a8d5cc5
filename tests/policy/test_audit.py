"""The audit chain (docs/policy.md: "Every decision, allowed or denied, … is appended to a
hash-chained audit log" — clause "Failure to comply with this policy may result in disciplinary
action"). Tampering is done the way an insider would: sqlite3 on the database file."""

from __future__ import annotations

import asyncio
import hashlib
import json
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvr.policy.audit import GENESIS, AuditLog, canonical_json, chain_hash, verify_rows
from nvr.storage.db import connect

T0 = 1_767_225_600_000_000  # 2026-01-01T00:00:00Z


@pytest.fixture
async def log(tmp_path: Path) -> AsyncIterator[AuditLog]:
    db = await connect(tmp_path / "index.db")
    try:
        yield AuditLog(db)
    finally:
        await db.close()


async def _fill(log: AuditLog, n: int = 6) -> None:
    for i in range(n):
        await log.append(
            at_us=T0 + i * 1_000_000, actor=f"user{i}", uid=1000 + i, role="director",
            action="export", allowed=i % 2 == 0,
            detail={"camera": "front-entrance", "reason": f"incident {i}", "ünïcode": "é"},
        )


def _sql(tmp_path: Path, *statements: str) -> None:
    con = sqlite3.connect(tmp_path / "index.db")
    try:
        with con:
            for stmt in statements:
                con.execute(stmt)
    finally:
        con.close()


async def test_intact_chain_verifies_and_rows_round_trip(log: AuditLog) -> None:
    assert (await log.verify()).ok  # empty log
    assert await log.head() == (0, GENESIS)
    await _fill(log)
    result = await log.verify()
    assert result.ok and result.first_bad_seq is None and result.rows == 6
    rows = await log.rows()
    assert [r.seq for r in rows] == [1, 2, 3, 4, 5, 6]
    assert rows[0].prev_hash == GENESIS
    assert all(b.prev_hash == a.hash for a, b in zip(rows, rows[1:], strict=False))
    assert await log.head() == (6, rows[-1].hash) == (result.head_seq, result.head_hash)
    d = rows[1].to_dict()
    assert set(d) >= {"seq", "at", "actor", "role", "action", "allowed", "detail", "hash"}
    assert d["at"] == "2026-01-01T00:00:01.000000Z" and d["allowed"] is False
    assert d["detail"]["ünïcode"] == "é"
    json.dumps(d)  # JSON-ready
    assert [r.seq for r in await log.rows(since_us=T0 + 4_000_000)] == [5, 6]


async def test_hash_formula_is_the_documented_one(log: AuditLog) -> None:
    row = await log.append(at_us=T0, actor="nvr", uid=0, role="system", action="retention_delete",
                           allowed=True, detail={"path": "/x", "b": [1, 2]})
    content = canonical_json({"seq": 1, "at_us": T0, "actor": "nvr", "uid": 0, "role": "system",
                              "action": "retention_delete", "allowed": True,
                              "detail": {"path": "/x", "b": [1, 2]}})
    assert row.hash == hashlib.sha256((GENESIS + "\n" + content).encode()).hexdigest()
    assert row.hash == chain_hash(GENESIS, seq=1, at_us=T0, actor="nvr", uid=0, role="system",
                                  action="retention_delete", allowed=True,
                                  detail={"b": [1, 2], "path": "/x"})


@pytest.mark.parametrize(
    "column, value",
    [("at_us", "at_us + 1"), ("actor", "'someone-else'"), ("uid", "0"), ("role", "'public'"),
     ("action", "'status'"), ("allowed", "1 - allowed"),
     ("detail", "'{\"camera\":\"front-entrance\",\"reason\":\"nothing to see\"}'"),
     ("hash", "'" + "a" * 64 + "'")],
)
async def test_editing_any_field_is_found_at_that_seq(
    log: AuditLog, tmp_path: Path, column: str, value: str
) -> None:
    await _fill(log)
    _sql(tmp_path, f"UPDATE audit SET {column} = {value} WHERE seq = 3")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 3, result
    assert "seq 3" in result.problem


async def test_editing_and_rehashing_one_row_is_found_at_the_next(
    log: AuditLog, tmp_path: Path
) -> None:
    await _fill(log)
    r = (await log.rows())[2]
    forged = chain_hash(r.prev_hash, seq=3, at_us=r.at_us, actor=r.actor, uid=r.uid, role=r.role,
                        action=r.action, allowed=not r.allowed, detail=r.detail)
    _sql(tmp_path, f"UPDATE audit SET allowed = 1 - allowed, hash = '{forged}' WHERE seq = 3")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 4
    assert "prev_hash" in result.problem


async def test_deleting_a_row_names_the_missing_seq(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    _sql(tmp_path, "DELETE FROM audit WHERE seq = 4")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 4
    assert "missing" in result.problem and "deleted" in result.problem


async def test_deleting_and_renumbering_is_found(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    _sql(tmp_path, "DELETE FROM audit WHERE seq = 2",
         "UPDATE audit SET seq = seq - 1 WHERE seq > 2")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 2


async def test_deleting_the_first_row_is_found(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    _sql(tmp_path, "DELETE FROM audit WHERE seq = 1")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 1


async def test_swapping_two_rows_contents_is_found(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    cols = "at_us, actor, uid, role, action, allowed, detail, prev_hash, hash"
    _sql(tmp_path,
         f"CREATE TEMP TABLE t AS SELECT seq, {cols} FROM audit WHERE seq IN (2, 5)",
         "UPDATE audit SET (" + cols + ") = (SELECT " + cols
         + " FROM t WHERE t.seq = 7 - audit.seq) WHERE seq IN (2, 5)")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 2


async def test_forged_row_inserted_in_the_middle_is_found(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    rows = await log.rows()
    # The forger knows the formula and links the new row to seq 2 correctly…
    h = chain_hash(rows[1].hash, seq=3, at_us=rows[1].at_us + 1, actor="director", uid=1000,
                   role="director", action="grant_create", allowed=True, detail={})
    _sql(tmp_path,
         "UPDATE audit SET seq = seq + 100 WHERE seq >= 3",
         "UPDATE audit SET seq = seq - 99 WHERE seq >= 103",
         "INSERT INTO audit (seq, at_us, actor, uid, role, action, allowed, detail, prev_hash,"
         f" hash) VALUES (3, {rows[1].at_us + 1}, 'director', 1000, 'director', 'grant_create',"
         f" 1, '{{}}', '{rows[1].hash}', '{h}')")
    result = await log.verify()
    # …but the row after it no longer links to its predecessor.
    assert not result.ok and result.first_bad_seq == 4, result


async def test_forged_row_appended_with_a_made_up_hash(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    _sql(tmp_path,
         "INSERT INTO audit (seq, at_us, actor, uid, role, action, allowed, detail, prev_hash,"
         f" hash) SELECT 7, at_us, actor, uid, role, action, allowed, detail, hash, '{'b' * 64}'"
         " FROM audit WHERE seq = 6")
    result = await log.verify()
    assert not result.ok and result.first_bad_seq == 7


async def test_anchor_from_the_journal_catches_a_rewrite(log: AuditLog, tmp_path: Path) -> None:
    await _fill(log)
    anchor = await log.log_head()
    assert anchor[0] == 6
    assert (await log.verify(anchor)).ok
    _sql(tmp_path, "DELETE FROM audit WHERE seq >= 5")  # truncating leaves a valid chain…
    assert (await log.verify()).ok
    result = await log.verify(anchor)  # …that the logged head exposes
    assert not result.ok and result.first_bad_seq == 5


async def test_concurrent_appends_keep_one_chain(log: AuditLog) -> None:
    await asyncio.gather(*(
        log.append(at_us=T0 + i, actor="nvr", uid=0, role="system", action="status",
                   allowed=True, detail={"i": i})
        for i in range(40)
    ))
    result = await log.verify()
    assert result.ok and result.rows == 40 and result.head_seq == 40


def test_verify_rows_is_pure_on_an_empty_list() -> None:
    result = verify_rows([])
    assert result.ok and result.head_seq == 0 and result.head_hash == GENESIS


async def test_append_waits_out_another_tasks_transaction(log: AuditLog) -> None:
    """The index connection is shared: retention may be inside BEGIN … COMMIT when a decision
    is audited. The append must neither fail nor join (and so risk losing) that transaction."""
    other_began = asyncio.Event()
    release = asyncio.Event()

    async def other_task_rolls_back() -> None:
        try:
            async with log.db.unit():
                await log.db.execute(
                    "INSERT INTO meta (key, value) VALUES ('scratch', 'x')")
                other_began.set()
                await release.wait()
                raise RuntimeError("the other task gives up its work")
        except RuntimeError:
            pass

    other = asyncio.create_task(other_task_rolls_back())
    await other_began.wait()
    task = asyncio.create_task(log.append(at_us=T0, actor="nvr", uid=0, role="system",
                                          action="status", allowed=True, detail={}))
    await asyncio.sleep(0.05)
    assert not task.done()
    release.set()
    await other
    row = await task  # …and the audit row is still written, in its own transaction
    assert row.seq == 1 and [r.seq for r in await log.rows()] == [1]
    assert (await log.verify()).ok

"""Units of work on the one shared index connection (nvr.storage.db.Db), real SQLite."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from nvr.policy.audit import AuditLog
from nvr.retention.holds import Holds
from nvr.storage.db import connect
from nvr.storage.index import Index

T0 = 1_772_355_600_000_000


class Boom(Exception):
    pass


async def test_a_rolled_back_unit_never_takes_another_tasks_committed_row(tmp_path: Path) -> None:
    db = await connect(tmp_path / "index.db")
    index, holds = Index(db), Holds(db)
    inside = asyncio.Event()
    other_done = asyncio.Event()

    async def rolls_back() -> None:
        with pytest.raises(Boom):
            async with index.unit():
                await holds.create(["a"], T0, T0 + 1, "doomed", None, None, "director", T0)
                inside.set()
                # Give the other task every chance to run its statement inside our BEGIN.
                with pytest.raises(TimeoutError):
                    await asyncio.wait_for(other_done.wait(), 0.3)
                raise Boom

    async def commits_alone() -> str:
        await inside.wait()
        hold = await holds.create(["b"], T0, T0 + 1, "kept", None, None, "director", T0)
        other_done.set()
        return hold.id

    try:
        _, kept_id = await asyncio.gather(rolls_back(), commits_alone())
        reasons = [h.reason for h in await holds.list(True, now_us=T0)]
        assert reasons == ["kept"], reasons
        assert (await holds.get(kept_id)) is not None
    finally:
        await db.close()


async def test_an_action_and_its_audit_row_commit_or_vanish_together(tmp_path: Path) -> None:
    db = await connect(tmp_path / "index.db")
    index, holds, audit = Index(db), Holds(db), AuditLog(db)
    try:
        with pytest.raises(Boom):
            async with index.unit():
                await holds.create(["a"], T0, T0 + 1, "x", None, None, "director", T0)
                await audit.append(at_us=T0, actor="d", uid=1, role="director",
                                   action="hold_create", allowed=True, detail={})
                raise Boom
        assert await holds.list(True, now_us=T0) == [] and await audit.rows() == []

        async with index.unit():
            await holds.create(["a"], T0, T0 + 1, "y", None, None, "director", T0)
            # A nested unit that fails rolls back alone (a SAVEPOINT); the outer one commits.
            with pytest.raises(Boom):
                async with index.unit():
                    await audit.append(at_us=T0, actor="d", uid=1, role="director",
                                       action="inner", allowed=True, detail={})
                    raise Boom
            await audit.append(at_us=T0, actor="d", uid=1, role="director",
                               action="hold_create", allowed=True, detail={})
        assert [h.reason for h in await holds.list(True, now_us=T0)] == ["y"]
        assert [r.action for r in await audit.rows()] == ["hold_create"]
        assert (await audit.verify()).ok
    finally:
        await db.close()


async def test_concurrent_units_and_single_statements_all_land(tmp_path: Path) -> None:
    """Many tasks at once, units and lone statements mixed: every audit row lands once and
    the chain stays whole (no task ever runs inside another's transaction)."""
    db = await connect(tmp_path / "index.db")
    index, audit = Index(db), AuditLog(db)

    async def writer(n: int) -> None:
        for i in range(10):
            if (n + i) % 2:
                async with index.unit():
                    await index.add_gap("a", T0 + i, T0 + i + 1, "offline")
                    await audit.append(at_us=T0, actor=f"t{n}", uid=None, role="system",
                                       action="gap", allowed=True, detail={"i": i})
            else:
                await audit.append(at_us=T0, actor=f"t{n}", uid=None, role="system",
                                   action="lone", allowed=True, detail={"i": i})
            await asyncio.sleep(0)

    try:
        await asyncio.gather(*(writer(n) for n in range(8)))
        rows = await audit.rows()
        assert len(rows) == 80 and (await audit.verify()).ok
        assert len(await index.gaps("a")) == sum(1 for r in rows if r.action == "gap")
    finally:
        await db.close()

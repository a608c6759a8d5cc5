"""Refusals are audited, rate-limited per account and coalesced (real SQLite, real chain)."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvr.policy.audit import AuditLog
from nvr.policy.refusals import RefusalLimiter, cap_text
from nvr.storage.db import connect

S = 1_000_000


@pytest.fixture
async def audit(tmp_path: Path) -> AsyncIterator[AuditLog]:
    db = await connect(tmp_path / "index.db")
    try:
        yield AuditLog(db)
    finally:
        await db.close()


async def _refuse(lim: RefusalLimiter, at_us: int, uid: int = 1001, text: str = "x",
                  action: str = "export") -> bool:
    return await lim.refused(at_us=at_us, actor=f"u{uid}", uid=uid, role="public",
                             action=action, detail={"reason": text, "refusal": "no"})


async def test_a_flood_is_a_burst_of_rows_and_one_counting_row(audit: AuditLog) -> None:
    lim = RefusalLimiter(audit, burst=5, window_s=60)
    t0 = 1_800_000_000 * S
    own = [await _refuse(lim, t0 + i * 1000) for i in range(1000)]
    assert own.count(True) == 5
    # Another account is not limited by the first one's flood.
    assert await _refuse(lim, t0 + 2 * S, uid=1002)
    assert await lim.flush(t0 + 30 * S) == 0  # the window is not over yet
    assert await lim.flush(t0 + 61 * S) == 1
    rows = await audit.rows()
    assert len(rows) == 7
    coalesced = [r for r in rows if r.action == "refusals_coalesced"]
    assert len(coalesced) == 1 and coalesced[0].uid == 1001 and not coalesced[0].allowed
    assert coalesced[0].detail["count"] == 995
    assert coalesced[0].detail["actions"] == {"export": 995}
    assert (await audit.verify()).ok
    # A new window audits in full again.
    assert await _refuse(lim, t0 + 62 * S)


async def test_each_action_gets_its_own_rows_up_to_an_account_limit(audit: AuditLog) -> None:
    lim = RefusalLimiter(audit, burst=2, account_burst=7)
    t0 = 1_800_000_000 * S
    got = [await _refuse(lim, t0 + i, action=f"a{i % 5}") for i in range(100)]
    assert got[:5] == [True] * 5  # a person refused now and then: every refusal its own row
    assert got.count(True) == 7
    await lim.flush()
    rows = await audit.rows()
    assert rows[-1].action == "refusals_coalesced" and rows[-1].detail["count"] == 93


async def test_caller_text_is_capped_and_says_so(audit: AuditLog) -> None:
    lim = RefusalLimiter(audit, max_text=200)
    await _refuse(lim, 1_800_000_000 * S, text="A" * 5000)
    row = (await audit.rows())[0]
    assert row.detail["reason"].startswith("A" * 200)
    assert "4800 more characters not kept" in row.detail["reason"]
    assert len(row.detail_text) < 600
    assert cap_text({"k": ["b" * 300]})["k"][0].endswith("[100 more characters not kept]")


async def test_shutdown_flush_keeps_every_counted_refusal(audit: AuditLog, tmp_path: Path) -> None:
    lim = RefusalLimiter(audit, burst=2)
    t0 = 1_800_000_000 * S
    for i in range(50):
        await _refuse(lim, t0 + i, text="y" * 4000)
    await lim.flush()
    rows = await audit.rows()
    assert [r.action for r in rows] == ["export", "export", "refusals_coalesced"]
    assert rows[-1].detail["count"] == 48
    # 50 refusals with 4 KB of text each cost a few KB of index, not 200 KB.
    assert os.path.getsize(tmp_path / "index.db") < 200_000

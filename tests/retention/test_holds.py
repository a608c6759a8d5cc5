"""Holds on a real SQLite index: create, list, release (once), expiry."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from pathlib import Path

import aiosqlite
import pytest

from nvr.errors import UsageError
from nvr.retention.holds import Holds
from nvr.storage.db import connect
from nvr.timeutil import US, parse_time

NOW = parse_time("2026-03-01T12:00:00Z")
DAY = 86_400 * US


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[aiosqlite.Connection]:
    conn = await connect(tmp_path / "index.db")
    yield conn
    await conn.close()


async def test_create_list_release(db: aiosqlite.Connection) -> None:
    holds = Holds(db)
    h = await holds.create(["lobby", "front", "lobby"], NOW - DAY, NOW + DAY, "  assault ",
                           "INC-42", None, "director", NOW)
    assert re.fullmatch(r"H-[0-9a-f]{8}", h.id)
    assert h.cameras == ("front", "lobby") and h.reason == "assault"
    d = h.to_dict(NOW)
    assert d["start"] == "2026-02-28T12:00:00.000000Z" and d["until"] is None
    assert d["active"] is True and d["incident"] == "INC-42" and d["created_by"] == "director"
    assert await holds.get(h.id) == h
    assert [x.id for x in await holds.list(now_us=NOW)] == [h.id]
    (info,) = await holds.active(NOW)
    assert info.cameras == {"front", "lobby"} and info.end_us == NOW + DAY

    released = await holds.release(h.id, "director", "case closed", NOW + 10)
    assert released.released_by == "director" and released.release_reason == "case closed"
    assert await holds.active(NOW + 10) == []
    assert await holds.list(now_us=NOW + 10) == []
    assert [x.id for x in await holds.list(True, now_us=NOW + 10)] == [h.id]
    with pytest.raises(UsageError, match=rf"hold {h.id} was already released at .* by director"):
        await holds.release(h.id, "director", "again", NOW + 20)
    with pytest.raises(UsageError, match="no hold 'H-nope'"):
        await holds.release("H-nope", "director", "why", NOW)


async def test_expiry_and_validation(db: aiosqlite.Connection) -> None:
    holds = Holds(db)
    h = await holds.create(["a"], NOW - DAY, NOW, "slip and fall", None, NOW + DAY, "director", NOW)
    assert [x.id for x in await holds.active(NOW + DAY - 1)] == [h.id]
    assert await holds.active(NOW + DAY) == []
    assert (await holds.get(h.id)).to_dict(NOW + DAY)["active"] is False  # type: ignore[union-attr]
    for bad in (
        dict(cameras=[], start_us=NOW, end_us=NOW + 1, reason="r", until_us=None),
        dict(cameras=["a"], start_us=NOW, end_us=NOW, reason="r", until_us=None),
        dict(cameras=["a"], start_us=NOW, end_us=NOW + 1, reason=" ", until_us=None),
        dict(cameras=["a"], start_us=NOW, end_us=NOW + 1, reason="r", until_us=NOW - 1),
    ):
        with pytest.raises(UsageError):
            await holds.create(incident=None, created_by="director", now_us=NOW, **bad)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="needs a reason"):
        await holds.release(h.id, "director", "", NOW)

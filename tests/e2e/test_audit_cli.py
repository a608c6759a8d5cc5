"""`nvr audit verify` through the daemon: exit 0 on an intact log, 65 naming the first bad seq
after someone edits, deletes or swaps rows in the index with sqlite3."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from tests.e2e.harness import Recorder
from tests.support import is_root

pytestmark = pytest.mark.skipif(not is_root(), reason="runs as real accounts: needs root")


@pytest.fixture
def rec() -> Iterator[Recorder]:
    r = Recorder([]).start()
    try:
        for i in range(6):  # some decisions to chain: allowed and refused
            r.cli("staff", "breach", "report", "--details", f"note {i}")
            r.cli("staff", "audit", "list")
        yield r
    finally:
        r.cleanup()


def tamper(rec: Recorder, sql: str) -> None:
    with sqlite3.connect(rec.root / "index.db") as db:
        db.executescript(sql)


@pytest.mark.parametrize(
    ("name", "sql", "bad_seq"),
    [
        ("edit-allowed", "UPDATE audit SET allowed = 1 WHERE seq = 4;", 4),
        ("edit-actor", "UPDATE audit SET actor = 'nvrtest-director' WHERE seq = 3;", 3),
        ("delete", "DELETE FROM audit WHERE seq = 5;", 5),
        ("swap", "UPDATE audit SET seq = -1 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 3;"
                 " UPDATE audit SET seq = 3 WHERE seq = -1;", 2),
    ],
)
def test_tampering_is_found_at_the_first_bad_row(rec: Recorder, name: str, sql: str,
                                                 bad_seq: int) -> None:
    ok = rec.cli("staff", "audit", "verify")
    assert ok.code == 0, ok.err
    tamper(rec, sql)
    res = rec.cli("staff", "audit", "verify")
    assert res.code == 65, (res.code, res.err)
    assert f"seq {bad_seq}" in res.err, res.err

"""The access log: every decision, allowed or denied, as a hash chain in the `audit` table.

Policy: "Failure to comply with this policy may result in disciplinary action" — so who did what
must be provable afterwards, and a quiet edit of the log must show.

Chain: row n carries `prev_hash` = hash of row n-1 (64 zeros for seq 1) and
    hash = sha256(prev_hash_hex + "\\n" + canonical_json({seq, at_us, actor, uid, role, action,
                                                           allowed, detail}))
so editing, deleting, inserting or swapping a row breaks the chain at the first row touched.
The chain is not keyed: someone who rewrites the whole database can recompute it. That is why
the daemon signs the head (seq, hash) into checkpoints kept outside the database and logged to
the journal (nvr.policy.checkpoint): a rewritten database then disagrees with them, and
`verify_rows(rows, anchor=...)` checks a head seen earlier. The statements are in
nvr.storage.audit_store.
"""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog

from nvr.storage import audit_store
from nvr.storage.db import Db
from nvr.timeutil import to_iso

GENESIS = "0" * 64


def canonical_json(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def chain_hash(
    prev_hash: str, *, seq: int, at_us: int, actor: str, uid: int | None, role: str,
    action: str, allowed: bool, detail: Mapping[str, Any],
) -> str:
    content = canonical_json(
        {"seq": seq, "at_us": at_us, "actor": actor, "uid": uid, "role": role,
         "action": action, "allowed": allowed, "detail": dict(detail)}
    )
    return hashlib.sha256((prev_hash + "\n" + content).encode("utf-8")).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditRow:
    seq: int
    at_us: int
    actor: str
    uid: int | None
    role: str
    action: str
    allowed: bool
    detail: dict[str, Any]
    prev_hash: str
    hash: str
    # The detail column exactly as stored; verify checks it is the canonical form.
    detail_text: str = ""

    def expected_hash(self) -> str:
        return chain_hash(
            self.prev_hash, seq=self.seq, at_us=self.at_us, actor=self.actor, uid=self.uid,
            role=self.role, action=self.action, allowed=self.allowed, detail=self.detail,
        )

    def to_dict(self) -> dict[str, Any]:
        """The shape (docs/commands.md) of `nvr audit list --json` (plus "uid")."""
        return {
            "seq": self.seq, "at": to_iso(self.at_us), "actor": self.actor, "uid": self.uid,
            "role": self.role, "action": self.action, "allowed": self.allowed,
            "detail": self.detail, "hash": self.hash,
        }


@dataclass(frozen=True, slots=True)
class VerifyResult:
    ok: bool
    first_bad_seq: int | None
    problem: str  # "" when ok
    rows: int = 0
    head_seq: int = 0
    head_hash: str = GENESIS

    def to_dict(self) -> dict[str, Any]:
        return {"ok": self.ok, "first_bad_seq": self.first_bad_seq, "problem": self.problem,
                "rows": self.rows, "head_seq": self.head_seq, "head_hash": self.head_hash}


def parse_row(r: Sequence[Any]) -> AuditRow:
    """An AuditRow from the stored columns (nvr.storage.audit_store.COLUMNS order)."""
    text = str(r[7])
    try:
        detail = json.loads(text)
    except ValueError:
        detail = {"_unparseable": text}
    if not isinstance(detail, dict):
        detail = {"_not_an_object": detail}
    return AuditRow(
        seq=int(r[0]), at_us=int(r[1]), actor=str(r[2]), uid=None if r[3] is None else int(r[3]),
        role=str(r[4]), action=str(r[5]), allowed=bool(r[6]), detail=detail,
        prev_hash=str(r[8]), hash=str(r[9]), detail_text=text,
    )


def row_problem(row: AuditRow, want_seq: int, prev_hash: str) -> str:
    """What is wrong with one row given the row before it; "" if nothing."""
    if row.seq != want_seq:
        if row.seq > want_seq:
            gone = f"seq {want_seq}" if row.seq == want_seq + 1 else f"seqs {want_seq}..{row.seq - 1}"
            return f"{gone} missing: the row was deleted (seq {row.seq} follows seq {want_seq - 1})"
        return f"seq {row.seq} out of order after seq {want_seq - 1}"
    if row.prev_hash != prev_hash:
        before = "the genesis hash" if want_seq == 1 else f"the hash of seq {want_seq - 1}"
        return (f"seq {row.seq}: prev_hash does not match {before}: a row before it was "
                "deleted, inserted or rewritten")
    if row.detail_text and row.detail_text != canonical_json(row.detail):
        return f"seq {row.seq}: detail is not the canonical JSON that was hashed: edited"
    if row.expected_hash() != row.hash:
        return (f"seq {row.seq}: content does not match its hash: a field was edited, "
                "or rows were swapped or forged")
    return ""


def verify_rows(
    rows: Iterable[AuditRow], anchor: tuple[int, str] | None = None
) -> VerifyResult:
    """Walk the chain in seq order. `anchor` = a (seq, hash) head seen earlier, e.g. in the
    journal: the chain must still contain it, which catches a wholesale rewrite."""
    want_seq, prev_hash, count = 1, GENESIS, 0
    anchor_seen = anchor is None
    for row in rows:
        problem = row_problem(row, want_seq, prev_hash)
        if problem:
            return VerifyResult(False, min(row.seq, want_seq), problem, count, want_seq - 1,
                                prev_hash)
        if anchor is not None and row.seq == anchor[0]:
            if row.hash != anchor[1]:
                return VerifyResult(False, row.seq,
                                    f"seq {row.seq}: hash differs from the head logged earlier "
                                    f"({anchor[1][:16]}…): the log was rewritten",
                                    count, want_seq - 1, prev_hash)
            anchor_seen = True
        want_seq, prev_hash, count = row.seq + 1, row.hash, count + 1
    if not anchor_seen and anchor is not None:
        return VerifyResult(False, want_seq,
                            f"the chain ends at seq {want_seq - 1} but seq {anchor[0]} was "
                            "logged earlier: rows at the end were deleted",
                            count, want_seq - 1, prev_hash)
    return VerifyResult(True, None, "", count, want_seq - 1, prev_hash)


def read_page(db_path: Path, *, after_seq: int = 0, limit: int = 1000,
              since_us: int | None = None) -> list[dict[str, Any]]:
    """One page of `audit list` as the dicts of its JSON shape (docs/commands.md), read, parsed
    and shaped in the calling (worker) thread from a read-only connection of its own: the
    event loop only encodes it."""
    rows = audit_store.page(db_path, after_seq=after_seq, limit=limit, since_us=since_us)
    return [parse_row(r).to_dict() for r in rows]


def stream_rows(db_path: Path) -> Iterator[AuditRow]:
    """Every row in seq order, streamed from a read-only connection of its own (blocking)."""
    return (parse_row(r) for r in audit_store.stream(db_path))


class AuditLog:
    def __init__(self, db: Db) -> None:
        self.db = db

    async def append(
        self, *, at_us: int, actor: str, uid: int | None, role: str, action: str,
        allowed: bool, detail: dict[str, Any],
    ) -> AuditRow:
        text = canonical_json(detail)
        detail_copy = json.loads(text)  # what a reader gets back, e.g. tuples become lists
        # BEGIN IMMEDIATE under the connection's transaction lock: no other task's
        # transaction interleaves (its ROLLBACK would take our row with it), and no other
        # process can slip a row in between reading the head and writing after it.
        async with self.db.unit():
            last = await audit_store.head(self.db)
            seq = 1 if last is None else last[0] + 1
            prev = GENESIS if last is None else last[1]
            row = AuditRow(seq, at_us, actor, uid, str(role), str(action), bool(allowed),
                           detail_copy, prev, "", text)
            row = dataclasses.replace(row, hash=row.expected_hash())
            await audit_store.insert(self.db, (
                row.seq, row.at_us, row.actor, row.uid, row.role, row.action,
                int(row.allowed), text, row.prev_hash, row.hash))
        return row

    async def rows(self, since_us: int | None = None) -> list[AuditRow]:
        return [parse_row(r) for r in await audit_store.rows(self.db, since_us)]

    async def verify(self, anchor: tuple[int, str] | None = None) -> VerifyResult:
        rows = await self.rows()
        # Hashing a long log is CPU work: keep it off the event loop.
        return await asyncio.to_thread(verify_rows, rows, anchor)

    async def head(self) -> tuple[int, str]:
        """(seq, hash) of the last row; (0, 64 zeros) for an empty log."""
        last = await audit_store.head(self.db)
        return (0, GENESIS) if last is None else last

    async def log_head(self, logger: Any = None) -> tuple[int, str]:
        seq, digest = await self.head()
        (logger or structlog.get_logger("nvr.audit")).info(
            "audit_chain_head", seq=seq, hash=digest
        )
        return seq, digest


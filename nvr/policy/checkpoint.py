"""Signed checkpoints of the audit chain's head, kept outside the database.

The hash chain (nvr.policy.audit) shows an edited or deleted row in the middle, but not rows
cut from the end: the shorter chain is still a valid chain. So the daemon writes, every minute
(when the head moved) and at every stop, a checkpoint (seq, hash, time) of the head, signed with the
recorder's Ed25519 key, as one JSON line appended to `audit-checkpoints.jsonl` beside the index
(and logs it to the journal). `nvr audit verify` then fails when the chain ends before the newest
checkpoint or disagrees with any checkpoint.

At start, before anything is appended, the daemon compares the head with the newest checkpoint.
If rows were cut while it was stopped, the rows it appends next would reuse the lost seqs, and
the only trace would be a hash disagreement. So it first appends a signed `cut` record ("the
chain was cut after seq N"), which `audit verify` reports from then on.

Line format: {"kind": "head"|"cut", "seq": N, "hash": H, "at": T, ...,
              "fingerprint": F, "sig": base64 Ed25519 over canonical JSON of the other fields}
"""

from __future__ import annotations

import base64
import json
import os
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nvr.export.signing import SigningKey, fingerprint
from nvr.policy.audit import _COLUMNS, GENESIS, _row, _row_problem, canonical_json
from nvr.timeutil import to_iso

CHECKPOINT_NAME = "audit-checkpoints.jsonl"
# Rows fetched per step when walking the chain: memory stays constant whatever the table size.
BATCH = 2000


def checkpoint_path(storage_root: Path) -> Path:
    return Path(storage_root) / CHECKPOINT_NAME


@dataclass(frozen=True, slots=True)
class Checkpoint:
    kind: str  # head, cut
    seq: int   # head: the head's seq; cut: the seq the chain was found to end at
    hash: str
    at_us: int
    extra: dict[str, Any] = field(default_factory=dict)  # cut: {"checkpoint_seq": M}


def _signed_fields(cp: Checkpoint) -> dict[str, Any]:
    return {"kind": cp.kind, "seq": cp.seq, "hash": cp.hash, "at_us": cp.at_us, **cp.extra}


def encode(cp: Checkpoint, key: SigningKey) -> bytes:
    body = _signed_fields(cp)
    sig = key.sign(canonical_json(body).encode("utf-8"))
    line = dict(body, at=to_iso(cp.at_us), fingerprint=key.fingerprint(),
                sig=base64.b64encode(sig).decode("ascii"))
    return canonical_json(line).encode("utf-8") + b"\n"


def append(path: Path, cp: Checkpoint, key: SigningKey) -> dict[str, Any]:
    """Append one signed line and fsync it (blocking: run it in a worker thread). Returns the
    line's fields, for the journal."""
    line = encode(cp, key)
    fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return json.loads(line)  # type: ignore[no-any-return]


@dataclass(slots=True)
class Read:
    checkpoints: list[Checkpoint]
    problems: list[str]  # lines that do not verify: the file itself was tampered with


def read(path: Path, public: Ed25519PublicKey) -> Read:
    out = Read([], [])
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return out
    fp = fingerprint(public)
    with f:
        for n, raw in enumerate(f, 1):
            try:
                line = json.loads(raw)
                sig = base64.b64decode(line.pop("sig"), validate=True)
                line.pop("at", None)
                if line.pop("fingerprint", None) != fp:
                    raise InvalidSignature
                public.verify(sig, canonical_json(line).encode("utf-8"))
                kind, seq, digest, at = (line.pop("kind"), int(line.pop("seq")),
                                         str(line.pop("hash")), int(line.pop("at_us")))
            except (ValueError, KeyError, TypeError, AttributeError, InvalidSignature):
                out.problems.append(f"{path.name} line {n} is not a checkpoint signed by this "
                                    "recorder: the checkpoint file was edited")
                continue
            out.checkpoints.append(Checkpoint(kind, seq, digest, at, line))
    return out


def newest_head(cps: list[Checkpoint]) -> Checkpoint | None:
    heads = [c for c in cps if c.kind == "head"]
    return heads[-1] if heads else None


def cut_record(head: tuple[int, str], newest: Checkpoint | None, now_us: int) -> Checkpoint | None:
    """The `cut` record to write at start when the chain ends before the newest checkpoint."""
    if newest is None or head[0] >= newest.seq:
        return None
    return Checkpoint("cut", head[0], head[1], now_us,
                      {"checkpoint_seq": newest.seq, "checkpoint_at_us": newest.at_us})


def _cut_message(c: Checkpoint) -> str:
    m = int(c.extra.get("checkpoint_seq", 0))
    when = to_iso(int(c.extra.get("checkpoint_at_us", c.at_us)))
    lost = f"seq {m}" if m == c.seq + 1 else f"seqs {c.seq + 1}..{m}"
    return (f"the chain was cut after seq {c.seq}: the signed checkpoint of {when} reached seq "
            f"{m}, so {lost} were deleted (found at the start of {to_iso(c.at_us)})")


def _rows(db_path: Path) -> Iterator[Any]:
    """Every audit row in seq order from a read-only connection of its own, in batches."""
    con = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True, check_same_thread=False)
    try:
        cur = con.execute(f"SELECT {_COLUMNS} FROM audit ORDER BY seq")
        while batch := cur.fetchmany(BATCH):
            yield from batch
    finally:
        con.close()


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    problem: str
    rows: int
    head_seq: int
    head_hash: str
    checkpoints: int


def verify_db(db_path: Path, cps: Read) -> Verdict:
    """Walk the whole chain (streaming, constant memory) and hold it against the checkpoints.
    Blocking: run it in a worker thread. Problems in the order a reader should fix them: a bad
    row first (it names the row), then a recorded cut, then the checkpoints."""
    # Every checkpoint counts, not only the newest for a seq: after a rewrite the daemon signs
    # the rewritten head too, and the older checkpoint of the same seq still disagrees.
    heads: dict[int, list[Checkpoint]] = {}
    for c in cps.checkpoints:
        if c.kind == "head":
            heads.setdefault(c.seq, []).append(c)
    want_seq, prev, count = 1, GENESIS, 0
    disagree: str | None = None
    for raw in _rows(db_path):
        row = _row(raw)
        problem = _row_problem(row, want_seq, prev)
        if problem:
            return Verdict(False, f"audit chain broken at seq {min(row.seq, want_seq)}: "
                           f"{problem}", count, want_seq - 1, prev, len(cps.checkpoints))
        for cp in heads.get(row.seq, ()):
            if cp.hash != row.hash and disagree is None:
                disagree = (f"seq {row.seq} differs from the signed checkpoint of "
                            f"{to_iso(cp.at_us)} (hash {cp.hash[:16]}…): the log was "
                            "rewritten from there on")
        want_seq, prev, count = row.seq + 1, row.hash, count + 1
    head_seq = want_seq - 1

    def verdict(problem: str) -> Verdict:
        return Verdict(not problem, problem, count, head_seq, prev, len(cps.checkpoints))

    if cps.problems:
        return verdict(cps.problems[0])
    cuts = [c for c in cps.checkpoints if c.kind == "cut"]
    if cuts:
        return verdict(_cut_message(cuts[0]))
    newest = newest_head(cps.checkpoints)
    if newest is not None and head_seq < newest.seq:
        return verdict(f"the chain was cut after seq {head_seq}: the signed checkpoint of "
                       f"{to_iso(newest.at_us)} reached seq {newest.seq}")
    return verdict(disagree or "")

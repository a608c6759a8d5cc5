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

Line format: {"kind": "head"|"cut", "seq": N, "hash": H, "at": T, "prev": P, ...,
              "fingerprint": F, "sig": base64 Ed25519 over canonical JSON of the other fields}

The lines are chained: `prev` is the sha256 of the line before it (null on the first
line), and it is signed, so a line removed or edited in the middle breaks the next line's `prev`.
A chain of lines cannot show lines cut from its end, so every line is also logged to the journal
(event `audit_checkpoint`, field `line`: the line itself), and `nvr audit verify --journal FILE`
holds the journal's newest signed line against the file: a file that ends before it was cut.
Lines written before the chain (no `prev` field) still verify, with a warning.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nvr.policy.audit import GENESIS, canonical_json, row_problem, stream_rows
from nvr.storage.keys import SigningKey, fingerprint
from nvr.timeutil import to_iso

CHECKPOINT_NAME = "audit-checkpoints.jsonl"


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


def line_hash(line: bytes) -> str:
    """The sha256 a checkpoint line is named by in the next line's `prev` (without its newline)."""
    return hashlib.sha256(line.rstrip(b"\r\n")).hexdigest()


def encode(cp: Checkpoint, key: SigningKey, prev: str | None = None) -> bytes:
    """One signed line; `prev` is the line_hash of the line before it (None: the first line)."""
    body = dict(_signed_fields(cp), prev=prev)
    sig = key.sign(canonical_json(body).encode("utf-8"))
    line = dict(body, at=to_iso(cp.at_us), fingerprint=key.fingerprint(),
                sig=base64.b64encode(sig).decode("ascii"))
    return canonical_json(line).encode("utf-8") + b"\n"


def append(path: Path, cp: Checkpoint, key: SigningKey) -> dict[str, Any]:
    """Append one signed line and fsync it (blocking: run it in a worker thread). Returns the
    line's fields, for the journal (canonical_json of them is the line itself)."""
    fd = os.open(path, os.O_RDWR | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o600)
    try:
        last = _last_line(fd)
        line = encode(cp, key, None if last is None else line_hash(last))
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return json.loads(line)  # type: ignore[no-any-return]  # the JSON object encode() just wrote


def _last_line(fd: int) -> bytes | None:
    """The file's last line (lines are a few hundred bytes), or None for an empty file."""
    size = os.fstat(fd).st_size
    if size == 0:
        return None
    tail = os.pread(fd, min(size, 64 * 1024), max(0, size - 64 * 1024))
    return tail.rstrip(b"\n").rsplit(b"\n", 1)[-1]


class _NotSigned(Exception):
    pass


_PREV_MISSING = object()  # a line from before the chain: no `prev` field at all


def _parse(raw: bytes, public: Ed25519PublicKey, fp: str) -> tuple[Checkpoint, object]:
    """One line's checkpoint and its `prev` (or _PREV_MISSING); _NotSigned if it does not
    verify with this recorder's key."""
    try:
        line = json.loads(raw)
        sig = base64.b64decode(line.pop("sig"), validate=True)
        line.pop("at", None)
        if line.pop("fingerprint", None) != fp:
            raise InvalidSignature
        public.verify(sig, canonical_json(line).encode("utf-8"))
        kind, seq, digest, at = (line.pop("kind"), int(line.pop("seq")),
                                 str(line.pop("hash")), int(line.pop("at_us")))
        prev = line.pop("prev", _PREV_MISSING)
    except (ValueError, KeyError, TypeError, AttributeError, InvalidSignature) as exc:
        raise _NotSigned from exc
    return Checkpoint(kind, seq, digest, at, line), prev


@dataclass(slots=True)
class Read:
    checkpoints: list[Checkpoint]
    problems: list[str]  # lines that do not verify: the file itself was tampered with
    warnings: list[str] = field(default_factory=list)
    hashes: list[str] = field(default_factory=list)  # line_hash of each signed line, in order


def read(path: Path, public: Ed25519PublicKey) -> Read:
    out = Read([], [])
    try:
        f = path.open("rb")
    except FileNotFoundError:
        return out
    fp = fingerprint(public)
    before: str | None = None  # line_hash of the line before, whatever it holds
    chained = False
    unchained = 0
    with f:
        for n, raw in enumerate(f, 1):
            this = line_hash(raw)
            try:
                cp, prev = _parse(raw, public, fp)
            except _NotSigned:
                out.problems.append(f"{path.name} line {n} is not a checkpoint signed by this "
                                    "recorder: the checkpoint file was edited")
                before = this
                continue
            if prev is _PREV_MISSING:
                if chained:  # the daemon never writes an unchained line after a chained one
                    out.problems.append(f"{path.name} line {n} has no previous-line hash but "
                                        "follows chained lines: the checkpoint file was edited")
                unchained += 1
            elif prev != before:
                chained = True
                out.problems.append(
                    f"{path.name} line {n} names a line before it that is not there"
                    + (": lines were removed from the start of the checkpoint file"
                       if before is None else f" (line {n - 1} differs): a checkpoint line "
                       f"before line {n} was removed or edited"))
            else:
                chained = True
            out.checkpoints.append(cp)
            out.hashes.append(this)
            before = this
    if unchained:
        out.warnings.append(f"{path.name}: {unchained} checkpoint line(s) written before "
                            "checkpoints were chained; a line removed among those would not show")
    return out


@dataclass(frozen=True, slots=True)
class Journal:
    """The checkpoint lines sent from the journal that are signed by this recorder: each of
    them must be in the file, which only ever grows."""
    newest: Checkpoint | None
    newest_hash: str
    warnings: list[str]
    signed: list[tuple[Checkpoint, str]] = field(default_factory=list)  # (line, line_hash)


def read_journal(lines: list[str], public: Ed25519PublicKey) -> Journal:
    """The journal's copies of checkpoint lines (the `line` field of `audit_checkpoint`
    events), oldest first. Lines that do not verify are ignored with a warning: any local
    program can write to the journal, but none can sign."""
    fp = fingerprint(public)
    newest: Checkpoint | None = None
    newest_hash = ""
    signed: list[tuple[Checkpoint, str]] = []
    bad = 0
    for text in lines:
        raw = text.encode("utf-8")
        try:
            cp, _ = _parse(raw, public, fp)
        except _NotSigned:
            bad += 1
            continue
        signed.append((cp, line_hash(raw)))
        if newest is None or (cp.at_us, cp.seq) >= (newest.at_us, newest.seq):
            newest, newest_hash = cp, line_hash(raw)
    warnings = [f"{bad} checkpoint line(s) in the journal are not signed by this recorder; "
                "ignored"] if bad else []
    return Journal(newest, newest_hash, warnings, signed)


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


@dataclass(frozen=True, slots=True)
class Verdict:
    ok: bool
    problem: str
    rows: int
    head_seq: int
    head_hash: str
    checkpoints: int
    warnings: tuple[str, ...] = ()


def _journal_problem(cps: Read, journal: Journal, head_seq: int) -> str:
    j = journal.newest
    if j is None or journal.newest_hash in cps.hashes:
        return ""
    when = to_iso(j.at_us)
    if j.kind == "head" and head_seq < j.seq:
        return (f"the chain was cut after seq {head_seq}: the journal's signed checkpoint of "
                f"{when} reached seq {j.seq}, and the checkpoint file's lines from there on "
                "were removed too")
    newest_at = max((c.at_us for c in cps.checkpoints), default=None)
    if newest_at is None or j.at_us > newest_at:
        return (f"the checkpoint file ends before the journal's newest signed checkpoint "
                f"({j.kind}, seq {j.seq}, {when}): lines were cut from the end of the file")
    return _missing(j)


def _missing(j: Checkpoint) -> str:
    return (f"the journal's signed checkpoint of {to_iso(j.at_us)} ({j.kind}, seq {j.seq}) is "
            "not in the checkpoint file: lines were removed from it, and the audit rows they "
            "named may have been cut or rewritten")


def _journal_gap(cps: Read, journal: Journal) -> str:
    """An older journal line missing from the file: its tail was cut and the daemon has
    appended since (the newest line is then in the file, an older one is not)."""
    have = set(cps.hashes)
    return next((_missing(cp) for cp, h in journal.signed if h not in have), "")


def verify_db(db_path: Path, cps: Read, journal: Journal | None = None) -> Verdict:
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
    for row in stream_rows(db_path):
        problem = row_problem(row, want_seq, prev)
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

    warnings = (*cps.warnings, *(journal.warnings if journal else ()))

    def verdict(problem: str) -> Verdict:
        return Verdict(not problem, problem, count, head_seq, prev, len(cps.checkpoints),
                       warnings)

    if cps.problems:
        return verdict(cps.problems[0])
    cuts = [c for c in cps.checkpoints if c.kind == "cut"]
    if cuts:
        return verdict(_cut_message(cuts[0]))
    newest = newest_head(cps.checkpoints)
    if newest is not None and head_seq < newest.seq:
        return verdict(f"the chain was cut after seq {head_seq}: the signed checkpoint of "
                       f"{to_iso(newest.at_us)} reached seq {newest.seq}")
    if journal is not None and (problem := _journal_problem(cps, journal, head_seq)
                                or _journal_gap(cps, journal)):
        return verdict(problem)
    return verdict(disagree or "")

"""What each `nvr` command does once argparse has read it. Nothing here exits the process.

Offline commands call into their modules (imported late: `nvr check-config` must not import
the recorder). Client commands send one op of the control protocol, with times as typed.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import hashlib
import json
import os
import sys
from collections.abc import Callable
from importlib import import_module
from pathlib import Path
from typing import Any, cast

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from nvr.cli import fmt, render
from nvr.control import client
from nvr.control.protocol import ARGS, Reply
from nvr.control.replies import (
    AuditEntry,
    AuditPage,
    EmergencyList,
    ExportReply,
    ExportShown,
    GrantList,
    HoldList,
    MasksPreviewReply,
    MasksPreviewShown,
    RecordingsReply,
    RequestList,
    RetentionPlan,
    StatusReply,
    StillReply,
    StillShown,
    ViewLink,
    ViewList,
)
from nvr.errors import EX_OK, DataError, NvrError, Unavailable, UsageError
from nvr.storage.fsutil import fsync_dir

_CHUNK = 1024 * 1024


# -- offline ---------------------------------------------------------------------------------


def _late(module: str, attr: str = "main") -> Callable[..., int]:
    try:
        mod = import_module(module)
    except ModuleNotFoundError as exc:
        if exc.name and module.startswith(exc.name):
            raise Unavailable(f"{module} is not part of this build yet") from None
        raise
    entry: Callable[..., int] = getattr(mod, attr)  # each module's main returns an exit code
    return entry


def _need_config(ns: argparse.Namespace) -> str:
    if not ns.config:
        raise UsageError(f"`nvr {ns.command}` needs --config FILE (the camera map)")
    return str(ns.config)


def cmd_run(ns: argparse.Namespace) -> int:
    config = _need_config(ns)  # before the import: a usage error needs no daemon code
    return _late("nvr.runtime.daemon")(config)


def cmd_check_config(ns: argparse.Namespace) -> int:
    return _late("nvr.config.check")(ns.file)


def cmd_fsck(ns: argparse.Namespace) -> int:
    config = _need_config(ns)
    return _late("nvr.storage.fsck")(config, ns.repair)


def cmd_backup(ns: argparse.Namespace) -> int:
    config = _need_config(ns)
    return _late("nvr.backup", "main_backup")(config, ns.out)


def cmd_restore(ns: argparse.Namespace) -> int:
    config = _need_config(ns)
    return _late("nvr.backup", "main_restore")(ns.source, config, ns.key)


def cmd_export_verify(ns: argparse.Namespace) -> int:
    from nvr.export.signing import published_key_path

    # This box's published recorder key sits beside the control socket (--socket, $NVR_SOCKET,
    # --config's control.socket, else /run/nvr/): the default key to trust.
    try:
        published = published_key_path(_socket(ns))
    except NvrError:
        published = None
    return _late("nvr.export.verify")(ns.file, key=getattr(ns, "key", None), published=published)


# -- client ----------------------------------------------------------------------------------


def wire_args(op: str, ns: argparse.Namespace) -> dict[str, Any]:
    """The op's fields, from the namespace attributes of the same names; checked here too so
    that a typo is reported without a round trip (the daemon checks again)."""
    model = ARGS[op]
    args = {k: getattr(ns, k) for k in model.model_fields if getattr(ns, k, None) is not None}
    try:
        model.model_validate(args)
    except ValidationError as exc:
        first = exc.errors()[0]
        loc = [("camera" if p == "cameras" else str(p)) for p in first["loc"] if not isinstance(p, int)]
        name = loc[0] if loc else "argument"
        where = ("--" + name.replace("_", "-")) if name in _OPTIONS else name.upper()
        raise UsageError(f"{where} {_in_our_words(name, first)}") from None
    return args


# Arguments typed as positionals (HOLD_ID, ...); every other field is an --option.
_POSITIONAL = {"hold_id", "grant_id", "request_id", "emergency_id"}
_OPTIONS = {k for model in ARGS.values() for k in model.model_fields} - _POSITIONAL | {"camera"}


# The journal's checkpoint lines sent to the daemon, a bounded request whatever the journal's
# size: the newest ones, and the lines after which the chain breaks (the next line does not name
# it as its `prev`): where a file's cut tail was followed by more lines, the cut line is one.
JOURNAL_NEWEST = 32
JOURNAL_BREAKS = 64


def journal_checkpoints(name: str) -> list[str]:
    """The checkpoint lines in a journal dump: `journalctl -o json` entries (the daemon's log
    line is in MESSAGE) or the daemon's own log lines, one JSON object a line."""
    try:
        f = sys.stdin if name == "-" else open(name, encoding="utf-8", errors="replace")  # noqa: SIM115
    except OSError as exc:
        raise UsageError(f"--journal {name}: {exc.strerror}") from None
    found: list[str] = []
    breaks: list[str] = []
    last_hash = ""
    with f:
        for text in f:
            entry = _json_object(text)
            message = entry.get("MESSAGE")
            if isinstance(message, list):  # journalctl writes non-UTF-8 or long text as bytes
                message = bytes(b & 0xFF for b in message if isinstance(b, int)).decode(
                    "utf-8", "replace")
            if isinstance(message, str):
                entry = _json_object(message)
            line = entry.get("line")
            if entry.get("event") == "audit_checkpoint" and isinstance(line, str):
                prev = _json_object(line).get("prev")
                if found and last_hash and prev != last_hash and found[-1] not in breaks:
                    breaks.append(found[-1])
                    del breaks[:-JOURNAL_BREAKS]
                found.append(line)
                del found[:-JOURNAL_NEWEST]
                last_hash = hashlib.sha256(line.encode("utf-8")).hexdigest()
    if not found:
        raise UsageError(f"--journal {name} holds no audit_checkpoint entry with a checkpoint "
                         "line: give it the output of `journalctl -u nvr -o json`")
    return [b for b in breaks if b not in found] + found


def _json_object(text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except ValueError:
        return {}
    return value if isinstance(value, dict) else {}


def _in_our_words(name: str, err: ErrorDetails) -> str:
    """What is wrong with one argument, in the project's words rather than pydantic's."""
    kind, ctx = err.get("type", ""), err.get("ctx") or {}
    value = err.get("input")
    if kind == "string_too_short" or (kind == "too_short" and not value):
        return "is empty; say it in words" if name in ("reason", "details") else "is empty"
    if kind == "too_short":
        return "needs at least one camera id"
    if kind in ("string_too_long", "too_long"):
        return f"is too long (at most {ctx.get('max_length', '?')} characters)"
    if kind == "string_pattern_mismatch":
        if name == "camera" or name == "cameras":
            return (f"{value!r} is not a camera id (letters, digits, - and _; "
                    "see `nvr status`)")  # fmt: skip
        if name == "user":
            return f"{value!r} is not an account name (like jsmith)"
        if name.endswith("_id"):
            return f"{value!r} is not an id (like H-3); see the list command"
        return "contains control characters; type plain text"
    if kind in ("greater_than_equal", "less_than_equal", "greater_than", "less_than"):
        return "must be between 1 and 1440 (minutes)" if name == "minutes" else "is out of range"
    if kind in ("int_parsing", "int_type"):
        return "must be a whole number"
    if kind == "literal_error":
        return f"must be one of {ctx.get('expected', '')}"
    return "is not valid here"


def _socket(ns: argparse.Namespace) -> Path:
    return client.socket_path(getattr(ns, "socket", None), getattr(ns, "config", None))


def _out(ns: argparse.Namespace) -> render.Out:
    return render.Out(render.View(utc=bool(getattr(ns, "utc", False)),
                                  paths=bool(getattr(ns, "paths", False))))  # fmt: skip


def _print_json(value: object) -> None:
    sys.stdout.write(render.json_text(value) + "\n")


# The daemon's result arrives as JSON and is read as its op's reply type
# (nvr.control.replies): client and daemon are one version, and the renderers still read each
# key with .get, so an older daemon's shorter answer prints too.
Renderer = Callable[[render.Out, dict[str, Any]], None]
_RENDER: dict[str, Renderer] = {
    "status": lambda out, r: render.status(out, cast(StatusReply, r)),
    "recordings": lambda out, r: render.recordings(out, cast(RecordingsReply, r)),
    "hold_list": lambda out, r: render.listing(out, cast(HoldList, r).get("holds", []),
                                               "holds"),
    "grant_list": lambda out, r: render.listing(out, cast(GrantList, r).get("grants", []),
                                                "grants"),
    "request_list": lambda out, r: render.listing(
        out, cast(RequestList, r).get("requests", []), "requests"),
    "retention_plan": lambda out, r: render.retention_plan(out, cast(RetentionPlan, r)),
    "live": lambda out, r: render.with_url(out, cast(ViewLink, r)),
    "playback": lambda out, r: render.with_url(out, cast(ViewLink, r)),
    "view_list": lambda out, r: render.listing(out, cast(ViewList, r).get("links", []), "links"),
    "emergency_list": lambda out, r: render.listing(
        out, cast(EmergencyList, r).get("emergencies", []), "emergencies"),
    "emergency_start": lambda out, r: render.with_url(out, cast(ViewLink, r)),
}


def _audit_list(ns: argparse.Namespace) -> int:
    """Page by page (the daemon sends at most a page per call), up to the head as it was at
    the first page: `--json` streams the list out, the table comes at the end."""
    args = wire_args("audit_list", ns)
    rows: list[AuditEntry] = []
    first = True
    stop_at: int | None = None
    if ns.json:
        sys.stdout.write("[")
    while True:
        result = cast(AuditPage, client.call(_socket(ns), "audit_list", args).result)
        page = result.get("rows", [])
        if stop_at is None:
            stop_at = result.get("head_seq")
        if stop_at is not None:
            page = [r for r in page if r.get("seq", 0) <= stop_at]
        if ns.json:
            for row in page:
                sys.stdout.write(("\n" if first else ",\n") + render.json_text(row))
                first = False
        else:
            rows.extend(page)
        nxt = result.get("next_after_seq")
        if nxt is None or not page or (stop_at is not None and nxt >= stop_at):
            break
        args = dict(args, after_seq=nxt)
    if ns.json:
        sys.stdout.write("\n]\n" if not first else "]\n")
    else:
        render.audit(_out(ns), rows)
    return EX_OK


def cmd_client(ns: argparse.Namespace) -> int:
    """Every client command but export and still: one op, one result, printed."""
    if ns.op == "audit_list":
        return _audit_list(ns)
    args = wire_args(ns.op, ns)
    if ns.op == "audit_verify" and getattr(ns, "journal_file", None):
        args["journal"] = journal_checkpoints(ns.journal_file)
    reply = client.call(_socket(ns), ns.op, args, on_progress=render.ProgressSink(ns.op))
    if reply.fd is not None:
        os.close(reply.fd)  # no op but export/still sends a file
    result = reply.result
    while isinstance(result.get("next"), dict):  # a paged answer (`recordings`): fetch the rest
        more = client.call(_socket(ns), ns.op, {**args, **result.pop("next")}).result
        result["segments"] = [*result.get("segments", []), *more.get("segments", [])]
        if "next" in more:
            result["next"] = more["next"]
    if not ns.json and isinstance(result.get("alerts"), list):
        # An alert's fix (`nvr reload`) works as printed for someone who reached the daemon
        # with --config or --socket: it gets them too. --json stays exactly the daemon's.
        from nvr.cli.suggest import carry_flags

        flags = [w for opt in ("config", "socket") if getattr(ns, opt, None)
                 for w in (f"--{opt}", str(getattr(ns, opt)))]  # fmt: skip
        for alert in result["alerts"]:
            if isinstance(alert, dict) and isinstance(alert.get("message"), str):
                alert["message"] = carry_flags(alert["message"], flags)
    if ns.op == "audit_verify" and not ns.json:
        for warning in result.pop("warnings", None) or ():
            sys.stderr.write(f"nvr: warning: {warning}\n")
    if ns.json:
        # `nvr audit list --json` is a list (docs/commands.md); the wire needs an object around it.
        _print_json(result.get("rows", []) if ns.op == "audit_list" else result)
    else:
        renderer: Renderer = _RENDER.get(ns.op, render.generic)
        renderer(_out(ns), result)
    return EX_OK


def _create_exclusive(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600)
    except FileExistsError:
        raise UsageError(
            f"{path} already exists; nvr never overwrites a file, choose another --out"
        ) from None
    except OSError as exc:
        raise UsageError(f"cannot create {path}: {exc.strerror}") from None


class _Outputs:
    """Files a download creates. Created up front with O_EXCL, removed again on any failure,
    so a failed export leaves nothing that looks like a clip."""

    def __init__(self, paths: list[Path]) -> None:
        self.paths = paths
        self.fds: dict[Path, int] = {}

    def __enter__(self) -> _Outputs:
        try:
            for p in self.paths:
                self.fds[p] = _create_exclusive(p)
        except BaseException:
            self._discard()
            raise
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        for fd in self.fds.values():
            os.close(fd)
        if exc_type is not None:
            self._discard()
        self.fds.clear()

    def _discard(self) -> None:
        for p in self.fds:
            with contextlib.suppress(FileNotFoundError):
                p.unlink()


def _copy_in(src_fd: int, dst_fd: int) -> str:
    """Copy the received file into --out and return its sha256. Read through userspace rather
    than sendfile because the hash the daemon claims is checked on the bytes written."""
    digest = hashlib.sha256()
    offset = 0
    while chunk := os.pread(src_fd, _CHUNK, offset):
        digest.update(chunk)
        view = memoryview(chunk)
        while view:
            view = view[os.write(dst_fd, view) :]
        offset += len(chunk)
    os.fsync(dst_fd)
    return digest.hexdigest()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]
    os.fsync(fd)


def _download(ns: argparse.Namespace, op: str,
              extra: list[Path]) -> tuple[Reply[dict[str, Any]], Path, str]:
    if op == "export":
        ns.out_name = os.path.basename(ns.out)
    args = wire_args(op, ns)
    out = Path(os.path.abspath(ns.out))
    with _Outputs([out, *extra]) as files:
        sink = render.ProgressSink("exporting" if op == "export" else "extracting a still")
        with sink.shown():
            reply = client.call(_socket(ns), op, args, on_progress=sink)
        if reply.fd is None:
            raise NvrError(f"the daemon answered {op} without sending the file")
        try:
            sha = _copy_in(reply.fd, files.fds[out])
        finally:
            os.close(reply.fd)
        claimed = reply.result.get("sha256")
        if claimed and claimed != sha:
            raise DataError(
                f"the file received has sha256 {sha}, the daemon said {claimed}; removed it"
            )
        for path, key in zip(extra, ("manifest_bytes_b64", "signature_b64"), strict=False):
            try:
                data = base64.b64decode(reply.result[key], validate=True)
            except (KeyError, ValueError):
                raise NvrError(f"the daemon's {op} reply has no valid {key}") from None
            _write_all(files.fds[path], data)
        fsync_dir(out.parent)
    return reply, out, sha


def cmd_export(ns: argparse.Namespace) -> int:
    if ns.verify is not None:
        return _export_verify(ns)
    missing = [
        f"--{k}" for k in ("camera", "start", "end", "reason", "out") if getattr(ns, k) is None
    ]
    if missing:
        raise UsageError(f"`nvr export` needs {', '.join(missing)} (or: nvr export verify FILE.mp4)")
    _need_suffix(ns.out, (".mp4",), "the clip is an MP4")
    if ns.key is not None:
        raise UsageError("--key belongs to `nvr export verify FILE.mp4 --key ...`")
    out = Path(os.path.abspath(ns.out))
    manifest = out.with_name(out.name + ".manifest.json")
    signature = out.with_name(out.name + ".manifest.sig")
    reply, out, sha = _download(ns, "export", [manifest, signature])
    r = cast(ExportReply, reply.result)
    shown: ExportShown = {"path": str(out), "sha256": sha, "start": r.get("start", ns.start),
                          "end": r.get("end", ns.end), "manifest": str(manifest)}  # fmt: skip
    if r.get("fingerprint"):
        shown["fingerprint"] = r["fingerprint"]
    _say_coverage(r)
    if ns.json:
        _print_json(shown)
    else:
        gaps = r.get("gaps") or []
        note = f", {fmt.plural(len(gaps), 'gap')} inside" if gaps else ""
        o = _out(ns)
        span = f"{o.when(shown['start'])} – {o.when(shown['end'], same_day_as=shown['start'])}"
        fingerprint = shown.get("fingerprint")
        o.line(f"exported {span} to {out} (sha256 {sha}{note})")
        o.line(f"manifest {manifest} and signature {signature}")
        o.line(f"signed by recorder key {fingerprint}: give this fingerprint with the clip")
        o.line(f"check it with: nvr export verify {out} --key {fingerprint}")
    return EX_OK


def _seconds(x: float) -> str:
    return f"{x:.1f}".removesuffix(".0") + " s"


def _say_coverage(result: ExportReply) -> None:
    """On stderr, when the clip holds less than was asked (the manifest lists every gap)."""
    asked, recorded = result.get("requested_seconds"), result.get("recorded_seconds")
    if not isinstance(asked, int | float) or not isinstance(recorded, int | float):
        return
    if asked - recorded >= 0.05:
        reasons = sorted({"not recorded" if g.get("reason") == "unrecorded"
                          else str(g.get("reason")).replace("_", " ")
                          for g in result.get("gaps", [])})
        why = " or ".join(reasons) or "not recorded"
        sys.stderr.write(f"nvr: covers {_seconds(recorded)} of the {_seconds(asked)} asked; "
                         f"{_seconds(asked - recorded)} {why}, see the manifest\n")


def _export_verify(ns: argparse.Namespace) -> int:
    if ns.verify != "verify":
        raise UsageError(
            f"unknown export subcommand {ns.verify!r}; did you mean `nvr export verify FILE.mp4`?"
        )
    if not ns.file:
        raise UsageError("nvr export verify needs FILE.mp4")
    given = [k for k in ("camera", "start", "end", "reason", "out") if getattr(ns, k) is not None]
    if given:
        raise UsageError(f"nvr export verify takes only FILE.mp4, not --{given[0]}")
    return cmd_export_verify(ns)


def _need_suffix(out: str, suffixes: tuple[str, ...], why: str) -> None:
    if not out.lower().endswith(suffixes):
        raise UsageError(f"--out {out!r} must end in {' or '.join(suffixes)} ({why}); "
                         f"e.g. --out incident{suffixes[0]}")  # fmt: skip


def cmd_masks_preview(ns: argparse.Namespace) -> int:
    _need_suffix(ns.out, (".png",), "the preview is a PNG")
    reply, out, sha = _download(ns, "masks_preview", [])
    r = cast(MasksPreviewReply, reply.result)
    shown: MasksPreviewShown = {**r, "path": str(out), "sha256": sha}
    if ns.json:
        _print_json(shown)
        return EX_OK
    o = _out(ns)
    masks = r.get("masks", [])
    o.line(f"preview of {r.get('camera')} at {o.when(r.get('at'))} saved "
           f"to {out}: {len(masks)} mask{'' if len(masks) == 1 else 's'} outlined")
    for m in masks:
        corners = " ".join(f"[{x:g}, {y:g}]" for x, y in m["polygon"])
        o.line(f"  {m['n']}: {m['note']}  {corners}")
    return EX_OK


def cmd_still(ns: argparse.Namespace) -> int:
    _need_suffix(ns.out, (".jpg", ".jpeg"), "the still is a JPEG")
    reply, out, sha = _download(ns, "still", [])
    r = cast(StillReply, reply.result)
    shown: StillShown = {**r, "path": str(out), "sha256": sha}
    if ns.json:
        _print_json(shown)
    else:
        o = _out(ns)
        until = o.when(r.get("until", ns.until))
        o.line(f"still saved to {out} (sha256 {sha}); the recorder deletes its copy after {until}")
    return EX_OK

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
from typing import Any

from pydantic import ValidationError

from nvr.cli import render
from nvr.control import client
from nvr.control.protocol import ARGS, Reply
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
    return getattr(mod, attr)  # type: ignore[no-any-return]


def _need_config(ns: argparse.Namespace) -> str:
    if not ns.config:
        raise UsageError(f"`nvr {ns.command}` needs --config FILE (the camera map)")
    return str(ns.config)


def cmd_run(ns: argparse.Namespace) -> int:
    config = _need_config(ns)  # before the import: a usage error needs no daemon code
    return _late("nvr.daemon")(config)


def cmd_check_config(ns: argparse.Namespace) -> int:
    return _late("nvr.config.check")(ns.file)


def cmd_fsck(ns: argparse.Namespace) -> int:
    config = _need_config(ns)
    return _late("nvr.storage.fsck")(config, ns.repair)


def cmd_export_verify(ns: argparse.Namespace) -> int:
    return _late("nvr.export.verify")(ns.file)


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
        loc = [("camera" if p == "cameras" else str(p)) for p in first["loc"]]
        where = "--" + ".".join(loc).replace("_", "-")
        raise UsageError(f"{where}: {first['msg']}") from None
    return args


def _socket(ns: argparse.Namespace) -> Path:
    return client.socket_path(ns.socket, ns.config)


def _print_json(value: Any) -> None:
    sys.stdout.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")


_RENDER: dict[str, Callable[[Any, dict[str, Any]], None]] = {
    "status": render.status,
    "recordings": render.recordings,
    "hold_list": lambda out, r: render.listing(out, r, "holds"),
    "grant_list": lambda out, r: render.listing(out, r, "grants"),
    "request_list": lambda out, r: render.listing(out, r, "requests"),
    "audit_list": lambda out, r: render.audit(out, r.get("rows", [])),
    "retention_plan": render.retention_plan,
    "live": render.with_url,
    "emergency_start": render.with_url,
}


def cmd_client(ns: argparse.Namespace) -> int:
    """Every client command but export and still: one op, one result, printed."""
    args = wire_args(ns.op, ns)
    reply = client.call(_socket(ns), ns.op, args, on_progress=render.ProgressSink(ns.op))
    if reply.fd is not None:
        os.close(reply.fd)  # no op but export/still sends a file
    result = reply.result
    while isinstance(result.get("next"), dict):  # a paged answer (`recordings`): fetch the rest
        more = client.call(_socket(ns), ns.op, {**args, **result.pop("next")}).result
        result["segments"] = [*result.get("segments", []), *more.get("segments", [])]
        if "next" in more:
            result["next"] = more["next"]
    if ns.json:
        # `nvr audit list --json` is a list (CONTRACT.md); the wire needs an object around it.
        _print_json(result.get("rows", []) if ns.op == "audit_list" else result)
    else:
        _RENDER.get(ns.op, render.generic)(render.console(), result)
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


def _download(ns: argparse.Namespace, op: str, extra: list[Path]) -> tuple[Reply, Path, str]:
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
        raise UsageError(f"nvr export needs {', '.join(missing)} (or: nvr export verify FILE.mp4)")
    out = Path(os.path.abspath(ns.out))
    manifest = out.with_name(out.name + ".manifest.json")
    signature = out.with_name(out.name + ".manifest.sig")
    reply, out, sha = _download(ns, "export", [manifest, signature])
    r = reply.result
    shown = {"path": str(out), "sha256": sha, "start": r.get("start", ns.start),
             "end": r.get("end", ns.end), "manifest": str(manifest)}  # fmt: skip
    if ns.json:
        _print_json(shown)
    else:
        gaps = r.get("gaps") or []
        note = f", {len(gaps)} gap(s) inside" if gaps else ""
        render.console().print(
            f"exported {shown['start']} – {shown['end']} to {out} (sha256 {sha}{note})\n"
            f"manifest {manifest} and signature {signature}; check with: nvr export verify {out}"
        )
    return EX_OK


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


def cmd_still(ns: argparse.Namespace) -> int:
    reply, out, sha = _download(ns, "still", [])
    shown = {
        **{k: v for k, v in reply.result.items() if k != "fd"},
        "path": str(out),
        "sha256": sha,
    }
    if ns.json:
        _print_json(shown)
    else:
        until = reply.result.get("until", ns.until)
        render.console().print(
            f"still saved to {out} (sha256 {sha}); the recorder deletes its copy after {until}"
        )
    return EX_OK

"""`nvr export verify FILE.mp4 [--key FINGERPRINT|PEMFILE]`: offline check of a clip.

Needs no daemon and no index: only FILE.mp4, FILE.mp4.manifest.json and FILE.mp4.manifest.sig,
and a key to trust. A manifest carries its own public key, and anyone can make a key, so a valid
signature alone proves nothing about who signed: the clip is VERIFIED only when the signing key
is the trusted one — the key given with --key (a fingerprint the recorder's owner handed over,
or a PEM file), else this box's published recorder key (`export-key.pub` beside the control
socket, written by the daemon), else the key under storage.root/keys when this account can read
it. No trusted key at hand: not verified, and the message says what to pass.
"""

from __future__ import annotations

import base64
import binascii
import errno
import json
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from nvr.errors import EX_DATAERR, EX_OK
from nvr.export.manifest import manifest_paths
from nvr.export.remux import sha256_file
from nvr.export.signing import fingerprint, load_public_key, load_published_key

DEFAULT_STORAGE_ROOT = Path("/var/lib/nvr")
SIG_LEN = 64  # bytes of an Ed25519 signature
_FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")
ASK_FOR_KEY = ("pass --key FINGERPRINT (the fingerprint the recorder's owner gave you with the "
               "clip; `nvr key show` on the recorder prints it) or --key PEMFILE")


@dataclass(frozen=True, slots=True)
class Trust:
    """The key a clip must be signed with: its fingerprint, and where it came from."""

    fingerprint: str | None  # None: no trusted key at hand
    source: str              # "--key", "/run/nvr/export-key.pub", ...
    problem: str = ""        # why there is no trusted key


def resolve_trust(key_arg: str | None, published: Path | None,
                  storage_root: Path | None = None) -> Trust:
    """--key FINGERPRINT|PEMFILE, else the published key, else storage.root/keys if readable."""
    if key_arg:
        text = key_arg.strip().lower().replace(":", "")
        if _FINGERPRINT.match(text):
            return Trust(text, "--key")
        path = Path(key_arg)
        try:
            key = serialization.load_pem_public_key(path.read_bytes())
        except OSError as e:
            return Trust(None, "--key", f"--key {key_arg}: neither a 64-hex-digit fingerprint "
                         f"nor a readable PEM file ({e.strerror})")
        except ValueError:
            return Trust(None, "--key", f"--key {key_arg}: not a PEM public key")
        if not isinstance(key, Ed25519PublicKey):
            return Trust(None, "--key", f"--key {key_arg}: not an Ed25519 public key")
        return Trust(fingerprint(key), f"--key {path}")
    problems = []
    if published is not None:
        pub, why = load_published_key(published)
        if pub is not None:
            return Trust(fingerprint(pub), str(published))
        problems.append(why)
    root = storage_root or DEFAULT_STORAGE_ROOT
    local = load_public_key(root)
    if local is not None:
        return Trust(fingerprint(local), f"{root}/keys")
    problems.append(f"{root}/keys not readable")
    return Trust(None, "", "no trusted key at hand (" + "; ".join(problems) + ")")


@dataclass(frozen=True, slots=True)
class Check:
    name: str  # manifest, signature, fingerprint, recorder_key, clip
    ok: bool
    detail: str


@dataclass(slots=True)
class VerifyReport:
    clip: Path
    checks: list[Check] = field(default_factory=list)
    fingerprint: str | None = None
    manifest: dict[str, Any] | None = None

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(c.ok for c in self.checks)

    def add(self, name: str, ok: bool, detail: str) -> bool:
        self.checks.append(Check(name, ok, detail))
        return ok


def verify_export(clip_path: Path, storage_root: Path | None = None, *,
                  trust: Trust | None = None) -> VerifyReport:
    """Check in order; stop at the first failure that makes later checks meaningless."""
    clip_path = Path(clip_path)
    if trust is None:
        trust = resolve_trust(None, None, storage_root)
    report = VerifyReport(clip_path)
    try:
        clip_path.stat()
    except OSError as e:
        report.add("clip", False, _unreadable("clip", clip_path, e))
        return report
    m_path, s_path = manifest_paths(clip_path)
    body, sig = _read(report, m_path, s_path)
    if body is None or sig is None:
        return report
    manifest, key = _parse(report, body)
    if manifest is None or key is None:
        return report
    try:
        key.verify(sig, body)
    except InvalidSignature:
        report.add("signature", False, f"manifest signature invalid: {m_path.name} or "
                   f"{s_path.name} was changed after signing")
        return report
    report.add("signature", True, "manifest signature valid (Ed25519)")
    if _check_fingerprint(report, manifest, key, trust):
        _check_clip(report, manifest, clip_path)
    return report


def _unreadable(what: str, path: Path, e: OSError) -> str:
    """Why a file cannot be read, named for what it is, with what to do about it."""
    if e.errno == errno.ENOENT:
        beside = "" if what == "clip" else " (an export writes it beside the clip)"
        return f"{what} not found: {path}{beside}"
    if e.errno in (errno.EACCES, errno.EPERM):
        return (f"cannot read the {what} (permission denied): run as the clip's owner or "
                f"copy it: {path}")  # fmt: skip
    return f"cannot read the {what}: {path} ({e.strerror})"


def _read(report: VerifyReport, m_path: Path, s_path: Path) -> tuple[bytes | None, bytes | None]:
    try:
        body = m_path.read_bytes()
    except OSError as e:
        report.add("manifest", False, _unreadable("manifest", m_path, e))
        return None, None
    try:
        raw = s_path.read_bytes()
        # The format is base64 text; a bare 64-byte Ed25519 signature is accepted too.
        sig = raw if len(raw) == SIG_LEN else base64.b64decode(raw.strip(), validate=True)
    except OSError as e:
        report.add("signature", False, _unreadable("signature", s_path, e))
        return None, None
    except binascii.Error:
        report.add("signature", False, f"manifest signature invalid: {s_path} is not base64")
        return None, None
    return body, sig


def _parse(report: VerifyReport, body: bytes) -> tuple[dict[str, Any] | None, Ed25519PublicKey | None]:
    try:
        manifest = json.loads(body.decode("utf-8"))
        pem = manifest["key"]["public_key_pem"].encode("ascii")
        key = serialization.load_pem_public_key(pem)
    except (ValueError, KeyError, TypeError, AttributeError) as e:
        report.add("manifest", False, f"manifest unreadable (changed or damaged): {e}")
        return None, None
    if not isinstance(key, Ed25519PublicKey):
        report.add("manifest", False, "manifest key is not an Ed25519 public key")
        return None, None
    report.manifest = manifest
    report.add("manifest", True, "manifest present and readable")
    return manifest, key


def _check_fingerprint(
    report: VerifyReport, manifest: dict[str, Any], key: Ed25519PublicKey, trust: Trust
) -> bool:
    fp = fingerprint(key)
    report.fingerprint = fp
    if manifest["key"].get("fingerprint") != fp:
        return report.add("fingerprint", False,
                          "manifest fingerprint does not match its public key")
    report.add("fingerprint", True, f"signed by key {fp}")
    if trust.fingerprint is None:
        return report.add("trusted_key", False,
                          f"cannot tell who signed it: {trust.problem}; {ASK_FOR_KEY}")
    if trust.fingerprint != fp:
        return report.add("trusted_key", False,
                          f"signed by key {fp}, NOT by the trusted key {trust.fingerprint} "
                          f"(from {trust.source}): the clip or its manifest was made or "
                          "re-signed elsewhere")
    return report.add("trusted_key", True, f"signed by the trusted key (from {trust.source})")


def _check_clip(report: VerifyReport, manifest: dict[str, Any], clip_path: Path) -> None:
    expected = manifest.get("clip", {}).get("sha256")
    try:
        actual = sha256_file(clip_path)
    except OSError as e:
        report.add("clip", False, _unreadable("clip", clip_path, e))
        return
    if actual != expected:
        report.add("clip", False, f"clip hash mismatch: {clip_path.name} sha256 {actual}, "
                   f"manifest says {expected}")
        return
    report.add("clip", True, f"clip sha256 {actual} matches the manifest")
    masked = manifest.get("privacy_masks")
    if isinstance(masked, dict):
        # Not a check (the signature already covers it): what this clip is, said plainly.
        sources = [str(s.get("path", "?")).rsplit("/", 1)[-1] + " (sha256 "
                   + str(s.get("sha256", "?"))[:16] + "…)"
                   for s in manifest.get("sources", []) if isinstance(s, dict)]
        notes = [str(m.get("note")) for m in masked.get("applied", []) if isinstance(m, dict)]
        report.add("masks", True, f"masked copy of segments {', '.join(sources)}: re-encoded "
                   f"with {len(notes)} privacy mask(s) burned in ({'; '.join(notes)})")


def main(path: str, storage_root: str | None = None, out: TextIO | None = None, *,
         key: str | None = None, published: Path | None = None) -> int:
    """Print one line per check; 0 if all pass, 65 (EX_DATAERR) otherwise. Never exits."""
    out = out or sys.stdout
    root = Path(storage_root) if storage_root else None
    trust = resolve_trust(key, published, root)
    report = verify_export(Path(path), root, trust=trust)
    for c in report.checks:
        out.write(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}\n")
    if report.fingerprint:
        out.write(f"key fingerprint: {report.fingerprint}\n")
    out.write("VERIFIED\n" if report.ok else "NOT VERIFIED\n")
    return EX_OK if report.ok else EX_DATAERR

"""`nvr export verify FILE.mp4`: offline check of a clip against its signed manifest.

Needs no daemon and no index: only FILE.mp4, FILE.mp4.manifest.json and FILE.mp4.manifest.sig.
The signature is checked with the public key written in the manifest. That proves the clip and
manifest are unchanged since signing — not who signed them; for origin, compare the printed
fingerprint with the one `nvr key show` publishes (done here automatically when the recorder's
public key is readable).
"""

from __future__ import annotations

import base64
import binascii
import json
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
from nvr.export.signing import fingerprint, load_public_key

DEFAULT_STORAGE_ROOT = Path("/var/lib/nvr")
SIG_LEN = 64  # bytes of an Ed25519 signature


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


def verify_export(clip_path: Path, storage_root: Path | None = None,
                  trusted_key: str | None = None) -> VerifyReport:
    """Check in order; stop at the first failure that makes later checks meaningless."""
    clip_path = Path(clip_path)
    report = VerifyReport(clip_path)
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
    if trusted_key is not None:
        _check_trusted(report, manifest, key, trusted_key)
    else:
        _check_fingerprint(report, manifest, key, storage_root)
    _check_clip(report, manifest, clip_path)
    return report


def _read(report: VerifyReport, m_path: Path, s_path: Path) -> tuple[bytes | None, bytes | None]:
    try:
        body = m_path.read_bytes()
    except OSError as e:
        report.add("manifest", False, f"manifest missing: {m_path} ({e.strerror})")
        return None, None
    try:
        raw = s_path.read_bytes()
        # The format is base64 text; a bare 64-byte Ed25519 signature is accepted too.
        sig = raw if len(raw) == SIG_LEN else base64.b64decode(raw.strip(), validate=True)
    except OSError as e:
        report.add("manifest", False, f"signature missing: {s_path} ({e.strerror})")
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
    report: VerifyReport, manifest: dict[str, Any], key: Ed25519PublicKey, root: Path | None
) -> None:
    fp = fingerprint(key)
    report.fingerprint = fp
    if manifest["key"].get("fingerprint") != fp:
        report.add("fingerprint", False, "manifest fingerprint does not match its public key")
        return
    report.add("fingerprint", True, f"signed by key {fp}")
    recorder = load_public_key(root or DEFAULT_STORAGE_ROOT)
    if recorder is None:
        if root is not None:
            report.add("recorder_key", False, f"recorder key not readable under {root}/keys")
        return  # default key not readable here: origin is for the reader to compare
    ours = fingerprint(recorder)
    report.add("recorder_key", ours == fp,
               "key is this recorder's key" if ours == fp
               else f"key is NOT this recorder's key ({ours})")


def _check_trusted(
    report: VerifyReport, manifest: dict[str, Any], key: Ed25519PublicKey, trusted: str
) -> None:
    """--key FINGERPRINT|PEMFILE: the clip must be signed by exactly that key."""
    fp = fingerprint(key)
    report.fingerprint = fp
    if manifest["key"].get("fingerprint") != fp:
        report.add("fingerprint", False, "manifest fingerprint does not match its public key")
        return
    want = trusted.strip().lower()
    if Path(trusted).is_file():
        try:
            given = serialization.load_pem_public_key(Path(trusted).read_bytes())
        except ValueError as e:
            report.add("trusted_key", False, f"{trusted} is not a PEM public key: {e}")
            return
        if not isinstance(given, Ed25519PublicKey):
            report.add("trusted_key", False, f"{trusted} is not an Ed25519 public key")
            return
        want = fingerprint(given)
    report.add("trusted_key", fp == want, f"signed by the given key {fp}" if fp == want
               else f"signed by key {fp}, NOT the given key {want}")


def _check_clip(report: VerifyReport, manifest: dict[str, Any], clip_path: Path) -> None:
    expected = manifest.get("clip", {}).get("sha256")
    try:
        actual = sha256_file(clip_path)
    except OSError as e:
        report.add("clip", False, f"clip missing: {clip_path} ({e.strerror})")
        return
    if actual != expected:
        report.add("clip", False, f"clip hash mismatch: {clip_path.name} sha256 {actual}, "
                   f"manifest says {expected}")
        return
    report.add("clip", True, f"clip sha256 {actual} matches the manifest")


def main(path: str, storage_root: str | None = None, out: TextIO | None = None,
         key: str | None = None) -> int:
    """Print one line per check; 0 if all pass, 65 (EX_DATAERR) otherwise. Never exits."""
    out = out or sys.stdout
    report = verify_export(Path(path), Path(storage_root) if storage_root else None, key)
    for c in report.checks:
        out.write(f"{'ok  ' if c.ok else 'FAIL'} {c.name}: {c.detail}\n")
    if report.fingerprint:
        out.write(f"key fingerprint: {report.fingerprint} (compare with `nvr key show`)\n")
    out.write("VERIFIED\n" if report.ok else "NOT VERIFIED\n")
    return EX_OK if report.ok else EX_DATAERR

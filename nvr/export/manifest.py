"""The export manifest: what was exported, from which files, for whom and why — signed.

Files beside the clip FILE.mp4:
  FILE.mp4.manifest.json  canonical JSON (sorted keys, compact, UTF-8) plus one "\\n"
  FILE.mp4.manifest.sig   base64 of the Ed25519 signature over the EXACT bytes of the .json
                          file (newline included), plus one "\\n"
The verifier checks the signature over the bytes it read, then parses them: no
re-canonicalisation, so no way for two JSON writers to disagree about what was signed.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import nvr
from nvr.config.model import CameraConfig, PrivacyMask
from nvr.export.masked import ENCODER, mask_json
from nvr.export.remux import ClipResult
from nvr.export.signing import ALGORITHM, SigningKey
from nvr.timeutil import to_iso

MANIFEST_SUFFIX = ".manifest.json"
SIG_SUFFIX = ".manifest.sig"


def build_manifest(
    *,
    site: str,
    camera: CameraConfig | dict[str, str],
    requested: tuple[int, int],
    clip: ClipResult,
    requester: dict[str, Any],
    reason: str,
    key: SigningKey,
    exported_at: int,
    clip_name: str | None = None,
    incident: str | None = None,
    request: str | None = None,
    masks: Sequence[PrivacyMask] = (),
    masks_lifted: Sequence[str] = (),
) -> dict[str, Any]:
    """requested = (start_us, end_us) as asked; requester = {account, uid, role}; clip_name =
    the file name the user will see (defaults to the clip's own name); exported_at in µs.
    masks: the privacy masks burned into the clip (it is then a re-encoded copy of the
    sources, whose sha256 `sources` lists); masks_lifted: notes of masks left out (--unmasked).
    Neither key appears for a camera without masks, so those manifests are as before."""
    cam = camera if isinstance(camera, dict) else camera.model_dump()
    extra: dict[str, Any] = {}
    if masks:
        extra["privacy_masks"] = {"applied": mask_json(masks), "fill": "solid black",
                                  "encoder": ENCODER}
    if masks_lifted:
        extra["privacy_masks_lifted"] = list(masks_lifted)
    return extra | {
        "site": site,
        "camera": {k: cam.get(k) for k in ("id", "name", "area")},
        "requested": {"start": to_iso(requested[0]), "end": to_iso(requested[1])},
        "actual": {"start": to_iso(clip.actual_start_us), "end": to_iso(clip.actual_end_us)},
        "gaps": [
            {"start": to_iso(g.start_us), "end": to_iso(g.end_us), "reason": g.reason}
            for g in clip.gaps
        ],
        "sources": [dict(s) for s in clip.sources],
        "clip": {
            "file": clip_name or clip.path.name,
            "sha256": clip.sha256,
            "bytes": clip.bytes,
            "frames": clip.frames,
            "codec": clip.codec,
            "width": clip.width,
            "height": clip.height,
        },
        "requester": {k: requester.get(k) for k in ("account", "uid", "role")},
        "reason": reason,
        "incident": incident,
        "request": request,
        "software": {"name": "nvr", "version": nvr.__version__},
        "exported_at": to_iso(exported_at),
        "key": {
            "algorithm": ALGORITHM,
            "fingerprint": key.fingerprint(),
            "public_key_pem": key.public_pem(),
        },
    }


def canonical_bytes(manifest: dict[str, Any]) -> bytes:
    return json.dumps(
        manifest, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    ).encode("utf-8")


def manifest_bytes(manifest: dict[str, Any]) -> bytes:
    """The exact content of FILE.manifest.json, the bytes the signature covers."""
    return canonical_bytes(manifest) + b"\n"


def signature_bytes(signature: bytes) -> bytes:
    """The exact content of FILE.manifest.sig."""
    return base64.b64encode(signature) + b"\n"


def sign_manifest(manifest: dict[str, Any], key: SigningKey) -> tuple[bytes, bytes]:
    """(manifest file bytes, signature file bytes): the daemon can send both to the client."""
    body = manifest_bytes(manifest)
    return body, signature_bytes(key.sign(body))


def manifest_paths(clip_path: Path) -> tuple[Path, Path]:
    return (
        clip_path.with_name(clip_path.name + MANIFEST_SUFFIX),
        clip_path.with_name(clip_path.name + SIG_SUFFIX),
    )


def write_manifest_files(
    clip_path: Path, manifest: dict[str, Any], key: SigningKey
) -> tuple[Path, Path]:
    body, sig = sign_manifest(manifest, key)
    return write_signed_files(clip_path, body, sig)


def write_signed_files(clip_path: Path, body: bytes, sig: bytes) -> tuple[Path, Path]:
    """Write already-signed bytes beside the clip (owner-only), e.g. on the client side."""
    m_path, s_path = manifest_paths(clip_path)
    for path, data in ((m_path, body), (s_path, sig)):
        path.unlink(missing_ok=True)
        path.touch(mode=0o600)
        path.write_bytes(data)
    return m_path, s_path

"""Signed manifest and offline verification: any changed byte is caught, and named."""

from __future__ import annotations

import base64
import io
import json
import shutil
import stat
from pathlib import Path

import pytest

from nvr.config.model import CameraConfig
from nvr.errors import EX_DATAERR
from nvr.export.manifest import build_manifest, manifest_paths, write_manifest_files
from nvr.export.remux import export_clip
from nvr.export.signing import PUBLISHED_NAME, key_show, load_or_create_key, publish_public_key
from nvr.export.verify import main, resolve_trust, verify_export
from tests.export.conftest import T0, Footage
from tests.export.helpers import forge

S = 1_000_000


@pytest.fixture
def signed(footage: Footage, tmp_path: Path) -> tuple[Path, Path]:
    """(clip path, storage root with the recorder's key) for a 15 s export across the gap."""
    root = tmp_path / "storage"
    key = load_or_create_key(root)
    clip = export_clip(footage.h264, footage.gaps, T0 + 25 * S, T0 + 40 * S, tmp_path / "c.mp4")
    manifest = build_manifest(
        site="Hanson Public Library",
        camera=CameraConfig(id="cam", name="Front entrance", area="entrance",
                            rtsp="rtsp://cam.invalid/1"),
        requested=(T0 + 25 * S, T0 + 40 * S), clip=clip,
        requester={"account": "director", "uid": 1001, "role": "director"},
        reason="theft at the front desk", incident="INC-7", request=None,
        exported_at=T0 + 3600 * S, key=key,
    )
    write_manifest_files(clip.path, manifest, key)
    return clip.path, root


def _flip(path: Path, at: int) -> None:
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))


def test_manifest_says_what_was_exported(signed: tuple[Path, Path], footage: Footage) -> None:
    clip, _ = signed
    m_path, s_path = manifest_paths(clip)
    assert (m_path.name, s_path.name) == ("c.mp4.manifest.json", "c.mp4.manifest.sig")
    body = m_path.read_bytes()
    assert body.endswith(b"\n") and body.count(b"\n") == 1  # canonical JSON, one line
    m = json.loads(body)
    assert m["requested"] == {"start": "2026-09-21T14:13:45.000000Z",
                              "end": "2026-09-21T14:14:00.000000Z"}
    assert m["gaps"] == [{"start": "2026-09-21T14:13:50.000000Z",
                          "end": "2026-09-21T14:13:55.000000Z", "reason": "offline"}]
    assert [s["sha256"] for s in m["sources"]] == [footage.h264[2].sha256, footage.h264[3].sha256]
    assert m["clip"]["file"] == "c.mp4" and m["clip"]["frames"] == 150
    assert m["camera"] == {"id": "cam", "name": "Front entrance", "area": "entrance"}
    assert "rtsp" not in body.decode()  # camera URLs (maybe with passwords) never leak
    assert m["key"]["algorithm"] == "Ed25519" and m["software"]["name"] == "nvr"
    assert m["reason"] == "theft at the front desk" and m["incident"] == "INC-7"
    for p in (m_path, s_path):
        assert stat.S_IMODE(p.stat().st_mode) == 0o600


def test_verify_passes_and_names_the_key(signed: tuple[Path, Path]) -> None:
    clip, root = signed
    report = verify_export(clip, root)
    assert report.ok, report.checks
    assert [c.name for c in report.checks] == [
        "manifest", "signature", "fingerprint", "trusted_key", "clip"]
    out = io.StringIO()
    assert main(str(clip), str(root), out=out) == 0
    assert key_show(root)["fingerprint"] in out.getvalue()
    assert out.getvalue().rstrip().endswith("VERIFIED")


def test_flipped_byte_in_clip_fails(signed: tuple[Path, Path]) -> None:
    clip, root = signed
    _flip(clip, clip.stat().st_size // 2)
    out = io.StringIO()
    assert main(str(clip), str(root), out=out) == EX_DATAERR
    assert "FAIL clip: clip hash mismatch" in out.getvalue()
    assert "ok   signature" in out.getvalue()


@pytest.mark.parametrize("where", ["reason", "sha256", "public_key_pem"])
def test_flipped_byte_in_manifest_fails(signed: tuple[Path, Path], where: str) -> None:
    clip, root = signed
    m_path, _ = manifest_paths(clip)
    body = m_path.read_bytes()
    _flip(m_path, body.index(where.encode()) + len(where) + 12)
    out = io.StringIO()
    assert main(str(clip), str(root), out=out) == EX_DATAERR
    text = out.getvalue()
    assert "manifest signature invalid" in text or "manifest unreadable" in text, text


def test_missing_manifest_and_foreign_key(signed: tuple[Path, Path], tmp_path: Path) -> None:
    clip, root = signed
    other = tmp_path / "other-recorder"
    load_or_create_key(other)
    report = verify_export(clip, other)
    assert not report.ok
    assert "NOT by the trusted key" in report.checks[-1].detail, report.checks
    lone = tmp_path / "lone.mp4"
    shutil.copy(clip, lone)
    out = io.StringIO()
    assert main(str(lone), out=out) == EX_DATAERR
    assert "manifest not found" in out.getvalue()


def test_verify_names_a_missing_clip_and_an_unreadable_manifest(
    signed: tuple[Path, Path], tmp_path: Path
) -> None:
    """Each problem named for what it is: a clip that is not there is "clip not found" (not
    "manifest missing"); a manifest this account may not read says so and what to do."""
    clip, _root = signed
    out = io.StringIO()
    assert main(str(tmp_path / "no-such-clip.mp4"), out=out) == EX_DATAERR
    assert "clip not found" in out.getvalue() and "manifest" not in out.getvalue()
    from tests.support import is_root, run_as, shared_tmpdir

    if not is_root():
        pytest.skip("reading as another account needs root")
    shared = shared_tmpdir()
    try:
        for p in (clip, *manifest_paths(clip)):
            shutil.copy(p, shared / p.name)
            (shared / p.name).chmod(0o600)  # root's, as an export leaves it for its owner
        text = run_as("nvrtest-public", lambda: _verify_text(shared / clip.name))
    finally:
        shutil.rmtree(shared, ignore_errors=True)
    assert "cannot read the manifest (permission denied): run as the clip's owner or copy it" \
        in text, text


def _verify_text(path: Path) -> str:
    out = io.StringIO()
    main(str(path), out=out)
    return out.getvalue()


def test_key_made_once_owner_only(tmp_path: Path) -> None:
    root = tmp_path / "storage"
    key = load_or_create_key(root)
    again = load_or_create_key(root)
    assert key.fingerprint() == again.fingerprint() == key_show(root)["fingerprint"]
    assert stat.S_IMODE((root / "keys").stat().st_mode) == 0o700
    assert stat.S_IMODE(key.path.stat().st_mode) == 0o600
    assert key.path.read_bytes().startswith(b"-----BEGIN PRIVATE KEY-----")
    assert [p.name for p in (root / "keys").iterdir() if p.name.startswith(".")] == []
    assert len(key.fingerprint()) == 64


def test_raw_signature_file_is_accepted(signed: tuple[Path, Path]) -> None:
    clip, root = signed
    _, s_path = manifest_paths(clip)
    s_path.write_bytes(base64.b64decode(s_path.read_bytes()))
    assert verify_export(clip, root).ok


# ---- who signed it (issue 10): trusted only with --key or the recorder's published key -------
def _verify(clip: Path, **kw: object) -> tuple[int, str]:
    out = io.StringIO()
    code = main(str(clip), out=out, **kw)  # type: ignore[arg-type]
    return code, out.getvalue()


def test_forged_clip_resigned_with_a_fresh_key_is_not_verified(
        signed: tuple[Path, Path], tmp_path: Path) -> None:
    clip, root = signed
    ours = key_show(root)
    published = tmp_path / "run" / PUBLISHED_NAME
    publish_public_key(load_or_create_key(root), published)
    assert _verify(clip, key=ours["fingerprint"])[0] == 0
    assert _verify(clip, published=published)[0] == 0
    pem = tmp_path / "recorder.pem"
    pem.write_text(ours["public_key_pem"])
    assert _verify(clip, key=str(pem))[0] == 0
    forger = forge(clip)
    # Hash, manifest and signature are all consistent: only the key betrays it.
    assert verify_export(clip, trust=resolve_trust(forger, None)).ok
    for kw in ({"key": ours["fingerprint"]}, {"key": str(pem)}, {"published": published},
               {"storage_root": str(root)}):
        code, text = _verify(clip, **kw)
        assert code == EX_DATAERR, (kw, text)
        assert f"signed by key {forger}, NOT by the trusted key {ours['fingerprint']}" in text
        assert text.rstrip().endswith("NOT VERIFIED")


def test_no_trusted_key_at_hand_says_what_to_pass(signed: tuple[Path, Path],
                                                  tmp_path: Path) -> None:
    clip, _ = signed
    code, text = _verify(clip, published=tmp_path / "nowhere" / PUBLISHED_NAME,
                         storage_root=str(tmp_path / "no-root"))
    assert code == EX_DATAERR
    assert "cannot tell who signed it" in text and "pass --key FINGERPRINT" in text
    code, text = _verify(clip, key="not-a-key")
    assert code == EX_DATAERR and "neither a 64-hex-digit fingerprint" in text


def test_published_key_writable_by_others_is_not_trusted(signed: tuple[Path, Path],
                                                         tmp_path: Path) -> None:
    clip, root = signed
    published = tmp_path / "run" / PUBLISHED_NAME
    publish_public_key(load_or_create_key(root), published)
    assert stat.S_IMODE(published.stat().st_mode) == 0o644
    published.chmod(0o666)
    code, text = _verify(clip, published=published, storage_root=str(tmp_path / "none"))
    assert code == EX_DATAERR and "writable by other accounts" in text

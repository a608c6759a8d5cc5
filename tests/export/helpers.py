"""What a person checking an export would look at: ffprobe's view, boxes, packets, pixels."""

from __future__ import annotations

import hashlib
import json
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import av

from nvr.storage.index import Segment
from nvr.timeutil import US


def ffprobe(path: Path) -> dict[str, Any]:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-of", "json", "-show_format", "-show_streams",
         "-show_chapters", "-show_packets", str(path)],
        check=True, capture_output=True, text=True,
    ).stdout
    return json.loads(out)  # type: ignore[no-any-return]


def top_level_boxes(path: Path) -> list[str]:
    boxes = []
    with path.open("rb") as f:
        while header := f.read(8):
            size, kind = struct.unpack(">I4s", header)
            if size == 1:
                size = struct.unpack(">Q", f.read(8))[0]
                f.seek(size - 16, 1)
            else:
                f.seek(size - 8, 1)
            boxes.append(kind.decode("ascii"))
    return boxes


def packet_hashes(path: Path) -> list[str]:
    with av.open(str(path)) as c:
        return [hashlib.sha256(bytes(p)).hexdigest() for p in c.demux(c.streams.video[0])
                if p.size]


def source_packet_hashes(segments: Sequence[Segment], start_us: int, end_us: int) -> list[str]:
    """Hashes of the source packets whose wall-clock time is in [start_us, end_us)."""
    out = []
    for seg in segments:
        with av.open(seg.path) as c:
            st = c.streams.video[0]
            base = None
            for p in c.demux(st):
                if not p.size:
                    continue
                base = p.pts if base is None else base
                wall = seg.start_us + int((p.pts - base) * st.time_base * US)
                if start_us <= wall < end_us:
                    out.append(hashlib.sha256(bytes(p)).hexdigest())
    return out


def gray_of(frame: av.VideoFrame) -> int:
    """Luma of a pixel below the moving bar: the frame's own gray level."""
    plane = frame.planes[0]
    return bytes(plane)[(frame.height // 2) * plane.line_size + frame.width // 2]


def expected_gray(n: int) -> int:
    return (n * 37) % 220 + 16


def decoded_frames(path: Path) -> list[tuple[float, int]]:
    """(time in s, gray level) of every frame PyAV decodes."""
    with av.open(str(path)) as c:
        st = c.streams.video[0]
        return [(float(f.pts * st.time_base), gray_of(f)) for f in c.decode(st)]


def forge(clip: Path) -> str:
    """What an attacker does: change bytes of the clip, re-hash it into the manifest and re-sign
    the manifest with a fresh key of their own. Returns the forger's fingerprint."""
    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

    from nvr.export.manifest import manifest_paths, sign_manifest
    from nvr.export.signing import SigningKey

    data = bytearray(clip.read_bytes())
    data[len(data) // 2] ^= 0x01
    clip.write_bytes(bytes(data))
    m_path, s_path = manifest_paths(clip)
    manifest = json.loads(m_path.read_bytes())
    manifest["clip"]["sha256"] = hashlib.sha256(bytes(data)).hexdigest()
    key = SigningKey(Ed25519PrivateKey.generate(), clip)
    manifest["key"].update(fingerprint=key.fingerprint(), public_key_pem=key.public_pem())
    body, sig = sign_manifest(manifest, key)
    m_path.write_bytes(body)
    s_path.write_bytes(sig)
    return key.fingerprint()

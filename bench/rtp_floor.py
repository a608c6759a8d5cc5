"""Where the CPU floor of recording N RTSP cameras lies, by client (issue 14, item 3).

The recorder reads cameras with FFmpeg's RTSP client (libavformat, through PyAV). This bench
measures, on the same pre-encoded looped streams (bench/loopcam.py), in the same run, each side
in its own child process and alternating:

  ffmpeg   N `ffmpeg -c copy -f segment` processes (Frigate's recorder; the reference)
  demux    N threads, each `av.open(rtsp)` and `for p in demux(): pass` (libavformat's RTSP
           client alone, nothing written: the floor of any design that uses it)
  own      ONE thread reading all N RTSP/TCP sessions with its own interleaved-RTP
           depacketizer (H.264 single NAL, STAP-A, FU-A → access units), many RTP packets per
           recv(), muxed by PyAV into fragmented MP4 files like the recorder's

`own` is a measuring prototype, not the recorder: no authentication, no RTCP, no reconnection,
no B-frame dts derivation, H.264 only. It answers one question: would an own RTSP reader get
under the issue's 0.5x of ffmpeg? Frames on disk are counted for `own` and `ffmpeg`.

    .venv/bin/python bench/rtp_floor.py --cameras 64 --seconds 30 --rounds 2
"""

from __future__ import annotations

import argparse
import base64
import io
import json
import multiprocessing as mp
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from fractions import Fraction
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import av

sys.path.insert(0, str(Path(__file__).resolve().parent))
from camsource import LoopCamera, prepare, proc_cpu_s  # noqa: E402

TB = Fraction(1, 90000)
MOVFLAGS = "frag_keyframe+empty_moov+default_base_moof"


# -- the prototype reader --------------------------------------------------------------------
class Session:
    """One camera: RTSP handshake (blocking), then interleaved RTP read by the selector loop."""

    def __init__(self, url: str, folder: Path) -> None:
        self.url, self.folder = url, folder
        u = urlsplit(url)
        self.sock = socket.create_connection((u.hostname or "127.0.0.1", u.port or 554), 5)
        self.cseq = 0
        self.buf = bytearray()
        status, headers, body = self.request("DESCRIBE", url, "Accept: application/sdp\r\n")
        assert status == 200, f"DESCRIBE {status}"
        sdp = body.decode()
        base = headers.get("content-base", url).rstrip("/")
        video = sdp.split("m=video", 1)[1]
        control = re.search(r"a=control:(\S+)", video)
        track = control.group(1) if control else ""
        track_url = track if track.startswith("rtsp:") else f"{base}/{track}"
        sprop = re.search(r"sprop-parameter-sets=([^;\s]+)", video)
        self.params = b"".join(b"\x00\x00\x00\x01" + base64.b64decode(p)
                               for p in (sprop.group(1).split(",") if sprop else []))
        status, headers, _ = self.request(
            "SETUP", track_url, "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n")
        assert status == 200, f"SETUP {status}"
        session = headers["session"].split(";")[0]
        status, _, _ = self.request("PLAY", url, f"Session: {session}\r\nRange: npt=0.000-\r\n")
        assert status == 200, f"PLAY {status}"
        self.sock.setblocking(False)
        self.nals: list[bytes] = []
        self.key = False
        self.fu: bytearray | None = None
        self.ts0: int | None = None
        self.last_ts = 0
        self.wraps = 0
        self.out: Any = None
        self.stream: Any = None
        self.frames = 0

    def request(self, method: str, url: str, extra: str) -> tuple[int, dict[str, str], bytes]:
        self.cseq += 1
        self.sock.sendall(f"{method} {url} RTSP/1.0\r\nCSeq: {self.cseq}\r\n{extra}"
                          "User-Agent: nvr-bench\r\n\r\n".encode())
        while b"\r\n\r\n" not in self.buf:
            self.buf += self.sock.recv(65536)
        head, _, rest = bytes(self.buf).partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        headers = {k.strip().lower(): v.strip() for k, _, v in
                   (line.partition(":") for line in lines[1:])}
        n = int(headers.get("content-length", 0))
        while len(rest) < n:
            rest += self.sock.recv(65536)
        self.buf = bytearray(rest[n:])
        return int(lines[0].split()[1]), headers, rest[:n]

    # Parsing: called with everything received so far; consumes whole interleaved frames.
    def feed(self) -> None:
        buf = self.buf
        pos, end = 0, len(buf)
        mv = memoryview(buf)
        while end - pos >= 4:
            if buf[pos] != 0x24:  # an RTSP reply (keep-alive) between RTP packets: skip it
                stop = buf.find(b"\r\n\r\n", pos)
                if stop < 0:
                    break
                pos = stop + 4
                continue
            n = (buf[pos + 2] << 8) | buf[pos + 3]
            if end - pos - 4 < n:
                break
            if buf[pos + 1] == 0:
                self.rtp(mv[pos + 4:pos + 4 + n])
            pos += 4 + n
        mv.release()
        del buf[:pos]

    def rtp(self, p: memoryview) -> None:
        b0 = p[0]
        hdr = 12 + 4 * (b0 & 0x0F)
        if b0 & 0x10:
            hdr += 4 + 4 * ((p[hdr + 2] << 8) | p[hdr + 3])
        stop = len(p) - (p[-1] if b0 & 0x20 else 0)
        ts = int.from_bytes(p[4:8], "big")
        nal = p[hdr:stop]
        kind = nal[0] & 0x1F
        if kind == 28:  # FU-A
            fu = nal[1]
            if fu & 0x80:
                self.fu = bytearray(b"\x00\x00\x00\x01")
                self.fu.append((nal[0] & 0xE0) | (fu & 0x1F))
                self.key = self.key or (fu & 0x1F) == 5
            if self.fu is not None:
                self.fu += nal[2:]
                if fu & 0x40:
                    self.nals.append(bytes(self.fu))
                    self.fu = None
        elif kind == 24:  # STAP-A
            i = 1
            while i + 2 <= len(nal):
                size = (nal[i] << 8) | nal[i + 1]
                self.key = self.key or (nal[i + 2] & 0x1F) == 5
                self.nals.append(b"\x00\x00\x00\x01" + nal[i + 2:i + 2 + size])
                i += 2 + size
        else:
            self.key = self.key or kind == 5
            self.nals.append(b"\x00\x00\x00\x01" + nal)
        if p[1] & 0x80:  # marker: the access unit is complete
            self.access_unit(ts)

    def access_unit(self, ts: int) -> None:
        data = b"".join(self.nals)
        self.nals = []
        key, self.key = self.key, False
        if self.ts0 is None:
            if not key:
                return
            self.ts0 = ts
            self.open(data)
        if ts < self.last_ts and self.last_ts - ts > 1 << 31:
            self.wraps += 1
        self.last_ts = ts
        pts = ts + (self.wraps << 32) - self.ts0
        pkt = av.Packet(data)
        pkt.time_base = TB
        pkt.pts = pkt.dts = pts
        pkt.is_keyframe = key
        pkt.stream = self.stream
        self.out.mux(pkt)
        self.frames += 1

    def open(self, first: bytes) -> None:
        probe = av.open(io.BytesIO(self.params + first), format="h264")
        template = probe.streams.video[0]
        self.folder.mkdir(parents=True, exist_ok=True)
        self.fd = os.open(self.folder / "00000.mp4", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        self.out = av.open(f"pipe:{self.fd}", "w", format="mp4",
                           options={"movflags": MOVFLAGS, "flush_packets": "1"})
        self.stream = self.out.add_stream_from_template(template)
        self.stream.time_base = TB
        probe.close()

    def close(self) -> None:
        if self.out is not None:
            self.out.close()
            os.fsync(self.fd)
            os.close(self.fd)
        self.sock.close()


def own_child(url: str, n: int, folder: str, q: Any, stop: Any) -> None:
    sessions = [Session(url, Path(folder) / f"cam{i}") for i in range(n)]
    sel = selectors.DefaultSelector()
    for s in sessions:
        sel.register(s.sock, selectors.EVENT_READ, s)
        s.feed()
    q.put("ready")
    while not stop.is_set():
        for key, _ in sel.select(0.5):
            s = key.data
            try:
                chunk = s.sock.recv(262144)
            except BlockingIOError:
                continue
            if not chunk:
                sel.unregister(s.sock)
                continue
            s.buf += chunk
            s.feed()
    for s in sessions:
        s.close()
    q.put({s.folder.name: s.frames for s in sessions})


def demux_child(url: str, n: int, folder: str, q: Any, stop: Any) -> None:
    counts = [0] * n

    def one(i: int) -> None:
        with av.open(url, options={"rtsp_transport": "tcp", "allowed_media_types": "video",
                                   "analyzeduration": "200000"}) as c:
            for p in c.demux(c.streams.video[0]):
                counts[i] += p.size > 0
                if stop.is_set():
                    return

    threads = [threading.Thread(target=one, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    q.put("ready")
    stop.wait()
    for t in threads:
        t.join(5)
    q.put({f"cam{i}": c for i, c in enumerate(counts)})


# -- the run ---------------------------------------------------------------------------------
def run_child(target: Any, url: str, n: int, a: argparse.Namespace, folder: Path) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    q, stop = ctx.Queue(), ctx.Event()
    proc = ctx.Process(target=target, args=(url, n, str(folder), q, stop))
    proc.start()
    assert q.get(timeout=60) == "ready"
    time.sleep(a.warmup)
    assert proc.pid is not None
    cpu0 = proc_cpu_s(proc.pid)
    time.sleep(a.seconds)
    cpu1 = proc_cpu_s(proc.pid)
    stop.set()
    frames = q.get(timeout=60)
    proc.join(30)
    return {"cpu_s": cpu1 - cpu0, "frames": frames}


def run_ffmpeg(url: str, n: int, a: argparse.Namespace, folder: Path) -> dict[str, Any]:
    procs = []
    for i in range(n):
        d = folder / f"cam{i}"
        d.mkdir(parents=True)
        procs.append(subprocess.Popen(
            ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-rtsp_transport", "tcp",
             "-i", url, "-map", "0:v", "-c", "copy", "-f", "segment", "-segment_time", "10",
             "-segment_format", "mp4", "-reset_timestamps", "1", str(d / "%05d.mp4")]))
    time.sleep(a.warmup)
    cpu0 = sum(proc_cpu_s(p.pid) for p in procs)
    time.sleep(a.seconds)
    cpu1 = sum(proc_cpu_s(p.pid) for p in procs)
    for p in procs:
        p.send_signal(signal.SIGINT)
    for p in procs:
        p.wait()
    return {"cpu_s": cpu1 - cpu0, "frames": None}


def frames_on_disk(folder: Path) -> dict[str, int]:
    out = {}
    for cam in sorted(folder.iterdir()):
        total = 0
        for f in sorted(cam.glob("*.mp4")):
            with av.open(str(f)) as c:
                total += sum(1 for p in c.demux(c.streams.video[0]) if p.size)
        out[cam.name] = total
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--cameras", type=int, nargs="+", default=[16, 64])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--warmup", type=float, default=8)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--stream", default="h264")
    ap.add_argument("--sides", nargs="+", default=["ffmpeg", "demux", "own"])
    ap.add_argument("--json", type=Path)
    a = ap.parse_args()
    prepare(a.stream)
    results: list[dict[str, Any]] = []
    print(f"{'N':>3} {'rnd':>3} {'side':<7} {'CPU-s':>7} {'x ffmpeg':>8} {'frames/cam min-max':>19}")
    with tempfile.TemporaryDirectory(prefix="rtpfloor-") as tmp:
        for n in a.cameras:
            for rnd in range(1, a.rounds + 1):
                order = a.sides if rnd % 2 else list(reversed(a.sides))
                row: dict[str, dict[str, Any]] = {}
                for name in order:
                    folder = Path(tmp) / f"{name}-{n}-{rnd}"
                    with LoopCamera() as cam:
                        url = cam.url(a.stream)
                        if name == "ffmpeg":
                            r = run_ffmpeg(url, n, a, folder)
                        else:
                            r = run_child(own_child if name == "own" else demux_child,
                                          url, n, a, folder)
                    if name in ("ffmpeg", "own"):
                        r["frames"] = frames_on_disk(folder)
                    row[name] = r
                ref = row.get("ffmpeg", {}).get("cpu_s")
                for name in a.sides:
                    r = row[name]
                    fr = list(r["frames"].values()) if r["frames"] else [0]
                    ratio = f"{r['cpu_s'] / ref:.2f}" if ref else "-"
                    print(f"{n:>3} {rnd:>3} {name:<7} {r['cpu_s']:>7.2f} {ratio:>8} "
                          f"{min(fr):>9}-{max(fr):<9}")
                    results.append({"cameras": n, "round": rnd, "side": name, **r})
    if a.json:
        a.json.write_text(json.dumps({"seconds": a.seconds, "warmup": a.warmup,
                                      "stream": a.stream, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

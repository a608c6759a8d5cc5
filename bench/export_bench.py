"""Export benchmark: one hour of one camera into one MP4, nvr's export_clip vs ffmpeg concat.

    .venv/bin/python bench/export_bench.py [--workdir /tmp/nvr-export-bench] [--keep] [--rounds 3]

Footage: ONE minute of 1280x720 15 fps H.264 at ~2 Mb/s (random-noise luma, so x264 really
spends the bit rate), written as a recorder segment (fragmented MP4, video only) and copied
60 times under segments/<camera>/ with consecutive start times. Each export runs in its own
process; wall time and peak RSS come from wait4(). export_clip also re-hashes every source
segment first (the tamper check), which ffmpeg does not do; its time is shown separately.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import time
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nvr.timeutil import US, segment_name  # noqa: E402  (light: no av)

if TYPE_CHECKING:
    from nvr.storage.index import Segment

# The parent imports neither av nor the exporter: a forked child's peak RSS (ru_maxrss) starts
# from the parent's, so a fat parent would hide the children's own peaks.

T0 = 1_790_000_000_000_000
FPS, W, H = 15, 1280, 720
CAMERA = "bench-cam"


def make_minute(path: Path) -> None:
    import av
    flags = "frag_keyframe+empty_moov+default_base_moof"
    chroma = b"\x80" * (W * H // 4)
    mid_gray = bytes(b & 0x3F | 0x40 for b in range(256))  # noise in 64..127: legal luma
    with av.open(str(path), "w", format="mp4", options={"movflags": flags}) as out:
        st = out.add_stream("libx264", rate=FPS)
        st.width, st.height, st.pix_fmt = W, H, "yuv420p"
        st.time_base = Fraction(1, 90000)
        st.bit_rate = 2_000_000
        st.codec_context.options = {
            "preset": "ultrafast", "bf": "0", "g": str(FPS),
            "x264-params": f"keyint={FPS}:min-keyint={FPS}:scenecut=0:vbv-maxrate=2000:vbv-bufsize=2000",
        }
        for i in range(60 * FPS):
            frame = av.VideoFrame(W, H, "yuv420p")
            frame.planes[0].update(os.urandom(W * H).translate(mid_gray))
            frame.planes[1].update(chroma)
            frame.planes[2].update(chroma)
            frame.pts, frame.time_base = i * 90000 // FPS, Fraction(1, 90000)
            for pkt in st.encode(frame):
                out.mux(pkt)
        for pkt in st.encode(None):
            out.mux(pkt)


def make_hour(work: Path) -> list[Segment]:
    from nvr.export.remux import sha256_file
    from nvr.storage.index import Segment
    one = work / "one-minute.mp4"
    if not one.exists():
        t = time.monotonic()
        make_minute(one)
        print(f"encoded one minute in {time.monotonic() - t:.1f} s ({one.stat().st_size / 1e6:.1f} MB)")
    digest, size = sha256_file(one), one.stat().st_size
    folder = work / "segments" / CAMERA
    folder.mkdir(parents=True, exist_ok=True)
    segs = []
    for i in range(60):
        start = T0 + i * 60 * US
        path = folder / segment_name(start)
        if not path.exists():
            shutil.copyfile(one, path)  # real copies: 60 files on disk, like the recorder's
        segs.append(Segment(CAMERA, start, start + 60 * US, str(path), size, 60 * FPS, 60,
                            "h264", W, H, digest, id=i + 1))
    return segs


def child(work: Path, minutes: int, out: Path, hash_only: bool) -> None:
    """Runs in its own process so its peak RSS is its own."""
    from nvr.export.remux import export_clip, sha256_file
    segs = make_hour(work)[:minutes]
    t = time.monotonic()
    if hash_only:
        for s in segs:
            sha256_file(s.path)
    else:
        export_clip(segs, [], segs[0].start_us, segs[-1].end_us, out)
    print(json.dumps({"wall": time.monotonic() - t}))


def recycle_page_cache(work: Path, nbytes: int) -> None:
    """Write and delete a scratch file as large as the clip, so that the next export's page
    cache comes from pages this machine has already touched. On this VM, writing 906 MB into
    never-touched memory cost 2.0-2.4 s of system time instead of 0.25-0.5 s (the host backs
    guest pages on first touch), for nvr and ffmpeg alike, at random: that, not the tools,
    decided the ratio."""
    scratch = work / "recycle.bin"
    block = bytes(4 << 20)
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        for _ in range(nbytes // len(block) + 1):
            os.write(fd, block)
    finally:
        os.close(fd)
        scratch.unlink()


def run(cmd: list[str]) -> dict[str, float]:
    t = time.monotonic()
    p = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert p.stdout is not None
    text = p.stdout.read()
    p.stdout.close()
    _, status, usage = os.wait4(p.pid, 0)
    p.returncode = os.waitstatus_to_exitcode(status)
    if p.returncode != 0:
        raise RuntimeError(f"{cmd[:3]} failed with {p.returncode}")
    wall = time.monotonic() - t
    last = text.strip().splitlines()[-1] if text.strip() else b""
    inner = json.loads(last) if last.startswith(b"{") else {}
    # ru_maxrss is in KiB on Linux.
    return {"wall": wall, "inner": inner.get("wall", wall), "rss_mb": usage.ru_maxrss / 1024,
            "cpu": usage.ru_utime + usage.ru_stime}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/nvr-export-bench"))
    ap.add_argument("--keep", action="store_true")
    ap.add_argument("--rounds", type=int, default=5, help="alternating; medians reported")
    ap.add_argument("--child", nargs=3, metavar=("MINUTES", "OUT", "MODE"))
    args = ap.parse_args()
    work: Path = args.workdir
    if args.child:
        minutes, out, mode = args.child
        if mode == "prepare":
            make_hour(work)
        else:
            child(work, int(minutes), Path(out), mode == "hash")
        return 0
    work.mkdir(parents=True, exist_ok=True)
    me = [sys.executable, __file__, "--workdir", str(work), "--child"]
    subprocess.run([*me, "60", "-", "prepare"], check=True)
    paths = [work / "segments" / CAMERA / segment_name(T0 + i * 60 * US) for i in range(60)]
    hour_bytes = sum(p.stat().st_size for p in paths)
    rows = []
    walls: dict[tuple[str, int], list[float]] = {}
    cpus: dict[tuple[str, int], list[float]] = {}
    for rnd in range(args.rounds):
        for minutes in (10, 60):
            # Alternate which tool goes first: a shared machine's load drifts.
            for name in (("nvr", "ffmpeg") if rnd % 2 == 0 else ("ffmpeg", "nvr")):
                out = work / f"{name}-{minutes}.mp4"
                out.unlink(missing_ok=True)
                recycle_page_cache(work, hour_bytes * minutes // 60 * 11 // 10)
                if name == "nvr":
                    r = run([*me, str(minutes), str(out), "export"])
                else:
                    lst = work / f"list-{minutes}.txt"
                    lst.write_text("".join(f"file '{p}'\n" for p in paths[:minutes]))
                    r = run(["ffmpeg", "-v", "error", "-f", "concat", "-safe", "0", "-i", str(lst),
                             "-c", "copy", "-movflags", "+faststart", "-y", str(out)])
                rows.append((name, minutes, r, out.stat().st_size))
                walls.setdefault((name, minutes), []).append(r["wall"])
                cpus.setdefault((name, minutes), []).append(r["cpu"])
                if minutes == 60 and name == "ffmpeg":
                    t = time.monotonic()
                    hashlib.file_digest(out.open("rb"), "sha256")
                    out_hash_s = time.monotonic() - t
                out.unlink()
    hashed = run([*me, "60", str(work / "unused"), "hash"])
    base = run([sys.executable, "-c", "import av, nvr.export.remux; print('{}')"])
    print(f"\nsource: 60 x 60 s segments, {W}x{H} {FPS} fps H.264, {hour_bytes / 1e6:.0f} MB "
          f"({hour_bytes * 8 / 3600 / 1e6:.2f} Mb/s); {os.cpu_count()} cores; "
          f"load {os.getloadavg()[0]:.1f}")
    print(f"{'tool':7} {'range':>6} {'process s':>9} {'export s':>8} {'CPU s':>6} {'x real':>7} "
          f"{'peak RSS MB':>11} {'out MB':>7}")
    for name, minutes, r, size in rows:
        print(f"{name:7} {minutes:>4} m {r['wall']:9.2f} {r['inner']:8.2f} {r['cpu']:6.2f} "
              f"{minutes * 60 / r['wall']:7.0f} {r['rss_mb']:11.1f} {size / 1e6:7.0f}")
    for minutes in (10, 60):
        n, f = (statistics.median(walls[(t, minutes)]) for t in ("nvr", "ffmpeg"))
        nc, fc = (statistics.median(cpus[(t, minutes)]) for t in ("nvr", "ffmpeg"))
        print(f"{minutes} min, median of {args.rounds}: nvr {n:.2f} s, ffmpeg {f:.2f} s, "
              f"ratio {n / f:.2f} (target <= 1.2 for 60 min); CPU nvr {nc:.2f} s, "
              f"ffmpeg {fc:.2f} s")
    print(f"nvr also hashes: the 60 sources alone {hashed['inner']:.2f} s (each read once, "
          f"hashed in a 2nd thread, its frames copied from those same bytes), and the 907 MB "
          f"clip as it is written (sha256 alone {out_hash_s:.2f} s, a 3rd thread); "
          f"python + av import alone: {base['rss_mb']:.1f} MB RSS")
    results = Path(__file__).resolve().parent / "results"
    results.mkdir(exist_ok=True)
    out_json = results / f"export-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out_json.write_text(json.dumps({
        "source": {"segments": 60, "seconds_each": 60, "width": W, "height": H, "fps": FPS,
                   "bytes": hour_bytes},
        "cores": os.cpu_count(), "rounds": args.rounds,
        "runs": [{"tool": n, "minutes": m, **r, "out_bytes": size} for n, m, r, size in rows],
        "median_wall": {f"{t}-{m}": statistics.median(w) for (t, m), w in walls.items()},
        "median_cpu": {f"{t}-{m}": statistics.median(c) for (t, m), c in cpus.items()},
        "hash_sources_s": hashed["inner"], "hash_clip_s": out_hash_s,
    }, indent=1) + "\n")
    print(f"results: {out_json}")
    if not args.keep:
        shutil.rmtree(work / "segments")
    return 0


if __name__ == "__main__":
    sys.exit(main())

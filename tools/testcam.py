#!/usr/bin/python3
"""A real RTSP camera stand-in: GStreamer's RTSP server with test patterns.

Runs under Debian's /usr/bin/python3 (python3-gi does not import in a venv; docs/design.md "Media facts").
Mounts (all but /h264 encode once for any number of clients):

  /h264        H.264 video + AAC audio (audio is on the wire; the recorder must never keep it)
  /h265        H.265 video
  /h264-noaudio H.264 video only
  /h264-bframes H.264 Main with B-frames (a B-pyramid), video only
  /timecode    H.264, video only: each frame carries the wall-clock time (ms) it was made, as a
               44-bit barcode in its top rows (bench/live_bench.py reads it off the screen to
               measure glass-to-glass latency)
  /audio-only  AAC audio and no video at all (a "stream with no video")
  /h264-bframes H.264 High with B-frames as most IP cameras' main stream sends them: x264
               bframes=2, B-pyramid (the middle B is a reference), no zerolatency (it forbids B)
  /h265-bframes H.265 with B-frames (x265 bframes=2, B-pyramid)

With --require-auth every mount wants --user/--password (RTSP basic auth, or digest with
--auth-method digest), as a real camera does.

Prints `READY <port>` on stdout once it accepts connections. Stopping the process is the camera
going offline; starting it again on the same port is the camera coming back.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
gi.require_version("GstRtsp", "1.0")
from gi.repository import GLib, Gst, GstRtsp, GstRtspServer  # noqa: E402


def video_src(a: argparse.Namespace) -> str:
    overlay = "clockoverlay halignment=right valignment=bottom ! " if a.overlay else ""
    return (
        f"videotestsrc is-live=true pattern={a.pattern} ! "
        f"video/x-raw,width={a.width},height={a.height},framerate={a.fps}/1 ! {overlay}"
    )


def h264(a: argparse.Namespace) -> str:
    return (
        f"x264enc tune=zerolatency key-int-max={a.gop} bitrate={a.bitrate} "
        "speed-preset=ultrafast ! video/x-h264,profile=constrained-baseline ! "
        "rtph264pay name=pay0 pt=96 config-interval=-1"
    )


def h265(a: argparse.Namespace) -> str:
    return (
        f"x265enc tune=zerolatency key-int-max={a.gop} bitrate={a.bitrate} "
        "speed-preset=ultrafast ! rtph265pay name=pay0 pt=96 config-interval=-1"
    )


def h264_bframes(a: argparse.Namespace) -> str:
    # b-adapt=false: always two B-frames between references, so every GOP reorders.
    return (
        f"x264enc key-int-max={a.gop} bitrate={a.bitrate} speed-preset=ultrafast "
        "bframes=2 b-pyramid=true b-adapt=false rc-lookahead=4 sync-lookahead=0 ! "
        "video/x-h264,profile=main ! rtph264pay name=pay0 pt=96 config-interval=-1"
    )


def h265_bframes(a: argparse.Namespace) -> str:
    # Closed GOPs, as IP cameras send: with x265's default open GOPs every keyframe after the
    # first is a CRA whose leading (RASL) B-frames need the GOP before it, so a player that
    # starts at a segment's first keyframe skips two frames there (they are on disk, and play
    # in an export that crosses the cut). docs/design.md, "B-frames".
    return (
        f"x265enc key-int-max={a.gop} bitrate={a.bitrate} speed-preset=ultrafast "
        'option-string="bframes=2:b-pyramid=1:b-adapt=0:rc-lookahead=4:open-gop=0" ! '
        "rtph265pay name=pay0 pt=96 config-interval=-1"
    )


AUDIO = (
    "audiotestsrc is-live=true wave=sine ! audioconvert ! audioresample ! "
    "audio/x-raw,rate=16000,channels=1 ! voaacenc ! rtpmp4apay name=pay{n} pt=97"
)


def launch_lines(a: argparse.Namespace) -> dict[str, str]:
    v = video_src(a)
    return {
        "/h264": f"( {v}{h264(a)} {AUDIO.format(n=1)} )",
        "/h265": f"( {v}{h265(a)} )",
        "/h264-noaudio": f"( {v}{h264(a)} )",
        "/audio-only": f"( {AUDIO.format(n=0)} )",
        "/h264-bframes": f"( {v}{h264_bframes(a)} )",
        "/h265-bframes": f"( {v}{h265_bframes(a)} )",
        # Neither H.264 nor H.265: the recorder's own reader cannot read it, FFmpeg's can.
        "/mjpeg": (f"( {v}videoconvert ! video/x-raw,format=I420 ! jpegenc quality=30 ! "
                   "rtpjpegpay name=pay0 pt=26 )"),
        "/timecode": (f"( appsrc name=timecode is-live=true format=time do-timestamp=true "
                      f"caps=video/x-raw,format=I420,width={a.width},height={a.height},"
                      f"framerate={a.fps}/1 ! {h264(a)} )"),
    }


BIT_W, BIT_H, BITS = 14, 24, 44


def timecode_frame(base: bytearray, width: int, ms: int) -> bytes:
    """An I420 frame: mid-grey, with `ms` as BITS black/white blocks in the top-left corner."""
    frame = bytearray(base)
    for bit in range(BITS):
        value = 235 if (ms >> (BITS - 1 - bit)) & 1 else 16
        block = bytes([value]) * BIT_W
        x = bit * BIT_W
        for y in range(BIT_H):
            row = y * width + x
            frame[row:row + BIT_W] = block
    return bytes(frame)


def feed_timecode(factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia,
                  a: argparse.Namespace) -> None:
    src = media.get_element().get_child_by_name("timecode")
    base = bytearray([128]) * (a.width * a.height * 3 // 2)

    alive = [True]
    media.connect("unprepared", lambda *_: alive.__setitem__(0, False))

    def push() -> bool:
        buf = Gst.Buffer.new_wrapped(timecode_frame(base, a.width, int(time.time() * 1000)))
        src.emit("push-buffer", buf)  # FLUSHING until the media plays: keep pushing
        return alive[0]

    GLib.timeout_add(max(1, 1000 // a.fps), push)


def not_seekable(_pad: Gst.Pad, info: Gst.PadProbeInfo) -> Gst.PadProbeReturn:
    """Fail the pipeline's SEEKING query: gst-rtsp-server then takes the media for one that
    cannot seek at all (seekable -1), as a camera's live stream is. (Answering it unfilled would
    read as "seekable to the beginning only", which 1.22 happens not to seek either, under a
    FIXME; a later version may.)"""
    query = info.get_query()
    if query is not None and query.type == Gst.QueryType.SEEKING:
        return Gst.PadProbeReturn.DROP
    return Gst.PadProbeReturn.OK


def live_only(_factory: GstRtspServer.RTSPMediaFactory, media: GstRtspServer.RTSPMedia) -> None:
    """Make the media refuse to seek, as a camera's live stream does. A PLAY from FFmpeg or
    from nvr's own reader carries `Range: npt=0.000-`; with a seekable pipeline (videotestsrc
    can seek) gst-rtsp-server 1.22 answers it with a flushing seek of the shared pipeline,
    which also restarts the picture for every other client. The flush clears every stream's
    segment, so a second client's PLAY arriving right then finds a stream without one and
    gst_rtsp_media_get_rates() aborts the whole server (g_assert, rtsp-media.c:2766): after 37
    and after 14 rounds of 8 clients connecting at once, and the test camera was gone for the
    rest of the test module. The probe sits on each stream's source pad, where the pipeline's
    query (through rtpbin) and gst-rtsp-server's per-stream query both pass."""
    for i in range(media.n_streams()):
        media.get_stream(i).get_srcpad().add_probe(Gst.PadProbeType.QUERY_UPSTREAM, not_seekable)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--port", type=int, default=8554, help="0 picks a free port")
    p.add_argument("--address", default="127.0.0.1")
    p.add_argument("--width", type=int, default=640)
    p.add_argument("--height", type=int, default=360)
    p.add_argument("--fps", type=int, default=15)
    p.add_argument("--gop", type=int, default=15, help="keyframe interval in frames")
    p.add_argument("--bitrate", type=int, default=800, help="kbit/s")
    p.add_argument("--pattern", default="ball")
    p.add_argument("--overlay", action="store_true", help="draw the time (costs CPU)")
    p.add_argument("--require-auth", action="store_true")
    p.add_argument("--protocols", choices=("any", "udp"), default="any",
                   help="udp: refuse RTP over TCP (461 Unsupported Transport), as some cameras do")
    p.add_argument("--auth-method", choices=("basic", "digest"), default="basic",
                   help="with --require-auth: what the camera asks for (most ask for digest)")
    p.add_argument("--user", default="camuser")
    p.add_argument("--password", default="campass")
    p.add_argument("--no-rtcp", action="store_true",
                   help="send no RTCP (no sender reports, so no clock of the camera's to read)")
    a = p.parse_args()

    Gst.init(None)
    server = GstRtspServer.RTSPServer()
    server.set_address(a.address)
    server.set_service(str(a.port))
    roles = ["camera-user"]
    if a.require_auth:
        # RTSP basic auth for every mount: a client without the right credentials gets 401.
        auth = GstRtspServer.RTSPAuth()
        token = GstRtspServer.RTSPToken()
        token.set_string(GstRtspServer.RTSP_TOKEN_MEDIA_FACTORY_ROLE, "camera-user")
        if a.auth_method == "digest":
            auth.set_supported_methods(GstRtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(a.user, a.password, token)
        else:
            auth.add_basic(GstRtspServer.RTSPAuth.make_basic(a.user, a.password), token)
        server.set_auth(auth)
    mounts = server.get_mount_points()
    for path, line in launch_lines(a).items():
        factory = GstRtspServer.RTSPMediaFactory()
        factory.set_launch(line)
        if a.protocols == "udp":
            factory.set_protocols(GstRtsp.RTSPLowerTrans.UDP)
        if a.no_rtcp:
            factory.set_enable_rtcp(False)
        factory.connect("media-configure", live_only)
        if path == "/timecode":
            factory.connect("media-configure", feed_timecode, a)
        # Shared media encode once for every client. Not for /h264: when a shared media has an
        # audio stream that the first client did not SET UP (nvr asks for video only), the
        # server answers later clients with 5XX — a quirk of gst-rtsp-server, not of cameras.
        factory.set_shared(path != "/h264")
        if a.require_auth:
            for role in roles:
                factory.add_role_from_structure(
                    Gst.Structure.new_from_string(
                        f"{role}, media.factory.access=(boolean)true, "
                        "media.factory.construct=(boolean)true"
                    )
                )
        mounts.add_factory(path, factory)
    if server.attach(None) == 0:
        print(f"cannot listen on {a.address}:{a.port}", file=sys.stderr)
        return 1
    print(f"READY {server.get_bound_port()}", flush=True)
    loop = GLib.MainLoop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        GLib.unix_signal_add(GLib.PRIORITY_DEFAULT, sig, loop.quit)
    loop.run()
    return 0


if __name__ == "__main__":
    sys.exit(main())

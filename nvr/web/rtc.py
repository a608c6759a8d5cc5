"""WebRTC live view through aiortc, passing the camera's H.264 through without transcoding.

docs/design.md ("Media facts") lists what Chromium needs for passthrough to play: Annex-B packets (RTSP's are),
SPS/PPS in front of every IDR (nvr.web.fanout adds them when the camera did not), increasing
pts with a time base paced to the wall clock starting at a keyframe, and H.264-only codec
preferences set on the transceiver before setRemoteDescription.
"""

from __future__ import annotations

import asyncio
import time
from fractions import Fraction
from typing import Any

import av
from aiortc import (
    RTCConfiguration,
    RTCPeerConnection,
    RTCRtpSender,
    RTCSessionDescription,
)
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from aiortc.rtcrtpparameters import RTCRtpCodecCapability

from nvr import log
from nvr.config.model import PrivacyMask
from nvr.media.masks import MaskPlanes, fill
from nvr.web.fanout import Viewer

_log = log.get("nvr.web.rtc")
TIME_BASE = Fraction(1, 90000)


class PassthroughTrack(MediaStreamTrack):
    """Returns av.Packets (not frames): aiortc's H.264 encoder then only packetizes them."""

    kind = "video"

    def __init__(self, viewer: Viewer) -> None:
        super().__init__()
        self.viewer = viewer
        self._t0: float | None = None
        self._last_pts = -1

    async def recv(self) -> Any:  # an av.Packet (aiortc accepts packets or frames)
        try:
            lp = await self.viewer.get()
        except EOFError:
            self.stop()
            raise MediaStreamError from None
        # pts from the wall clock when the packet leaves: a GOP replayed to a new viewer goes
        # out at once (its frames a tick apart), live packets keep the camera's pacing.
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = max(self._last_pts + 1, int((now - self._t0) * 90000))
        self._last_pts = pts
        pkt = av.Packet(lp.data)
        pkt.pts = pkt.dts = pts
        pkt.time_base = TIME_BASE
        return pkt


class MaskedTrack(MediaStreamTrack):
    """`privacy_masks_live: burn`: the camera's H.264 decoded, the masks filled, and frames
    handed to aiortc, whose encoder (libx264 through PyAV, in its executor) re-encodes them for
    this viewer: the browser never receives what is under the masks. Decoding and filling run
    in a worker thread, off the event loop that records."""

    kind = "video"

    def __init__(self, viewer: Viewer, masks: list[PrivacyMask]) -> None:
        super().__init__()
        self.viewer = viewer
        self.masks = masks
        self._decoder = av.CodecContext.create("h264", "r")
        self._planes: MaskPlanes | None = None
        self._t0: float | None = None
        self._last_pts = -1

    def _decode(self, data: bytes) -> list[av.VideoFrame]:
        try:
            frames = list(self._decoder.decode(av.Packet(data)))
        except av.error.FFmpegError:
            return []  # a packet dropped for a slow viewer: pictures again at the next keyframe
        out = []
        for f in frames:
            if self._planes is None or (self._planes.width, self._planes.height) != (f.width, f.height):
                self._planes = MaskPlanes.of(self.masks, f.width, f.height)
            out.append(fill(f, self._planes))
        return out

    async def recv(self) -> Any:  # an av.VideoFrame, encoded by aiortc
        frames: list[av.VideoFrame] = []
        while not frames:
            try:
                lp = await self.viewer.get()
            except EOFError:
                self.stop()
                raise MediaStreamError from None
            frames = await asyncio.to_thread(self._decode, bytes(lp.data))
        now = time.monotonic()
        if self._t0 is None:
            self._t0 = now
        pts = max(self._last_pts + 1, int((now - self._t0) * 90000))
        self._last_pts = pts
        frame = frames[-1]
        frame.pts = pts
        frame.time_base = TIME_BASE
        return frame


def h264_codecs() -> list[RTCRtpCodecCapability]:
    caps = RTCRtpSender.getCapabilities("video")
    return [c for c in caps.codecs if c.mimeType.lower() == "video/h264"]


async def answer(offer_sdp: str, viewer: Viewer,
                 burn: list[PrivacyMask] | None = None) -> tuple[RTCPeerConnection, str]:
    """Answer a browser's offer with one send-only H.264 track: the camera's passed through,
    or (`burn`: masks) re-encoded with those masks filled."""
    # No STUN: the browser reaches this box directly (loopback or the library's network).
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    track: MediaStreamTrack = MaskedTrack(viewer, burn) if burn else PassthroughTrack(viewer)
    transceiver = pc.addTransceiver(track, direction="sendonly")
    # Before setRemoteDescription, or VP8 stays negotiated (docs/design.md, "Media facts", condition 4).
    transceiver.setCodecPreferences(h264_codecs())
    try:
        await pc.setRemoteDescription(RTCSessionDescription(sdp=offer_sdp, type="offer"))
        await pc.setLocalDescription(await pc.createAnswer())
    except Exception:
        await pc.close()
        raise
    local = pc.localDescription
    return pc, local.sdp


async def close_quietly(pc: RTCPeerConnection) -> None:
    try:
        await asyncio.wait_for(pc.close(), 2.0)
    except Exception as exc:  # noqa: BLE001 - closing is best effort; the viewer is gone
        _log.info("rtc_close_failed", error=str(exc))

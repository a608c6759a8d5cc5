"""CameraRecorder: one camera, one named thread (`cam-<id>`), Home Assistant stream_worker
style. The thread loops: resolve URL → session (connecting → recording) → on failure, state
backoff (or failed) and sleep on the stop Event → again.

Hand-offs thread → loop go through one bounded queue (`max_pending` slots). Overflow policy:
segment-closed and gap events are never dropped — the camera thread blocks until a slot frees
(the camera's TCP buffer absorbs the pause); state-change events are dropped when the queue is
full and counted in status()["dropped"] (status() itself reads the thread's counters directly).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, Protocol

from nvr import log, timeutil
from nvr.config.model import CameraConfig, StorageConfig
from nvr.ingest import readers
from nvr.ingest.backoff import Backoff
from nvr.ingest.read_loop import ReadLoopFailed
from nvr.ingest.session import (
    STOPPED,
    SessionContext,
    SessionEnd,
    Stats,
    SystemClock,
    WallClock,
)
from nvr.media.rtsp import BASIC_REFUSED, basic_auth_allowed
from nvr.storage.index import NewSegment
from nvr.storage.segment_writer import SegmentWriter

_log = log.get("nvr.ingest.recorder")

# After this many failed sessions in a row, ask resolve_url to re-resolve (ONVIF: the camera
# may have a new address or stream URI).
REFRESH_AFTER_FAILURES = 3


class SegmentSink(Protocol):
    async def segment_closed(self, seg: NewSegment) -> None: ...
    async def gap(self, camera: str, start_us: int, end_us: int, reason: str, detail: str) -> None: ...
    def state_changed(self, camera: str, state: str, reason: str) -> None: ...


class Reader(Protocol):
    """One RTSP client, as the recorder drives it: records one session into ctx.writer until
    the stream fails or ctx.should_stop() says why to stop, finishes the open segment, and
    returns why it ended. Camera trouble is a SessionEnd, never an exception (an exception is
    a bug or a disk error: logged, and the session retried). Chosen by name (camera map
    `reader:`) through a factory, nvr.ingest.readers.by_name unless a test gives its own."""

    def __call__(self, ctx: SessionContext, /) -> SessionEnd: ...


class CameraRecorder:
    def __init__(
        self,
        camera: CameraConfig,
        storage: StorageConfig,
        storage_root: Path,
        sink: SegmentSink,
        resolve_url: Callable[[bool], Awaitable[str]],
        *,
        clock: WallClock | None = None,
        backoff: Backoff | None = None,
        io_timeout_s: float = 5.0,
        last_end_us: int | None = None,  # end of the camera's last indexed segment, if any
        max_pending: int = 16,
        config_file: str = "the camera map",  # named in a refusal that a camera map key fixes
        reader_for: Callable[[str], Reader] = readers.by_name,
    ) -> None:
        self.reader_for = reader_for
        self.camera = camera
        self.config_file = config_file
        self.sink = sink
        self.resolve_url = resolve_url
        self.clock: WallClock = clock or SystemClock()
        self.backoff = backoff or Backoff()
        self.io_timeout_s = io_timeout_s
        self.writer = SegmentWriter(
            camera.id, storage_root, storage.segment_seconds, self._segment_closed,
            mono_us=self.clock.mono_us,
        )
        self.writer.last_end_us = last_end_us
        # The RTSP client in use (camera.reader `auto` starts with the own, nvr.media.rtsp)
        self.reader: str = "ffmpeg" if camera.reader == "ffmpeg" else "nvr"
        # How RTP comes now: `transport: auto` starts on TCP and moves to UDP when the camera
        # refuses TCP.
        self.transport: str = "udp" if camera.transport == "udp" else "tcp"
        # Why RTP comes over UDP under `transport: auto` (kept in sight after later errors).
        self.transport_reason = ""
        self.stats = Stats()
        self.state, self.reason = "connecting", ""
        self._announced = ("", "")
        self.errors, self.last_error, self.dropped = 0, "", 0
        self.last_error_us: int | None = None  # when last_error happened (`nvr status`)
        self._handed_over = ""  # why `reader: auto` gave this camera to FFmpeg's reader
        self._stop = threading.Event()
        # The own reader's camera socket while a session has one open (abandon() shuts it).
        self._sock: socket.socket | None = None
        self._sock_lock = threading.Lock()
        self._paused: str | None = None
        self._pending_gap: tuple[int, str, str] | None = None
        # Gaps before this recorder's first segment are the daemon's (recorder_stopped, crash).
        self._recorded_any = False
        self._slots = threading.BoundedSemaphore(max_pending)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._queue: asyncio.Queue[tuple[str, Any] | None] = asyncio.Queue()
        self._consumer: asyncio.Task[None] | None = None
        self._thread: threading.Thread | None = None
        # The thread's heartbeat (time.monotonic()): every packet and every second of waiting
        # moves it, so the watchdog (nvr.runtime.watchdog) can tell a wedged thread from a
        # quiet one.
        self.beat = time.monotonic()
        # Given by the web server (add_live_tap): called in this camera's thread with every
        # packet written, for live view. None: nobody can watch.
        self.live_tap: Callable[[Any, Any], None] | None = None
        # Given with it: whether anybody watches this camera live right now.
        self.live_watched: Callable[[], bool] | None = None

    # -- loop side -----------------------------------------------------------------------------
    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._consumer = self._loop.create_task(self._consume(), name=f"sink-{self.camera.id}")
        self._thread = threading.Thread(
            target=self._run, name=f"cam-{self.camera.id}", daemon=True
        )
        self._thread.start()

    # The signature is the team's interface (a bounded join, not a cancel scope).
    async def stop(self, timeout: float = 5.0) -> None:  # noqa: ASYNC109
        """Finish and index the open segment, then join the thread."""
        self._stop.set()
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, timeout)
            if self._thread.is_alive():
                _log.warning("recorder_stop_timeout", camera=self.camera.id, timeout=timeout)
        if self._consumer is not None:
            self._queue.put_nowait(None)
            try:
                await asyncio.wait_for(self._consumer, timeout)
            except TimeoutError:
                _log.warning("sink_drain_timeout", camera=self.camera.id)

    def pause(self, reason: str) -> None:
        """Stop writing (retention: the disk is full of held footage) until resume()."""
        self._paused = reason

    def resume(self) -> None:
        self._paused = None

    @property
    def clock_offset_s(self) -> float | None:
        """The camera's own clock minus the box's (RTCP sender reports), or None."""
        offset = self.stats.clock_offset_us
        return None if offset is None else round(offset / 1e6, 1)

    def status(self) -> dict[str, Any]:
        fps, bps = self.stats.rates(self.clock.mono_us())
        if self.state != "recording":
            fps, bps = 0.0, 0
        end = self.writer.last_end_us
        delay = self.writer.anchor_delay_us
        return {
            "id": self.camera.id, "state": self.state, "reason": self.reason, "fps": fps,
            "bitrate_bps": bps, "frames": self.stats.frames, "reader": self.reader,
            "transport": self.transport, "transport_reason": self.transport_reason,
            "last_segment_end": None if end is None else timeutil.to_iso(end),
            "errors": self.errors, "last_error": self.last_error, "dropped": self.dropped,
            "last_error_at": (None if self.last_error_us is None
                              else timeutil.to_iso(self.last_error_us)),
            # How long after its stamp the latest frame arrived (docs/time.md, "The anchor").
            "timestamp_steps": self.stats.timestamp_steps,
            # Frames a source sent again at a reconnection, already recorded (docs/time.md, 8).
            "resent_frames_dropped": self.writer.resent_frames_dropped,
            "packets_lost": self.stats.packets_lost,
            # The camera's own clock minus the box's (RTCP sender reports; docs/time.md).
            "clock_offset_s": self.clock_offset_s,
            "anchor_delay_s": None if delay is None or self.state != "recording"
            else round(delay / 1e6, 3),
        }

    async def _consume(self) -> None:
        while (item := await self._queue.get()) is not None:
            kind, args = item
            try:
                if kind == "segment":
                    await self.sink.segment_closed(args)
                elif kind == "gap":
                    await self.sink.gap(*args)
                else:
                    self.sink.state_changed(*args)
            except Exception:
                _log.exception("sink_failed", camera=self.camera.id, kind=kind)
            finally:
                self._slots.release()

    # -- thread side ---------------------------------------------------------------------------
    def _post(self, kind: str, args: Any, *, droppable: bool) -> None:
        assert self._loop is not None
        if droppable:
            if not self._slots.acquire(blocking=False):
                self.dropped += 1
                return
        else:
            while not self._slots.acquire(timeout=5.0):
                self.beat = time.monotonic()  # alive: the loop is slow, not this thread
                _log.warning("handoff_blocked", camera=self.camera.id, kind=kind)
        try:
            self._loop.call_soon_threadsafe(self._queue.put_nowait, (kind, args))
        except RuntimeError:  # the loop is closed: nobody left to tell
            self._slots.release()

    def _segment_closed(self, seg: NewSegment) -> None:
        # The gap before a session ends where its first segment starts, which is known only
        # now: the anchor may fall while the segment is written (docs/time.md).
        if self._pending_gap is not None:
            gap_start, reason, detail = self._pending_gap
            self._pending_gap = None
            self._post("gap", (self.camera.id, gap_start, seg.start_us, reason, detail),
                       droppable=False)
        self._post("segment", seg, droppable=False)

    def _set_state(self, state: str, reason: str = "") -> None:
        if (state, reason) == self._announced:
            return
        self._announced = (state, reason)
        self.state, self.reason = state, reason
        _log.info("camera_state", camera=self.camera.id, state=state, reason=reason)
        self._post("state", (self.camera.id, state, reason), droppable=True)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def stalled_for(self, now: float) -> float:
        """Seconds since the camera thread last made progress (0 if it is not running)."""
        return now - self.beat if self.alive() and not self._stop.is_set() else 0.0

    def abandon(self) -> None:
        """Give up on a wedged thread: it is told to stop (and will, if it ever wakes, finish
        its segment, and its consumer still indexes it); the caller starts its replacement.
        A Python thread cannot be killed, only left behind — but its camera socket can be
        shut down: a read blocked on it (a camera trickling bytes during set-up) returns at
        once, so the thread ends instead of holding a thread and a socket for good."""
        self._stop.set()
        with self._sock_lock:
            sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            _log.info("camera_socket_shut", camera=self.camera.id)

    def _on_socket(self, sock: socket.socket | None) -> None:
        with self._sock_lock:
            self._sock = sock

    def _wait(self, seconds: float) -> None:
        """Sleep on the stop Event in steps of a second, beating the heart at each."""
        deadline = time.monotonic() + seconds
        while not self._stop.is_set():
            self.beat = now = time.monotonic()
            if now >= deadline:
                return
            timeutil.sleep_unless(self._stop, min(1.0, deadline - now))

    def _should_stop(self) -> SessionEnd | None:
        self.beat = time.monotonic()
        if _TEST_HANG_CAMERA and self.camera.id == _TEST_HANG_CAMERA:
            _test_hang_once(self.camera.id)
        if self._stop.is_set():
            return STOPPED
        if self._paused is not None:
            return SessionEnd("disk_full", self._paused, permanent=True)
        return None

    def _on_started(self, start_us: int) -> None:
        self._set_state("recording")
        self._recorded_any = True

    def _resolve(self, force: bool) -> str:
        assert self._loop is not None

        async def resolve() -> str:
            return await self.resolve_url(force)

        return asyncio.run_coroutine_threadsafe(resolve(), self._loop).result(timeout=60)

    def _run(self) -> None:
        if not self.camera.enabled:
            self._set_state("disabled", "camera disabled in the camera map")
            return
        failures = 0
        while not self._stop.is_set():
            if self._paused is not None:
                self._set_state("failed", self._paused)
                self._wait(0.5)
                continue
            self._set_state("connecting", self.reason if failures else "")
            began = self.clock.mono_us()
            try:
                end = self._one_session(failures >= REFRESH_AFTER_FAILURES)
            except Exception as e:  # noqa: BLE001 - e.g. ENOSPC while closing a segment
                # Whatever went wrong, this thread is the camera's only recorder: it must
                # live on and retry, never die and leave a stale "recording" in status.
                _log.exception("session_crashed", camera=self.camera.id, reader=self.reader)
                # Not a disk error, nor the read loop failing for every camera: the own reader
                # met something in this camera's stream it cannot take.
                end = SessionEnd("offline", f"recording failed: {type(e).__name__}: {e}",
                                 own_reader_cannot=not isinstance(e, OSError | ReadLoopFailed))
            if end is STOPPED or self._stop.is_set():
                break
            uptime_s = (self.clock.mono_us() - began) / 1e6
            failures = 0 if uptime_s >= self.backoff.reset_after_s else failures + 1
            self._failed(end, uptime_s)

    def _one_session(self, refresh: bool) -> SessionEnd:
        try:
            url = self._resolve(refresh)
        except Exception as e:  # noqa: BLE001 - ONVIF lookups fail in many ways
            return SessionEnd("offline", f"cannot resolve stream address: {type(e).__name__}: {e}")
        ctx = SessionContext(
            self.camera.id, url, self.writer, self.clock, self.stats, self._should_stop,
            self._on_started, self.io_timeout_s, self._live_packet, self._watched,
            self._on_socket, basic_auth_allowed(url, self.camera.auth,
                                                self.camera.allow_basic_auth),
            self._basic_refusal(), self.transport,
        )
        return self.reader_for(self.reader)(ctx)

    def _basic_refusal(self) -> str:
        where = f"camera {self.camera.id} in {self.config_file}"
        if self.camera.auth == "digest":
            return (f"{BASIC_REFUSED}, and auth: digest is set for {where}; set auth: any "
                    "there if this network is trusted, then `nvr reload`")
        return (f"{BASIC_REFUSED}; set allow_basic_auth: true for {where} if this network is "
                "trusted, then `nvr reload`")

    def add_live_tap(self, tap: Callable[[Any, Any], None], watched: Callable[[], bool]) -> None:
        """Live view: `tap` gets every packet written (in this camera's thread, so it must
        return at once); `watched()` says whether anybody watches right now."""
        self.live_tap, self.live_watched = tap, watched

    def remove_live_tap(self) -> None:
        self.live_tap = self.live_watched = None

    def _watched(self) -> bool:
        watched = self.live_watched
        return watched is not None and watched()

    def _live_packet(self, op: Any, video: Any) -> None:
        tap = self.live_tap
        if tap is not None:
            tap(op, video)

    def _failed(self, end: SessionEnd, uptime_s: float) -> None:
        if self._pending_gap is None and self._recorded_any and self.writer.last_end_us:
            self._pending_gap = (self.writer.last_end_us, end.gap_reason, end.message)
        if end.tcp_refused and self.transport == "tcp" and self.camera.transport == "auto":
            # The camera wants RTP over UDP: read so from now on (for this run).
            self.transport = "udp"
            self.transport_reason = "the camera refuses RTP over TCP"
            self.errors += 1
            self.last_error = "the camera refuses RTP over TCP; recording over UDP"
            self.last_error_us = self.clock.wall_us()
            _log.warning("transport_fallback", camera=self.camera.id, reason=end.message,
                         action="recording over UDP")
            return
        if end.own_reader_cannot and self.reader == "nvr" and self.camera.reader == "auto":
            # `reader: auto`: FFmpeg's reader takes this camera over, at once and for the rest
            # of the run (what the own reader cannot read, it will not read on a retry).
            self.reader = "ffmpeg"
            self._handed_over = end.message
            self.errors += 1
            self.last_error = f"the recorder's own RTSP reader cannot read it ({end.message}): " \
                "FFmpeg's reads it now"
            self.last_error_us = self.clock.wall_us()
            _log.warning("reader_fallback", camera=self.camera.id, reason=end.message,
                         action="FFmpeg's RTSP reader reads this camera from now on")
            return
        if end.gap_reason == "disk_full":
            return  # not an error of the camera; the pause loop shows the reason
        self.errors += 1
        message = end.message
        if end.tcp_refused and self.camera.transport == "tcp":
            message += (f"; set transport: auto (or udp) for camera {self.camera.id} in "
                        f"{self.config_file}, then `nvr reload`")
        if self._handed_over:  # the first reason stays in sight, not only in the log
            message += (f"; FFmpeg's reader reads it since the recorder's own could not "
                        f"({self._handed_over})")
        self.last_error = message
        self.last_error_us = self.clock.wall_us()
        delay = self.backoff.delay(uptime_s, permanent=end.permanent)
        self._set_state("failed" if end.permanent else "backoff", message)
        _log.info("camera_retry", camera=self.camera.id, delay_s=round(delay, 2))
        self._wait(delay)


# Test hook (tests/e2e/test_sdnotify.py): NVR_TEST_HANG_CAMERA=<id> wedges the first thread of
# that camera forever at its first packet, so the watchdog's restart can be seen to work.
_TEST_HANG_CAMERA = os.environ.get("NVR_TEST_HANG_CAMERA", "")
_hung: set[str] = set()
_hung_lock = threading.Lock()


def _test_hang_once(camera_id: str) -> None:
    with _hung_lock:
        if camera_id in _hung:
            return
        _hung.add(camera_id)
    _log.warning("test_hook_hanging_camera_thread", camera=camera_id)
    threading.Event().wait()

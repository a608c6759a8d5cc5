"""The own reader's read loop: one thread reads every `reader: nvr` camera's socket.

A thread per camera costs a wake-up, a GIL hand-off and a recv() per camera each time a camera's
bytes are read; with 64 cameras those, not the work on the bytes, were most of the recorder's
CPU (docs/design.md, "Ingest hot path"). Here each camera's thread still does what blocks and
what is rare: resolving, the RTSP set-up, backoff, finishing the last segment. Once the stream
plays, the thread hands its session (nvr.ingest.own_session.Reading) to this loop and waits.

Each session is paced on its own: after a step (one recv() and the frames it completes) the
session is *parked* for its pace (half a second of video while nobody watches it; nothing
before its first frame) and its socket taken out of the selector, so a camera that is starting,
watched live or fast never makes the loop read the others more often. A session goes back to
its camera's thread, which then returns the SessionEnd or raises what the session raised, when:

- a step raises: the camera's trouble (nvr.ingest.own_session.end_of_error), or anything else;
- its recorder asks it to stop (should_stop(): stop, pause for a full disk);
- its socket has had nothing to read for io_timeout_s while the loop was waiting for it (parked
  time does not count, and a socket with bytes waiting is never silent: a slow step elsewhere,
  such as an fsync at segment rotation, delays the others but never times them out).

Invariants:
1. One thread touches a session while it is in the loop: the loop's. Its camera's thread touches
   it only before run() and after run() returns.
2. A session leaves the loop unregistered from the selector before its thread wakes, so the
   thread may close its socket at once.
3. Whatever goes wrong in the loop itself, every waiting camera thread is woken with an error
   (and logs it, and retries: a new loop thread starts with the next session).
4. A loop that has not finished a round for LOOP_STALL_S takes no new session: the next session
   starts a fresh loop (the stuck thread and its sessions are left behind, as the watchdog leaves
   a wedged camera thread, and its cameras' recorders are restarted by the watchdog, because the
   stuck loop no longer calls their should_stop(), which beats their heart).
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import math
import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from typing import Protocol

from nvr import log
from nvr.ingest.session import CAMERA_STALL_S, SessionContext, SessionEnd

_log = log.get("nvr.ingest.read_loop")
IDLE_SELECT_S = 1.0  # with nothing readable: look at stops and timeouts at least this often
# Invariant 4: well under the watchdog's CAMERA_STALL_S (90 s), so that the sessions of the
# cameras it restarts go to a fresh loop, not back into the stuck one.
LOOP_STALL_S = min(30.0, CAMERA_STALL_S / 2)
PACE_GRID_S = 0.1  # parked sessions wake on this grid (_due)
LIVE_GRID_S = 0.01  # ... and a session with a short pace (watched live) on this one


class Session(Protocol):
    """What the loop drives: one camera's stream after set-up (nvr.ingest.own_session.Reading)."""

    ctx: SessionContext
    sockets: tuple[socket.socket, ...]  # the loop waits on these; step() when one is readable
    last_data: float  # time.monotonic() when a step last brought bytes

    def step(self) -> None:
        """Read what is readable (without blocking) and everything it completes."""

    def pace(self) -> float:
        """Seconds to leave the sockets alone after a step (0: wait on them at once)."""

    def starved(self, now: float) -> SessionEnd | None:
        """The end of a session whose bytes come but make no progress, else None."""

    def end_of_error(self, e: BaseException) -> SessionEnd | None:
        """The session end that an exception from step() means; None: not the camera's."""


class ReadLoopFailed(RuntimeError):
    """The loop itself failed (not one camera's stream): raised in every waiting camera's
    thread. Not a reason to hand a `reader: auto` camera to FFmpeg's reader."""


@dataclass(eq=False)
class _Entry:
    reading: Session
    socks: tuple[socket.socket, ...]  # the RTSP connection, and over UDP the RTP and RTCP
    done: threading.Event = field(default_factory=threading.Event)
    end: SessionEnd | None = None
    error: BaseException | None = None
    parked: bool = False
    waiting_since: float = field(default_factory=time.monotonic)  # in the selector since


class ReadLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._incoming: list[_Entry] = []
        self._thread: threading.Thread | None = None
        # The loop thread's wake-up pipe: made with the thread, closed when the thread ends
        # (the loop ends whenever no camera is in it; the next session starts a new one).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None
        self.round_at = time.monotonic()  # when the loop last finished a round

    def stalled(self, now: float) -> bool:
        with self._lock:
            return self._thread is not None and now - self.round_at > LOOP_STALL_S

    # -- camera threads ------------------------------------------------------------------------
    def run(self, reading: Session) -> SessionEnd:
        """Read the session in the loop until it ends; its end, or what it raised."""
        entry = _Entry(reading, reading.sockets)
        with self._lock:
            self._incoming.append(entry)
            if self._thread is None or not self._thread.is_alive():
                self._close_pipe()
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                self.round_at = time.monotonic()
                self._thread = threading.Thread(target=self._main, args=(self._wake_r,),
                                                name="nvr-read", daemon=True)
                self._thread.start()
            thread = self._thread
            self._wake()
        while not entry.done.wait(1.0):
            if not thread.is_alive() and not entry.done.is_set():
                raise ReadLoopFailed("the read loop ended without handing the session back")
        if entry.error is not None:
            raise entry.error
        assert entry.end is not None
        return entry.end

    def _wake(self) -> None:
        """(Under the lock: the pipe is the live thread's.)"""
        try:
            if self._wake_w is not None:
                self._wake_w.send(b"\0")
        except BlockingIOError:
            pass  # already woken: the pipe is full of wake-ups

    def _close_pipe(self) -> None:
        """(Under the lock.)"""
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None

    # -- the loop's thread ---------------------------------------------------------------------
    def _main(self, wake_r: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ, None)
        live: set[_Entry] = set()
        parked: list[tuple[float, int, _Entry]] = []  # (due, tie-break, entry): a heap
        order = itertools.count()
        try:
            while True:
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    if not incoming and not live:
                        self._close_pipe()
                        self._thread = None  # the next run() starts a new thread
                        return
                for entry in incoming:
                    try:
                        _register(sel, entry)
                    except (OSError, ValueError) as e:  # (a socket closed under us)
                        entry.error = ReadLoopFailed(f"the read loop could not take the "
                                                     f"session: {type(e).__name__}: {e}")
                        entry.done.set()
                        continue
                    live.add(entry)
                self._round(sel, live, parked, order, wake_r)
                self.round_at = time.monotonic()
        except BaseException as e:  # invariant 3
            _log.exception("read_loop_failed", sessions=len(live))
            with self._lock:
                left = list(live) + self._incoming
                self._incoming = []
                self._close_pipe()
                self._thread = None
            for entry in left:
                entry.error = ReadLoopFailed(f"the read loop failed: {type(e).__name__}: {e}")
                entry.done.set()
        finally:
            sel.close()

    def _round(self, sel: selectors.BaseSelector, live: set[_Entry],
               parked: list[tuple[float, int, _Entry]], order: itertools.count[int],
               wake_r: socket.socket) -> None:
        """Unpark the sessions that are due, step the readable ones, park them for their pace,
        and hand back the ended ones."""
        now = time.monotonic()
        while parked and parked[0][0] <= now:
            _, _, entry = heapq.heappop(parked)
            if entry in live:
                _register(sel, entry)
                entry.parked, entry.waiting_since = False, now
        timeout = IDLE_SELECT_S if not parked else min(IDLE_SELECT_S, max(0.0, parked[0][0] - now))
        for key, _ in sel.select(timeout):
            entry = key.data
            if entry is None:  # a wake-up: new sessions, taken at the top of the next round
                try:
                    while wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            if entry not in live or entry.parked:
                continue
            try:
                entry.reading.step()
                pace = entry.reading.pace()
            except BaseException as e:  # noqa: BLE001 - handed to the camera's thread
                end = entry.reading.end_of_error(e)
                self._release(sel, live, entry, end, None if end is not None else e)
                continue
            if pace > 0:
                _unregister(sel, entry)
                entry.parked = True
                heapq.heappush(parked, (_due(time.monotonic() + pace, pace), next(order), entry))
            else:
                entry.waiting_since = time.monotonic()
        now = time.monotonic()
        for entry in list(live):
            reading = entry.reading
            try:
                why = reading.ctx.should_stop()
                if (why is None and not entry.parked
                        and now - max(entry.waiting_since, reading.last_data)
                        > reading.ctx.io_timeout_s
                        and _silent(entry.socks)):
                    why = reading.end_of_error(TimeoutError())
                if why is None and not entry.parked:
                    why = reading.starved(now)
            except BaseException as e:  # noqa: BLE001 - handed to the camera's thread
                self._release(sel, live, entry, None, e)
                continue
            if why is not None:
                self._release(sel, live, entry, why, None)

    def _release(self, sel: selectors.BaseSelector, live: set[_Entry], entry: _Entry,
                 end: SessionEnd | None, error: BaseException | None) -> None:
        live.discard(entry)
        if not entry.parked:
            _unregister(sel, entry)  # invariant 2: before the thread wakes
        entry.end, entry.error = end, error
        entry.done.set()


def _due(at: float, pace: float) -> float:
    """`at`, rounded up to the loop's grid: sessions due about together are woken together, so
    the loop wakes at most 1/PACE_GRID_S times a second however many cameras it reads (a
    wake-up per camera per pace cost more than the reading: 0.67-0.71x of ffmpeg's CPU at 16
    cameras against 0.56-0.65x for one wake-up for all). A watched camera's short pace keeps a
    fine grid of its own."""
    grid = PACE_GRID_S if pace >= 4 * PACE_GRID_S else LIVE_GRID_S
    return math.ceil(at / grid) * grid


def _register(sel: selectors.BaseSelector, entry: _Entry) -> None:
    for sock in entry.socks:
        try:
            sel.register(sock, selectors.EVENT_READ, entry)
        except BaseException:
            _unregister(sel, entry)  # all of the session's sockets or none
            raise


def _unregister(sel: selectors.BaseSelector, entry: _Entry) -> None:
    for sock in entry.socks:
        with contextlib.suppress(KeyError, ValueError):
            sel.unregister(sock)


def _silent(socks: tuple[socket.socket, ...]) -> bool:
    """Nothing to read right now (bytes waiting, or the end of the stream, are not silence).
    (poll(), not a peeking recv(): on a socket with a timeout CPython waits before a recv.)"""
    poller = select.poll()
    for sock in socks:
        poller.register(sock.fileno(), select.POLLIN)
    return not poller.poll(0)


_shared: ReadLoop | None = None
_shared_lock = threading.Lock()


def shared_read_loop() -> ReadLoop:
    """The process's read loop (made on first use; made afresh if it is stuck: invariant 4)."""
    global _shared
    with _shared_lock:
        if _shared is not None and _shared.stalled(time.monotonic()):
            _log.error("read_loop_stalled", stalled_s=round(time.monotonic() - _shared.round_at),
                       action="new sessions go to a new read loop")
            _shared = None
        if _shared is None:
            _shared = ReadLoop()
        return _shared

"""The own reader's read loop: one thread reads every `reader: nvr` camera's socket.

A thread per camera costs a wake-up, a GIL hand-off and a recv() per camera each time a camera's
bytes are read; with 64 cameras those, not the work on the bytes, were most of the recorder's
CPU (docs/design.md, "Ingest hot path"). Here each camera's thread still does what blocks and
what is rare: resolving, the RTSP set-up, backoff, finishing the last segment. Once the stream
plays, the thread hands its session (nvr.ingest.own_session.Reading) to this loop and waits;
the loop steps every session whose socket is readable, then sleeps the shortest pace any
session asks for, so that each recv() takes many frames. A session goes back to its camera's
thread (and that thread returns its SessionEnd, or raises what the session raised) when:

- a step raises: the camera's trouble (nvr.ingest.own_session.end_of_error), or anything else;
- its recorder asks it to stop (should_stop(): stop, pause for a full disk);
- no bytes came for io_timeout_s.

Invariants:
1. One thread touches a session while it is in the loop: the loop's. Its camera's thread touches
   it only before run() and after run() returns.
2. A session leaves the loop unregistered from the selector before its thread wakes, so the
   thread may close its socket at once.
3. Whatever goes wrong in the loop itself, every waiting camera thread is woken with the error
   (and logs it, and retries: a new loop thread starts with the next session).
"""

from __future__ import annotations

import select
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field

from nvr import log
from nvr.ingest.own_session import READ_PACE_S, Reading, end_of_error
from nvr.ingest.session import SessionEnd

_log = log.get("nvr.ingest.read_loop")
IDLE_SELECT_S = 1.0  # with nothing readable: look at stops and timeouts at least this often


@dataclass(eq=False)
class _Entry:
    reading: Reading
    done: threading.Event = field(default_factory=threading.Event)
    end: SessionEnd | None = None
    error: BaseException | None = None


class ReadLoop:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._incoming: list[_Entry] = []
        self._thread: threading.Thread | None = None
        # The loop thread's wake-up pipe: made with the thread, closed when the thread ends
        # (the loop ends whenever no camera is in it; the next session starts a new one).
        self._wake_r: socket.socket | None = None
        self._wake_w: socket.socket | None = None

    # -- camera threads ------------------------------------------------------------------------
    def run(self, reading: Reading) -> SessionEnd:
        """Read the session in the loop until it ends; its end, or what it raised."""
        entry = _Entry(reading)
        with self._lock:
            self._incoming.append(entry)
            if self._thread is None or not self._thread.is_alive():
                self._wake_r, self._wake_w = socket.socketpair()
                self._wake_r.setblocking(False)
                self._wake_w.setblocking(False)
                self._thread = threading.Thread(target=self._main, args=(self._wake_r,),
                                                name="nvr-read", daemon=True)
                self._thread.start()
            thread = self._thread
            self._wake()
        while not entry.done.wait(1.0):
            if not thread.is_alive() and not entry.done.is_set():
                raise RuntimeError("the read loop ended without handing the session back")
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

    # -- the loop's thread ---------------------------------------------------------------------
    def _main(self, wake_r: socket.socket) -> None:
        sel = selectors.DefaultSelector()
        sel.register(wake_r, selectors.EVENT_READ, None)
        live: dict[_Entry, socket.socket] = {}
        try:
            while True:
                with self._lock:
                    incoming, self._incoming = self._incoming, []
                    if not incoming and not live:
                        self._end_thread()  # the next run() starts a new one
                        return
                for entry in incoming:
                    sock = entry.reading.rtsp.sock
                    assert sock is not None
                    sel.register(sock, selectors.EVENT_READ, entry)
                    live[entry] = sock
                self._round(sel, live, wake_r)
        except BaseException as e:  # invariant 3
            _log.exception("read_loop_failed", sessions=len(live))
            with self._lock:
                left = list(live) + self._incoming
                self._incoming = []
                self._end_thread()
            for entry in left:
                entry.error = e
                entry.done.set()
        finally:
            sel.close()

    def _end_thread(self) -> None:
        """(Under the lock.) The loop thread is ending: close its pipe."""
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        self._thread = None

    def _round(self, sel: selectors.BaseSelector, live: dict[_Entry, socket.socket],
               wake_r: socket.socket) -> None:
        """Step every readable session, hand back the ended ones, then sleep the pace."""
        for key, _ in sel.select(IDLE_SELECT_S):
            entry = key.data
            if entry is None:  # a wake-up: new sessions to take
                try:
                    while wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            if entry not in live:
                continue
            try:
                entry.reading.step()
            except BaseException as e:  # noqa: BLE001 - handed to the camera's thread
                end = end_of_error(e, entry.reading.ctx.io_timeout_s)
                self._release(sel, live, entry, end, None if end is not None else e)
        now = time.monotonic()
        for entry in list(live):
            reading = entry.reading
            try:
                why = reading.ctx.should_stop()
            except BaseException as e:  # noqa: BLE001
                self._release(sel, live, entry, None, e)
                continue
            if why is None and now - reading.last_data > reading.ctx.io_timeout_s:
                why = end_of_error(TimeoutError(), reading.ctx.io_timeout_s)
            if why is not None:
                self._release(sel, live, entry, why, None)
        pace = min((e.reading.pace() for e in live), default=0.0)
        if pace > 0:
            # Let the bytes gather; woken early only by a new session (the arrival of its
            # first frame is its wall-clock anchor).
            select.select([wake_r], [], [], pace)

    def _release(self, sel: selectors.BaseSelector, live: dict[_Entry, socket.socket],
                 entry: _Entry, end: SessionEnd | None, error: BaseException | None) -> None:
        sel.unregister(live.pop(entry))  # invariant 2: before the thread wakes
        entry.end, entry.error = end, error
        entry.done.set()


_shared: ReadLoop | None = None
_shared_lock = threading.Lock()


def shared_read_loop() -> ReadLoop:
    """The process's read loop (made on first use)."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = ReadLoop()
        return _shared


__all__ = ["READ_PACE_S", "ReadLoop", "shared_read_loop"]

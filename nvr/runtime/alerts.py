"""Active alerts: one source for `nvr status`, the STATUS= line sent to systemd
(nvr.runtime.watchdog) and the `nvr_alerts` metric (nvr.runtime.metrics).

Pure functions over plain values; `active` reads the running recorder through `AlertsPort`
(attributes only, no I/O).
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from nvr.config.model import CameraConfig, CameraMap

# Every kind of alert, in the order they are listed. `clock` is raised by retention's clock
# check (AlertsPort.clock_alert); nothing else here depends on it.
STORAGE_PAUSED, CLOCK, CAMERA_FAILED = "storage_paused", "clock", "camera_failed"
# The viewing pages could not start (port taken, TLS key unreadable): recording goes on, but
# no live or playback link can be made until it is fixed.
WEB = "web_unavailable"
# A camera's own clock (its RTCP sender reports) is off the box's by more than
# CAMERA_CLOCK_LIMIT_S: what it burns into its picture disagrees with the recording's times.
CAMERA_CLOCK = "camera_clock"
CAMERA_CLOCK_LIMIT_S = 60.0
KINDS = (STORAGE_PAUSED, CLOCK, CAMERA_FAILED, CAMERA_CLOCK, WEB)


@dataclass(frozen=True, slots=True)
class Alert:
    kind: str
    message: str  # one line for a person; names the camera when there is one
    camera: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "camera": self.camera, "message": self.message}


@dataclass(frozen=True, slots=True)
class CameraView:
    id: str
    state: str
    reason: str = ""
    errors: int = 0
    clock_offset_s: float | None = None


def camera_down(state: str, errors: int) -> bool:
    """Not recording because something went wrong: `failed` (credentials, no video), or
    retrying after an error (`backoff`, and the `connecting` between two tries). A camera
    starting up (no error yet) and a disabled camera are not alerts, nor is the `failed` a
    disk-full pause sets without an error (the storage alert covers it; for the half second
    after a resume the camera still shows it)."""
    return state in ("failed", "backoff", "connecting") and errors > 0


def alerts(cameras: Sequence[CameraView], paused: Collection[str], pause_alert: str | None,
           clock_alert: str | None = None, web_alert: str | None = None) -> list[Alert]:
    """Storage first (it stops every camera), then the clock, then each camera down, then
    each camera whose own clock is off, then the viewing pages."""
    out: list[Alert] = []
    if paused or pause_alert:
        what = pause_alert or "the disk is full"
        out.append(Alert(STORAGE_PAUSED, f"recording paused on {len(paused)} "
                         f"camera{'' if len(paused) == 1 else 's'}: {what}"))
    if clock_alert:
        out.append(Alert(CLOCK, clock_alert))
    for cam in cameras:
        if cam.id in paused or not camera_down(cam.state, cam.errors):
            continue  # a paused camera is the storage alert's, not its own
        why = cam.reason or f"{cam.errors} error{'' if cam.errors == 1 else 's'}"
        out.append(Alert(CAMERA_FAILED, f"camera {cam.id} is not recording ({cam.state}): "
                         f"{why}", cam.id))
    for cam in cameras:
        off = cam.clock_offset_s
        if off is not None and abs(off) > CAMERA_CLOCK_LIMIT_S:
            out.append(Alert(CAMERA_CLOCK, f"camera {cam.id}'s own clock is {_span(abs(off))} "
                             f"{'ahead of' if off > 0 else 'behind'} the recorder's; set its "
                             "NTP server (the time it shows in its picture is wrong)", cam.id))
    if web_alert:
        out.append(Alert(WEB, web_alert))
    return out


def _span(s: float) -> str:
    if s < 120:
        return f"{s:.0f} s"
    if s < 7200:
        return f"{s / 60:.0f} min"
    if s < 172800:
        return f"{s / 3600:.0f} h"
    return f"{s / 86400:.0f} days"


class CameraState(Protocol):
    """A camera's recorder as the alerts read it (nvr.ingest.recorder.CameraRecorder)."""

    state: str
    reason: str
    errors: int

    @property
    def clock_offset_s(self) -> float | None: ...


class AlertsPort(Protocol):
    """What the alerts read of the running recorder (nvr.runtime.service implements it)."""

    config: CameraMap
    config_path: Path

    @property
    def recorders(self) -> Mapping[str, CameraState]: ...

    @property
    def paused(self) -> Collection[str]: ...

    pause_alert: str | None

    @property
    def clock_alert(self) -> str | None: ...

    web_alert: str | None


def active(port: AlertsPort) -> list[Alert]:
    """The running recorder's alerts now (cheap: attributes only, no I/O)."""
    views = []
    for n, cam in enumerate(port.config.cameras):
        rec = port.recorders.get(cam.id)
        views.append(CameraView(cam.id, rec.state, with_fix(rec.reason, n, cam, port.config_path),
                                rec.errors, rec.clock_offset_s)
                     if rec is not None else CameraView(cam.id, "disabled"))  # fmt: skip
    return alerts(views, port.paused, port.pause_alert, port.clock_alert, port.web_alert)


def with_fix(reason: str, n: int, cam: CameraConfig, path: object) -> str:
    """A camera's reason, with the setting to fix where the reason is one a setting fixes."""
    if not reason.startswith("credentials refused"):
        return reason
    onvif = cam.onvif
    if onvif is not None and onvif.password_file:
        where = (f"the password file named in cameras[{n}].onvif.password_file "
                 f"({onvif.password_file}) of {path}")
    elif onvif is not None:
        where = f"cameras[{n}].onvif.username and password of {path}"
    else:
        where = f"the user and password in cameras[{n}].rtsp of {path}"
    return f"{reason}: check {where}, then `nvr reload`"


def web_alert(listen: str, config_path: object, exc: OSError) -> str:
    """Why the viewing pages are not served, and the fix, in one line."""
    why = (exc.strerror or str(exc)).lower()
    port = listen.rsplit(":", 1)[-1]
    if exc.errno in (98, 13):  # EADDRINUSE, EACCES: the address itself is the problem
        fix = (f"stop what uses port {port} (ss -ltnp | grep :{port}) or set live.listen to "
               f"another address in {config_path}")
    else:
        fix = f"fix live.listen / live.tls in {config_path}"
    return (f"the viewing pages cannot listen on {listen} ({why}), so no live or playback "
            f"link can be made: {fix}, then restart nvr")


def short(found: Sequence[Alert]) -> str:
    """For the one-line STATUS=: `none`, or `disk full…; failed: dock,gone`."""
    if not found:
        return "none"
    parts = [a.message for a in found if a.kind != CAMERA_FAILED]
    failed = [a.camera or "?" for a in found if a.kind == CAMERA_FAILED]
    if failed:
        parts.append("failed: " + ",".join(failed))
    return "; ".join(parts)


def counts(found: Sequence[Alert]) -> dict[str, int]:
    """Alerts by kind for the metrics: storage_paused and camera_failed always (0 when none),
    other kinds when they occur."""
    out = {STORAGE_PAUSED: 0, CAMERA_FAILED: 0}
    for a in found:
        out[a.kind] = out.get(a.kind, 0) + 1
    return out

"""The camera map (config/example.yaml) as pydantic models. Unknown keys are errors.

The loader (nvr.config.loader) turns YAML into these and maps every validation error back to
its line. Policy-bearing rules (privacy areas, roles) quote the policy clause they enforce.
"""

from __future__ import annotations

import ipaddress
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)

CAMERA_ID_PATTERN = r"^[a-z0-9-]{1,40}$"

PRIVACY_CLAUSE = (
    '"Cameras will not be placed in areas where individuals have a reasonable expectation of '
    'privacy, such as restrooms or private offices." (Security Camera Policy, Privacy)'
)


READING_CLAUSE = (
    '"Cameras are not positioned to identify a person\'s reading, viewing, or listening '
    'activities." (Security Camera Policy, Privacy)'
)


AUDIO_CLAUSE = (
    '"No audible communication shall be monitored or recorded by the security cameras." '
    "(Security Camera Policy, Data Storage & Access)"
)


class Role(StrEnum):
    director = "director"
    assistant_director = "assistant_director"
    staff = "staff"
    elder_affairs_director = "elder_affairs_director"
    it = "it"
    facilities = "facilities"
    # Not configurable: anyone not listed in `people:`.
    public = "public"


PRIVACY_AREAS = frozenset(
    {
        "restroom",
        "private_office",
        "locker_room",
        "changing_room",
        "nursing_room",
        "staff_break_room",
    }
)
ALLOWED_AREAS = frozenset(
    {
        "entrance",
        "delivery",
        "parking",
        "public_seating",
        "service_desk",
        "stacks",
        "hallway",
        "meeting_room",
        "exterior",
        "senior_center_shared",
    }
)


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class StorageConfig(Strict):
    root: Path = Path("/var/lib/nvr")
    segment_seconds: Annotated[float, Field(ge=1, le=3600)] = 60
    min_free_percent: Annotated[float, Field(ge=0, le=90)] = 10


class RetentionConfig(Strict):
    days: Annotated[float, Field(gt=0, le=3650)] = 30
    # How often the retention executor runs, in seconds.
    interval_seconds: Annotated[float, Field(gt=0, le=86400)] = 60


class ControlConfig(Strict):
    socket: Path = Path("/run/nvr/control.sock")


class TlsConfig(Strict):
    cert: Path
    key: Path


class LiveConfig(Strict):
    listen: str = "127.0.0.1:8443"
    tls: TlsConfig | None = None
    # Longest emergency live feed, in minutes (docs/policy.md: emergency access "must be terminated").
    emergency_max_minutes: Annotated[int, Field(ge=1, le=24 * 60)] = 240

    @field_validator("listen")
    @classmethod
    def _host_port(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT (for example 127.0.0.1:8443)")
        return v

    @model_validator(mode="after")
    def _plain_http_only_on_loopback(self) -> LiveConfig:
        host = self.listen.rpartition(":")[0].strip("[]")
        if self.tls is None and not _is_loopback(host):
            raise ValueError(
                f"live view on {self.listen} would be plain HTTP on a non-loopback address; "
                "listen on 127.0.0.1 or add tls: {cert: ..., key: ...}"
            )
        return self


class MetricsConfig(Strict):
    """Prometheus text on GET /metrics (nvr.runtime.metrics): counts and states, never footage."""

    listen: str

    @field_validator("listen")
    @classmethod
    def _loopback_or_explicit(cls, v: str) -> str:
        host, sep, port = v.rpartition(":")
        if not sep or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"{v!r} is not HOST:PORT (for example 127.0.0.1:9108)")
        host = host.strip("[]")
        if _is_loopback(host):
            return v
        try:
            addr = ipaddress.ip_address(host)
        except ValueError:
            raise ValueError(f"metrics on {v}: give an IP address, not the name {host!r}, "
                             "so the port opens where you meant") from None
        if addr.is_unspecified:
            raise ValueError(f"metrics on {v} would listen on every network; give 127.0.0.1 "
                             "or the one address your monitoring reaches (e.g. 10.20.0.5:9108)")
        return v


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class Person(Strict):
    user: Annotated[str, Field(pattern=r"^[a-z_][a-z0-9_.-]{0,31}$")]
    role: Role

    @field_validator("role")
    @classmethod
    def _not_public(cls, v: Role) -> Role:
        if v is Role.public:
            raise ValueError("'public' is everyone not listed; it cannot be given to an account")
        return v


class OnvifConfig(Strict):
    host: str
    port: Annotated[int, Field(gt=0, lt=65536)] = 80
    username: str
    # Resolved by the loader from password_file, ${ENV} or $CREDENTIALS_DIRECTORY.
    password: str | None = Field(default=None, repr=False)
    password_file: Path | None = None
    profile: Annotated[int, Field(ge=0)] = 0


Point = tuple[float, float]


class PrivacyMask(Strict):
    """A part of the picture that never leaves the recorder: filled with a solid colour in every
    export and still (nvr/export/masks.py). Coordinates are fractions of the picture's width
    and height (0-1), so a mask survives a change of the camera's resolution."""

    note: Annotated[str, Field(min_length=1, max_length=200)]
    polygon: list[Point]

    @field_validator("note")
    @classmethod
    def _note_says_why(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("say why the mask is there (e.g. note: public computers)")
        return v

    @field_validator("polygon")
    @classmethod
    def _polygon(cls, v: list[Point]) -> list[Point]:
        if len(v) < 3:
            raise ValueError(f"a mask polygon needs at least 3 points [x, y], not {len(v)}")
        for i, (x, y) in enumerate(v):
            if not (0 <= x <= 1 and 0 <= y <= 1):
                raise ValueError(
                    f"point {i + 1} [{x}, {y}] is outside the picture: x and y are fractions "
                    "of its width and height, from 0 to 1"
                )
        crossing = self_intersection(v)
        if crossing is not None:
            a, b = crossing
            raise ValueError(
                f"the polygon crosses itself (edge {a + 1} crosses edge {b + 1}); list its "
                "corners in order around the shape"
            )
        if polygon_area(v) <= 0:
            raise ValueError("the polygon has no area (its points lie on one line)")
        return v


def polygon_area(points: list[Point]) -> float:
    """Area as a fraction of the picture (shoelace)."""
    n = len(points)
    twice = sum(points[i][0] * points[(i + 1) % n][1] - points[(i + 1) % n][0] * points[i][1]
                for i in range(n))
    return abs(twice) / 2


def self_intersection(points: list[Point]) -> tuple[int, int] | None:
    """The first pair of non-adjacent edges that touch or cross (edge i runs from point i to
    point i+1), or None for a simple polygon."""
    n = len(points)
    edges = [(points[i], points[(i + 1) % n]) for i in range(n)]
    for i in range(n):
        for j in range(i + 1, n):
            if j == i + 1 or (i == 0 and j == n - 1):
                continue  # neighbours share a corner
            if _segments_touch(*edges[i], *edges[j]):
                return i, j
    return None


def _segments_touch(p1: Point, p2: Point, q1: Point, q2: Point) -> bool:
    def orient(a: Point, b: Point, c: Point) -> float:
        return (b[0] - a[0]) * (c[1] - a[1]) - (b[1] - a[1]) * (c[0] - a[0])

    def on(a: Point, b: Point, c: Point) -> bool:
        return (min(a[0], b[0]) <= c[0] <= max(a[0], b[0])
                and min(a[1], b[1]) <= c[1] <= max(a[1], b[1]))

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    if ((d1 > 0) != (d2 > 0) and d1 != 0 and d2 != 0
            and (d3 > 0) != (d4 > 0) and d3 != 0 and d4 != 0):
        return True
    return ((d1 == 0 and on(q1, q2, p1)) or (d2 == 0 and on(q1, q2, p2))
            or (d3 == 0 and on(p1, p2, q1)) or (d4 == 0 and on(p1, p2, q2)))


class CameraConfig(Strict):
    id: Annotated[str, Field(pattern=CAMERA_ID_PATTERN)]
    name: str
    area: str
    shared_with_senior_center: bool = False
    rtsp: str | None = Field(default=None, repr=False)
    onvif: OnvifConfig | None = None
    retention_days: Annotated[float, Field(gt=0, le=3650)] | None = None
    live_rtsp: str | None = Field(default=None, repr=False)
    enabled: bool = True
    # Which RTSP client reads the camera: the recorder's own (`nvr`, about a third of the CPU of
    # FFmpeg's), FFmpeg's (`ffmpeg`), or `auto` (the default): the own, and FFmpeg's for a
    # camera the own cannot read or keeps failing on (docs/design.md, "Ingest hot path").
    reader: Literal["auto", "ffmpeg", "nvr"] = "auto"
    # How RTP comes: `auto` (the default) interleaved in the RTSP connection (TCP), and over UDP
    # for a camera that refuses that; `tcp` or `udp` only. Both readers read either.
    transport: Literal["auto", "tcp", "udp"] = "auto"
    # Parts of the picture burned into every export and still (docs/policy.md, "Privacy
    # masks"); the recorded segments themselves are never re-encoded.
    privacy_masks: list[PrivacyMask] = []
    # How live views show the masks: `overlay` (the default, also when unset) fills them solid
    # over the picture in the viewing page; `burn` also re-encodes the live stream with them
    # filled (nvr.web.rtc.MaskedTrack), so the browser never receives what is under them.
    # Playback is always `overlay` (the recorded files are served as they are).
    privacy_masks_live: Literal["overlay", "burn"] | None = None
    # How the camera may be answered when it asks for a password: `digest` never
    # sends it in clear (a Basic-only camera is refused), `any` answers Basic too. Unset: Basic
    # only to a loopback address or over rtsps://, or where allow_basic_auth: true says the
    # network is trusted (nvr.media.rtsp.basic_auth_allowed).
    auth: Literal["digest", "any"] | None = None
    allow_basic_auth: bool = False

    @field_validator("area")
    @classmethod
    def _area_allowed(cls, v: str) -> str:
        if v in PRIVACY_AREAS:
            raise ValueError(
                f"area {v!r} is a privacy area and cannot have a camera: {PRIVACY_CLAUSE}"
            )
        if v not in ALLOWED_AREAS:
            raise ValueError(f"unknown area {v!r}; use one of: {', '.join(sorted(ALLOWED_AREAS))}")
        return v

    @field_validator("rtsp", "live_rtsp")
    @classmethod
    def _rtsp_url(cls, v: str | None) -> str | None:
        if v is not None and not v.startswith(("rtsp://", "rtsps://")):
            raise ValueError("must start with rtsp:// or rtsps://")
        return v

    @model_validator(mode="after")
    def _one_source(self) -> CameraConfig:
        if (self.rtsp is None) == (self.onvif is None):
            raise ValueError("give exactly one of rtsp: or onvif:")
        if self.auth == "digest" and self.allow_basic_auth:
            raise ValueError("auth: digest refuses Basic authentication, allow_basic_auth: true "
                             "allows it; keep one of them")
        return self


class CameraMap(Strict):
    site: str
    storage: StorageConfig = StorageConfig()
    retention: RetentionConfig = RetentionConfig()
    control: ControlConfig = ControlConfig()
    live: LiveConfig = LiveConfig()
    metrics: MetricsConfig | None = None
    people: list[Person] = []
    cameras: list[CameraConfig] = []
    # argv of a command run with a breach report's details on stdin (e.g. a mail script).
    notify_command: list[str] | None = None

    @model_validator(mode="after")
    def _unique(self, info: ValidationInfo) -> CameraMap:
        # The loader runs these checks itself so that each duplicate gets its own line number;
        # it says so through the validation context to avoid reporting them twice.
        if isinstance(info.context, dict) and info.context.get("duplicates_checked"):
            return self
        for problem in duplicate_problems(self.cameras, self.people):
            raise ValueError(problem[2])
        return self

    def camera(self, camera_id: str) -> CameraConfig | None:
        return next((c for c in self.cameras if c.id == camera_id), None)

    def role_of(self, user: str | None) -> Role:
        for p in self.people:
            if p.user == user:
                return p.role
        return Role.public

    def retention_days_for(self, camera_id: str) -> float:
        cam = self.camera(camera_id)
        if cam is not None and cam.retention_days is not None:
            return cam.retention_days
        return self.retention.days


def duplicate_problems(
    cameras: list[CameraConfig] | list[dict[str, object]],
    people: list[Person] | list[dict[str, object]],
) -> list[tuple[str, int, str]]:
    """(list name, index of the second occurrence, message) for each repeated camera id / user."""
    out: list[tuple[str, int, str]] = []
    for list_name, key, what in (("cameras", "id", "camera id"), ("people", "user", "account")):
        items = cameras if list_name == "cameras" else people
        seen: set[object] = set()
        for i, item in enumerate(items):
            value = item.get(key) if isinstance(item, dict) else getattr(item, key, None)
            if not isinstance(value, str):
                continue
            if value in seen:
                why = (
                    "ids name folders on disk" if list_name == "cameras" else "one role per account"
                )
                out.append((list_name, i, f"{what} {value!r} is used twice; {why}"))
            seen.add(value)
    return out

"""A TEST DOUBLE of an ONVIF camera's SOAP services: no ONVIF device runs on this machine.

It answers exactly the operations onvif-zeep-async sends to resolve a stream URI
(GetSystemDateAndTime, GetServices or GetCapabilities, GetProfiles, GetStreamUri) over
SOAP 1.2, with element names and namespaces taken from the devicemgmt.wsdl, media.wsdl and
onvif.xsd shipped in the onvif package. Like a real device it accepts GetSystemDateAndTime
without credentials (ONVIF Core "PRE_AUTH" class) and checks the WS-UsernameToken
PasswordDigest, Base64(SHA1(nonce + created + password)), and the Created time against its
own clock on everything else, answering a ter:NotAuthorized fault otherwise.

The stream URIs it hands out are the real GStreamer test camera's, so a resolved URI can be
opened for real. `set_uri()` changes one at runtime, as a camera does after a reboot.
"""

from __future__ import annotations

import base64
import hashlib
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from xml.sax.saxutils import escape, quoteattr

from aiohttp import web

ENV = "http://www.w3.org/2003/05/soap-envelope"
TT = "http://www.onvif.org/ver10/schema"
TDS = "http://www.onvif.org/ver10/device/wsdl"
TRT = "http://www.onvif.org/ver10/media/wsdl"
TER = "http://www.onvif.org/ver10/error"
WSSE = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-secext-1.0.xsd"
WSU = "http://docs.oasis-open.org/wss/2004/01/oasis-200401-wss-wssecurity-utility-1.0.xsd"

DEVICE_PATH = "/onvif/device_service"
MEDIA_PATH = "/onvif/media_service"
PRE_AUTH_OPS = {"GetSystemDateAndTime"}
CREATED_WINDOW_S = 300  # how far a token's Created may stray from the device clock


@dataclass
class Profile:
    token: str
    name: str
    uri: str


@dataclass
class OnvifDouble:
    """Run with `async with OnvifDouble(...) as cam:`; `cam.port` is chosen by the OS."""

    username: str
    password: str
    profiles: list[Profile]
    clock_offset: timedelta = timedelta(0)  # the device clock minus ours
    get_services: bool = True  # False: an older device that only knows GetCapabilities
    media: bool = True  # False: a device without a media service
    auth_status: int = 400  # ONVIF Core says 400; many devices answer 401
    host: str = "127.0.0.1"
    port: int = 0
    calls: list[str] = field(default_factory=list)  # operation names, in order
    stream_setups: list[tuple[str, str]] = field(default_factory=list)  # (Stream, Protocol)
    _runner: web.AppRunner | None = None

    def set_uri(self, token: str, uri: str) -> None:
        next(p for p in self.profiles if p.token == token).uri = uri

    async def __aenter__(self) -> OnvifDouble:
        app = web.Application()
        app.router.add_post(DEVICE_PATH, self._handle)
        app.router.add_post(MEDIA_PATH, self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = self._runner.addresses[0][1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def _base(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def _handle(self, request: web.Request) -> web.Response:
        try:
            root = ET.fromstring(await request.read())
        except ET.ParseError:
            return _fault(400, "env:Sender", "ter:WellFormed", "not well-formed XML")
        body = root.find(f"{{{ENV}}}Body")
        if body is None or len(body) == 0:
            return _fault(400, "env:Sender", "ter:MissingAttr", "no SOAP body")
        op_el = body[0]
        op = op_el.tag.rsplit("}", 1)[-1]
        self.calls.append(op)
        if op not in PRE_AUTH_OPS and not self._authorized(root):
            return _fault(self.auth_status, "env:Sender", "ter:NotAuthorized",
                          "Sender not Authorized")
        handler = self._ops().get((request.path, op))
        if handler is None:
            return _fault(400, "env:Receiver", "ter:ActionNotSupported",
                          f"{op} is not supported")
        return handler(op_el)

    def _ops(self) -> dict[tuple[str, str], Callable[[ET.Element], web.Response]]:
        ops: dict[tuple[str, str], Callable[[ET.Element], web.Response]] = {
            (DEVICE_PATH, "GetSystemDateAndTime"): self._get_system_date_and_time,
            (DEVICE_PATH, "GetCapabilities"): self._get_capabilities,
        }
        if self.get_services:
            ops[(DEVICE_PATH, "GetServices")] = self._get_services
        if self.media:
            ops[(MEDIA_PATH, "GetProfiles")] = self._get_profiles
            ops[(MEDIA_PATH, "GetStreamUri")] = self._get_stream_uri
        return ops

    def _authorized(self, root: ET.Element) -> bool:
        token = root.find(f"{{{ENV}}}Header/{{{WSSE}}}Security/{{{WSSE}}}UsernameToken")
        if token is None:
            return False
        user = token.findtext(f"{{{WSSE}}}Username")
        digest = token.findtext(f"{{{WSSE}}}Password") or ""
        nonce = token.findtext(f"{{{WSSE}}}Nonce") or ""
        created = token.findtext(f"{{{WSU}}}Created") or ""
        if user != self.username or not _created_is_fresh(created, self._now()):
            return False
        expected = base64.b64encode(hashlib.sha1(
            base64.b64decode(nonce) + created.encode() + self.password.encode()
        ).digest()).decode()
        return digest == expected

    def _now(self) -> datetime:
        return datetime.now(UTC) + self.clock_offset

    def _get_system_date_and_time(self, _: ET.Element) -> web.Response:
        now = self._now()
        return _ok(
            "<tds:GetSystemDateAndTimeResponse><tds:SystemDateAndTime>"
            "<tt:DateTimeType>NTP</tt:DateTimeType><tt:DaylightSavings>false</tt:DaylightSavings>"
            "<tt:TimeZone><tt:TZ>UTC0</tt:TZ></tt:TimeZone><tt:UTCDateTime>"
            f"<tt:Time><tt:Hour>{now.hour}</tt:Hour><tt:Minute>{now.minute}</tt:Minute>"
            f"<tt:Second>{now.second}</tt:Second></tt:Time>"
            f"<tt:Date><tt:Year>{now.year}</tt:Year><tt:Month>{now.month}</tt:Month>"
            f"<tt:Day>{now.day}</tt:Day></tt:Date>"
            "</tt:UTCDateTime></tds:SystemDateAndTime></tds:GetSystemDateAndTimeResponse>"
        )

    def _get_services(self, _: ET.Element) -> web.Response:
        services = [(TDS, DEVICE_PATH)] + ([(TRT, MEDIA_PATH)] if self.media else [])
        items = "".join(
            f"<tds:Service><tds:Namespace>{ns}</tds:Namespace>"
            f"<tds:XAddr>{self._base()}{path}</tds:XAddr>"
            "<tds:Version><tt:Major>2</tt:Major><tt:Minor>40</tt:Minor></tds:Version>"
            "</tds:Service>"
            for ns, path in services
        )
        return _ok(f"<tds:GetServicesResponse>{items}</tds:GetServicesResponse>")

    def _get_capabilities(self, _: ET.Element) -> web.Response:
        device = f"<tt:Device><tt:XAddr>{self._base()}{DEVICE_PATH}</tt:XAddr></tt:Device>"
        media = (
            f"<tt:Media><tt:XAddr>{self._base()}{MEDIA_PATH}</tt:XAddr>"
            "<tt:StreamingCapabilities><tt:RTPMulticast>false</tt:RTPMulticast>"
            "<tt:RTP_TCP>true</tt:RTP_TCP><tt:RTP_RTSP_TCP>true</tt:RTP_RTSP_TCP>"
            "</tt:StreamingCapabilities></tt:Media>"
        ) if self.media else ""
        return _ok(f"<tds:GetCapabilitiesResponse><tds:Capabilities>{device}{media}"
                   "</tds:Capabilities></tds:GetCapabilitiesResponse>")

    def _get_profiles(self, _: ET.Element) -> web.Response:
        items = "".join(
            f"<trt:Profiles token={quoteattr(p.token)} fixed=\"true\">"
            f"<tt:Name>{escape(p.name)}</tt:Name></trt:Profiles>"
            for p in self.profiles
        )
        return _ok(f"<trt:GetProfilesResponse>{items}</trt:GetProfilesResponse>")

    def _get_stream_uri(self, op: ET.Element) -> web.Response:
        setup = op.find(f"{{{TRT}}}StreamSetup")
        stream = setup.findtext(f"{{{TT}}}Stream") if setup is not None else None
        proto = setup.findtext(f"{{{TT}}}Transport/{{{TT}}}Protocol") if setup is not None else None
        self.stream_setups.append((stream or "", proto or ""))
        token = op.findtext(f"{{{TRT}}}ProfileToken")
        profile = next((p for p in self.profiles if p.token == token), None)
        if profile is None:
            return _fault(400, "env:Sender", "ter:InvalidArgVal", "no such profile")
        return _ok(
            "<trt:GetStreamUriResponse><trt:MediaUri>"
            f"<tt:Uri>{escape(profile.uri)}</tt:Uri>"
            "<tt:InvalidAfterConnect>false</tt:InvalidAfterConnect>"
            "<tt:InvalidAfterReboot>false</tt:InvalidAfterReboot>"
            "<tt:Timeout>PT0S</tt:Timeout>"
            "</trt:MediaUri></trt:GetStreamUriResponse>"
        )


def _created_is_fresh(created: str, now: datetime) -> bool:
    try:
        at = datetime.fromisoformat(created.replace("Z", "+00:00"))
    except ValueError:
        return False
    if at.tzinfo is None:
        at = at.replace(tzinfo=UTC)
    return abs((at - now).total_seconds()) <= CREATED_WINDOW_S


def _envelope(body: str) -> str:
    return (
        '<?xml version="1.0" encoding="UTF-8"?>'
        f'<env:Envelope xmlns:env="{ENV}" xmlns:tt="{TT}" xmlns:tds="{TDS}" '
        f'xmlns:trt="{TRT}" xmlns:ter="{TER}"><env:Body>{body}</env:Body></env:Envelope>'
    )


def _ok(body: str) -> web.Response:
    return web.Response(text=_envelope(body), content_type="application/soap+xml",
                        charset="utf-8")


def _fault(status: int, code: str, subcode: str, reason: str) -> web.Response:
    body = (
        f"<env:Fault><env:Code><env:Value>{code}</env:Value>"
        f"<env:Subcode><env:Value>{subcode}</env:Value></env:Subcode></env:Code>"
        f'<env:Reason><env:Text xml:lang="en">{escape(reason)}</env:Text></env:Reason>'
        "</env:Fault>"
    )
    return web.Response(status=status, text=_envelope(body),
                        content_type="application/soap+xml", charset="utf-8")

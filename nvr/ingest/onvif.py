"""Find an ONVIF camera's RTSP URI: Media GetProfiles, then GetStreamUri for the chosen profile.

onvif-zeep-async (package `onvif`) does the SOAP work. Facts about the installed 4.x that this
module relies on (read in its client.py):
- the WSDLs ship inside the package and ONVIFCamera's default `wsdl_dir` points at them; the
  documents are parsed in an executor thread, so nothing here blocks the event loop;
- `update_xaddrs()` and `create_media_service()` are coroutines; `update_xaddrs()` asks
  GetServices and falls back to GetCapabilities on older devices;
- with `adjust_time=True` it first asks GetSystemDateAndTime without credentials and offsets the
  WS-UsernameToken Created time by the camera's clock error, because cameras refuse digests
  whose Created is far from their own clock and library cameras are rarely on NTP;
- every ONVIFCamera owns aiohttp sessions that must be closed with `await cam.close()`;
- `no_cache=True` keeps it from opening a SQLite cache file under the home directory (that cache
  only helps for WSDLs fetched over HTTP, which we never do).
"""

from __future__ import annotations

import asyncio
import os
from urllib.parse import quote, urlsplit, urlunsplit

import aiohttp
import zeep.exceptions
from onvif import ONVIFCamera
from onvif.exceptions import ONVIFError

from nvr import log
from nvr.config.model import OnvifConfig
from nvr.errors import NvrError
from nvr.ingest.redact import redact_url

_log = log.get(__name__)

# ONVIF Core spec, "Authentication": a refused WS-UsernameToken is the ter:NotAuthorized fault.
_AUTH_SUBCODES = ("NotAuthorized", "FailedAuthentication", "InvalidSecurity")


class OnvifError(NvrError):
    """Raised when an ONVIF camera's stream URI cannot be resolved. The message names the host
    and the cause, and never contains the password."""


# ASYNC109: the agreed interface takes a timeout; it is applied with asyncio.timeout inside.
async def resolve_stream_uri(cfg: OnvifConfig, *, timeout: float = 10.0) -> str:  # noqa: ASYNC109
    """The RTSP URI of profile `cfg.profile`, with `user:password@` inserted unless the camera
    already put credentials in it."""
    where = f"{cfg.host}:{cfg.port}"
    if cfg.password is None:
        # WS-UsernameToken needs a password; the loader fills it from password_file/${ENV}.
        raise OnvifError(f"ONVIF camera {where}: no password configured for user {cfg.username!r}")
    try:
        async with asyncio.timeout(timeout):
            uri = await _ask_camera(cfg, where)
    except TimeoutError:
        raise OnvifError(
            f"ONVIF camera {where} unreachable: no answer within {timeout:g} s"
        ) from None
    except OnvifError:
        raise
    except Exception as exc:  # the library raises many types; all become one-line reasons
        reason = _reason(exc, cfg.username)
        # from None: the chained library exception is not needed and may quote a request.
        raise OnvifError(_redact(f"ONVIF camera {where} {reason}", cfg.password)) from None
    await check_same_host(uri, cfg.host, where)
    return with_credentials(uri, cfg.username, cfg.password)


def _norm_host(host: str) -> str:
    return host.strip("[]").lower().rstrip(".")


async def check_same_host(uri: str, host: str, where: str) -> None:
    """Credentials go only to the configured host. The GetStreamUri answer is not
    authenticated (anyone on the path can rewrite it), so a stream URI naming another host —
    other than an address the configured host name resolves to — is refused, never sent our
    user and password."""
    named = _norm_host(urlsplit(uri).hostname or "")
    mine = _norm_host(host)
    if named == mine:
        return
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(mine, None)
        addresses = {_norm_host(str(info[4][0])) for info in infos}
    except OSError:
        addresses = set()
    if named in addresses:
        return
    raise OnvifError(
        f"ONVIF camera {where} named a stream on another host ({named or 'no host'}); the "
        f"camera's password is only sent to {host}. If that stream is right, put it in the "
        "camera's rtsp: instead of onvif:"
    )


async def _ask_camera(cfg: OnvifConfig, where: str) -> str:
    cam = ONVIFCamera(cfg.host, cfg.port, cfg.username, cfg.password,
                      no_cache=True, adjust_time=True)
    try:
        await cam.update_xaddrs()
        try:
            media = await cam.create_media_service()
        except ONVIFError as exc:
            if "support service" in str(exc):
                raise OnvifError(f"ONVIF camera {where} has no media service") from None
            raise
        profiles = await media.GetProfiles() or []
        if cfg.profile >= len(profiles):
            raise OnvifError(
                f"ONVIF camera {where} has no profile index {cfg.profile}: "
                f"camera has {len(profiles)} profiles"
            )
        request = media.create_type("GetStreamUri")
        request.ProfileToken = profiles[cfg.profile].token
        request.StreamSetup = {"Stream": "RTP-Unicast", "Transport": {"Protocol": "RTSP"}}
        answer = await media.GetStreamUri(request)
    finally:
        await cam.close()
    uri = str(getattr(answer, "Uri", "") or "")
    if urlsplit(uri).scheme.lower() not in ("rtsp", "rtsps"):
        raise OnvifError(f"ONVIF camera {where} returned no RTSP URI for profile {cfg.profile}")
    return uri


def _reason(exc: BaseException, username: str) -> str:
    """A short cause for an exception from onvif/zeep/aiohttp, looking through wrappers."""
    refused = f"refused the credentials of user {username!r} (auth refused"
    for e in _chain(exc):
        if isinstance(e, zeep.exceptions.Fault):
            codes = " ".join(str(c) for c in (e.subcodes or [])) + f" {e.code} {e.message}"
            if any(s in codes for s in _AUTH_SUBCODES) or "authoriz" in codes.lower():
                return f"{refused}: ter:NotAuthorized)"
            return f"answered a SOAP fault: {e.message or e.code or 'no reason'}"
        if isinstance(e, zeep.exceptions.TransportError):
            if e.status_code in (401, 403):
                return f"{refused}: HTTP {e.status_code})"
            return f"answered HTTP {e.status_code}, not ONVIF SOAP"
        if isinstance(e, OSError):
            # errno says "Connection refused"; aiohttp's strerror is a longer wrapper text.
            text = os.strerror(e.errno) if e.errno and e.errno > 0 else (e.strerror or str(e))
            return f"unreachable: {text}"
        if isinstance(e, aiohttp.ClientError):
            return f"unreachable: {type(e).__name__}: {e}"
        if isinstance(e, zeep.exceptions.XMLSyntaxError | zeep.exceptions.XMLParseError):
            return "answered something that is not ONVIF SOAP"
    return f"failed: {type(exc).__name__}: {exc}"


def _chain(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    return chain


def with_credentials(uri: str, username: str, password: str | None) -> str:
    """`uri` with percent-encoded `username:password@`, unless it already carries a user."""
    parts = urlsplit(uri)
    if parts.username is not None or not username:
        return uri
    userinfo = quote(username, safe="")
    if password is not None:
        userinfo += ":" + quote(password, safe="")
    return urlunsplit(parts._replace(netloc=f"{userinfo}@{parts.netloc}"))


def _redact(text: str, password: str | None) -> str:
    if password:
        for form in {password, quote(password, safe="")}:
            text = text.replace(form, "***")
    return " ".join(text.split())


class OnvifUriCache:
    """Keeps the last resolved URI. Cameras may hand out a different URI after a reboot, so the
    recorder calls `get(force_refresh=True)` after repeated connection failures. A failed
    refresh raises OnvifError and keeps the old URI for the next unforced get()."""

    def __init__(self, cfg: OnvifConfig, *, timeout: float = 10.0) -> None:
        self._cfg = cfg
        self._timeout = timeout
        self._uri: str | None = None
        self._lock = asyncio.Lock()  # one resolution at a time per camera

    async def get(self, force_refresh: bool = False) -> str:
        async with self._lock:
            if self._uri is None or force_refresh:
                uri = await resolve_stream_uri(self._cfg, timeout=self._timeout)
                if uri != self._uri:
                    _log.info("onvif_uri_resolved", host=self._cfg.host, uri=redact_url(uri),
                              changed=self._uri is not None)
                self._uri = uri
            return self._uri

"""Keep camera passwords out of logs: every URL that reaches a log line goes through here."""

from __future__ import annotations

import re

# userinfo is everything between "scheme://" and the last "@" before the host's first "/".
_USERINFO = re.compile(r"^(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<userinfo>[^/?#]*@)")


def redact_url(url: str) -> str:
    """rtsp://user:pass@host/x → rtsp://***@host/x; URLs without credentials are unchanged."""
    return _USERINFO.sub(lambda m: f"{m['scheme']}***@", url, count=1)


def redact_text(text: str, url: str) -> str:
    """Scrub a message (e.g. an FFmpeg error that quotes the URL) of the URL's credentials."""
    m = _USERINFO.match(url)
    if m is None:
        return text
    return text.replace(url, redact_url(url)).replace(m["userinfo"], "***@")


def host_of(url: str) -> str:
    """The host part of an rtsp:// URL, without credentials, port or brackets."""
    rest = _USERINFO.sub("", url, count=1)
    rest = rest.split("://", 1)[-1]
    hostport = re.split(r"[/?#]", rest, maxsplit=1)[0]
    if hostport.startswith("["):
        return hostport[1:].split("]", 1)[0]
    return hostport.rsplit(":", 1)[0] if ":" in hostport else hostport

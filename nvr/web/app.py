"""The viewing pages' server, assembled: the server (nvr.web.server) with the routes of the
page (nvr.web.pages) and of playback (nvr.web.playback), which both build on the server."""

from __future__ import annotations

from nvr.web import pages, playback
from nvr.web.ports import WebPort
from nvr.web.server import WebServer


def build(port: WebPort) -> WebServer:
    """A server on `port.config.live.listen`, not started; add other routes, then start()."""
    srv = WebServer(port)
    srv.add_routes(lambda app: pages.add_routes(app, srv))
    srv.add_routes(lambda app: playback.add_routes(app, srv))
    return srv

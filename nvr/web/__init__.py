"""Watching footage in a browser: viewing links, the daemon's web server, live and playback."""

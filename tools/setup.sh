#!/usr/bin/env bash
# Installs everything nvr needs on a fresh Debian 12 machine, idempotently:
# Debian packages (GStreamer RTSP server for the test camera, ffmpeg/ffprobe for checks),
# and a virtualenv in .venv built from Debian's /usr/bin/python3 (not a pyenv interpreter under
# /root, which other accounts cannot execute; see docs/design.md "Media facts") with nvr and its test extras.
set -euo pipefail
cd "$(dirname "$0")/.."

DEBS=(python3 python3-venv python3-gi gir1.2-gst-rtsp-server-1.0 gstreamer1.0-tools
      gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-ugly
      gstreamer1.0-plugins-bad ffmpeg passwd util-linux faketime
      chromium   # the browser tests (WebRTC and MSE play H.264 in Debian's build)
      vlc-bin vlc-plugin-base  # VLC's RTSP server: an implementation the tests did not write
      nodejs)  # runs rtsp-streaming-server, a relay the tests did not write (npm, below)

missing=()
for pkg in "${DEBS[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install Debian packages: ${missing[*]} (run this as root)" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q
  apt-get install -y -q --no-install-recommends "${missing[@]}"
fi

# npm comes with NodeSource's nodejs; Debian's nodejs has it in a package of its own.
if ! command -v npm >/dev/null; then
  if [ "$(id -u)" != 0 ]; then
    echo "setup: need root to install Debian's npm (run this as root)" >&2
    exit 1
  fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends npm
fi

if [ ! -x .venv/bin/python ]; then
  /usr/bin/python3 -m venv .venv
fi
# Install (editable, so code changes need no reinstall) only when the dependencies changed:
# the stamp holds the hash of pyproject.toml and constraints.txt as last installed. The
# versions are the ones in constraints.txt, the set the suite last passed with.
stamp=.venv/.nvr-installed
want="$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)"
if [ ! -x .venv/bin/nvr ] || [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  .venv/bin/pip install -q --disable-pip-version-check --upgrade pip
  # setuptools says "Editable installation: mind same-named folders", information only.
  PYTHONWARNINGS="ignore:Editable installation" \
    .venv/bin/pip install -q --disable-pip-version-check -c constraints.txt -e '.[test]'
  echo "$want" > "$stamp"
fi
# The test relay's npm packages, exactly as tests/relay-node/package-lock.json pins them, in
# .venv/node (not in git; GPL-3.0, used by the tests only), again only when the lock changed.
node_stamp=.venv/node/.nvr-installed
node_want="$(sha256sum tests/relay-node/package-lock.json | cut -d' ' -f1)"
if [ "$(cat "$node_stamp" 2>/dev/null)" != "$node_want" ]; then
  mkdir -p .venv/node
  cp tests/relay-node/package.json tests/relay-node/package-lock.json .venv/node/
  (cd .venv/node && npm ci --no-audit --no-fund --loglevel=error >/dev/null)
  echo "$node_want" > "$node_stamp"
fi
echo "setup: ok ($(.venv/bin/nvr --version 2>/dev/null || echo nvr installed))"

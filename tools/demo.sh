#!/usr/bin/env bash
# Sets everything up, starts the test camera (a real GStreamer RTSP server on 127.0.0.1:8554),
# and runs the recorder in the foreground on config/demo.yaml. Ctrl-C stops both.
# Footage lands in ./demo-data; in another terminal:  .venv/bin/nvr status --config config/demo.yaml
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
# The Director of the demo is whoever ran it (the account behind sudo, if any), so that
# account can try every command without sudo.
export USER="${SUDO_USER:-${USER:-$(id -un)}}"
# Wait for the camera's "READY <port>" line rather than for a guessed time.
coproc CAM { exec /usr/bin/python3 tools/testcam.py --port 8554; }
cam=$CAM_PID
trap 'kill $cam 2>/dev/null || true' EXIT
if ! read -r -t 30 ready <&"${CAM[0]}" || [ "${ready%% *}" != READY ]; then
  echo "demo: the test camera did not start (is port 8554 free?)" >&2
  exit 1
fi
.venv/bin/nvr run --config config/demo.yaml

#!/usr/bin/env bash
# Sets everything up, starts the test camera (a real GStreamer RTSP server on 127.0.0.1:8554),
# and runs the recorder on config/demo.yaml. Once the first footage is in, it prints the
# commands to paste into another terminal, and says when the example export has its footage.
# Footage lands in ./demo-data, the recorder's JSON log in ./demo-run/nvr.log. Ctrl-C stops both.
set -euo pipefail
cd "$(dirname "$0")/.."
REPO="$(pwd)"
tools/setup.sh
# The Director of the demo is whoever ran it (the account behind sudo, if any), so that
# account can try every command without sudo.
export USER="${SUDO_USER:-${USER:-$(id -un)}}"
# Wait for the camera's "READY <port>" line rather than for a guessed time.
coproc CAM { exec /usr/bin/python3 tools/testcam.py --port 8554; }
cam=$CAM_PID
nvr=""
# Background jobs of a script ignore Ctrl-C, so the trap stops them; the recorder takes
# SIGTERM as systemd sends it (closes the open segment, then exits).
stop() {
  if [ -n "$nvr" ]; then kill "$nvr" 2>/dev/null || true; wait "$nvr" 2>/dev/null || true; fi
  kill "$cam" 2>/dev/null || true
  wait "$cam" 2>/dev/null || true
}
trap stop EXIT
trap 'exit 130' INT TERM
if ! read -r -t 30 ready <&"${CAM[0]}" || [ "${ready%% *}" != READY ]; then
  echo "demo: the test camera did not start (is port 8554 free?)" >&2
  exit 1
fi

mkdir -p demo-run
LOG=demo-run/nvr.log
: >"$LOG"
# The log goes to a file: on this terminal it would scroll the commands below away.
PYTHONUNBUFFERED=1 .venv/bin/nvr run --config config/demo.yaml >>"$LOG" 2>&1 &
nvr=$!
echo "demo: recording starts; the recorder's log is $REPO/$LOG (tail -f it)"

# The first indexed segment is the first footage an export can use.
first=""
for _ in $(seq 120); do
  first="$(grep '"segment_indexed"' "$LOG" | grep '"camera": "front-entrance"' \
    | sed -n 's/.*"start": "\([^"]*\)".*/\1/p' | head -1 || true)"
  [ -n "$first" ] && break
  if ! kill -0 "$nvr" 2>/dev/null; then
    echo "demo: the recorder stopped; the end of its log ($LOG):" >&2
    tail -5 "$LOG" >&2
    exit 1
  fi
  sleep 0.5
done
if [ -z "$first" ]; then
  echo "demo: no footage after 60 s; see $LOG" >&2
  exit 1
fi
t0="$(date -d "$first" +%s)"
partial="$(date -d "@$((t0 + 30))" +%T)"
whole="$(date -d "@$((t0 + 60))" +%T)"

cat <<EOF

demo: recording since $(date -d "@$t0" +%T). In another terminal, as $USER, paste:

  cd $REPO && export NVR_SOCKET=$REPO/demo-run/control.sock && alias nvr=$REPO/.venv/bin/nvr
  nvr status
  nvr recordings --camera front-entrance
  nvr export --camera front-entrance --start "\$(date -d '-1 min' -Iseconds)" --end "\$(date -d '-30 sec' -Iseconds)" --reason demo --out /tmp/clip.mp4
  nvr export verify /tmp/clip.mp4
  nvr help export

The export asks for the minute before last: it finds footage from $partial (30 s after
recording began) and the whole range from $whole; this demo says so then.
Ctrl-C here stops the demo.

EOF

now="$(date +%s)"
if [ "$now" -lt "$((t0 + 60))" ]; then
  sleep "$((t0 + 60 - now))"
fi
if kill -0 "$nvr" 2>/dev/null; then
  echo "demo: a minute of footage is recorded ($(date -d "@$t0" +%T) to now): the export above covers its whole range now"
fi
wait "$nvr"

#!/usr/bin/env bash
# Sets everything up (tools/setup.sh) and runs the whole test suite.
# Run as root: the role tests create real unix accounts and the disk-full tests mount a tmpfs.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"

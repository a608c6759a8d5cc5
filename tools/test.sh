#!/usr/bin/env bash
# Sets everything up (tools/setup.sh) and runs the whole test suite.
# Run as root (the role tests create real unix accounts, the disk-full tests mount a tmpfs);
# as another user, the tests that need root are skipped and say so. The test accounts
# (nvrtest-*) are removed at the end unless NVR_KEEP_TEST_ACCOUNTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
tools/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
exec .venv/bin/pytest "$@"

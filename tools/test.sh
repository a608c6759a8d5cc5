#!/usr/bin/env bash
# Sets everything up (tools/setup.sh) and runs the whole test suite.
# Run as root (the role tests create real unix accounts, the disk-full tests mount a tmpfs);
# as another user, the tests that need root are skipped and say so. The test accounts
# (nvrtest-*) are removed at the end unless NVR_KEEP_TEST_ACCOUNTS=1.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -n "${FAKETIME:-}" ]; then
  # Run at another date (`faketime 2027-07-04 tools/test.sh`): man-db's seccomp sandbox refuses
  # libfaketime's semaphore, so the man-page test would fail for the tool's sake, not ours.
  export MAN_DISABLE_SECCOMP=1
fi
tools/setup.sh
.venv/bin/ruff check .
.venv/bin/mypy
# The layers (pyproject.toml [tool.importlinter], docs/design.md); quiet unless one is broken.
.venv/bin/lint-imports --no-cache > .venv/lint-imports.log || { cat .venv/lint-imports.log; exit 1; }
grep -h "^Contracts:" .venv/lint-imports.log
# Test files run side by side in NVR_TEST_WORKERS processes (default 2, one a core: most
# of the suite waits on real cameras in real time, not on the CPU); a file stays in one process,
# so its module fixtures (a camera, a daemon) are shared as written. NVR_TEST_WORKERS=0: serial.
workers="${NVR_TEST_WORKERS:-2}"
if [ "$workers" = 0 ]; then
  exec .venv/bin/pytest "$@"
fi
exec .venv/bin/pytest -n "$workers" --dist loadfile "$@"

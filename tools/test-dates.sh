#!/usr/bin/env bash
# The tests whose output depends on "now", the time zone or the locale — everything but the
# real-camera end-to-end tests — run again at three dates across a year (winter time, the day
# summer time starts, summer) in two zones, under libfaketime. A test that reads today's date
# or this machine's zone where it should not fails here, not on the first day of a new month.
# Usage: tools/test-dates.sh [pytest args]   (tools/setup.sh installs faketime)
set -euo pipefail
cd "$(dirname "$0")/.."
TESTS=(tests/cli tests/policy tests/config tests/export tests/retention tests/storage)
status=0
for zone in America/Los_Angeles Europe/Berlin; do
  for when in "2027-01-15 23:59:30" "2027-03-14 01:59:00" "2027-07-04 12:00:00"; do
    echo "== $when $zone"
    # man-db's seccomp sandbox refuses libfaketime's semaphore: the man-page test needs it off.
    # faketime's plain form is one offset every process shares; its "@" form restarts the
    # clock in each new process, so a daemon started later would live earlier than its client.
    if ! TZ="$zone" LC_ALL=C.UTF-8 MAN_DISABLE_SECCOMP=1 faketime "$when" \
        .venv/bin/pytest -q -p no:cacheprovider "${TESTS[@]}" "$@"; then
      status=1
    fi
  done
done
# The pages count down to a link's end: three minutes before midnight, that end is tomorrow.
echo "== 2027-01-15 23:57:30 Europe/Berlin: the browser pages"
if ! TZ=Europe/Berlin LC_ALL=C.UTF-8 faketime "2027-01-15 23:57:30" \
    .venv/bin/pytest -q -p no:cacheprovider -n 2 tests/web "$@"; then
  status=1
fi
exit $status

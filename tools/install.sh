#!/usr/bin/env bash
# Installs (or upgrades, or removes) the recorder as a systemd service, from this clone.
# README.md "Install on the recorder box" walks through it. Run as root:
#
#   sudo tools/install.sh               install or upgrade, then (re)start the service
#   sudo tools/install.sh --uninstall   remove the service; keep /etc/nvr, the footage, the account
#
# Options:
#   --root DIR   install into DIR as if it were / (a throw-away root: tests); implies --no-start
#                (tests set NVR_INSTALL_START=1 to reach the systemd check below; with
#                NVR_SYSTEMD_DIR naming a missing folder it stops there, as without systemd)
#   --no-setup   skip tools/setup.sh (Debian packages and .venv already there)
#   --no-start   do not call systemctl (a box or container without systemd as PID 1: without
#                this, install.sh notices that and stops before systemctl, saying so)
#
# The clone must be where the service can see it: the unit runs the code from this clone with
# ProtectHome=yes (/home, /root hidden) and PrivateTmp=yes (its own /tmp), so a clone there is
# refused; clone into /opt/nvr.
#
# It never overwrites /etc/nvr/nvr.yaml (your camera map) nor anything under /var/lib/nvr.
set -euo pipefail
REPO="$(cd "$(dirname "$0")/.." && pwd)"
ROOT="" SETUP=1 START=1 UNINSTALL=0
while [ $# -gt 0 ]; do
  case "$1" in
    --root) ROOT="$(realpath -m "$2")"; START="${NVR_INSTALL_START:-0}"; shift 2 ;;
    --no-setup) SETUP=0; shift ;;
    --no-start) START=0; shift ;;
    --uninstall) UNINSTALL=1; shift ;;
    *) echo "install: unknown option $1 (see the top of $0)" >&2; exit 64 ;;
  esac
done
if [ "$(id -u)" != 0 ]; then
  echo "install: run as root (su -c \"$0 $*\", or sudo $0 $*)" >&2
  exit 77
fi
say() { echo "install: $*"; }

# The unit's sandbox hides these from the service: it would not find its own code.
if [ "$UNINSTALL" = 0 ]; then
  case "$REPO/" in
    /tmp/*|/var/tmp/*|/home/*|/root/*|/run/user/*)
      if [ -z "$ROOT" ]; then
        echo "install: this clone is in $REPO, which the service cannot see (its unit has" \
             "ProtectHome=yes, hiding /home and /root, and PrivateTmp=yes, its own /tmp):" \
             "clone into /opt/nvr and run tools/install.sh there (git clone <this repository>" \
             "/opt/nvr)" >&2
        exit 78
      fi
      say "warning: the clone is in $REPO, which the installed unit could not see (--root: going on)" ;;
  esac
fi

UNIT="$ROOT/etc/systemd/system/nvr.service"
SYSUSERS="$ROOT/usr/lib/sysusers.d/nvr.conf"
TMPFILES="$ROOT/usr/lib/tmpfiles.d/nvr.conf"
LINK="$ROOT/usr/local/bin/nvr"
MAP="$ROOT/etc/nvr/nvr.yaml"
SHARE="$ROOT/usr/local/share"
MANPAGE="$SHARE/man/man1/nvr.1"
COMPLETION="$SHARE/bash-completion/completions/nvr"

if [ "$UNINSTALL" = 1 ]; then
  if [ "$START" = 1 ]; then systemctl disable --now nvr 2>/dev/null || true; fi
  rm -f "$UNIT" "$SYSUSERS" "$TMPFILES"
  [ -L "$LINK" ] && rm -f "$LINK"
  rm -f "$MANPAGE" "$COMPLETION"
  if [ "$START" = 1 ]; then systemctl daemon-reload; fi
  say "service removed. Kept: /etc/nvr (camera map, passwords), /var/lib/nvr (footage, index,"
  say "signing key) and the nvr account. Footage may be evidence under a hold: check"
  say "\`nvr hold list\` before deleting it; then: rm -r /var/lib/nvr /etc/nvr; userdel nvr"
  exit 0
fi

if [ "$SETUP" = 1 ]; then
  "$REPO/tools/setup.sh"
  # Tab completion is installed below; bash needs this package to load it.
  if ! dpkg-query -W -f='${Status}' bash-completion 2>/dev/null | grep -q "install ok installed"; then
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends bash-completion
  fi
fi
[ -x "$REPO/.venv/bin/nvr" ] || { echo "install: $REPO/.venv/bin/nvr missing: run tools/setup.sh" >&2; exit 69; }

# The account and the folders, as systemd-sysusers(8) and systemd-tmpfiles(8) would at boot.
install -D -m 0644 "$REPO/systemd/nvr.sysusers.conf" "$SYSUSERS"
install -D -m 0644 "$REPO/systemd/nvr.tmpfiles.conf" "$TMPFILES"
mkdir -p "$ROOT/etc"
systemd-sysusers ${ROOT:+--root="$ROOT"}
systemd-tmpfiles --create ${ROOT:+--root="$ROOT"} "$TMPFILES"
NVR_GID="$(awk -F: '$1 == "nvr" {print $3}' "$ROOT/etc/group")"

# The unit names /opt/nvr; a clone elsewhere gets its own path written in.
install -d -m 0755 "$(dirname "$UNIT")"
sed "s|/opt/nvr|$REPO|g" "$REPO/systemd/nvr.service" > "$UNIT.new"
chmod 0644 "$UNIT.new"
mv "$UNIT.new" "$UNIT"
say "unit $UNIT"

# `nvr` on everyone's PATH.
install -d -m 0755 "$(dirname "$LINK")"
ln -sfn "$REPO/.venv/bin/nvr" "$LINK"
say "command $LINK -> $REPO/.venv/bin/nvr"

# `man nvr` and Tab completion, generated from the command-line parser of this version.
"$REPO/.venv/bin/python" -m nvr.cli.docs "$SHARE" >/dev/null
chmod 0644 "$MANPAGE" "$COMPLETION"
say "manual page $MANPAGE, bash completion $COMPLETION"

# The camera map: the example the first time, never overwritten afterwards.
if [ ! -e "$MAP" ]; then
  install -m 0640 -o 0 -g "$NVR_GID" "$REPO/config/example.yaml" "$MAP"
  say "camera map $MAP (the example: edit people, cameras and password files first)"
else
  say "camera map $MAP kept as it is"
fi

if "$REPO/.venv/bin/nvr" check-config "$MAP"; then
  MAP_OK=1
else
  MAP_OK=0
  say "the camera map has problems (above); fix them, then: systemctl restart nvr"
fi

# sd_booted(3): systemd is PID 1 exactly when this folder exists. In a container or chroot it
# is not, and systemctl would only fail: stop here and say what is done and what is left.
if [ "$START" = 1 ] && [ ! -d "${NVR_SYSTEMD_DIR:-/run/systemd/system}" ]; then
  say "stopped before systemctl: systemd is not running here (PID 1 is $(ps -o comm= -p 1 2>/dev/null || echo unknown)),"
  say "so the service is installed but not enabled or started. Everything else is in place."
  say "On a box with systemd: systemctl daemon-reload && systemctl enable --now nvr"
  say "Without it, run the recorder yourself (as the unit would, minus its sandbox):"
  say "  install -d -m 0755 -o nvr -g nvr /run/nvr && runuser -u nvr -- nvr run --config /etc/nvr/nvr.yaml"
  say "(tools/install.sh --no-start skips this step without a word.)"
  START=0
fi

if [ "$START" = 1 ]; then
  systemctl daemon-reload
  systemctl enable nvr
  if [ "$MAP_OK" = 1 ]; then
    systemctl restart nvr
    say "service started; see it with: nvr status"
  fi
fi

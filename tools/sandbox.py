#!/usr/bin/env python3
"""Run a command under the restrictions of systemd/nvr.service, without systemd.

For machines (containers, CI) where no systemd runs as PID 1, so `systemd-run -p ...` is not
available. Run as root; applies, in this order, what the unit's directives do to the process:

  ProtectSystem=strict, ReadWritePaths=  the whole tree read-only except --rw folders
                                         (needs a private mount namespace: run under `unshare -m`)
  ProcSubset=pid, ProtectProc=invisible  a fresh /proc with subset=pid,hidepid=invisible
  User=, Group=                          setresgid/setresuid to --user, no supplementary groups
  CapabilityBoundingSet= (empty)         every capability dropped from the bounding set
  NoNewPrivileges=yes                    PR_SET_NO_NEW_PRIVS
  MemoryDenyWriteExecute=yes             PR_SET_MDWE (Linux >= 6.3), the kernel's own version of
                                         what systemd does with seccomp: no W+X mapping, no
                                         mprotect() that adds PROT_EXEC
  SystemCallFilter=, SystemCallArchitectures=native, SystemCallErrorNumber=EPERM
                                         a libseccomp filter allowing exactly the unit's groups
                                         (expanded by `systemd-analyze syscall-filter`); every
                                         other syscall fails with EPERM, other ABIs are killed

then execs the command. Usage:
    unshare -m --propagation private tools/sandbox.py --unit systemd/nvr.service \\
        --user nvr --rw /var/lib/nvr --rw /run/nvr -- nvr run --config /etc/nvr/nvr.yaml
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import pwd
import subprocess
import sys

PR_CAPBSET_DROP = 24
PR_SET_NO_NEW_PRIVS = 38
PR_SET_MDWE = 65
PR_MDWE_REFUSE_EXEC_GAIN = 1
SCMP_ACT_ALLOW = 0x7FFF0000
EPERM = 1


def scmp_act_errno(err: int) -> int:
    return 0x00050000 | (err & 0xFFFF)


def syscall_groups() -> dict[str, list[str]]:
    """Every @group systemd knows, with its members (names or other @groups)."""
    out = subprocess.run(["systemd-analyze", "syscall-filter"], check=True,
                         capture_output=True, text=True).stdout
    groups: dict[str, list[str]] = {}
    current: list[str] | None = None
    for line in out.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif current is not None and line.strip() and not line.strip().startswith("#"):
            current.append(line.strip())
    return groups


def expand(names: list[str], groups: dict[str, list[str]]) -> set[str]:
    result: set[str] = set()
    for name in names:
        if name.startswith("@"):
            result |= expand(groups[name], groups)
        else:
            result.add(name)
    return result


def unit_settings(unit: str) -> dict[str, list[str]]:
    settings: dict[str, list[str]] = {}
    with open(unit) as f:
        for line in f:
            line = line.strip()
            if line and not line.startswith(("#", "[")) and "=" in line:
                key, value = line.split("=", 1)
                settings.setdefault(key, []).append(value)
    return settings


def allowed_syscalls(filters: list[str]) -> set[str]:
    """systemd's semantics: the first allow-list sets the set, a `~` entry removes from it."""
    groups = syscall_groups()
    allowed: set[str] = set()
    for value in filters:
        if value.startswith("~"):
            allowed -= expand(value[1:].split(), groups)
        else:
            allowed |= expand(value.split(), groups)
    return allowed


def protect_system(rw: list[str]) -> None:
    for path in rw:  # a bind mount of its own keeps each writable folder writable
        subprocess.run(["mount", "--bind", path, path], check=True)
    subprocess.run(["mount", "-o", "remount,bind,ro", "/"], check=True)
    subprocess.run(["mount", "-t", "proc", "-o", "subset=pid,hidepid=invisible", "proc", "/proc"],
                   check=True)


def drop_to(user: str) -> None:
    entry = pwd.getpwnam(user)
    libc = ctypes.CDLL(None, use_errno=True)
    for cap in range(64):
        if libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) != 0 and ctypes.get_errno() != 22:
            raise OSError(ctypes.get_errno(), f"cannot drop capability {cap}")
    os.setgroups([])
    os.setresgid(entry.pw_gid, entry.pw_gid, entry.pw_gid)
    os.setresuid(entry.pw_uid, entry.pw_uid, entry.pw_uid)
    if libc.prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_NO_NEW_PRIVS")


def deny_write_execute() -> None:
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "PR_SET_MDWE (needs Linux 6.3 or later)")


def load_filter(allowed: set[str]) -> int:
    lib = ctypes.CDLL(ctypes.util.find_library("seccomp") or "libseccomp.so.2", use_errno=True)
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_rule_add.argtypes = [ctypes.c_void_p, ctypes.c_uint32, ctypes.c_int,
                                     ctypes.c_uint]
    lib.seccomp_load.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(scmp_act_errno(EPERM))  # native ABI only: others are killed
    added = 0
    for name in sorted(allowed):
        nr = lib.seccomp_syscall_resolve_name(name.encode())
        if nr < 0:
            continue  # not on this architecture
        if lib.seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0:
            added += 1
    if lib.seccomp_load(ctx) != 0:
        raise OSError("seccomp_load failed")
    return added


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--unit", required=True, help="the .service file whose directives to apply")
    ap.add_argument("--user", required=True)
    ap.add_argument("--rw", action="append", default=[], help="a folder left writable")
    ap.add_argument("command", nargs=argparse.REMAINDER)
    a = ap.parse_args()
    command = a.command[1:] if a.command[:1] == ["--"] else a.command
    settings = unit_settings(a.unit)
    if settings.get("ProtectSystem") == ["strict"]:
        protect_system(a.rw)
    allowed = allowed_syscalls(settings.get("SystemCallFilter", []))
    drop_to(a.user)
    if settings.get("MemoryDenyWriteExecute") == ["yes"]:
        deny_write_execute()
    added = load_filter(allowed) if allowed else 0
    print(f"sandbox: user={a.user} rw={a.rw} syscalls_allowed={added} "
          f"mdwe={settings.get('MemoryDenyWriteExecute')}", file=sys.stderr, flush=True)
    os.execvp(command[0], command)
    return 127


if __name__ == "__main__":
    sys.exit(main())

"""The recorder's exceptions. Each maps to one sysexits.h exit code at the command line."""

from __future__ import annotations

# sysexits.h: the only exit codes the command line uses (docs/commands.md "Exit codes").
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77


class NvrError(Exception):
    """Base class. `exit_code` is what `nvr` exits with when this reaches main()."""

    exit_code = EX_SOFTWARE


class UsageError(NvrError):
    """Raised when a command's arguments are wrong (bad time, unknown camera id)."""

    exit_code = EX_USAGE


class DataError(NvrError):
    """Raised when input data is bad: a camera map, a clip that fails verification."""

    exit_code = EX_DATAERR


class Unavailable(NvrError):
    """Raised when the daemon cannot be reached, or a feature has not landed yet."""

    exit_code = EX_UNAVAILABLE


class PermissionDenied(NvrError):
    """Raised when the policy refuses an action. The message names the rule and its clause."""

    exit_code = EX_NOPERM


class IntegrityError(DataError):
    """Raised when stored footage or the audit chain does not match its recorded hash."""


class RootBusy(NvrError):
    """Raised when another nvr process owns the storage root (its lock file is held)."""

    exit_code = EX_TEMPFAIL

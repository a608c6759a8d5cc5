"""`nvr`: the command line (docs/commands.md). `main()` is the only place that exits.

Exit codes are sysexits.h: an NvrError leaves with its `exit_code` and one line
`nvr: <message>` on stderr; argparse usage errors are 64 (not argparse's 2).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any, NoReturn

from nvr import __version__
from nvr.errors import EX_OK, EX_SOFTWARE, NvrError, UsageError

REQUEST_KINDS = ("subpoena", "court_order", "voluntary", "emergency", "public")
_UNMASKED_HELP = ("leave out the camera's privacy masks (Director only, with --reason; the audit "
                  "log records the masks lifted)")


class _Exit(Exception):
    def __init__(self, status: int) -> None:
        self.status = status


class Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{message} (see `{self.prog} --help`)")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if message:
            sys.stderr.write(message)
        raise _Exit(status)


def _common(top: bool) -> Parser:
    """--socket/--config/--json, accepted before or after the command. On subcommands the
    default is SUPPRESS so that `nvr --json status` is not undone by the subparser's default."""
    p = Parser(add_help=False)
    d: dict[str, Any] = {} if top else {"default": argparse.SUPPRESS}
    p.add_argument("--socket", metavar="PATH", help="control socket (else $NVR_SOCKET, else --config's control.socket, else /run/nvr/control.sock)", **d)  # fmt: skip
    p.add_argument("--config", metavar="FILE", help="camera map (YAML)", **d)
    p.add_argument("--json", action="store_true", help="machine-readable output", **d)
    p.add_argument("--utc", action="store_true", help="times in UTC", **d)
    return p


def _paths(p: Parser) -> None:
    p.add_argument("--paths", action="store_true", help="show file paths")


def _client(sub: Any, name: str, op: str, help_: str, common: Parser) -> Parser:
    p: Parser = sub.add_parser(name, help=help_, description=help_, parents=[common])
    p.set_defaults(handler="client", op=op)
    return p


def _cameras(p: Parser, *, required: bool = True) -> None:
    p.add_argument("--camera", dest="cameras", metavar="ID", action="extend", nargs="+", required=required,
                   help="camera id; repeat (--camera a --camera b) or list (--camera a b)")  # fmt: skip


def _group(sub: Any, name: str, help_: str, common: Parser) -> Any:
    p = sub.add_parser(name, help=help_, description=help_, parents=[common])
    return p.add_subparsers(dest="action", metavar="ACTION", required=True)


def _offline(sub: Any, common: Parser) -> None:
    p = sub.add_parser(
        "run", help="the daemon, in the foreground (systemd runs this)", parents=[common]
    )
    p.set_defaults(handler="run")
    p = sub.add_parser(
        "check-config", help="validate a camera map (exit 0 or 65)", parents=[common]
    )
    p.add_argument("file", metavar="FILE")
    p.set_defaults(handler="check_config")
    p = sub.add_parser("fsck", help="compare index and disk; --repair fixes orphans and missing files", parents=[common])  # fmt: skip
    p.add_argument("--repair", action="store_true")
    p.set_defaults(handler="fsck")
    p = sub.add_parser("backup", help="copy the index (online, while recording), signing key and camera map to DIR, with a manifest", parents=[common])  # fmt: skip
    p.add_argument("--out", required=True, metavar="DIR")
    p.set_defaults(handler="backup")
    p = sub.add_parser("restore", help="put a backup's index and signing key into --config's fresh storage root (recorder stopped)", parents=[common])  # fmt: skip
    p.add_argument("--from", dest="source", required=True, metavar="DIR")
    p.add_argument("--key", metavar="FINGERPRINT|PEMFILE")
    p.set_defaults(handler="restore")


def _footage(sub: Any, common: Parser) -> None:
    p = _client(sub, "status", "status", "cameras, disk use and retention horizon", common)
    _paths(p)
    p = _client(sub, "recordings", "recordings", "segments and gaps in a range", common)
    _paths(p)
    p.add_argument("--camera", required=True, metavar="ID")
    p.add_argument("--start", metavar="T")
    p.add_argument("--end", metavar="T")
    p = _client(sub, "export", "export", "one MP4 for a range plus a signed manifest; or `export verify FILE.mp4`", common)  # fmt: skip
    p.usage = ("nvr export --camera ID --start T --end T --reason TEXT --out FILE.mp4\n"
               "                  [--incident ID] [--request ID] [--unmasked]\n"
               "       nvr export verify FILE.mp4 [--key FINGERPRINT|PEMFILE]")  # fmt: skip
    p.set_defaults(handler="export")
    p.add_argument(
        "verify",
        nargs="?",
        metavar="verify",
        help="check a clip offline: hash and manifest signature",
    )
    p.add_argument("file", nargs="?", metavar="FILE.mp4")
    for opt, meta in (("--camera", "ID"), ("--start", "T"), ("--end", "T"), ("--reason", "TEXT"),
                      ("--out", "FILE"), ("--incident", "ID"), ("--request", "ID")):  # fmt: skip
        p.add_argument(opt, metavar=meta)
    p.add_argument("--key", metavar="FINGERPRINT|PEMFILE",
                   help="verify: the key the clip must be signed with (default: this box's "
                        "published recorder key)")
    p.add_argument("--unmasked", action="store_true", default=None, help=_UNMASKED_HELP)
    p = _client(sub, "still", "still", "a still image for a suspension notice", common)
    p.set_defaults(handler="still")
    for opt, meta in (("--camera", "ID"), ("--at", "T"), ("--until", "DATE"), ("--reason", "TEXT"),
                      ("--out", "FILE.jpg")):  # fmt: skip
        p.add_argument(opt, metavar=meta, required=True)
    p.add_argument("--unmasked", action="store_true", default=None, help=_UNMASKED_HELP)
    p = _client(
        sub, "live", "live", "a URL to a live view that stops working after N minutes", common
    )
    _cameras(p)
    p.add_argument("--reason", required=True, metavar="TEXT")
    p.add_argument("--minutes", type=int, metavar="N", help="default 15")
    p = _client(sub, "playback", "playback", "a URL to recorded playback from T, valid N minutes", common)  # fmt: skip
    _cameras(p)
    p.add_argument("--start", required=True, metavar="T")
    p.add_argument("--end", metavar="T")
    p.add_argument("--reason", required=True, metavar="TEXT")
    p.add_argument("--minutes", type=int, metavar="N", help="default 60")
    g = _group(sub, "view", "open viewing links", common)
    _client(g, "list", "view_list", "viewing links and their sessions", common)
    p = _client(g, "revoke", "view_revoke", "end a viewing link now", common)
    p.add_argument("link_id", metavar="ID")


def _holds_and_grants(sub: Any, common: Parser) -> None:
    g = _group(sub, "hold", "incident/legal holds", common)
    p = _client(g, "create", "hold_create", "keep footage past retention", common)
    _cameras(p)
    for opt in ("--start", "--end", "--reason"):
        p.add_argument(opt, required=True)
    p.add_argument("--incident", metavar="ID")
    p.add_argument("--until", metavar="DATE")
    _client(g, "list", "hold_list", "holds in force", common)
    p = _client(g, "release", "hold_release", "release a hold", common)
    p.add_argument("hold_id", metavar="HOLD_ID")
    p.add_argument("--reason", required=True)
    g = _group(sub, "grant", "time-boxed access for other staff", common)
    p = _client(g, "create", "grant_create", "let an account see cameras in a window", common)
    p.add_argument("--user", required=True, metavar="NAME")
    _cameras(p)
    for opt in ("--start", "--end", "--expires", "--reason"):
        p.add_argument(opt, required=True)
    _client(g, "list", "grant_list", "grants", common)
    p = _client(g, "revoke", "grant_revoke", "end a grant now", common)
    p.add_argument("grant_id", metavar="GRANT_ID")


def _requests(sub: Any, common: Parser) -> None:
    g = _group(sub, "request", "law-enforcement and public requests", common)
    p = _client(g, "create", "request_create", "record a request", common)
    p.add_argument("--kind", required=True, choices=REQUEST_KINDS)
    p.add_argument("--requester", required=True, metavar="TEXT")
    p.add_argument("--details", required=True, metavar="TEXT")
    _cameras(p, required=False)
    p.add_argument("--start", metavar="T", help="start of the footage the request covers")
    p.add_argument("--end", metavar="T", help="end of the footage the request covers")
    _client(g, "list", "request_list", "requests", common)
    p = _client(g, "approve", "request_approve", "approve a request (Director)", common)
    p.add_argument("request_id", metavar="ID")
    p.add_argument("--expires", metavar="DATE",
                   help="the approval ends then (default: in 30 days)")
    p = _client(g, "deny", "request_deny", "deny a request (Director)", common)
    p.add_argument("request_id", metavar="ID")
    p.add_argument("--reason", required=True)
    g = _group(sub, "emergency", "time-boxed live feed for public-safety authorities", common)
    p = _client(g, "start", "emergency_start", "start an emergency live feed", common)
    p.add_argument("--agency", required=True, metavar="TEXT")
    _cameras(p)
    p.add_argument("--minutes", type=int, required=True, metavar="N")
    _client(g, "list", "emergency_list", "active emergency live feeds and time left", common)
    p = _client(g, "end", "emergency_end", "end an emergency live feed now", common)
    p.add_argument("emergency_id", nargs="?", metavar="ID")


def _admin(sub: Any, common: Parser) -> None:
    g = _group(sub, "audit", "the access log", common)
    p = _client(g, "list", "audit_list", "audit entries", common)
    p.add_argument("--since", metavar="T")
    p = _client(g, "verify", "audit_verify", "exit 0 only if the hash chain is intact", common)
    p.add_argument("--journal", dest="journal_file", metavar="FILE",
                   help="also hold the checkpoint file against the journal's copy: the output of "
                        "`journalctl -u nvr -o json` (or - for stdin); shows a cut file tail")
    g = _group(sub, "breach", "suspected unauthorised disclosure", common)
    p = _client(g, "report", "breach_report", "record it and notify the Director", common)
    p.add_argument("--details", required=True, metavar="TEXT")
    g = _group(sub, "retention", "retention", common)
    p = _client(g, "plan", "retention_plan", "what retention would delete at T, and why held segments stay", common)  # fmt: skip
    p.add_argument("--at", metavar="T")
    _paths(p)
    _client(g, "confirm-clock", "retention_confirm_clock", "after a clock jump: the clock is right now; deletion resumes", common)  # fmt: skip
    _client(sub, "reload", "reload", "re-read the camera map (same as SIGHUP)", common)
    g = _group(sub, "key", "the recorder's signing key", common)
    _client(g, "show", "key_show", "the public key and its fingerprint", common)
    g = _group(sub, "masks", "privacy masks", common)
    p = _client(g, "preview", "masks_preview", "the camera's latest keyframe with its privacy masks outlined and numbered, as PNG", common)  # fmt: skip
    p.set_defaults(handler="masks_preview")
    for opt, meta in (("--camera", "ID"), ("--out", "FILE.png")):
        p.add_argument(opt, metavar=meta, required=True)


def build_parser() -> Parser:
    parser = Parser(prog="nvr", description="Network video recorder of the Hanson Public Library",
                    parents=[_common(top=True)])  # fmt: skip
    common = _common(top=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _offline(sub, common)
    _footage(sub, common)
    _holds_and_grants(sub, common)
    _requests(sub, common)
    _admin(sub, common)
    p = sub.add_parser("help", help="help on a command", parents=[common])
    p.add_argument("topic", nargs="*", metavar="COMMAND")
    p.set_defaults(handler="help")
    parser.add_argument("--version", action="version", version=f"nvr {__version__}")
    from nvr.cli.helptext import teach

    teach(parser)
    return parser


def _help(topic: list[str]) -> int:
    """`nvr help hold create` is `nvr hold create --help`; `nvr help` is `nvr --help`."""
    from nvr.cli.helptext import subcommands

    parser = build_parser()
    p: argparse.ArgumentParser = parser
    for i, word in enumerate(topic):
        subs = subcommands(p)
        if word not in subs:
            what = " ".join(topic[: i + 1])
            raise UsageError(f"no command `nvr {what}`; `nvr help` lists them")
        p = subs[word]
    p.print_help()
    return EX_OK


def _run(argv: Sequence[str] | None) -> int:
    ns = build_parser().parse_args(argv)
    if ns.handler == "help":
        return _help(ns.topic)
    from nvr.cli import commands

    handlers = {
        "run": commands.cmd_run,
        "check_config": commands.cmd_check_config,
        "fsck": commands.cmd_fsck,
        "backup": commands.cmd_backup,
        "restore": commands.cmd_restore,
        "export": commands.cmd_export,
        "still": commands.cmd_still,
        "masks_preview": commands.cmd_masks_preview,
        "client": commands.cmd_client,
    }
    return handlers[ns.handler](ns)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _run(argv)
    except _Exit as exc:
        return exc.status
    except NvrError as exc:
        from nvr.cli.suggest import carry

        said = carry(" ".join(str(exc).split()), sys.argv[1:] if argv is None else argv)
        sys.stderr.write(f"nvr: {said}\n")
        return exc.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("nvr: interrupted\n")
        return 130
    except BrokenPipeError:
        return EX_OK if argv is None else EX_SOFTWARE  # `nvr audit list | head`: not an error
    except Exception as exc:
        sys.stderr.write(
            f"nvr: internal error: {type(exc).__name__}: {' '.join(str(exc).split())}\n"
        )
        return EX_SOFTWARE


if __name__ == "__main__":
    sys.exit(main())

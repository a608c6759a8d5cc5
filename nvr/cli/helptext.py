"""The words of `nvr --help`, `nvr help CMD`, the man page and completion: kept apart from the
parser's structure (nvr.cli.main) so that the help can be read and edited as text.

`teach(parser)` fills every option's help (with an example) and every command's description
and examples. An option given its own help= in main.py keeps it only when this file has none.
"""

from __future__ import annotations

import argparse
import re
import textwrap
from typing import Any

TIMES = """\
Times: YYYY-MM-DDTHH:MM[:SS] in this machine's time zone, e.g. 2026-11-29T14:05;
add Z for UTC (2026-11-29T19:05Z) or an offset (2026-11-29T14:05-05:00).
A bare date (2026-11-29) means its midnight; as --until or --expires, the end
of that day. Output shows times in this machine's zone, to the second
(2026-11-29 14:05:00 EST); --utc shows UTC; --json gives UTC with microseconds."""

T = "e.g. 2026-11-29T14:05 (local time; add Z for UTC)"

# Options that mean the same on every command.
COMMON: dict[str, str] = {
    "--socket": "the daemon's control socket (else $NVR_SOCKET, else --config's control.socket, "
                "else /run/nvr/control.sock); e.g. --socket /run/nvr/control.sock",
    "--config": "the camera map (YAML); e.g. --config /etc/nvr/nvr.yaml",
    "--json": "print JSON for scripts: UTC times with microseconds, full paths",
    "--utc": "show times in UTC instead of this machine's time zone",
    "--paths": "also show where each file is on disk (--json always has them)",
    "--reason": "why, in words; goes in the audit log; e.g. --reason 'incident 2026-114'",
    "--start": f"start of the range; {T}",
    "--end": "end of the range; e.g. 2026-11-29T14:30",
    "--incident": "your incident number, kept with it; e.g. --incident 2026-114",
    "--minutes": "how long it lasts, in minutes (1 to 1440); e.g. --minutes 30",
    "--camera": "a camera id from the camera map (see `nvr status`); e.g. --camera lobby",
    "--unmasked": "leave out the camera's privacy masks: the Director only, with --reason; the "
                  "audit log names the masks lifted; e.g. --unmasked",
    "--expires": "when it ends by itself; e.g. --expires 2026-12-01 (the end of that day) "
                 "or 2026-11-30T17:00",
    "--help": "show this help and exit",
    "--version": "print nvr's version and exit",
}

# Per command path ("hold create"): description, options and positionals, examples.
COMMANDS: dict[str, dict[str, Any]] = {
    "run": {"help": "the recorder daemon, in the foreground (systemd runs this)",
            "examples": ["nvr run --config /etc/nvr/nvr.yaml"]},
    "check-config": {
        "help": "check a camera map before using it (exit 0, or 65 with FILE:LINE: problem)",
        "opts": {"FILE": "the camera map to check; e.g. /etc/nvr/nvr.yaml"},
        "examples": ["nvr check-config /etc/nvr/nvr.yaml"]},
    "fsck": {
        "help": "compare the index with the files on disk; --repair fixes what it finds",
        "opts": {"--repair": "also fix it: index files the index lacks, forget rows whose "
                             "file is gone"},
        "examples": ["nvr fsck --config /etc/nvr/nvr.yaml",
                     "nvr fsck --config /etc/nvr/nvr.yaml --repair"]},
    "backup": {
        "help": "copy the index (online, while recording), the signing key, the audit "
                "checkpoints and the camera map into a new folder, with a manifest",
        "opts": {"--out": "the folder to create for the backup: a new one (an existing folder "
                          "is refused, whoever made it); e.g. --out /srv/backup/nvr-2026-11-29"},
        "examples": ["nvr backup --config /etc/nvr/nvr.yaml --out /srv/backup/nvr-2026-11-29"]},
    "restore": {
        "help": "put a backup's index and signing key into the fresh storage root of "
                "--config's camera map (the recorder stopped; copy the footage separately)",
        "opts": {"--from": "the backup folder made by `nvr backup`; "
                           "e.g. --from /srv/backup/nvr-2026-11-29",
                 "--key": "trust the backup by its signing key (the 64 hex digits `nvr "
                          "backup` or `nvr key show` printed, or a public-key PEM file) instead "
                          "of by its files all belonging to root; needed for any backup not "
                          "owned by root; e.g. --key /root/nvr-export.pub.pem"},
        "examples": ["nvr restore --config /etc/nvr/nvr.yaml --from /srv/backup/nvr-2026-11-29",
                     "nvr restore --config /etc/nvr/nvr.yaml --from /mnt/usb/nvr-2026-11-29 "
                     "--key FINGERPRINT"]},
    "status": {
        "help": "cameras (state, frame rate, bitrate, last segment), disk space and retention",
        "examples": ["nvr status", "nvr status --utc", "nvr status --json"]},
    "recordings": {
        "help": "the segments and the gaps of one camera in a range",
        "opts": {"--start": f"from this time (default: the oldest footage); {T}",
                 "--end": "until this time (default: now); e.g. 2026-11-29T15:00"},
        "examples": ["nvr recordings --camera lobby --start 2026-11-29T14:00 "
                     "--end 2026-11-29T15:00",
                     "nvr recordings --camera lobby --paths",
                     "nvr recordings --camera lobby --json"],
        "times": True},
    "export": {
        "help": "one MP4 clip of a range, with a signed manifest; or check one: "
                "`nvr export verify FILE.mp4`",
        "opts": {"verify": "the word `verify`, to check a clip instead of making one; "
                           "e.g. nvr export verify incident-114.mp4",
                 "FILE.mp4": "with verify: the clip to check (its .manifest.json and "
                             ".manifest.sig beside it); e.g. incident-114.mp4",
                 "--out": "the clip to write, ending in .mp4 (never overwritten); its "
                          "manifest and signature go beside it; e.g. --out incident-114.mp4",
                 "--request": "the approved law-enforcement request this answers; "
                              "e.g. --request R-7",
                 "--key": "with verify: the recorder key the clip must be signed with: the "
                          "64 hex digits of its fingerprint (as every export and `nvr key show` "
                          "print it) or its .pem file (default: this box's published recorder "
                          "key); e.g. --key recorder-key.pem"},
        "examples": ["nvr export --camera lobby --start 2026-11-29T14:00 --end 2026-11-29T14:10 "
                     "--reason 'incident 2026-114' --out incident-114.mp4",
                     "nvr export verify incident-114.mp4",
                     "nvr export verify incident-114.mp4 --key recorder-key.pem",
                     "nvr export verify incident-114.mp4 --key "
                     "67b5459d7909306cc599609ab47ab9140c61aa59830e8409c13afc7384f77b42"],
        "times": True},
    "still": {
        "help": "one still image (JPEG) for a suspension notice",
        "opts": {"--at": f"the moment to show; {T}",
                 "--until": "the recorder deletes its own copy after this date; "
                            "e.g. --until 2026-12-31 (the end of that day)",
                 "--out": "the JPEG to write, ending in .jpg (never overwritten); "
                          "e.g. --out notice.jpg"},
        "examples": ["nvr still --camera lobby --at 2026-11-29T14:05:30 --until 2026-12-31 "
                     "--reason 'suspension of patron 114' --out notice.jpg"],
        "times": True},
    "live": {
        "help": "a link to a live view that stops working after N minutes",
        "opts": {"--minutes": "how long the link works, in minutes (default 15); "
                              "e.g. --minutes 30"},
        "examples": ["nvr live --camera lobby --reason 'patron reports a fight' --minutes 10"]},
    "playback": {
        "help": "a link to recorded playback from a time, that stops working after N minutes",
        "opts": {"--start": f"play from this time; {T}",
                 "--end": "stop at this time (default: now); e.g. 2026-11-29T14:30",
                 "--minutes": "how long the link works, in minutes (default 60); "
                              "e.g. --minutes 30"},
        "examples": ["nvr playback --camera lobby --start 2026-11-29T14:00 "
                     "--reason 'incident 2026-114'"],
        "times": True},
    "view": {"help": "open viewing links (live and playback) and their sessions",
             "examples": ["nvr view list"]},
    "view list": {"help": "the viewing links still open, and who is watching",
                  "examples": ["nvr view list"]},
    "view revoke": {"help": "end a viewing link and its sessions now",
                    "opts": {"ID": "the link's id, from `nvr view list`; e.g. V-4"},
                    "examples": ["nvr view revoke V-4"]},
    "emergency list": {"help": "the emergency feeds running", "examples": ["nvr emergency list"]},
    "hold": {"help": "keep footage past retention for an incident or a legal matter",
             "examples": ["nvr hold list"]},
    "hold create": {
        "help": "keep the footage of cameras in a range until released",
        "opts": {"--camera": "one or more camera ids; e.g. --camera lobby stacks "
                             "(or repeat --camera)",
                 "--until": "the hold lapses after this date (default: until released); "
                            "e.g. --until 2027-06-30"},
        "examples": ["nvr hold create --camera lobby stacks --start 2026-11-29T14:00 "
                     "--end 2026-11-29T15:00 --reason 'incident 2026-114' --incident 2026-114"],
        "times": True},
    "hold list": {"help": "the holds in force", "examples": ["nvr hold list"]},
    "hold release": {
        "help": "release a hold: its footage follows retention again",
        "opts": {"HOLD_ID": "the hold's id, from `nvr hold list`; e.g. H-3"},
        "examples": ["nvr hold release H-3 --reason 'case closed'"]},
    "grant": {"help": "time-boxed access to footage for another staff account",
              "examples": ["nvr grant list"]},
    "grant create": {
        "help": "let an account see cameras' footage in a window, until the grant expires",
        "opts": {"--user": "the account to let in; e.g. --user jsmith",
                 "--camera": "one or more camera ids; e.g. --camera lobby stacks",
                 "--expires": "the grant ends by itself then; "
                              "e.g. --expires 2026-12-01 (the end of that day)"},
        "examples": ["nvr grant create --user jsmith --camera lobby --start 2026-11-29T14:00 "
                     "--end 2026-11-29T15:00 --expires 2026-12-01 --reason 'review incident 114'"],
        "times": True},
    "grant list": {"help": "the grants", "examples": ["nvr grant list"]},
    "grant revoke": {
        "help": "end a grant now",
        "opts": {"GRANT_ID": "the grant's id, from `nvr grant list`; e.g. G-2"},
        "examples": ["nvr grant revoke G-2"]},
    "request": {"help": "law-enforcement and public requests for footage",
                "examples": ["nvr request list"]},
    "request create": {
        "help": "record a request as it arrived",
        "opts": {"--kind": "what kind of request: subpoena, court_order, voluntary, emergency "
                           "or public; e.g. --kind subpoena",
                 "--requester": "who asks, as on their letter; "
                                "e.g. --requester 'Det. Lee, Hanson PD'",
                 "--details": "what they ask for, with their reference; "
                              "e.g. --details 'case 26-1183: lobby, 29 Nov 14:00-14:30'",
                 "--camera": "the cameras the request covers (an approval releases only "
                             "these); e.g. --camera lobby stacks",
                 "--start": f"start of the footage the request covers; {T}",
                 "--end": "end of the footage the request covers; e.g. 2026-11-29T14:30"},
        "examples": ["nvr request create --kind subpoena --requester 'Det. Lee, Hanson PD' "
                     "--details 'case 26-1183' --camera lobby --start 2026-11-29T14:00 "
                     "--end 2026-11-29T14:30"],
        "times": True},
    "request list": {"help": "the requests and their status", "examples": ["nvr request list"]},
    "request approve": {
        "help": "approve a request (the Director)",
        "opts": {"ID": "the request's id, from `nvr request list`; e.g. R-7",
                 "--expires": "when the approval ends (default: 30 days from now); "
                              "e.g. --expires 2026-12-31"},
        "examples": ["nvr request approve R-7", "nvr request approve R-7 --expires 2026-12-31"],
        "times": True},
    "request deny": {
        "help": "deny a request, with the reason (the Director)",
        "opts": {"ID": "the request's id, from `nvr request list`; e.g. R-7"},
        "examples": ["nvr request deny R-7 --reason 'no subpoena attached'"]},
    "emergency": {"help": "a time-boxed live feed for public-safety authorities",
                  "examples": ["nvr emergency end"]},
    "emergency start": {
        "help": "start a live feed for an agency; it ends by itself after N minutes",
        "opts": {"--agency": "who receives it; e.g. --agency 'Hanson Fire Department'",
                 "--camera": "one or more camera ids; e.g. --camera lobby stacks",
                 "--minutes": "how long the feed runs, in minutes (1 to 1440); "
                              "e.g. --minutes 60"},
        "examples": ["nvr emergency start --agency 'Hanson Fire Department' --camera lobby "
                     "--minutes 60"]},
    "emergency end": {
        "help": "end an emergency feed now",
        "opts": {"ID": "which feed (default: the one running); e.g. E-1"},
        "examples": ["nvr emergency end", "nvr emergency end E-1"]},
    "audit": {"help": "the access log: who did what, when, allowed or refused",
              "examples": ["nvr audit list --since 2026-11-01", "nvr audit verify"]},
    "audit list": {
        "help": "entries of the access log",
        "opts": {"--since": "only entries from this time on; e.g. --since 2026-11-01"},
        "examples": ["nvr audit list --since 2026-11-29T08:00"], "times": True},
    "audit verify": {"help": "check the log's hash chain; exit 0 only if it is intact",
                     "opts": {"--journal": "also hold the signed checkpoints against the "
                              "journal's copy (shows a cut end); FILE is the output of "
                              "`journalctl -u nvr -o json`, or - for stdin; e.g. --journal journal.json"},
                     "examples": ["nvr audit verify", "nvr audit verify --journal journal.json"]},
    "breach": {"help": "report a suspected unauthorised disclosure",
               "examples": ["nvr breach report --details '...'"]},
    "breach report": {
        "help": "record a suspected unauthorised disclosure and notify the Director",
        "opts": {"--details": "what happened, as far as known; "
                              "e.g. --details 'clip of 29 Nov seen on social media'"},
        "examples": ["nvr breach report --details 'clip of 29 Nov seen on social media'"]},
    "retention": {"help": "what retention deletes, and why held footage stays",
                  "examples": ["nvr retention plan"]},
    "retention plan": {
        "help": "what retention would delete at a time, and why held segments stay",
        "opts": {"--at": "plan for this time (default: now); e.g. --at 2026-12-31T00:00"},
        "examples": ["nvr retention plan", "nvr retention plan --at 2026-12-31 --paths"],
        "times": True},
    "retention confirm-clock": {
        "help": "after a clock jump: the box's clock is right now, so retention may delete "
                "again (Director or IT; audited)",
        "examples": ["nvr retention confirm-clock"]},
    "reload": {"help": "re-read the camera map (same as SIGHUP)", "examples": ["nvr reload"]},
    "masks": {"help": "privacy masks: see where a camera's masks fall on its picture",
              "examples": ["nvr masks preview --camera reading-room --out masks.png"]},
    "masks preview": {
        "help": "the camera's latest keyframe with its privacy masks outlined and numbered, as "
                "PNG, to place them (Director, Assistant Director, IT, facilities; audited); "
                "prints which number is which note",
        "opts": {"--out": "the PNG to write, ending in .png (never overwritten); "
                          "e.g. --out masks.png"},
        "examples": ["nvr masks preview --camera reading-room --out masks.png"]},
    "key": {"help": "the recorder's export-signing key", "examples": ["nvr key show"]},
    "key show": {"help": "the public key and its fingerprint, to check exported clips",
                 "examples": ["nvr key show"]},
    "help": {"help": "help on a command; e.g. nvr help export",
             "opts": {"COMMAND": "the command (and action); e.g. export, hold create"},
             "examples": ["nvr help export", "nvr help hold create"]},
}


# Placeholders in usage lines, for options main.py declared without one.
METAVARS = {"--start": "T", "--end": "T", "--at": "T", "--since": "T", "--until": "DATE",
            "--expires": "DATE", "--reason": "TEXT", "--kind": "KIND"}  # fmt: skip


def _wrap(command: str, width: int = 76) -> str:
    """An example command folded with shell line continuations, never inside quotes."""
    words = re.findall(r"(?:[^\s']+|'[^']*')+", command)
    lines, line = [], "  "
    for w in words:
        if len(line) + len(w) + 3 > width and line.strip():
            lines.append(line + " \\")
            line = "      "
        line += ("" if line.strip() == "" else " ") + w
    lines.append(line)
    return "\n".join(lines)


def _option_key(action: argparse.Action) -> str:
    if action.option_strings:
        return max(action.option_strings, key=len)
    return str(action.metavar or action.dest)


def _epilog(path: str, entry: dict[str, Any]) -> str | None:
    parts = []
    examples = entry.get("examples") or []
    if examples:
        parts.append("Examples:\n" + "\n".join(_wrap(e) for e in examples))
    if entry.get("times"):
        parts.append(TIMES)
    return "\n\n".join(parts) or None


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return dict(action.choices)
    return {}


def walk(parser: argparse.ArgumentParser, path: str = "") -> list[tuple[str, argparse.ArgumentParser]]:
    """Every (command path, parser), the top one first: ("", nvr), ("hold create", …)."""
    found = [(path, parser)]
    for name, sub in subcommands(parser).items():
        found += walk(sub, f"{path} {name}".strip())
    return found


def teach(parser: argparse.ArgumentParser) -> None:
    for path, p in walk(parser):
        entry = COMMANDS.get(path, {})
        opts: dict[str, str] = entry.get("opts", {})
        if entry.get("help"):
            p.description = textwrap.fill(entry["help"][0].upper() + entry["help"][1:] + ".", 78)
        p.epilog = _epilog(path, entry) or p.epilog
        p.formatter_class = argparse.RawDescriptionHelpFormatter
        for action in p._actions:
            key = _option_key(action)
            if isinstance(action, argparse._SubParsersAction):
                for choice in action._choices_actions:
                    sub = COMMANDS.get(f"{path} {choice.dest}".strip(), {})
                    choice.help = sub.get("help", choice.help)
                continue
            if action.option_strings and action.metavar is None and key in METAVARS:
                action.metavar = METAVARS[key]
            text = opts.get(key) or COMMON.get(key)
            if key == "--camera" and action.nargs == "+" and "--camera" not in opts:
                text = ("one or more camera ids; e.g. --camera lobby stacks "
                        "(or repeat --camera)")  # fmt: skip
            if text and action.help is not argparse.SUPPRESS:
                action.help = text

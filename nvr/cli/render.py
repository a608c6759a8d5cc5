"""Human output of client commands: tables on stdout, progress on stderr.

On a terminal: tables that fit its width (rich), colour only there, times in the box's zone.
Piped (not a terminal): tab-separated values, one header line then one line per row, with the
same human cells, so `cut -f` and `awk -F'\t'` work; scripts that want every field exact use
--json (full-precision UTC ISO 8601, paths included).

Every cell is built as a rich Text, never parsed as markup: a hold reason or an account name
typed by a user is shown as typed (`[red]` stays `[red]`).

Every renderer takes the daemon's result as its op's reply type (nvr.control.replies) and
still reads it with `.get`, tolerating fields it does not know and fields that are missing: the
daemon may add to a result without breaking an older client, and an older daemon sends less.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

from rich import box
from rich.cells import cell_len
from rich.console import Console
from rich.padding import Padding
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table
from rich.text import Text

from nvr.cli import fmt
from nvr.control.replies import (
    AuditEntry,
    CameraStatus,
    DiskStatus,
    PlanRow,
    RecordingsReply,
    RecoveryProgress,
    RetentionPlan,
    StatusReply,
    ViewLink,
)
from nvr.timeutil import parse_segment_name

Columns = Sequence[tuple[str, str]]  # (key in the row, column header)

STATUS_COLUMNS: Columns = (
    ("id", "camera"), ("state", "state"), ("fps", "fps"), ("bitrate_bps", "bitrate"),
    ("last_segment_end", "last segment"), ("errors", "errors"),
)  # fmt: skip
WHY = ("reason", "why")  # a column when piped; on a terminal, a line per camera below
SEGMENT_COLUMNS: Columns = (
    ("start", "start"), ("end", "end"), ("length", "length"), ("frames", "frames"),
    ("bytes", "size"), ("codec", "codec"),
)  # fmt: skip
GAP_COLUMNS: Columns = (
    ("start", "start"), ("end", "end"), ("length", "length"), ("reason", "reason"),
    ("detail", "detail"),
)  # fmt: skip
AUDIT_COLUMNS: Columns = (
    ("seq", "seq"), ("at", "at"), ("actor", "actor"), ("role", "role"), ("action", "action"),
    ("allowed", "allowed"), ("detail", "detail"),
)  # fmt: skip
PLAN_COLUMNS: Columns = (("camera", "camera"), ("segment", "segment start"), ("why", "why"))
# Columns that may fold onto several lines to fit; all others stay on one line.
_FOLD = {"reason", "why", "detail", "details", "path", "actor", "action", "requester",
         "cameras", "url", "agency", "user", "name", "incident"}  # fmt: skip
_RIGHT = {"fps", "frames", "bytes", "errors", "seq", "length", "bitrate_bps"}


@dataclass(frozen=True)
class View:
    """How a person asked to see it: --utc, --paths."""

    utc: bool = False
    paths: bool = False


def console() -> Console:
    """A console for a free-form message (markup off: messages carry user-typed text)."""
    return Console(highlight=False, markup=False, emoji=False,
                   soft_wrap=not sys.stdout.isatty())  # fmt: skip


def is_terminal() -> bool:
    return sys.stdout.isatty()


# Characters that would act on the terminal instead of showing: C0/C1 controls, DEL, and the
# bidirectional overrides/isolates/marks that reorder what is displayed (U+202E and friends).
_INVISIBLE = {
    **{c: f"\\x{c:02x}" for c in [*range(0x20), 0x7F, *range(0x80, 0xA0)]},
    **{c: f"\\u{c:04x}" for c in [0x061C, 0x200E, 0x200F, *range(0x202A, 0x202F),
                                   *range(0x2066, 0x206A)]},
}
_INVISIBLE[0x09], _INVISIBLE[0x0A], _INVISIBLE[0x0D] = "\\t", "\\n", "\\r"


def literal(text: str) -> str:
    """`text` exactly as typed, with every control or direction-changing character shown as an
    escape (\\n, \\x1b, \\u202e) so that nothing typed can hide, reorder or restyle output."""
    return text.translate(_INVISIBLE)


# In JSON output the same characters travel as \\uXXXX escapes: the decoded strings are exactly
# what was typed, and the raw text on a terminal shows them instead of obeying them.
_JSON_INVISIBLE = {c: f"\\u{c:04x}" for c in _INVISIBLE if c >= 0x7F}


def json_text(value: object, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False).translate(_JSON_INVISIBLE)


class Out:
    """Where a renderer writes: a table that fits the terminal, or tab-separated lines."""

    def __init__(self, view: View | None = None, *, terminal: bool | None = None) -> None:
        self.view = view or View()
        self.terminal = is_terminal() if terminal is None else terminal
        self.console = console()
        self._first = True

    # -- cells -------------------------------------------------------------------------------

    def cell(self, key: str, value: object, row: Mapping[str, object] | None = None) -> str:
        if value is None or value == "":
            return "-"
        if isinstance(value, bool):
            return "yes" if value else "no"
        if isinstance(value, int | float) and (key == "bytes" or key.endswith("_bytes")):
            return fmt.size(value)
        if isinstance(value, int | float) and key.endswith("_bps"):
            return fmt.rate(value) if value else "-"
        if isinstance(value, float):
            return f"{value:.1f}"
        if isinstance(value, dict | list):
            if isinstance(value, list) and all(isinstance(v, str) for v in value):
                return literal(", ".join(value))
            return literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
        if isinstance(value, str) and fmt.parse_iso(value) is not None:
            return fmt.when(value, utc=self.view.utc)
        return literal(str(value))

    def when(self, value: object, *, same_day_as: object = None) -> str:
        """A time; only its time of day when it falls on the same day as `same_day_as`."""
        if not isinstance(value, str) or fmt.parse_iso(value) is None:
            return self.cell("", value)
        full = fmt.when(value, utc=self.view.utc)
        if isinstance(same_day_as, str) and fmt.parse_iso(same_day_as) is not None:
            if fmt.when(same_day_as, utc=self.view.utc)[:10] == full[:10]:
                return fmt.when(value, utc=self.view.utc, date=False)
        return full

    # -- output ------------------------------------------------------------------------------

    def _gap(self) -> None:
        if not self._first:
            self.line("")
        self._first = False

    def line(self, text: str) -> None:
        if self.terminal:
            self.console.print(Text(text))
        else:
            sys.stdout.write(text + "\n")

    def table(self, headers: Sequence[str], rows: Sequence[Sequence[str]], title: str = "",
              keys: Sequence[str] | None = None, drop: Sequence[str] = ()) -> None:
        """Rows of ready-made cells. Piped: a header line, then TAB-separated rows (tabs and
        newlines inside a cell become spaces), no title. On a terminal: fitted to its width
        without cutting a word (`fit`): the columns in `drop` go first, in that order."""
        keys = keys or headers
        self._gap()
        if not self.terminal:
            def clean(c: str) -> str:
                return " ".join(c.replace("\t", " ").split()) if ("\t" in c or "\n" in c) else c
            sys.stdout.write("\t".join(headers) + "\n")
            for row in rows:
                sys.stdout.write("\t".join(clean(c) for c in row) + "\n")
            return
        fitted = fit(list(headers), [list(r) for r in rows], list(keys), self.console.width,
                     drop)  # fmt: skip
        # Two spaces between columns, none at the edges: room for the cells in 80 columns.
        t = Table(title=Text(title) if title else None, title_justify="left", box=box.SIMPLE_HEAD,
                  pad_edge=False, show_edge=False, header_style="bold",
                  padding=(0, 1, 0, 0), collapse_padding=True)  # fmt: skip
        for key, header, width in zip(fitted.keys, fitted.headers, fitted.widths, strict=True):
            t.add_column(Text(header), overflow="fold", no_wrap=True, width=width,
                         justify="right" if key in _RIGHT else "left")  # fmt: skip
        for row in fitted.rows:
            t.add_row(*(Text(c) for c in row))
        self.console.print(t)
        if fitted.dropped:
            self.console.print(Text(f"(left out at {self.console.width} columns: "
                                    f"{', '.join(fitted.dropped)}; --json has every field)"))

    def rows(self, rows: Sequence[Mapping[str, object]], columns: Columns | None = None,
             title: str = "", *, extra: bool = True) -> None:
        """A table of result rows; with `extra`, keys beyond `columns` get columns too
        (paths only with --paths)."""
        if columns is None:
            keys: dict[str, None] = {}
            for row in rows:
                keys.update(dict.fromkeys(row))
            columns = [(k, k.replace("_", " ")) for k in keys]
        elif extra:
            known = {c[0] for c in columns}
            more = {k: None for row in rows for k in row if k not in known}
            columns = [*columns, *((k, k.replace("_", " ")) for k in more)]
        if not self.view.paths:
            columns = [c for c in columns if c[0] != "path"]
        self.table([h for _k, h in columns],
                   [[self.cell(k, row.get(k), row) for k, _h in columns] for row in rows],
                   title, [k for k, _h in columns])  # fmt: skip

    def pairs(self, items: Sequence[tuple[str, str]], title: str = "") -> None:
        """Name and value, one per line: `name  value` on a terminal, `name<TAB>value` piped."""
        self._gap()
        if not self.terminal:
            for k, v in items:
                sys.stdout.write(f"{k}\t{v}\n")
            return
        t = Table(title=Text(title) if title else None, show_header=False, title_justify="left",
                  box=None, pad_edge=False)  # fmt: skip
        t.add_column("key", style="bold", no_wrap=True)
        t.add_column("value", overflow="fold")
        for k, v in items:
            t.add_row(Text(k), Text(v))
        self.console.print(t)


# -- fitting a table to the terminal, never cutting a word ---------------------------------------

_GAP = 2  # columns between two cells (padding and the blank separator)
_WHOLE = 24  # a folding cell up to this wide is worth dropping a column to keep on one line


def words(text: str) -> list[str]:
    """Where a cell may break: at spaces, after a hyphen that follows a letter
    (`senior-` `center-` `lounge`) and after a path's slashes, never inside a number or a time
    (`2026-12-07`)."""
    return [piece for word in text.split() for piece in _pieces(word) if piece]


def _pieces(word: str) -> list[str]:
    """A word's breakable pieces: after a hyphen that follows a letter, and in a path (a word
    starting with /) after each slash."""
    pattern = r"(?<=[A-Za-z]-)(?=\S)|(?<=/)(?=\S)" if word.startswith("/") else r"(?<=[A-Za-z]-)(?=\S)"
    return re.split(pattern, word)


def wrap(text: str, width: int) -> str:
    """`text` folded at `words` boundaries into lines of at most `width` cells; a word
    longer than the line (only on a terminal narrower than the word) is the only cut."""
    lines: list[str] = []
    for para in text.split("\n"):
        line = ""
        for word in re.findall(r"\S+\s*", para):
            for piece in _pieces(word):
                if line and cell_len((line + piece).rstrip()) > width:
                    lines.append(line.rstrip())
                    line = ""
                while cell_len(piece.rstrip()) > width:
                    lines.append(piece[:width])
                    piece = piece[width:]
                line += piece
        lines.append(line.rstrip())
    return "\n".join(lines)


@dataclass(frozen=True)
class Fitted:
    headers: list[str]
    rows: list[list[str]]
    keys: list[str]
    widths: list[int]
    dropped: list[str]  # headers of the columns left out


def fit(headers: list[str], rows: list[list[str]], keys: list[str], width: int,
        drop: Sequence[str] = ()) -> Fitted:
    """The table laid out for `width` columns: every column as wide as its longest word
    (header words included), the columns in `drop` left out in that order while the words
    alone do not fit, then the room left given to the columns that may fold (_FOLD, camera
    ids), in proportion to what each lacks, whose cells break between words. Nothing else breaks:
    a time, a size, a state are never cut."""
    cols = list(range(len(keys)))

    def cells(i: int) -> list[str]:
        return [r[i] for r in rows]

    foldable = {i for i in cols if keys[i] in _FOLD or keys[i] in ("id", "camera")}

    def longest(texts: list[str], split: bool) -> int:
        pieces = [p for t in texts for p in (words(t) if split else t.split("\n"))]
        return max((cell_len(p) for p in pieces), default=1)

    least = {i: max(longest([headers[i]], True), longest(cells(i), i in foldable)) for i in cols}
    full = {i: max(least[i], longest(cells(i), False)) for i in cols}
    # Whole cells rather than every column: a column in `drop` goes while the cells would not
    # fit whole, counting a folding column (a long camera id) as at most _WHOLE wide.
    wanted = {i: full[i] if i not in foldable else max(least[i], min(full[i], _WHOLE))
              for i in cols}
    dropped: list[int] = []
    for key in drop:
        if sum(wanted[i] for i in cols) + _GAP * (len(cols) - 1) <= width:
            break
        for i in [i for i in cols if keys[i] == key and len(cols) > 1]:
            cols.remove(i)
            dropped.append(i)
    for i in reversed(dropped[:-1]):  # one dropped early may fit again beside the rest
        if sum(wanted[j] for j in [*cols, i]) + _GAP * len(cols) <= width:
            cols = sorted([*cols, i])
            dropped.remove(i)
    room = width - _GAP * (len(cols) - 1)
    widths = {i: full[i] if i not in foldable else least[i] for i in cols}
    spare = max(0, room - sum(widths.values()))
    need = {i: full[i] - least[i] for i in cols if i in foldable}
    if sum(need.values()) <= spare:
        widths.update({i: full[i] for i in need})
    else:  # each folding column grows by its share of what they all lack
        for i in need:
            widths[i] += spare * need[i] // max(1, sum(need.values()))
    return Fitted([wrap(headers[i], widths[i]) for i in cols],
                  [[wrap(r[i], widths[i]) for i in cols] for r in rows],
                  [keys[i] for i in cols], [widths[i] for i in cols],
                  [headers[i] for i in dropped])


def _daily_bytes(result: StatusReply) -> float | None:
    """Bytes a day at the cameras' current combined bitrate ("today's rate")."""
    bps = sum(c.get("bitrate_bps") or 0 for c in result.get("cameras") or [])
    return bps / 8 * 86400 if bps else None


# `nvr status` on a terminal: these columns; the full oldest time, held time and the last
# error go below the table (on a terminal) or in more columns (piped, STATUS_MORE).
STATUS_TABLE: Columns = (
    ("id", "camera"), ("state", "state"), ("fps", "fps"), ("bitrate_bps", "bitrate"),
    ("last_segment_end", "last segment"), ("oldest_age", "oldest"), ("held_bytes", "held"),
    ("errors", "errors"),
)  # fmt: skip
# On a terminal too narrow for every column, these go first, in this order: held footage and
# the oldest footage are also said below the table (per camera, and on the retention line),
# bitrate and frame rate are for IT; camera, state and last segment always stay.
STATUS_DROP = ("held_bytes", "oldest_age", "bitrate_bps", "fps", "errors")
STATUS_MORE: Columns = (
    ("oldest_footage", "oldest footage"), ("held_seconds", "held time"),
    ("last_error_at", "last error at"), ("last_error", "last error"),
)  # fmt: skip
# Keys of the reply shown in their own way, not as a `key value` line.
_STATUS_SHOWN = {"cameras", "site", "disk", "retention", "alerts", "held", "at", "recovery"}


def _recovery_text(r: RecoveryProgress) -> str:
    """The background check of older footage after start-up, in words."""
    found = [fmt.plural(n, f"{k} file", f"{k} files") for k, n in
             (("missing", r.get("missing")), ("recovered", r.get("recovered")),
              ("quarantined", r.get("quarantined"))) if n]
    state = r.get("state")
    if state == "done":
        head = f"older footage checked ({fmt.plural(int(r.get('checked') or 0), 'segment')})"
    elif state == "failed":
        head = "the check of older footage failed (see the daemon log)"
    else:
        head = f"checking older footage: {r.get('checked', 0)} of {r.get('total', '?')} segments"
    return head + (": " + ", ".join(found) if found else "")


def status_alerts(out: Out, result: StatusReply) -> None:
    """Active alerts, before anything else: `ALERT  camera gone is not recording …`.
    Piped: a TSV table (alert, camera, message). Older daemons send only `alert`."""
    rows = result.get("alerts")
    if rows is None:
        legacy = result.get("alert")
        rows = [{"kind": "storage_paused", "camera": None, "message": legacy}] if legacy else []
    if not rows:
        return
    if not out.terminal:
        out.table(["alert", "camera", "message"],
                  [[out.cell("", a.get("kind")), out.cell("", a.get("camera")),
                    out.cell("", a.get("message"))] for a in rows])  # fmt: skip
        return
    out._gap()
    t = Table(show_header=False, box=None, pad_edge=False)  # continuation lines indented
    t.add_column("alert", no_wrap=True)
    t.add_column("message", overflow="fold")
    for a in rows:
        t.add_row(Text("ALERT", style="bold red"),
                  Text(literal(str(a.get("message") or a.get("kind") or ""))))
    out.console.print(t)


def _status_row(c: CameraStatus, now: dt.datetime) -> dict[str, object]:
    oldest = fmt.parse_iso(c.get("oldest_footage") or "")
    age = fmt.duration((now - oldest).total_seconds()) if oldest is not None else None
    return {**c, "oldest_age": age}


def status(out: Out, result: StatusReply) -> None:
    status_alerts(out, result)
    cams = result.get("cameras") or []
    site = result.get("site")
    title = f"{site}: {fmt.plural(len(cams), 'camera')}" if site else fmt.plural(len(cams), "camera")
    items: list[tuple[str, str]] = []
    new = any("oldest_footage" in c for c in cams)  # a daemon that sends the footage figures
    # "Now" is the daemon's (its reply's `at`), not this process's clock: the same reply
    # renders the same way on any day; only a reply without `at` (an older daemon) uses ours.
    now = fmt.parse_iso(result.get("at") or "") or dt.datetime.now(dt.UTC)
    today = now.isoformat()
    if cams:
        if new:
            columns = [*STATUS_TABLE] if out.terminal else [*STATUS_TABLE, *STATUS_MORE, WHY]
        else:
            columns = [*STATUS_COLUMNS] if out.terminal else [*STATUS_COLUMNS, WHY]
        shown = [_status_row(c, now) for c in cams]
        rows = [[_status_cell(out, k, c, today) for k, _h in columns] for c in shown]
        out.table([h for _k, h in columns], rows, title, [k for k, _h in columns],
                  drop=STATUS_DROP)
        if out.terminal:
            alerted = {a.get("camera") for a in result.get("alerts") or []}
            for c in cams:
                if c.get("reason") and c.get("id") not in alerted:
                    items.append((f"{c.get('id')}", f"{c.get('state')}: {c.get('reason')}"))
                if c.get("transport_reason"):
                    items.append((f"{c.get('id')}",
                                  f"recording over UDP: {c.get('transport_reason')}"))
                if c.get("last_error") and c.get("last_error") != c.get("reason"):
                    at = c.get("last_error_at")
                    when = f" at {out.when(at, same_day_as=today)}" if at else ""
                    items.append((f"{c.get('id')}", f"last error{when}: {c.get('last_error')}"))
                if c.get("held_bytes"):
                    items.append((f"{c.get('id')}", "held: " + _held_text(
                        c.get("held_bytes", 0), c.get("held_seconds", 0))))
    else:
        out.line("no cameras configured")
    disk = result.get("disk")
    if disk is not None:
        items.append(("disk", _disk_text(disk, result)))
        if out.view.paths and disk.get("root"):
            items.append(("storage", str(disk["root"])))
    held = result.get("held")
    if held is not None and held.get("holds"):
        items.append(("held", f"{_held_text(held.get('bytes', 0), held.get('seconds', 0))} under "
                      f"{fmt.plural(held.get('holds', 0), 'hold')} in force"))
    recovery = result.get("recovery")
    if recovery is not None:
        items.append(("recovery", _recovery_text(recovery)))
    ret = result.get("retention")
    if ret is not None:
        days = ret.get("days")
        text = "-" if days is None else fmt.days(days)
        oldest = ret.get("oldest_footage")
        text += f"; oldest footage {out.cell('', oldest)}" if oldest else "; no footage yet"
        items.append(("retention", text))
    for key, value in result.items():
        if key in _STATUS_SHOWN or value in (None, [], "", False):
            continue
        if key in ("alert", "paused") and "alerts" in result:
            continue  # listed first, among the alerts
        items.append((key, out.cell(key, value)))
    out.pairs(items)


def _status_cell(out: Out, key: str, c: Mapping[str, object], today: str) -> str:
    value = c.get(key)
    if key == "last_segment_end":
        return out.when(value, same_day_as=today)
    if key == "held_bytes" and not value:
        return "-"
    if key == "held_seconds":
        return fmt.duration(value) if isinstance(value, int | float) and value else "-"
    return out.cell(key, value)


def _held_text(size: int, secs: float) -> str:
    return f"{fmt.size(size)}, {fmt.duration(secs)} of footage"


def _disk_text(disk: DiskStatus, result: StatusReply) -> str:
    """The daemon's days left when it sends them (today's bytes from the index), else the
    cameras' bitrates now (an older daemon)."""
    if "days_left" in disk:
        return fmt.disk_line(disk, None)
    return fmt.disk_line(disk, _daily_bytes(result))


def recordings(out: Out, result: RecordingsReply) -> None:
    cam = result.get("camera", "")
    segments = result.get("segments") or []
    gaps = result.get("gaps") or []
    columns = [*SEGMENT_COLUMNS, *((("path", "path"),) if out.view.paths else ())]
    if out.view.paths and out.terminal:  # room for the path: start, length, size, path
        columns = [c for c in columns if c[0] in ("start", "length", "bytes", "path")]
    if segments:
        out.table([h for _k, h in columns], [_timed_row(out, s, columns) for s in segments],
                  f"{cam}: {fmt.plural(len(segments), 'segment')}", [k for k, _h in columns])
    else:
        out.line(f"{cam}: no segments in this range")
    if gaps:
        out.table([h for _k, h in GAP_COLUMNS], [_timed_row(out, g, GAP_COLUMNS) for g in gaps],
                  f"{cam}: {fmt.plural(len(gaps), 'gap')}", [k for k, _h in GAP_COLUMNS])
    else:
        out.line("no gaps in this range")


def _timed_row(out: Out, row: Mapping[str, object], columns: Columns) -> list[str]:
    """A row with a start and an end: the end without its date when on the same day, and
    the length between them."""
    cells = []
    for key, _h in columns:
        if key == "end":
            cells.append(out.when(row.get("end"), same_day_as=row.get("start")))
        elif key == "length":
            start, end = row.get("start"), row.get("end")
            secs = (fmt.span(start, end) if isinstance(start, str) and isinstance(end, str)
                    else None)
            cells.append("-" if secs is None else fmt.duration(secs))
        else:
            cells.append(out.cell(key, row.get(key), row))
    return cells


# What identifies a hold, grant or request at a glance: its first line on a terminal.
LIST_HEADS: dict[str, tuple[str, ...]] = {
    "holds": ("id", "cameras", "start", "end"),
    "grants": ("id", "user", "cameras", "start", "end"),
    "requests": ("id", "kind", "status", "requester"),
}


def listing(out: Out, rows: Sequence[Mapping[str, object]], key: str) -> None:
    """Holds, grants, requests, links, emergency feeds (`key`). Piped: TSV with every field.
    On a terminal: a block per item, its identifying fields on one line and the rest below,
    indented and wrapped, because a dozen columns never fit 80."""
    singular = key[:-1] if key.endswith("s") else key
    if not rows:
        out.line(f"no {key}")
        return
    title = fmt.plural(len(rows), singular)
    if not out.terminal:
        out.rows(rows, title=title)
        return
    out.line(title)
    head = LIST_HEADS.get(key) or tuple(list(rows[0])[:3])
    for r in rows:
        parts = [out.cell(k, r.get(k)) for k in head if k not in ("start", "end")]
        out.console.print(Text("  ".join(parts)))
        if "start" in head:  # the footage window on a line of its own: two times are 50 wide
            window = (f"{out.when(r.get('start'))} – "
                      f"{out.when(r.get('end'), same_day_as=r.get('start'))}")  # fmt: skip
            out.console.print(Padding(Text(window), (0, 0, 0, 4)))
        rest = [f"{k.replace('_', ' ')}: {out.cell(k, v)}" for k, v in r.items()
                if k not in head and v not in (None, "", [], {})]  # fmt: skip
        if rest:
            out.console.print(Padding(Text("; ".join(rest)), (0, 0, 0, 4)))


def audit(out: Out, rows: Sequence[AuditEntry]) -> None:
    """Piped: one TSV row per entry. On a terminal: two lines per entry, the who/what/when,
    then the detail below it, indented and wrapped (it is too long for a column of 80)."""
    if not rows:
        out.line("no audit entries")
        return
    title = fmt.plural(len(rows), "audit entry", "audit entries")
    if not out.terminal:  # the hash chain is in --json and checked by `nvr audit verify`
        out.rows(rows, [*AUDIT_COLUMNS], title, extra=False)
        return
    out.line(title)
    for r in rows:
        verdict = "allowed" if r.get("allowed") else "REFUSED"
        head = (f"{out.cell('seq', r.get('seq')):>4}  {out.cell('at', r.get('at'))}  "
                f"{out.cell('actor', r.get('actor'))} ({out.cell('role', r.get('role'))})  "
                f"{out.cell('action', r.get('action'))}  {verdict}")  # fmt: skip
        out.console.print(Text(head))
        detail = r.get("detail")
        if detail:
            text = "; ".join(f"{k}: {out.cell(k, v)}" for k, v in detail.items())
            out.console.print(Padding(Text(text), (0, 0, 0, 6)))


def _plan_rows(out: Out, rows: Sequence[PlanRow]) -> list[dict[str, object]]:
    shown = []
    for r in rows:
        start = parse_segment_name(os.path.basename(str(r.get("path", ""))))
        seg = (dt.datetime(1970, 1, 1, tzinfo=dt.UTC) + dt.timedelta(microseconds=start)
               if start is not None else None)  # fmt: skip
        shown.append({**r, "segment": seg.isoformat() if seg else r.get("path")})
    return shown


def retention_plan(out: Out, result: RetentionPlan) -> None:
    at = out.cell("at", result.get("at")) if result.get("at") else "now"
    delete = result.get("delete") or []
    keep = result.get("keep") or []
    columns = [*PLAN_COLUMNS, *((("path", "path"),) if out.view.paths else ())]
    if result.get("clock_alert"):
        out.line("the clock is in doubt, so nothing goes for age; only a full disk frees the "
                 "oldest unheld footage (`nvr retention confirm-clock` once the clock is right)")
    if delete:
        out.rows(_plan_rows(out, delete), columns,
                 f"would delete at {at}: {fmt.plural(len(delete), 'segment')}", extra=False)
    else:
        out.line(f"nothing to delete at {at}")
    if keep:
        out.rows(_plan_rows(out, keep), columns,
                 f"kept although due: {fmt.plural(len(keep), 'segment')}", extra=False)


def with_url(out: Out, result: ViewLink) -> None:
    """live / emergency start: the URL alone on a line, so it can be copied whole."""
    url = result.get("url")
    if isinstance(url, str):
        if out.terminal:
            out.console.print(Text(url), soft_wrap=True)
        else:
            sys.stdout.write(url + "\n")
        out._first = False
    generic(out, {k: v for k, v in result.items() if k != "url"}, quiet=True)


def generic(out: Out, result: Mapping[str, object], *, quiet: bool = False) -> None:
    if result:
        out.pairs([(k.replace("_", " "), out.cell(k, v)) for k, v in result.items()])
    elif not quiet:
        out.line("ok")


class ProgressSink:
    """Progress lines from the daemon: a bar when stderr is a terminal, plain lines otherwise."""

    def __init__(self, label: str) -> None:
        self._label = label
        self._bar: Progress | None = None
        self._task: TaskID | None = None

    def __call__(self, done: int, total: int, message: str) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.update(self._task, completed=done, total=total or None,
                             description=message or self._label)  # fmt: skip
            return
        sys.stderr.write(f"nvr: {message or self._label} {done}/{total}\n")
        sys.stderr.flush()

    @contextmanager
    def shown(self) -> Iterator[ProgressSink]:
        if not sys.stderr.isatty():
            yield self
            return
        columns = (TextColumn("{task.description}", markup=False), BarColumn(), MofNCompleteColumn(),
                   TimeRemainingColumn())  # fmt: skip
        with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
            self._bar, self._task = bar, bar.add_task(self._label, total=None)
            try:
                yield self
            finally:
                self._bar = self._task = None

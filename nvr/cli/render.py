"""Human output of client commands: rich tables on stdout, progress on stderr.

Every renderer takes the daemon's result object and tolerates fields it does not know and
fields that are missing: the daemon may add to a result without breaking an older client.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
)
from rich.table import Table

Columns = Sequence[tuple[str, str]]  # (key in the row, column header)

STATUS_COLUMNS: Columns = (
    ("id", "camera"), ("state", "state"), ("reason", "why"), ("fps", "fps"),
    ("kbps", "kbit/s"), ("last_segment_end", "last segment end"), ("errors", "errors"),
)  # fmt: skip
SEGMENT_COLUMNS: Columns = (
    ("start", "start"), ("end", "end"), ("frames", "frames"), ("bytes", "bytes"),
    ("codec", "codec"), ("path", "path"),
)  # fmt: skip
GAP_COLUMNS: Columns = (("start", "start"), ("end", "end"), ("reason", "reason"))
AUDIT_COLUMNS: Columns = (
    ("seq", "seq"), ("at", "at"), ("actor", "actor"), ("role", "role"), ("action", "action"),
    ("allowed", "allowed"), ("detail", "detail"),
)  # fmt: skip
PLAN_COLUMNS: Columns = (("camera", "camera"), ("path", "path"), ("why", "why"))


def console() -> Console:
    # Not a terminal (a pipe, a test): wide enough that paths and times are not folded.
    # markup/emoji off: text people typed (`x [/bold]`, `:smile:`) is printed as typed, never
    # interpreted — a reason of `[black on black]` must not hide text in the Director's log.
    return Console(width=None if sys.stdout.isatty() else 200, highlight=False, markup=False,
                   emoji=False)


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


def json_text(value: Any, indent: int | None = 2) -> str:
    return json.dumps(value, indent=indent, ensure_ascii=False).translate(_JSON_INVISIBLE)


def cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.2f}"
    if isinstance(value, dict | list):
        return literal(json.dumps(value, ensure_ascii=False, separators=(",", ":")))
    return literal(str(value))


def table(rows: Sequence[dict[str, Any]], columns: Columns | None = None, title: str = "",
          *, extra: bool = True) -> Table:
    """A table of rows; with `extra`, keys beyond `columns` get columns of their own."""
    if columns is None:
        keys: dict[str, None] = {}
        for row in rows:
            keys.update(dict.fromkeys(row))
        columns = [(k, k) for k in keys]
    elif extra:
        # Known columns first, then anything the daemon added.
        extra = {k: None for row in rows for k in row if k not in {c[0] for c in columns}}
        columns = [*columns, *((k, k) for k in extra)]
    t = Table(title=literal(title) or None, title_justify="left")
    for _key, header in columns:
        t.add_column(header, overflow="fold")
    for row in rows:
        t.add_row(*(cell(row.get(key)) for key, _header in columns))
    return t


def key_values(result: dict[str, Any], title: str = "") -> Table:
    t = Table(title=title or None, show_header=False, title_justify="left")
    t.add_column("key", style="bold")
    t.add_column("value", overflow="fold")
    for key, value in result.items():
        t.add_row(literal(str(key)), cell(value))
    return t


def status(out: Console, result: dict[str, Any]) -> None:
    cams = result.get("cameras") or []
    title = f"{result['site']}: cameras" if result.get("site") else "cameras"
    for cam in cams:
        if isinstance(cam.get("bitrate_bps"), int | float):
            cam["kbps"] = round(cam["bitrate_bps"] / 1000)
    out.print(table(cams, STATUS_COLUMNS, title, extra=False) if cams else "no cameras configured")
    rest = {k: v for k, v in result.items() if k not in ("cameras", "site")}
    for key, value in rest.items():
        if isinstance(value, dict):
            out.print(key_values(value, key))
        elif value not in (None, [], ""):
            out.print(f"{key}: {cell(value)}")


def recordings(out: Console, result: dict[str, Any]) -> None:
    cam = result.get("camera", "")
    segments = result.get("segments") or []
    gaps = result.get("gaps") or []
    out.print(table(segments, SEGMENT_COLUMNS, f"{cam}: {len(segments)} segments", extra=False))
    if gaps:
        out.print(table(gaps, GAP_COLUMNS, f"{cam}: {len(gaps)} gaps", extra=False))
    else:
        out.print("no gaps in this range")


def listing(out: Console, result: dict[str, Any], key: str) -> None:
    rows = result.get(key)
    if not isinstance(rows, list):
        generic(out, result)
        return
    out.print(table(rows, title=f"{len(rows)} {key}") if rows else f"no {key}")


def audit(out: Console, rows: list[dict[str, Any]]) -> None:
    out.print(
        table(rows, AUDIT_COLUMNS, f"{len(rows)} audit entries") if rows else "no audit entries"
    )


def retention_plan(out: Console, result: dict[str, Any]) -> None:
    at = result.get("at", "now")
    delete = result.get("delete") or []
    keep = result.get("keep") or []
    out.print(table(delete, PLAN_COLUMNS, f"would delete at {at}: {len(delete)} segments")
              if delete else f"nothing to delete at {at}")  # fmt: skip
    if keep:
        out.print(table(keep, PLAN_COLUMNS, f"kept although due: {len(keep)} segments"))


def with_url(out: Console, result: dict[str, Any]) -> None:
    """live / emergency start: the URL alone on a line, so it can be copied whole."""
    url = result.get("url")
    if isinstance(url, str):
        out.print(url, soft_wrap=True)
    generic(out, {k: v for k, v in result.items() if k != "url"}, quiet=True)


def generic(out: Console, result: dict[str, Any], *, quiet: bool = False) -> None:
    if result:
        out.print(key_values(result))
    elif not quiet:
        out.print("ok")


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

"""The reply types (nvr.control.replies) against the handlers, docs/commands.md and a daemon.

- every handler takes its op's args model and returns its op's reply type;
- every JSON shape docs/commands.md gives is its reply type, key for key (an extra key or a
  missing one fails, naming it), and every reply type is spelled out somewhere on the page;
- the answers of a real daemon (tests/cli/test_reply_shapes_live.py) are these types.
"""

from __future__ import annotations

import re
import typing
from pathlib import Path
from typing import Any

import pytest

from nvr.control import replies
from nvr.control.handlers import Handlers
from nvr.control.protocol import ARGS, Reply
from tests.cli.shapes import Obj, covered, doc_problems, parse_shape, typeddicts

DOC = Path(__file__).resolve().parents[2] / "docs" / "commands.md"

# Each section of the page (by its heading) and the types of its JSON shapes, in page order.
SHAPES: dict[str, list[Any]] = {
    "`nvr status`": [replies.StatusReply],
    "`nvr recordings`": [replies.RecordingsReply],
    "`nvr export`": [replies.ExportShown],
    "`nvr still`": [replies.StillShown],
    "`nvr masks preview`": [replies.MasksPreviewShown],
    "`nvr live`": [replies.ViewLink, replies.ViewList],
    "`nvr hold create`": [replies.HoldList],
    "`nvr grant create`": [replies.GrantList],
    "`nvr request create`": [replies.RequestList],
    "`nvr emergency start`": [replies.EmergencyLink, replies.EmergencyList,
                              replies.EmergencyEnded],
    "`nvr audit list`": [replies.AuditEntry, replies.AuditVerifyReply],
    "`nvr breach report`": [replies.BreachRow],
    "`nvr retention plan`": [replies.RetentionPlan],
    "`nvr retention confirm-clock`": [replies.ClockConfirmed],
    "`nvr reload`": [replies.Reloaded],
    "`nvr key show`": [replies.KeyShowReply],
}
# Wire replies the page shows in another form: what the command prints instead.
PRINTED_AS = {
    replies.ExportReply: "`nvr export` prints ExportShown (the file, not its descriptor)",
    replies.StillReply: "`nvr still` prints StillShown",
    replies.MasksPreviewReply: "`nvr masks preview` prints MasksPreviewShown",
    replies.AuditPage: "`nvr audit list` prints the pages' rows as one list of AuditEntry",
}


def sections() -> dict[str, str]:
    parts = re.split(r"^### ", DOC.read_text(), flags=re.M)[1:]
    return {p.splitlines()[0]: p for p in parts}


def shapes(text: str) -> list[str]:
    """The section's JSON shapes: code spans that open with `{"`."""
    return [m.group(1) for m in re.finditer(r"`(\{\".*?\})`", text, re.S)]


def section_for(prefix: str) -> str:
    found = [text for head, text in sections().items() if head.startswith(prefix)]
    assert len(found) == 1, f"docs/commands.md has {len(found)} sections headed {prefix}"
    return found[0]


@pytest.mark.parametrize("prefix", list(SHAPES))
def test_the_pages_json_shapes_are_the_reply_types_key_for_key(prefix: str) -> None:
    text = section_for(prefix)
    found = shapes(text)
    assert len(found) == len(SHAPES[prefix]), (
        f"{prefix}: the page gives {len(found)} JSON shapes, this test knows "
        f"{len(SHAPES[prefix])}: {found}")
    for td, shape in zip(SHAPES[prefix], found, strict=True):
        problems = doc_problems(td, parse_shape(shape), text)
        assert not problems, f"{prefix}: {shape}\n" + "\n".join(problems)


def test_every_json_shape_on_the_page_is_checked() -> None:
    checked = {h for h in sections() if any(h.startswith(p) for p in SHAPES)}
    unchecked = {h: shapes(t) for h, t in sections().items() if h not in checked and shapes(t)}
    assert not unchecked, f"JSON shapes in sections this test does not know: {unchecked}"


def test_every_reply_type_is_spelled_out_on_the_page() -> None:
    spelled: set[Any] = set()
    for prefix, types in SHAPES.items():
        for td, shape in zip(types, shapes(section_for(prefix)), strict=True):
            spelled |= covered(td, parse_shape(shape))
    wanted: set[Any] = set()
    for td in set(replies.REPLIES.values()) - set(PRINTED_AS):
        wanted |= typeddicts(td)
    for shown in (replies.ExportShown, replies.StillShown, replies.MasksPreviewShown):
        wanted |= typeddicts(shown)
    wanted.discard(replies.RecordingsPage)  # named in the text: the command follows the pages
    missing = sorted(t.__name__ for t in wanted - spelled)
    assert not missing, f"reply types docs/commands.md never spells out: {missing}"


def test_a_shape_that_differs_from_its_type_is_caught() -> None:
    """The check itself: one key too many, one too few, and '…' each fail by name."""
    text = ""
    extra = parse_shape('{"ok", "rows", "head", "head_seq", "checkpoints", "colour"}')
    short = parse_shape('{"ok", "rows", "head", "checkpoints"}')
    open_ = parse_shape('{"ok", "rows", "head", "head_seq", "checkpoints", …}')
    assert any("'colour'" in p for p in doc_problems(replies.AuditVerifyReply, extra, text))
    assert any("'head_seq'" in p for p in doc_problems(replies.AuditVerifyReply, short, text))
    assert any("'warnings'" in p for p in doc_problems(replies.AuditVerifyReply, short, text))
    assert any("…" in p for p in doc_problems(replies.AuditVerifyReply, open_, text))
    nested = parse_shape('{"camera", "segments": [{"start", "end"}], "gaps": [...]}')
    assert isinstance(nested, Obj)
    found = doc_problems(replies.RecordingsReply, nested, '"next"')
    assert any("segments[]" in p and "'sha256'" in p for p in found), found


@pytest.mark.parametrize("op", sorted(ARGS))
def test_each_handler_takes_its_ops_args_and_returns_its_reply_type(op: str) -> None:
    hints = typing.get_type_hints(getattr(Handlers, f"op_{op}"))
    assert hints["a"] is ARGS[op], f"op_{op} takes {hints['a']}, the op's model is {ARGS[op]}"
    ret = hints["return"]
    if typing.get_origin(ret) is Reply:  # a reply with a file descriptor
        ret = typing.get_args(ret)[0]
    assert ret is replies.REPLIES[op], f"op_{op} returns {ret}, REPLIES says {replies.REPLIES[op]}"


def test_every_op_has_a_reply_type() -> None:
    assert set(replies.REPLIES) == set(ARGS)

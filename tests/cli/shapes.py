"""Reply types (nvr.control.replies) held against JSON: key for key, and value types.

`problems(T, value)` lists what a JSON value has that type T does not say (an extra key), what
it lacks (a required key) and values of the wrong type (pydantic, which reads TypedDicts).
`doc_problems(T, shape, text)` does the same for a shape as docs/commands.md writes it,
`{"site": S, "cameras": [{"id", "name"}], "paused": [ID…]}`: keys, with nested objects and
lists of objects where the page spells them out. A NotRequired key may be left out of a shape
if the section's text names it (`"key"`), as it says when the key is there.
"""

from __future__ import annotations

import re
import types
import typing
from dataclasses import dataclass, field
from typing import Any

from pydantic import TypeAdapter, ValidationError
from typing_extensions import is_typeddict

# -- the type side ----------------------------------------------------------------------------


def _strip_none(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _fields(td: Any) -> tuple[dict[str, Any], frozenset[str], frozenset[str]]:
    return typing.get_type_hints(td), td.__required_keys__, td.__optional_keys__


def _item(tp: Any) -> Any | None:
    """The item type of list[X] (None if tp is not a list)."""
    tp = _strip_none(tp)
    if typing.get_origin(tp) is list:
        return typing.get_args(tp)[0]
    return None


def typeddicts(td: Any) -> set[Any]:
    """td and every TypedDict inside it."""
    out = {td}
    for tp in typing.get_type_hints(td).values():
        inner = _strip_none(tp)
        inner = _item(inner) or inner
        if is_typeddict(inner):
            out |= typeddicts(inner)
    return out


# -- values -------------------------------------------------------------------------------------


def problems(td: Any, value: Any, where: str = "") -> list[str]:
    """What is wrong with `value` as a `td`: missing and extra keys at every level, and (at the
    top level) values pydantic will not take as the declared types."""
    out = _key_problems(td, value, where or td.__name__)
    if not where:
        try:
            TypeAdapter(td).validate_python(value, strict=False)
        except ValidationError as exc:
            out += [f"{td.__name__}: {e['loc']}: {e['msg']}" for e in exc.errors()]
    return out


def _key_problems(td: Any, value: Any, where: str) -> list[str]:
    if not isinstance(value, dict):
        return [f"{where}: not an object"]
    hints, required, optional = _fields(td)
    out = [f"{where}: extra key {k!r} (not in {td.__name__})" for k in value if k not in hints]
    out += [f"{where}: missing key {k!r} of {td.__name__}" for k in sorted(required - set(value))]
    for key, tp in hints.items():
        if key not in value or value[key] is None:
            continue
        inner = _strip_none(tp)
        item = _item(inner)
        if is_typeddict(inner):
            out += _key_problems(inner, value[key], f"{where}.{key}")
        elif item is not None and is_typeddict(item) and isinstance(value[key], list):
            for i, v in enumerate(value[key]):
                out += _key_problems(item, v, f"{where}.{key}[{i}]")
    return out


# -- docs/commands.md's shapes -------------------------------------------------------------------


@dataclass
class Obj:
    keys: dict[str, Any] = field(default_factory=dict)  # key → Obj, Seq, or None (not spelled)
    open: bool = False  # ends in "…": more keys than listed


@dataclass
class Seq:
    item: Any = None  # Obj, or None when the items are not spelled out ("[...]", "[ID…]")


_TOKEN = re.compile(r'"[^"]*"|[{}\[\],:]|…|\.\.\.|[^\s{}\[\],:"]+')


def parse_shape(text: str) -> Any:
    """A shape as the page writes it → Obj / Seq / None."""
    tokens = _TOKEN.findall(text)
    node, end = _value(tokens, 0)
    if end != len(tokens):
        raise ValueError(f"trailing text in shape: {' '.join(tokens[end:])}")
    return node


def _value(t: list[str], i: int) -> tuple[Any, int]:
    if t[i] == "{":
        return _obj(t, i + 1)
    if t[i] == "[":
        i += 1
        item = None
        if t[i] == "{":
            item, i = _obj(t, i + 1)
        depth = 1
        while depth:  # the rest of the list: "ID…", "...", nothing
            depth += {"[": 1, "]": -1}.get(t[i], 0)
            i += 1
        return Seq(item), i
    # A placeholder (S, ID, TEXT|null, T): up to the next , } or ]
    while i < len(t) and t[i] not in (",", "}", "]"):
        i += 1
    return None, i


def _obj(t: list[str], i: int) -> tuple[Obj, int]:
    obj = Obj()
    while t[i] != "}":
        if t[i] in ("…", "..."):
            obj.open = True
            i += 1
        elif t[i].startswith('"'):
            key = t[i][1:-1]
            i += 1
            value = None
            if t[i] == ":":
                value, i = _value(t, i + 1)
            while t[i] not in (",", "}"):  # a word after the key: "path" (absolute)
                i += 1
            obj.keys[key] = value
        else:
            raise ValueError(f"unexpected {t[i]!r} in shape")
        if t[i] == ",":
            i += 1
    return obj, i + 1


def doc_problems(td: Any, shape: Any, text: str, where: str = "") -> list[str]:
    """What the page's shape says differently from the type: an extra key, a missing one."""
    where = where or td.__name__
    if not isinstance(shape, Obj):
        return [f"{where}: the page gives no keys for {td.__name__}"]
    hints, required, optional = _fields(td)
    out = []
    if shape.open:
        out.append(f"{where}: the shape ends in '…'; list every key of {td.__name__}")
    out += [f"{where}: the page names {k!r}, which {td.__name__} does not have"
            for k in shape.keys if k not in hints]
    out += [f"{where}: the page leaves out {k!r} of {td.__name__}"
            for k in sorted(required - set(shape.keys))]
    out += [f"{where}: the page never names {k!r} of {td.__name__} (sometimes there)"
            for k in sorted(optional - set(shape.keys)) if f'"{k}"' not in text]
    for key, sub in shape.keys.items():
        if key not in hints or sub is None:
            continue
        inner = _strip_none(hints[key])
        item = _item(inner)
        if is_typeddict(inner):
            out += doc_problems(inner, sub, text, f"{where}.{key}")
        elif item is not None and is_typeddict(item) and isinstance(sub, Seq) and sub.item:
            out += doc_problems(item, sub.item, text, f"{where}.{key}[]")
        elif isinstance(sub, Obj) or (isinstance(sub, Seq) and sub.item):
            out.append(f"{where}.{key}: the page spells out keys, the type has none")
    return out


def covered(td: Any, shape: Any) -> set[Any]:
    """The TypedDicts whose keys the shape spells out (td and those nested in it)."""
    if not isinstance(shape, Obj):
        return set()
    out = {td}
    hints = typing.get_type_hints(td)
    for key, sub in shape.keys.items():
        if key not in hints:
            continue
        inner = _strip_none(hints[key])
        item = _item(inner)
        if is_typeddict(inner):
            out |= covered(inner, sub)
        elif item is not None and is_typeddict(item) and isinstance(sub, Seq):
            out |= covered(item, sub.item)
    return out

"""Load a camera map: YAML → secrets and paths resolved → pydantic model, with every problem
reported as `FILE:LINE: key.path: message` (all of them, not just the first).

ruamel.yaml's round-trip loader keeps the line of every mapping key and sequence item; we copy
the tree into plain dicts/lists and keep a side table `loc → line` so that a pydantic error's
`loc` (('cameras', 2, 'area')) can be turned back into the line a person has to edit.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from pydantic import BaseModel, ValidationError
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.error import MarkedYAMLError

from nvr.config.model import (
    AUDIO_CLAUSE,
    CAMERA_ID_PATTERN,
    CameraMap,
    Role,
    duplicate_problems,
)
from nvr.config.secrets import SecretError, read_password_file, substitute_env
from nvr.errors import DataError

Loc = tuple[str | int, ...]

# Paths in the map that are relative to the map's own folder when not absolute.
_PATH_KEYS: tuple[Loc, ...] = (
    ("storage", "root"),
    ("control", "socket"),
    ("live", "tls", "cert"),
    ("live", "tls", "key"),
)


@dataclass(frozen=True)
class ConfigProblem:
    file: str
    line: int  # 1-based; 0 when the problem is about the whole file (missing, unreadable)
    key_path: str
    message: str

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return (
            f"{where}: {self.key_path}: {self.message}"
            if self.key_path
            else f"{where}: {self.message}"
        )


class ConfigError(DataError):
    """Raised by load_camera_map when the camera map cannot be used; carries every problem."""

    def __init__(self, problems: list[ConfigProblem]) -> None:
        self.problems = sorted(problems, key=lambda p: p.line)
        super().__init__("\n".join(str(p) for p in self.problems))


class _Tree:
    """The plain-Python copy of the YAML document plus the line of every key and item."""

    def __init__(self, file: str, env: Mapping[str, str]) -> None:
        self.file = file
        self.env = env
        self.lines: dict[Loc, int] = {(): 1}
        self.problems: list[ConfigProblem] = []
        self.reported: set[Loc] = set()
        # Values that came from ${VAR}: never echoed, since any of them may be a secret.
        self.from_env: set[Loc] = set()

    def line_of(self, loc: Loc) -> int:
        for end in range(len(loc), -1, -1):
            if loc[:end] in self.lines:
                return self.lines[loc[:end]]
        return 1

    def add(self, loc: Loc, message: str) -> None:
        self.problems.append(ConfigProblem(self.file, self.line_of(loc), key_path(loc), message))
        self.reported.add(loc)

    def plain(self, node: Any, loc: Loc) -> Any:
        if isinstance(node, CommentedMap):
            out: dict[Any, Any] = {}
            for k in node:
                # A key merged in from an anchor (`<<: *defaults`) has no line of its own here.
                line = node.lc.data[k][0] + 1 if k in node.lc.data else self.line_of(loc)
                self.lines[(*loc, k)] = line
                out[k] = self.plain(node[k], (*loc, k))
            return out
        if isinstance(node, CommentedSeq):
            items = []
            for i, item in enumerate(node):
                self.lines[(*loc, i)] = node.lc.item(i)[0] + 1
                items.append(self.plain(item, (*loc, i)))
            return items
        if isinstance(node, str):
            if "${" in node:
                self.from_env.add(loc)
            try:
                return substitute_env(str(node), self.env)
            except SecretError as e:
                self.add(loc, str(e))
                return ""
        if isinstance(node, bool):
            return bool(node)
        if isinstance(node, int):
            return int(node)
        if isinstance(node, float):
            return float(node)
        return node


def key_path(loc: Loc) -> str:
    """`cameras[2].onvif.host` for ('cameras', 2, 'onvif', 'host')."""
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else str(part)
    return out


def load_camera_map(path: Path, *, env: Mapping[str, str] | None = None,
                    warnings: list[ConfigProblem] | None = None) -> CameraMap:
    """Read, resolve and validate a camera map. Blocking (file I/O): call it in a thread from
    async code. Raises ConfigError listing every problem found; things that are allowed but
    probably not meant (masks hiding most of a picture) are appended to `warnings`."""
    file = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError([ConfigProblem(file, 0, "", "no such file")]) from None
    except IsADirectoryError:
        raise ConfigError([ConfigProblem(file, 0, "", "is a folder, not a camera map")]) from None
    except (OSError, UnicodeDecodeError) as e:
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e)
        raise ConfigError([ConfigProblem(file, 0, "", f"cannot be read: {reason}")]) from None
    base_dir = Path(os.path.abspath(path)).parent
    return parse_camera_map(
        text, file=file, base_dir=base_dir, env=os.environ if env is None else env,
        warnings=warnings,
    )


def parse_camera_map(text: str, *, file: str, base_dir: Path, env: Mapping[str, str],
                     warnings: list[ConfigProblem] | None = None) -> CameraMap:
    tree = _Tree(file, env)
    data = tree.plain(_parse_yaml(text, file), ())
    if not isinstance(data, dict):
        raise ConfigError(
            [
                ConfigProblem(
                    file, 1, "", "a camera map is a mapping with site:, storage:, cameras: …"
                )
            ]
        )
    _resolve_paths(data, base_dir)
    _resolve_passwords(tree, data, base_dir)
    for list_name, i, message in duplicate_problems(
        _dicts(data.get("cameras")), _dicts(data.get("people"))
    ):
        tree.add((list_name, i, "id" if list_name == "cameras" else "user"), message)
    try:
        cmap = CameraMap.model_validate(data, context={"duplicates_checked": True})
    except ValidationError as e:
        for err in e.errors(include_url=False):
            _add_validation_error(tree, data, err)
        raise ConfigError(tree.problems) from None
    if tree.problems:
        raise ConfigError(tree.problems)
    if warnings is not None:
        warnings.extend(_mask_warnings(tree, cmap))
    return cmap


# Masks hiding more than this much of a picture are probably a mistake (or a camera that should
# be moved rather than masked): check-config says so, without refusing the map.
MASK_WARN_FRACTION = 0.5


def _mask_warnings(tree: _Tree, cmap: CameraMap) -> list[ConfigProblem]:
    from nvr.media.masks import coverage  # numpy: only when a map is checked, not for every import

    out: list[ConfigProblem] = []
    for i, cam in enumerate(cmap.cameras):
        if cam.privacy_masks:
            covered = coverage(cam.privacy_masks)
            if covered > MASK_WARN_FRACTION:
                loc: Loc = ("cameras", i, "privacy_masks")
                out.append(ConfigProblem(
                    tree.file, tree.line_of(loc), key_path(loc),
                    f"warning: camera {cam.id!r}: the masks cover {covered:.0%} of the picture; "
                    "check the coordinates (x, y are fractions 0-1), or move the camera"))
    return out


def _parse_yaml(text: str, file: str) -> Any:
    try:
        return YAML(typ="rt").load(text)
    except MarkedYAMLError as e:
        mark = e.problem_mark or e.context_mark
        line = mark.line + 1 if mark is not None else 1
        problem = e.problem or "not valid YAML"
        # ruamel's duplicate-key message quotes both values, which may be secrets.
        dup = re.match(r'found duplicate key "(.*?)" with value', problem)
        if dup:
            problem = f"key {dup.group(1)!r} appears twice in the same mapping"
        where = _yaml_context(text, line, problem)
        raise ConfigError([ConfigProblem(file, line, "", f"YAML syntax: {problem}{where}")]
                          ) from None


# Parser messages that mean, nearly always, a line indented differently from its siblings.
_INDENT_TROUBLE = ("mapping values are not allowed", "expected <block end>",
                   "could not find expected ':'", "did not find expected key",
                   "did not find expected '-'")


def _yaml_context(text: str, line: int, problem: str) -> str:
    """The line the parser stopped at, as written, and what is likely wrong with it: the
    parser's words alone do not say that a key is one space off."""
    lines = text.splitlines()
    if not 1 <= line <= len(lines):
        return ""
    here = lines[line - 1]
    if "appears twice" in problem:
        return ""  # the problem names the key already
    # The key only, never its value: a value may be a password, and this line may be logged.
    shown = here.strip().split(":", 1)[0] + ":" if ":" in here else here.strip()
    shown = shown if len(shown) <= 60 else shown[:57] + "..."
    context = f", at `{shown}`" if shown else ""
    if "\t" in here[: len(here) - len(here.lstrip())] or "'\\t'" in problem:
        return context + " (a tab: YAML indents with spaces only)"
    if not any(p in problem for p in _INDENT_TROUBLE):
        return context
    above = next((x for x in reversed(lines[: line - 1]) if x.strip()
                  and not x.lstrip().startswith("#")), None)
    indent = len(here) - len(here.lstrip(" "))
    if above is None:
        return context + " (check this line's indentation)"
    above_indent = len(above) - len(above.lstrip(" "))
    return (f"{context} (indented {indent} spaces, the line above {above_indent}: check the "
            "indentation; keys of one mapping start in the same column)")


def _dicts(value: Any) -> list[dict[str, object]]:
    if not isinstance(value, list):
        return []
    # Keep positions: a non-mapping item becomes {} so indexes still match the YAML.
    return [item if isinstance(item, dict) else {} for item in value]


def _get(data: Any, loc: Loc) -> Any:
    for part in loc:
        if isinstance(part, int) and isinstance(data, list) and 0 <= part < len(data):
            data = data[part]
        elif isinstance(part, str) and isinstance(data, dict) and part in data:
            data = data[part]
        else:
            return None
    return data


def _resolve_paths(data: dict[str, Any], base_dir: Path) -> None:
    for loc in _PATH_KEYS:
        parent = _get(data, loc[:-1])
        value = _get(data, loc)
        if isinstance(parent, dict) and isinstance(value, str) and value:
            parent[loc[-1]] = os.path.normpath(base_dir / os.path.expanduser(value))


def _resolve_passwords(tree: _Tree, data: dict[str, Any], base_dir: Path) -> None:
    for i, cam in enumerate(_dicts(data.get("cameras"))):
        onvif = cam.get("onvif")
        if not isinstance(onvif, dict) or not isinstance(onvif.get("password_file"), str):
            continue
        loc: Loc = ("cameras", i, "onvif", "password_file")
        if onvif.get("password") is not None:
            tree.add(loc, "give password_file: or password:, not both")
            continue
        try:
            path, password = read_password_file(
                onvif["password_file"], base_dir=base_dir, env=tree.env
            )
        except SecretError as e:
            tree.add(loc, str(e))
            continue
        onvif["password_file"] = str(path)
        onvif["password"] = password


def _add_validation_error(tree: _Tree, data: dict[str, Any], err: Any) -> None:
    loc = _real_loc(tuple(err["loc"]), data)
    if any(loc[:n] in tree.reported for n in range(len(loc) + 1)):
        return  # already explained (an unset ${VAR}, a missing password file)
    # A model-level check is best shown on the key it is about.
    if loc == ("live",) and isinstance(data.get("live"), dict) and "listen" in data["live"]:
        loc = ("live", "listen")
    tree.problems.append(
        ConfigProblem(
            tree.file,
            tree.line_of(loc),
            key_path(loc),
            _explain(loc, err, data, show_value=loc not in tree.from_env),
        )
    )


def _real_loc(loc: Loc, data: Any) -> Loc:
    """Cut pydantic's union/type tags (('x', 'float')) off: keep keys while there is a
    container to look them up in."""
    out: list[str | int] = []
    node = data
    for part in loc:
        if not isinstance(node, dict | list):
            break
        out.append(part)
        node = _get(node, (part,))
    return tuple(out)


_SECRET_KEYS = frozenset({"password", "rtsp", "live_rtsp", "username"})


def _explain(loc: Loc, err: Any, data: Any, *, show_value: bool) -> str:
    kind, leaf = err["type"], loc[-1] if loc else ""
    value = repr(err["input"]) if show_value else "(the value from ${...})"
    if kind == "extra_forbidden":
        msg = _unknown_key(loc)
    elif kind == "missing":
        msg = f"required key {leaf!r} is missing"
    elif kind == "string_pattern_mismatch" and leaf == "id":
        msg = (
            f"camera id {value} is not allowed: use 1-40 characters from a-z, 0-9 and "
            f"'-' (pattern {CAMERA_ID_PATTERN}); the id names a folder on disk"
        )
    elif kind == "string_pattern_mismatch" and leaf == "user":
        msg = f"{value} is not a unix account name (pattern {err['ctx']['pattern']})"
    elif kind == "enum" and leaf == "role":
        roles = ", ".join(r.value for r in Role if r is not Role.public)
        msg = f"unknown role {value}; use one of: {roles}"
    else:
        msg = str(err["msg"]).removeprefix("Value error, ")
        msg = re.sub(r"a valid dictionary or instance of \w+", "a mapping (key: value)", msg)
        if (
            show_value
            and kind != "value_error"
            and leaf not in _SECRET_KEYS
            and isinstance(err["input"], str | int | float)
        ):
            msg += f" (got {err['input']!r})"
    cam_id = _get(data, loc[:2] + ("id",)) if loc[:1] == ("cameras",) and len(loc) >= 2 else None
    if isinstance(cam_id, str) and loc[2:] != ("id",):
        msg = f"camera {cam_id!r}: {msg}"
    return msg


def _unknown_key(loc: Loc) -> str:
    key = loc[-1]
    msg = f"unknown key {key!r}"
    if "audio" in str(key).lower():
        return f"{msg}: audio can never be recorded, the policy says {AUDIO_CLAUSE}"
    known = _known_keys(loc[:-1])
    near = difflib.get_close_matches(str(key), known, n=1)
    if near:
        return f"{msg} (did you mean {near[0]!r}?)"
    return f"{msg}; allowed here: {', '.join(known)}" if known else msg


def _known_keys(loc: Loc) -> list[str]:
    model: type[BaseModel] | None = CameraMap
    for part in loc:
        if isinstance(part, int) or model is None:
            continue
        field = model.model_fields.get(part)
        model = _inner_model(field.annotation) if field is not None else None
    return list(model.model_fields) if model is not None else []


def _inner_model(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None

"""Every example `nvr help` shows is accepted by the command it shows (issue 28): pasted as
printed, it passes the parser and every check the client makes before it calls the daemon
(the daemon's argument model, the time format, --out's suffix, --key's forms). Also the
`e.g. --option VALUE` of each option, put into its command's first example.
"""

from __future__ import annotations

import re
import shlex

import pytest

from nvr.cli import commands
from nvr.cli.helptext import COMMANDS, walk
from nvr.cli.main import build_parser
from nvr.errors import NvrError
from nvr.timeutil import parse_time

TIME_FIELDS = ("start", "end", "at", "until", "since", "expires")
FINGERPRINT = re.compile(r"^[0-9a-f]{64}$")


def accepted(words: list[str]) -> None:
    """Raise (with the reason) unless `nvr WORDS` gets as far as asking the daemon."""
    assert words[0] == "nvr", words
    ns = build_parser().parse_args(words[1:])
    for field in TIME_FIELDS:
        value = getattr(ns, field, None)
        if isinstance(value, str):
            parse_time(value, end_of_day=field in ("until", "expires"))
    if ns.handler == "client":
        commands.wire_args(ns.op, ns)
    elif ns.handler == "export" and ns.verify is not None:
        assert ns.verify == "verify" and ns.file, words
        if ns.key is not None:
            assert FINGERPRINT.match(ns.key) or ns.key.endswith(".pem"), ns.key
    elif ns.handler in ("export", "still"):
        commands._need_suffix(ns.out, (".mp4",) if ns.handler == "export" else (".jpg",), "")
        ns.out_name = ns.out
        commands.wire_args(ns.handler, ns)
    elif ns.handler == "masks_preview":  # a download, like a still: PNG
        commands._need_suffix(ns.out, (".png",), "")
        commands.wire_args("masks_preview", ns)
    elif ns.handler == "check_config":
        assert ns.file
    elif ns.handler != "help":
        commands._need_config(ns)


EXAMPLES = [(path, e) for path, entry in COMMANDS.items() for e in entry.get("examples", [])]


@pytest.mark.parametrize(("path", "example"), EXAMPLES, ids=[e for _p, e in EXAMPLES])
def test_every_help_example_is_accepted(path: str, example: str) -> None:
    words = shlex.split(example)
    assert " ".join(words[1:]).startswith(path), f"`nvr help {path}` shows {example!r}"
    try:
        accepted(words)
    except (NvrError, ValueError, AssertionError) as exc:
        pytest.fail(f"`nvr help {path}` shows `{example}`, which is refused: {exc}")


def _fragments() -> list[tuple[str, str, str]]:
    """(command path, option, its `e.g. --option VALUE` words) for options with an example."""
    found = []
    for path, p in walk(build_parser()):
        if not COMMANDS.get(path, {}).get("examples"):
            continue
        for action in p._actions:
            if not action.option_strings or not action.help:
                continue
            opt = max(action.option_strings, key=len)
            m = re.search(r"e\.g\. (" + re.escape(opt) + r" (?:'[^']*'|[^;()]|\([^)]*\))*)",
                          action.help)
            if m and opt not in ("--socket", "--config"):
                text = re.split(r" or | \(", m.group(1))[0].strip()
                found.append((path, opt, text))
    return found


FRAGMENTS = _fragments()


@pytest.mark.parametrize(("path", "opt", "fragment"), FRAGMENTS,
                         ids=[f"{p}: {f}" for p, _o, f in FRAGMENTS])  # fmt: skip
def test_every_option_example_is_accepted(path: str, opt: str, fragment: str) -> None:
    base = shlex.split(COMMANDS[path]["examples"][0])
    words: list[str] = []
    skipping = False
    for w in base:  # the example without its own `opt VALUE…`
        if w.startswith("--"):
            skipping = w == opt
        if not skipping:
            words.append(w)
    if path == "export" and opt == "--key":
        words = ["nvr", "export", "verify", "incident-114.mp4"]
    try:
        accepted([*words, *shlex.split(fragment)])
    except (NvrError, ValueError, AssertionError) as exc:
        pytest.fail(f"`nvr help {path}` gives `{fragment}` as an example of {opt}: refused: {exc}")


def test_the_fragments_are_found() -> None:
    """The finder above finds the examples it is meant to check (it can fail)."""
    assert ("export", "--key", "--key recorder-key.pem") in FRAGMENTS
    assert any(opt == "--camera" for _p, opt, _f in FRAGMENTS)


def test_a_refused_example_is_caught() -> None:
    with pytest.raises(NvrError):
        accepted(shlex.split("nvr live --camera lobby --minutes 10"))  # no --reason
    with pytest.raises(AssertionError):
        accepted(shlex.split("nvr export verify clip.mp4 --key SHA256:3f9a"))

"""Commands suggested inside an error, made to work as printed.

The daemon (and the client) write suggestions such as "see `nvr recordings --camera lobby`".
A person who reached the daemon with `--config config/demo.yaml` or `--socket PATH` and pastes
that suggestion as printed would reach no daemon (exit 69). So before an error is shown, every
`nvr …` in backquotes gets the --config/--socket the person typed, unless it has its own.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Sequence

_SUGGESTION = re.compile(r"`(nvr(?: [^`]*)?)`")
# These find no daemon and read no camera map given with --config: nothing to carry.
_NO_DAEMON = ("help", "check-config", "--version", "--help")


def given(argv: Sequence[str]) -> list[str]:
    """The --config FILE and --socket PATH in `argv`, as typed (either spelling)."""
    found: list[str] = []
    args = list(argv)
    for i, word in enumerate(args):
        for opt in ("--config", "--socket"):
            if word == opt and i + 1 < len(args):
                found += [opt, args[i + 1]]
            elif word.startswith(opt + "="):
                found += [opt, word.split("=", 1)[1]]
    return found


def carry(message: str, argv: Sequence[str]) -> str:
    """`message` with the person's --config/--socket added to each suggested `nvr` command."""
    return carry_flags(message, given(argv))


def carry_flags(message: str, flags: Sequence[str]) -> str:
    """`message` with `flags` ([--config, FILE, --socket, PATH]) added to each suggested
    `nvr` command that does not have them."""
    if not flags:
        return message

    def add(m: re.Match[str]) -> str:
        command = m.group(1)
        words = command.split()
        if len(words) < 2 or words[1] in _NO_DAEMON:
            return m.group(0)
        extra = [w for i in range(0, len(flags), 2)
                 if flags[i] not in words for w in (flags[i], shlex.quote(flags[i + 1]))]  # fmt: skip
        return f"`{' '.join([command, *extra])}`" if extra else m.group(0)

    return _SUGGESTION.sub(add, message)

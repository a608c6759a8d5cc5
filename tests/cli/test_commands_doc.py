"""docs/commands.md against the command-line parser: every command and option is documented,
and nothing documented is missing from the parser."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

from nvr.cli.main import build_parser

PAGE = Path(__file__).resolve().parents[2] / "docs" / "commands.md"
COMMON = {"-h", "--help", "--socket", "--config", "--json", "--utc"}


def leaves(parser: argparse.ArgumentParser, prefix: str = "nvr") -> dict[str, argparse.ArgumentParser]:
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return {prefix: parser}
    out: dict[str, argparse.ArgumentParser] = {}
    for name, sub in subs[0].choices.items():
        out.update(leaves(sub, f"{prefix} {name}"))
    return out


def sections() -> dict[str, str]:
    """`### \\`nvr a b\\`, \\`nvr a c\\`` headings → the text under them."""
    text = PAGE.read_text()
    out: dict[str, str] = {}
    for block in re.split(r"^### ", text, flags=re.M)[1:]:
        heading, _, body = block.partition("\n")
        for command in re.findall(r"`(nvr[^`]*)`", heading):
            out[command] = body
    return out


def undocumented(top: argparse.ArgumentParser) -> list[str]:
    docs = sections()
    problems = []
    for command, parser in leaves(top).items():
        if command not in docs:
            problems.append(f"docs/commands.md has no section for `{command}`")
            continue
        body = "\n".join(b for c, b in docs.items() if c == command or c.startswith(command + " "))
        for action in parser._actions:
            for opt in action.option_strings:
                if opt not in COMMON and opt not in body:
                    problems.append(f"`{command}`: option {opt} is not in docs/commands.md")
            if not action.option_strings and action.metavar and action.metavar != "verify" \
                    and str(action.metavar) not in body:
                problems.append(f"`{command}`: {action.metavar} is not in docs/commands.md")
    return problems


def test_every_command_and_option_is_documented() -> None:
    assert undocumented(build_parser()) == []


def test_nothing_documented_is_missing_from_the_parser() -> None:
    real = set(leaves(build_parser())) | {"nvr export verify"}
    for command in sections():
        assert command in real, f"docs/commands.md documents `{command}`, which does not exist"


def test_the_check_can_fail() -> None:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    sub.choices["status"].add_argument("--undocumented-flag")
    sub.add_parser("frobnicate")
    assert undocumented(parser) == [
        "`nvr status`: option --undocumented-flag is not in docs/commands.md",
        "docs/commands.md has no section for `nvr frobnicate`"]

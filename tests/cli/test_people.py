"""`nvr` read by a person (issue "The command line a librarian can read"): local times with the
zone, tables that fit an 80-column terminal, TSV when piped, help that teaches, errors in our
words, a man page that renders and a completion that completes.

The daemon is the toy one (tests/cli/toy_daemon.py, the real control socket); `nvr` runs as a
real process, on a real pseudo-terminal where a terminal matters.
"""

from __future__ import annotations

import fcntl
import json
import os
import pty
import re
import shutil
import struct
import subprocess
import termios
from collections.abc import Iterator
from pathlib import Path

import pytest

from nvr.cli import fmt
from nvr.cli.helptext import walk
from nvr.cli.main import build_parser, main
from tests.cli.test_cli import NVR, toy  # noqa: F401 - the toy daemon fixture

ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
NY = {"TZ": "America/New_York"}


@pytest.fixture(scope="module")
def sock(toy: tuple[Path, Path]) -> Iterator[Path]:  # noqa: F811
    yield toy[0]


def piped(sock: Path, *argv: str, env: dict[str, str] | None = None) -> str:
    proc = subprocess.run([str(NVR), *argv, "--socket", str(sock)], capture_output=True,
                          text=True, timeout=30, env={**os.environ, **(env or {})})  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


def on_terminal(sock: Path, *argv: str, columns: int = 80) -> list[str]:
    """`nvr ARGV` with stdout on a pseudo-terminal `columns` wide, as in a terminal window;
    the lines it printed, colour codes removed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 50, columns, 0, 0))
    env = {**os.environ, **NY, "COLUMNS": str(columns), "TERM": "xterm-256color"}
    env.pop("NO_COLOR", None)
    proc = subprocess.Popen([str(NVR), *argv, "--socket", str(sock)], stdout=slave,
                            stderr=subprocess.PIPE, env=env)  # fmt: skip
    os.close(slave)
    chunks = []
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # EIO: the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(master)
    code = proc.wait(30)
    assert proc.stderr is not None
    err = proc.stderr.read()
    proc.stderr.close()
    assert code == 0, err
    text = b"".join(chunks).decode()
    return [ANSI.sub("", line).rstrip() for line in text.replace("\r\n", "\n").split("\n")]


# -- times ---------------------------------------------------------------------------------


def test_status_and_recordings_show_local_times_with_the_zone(sock: Path) -> None:
    status = piped(sock, "status", env=NY)
    # "Today" is the daemon's day (its reply's `at`, 2026-11-29 here), never this machine's:
    assert "2026-11-29 07:20:19 EST" not in status  # today's time: time of day only…
    assert "07:20:19 EST" in status  # …but the time of day and the zone always show
    assert "2026-11-28 18:59:58 EST" in status  # another day's: with its date
    assert "2026-10-30 08:00:00 EDT" in status  # the oldest footage, in summer time
    rec = piped(sock, "recordings", "--camera", "front", env=NY)
    assert "2026-11-29 07:20:15 EST" in rec and ".034035" not in rec
    assert "Z" not in rec.replace("EST", "")


def test_utc_flag_and_json_stay_utc(sock: Path) -> None:
    rec = piped(sock, "recordings", "--camera", "front", "--utc", env=NY)
    assert "2026-11-29 12:20:15 UTC" in rec and "EST" not in rec
    data = json.loads(piped(sock, "recordings", "--camera", "front", "--json", env=NY))
    assert data["segments"][0]["start"] == "2026-11-29T12:20:15.034035Z"
    assert data["segments"][0]["path"].startswith("/var/lib/nvr/segments/front/")


def test_sizes_durations_and_plurals_for_people(sock: Path) -> None:
    status = piped(sock, "status", env=NY)
    # 2 Mbit/s is 21.6 GB a day; (252 GB free - 25 GB reserve) / 21.6 GB = 10.5 days.
    assert "252 GB free of 500 GB (50%), 11 days left at today's rate" in status
    assert "2.0 Mbit/s" in status and "30 days" in status
    assert "270553174016" not in status and "252000000000" not in status
    rec = piped(sock, "recordings", "--camera", "front", env=NY)
    lines = rec.splitlines()
    assert lines[0].split("\t") == ["start", "end", "length", "frames", "size", "codec"]
    assert lines[1].split("\t") == ["2026-11-29 07:20:15 EST", "07:20:17 EST", "2 s", "30",
                                    "512 kB", "h264"]  # fmt: skip
    assert "36 s" in rec  # the gap's length
    on_tty = "\n".join(on_terminal(sock, "recordings", "--camera", "front"))
    assert "front: 3 segments" in on_tty and "front: 1 gap\n" in on_tty + "\n"
    assert "1 gaps" not in on_tty


@pytest.mark.parametrize(("n", "text"), [(0, "0 gaps"), (1, "1 gap"), (2, "2 gaps")])
def test_plural(n: int, text: str) -> None:
    assert fmt.plural(n, "gap") == text


@pytest.mark.parametrize(("secs", "text"), [(36, "36 s"), (60, "1 min"), (252, "4 min 12 s"),
                                            (7500, "2 h 5 min"), (86400 * 19 + 3600 * 3,
                                                                  "19 days 3 h")])  # fmt: skip
def test_duration(secs: float, text: str) -> None:
    assert fmt.duration(secs) == text


# -- tables --------------------------------------------------------------------------------


@pytest.mark.parametrize("argv", [("status",), ("status", "--paths"),
                                  ("recordings", "--camera", "front"),
                                  ("recordings", "--camera", "front", "--paths"),
                                  ("audit", "list"), ("hold", "list"), ("retention", "plan"),
                                  ("retention", "plan", "--paths")])  # fmt: skip
def test_every_table_fits_80_columns(sock: Path, argv: tuple[str, ...]) -> None:
    lines = on_terminal(sock, *argv)
    assert any(line.strip() for line in lines)
    too_wide = [line for line in lines if len(line) > 80]
    assert not too_wide, "\n".join(too_wide)


@pytest.mark.parametrize("columns", [80, 64, 100])
def test_no_word_is_cut_at_80_columns(sock: Path, columns: int) -> None:
    """Issue 28: the status table fits by leaving columns out (and saying which), or by
    breaking a camera id after a hyphen, never by cutting a word: every word on the terminal
    is a word (or a hyphen-piece of one) of the same cells piped, every time shown whole."""
    lines = on_terminal(sock, "status", columns=columns)
    piped_out = piped(sock, "status", env=NY).splitlines()
    header, *rows = [line.split("\t") for line in piped_out[: piped_out.index("")]]
    cells = [c for row in [header, *rows] for c in row]
    whole = {w for c in cells for w in c.split()}
    pieces = whole | {p for w in whole for p in re.split(r"(?<=[A-Za-z]-)", w) if p}
    end = next(i for i, line in enumerate(lines) if not line.strip() and i > 1)
    note = next((i for i, line in enumerate(lines) if line.startswith("(left out")), end)
    table, footnote = lines[1:note], " ".join(lines[note:end])
    assert all(len(line) <= columns for line in lines), "\n".join(lines)
    for line in table:
        if set(line.strip()) <= {"─"}:
            continue
        cut = [w for w in line.split() if w not in pieces]
        assert not cut, f"cut at {columns} columns: {cut}\n" + "\n".join(lines)
    text = "\n".join(table)
    for i, name in enumerate(header):
        if name in ("last segment",):  # times: whole, with their zone, on one line
            for row in rows:
                assert row[i] in text, (row[i], text)
    left = [w for w in header[:8] if w not in " ".join(table[:1])]
    if left:
        assert footnote.startswith(f"(left out at {columns} columns: "), footnote
        assert all(w in footnote for w in left), (left, footnote)
    else:
        assert not footnote
    assert "senior-center-lounge" in text or "senior-\ncenter-" in "\n".join(
        line.split()[0] for line in table if line.split())


@pytest.mark.parametrize("argv", [("recordings", "--camera", "senior-center-lounge", "--paths"),
                                  ("retention", "plan", "--paths"), ("status",)])  # fmt: skip
def test_times_and_numbers_are_never_broken(sock: Path, argv: tuple[str, ...]) -> None:
    """Every time, size and length the piped output has is on one line of the 80-column
    terminal too (a long path beside it breaks after a slash instead)."""
    shown = on_terminal(sock, *argv)
    cells = {c for line in piped(sock, *argv, env=NY).splitlines() for c in line.split("\t")}
    whole = [c for c in cells if re.fullmatch(r"(\d{4}-\d\d-\d\d )?\d\d:\d\d:\d\d [A-Z]{3}|"
                                              r"\d+(\.\d)? (s|kB|MB|GB)", c)]
    assert whole, cells
    flat = "".join("".join(shown).split())
    for cell in whole:
        if "".join(cell.split()) in flat:  # shown (a column left out on the terminal is not)
            assert any(cell in line for line in shown), (cell, "\n".join(shown))


def test_paths_only_with_paths_or_json(sock: Path) -> None:
    plain = piped(sock, "recordings", "--camera", "front")
    assert "/var/lib/nvr" not in plain
    with_paths = piped(sock, "recordings", "--camera", "front", "--paths")
    header, first = with_paths.splitlines()[:2]
    assert header.split("\t")[-1] == "path"
    assert first.split("\t")[-1] == "/var/lib/nvr/segments/front/20261129T122015.034035Z.mp4"
    on_tty = "".join(line.strip() for line in on_terminal(sock, "recordings", "--camera",
                                                          "front", "--paths"))  # fmt: skip
    assert "/var/lib/nvr/segments" in on_tty
    assert "/var/lib/nvr" not in piped(sock, "retention", "plan")


def test_piped_output_is_tab_separated_without_colour(sock: Path) -> None:
    out = piped(sock, "status")
    assert "\x1b[" not in out
    header = out.splitlines()[0]
    assert header.split("\t")[:3] == ["camera", "state", "fps"]
    rows = [line.split("\t") for line in out.splitlines()[1:3]]
    assert [r[0] for r in rows] == ["front", "senior-lounge"]
    assert all(len(r) == len(header.split("\t")) for r in rows)


def test_colour_only_on_a_terminal(sock: Path) -> None:
    master, slave = pty.openpty()
    proc = subprocess.Popen([str(NVR), "status", "--socket", str(sock)], stdout=slave,
                            env={**os.environ, "TERM": "xterm-256color"})  # fmt: skip
    os.close(slave)
    data = b""
    while True:
        try:
            chunk = os.read(master, 65536)
        except OSError:
            break
        if not chunk:
            break
        data += chunk
    os.close(master)
    assert proc.wait(30) == 0
    assert b"\x1b[" in data  # the bold header


def test_user_typed_text_is_shown_as_typed(sock: Path) -> None:
    """A reason with [red]…[/red] in it is text, not markup, on a terminal too."""
    on_tty = "".join(line.strip() for line in on_terminal(sock, "audit", "list", columns=200))
    assert "[red]broken window[/red]" in on_tty
    holds = on_terminal(sock, "hold", "list")
    assert "incident [b]114[/b]" in " ".join(holds)
    assert holds[1] == "H-a8e8d58f  front, senior-lounge"
    assert holds[2] == "    2026-11-29 00:00:00 EST – 2026-11-30 00:00:00 EST"


# -- help ----------------------------------------------------------------------------------


def test_version_and_help_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert re.fullmatch(r"nvr \d+\.\d+\.\d+\n", capsys.readouterr().out)
    assert main(["export", "--help"]) == 0
    direct = capsys.readouterr().out
    assert main(["help", "export"]) == 0
    assert capsys.readouterr().out == direct
    assert main(["help", "hold", "create"]) == 0
    assert "--incident" in capsys.readouterr().out
    assert main(["help", "nosuch"]) == 64
    assert "no command `nvr nosuch`" in capsys.readouterr().err


def test_every_option_is_described_with_an_example() -> None:
    flags = {"--help", "--json", "--utc", "--paths", "--repair", "--version"}
    for path, p in walk(build_parser()):
        for action in p._actions:
            name = max(action.option_strings, key=len) if action.option_strings else action.dest
            if action.dest == "command" or action.dest == "action":
                continue
            assert action.help, f"nvr {path}: {name} has no description"
            if name not in flags and action.nargs != 0:
                assert "e.g." in action.help, f"nvr {path}: {name} has no example"


def test_every_command_that_takes_a_time_shows_the_format() -> None:
    for path, p in walk(build_parser()):
        takes_time = any(a.metavar in ("T", "DATE") for a in p._actions)
        text = p.format_help()
        if takes_time:
            assert "YYYY-MM-DDTHH:MM" in text, f"nvr {path} --help lacks the time format"
        if path:
            assert "Examples:" in text, f"nvr {path} --help has no example"
    top = build_parser().format_help()
    assert "retention    retention" not in top


def test_export_help_shows_the_time_format_and_an_example() -> None:
    proc = subprocess.run([str(NVR), "export", "--help"], capture_output=True, text=True,
                          env={**os.environ, "COLUMNS": "80"})  # fmt: skip
    assert proc.returncode == 0
    assert "2026-11-29T14:05" in proc.stdout and "nvr export --camera lobby" in proc.stdout
    too_wide = [line for line in proc.stdout.splitlines() if len(line) > 80]
    assert not too_wide, too_wide


# -- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(("argv", "says"), [
    (["hold", "create", "--camera", "lobby", "--start", "2026-11-29T14:00", "--end",
      "2026-11-29T15:00", "--reason", " "], "--reason is empty"),
    (["hold", "create", "--camera", "lob by", "--start", "2026-11-29T14:00", "--end",
      "2026-11-29T15:00", "--reason", "x"], "is not a camera id"),
    (["live", "--camera", "lobby", "--reason", "r", "--minutes", "0"],
     "--minutes must be between 1 and 1440"),
    (["export", "--camera", "lobby", "--start", "2026-11-29T14:00", "--end", "2026-11-29T14:10",
      "--reason", "r", "--out", "clip.avi"], "must end in .mp4"),
    (["still", "--camera", "lobby", "--at", "2026-11-29T14:00", "--until", "2026-12-31",
      "--reason", "r", "--out", "notice.png"], "must end in .jpg"),
])  # fmt: skip
def test_errors_in_our_words(argv: list[str], says: str, tmp_path: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main([*argv, "--socket", str(tmp_path / "none.sock")]) == 64
    err = capsys.readouterr().err
    assert err.startswith("nvr: ") and err.count("\n") == 1 and says in err, err
    assert "String should" not in err and "Input should" not in err
    assert not list(tmp_path.iterdir()), "a usage error created a file"


# -- man page and completion ---------------------------------------------------------------


def test_man_page_renders_and_completion_completes(tmp_path: Path) -> None:
    from nvr.cli.docs import write

    man, comp = write(tmp_path / "share")
    if shutil.which("man") is None:
        pytest.skip("no man(1) here")
    proc = subprocess.run(["man", "-l", str(man)], capture_output=True, text=True,
                          env={**os.environ, "MANWIDTH": "80", "MANPAGER": "cat",
                               "PAGER": "cat"}, timeout=30)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "nvr export verify" not in proc.stderr
    text = re.sub(r".\x08", "", proc.stdout)
    for words in ("nvr hold create", "--reason", "2026-11-29T14:05", "NVR_SOCKET"):
        assert words in text, words
    script = f"""source {comp}
COMP_WORDS=(nvr ex); COMP_CWORD=1; _nvr; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(nvr hold cr); COMP_CWORD=2; _nvr; echo "${{COMPREPLY[@]}}"
COMP_WORDS=(nvr --json hold create --camera lobby --inc); COMP_CWORD=6; _nvr; echo "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()  # fmt: skip
    assert out == ["export", "create", "--incident"], out


def test_camera_completes_camera_ids_from_the_daemon(sock: Path, tmp_path: Path) -> None:
    """Issue 28: after --camera, Tab offers the camera ids (as `nvr status` lists them,
    through the --socket typed on the line), not option names."""
    from nvr.cli.docs import write

    _man, comp = write(tmp_path / "share")
    script = f"""source {comp}
COMP_WORDS=({NVR} live --socket {sock} --camera ''); COMP_CWORD=5; _nvr; echo "${{COMPREPLY[@]}}"
COMP_WORDS=({NVR} hold create --socket {sock} --camera sen); COMP_CWORD=6; _nvr; echo "${{COMPREPLY[@]}}"
"""
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True,
                         timeout=30).stdout.splitlines()  # fmt: skip
    assert out == ["front senior-lounge senior-center-lounge",
                   "senior-lounge senior-center-lounge"], out

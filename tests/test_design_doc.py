"""docs/design.md against the tree, as tests/policy/test_policy_doc.py holds docs/policy.md
against the rules: its module table has one row for every package and top-level module of nvr
(naming each module in it) and none for anything else; every repository path and every `nvr.`
name the document gives exists; and every section the tree quotes by title is a heading."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "design.md"
PACKAGE = ROOT / "nvr"

# A path into the repository, wherever it stands in the text (in backticks or not); not one
# inside another path (/run/nvr/…) or a file name (systemd/nvr.service is a path, nvr.service
# alone is not checked).
PATH = re.compile(r"(?<![\w./<>-])((?:nvr|tests|bench|tools|docs|systemd|config)/[\w./-]*[\w/])")
# A dotted name under nvr: a module, or a module and the attributes after it.
NAME = re.compile(r"(?<![\w./-])(nvr(?:\.\w+)+)")
ROW = re.compile(r"^\| `(nvr/[\w./]+)` \|(.*)$", re.M)


def module_table(text: str) -> dict[str, str]:
    """The first cell of each row of the "Modules" section → the rest of the row."""
    section = text.split("\n## Modules\n", 1)[1].split("\n## ", 1)[0]
    return {m.group(1): m.group(2) for m in ROW.finditer(section)}


def tree() -> dict[str, list[str]]:
    """Each package (`nvr/x/`) and top-level module (`nvr/x.py`) → the modules and packages
    directly in it."""
    out: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.iterdir()):
        if path.is_dir() and (path / "__init__.py").exists():
            out[f"nvr/{path.name}/"] = sorted(
                p.stem if p.suffix == ".py" else p.name for p in path.iterdir()
                if (p.suffix == ".py" and p.name != "__init__.py")
                or (p.is_dir() and (p / "__init__.py").exists()))
        elif path.suffix == ".py" and path.name != "__init__.py":
            out[f"nvr/{path.name}"] = []
    return out


def table_problems(text: str) -> list[str]:
    rows, modules = module_table(text), tree()
    problems = [f"no row for {m} in the Modules table" for m in modules if m not in rows]
    problems += [f"the Modules table's row {r} names nothing in nvr/" for r in rows
                 if r not in modules]
    for row, parts in modules.items():
        words = set(re.findall(r"\w+", rows.get(row, "")))
        problems += [f"the row {row} does not name its module {p}" for p in parts
                     if row in rows and p not in words]
    return problems


def _exists(path: str) -> bool:
    if (ROOT / path).exists():
        return True
    # `nvr/control/ports.RecorderPort`: a module's file and a name in it.
    head, dot, rest = path.partition(".")
    while dot:
        if (ROOT / f"{head}.py").is_file() and head.startswith("nvr/"):
            return _resolves(head.replace("/", ".") + "." + rest)
        more, dot, rest = rest.partition(".")
        head = f"{head}.{more}"
    return False


def path_problems(text: str) -> list[str]:
    return [f"{p} is not in the repository" for p in sorted(set(PATH.findall(text)))
            if not _exists(p)]


def _resolves(name: str) -> bool:
    parts = name.split(".")
    for cut in range(len(parts), 0, -1):
        try:
            obj: object = importlib.import_module(".".join(parts[:cut]))
        except ModuleNotFoundError:
            continue
        for attr in parts[cut:]:
            if not hasattr(obj, attr):
                return False
            obj = getattr(obj, attr)
        return True
    return False


def name_problems(text: str) -> list[str]:
    return [f"{n} is not a module or a name in nvr" for n in sorted(set(NAME.findall(text)))
            if not _resolves(n)]


def test_the_module_table_is_the_tree() -> None:
    assert table_problems(DOC.read_text()) == []


def test_every_path_the_document_gives_exists() -> None:
    assert path_problems(DOC.read_text()) == []


def test_every_nvr_name_the_document_gives_exists() -> None:
    assert name_problems(DOC.read_text()) == []


# `docs/design.md, "Ingest hot path"` and the like, anywhere in the tree: a section by its title.
SECTION_REF = re.compile(r'design\.md[,\s(]{0,4}"([^"]{2,80})"')
SCANNED = ("nvr", "docs", "tests", "bench", "tools", "README.md", "pyproject.toml")


def reference_problems(text: str) -> list[str]:
    """Every section of design.md that a file quotes by its title is a heading there."""
    headings = [" ".join(h.split()).lower() for h in re.findall(r"^#+ (.+)$", text, re.M)]
    problems = []
    for top in SCANNED:
        base = ROOT / top
        for path in [base] if base.is_file() else sorted(base.rglob("*")):
            if path in (DOC, Path(__file__)) or not path.is_file() or path.suffix not in (
                    ".py", ".md", ".toml", ".js", ".sh", ".html"):
                continue
            for title in SECTION_REF.findall(path.read_text(errors="replace")):
                words = " ".join(title.replace("#", " ").split()).lower()  # a comment's lines
                if not any(words in h for h in headings):
                    problems.append(f'{path.relative_to(ROOT)} quotes "{words}", '
                                    "which is no heading of docs/design.md")
    return problems


def test_every_section_the_tree_quotes_is_a_heading() -> None:
    assert reference_problems(DOC.read_text()) == []


def test_a_stale_document_is_caught() -> None:
    text = DOC.read_text()
    rows = module_table(text)
    assert "nvr/storage/" in rows and "nvr/media/" in rows
    stale = (text.replace("| `nvr/timeutil.py` |", "| `nvr/fmp4.py` |")
             .replace("(`segment_writer`, `anchor`)", "(`anchor`)")
             + "\nSee `nvr/storage/fmp4.py`, nvr/masks.py and `nvr.policy.audit.log_head_forever`.\n")
    assert "no row for nvr/timeutil.py in the Modules table" in table_problems(stale)
    assert "the Modules table's row nvr/fmp4.py names nothing in nvr/" in table_problems(stale)
    assert ("the row nvr/storage/ does not name its module segment_writer"
            in table_problems(stale))
    assert path_problems(stale) == [f"{p} is not in the repository" for p in
                                    ("nvr/fmp4.py", "nvr/masks.py", "nvr/storage/fmp4.py")]
    assert name_problems(stale) == [
        "nvr.policy.audit.log_head_forever is not a module or a name in nvr"]
    renamed = text.replace("\n### Background tasks\n", "\n### Tasks\n")
    assert ('nvr/runtime/tasks.py quotes "background tasks", which is no heading of '
            "docs/design.md") in reference_problems(renamed)

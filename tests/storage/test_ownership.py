"""SQL lives with its owner: nvr.storage.db's ownership list, held against a freshly migrated
index and against the statements in the tree."""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import nvr
from nvr.storage import db as storage_db
from nvr.storage.db import connect

PACKAGE = Path(nvr.__file__).parent
STORAGE = PACKAGE / "storage"
# A write names its table right after the verb; `DO UPDATE SET` (an upsert) names none.
WRITE = re.compile(r"\b(?:INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+(\w+)")
STATEMENT = re.compile(r"\b(SELECT|INSERT|UPDATE|DELETE)\b")


def owners() -> dict[str, str]:
    """table → owner module, from the "Ownership" block of nvr.storage.db's docstring."""
    doc = storage_db.__doc__ or ""
    block = doc.split("Ownership", 1)[1].split("):\n", 1)[1].split("\n\n", 1)[0]
    out: dict[str, str] = {}
    for line in block.splitlines():
        m = re.fullmatch(r"\s+([a-z_, ]+?)\s{2,}(nvr\.[\w.]+)", line)
        if m is None:
            break  # the prose after the list
        for table in m.group(1).split(","):
            assert table.strip() not in out, f"{table.strip()} is listed twice"
            out[table.strip()] = m.group(2)
    return out


def sources() -> list[tuple[str, str]]:
    """(module name, source) of every module of nvr."""
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        name = ".".join(rel.parts).removesuffix(".__init__")
        out.append((name, path.read_text()))
    return out


async def test_every_table_of_a_fresh_index_has_an_owner_and_every_owner_a_table(
    tmp_path: Path,
) -> None:
    db = await connect(tmp_path / "index.db")
    try:
        async with db.execute(
            "SELECT type, name, tbl_name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'"
        ) as cur:
            objects = [(str(r[0]), str(r[1]), str(r[2])) for r in await cur.fetchall()]
    finally:
        await db.close()
    listed = owners()
    tables = {name for kind, name, _ in objects if kind == "table"}
    assert tables, "the migrated index has no tables"
    assert sorted(tables - listed.keys()) == [], "tables with no owner in nvr.storage.db"
    assert sorted(listed.keys() - tables) == [], "owners named for tables that do not exist"
    # An index or a trigger belongs to the owner of its table.
    orphans = [(kind, name) for kind, name, table in objects
               if kind != "table" and table not in listed]
    assert orphans == []
    for table, module in listed.items():
        assert importlib.util.find_spec(module) is not None, f"{table}: no module {module}"


def test_only_a_tables_owner_writes_it() -> None:
    listed = owners()
    wrong = []
    for module, text in sources():
        if module == "nvr.storage.db":
            continue  # the migrations (and their triggers) create and fill every table
        for m in WRITE.finditer(text):
            table = m.group(1)
            if table != "SET" and listed.get(table) != module:
                wrong.append(f"{module} writes {table} (owner: {listed.get(table)})")
    assert wrong == []


def test_no_sql_and_no_connection_outside_storage() -> None:
    found = []
    for module, text in sources():
        if not module.startswith("nvr.storage."):
            found += [f"{module}: {m.group(0)}" for m in STATEMENT.finditer(text)]
        if module != "nvr.storage.db" and "sqlite3.connect" in text:
            found.append(f"{module} opens its own connection")
    assert found == []

"""Mutation check of the policy's enforcement: does removing any ONE decision make a test fail?

For each call of `authorize`, `authorized` or `decision` in nvr/control/handlers.py and
nvr/control/views.py, a copy of the tree gets that one call replaced by a stand-in that allows
without deciding or auditing; the policy stories and the policy matrix then run against it (the
daemon they start imports the mutated copy). A mutation no test notices "survives": a decision
whose removal nothing would catch. Prints one line per mutation and a summary; exit 1 if any
survived.

    .venv/bin/python tools/mutate_decisions.py [--tests tests/stories tests/e2e/test_policy_matrix.py]

Runs as root (the tests create unix accounts); takes about a minute per surviving mutation and
less per killed one (pytest stops at the first failure).
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
FILES = ["nvr/control/handlers.py", "nvr/control/views.py"]
CALL = re.compile(r"\b(self|h)\.(authorize|authorized|decision)\(")
STAND_INS = '''

# -- mutation stand-ins (tools/mutate_decisions.py) --
async def _mut_authorize(self, *args, **kw):  # type: ignore[no-untyped-def]
    return Decision(True, "mutant", "", "allowed: mutant")


async def _mut_decision(self, *args, **kw):  # type: ignore[no-untyped-def]
    return Decision(True, "mutant", "", "allowed: mutant")


@asynccontextmanager
async def _mut_authorized(self, *args, **kw):  # type: ignore[no-untyped-def]
    yield Decision(True, "mutant", "", "allowed: mutant")


Handlers._mut_authorize = _mut_authorize  # type: ignore[attr-defined]
Handlers._mut_decision = _mut_decision  # type: ignore[attr-defined]
Handlers._mut_authorized = _mut_authorized  # type: ignore[attr-defined]
'''


def sites(base: Path) -> list[tuple[str, int, str]]:
    out = []
    for rel in FILES:
        for n, line in enumerate((base / rel).read_text().splitlines(), 1):
            if CALL.search(line) and "def " not in line:
                out.append((rel, n, line.strip()))
    return out


def mutate(tree: Path, rel: str, lineno: int) -> None:
    path = tree / rel
    lines = path.read_text().splitlines(keepends=True)
    lines[lineno - 1] = CALL.sub(lambda m: f"{m.group(1)}._mut_{m.group(2)}(", lines[lineno - 1],
                                 count=1)
    path.write_text("".join(lines))
    handlers = tree / "nvr/control/handlers.py"
    if STAND_INS not in handlers.read_text():
        handlers.write_text(handlers.read_text() + STAND_INS)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tests", nargs="+",
                    default=["tests/stories", "tests/e2e/test_policy_matrix.py"])
    ap.add_argument("--only", nargs="+", default=None, metavar="FILE:LINE",
                    help="mutate only these call sites (as the summary names them)")
    args = ap.parse_args()
    survived = []
    # The committed tree (HEAD), not the working tree: edits made while this runs must not
    # move the lines it mutates.
    base = Path(tempfile.mkdtemp(prefix="nvr-mutation-base-"))
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", "HEAD"], check=True,
                             capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(base)], input=archive, check=True)
    found = sites(base)
    if args.only:
        found = [f for f in found if f"{f[0]}:{f[1]}" in args.only]
    for i, (rel, lineno, text) in enumerate(found, 1):
        with tempfile.TemporaryDirectory(prefix="nvr-mutant-") as tmp:
            tree = Path(tmp) / "tree"
            shutil.copytree(base, tree)
            # The tests run the CLI as other accounts: they must be able to read the tree.
            os.chmod(tmp, 0o755)
            os.chmod(tree, 0o755)
            mutate(tree, rel, lineno)
            env = {**os.environ, "PYTHONPATH": str(tree), "NVR_KEEP_TEST_ACCOUNTS": "1"}
            t0 = time.monotonic()
            proc = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p",
                                   "no:cacheprovider", *args.tests], cwd=tree, env=env,
                                  capture_output=True, text=True, check=False)
            took = time.monotonic() - t0
        killed = proc.returncode != 0
        caught = ""
        if killed:
            failed = re.findall(r"^FAILED (\S+)", proc.stdout, flags=re.M)
            why = re.findall(r"^E +(.+)$", proc.stdout, flags=re.M)
            caught = (failed[0] if failed else proc.stdout.strip().splitlines()[-1]) + \
                (f" — {why[0][:160]}" if why else "")
        else:
            survived.append(f"{rel}:{lineno}")
        print(f"[{i}/{len(found)}] {rel}:{lineno} {'killed' if killed else 'SURVIVED'} "
              f"({took:.0f} s) {text[:60]!r} {caught}", flush=True)
    shutil.rmtree(base, ignore_errors=True)
    print(f"{len(found) - len(survived)} of {len(found)} mutations killed; survived: "
          f"{', '.join(survived) or 'none'}")
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main())

"""docs/policy.md's table is nvr/policy/rules.py's MATRIX: a change to either without the other
fails here."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from nvr.config.model import Role
from nvr.policy import doc, rules
from nvr.policy.actions import Action

PAGE = Path(__file__).resolve().parents[2] / "docs" / "policy.md"


def test_docs_policy_table_matches_the_rules() -> None:
    assert doc.main(["--check", str(PAGE)]) == 0, (
        "docs/policy.md disagrees with nvr/policy/rules.py: "
        "run `python -m nvr.policy.doc --write docs/policy.md` and review the diff")


def test_a_changed_rule_is_caught(monkeypatch: pytest.MonkeyPatch) -> None:
    row = rules.MATRIX[Action.export]
    cells = dict(row.cells)
    cells[Role.it] = rules.Cell(rules.Kind.allow, rules.OPERATIONS)  # IT may export? No.
    monkeypatch.setitem(rules.MATRIX, Action.export, dataclasses.replace(row, cells=cells))
    assert doc.main(["--check", str(PAGE)]) == 1


def test_every_quoted_clause_is_in_the_policy_text() -> None:
    policy = " ".join((PAGE.parent / "security-camera-policy.txt").read_text().split())
    for clause in doc.clause_names():
        assert " ".join(clause.split()) in policy, clause

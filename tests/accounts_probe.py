"""Not collected by default (see tests/test_accounts.py): a one-test session that uses one
private test account, named by $NVR_PROBE_ACCOUNT, so the end-of-session cleanup can be
checked without touching the accounts other runs share."""

from __future__ import annotations

import os

from tests.support import ensure_account


def test_uses_a_private_account() -> None:
    assert ensure_account(os.environ["NVR_PROBE_ACCOUNT"]).pw_uid > 0

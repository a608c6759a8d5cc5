"""`--unmasked`: the Director alone may take footage out without the camera's privacy masks."""

from __future__ import annotations

import pytest

from nvr.config.model import Role
from nvr.policy.actions import Action
from nvr.policy.rules import READING, AccessContext, CameraInfo, decide

CTX = AccessContext(cameras=(CameraInfo("reading-room"),), start_us=0, end_us=10,
                    reason="incident 4", unmasked=True)


@pytest.mark.parametrize("action", [Action.export, Action.still])
def test_only_the_director_may_lift_masks(action: Action) -> None:
    assert decide(Role.director, action, CTX, [], 0, "dir").allowed
    refused = decide(Role.assistant_director, action, CTX, [], 0, "asst")
    assert (refused.allowed, refused.rule, refused.clause) == (
        False, "masks.unmasked_director_only", READING)
    assert refused.message.startswith("denied: only the Library Director may ")
    assert "without the camera's privacy masks; leave out --unmasked" in refused.message
    # Without --unmasked the Assistant Director's export is as before.
    plain = AccessContext(cameras=CTX.cameras, start_us=0, end_us=10, reason="incident 4")
    assert decide(Role.assistant_director, action, plain, [], 0, "asst").allowed


def test_the_director_still_needs_a_reason() -> None:
    no_reason = AccessContext(cameras=CTX.cameras, start_us=0, end_us=10, unmasked=True)
    assert decide(Role.director, Action.export, no_reason, [], 0, "dir").rule == (
        "purpose.reason_required")

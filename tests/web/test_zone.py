"""The box's time zone as the viewing page receives it (link info `zone`): the page formats
every time in it, so it must name the zone a browser's Intl knows, and the abbreviations the
box's own commands print."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest

from nvr.timeutil import local_zone


@pytest.fixture
def tz() -> Iterator[None]:
    saved = os.environ.get("TZ")
    yield
    if saved is None:
        os.environ.pop("TZ", None)
    else:
        os.environ["TZ"] = saved
    time.tzset()


def in_zone(value: str) -> dict[str, object]:
    os.environ["TZ"] = value
    time.tzset()
    return local_zone()


def test_an_iana_zone_is_named_with_its_winter_and_summer_abbreviations(tz: None) -> None:
    z = in_zone("America/New_York")
    assert z["name"] == "America/New_York"
    assert z["names"] == {"-300": "EST", "-240": "EDT"}
    # London prints BST in summer, where a browser's Intl short name says "GMT+1".
    assert in_zone("Europe/London")["names"] == {"0": "GMT", "60": "BST"}


def test_a_posix_rule_has_no_name_but_its_offset(tz: None) -> None:
    z = in_zone("<+0530>-5:30")
    assert z["name"] is None
    assert z["offset_minutes"] == 330 and z["names"] == {"330": "+0530"}

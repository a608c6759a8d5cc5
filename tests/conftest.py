from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.camserver import TestCamera


@pytest.fixture(scope="module")
def testcam() -> Iterator[TestCamera]:
    """A real RTSP server (GStreamer) shared by a test module: 640x360, 15 fps, GOP 15."""
    with TestCamera() as cam:
        yield cam


@pytest.fixture
def testcam_factory() -> Iterator[type[TestCamera]]:
    """Start extra cameras with their own arguments; all are stopped after the test."""
    started: list[TestCamera] = []

    class Factory(TestCamera):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Factory
    for cam in started:
        cam.stop()

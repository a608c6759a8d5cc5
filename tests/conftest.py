from __future__ import annotations

import gc
import os
import warnings
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, settings

from tests.camserver import TestCamera
from tests.support import USED_ACCOUNTS, is_root, release_accounts

# Property tests judge correctness, not speed: on a loaded 2-core CI machine, time limits and
# the "too slow" health check would fail good code at random.
settings.register_profile(
    "nvr", deadline=None, suppress_health_check=[HealthCheck.too_slow], print_blob=True
)
settings.load_profile("nvr")


@pytest.fixture(scope="module")
def testcam() -> Iterator[TestCamera]:
    """A real RTSP server (GStreamer) shared by a test module: 640x360, 15 fps, GOP 15."""
    with TestCamera() as cam:
        yield cam  # (stop() raises, naming the cause, if the server had exited on its own)


@pytest.fixture
def testcam_factory() -> Iterator[type[TestCamera]]:
    """Start extra cameras with their own arguments; all are stopped after the test."""
    started: list[TestCamera] = []

    class Factory(TestCamera):
        def __init__(self, *args: str) -> None:
            super().__init__(*args)
            started.append(self)

    yield Factory
    crashes = []
    for cam in started:
        try:
            cam.stop()
        except RuntimeError as e:  # it had exited on its own: name it after stopping the rest
            crashes.append(str(e))
    if crashes:
        pytest.fail("; ".join(crashes))


@pytest.fixture(autouse=True, scope="module")
def collect_garbage_between_modules() -> Iterator[None]:
    """Collect each module's garbage when the module ends. Without this, an object a module
    leaves for the garbage collector (seen: an event loop and its self-pipe sockets after the
    uvloop/asyncio policy switching in tests/control) raises its ResourceWarning inside
    whichever later test happens to trigger a collection, failing an innocent test under
    filterwarnings=error. Tests that check for leaks collect and record warnings themselves."""
    yield
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Remove the nvrtest-* accounts this run used and no other live test process uses (each
    pytest-xdist worker is one), so a run leaves the machine as it found it. NVR_KEEP_TEST_ACCOUNTS=1 keeps them (other runs on the same machine may be using them
    right now; keeping them also saves creating them again)."""
    if not USED_ACCOUNTS or not is_root() or os.environ.get("NVR_KEEP_TEST_ACCOUNTS") == "1":
        return
    failed = release_accounts()
    if failed:
        reporter = session.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is not None:
            reporter.write_line("could not remove test accounts: " + "; ".join(failed))

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import uvloop


@pytest.fixture(params=["uvloop", "asyncio"])
def event_loop_policy(request: pytest.FixtureRequest) -> asyncio.AbstractEventLoopPolicy:
    # The daemon runs on uvloop; plain asyncio must work too (tests, other embedders).
    if request.param == "uvloop":
        return uvloop.EventLoopPolicy()
    return asyncio.DefaultEventLoopPolicy()


@pytest.fixture
def sock_dir() -> Iterator[Path]:
    # Not tmp_path: AF_UNIX paths are limited to 107 bytes, and pytest's paths grow with the
    # test name. 0755 so that another account can reach a socket inside it.
    d = Path(tempfile.mkdtemp(prefix="nvrc-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from nvr.storage.index import Index
from tests.ingest.recording_helpers import open_index


@pytest.fixture
async def index(tmp_path: Path) -> AsyncIterator[Index]:
    """The segment index under tmp_path, closed after the test even when it fails: a
    connection left open has its worker thread call into a closed event loop later, and
    that error lands on whichever test runs then (seen: two test_rtp.py tests)."""
    idx = await open_index(tmp_path)
    yield idx
    await idx.db.close()

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

import pytest

from nvr.storage.db import connect
from nvr.storage.index import Gap, Index, Segment
from tests.export.footage import add_footage

T0 = 1_790_000_000_000_000  # 2026-09-21T14:13:20Z
S = 1_000_000


@dataclass(frozen=True)
class Footage:
    root: Path
    h264: list[Segment]  # 0-10 s, 10-20, 20-30, [gap 30-35 "offline"], 35-45 s after T0
    gaps: list[Gap]
    hevc: list[Segment]  # camera "hevc-cam": 0-2 s, 2-4 s


async def _make(root: Path) -> Footage:
    db = await connect(root / "index.db")
    try:
        index = Index(db)
        for i in range(3):
            await add_footage(index, root, "cam", T0 + i * 10 * S, 10, first_frame=i * 150)
        await add_footage(index, root, "cam", T0 + 35 * S, 10, first_frame=450)
        await index.add_gap("cam", T0 + 30 * S, T0 + 35 * S, "offline", "camera unreachable")
        for i in range(2):
            await add_footage(index, root, "hevc-cam", T0 + i * 2 * S, 2, codec="libx265",
                              first_frame=i * 30)
        return Footage(root, await index.segments("cam"), await index.gaps("cam"),
                       await index.segments("hevc-cam"))
    finally:
        await db.close()


@pytest.fixture(scope="module")
def footage(tmp_path_factory: pytest.TempPathFactory) -> Footage:
    """Recorder-style footage in a real index, made once per module (about 1 s)."""
    root = tmp_path_factory.mktemp("storage")
    root.chmod(0o700)
    return asyncio.run(_make(root))

"""The MP4 writers' bytes are pinned: recordings and exports already on disk (and their sha256
in the index, in signed export manifests) were written with exactly these bytes, so a change to
nvr.media.mp4 must not change one. And the one track-run reader reads back every trun the
writer makes (each combination of per-sample columns)."""

from __future__ import annotations

import hashlib
import struct

import pytest

from nvr.media.mp4 import boxes, movie
from nvr.media.mp4 import fragment as fmp4

# (dts, pts - dts, duration, key, size) per frame; whether the file has had pts != dts.
_FRAGMENTS = {
    "gop": ([(i * 6000, 0, 6000, i == 0, 1000 + 10 * i) for i in range(15)], False),
    "bframes": ([(i * 3000, [6000, 0, 3000][i % 3], 3000, i == 0, 500 + i) for i in range(9)],
                True),
    "lone": ([(90000, 0, 6000, True, 77)], False),
    "midgop": ([(i * 6000, 0, 6000, False, 300) for i in range(4)], False),
    "uneven": ([(0, 0, 6000, True, 900), (6000, 0, 6001, False, 200),
                (12001, 0, 5999, True, 200)], False),
}
# sha256 of moof(7, ...) + mdat header + samples, as the recorder has always written them.
_PINNED = {
    "gop": "12331eb3a1224b632e6b68e29fe47eca7d27f57317fc49e3e71c45a157a17118",
    "bframes": "eaf6e9b7460ff50c83eec46ebc7055847ad8096aa85555853395e5ad52824ff2",
    "lone": "f441849e560ff29842b1bde4b2ba555819f472462bd112e630a8d4f69e074eb0",
    "midgop": "5b9ad40976916d4b4b9c736ecc8225ed85bb4080c8deb0891b0c1b970aedb02e",
    "uneven": "b657a0fcb464edab07d26073b61ba38dc655718749b7b9e76731fd97faf18f2a",
}


def _fragment(name: str) -> tuple[fmp4.Fragment, bool]:
    spec, with_cts = _FRAGMENTS[name]
    frag = fmp4.Fragment()
    for dts, cts, dur, key, size in spec:
        frag.add(dts, cts, dur, key, bytes([size % 251]) * size)
    return frag, with_cts


@pytest.mark.parametrize("name", sorted(_FRAGMENTS))
def test_a_fragment_is_written_with_the_recordings_bytes(name: str) -> None:
    frag, with_cts = _fragment(name)
    data = fmp4.moof(7, frag, with_cts) + fmp4.mdat_header(frag.nbytes) + b"".join(frag.data)
    assert hashlib.sha256(data).hexdigest() == _PINNED[name]


def test_the_random_access_box_is_written_with_the_recordings_bytes() -> None:
    entries = [(0, 1234), (90000, 99999), (2**40, 2**33)]
    assert hashlib.sha256(fmp4.mfra(entries)).hexdigest() == (
        "616b98d38be2577c27134bbeda2f4898f8081dd169cd13b9f021a0316e20094b")
    assert hashlib.sha256(fmp4.mfra([])).hexdigest() == (
        "2c0d654b13058dba89a1e9879eb90a7087bca4054dfa9d270b0f90a2a9c7b5cf")


@pytest.mark.parametrize(("wide", "chaptered", "pinned"), [
    (False, False, "545389108c2791dc423d8451c791db81d85c39c3ad49818a2a5c942e3a10b424"),
    (False, True, "0474a933e9470c9ec542fcc06a627c6b48abb22c6d68810a3c185f52856edbd5"),
    (True, False, "35010013d5d196607b070983b477c1972c1b6353e82996c2cd705ace99122cd1"),
    (True, True, "0a20fa3adb6fd3c9ae0c5ee67299be5c8accd229f85875ed38a03b27643cce05"),
])
def test_an_export_clips_head_is_written_with_the_exports_bytes(
        wide: bool, chaptered: bool, pinned: str) -> None:
    n = 40
    video = movie.VideoTable(
        sample_entry=b"\x00\x00\x00\x10hev1" + bytes(8), width=1280, height=720,
        timescale=90000, dts=[i * 6000 for i in range(n)],
        cto=[(3000 if i % 2 else 0) for i in range(n)], last_duration=6000,
        sizes=[100 + i for i in range(n)], keys=[int(i % 10 == 0) for i in range(n)],
        chunk_samples=[10, 10, 20], chunk_offsets=[0, 5000, 9000], media_time=3000,
        shown=n * 6000)
    chapters = movie.Chapters(titles=["one", "GAP 00:01", "trés"], starts_ms=[0, 1000, 2000],
                              lengths_ms=[1000, 1000, 666], offset=20000)
    head = (movie.ftyp("hevc") + movie.moov(video, chapters if chaptered else None, 4096,
                                            wide=wide) + movie.mdat_header(2**32))
    assert hashlib.sha256(head).hexdigest() == pinned


@pytest.mark.parametrize("name", sorted(_FRAGMENTS))
def test_every_trun_the_writer_makes_reads_back(name: str) -> None:
    frag, with_cts = _fragment(name)
    moof = fmp4.moof(7, frag, with_cts)
    traf = boxes.find(moof, 8, len(moof), b"traf")
    assert traf is not None
    t = fmp4.read_traf(moof, *traf)
    [run] = t.runs
    n = len(frag)
    assert (t.track_id, t.base_is_moof, t.decode_time, run.count) == (1, True, frag.dts0, n)
    assert run.data_offset == len(moof) + 8  # the first sample: just past the mdat header
    durations = list(run.durations) if run.durations is not None else [t.duration] * n
    sizes = list(run.sizes) if run.sizes is not None else [t.size] * n
    flags = list(run.flags) if run.flags is not None else [t.flags] * n
    if run.first_flags is not None:
        flags[0] = run.first_flags
    keys = [not f & fmp4.NON_SYNC_BIT for f in flags]
    ctos = list(run.ctos) if run.ctos is not None else [0] * n
    assert (durations, sizes, keys, ctos) == (frag.durations, frag.sizes, frag.keys, frag.ctss)
    assert fmp4.starts_with_sync(moof) == frag.keys[0]


def test_a_version_1_trun_reads_negative_composition_offsets() -> None:
    # As other muxers write B-frames without an edit list: pts - dts below zero.
    entries = struct.pack(">Ii Ii", 3000, -3000, 3000, 6000)
    trun = boxes.full_box(b"trun", 1, 0x100 | 0x800, struct.pack(">I", 2), entries)
    run = fmp4.read_trun(trun, 8, len(trun))
    assert run.ctos is not None and list(run.ctos) == [-3000, 6000]
    assert run.durations is not None and list(run.durations) == [3000, 3000]
    assert run.sizes is None and run.flags is None and run.data_offset is None


def test_a_trun_whose_samples_run_past_it_is_refused() -> None:
    trun = boxes.full_box(b"trun", 0, 0x200, struct.pack(">I", 1000), bytes(40))
    with pytest.raises(boxes.BoxError, match="runs past"):
        fmp4.read_trun(trun, 8, len(trun))

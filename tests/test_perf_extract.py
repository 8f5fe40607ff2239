"""Streamed extraction (issue 18): block-aligned strips decoded once give the same chips, to
the bit, as the windowed reader; bounded strips; a named error when memory cannot hold a run."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from test_chips import _study

from geocausal.data import chips as chips_mod
from geocausal.data.chips import extract
from geocausal.errors import DataError

UTM = dict(crs="EPSG:32633", origin=(500_000.0, 4_000_000.0), res=10.0)


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    """Two tiles per period (one tiled, one striped), nodata and clouds, units over the edges."""
    tmp = tmp_path_factory.mktemp("stream")
    pix = [(float(r), float(c)) for r, c in np.random.default_rng(5).uniform(-3, 43, (80, 2))]
    return _study(tmp, pix=pix, tiles=[(0, 16), (16, 40)], nodata=(7, 21), cloud=(30, 5),
                  periods=(1, 2, 3), **UTM)


def _extract(study: Path, cache: Path, monkeypatch, *, stream: bool, threads: int = 1,
             task_mb: float = 0.002):
    monkeypatch.setattr(chips_mod, "STREAM_READS", stream)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return extract(study, cache_dir=cache, progress=False, threads=threads, task_mb=task_mb)


def _assert_same(a, b) -> None:
    assert list(a.unit_ids) == list(b.unit_ids)
    ca, cb = np.asarray(a.chips[:]), np.asarray(b.chips[:])
    assert ca.dtype == cb.dtype == np.float32 and ca.shape == cb.shape
    assert np.array_equal(ca.view(np.uint32), cb.view(np.uint32))       # to the bit
    assert np.array_equal(np.asarray(a.mask[:]), np.asarray(b.mask[:]))
    assert np.array_equal(a.coverage, b.coverage)
    assert (a.outside_ids, a.empty_ids) == (b.outside_ids, b.empty_ids)


@pytest.mark.parametrize("threads", [1, 3])
def test_streamed_strips_equal_windowed_reads(study, tmp_path, monkeypatch, threads):
    old = _extract(study, tmp_path / "windows", monkeypatch, stream=False)
    new = _extract(study, tmp_path / "strips", monkeypatch, stream=True, threads=threads)
    assert new.tasks_run > 5                                # many tasks: strips move down
    mask = np.asarray(new.mask[:])
    assert mask.any() and not mask.all()                    # edges, nodata and clouds masked
    _assert_same(old, new)


def test_every_raster_row_is_decoded_once(study, tmp_path, monkeypatch):
    reads: dict[str, list[tuple[int, int]]] = {}
    real = chips_mod.read_window

    def counting(tile, window):
        reads.setdefault(tile.path, []).append((window.row_off, window.height))
        return real(tile, window)

    monkeypatch.setattr(chips_mod, "read_window", counting)
    _extract(study, tmp_path / "strips", monkeypatch, stream=True)
    streamed = {p: sum(h for _, h in r) for p, r in reads.items()}
    for path, spans in reads.items():
        rows = np.concatenate([np.arange(r0, r0 + h) for r0, h in spans])
        assert rows.size == np.unique(rows).size, f"{path}: a row was decoded twice"
    reads.clear()
    _extract(study, tmp_path / "windows", monkeypatch, stream=False)
    windowed = {p: sum(h for _, h in r) for p, r in reads.items()}
    assert sum(windowed.values()) > 2 * sum(streamed.values())   # what the strips save


def test_strips_over_budget_fall_back_to_windows(study, tmp_path, monkeypatch):
    old = _extract(study, tmp_path / "windows", monkeypatch, stream=False)
    # a strip budget below one block row: every tile is read in windows; a kept-strip budget
    # of one strip: strips of the other tiles are dropped and decoded again when needed
    monkeypatch.setattr(chips_mod, "MAX_STRIP_BYTES", 200)
    tiny = _extract(study, tmp_path / "tiny", monkeypatch, stream=True)
    _assert_same(old, tiny)
    monkeypatch.setattr(chips_mod, "MAX_STRIP_BYTES", 2**20)
    monkeypatch.setattr(chips_mod, "MAX_KEPT_BYTES", 1)
    lru = _extract(study, tmp_path / "lru", monkeypatch, stream=True, threads=2)
    _assert_same(old, lru)


def test_a_run_that_cannot_fit_in_memory_is_a_named_error(study, tmp_path, monkeypatch):
    # 80 units x 3 periods x 6x6 px x (2 bands x 4 + 1) bytes: a task of every unit holds
    # 78 kB, three of them plus the strips (178 kB) do not fit in 300 kB; tasks of 2 units do
    monkeypatch.setattr(chips_mod, "_available_memory", lambda: 300_000)
    with pytest.raises(DataError, match=r"threads=2 and task_mb=2048,.*lower task_mb or threads"):
        _extract(study, tmp_path / "big", monkeypatch, stream=True, threads=2, task_mb=2048)
    assert not list((tmp_path / "big").glob("*.zarr"))     # nothing published
    # the same study with small tasks fits
    ok = _extract(study, tmp_path / "small", monkeypatch, stream=True, threads=2)
    assert ok.shape[0] == 80


def test_direct_chunk_writes_equal_zarr_writes(study, tmp_path, monkeypatch):
    # 80 units in chunks of 3: the last chunk is an edge chunk (zarr pads it)
    monkeypatch.setattr(chips_mod, "DIRECT_CHUNKS", False)
    by_zarr = _extract(study, tmp_path / "zarr", monkeypatch, stream=True, task_mb=0.003)
    monkeypatch.setattr(chips_mod, "DIRECT_CHUNKS", True)
    direct = _extract(study, tmp_path / "direct", monkeypatch, stream=True, task_mb=0.003)
    assert direct.chips.array.chunks[0] == 3 and direct.shape[0] % 3 == 2
    _assert_same(by_zarr, direct)
    files = sorted(p.relative_to(direct.path) for p in (direct.path / "chips" / "c").rglob("*")
                   if p.is_file())
    assert len(files) == 27 and not any(p.name.startswith(".") for p in files)

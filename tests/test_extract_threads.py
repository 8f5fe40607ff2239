"""Threaded extraction (issue 18): the same cache as one thread, and bad ``threads`` refused."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from test_chips import _study

from geocausal.data.chips import extract
from geocausal.errors import DataError


def _grid_pixels(n: int) -> list[tuple[float, float]]:
    rng = np.random.default_rng(3)
    return [(float(r), float(c)) for r, c in rng.uniform(-2, 42, size=(n, 2))]


@pytest.fixture(scope="module")
def study(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("threads")
    return _study(tmp, crs="EPSG:32633", origin=(500_000.0, 4_000_000.0), res=10.0,
                  pix=_grid_pixels(60), tiles=[(0, 16), (16, 40)], nodata=(5, 7))


def _run(study: Path, cache: Path, threads: int):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # task_mb tiny: many tasks, so that several threads really run at once
        return extract(study, cache_dir=cache, progress=False, threads=threads, task_mb=0.002)


def test_threads_give_the_same_cache_as_one_thread(study, tmp_path):
    one = _run(study, tmp_path / "one", 1)
    many = _run(study, tmp_path / "many", 3)
    assert list(one.unit_ids) == list(many.unit_ids)
    a, b = np.asarray(one.chips[:]), np.asarray(many.chips[:])
    assert a.shape == b.shape and a.shape[0] == 60
    assert np.array_equal(a, b)
    assert np.array_equal(np.asarray(one.mask[:]), np.asarray(many.mask[:]))
    assert np.array_equal(np.asarray(one.coverage), np.asarray(many.coverage))
    assert np.asarray(one.mask[:]).any() and not np.asarray(one.mask[:]).all()


@pytest.mark.parametrize("bad", [0, -2, 1.5, True, "2"])
def test_bad_threads_named_error(study, tmp_path, bad):
    with pytest.raises(DataError, match="threads must be a positive integer"):
        extract(study, cache_dir=tmp_path, progress=False, threads=bad)

"""The same code on a Dask cluster: extraction, embedding inference and Monte Carlo pipelines.

A ``LocalCluster`` of 2 workers (threads of this process, so the test is quick) is started by
the tests; every result run on it must equal the serial result exactly. Every script's
``--workers 0`` (or a negative value) exits 2 with one line.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geocausal.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def cluster():
    from dask.distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as lc, Client(lc) as client:
        yield lc, client


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from geocausal.data.rasters import write_example_study

    return write_example_study(tmp_path_factory.mktemp("study"), n_units=30, size=96)


def test_extraction_on_dask_equals_serial(cluster, study, tmp_path):
    from geocausal.data.chips import extract

    lc, _ = cluster
    serial = extract(study, cache_dir=tmp_path / "serial", progress=False)
    dask = extract(study, cache_dir=tmp_path / "dask", scheduler=lc.scheduler_address,
                   progress=False)
    np.testing.assert_array_equal(np.asarray(dask.chips), np.asarray(serial.chips))
    np.testing.assert_array_equal(np.asarray(dask.mask), np.asarray(serial.mask))
    assert list(dask.unit_ids) == list(serial.unit_ids)


def test_embedding_on_dask_equals_serial(cluster, study, tmp_path):
    """The encoder is sent to the workers; each embeds the blocks it is given (epochs=0: the
    CNN with its normaliser, so the test spends its time on Dask, not on training)."""
    from geocausal.data.chips import extract
    from geocausal.encoders.embed import embed

    lc, _ = cluster
    cache = extract(study, cache_dir=tmp_path / "cache", progress=False)
    kw = dict(encoder="cnn", embed_dim=4, epochs=0, batch_size=16, progress=False,
              block_units=1)
    serial = pd.read_parquet(embed(cache.path, tmp_path / "s.parquet", **kw))
    dask = pd.read_parquet(embed(cache.path, tmp_path / "d.parquet",
                                 scheduler=lc.scheduler_address, **kw))
    assert len(serial) == 30 * 2 and np.isfinite(serial.filter(like="emb_").to_numpy()).all()
    pd.testing.assert_frame_equal(dask, serial)


def test_embedding_on_dask_needs_a_cache_on_disk(cluster):
    from geocausal.encoders.embed import embed_source
    from geocausal.encoders.modules import ModelSpec, build_model
    from geocausal.encoders.stream import ChipSource

    _, client = cluster
    src = ChipSource.of(np.zeros((4, 2, 4, 4, 1), "float32"))
    with pytest.raises(DataError, match="needs a chips cache on disk"):
        embed_source(build_model(ModelSpec("random", in_bands=1, embed_dim=2)), src,
                     client=client)


def test_parallel_map_keeps_order_on_every_engine(cluster):
    from geocausal.parallel import parallel_map

    lc, client = cluster
    items = list(range(-7, 8))
    serial = parallel_map(abs, items, progress=False)
    assert parallel_map(abs, items, client=client, progress=False) == serial
    assert parallel_map(abs, items, scheduler=lc.scheduler_address, progress=False) == serial
    assert parallel_map(abs, items, workers=2, progress=False) == serial


def test_r3d_coverage_monte_carlo_on_dask_equals_serial(cluster):
    sys.path.insert(0, str(ROOT))
    from paper.r3d.coverage_mc import run

    _, client = cluster
    kw = dict(seed=4, ns=(150,), methods=("simple",), n_boot=50)
    serial = run(3, 1, **kw)
    pd.testing.assert_frame_equal(run(3, 1, client=client, **kw), serial)


def test_dml_panel_monte_carlo_on_dask_equals_serial(cluster):
    sys.path.insert(0, str(ROOT))
    from paper.dml_panel.montecarlo import run_montecarlo

    _, client = cluster
    kw = dict(structures=["C-linear"], approaches=["cre"], learners=["linear"], n_units=30,
              n_periods=4, folds=2, seed=2)
    serial = run_montecarlo(2, **kw).drop(columns="seconds")
    dask = run_montecarlo(2, client=client, **kw).drop(columns="seconds")
    pd.testing.assert_frame_equal(dask, serial)


@pytest.mark.parametrize("argv", [
    ["paper/r3d/coverage_mc.py", "--workers", "0"],
    ["-m", "paper.dml_panel.montecarlo", "--workers", "-2", "--out", "unused"],
    ["benchmarks/scale.py", "--workers", "0"],
    ["benchmarks/rdd_manifest_mc.py", "--workers", "0"],
    ["benchmarks/image_representations_mc.py", "--workers", "-1"],
    ["paper/r3d/pipeline.py", "--workers", "-3", "--out", "unused"],
    ["-m", "paper.dml_panel.paper_cell", "--workers", "0", "--out", "unused"],
    ["-m", "geocausal.cli", "extract", "--manifest", "demo", "--workers", "0"],
    ["-m", "geocausal.cli", "embed", "--cache", "x", "--out", "y", "--workers", "-1"],
])
def test_workers_zero_or_negative_exits_2_with_one_line(argv):
    proc = subprocess.run([sys.executable, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "--workers" in lines[0], proc.stderr

"""Streaming chips in blocks of units (geocausal.encoders.stream) wherever chips flow.

A chips cache is written as the extractor writes it (units in a shuffled storage order, small
zarr chunks) so every consumer must map storage rows back to units. Every streamed result is
compared with the same computation on the loaded arrays; the whole cache is never loaded
(``UnitOrderArray.__array__`` is made to fail).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geocausal.data.chips import ChipsCache, UnitOrderArray
from geocausal.encoders import stream
from geocausal.errors import DataError

N, T, H, C = 23, 2, 8, 3


def _fake_cache(folder: Path, n: int = N, t: int = T, h: int = H, c: int = C,
                chunk: int = 2, seed: int = 0) -> tuple[ChipsCache, np.ndarray, np.ndarray]:
    import zarr

    rng = np.random.default_rng(seed)
    chips = rng.normal(2.0, 1.5, size=(n, t, h, h, c)).astype("float32")
    chips[..., 1] += np.arange(n, dtype="float32")[:, None, None, None] / 5  # unit signal
    mask = rng.random((n, t, h, h)) > 0.1
    rows = rng.permutation(n)  # rows[i]: storage row of unit i
    store = np.empty_like(chips)
    mstore = np.empty_like(mask)
    store[rows], mstore[rows] = chips, mask
    g = zarr.open_group(str(folder / "chips-test.zarr"), mode="w")
    g.create_array("chips", data=store, chunks=(chunk, t, h, h, c))
    g.create_array("mask", data=mstore, chunks=(chunk, t, h, h))
    cache = ChipsCache(path=folder / "chips-test.zarr", chips=UnitOrderArray(g["chips"], rows),
                       mask=UnitOrderArray(g["mask"], rows), unit_ids=np.arange(100, 100 + n),
                       periods=list(range(2019, 2019 + t)), bands=list("abc")[:c],
                       outside_ids=[], coverage=np.ones((n, t), bool), chip_size=h,
                       manifest_hash="test")
    return cache, chips, mask


@pytest.fixture
def cache(tmp_path):
    return _fake_cache(tmp_path)


def test_blocks_visit_every_unit_once_with_its_chips(cache, never_whole):
    c, chips, mask = cache
    src = stream.ChipSource.of(c, block_units=5)
    assert src.block_units == 4  # rounded down to whole zarr chunks of 2
    seen = []
    for units, x, m in src.blocks(np.random.default_rng(1).permutation(len(src.spans()))):
        np.testing.assert_array_equal(x, chips[units])
        np.testing.assert_array_equal(m, mask[units])
        seen.extend(units.tolist())
    assert sorted(seen) == list(range(N))


def test_streaming_band_statistics_equal_in_memory(cache):
    from geocausal.encoders.modules import band_statistics

    c, chips, mask = cache
    sel = np.random.default_rng(0).random((N, T)) > 0.5
    a = stream.streaming_band_statistics(stream.ChipSource.of(c, block_units=2), sel)
    b = band_statistics(chips[sel], mask[sel])
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5)
    np.testing.assert_allclose(a[1], b[1], rtol=1e-5)


def test_learned_features_of_a_cache_equal_the_loaded_arrays(cache, never_whole):
    from geocausal.encoders.embed import learned_features

    c, chips, mask = cache
    kw = dict(epochs=1, embed_dim=4, widths=(4,), batch_size=16, max_train=30, progress=False)
    streamed = learned_features(c, seed=3, block_units=4, **kw)
    loaded = learned_features(chips, mask, seed=3, **kw)
    assert streamed.shape == (N, T * 4)
    np.testing.assert_allclose(streamed, loaded, rtol=1e-4, atol=1e-5)


def test_training_streams_when_images_exceed_the_budget(cache, never_whole, monkeypatch):
    """Training on more images than the budget holds streams minibatches: the normaliser is
    the chosen images' statistics, the weights move, embeddings are finite."""
    import importlib

    from geocausal.encoders.modules import ModelSpec, band_statistics

    emb = importlib.import_module("geocausal.encoders.embed")

    c, chips, mask = cache
    calls = []
    real = emb.fit_streaming
    monkeypatch.setattr(emb, "fit_streaming",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    unit_bytes = T * H * H * C * 4 + T * H * H
    budget = unit_bytes * stream.BLOCK_COPIES * 4  # 4 units per block, far fewer than 46 images
    src = stream.ChipSource.of(c, budget=budget)
    chosen = stream.choose_items(N * T, None, 0)
    spec = ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,))
    trained = emb.train_source(src, spec, chosen, epochs=2, batch_size=8, progress=False,
                               memory_budget=budget)
    untrained = emb.train_source(src, spec, chosen, epochs=0, progress=False,
                                 memory_budget=budget)
    assert calls == [1]
    mean, std = band_statistics(chips, mask)
    np.testing.assert_allclose(np.asarray(trained.band_mean[...]), mean, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(trained.band_std[...]), std, rtol=1e-5)
    z1, z0 = emb.embed_source(trained, src), emb.embed_source(untrained, src)
    assert z1.shape == (N, T, 4) and np.isfinite(z1).all()
    assert np.abs(z1 - z0).max() > 1e-3


def test_embed_in_blocks_equals_one_block(cache, never_whole, tmp_path):
    from geocausal.encoders.embed import embed

    c, *_ = cache
    a = pd.read_parquet(embed(c, tmp_path / "a.parquet", encoder="random", embed_dim=4,
                              block_units=2, progress=False))
    b = pd.read_parquet(embed(c, tmp_path / "b.parquet", encoder="random", embed_dim=4,
                              progress=False))
    pd.testing.assert_frame_equal(a, b)
    assert a["unit_id"].tolist()[:4] == [100, 100, 101, 101]


@pytest.mark.parametrize("kw, what", [
    ({"block_units": 10_000, "memory_budget": "1MB"}, "lower block_units"),
    ({"memory_budget": "4KB"}, "lower the chip size"),
    ({"block_units": 0}, "positive number of units"),
    ({"memory_budget": "a lot"}, "give bytes or a size"),
])
def test_a_cache_too_large_for_the_block_size_is_a_named_error(cache, tmp_path, kw, what):
    from geocausal.encoders.embed import embed

    c, *_ = cache
    with pytest.raises(DataError, match=what):
        embed(c, tmp_path / "e.parquet", encoder="random", progress=False, **kw)


def test_memory_budget_from_the_environment(monkeypatch):
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "3GB")
    assert stream.memory_budget() == 3 * 1024**3
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "-1GB")
    with pytest.raises(DataError, match="GEOCAUSAL_MEMORY_BUDGET="):
        stream.memory_budget()


def test_summary_features_of_a_cache_stream(cache, never_whole):
    from geocausal.features.images import image_features, summary_features

    c, chips, mask = cache
    mask = mask.copy()
    np.testing.assert_allclose(image_features(c, N, block_units=2),
                               summary_features(chips, mask), rtol=1e-10)


def test_image_learner_predicts_a_cache_in_blocks(cache, monkeypatch):
    from geocausal.nuisance.image_learner import ImageLearner

    c, chips, _ = cache
    x = chips[:, 0]
    y = (x[..., 1].mean(axis=(1, 2)) > np.median(x[..., 1].mean(axis=(1, 2)))) * 1.0
    lr = ImageLearner(epochs=1, widths=(4,), embed_dim=4, batch_size=8, val_frac=0.0).fit(x, y)
    whole = lr.predict_proba(x)
    lazy = UnitOrderArray(c.chips.array, c.chips.rows)
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", str(3 * H * H * C * T * 4 * 4))
    # a (N, T, H, W, C) cache has no single-date view: give the learner the period-0 chips
    first = _PeriodView(lazy, 0)
    np.testing.assert_allclose(lr.predict_proba(first), whole, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(lr.transform(first), lr.transform(x), rtol=1e-5, atol=1e-6)
    # training streams too (tests/test_stream_train.py); a block that cannot fit is refused
    with pytest.raises(DataError, match="lower block_units"):
        ImageLearner(epochs=1, block_units=100).fit(first, y)


class _PeriodView:
    """A lazy (N, H, W, C) view of one period of a lazy (N, T, H, W, C) cache array."""

    def __init__(self, arr: UnitOrderArray, t: int) -> None:
        self.array, self.rows, self.t, self._arr = arr.array, arr.rows, t, arr

    @property
    def shape(self):
        s = self._arr.shape
        return (s[0], *s[2:])

    def __getitem__(self, key):
        return self._arr[key][:, self.t]


def test_crossfit_on_a_lazy_cache_equals_arrays(cache, monkeypatch):
    from geocausal.encoders.crossfit import crossfit
    from geocausal.encoders.modules import ModelSpec
    from geocausal.encoders.train import TrainConfig

    c, chips, _ = cache
    y = chips[:, 0, ..., 1].mean(axis=(1, 2))
    spec = ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,))
    cfg = TrainConfig(epochs=1, batch_size=8, val_frac=0.0, progress=False)
    unit = H * H * C * 4 + H * H
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", str(unit * 4 * 30))  # one 30-unit block
    a = crossfit(_PeriodView(c.chips, 0), y, spec=spec, folds=2, config=cfg, seed=1)
    b = crossfit(chips[:, 0], y, spec=spec, folds=2, config=cfg, seed=1)
    np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-6)
    # folds larger than a block train streamed (tests/test_stream_train.py checks the numbers)
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", str(unit * 4 * 5))
    s = crossfit(_PeriodView(c.chips, 0), y, spec=spec, folds=2, config=cfg, seed=1)
    assert np.isfinite(s.predictions).all() and np.isfinite(s.embeddings).all()
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", str(unit))
    with pytest.raises(DataError, match="raise memory_budget"):
        crossfit(_PeriodView(c.chips, 0), y, spec=spec, folds=2, config=cfg, seed=1)


def test_salience_in_blocks_equals_whole(monkeypatch):
    from geocausal.encoders.modules import ModelSpec, build_model
    from geocausal.encoders.salience import gradient_salience, head_output, integrated_gradients

    m = build_model(ModelSpec("cnn", in_bands=3, embed_dim=4, widths=(4,), n_outputs=1))
    x = np.random.default_rng(0).normal(size=(7, 8, 8, 3)).astype("float32")
    whole = (gradient_salience(m, x), integrated_gradients(m, x, steps=4), head_output(m, x))
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", str(8 * 8 * 3 * 4 * 4 * 3))  # 3 rows a block
    blocks = (gradient_salience(m, x), integrated_gradients(m, x, steps=4), head_output(m, x))
    for a, b in zip(whole, blocks):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6)


def test_aligning_a_cache_larger_than_the_budget_is_refused(cache, monkeypatch):
    from geocausal.features.align import align_images

    c, *_ = cache
    data = pd.DataFrame({"y": np.arange(N, dtype=float)}, index=c.unit_ids)
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "10KB")
    with pytest.raises(DataError, match="geocausal embed"):
        align_images(c, data)


def test_in_place_normalisation_equals_the_training_rule(cache):
    from geocausal.encoders.modules import ModelSpec, build_model, set_normaliser
    from geocausal.encoders.train import normalised

    _, chips, mask = cache
    x = chips[:, 0].copy()
    x[0, 0, 0, 0] = np.nan
    model = build_model(ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,)))
    set_normaliser(model, chips[:, 0], mask[:, 0])
    want = normalised(model, x, mask[:, 0])
    got = stream.normalise_inplace(x, mask[:, 0], np.asarray(model.band_mean[...]),
                                   np.asarray(model.band_std[...]))
    np.testing.assert_array_equal(got, want)


SHARDED = """
import json, jax, numpy as np
from geocausal.encoders.embed import _ssl_setup
from geocausal.encoders.modules import ModelSpec, build_model
from geocausal.encoders.objectives import contrastive
from geocausal.encoders.stream import ChipSource, fit_streaming
from dataclasses import replace
assert jax.device_count() == 2
x = np.random.default_rng(0).normal(size=(24, 2, 8, 8, 3)).astype("float32")
x0 = x.copy()
src = ChipSource.of(x, block_units=5)
spec, cfg = _ssl_setup(ModelSpec("cnn", in_bands=3, embed_dim=4, widths=(4,)), 48,
                       epochs=2, batch_size=8, learning_rate=3e-3, progress=False)
out = {}
for shard in (False, True):
    res = fit_streaming(build_model(spec, 0), contrastive(proj_dim=spec.proj_dim), src,
                        chosen=np.arange(48), config=replace(cfg, shard=shard), seed=0)
    out[str(shard)] = list(res.step_loss)
assert np.array_equal(x, x0), "streamed training changed the caller's array"
print("RESULT" + json.dumps(out))
"""


def test_streamed_training_shards_over_devices_like_one_device():
    """Two CPU devices follow the one-device loss trajectory step by step (the in-memory
    source is left as it was: blocks are copies, normalised in place)."""
    import json
    import os
    import subprocess
    import sys

    env = dict(os.environ, XLA_FLAGS="--xla_force_host_platform_device_count=2",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", SHARDED], env=env, capture_output=True,
                          text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads([ln for ln in proc.stdout.splitlines() if ln.startswith("RESULT")][-1][6:])
    assert len(out["False"]) == len(out["True"]) == 2 * 6
    np.testing.assert_allclose(out["True"], out["False"], rtol=1e-4, atol=1e-5)

"""Streamed supervised training: ImageLearner / crossfit train from a chips cache in blocks.

The cache is written as the extractor writes it (units in a shuffled storage order, small zarr
chunks) and the whole cache is never loaded (``UnitOrderArray.__array__`` fails). With one block
the streamed loop must give the in-memory numbers for the same seed; with several blocks the
numbers must not depend on where the chips are stored (zarr or numpy with the same layout).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from geocausal.data.chips import ChipsCache, UnitOrderArray
from geocausal.encoders.modules import ModelSpec, build_model
from geocausal.encoders.objectives import binary
from geocausal.encoders.stream import ChipSource, fit_supervised_streaming
from geocausal.encoders.train import TrainConfig, fit, predict
from geocausal.errors import DataError

N, T, H, C = 30, 2, 8, 3
CFG = TrainConfig(epochs=2, batch_size=8, val_frac=0.2, progress=False)


@pytest.fixture
def cache(tmp_path):
    import zarr

    rng = np.random.default_rng(0)
    chips = rng.normal(1.0, 2.0, size=(N, T, H, H, C)).astype("float32")
    mask = rng.random((N, T, H, H)) > 0.1
    rows = rng.permutation(N)  # rows[i]: storage row of unit i
    store, mstore = np.empty_like(chips), np.empty_like(mask)
    store[rows], mstore[rows] = chips, mask
    g = zarr.open_group(str(tmp_path / "chips-t.zarr"), mode="w")
    g.create_array("chips", data=store, chunks=(2, T, H, H, C))
    g.create_array("mask", data=mstore, chunks=(2, T, H, H))
    c = ChipsCache(path=tmp_path / "chips-t.zarr", chips=UnitOrderArray(g["chips"], rows),
                   mask=UnitOrderArray(g["mask"], rows), unit_ids=np.arange(100, 100 + N),
                   periods=[2019, 2020], bands=list("abc"), outside_ids=[],
                   coverage=np.ones((N, T), bool), chip_size=H, manifest_hash="t")
    y = (chips[:, 0, ..., 1].mean(axis=(1, 2)) > 1.0) * 1.0
    return c, chips, mask, y, (store, mstore, rows)


def _model():
    return build_model(ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,), n_outputs=1), 0)


def test_one_block_streamed_training_equals_in_memory_fit(cache, never_whole):
    c, chips, mask, y, _ = cache
    a = fit(_model(), binary(), chips[:, 1], y, mask=mask[:, 1], config=CFG, seed=3)
    src = ChipSource.of(c, block_units=64, budget="1GB")
    assert len(src.spans()) == 1
    b = fit_supervised_streaming(_model(), binary(), src, y, config=CFG, seed=3, period=1)
    np.testing.assert_allclose(b.step_loss, a.step_loss, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(b.val_loss, a.val_loss, rtol=1e-5, atol=1e-6)
    assert (b.best_epoch, b.stopped_early) == (a.best_epoch, a.stopped_early)
    np.testing.assert_allclose(predict(b.model, chips[:, 1], mask=mask[:, 1]),
                               predict(a.model, chips[:, 1], mask=mask[:, 1]),
                               rtol=1e-5, atol=1e-6)


def test_image_learner_fits_a_cache_like_the_loaded_chips(cache, never_whole):
    from geocausal.nuisance.image_learner import ImageLearner

    c, chips, mask, y, _ = cache
    kw = dict(epochs=2, widths=(4,), embed_dim=4, batch_size=8, seed=2)
    x0 = np.where(mask[:, 0, ..., None], chips[:, 0], np.nan)  # masked pixels as NaN
    mem = ImageLearner(**kw).fit(x0, y)
    # y indexed by unit id in another order: aligned by id, never by position
    ys = pd.Series(y, index=c.unit_ids)[::-1]
    lazy = ImageLearner(**kw, period=0, block_units=64).fit(c, ys)
    np.testing.assert_allclose(lazy.history_.step_loss, mem.history_.step_loss, rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(lazy.predict_proba(c), mem.predict_proba(x0), rtol=1e-5,
                               atol=1e-6)
    np.testing.assert_allclose(lazy.transform(c), mem.transform(x0), rtol=1e-5, atol=1e-5)


def test_several_blocks_do_not_depend_on_the_storage(cache, never_whole):
    c, chips, mask, y, (store, mstore, rows) = cache
    zsrc = ChipSource.of(c, block_units=6, budget="1GB")
    nsrc = ChipSource(store, mstore, rows, 6)  # the same layout, in memory
    assert len(zsrc.spans()) == 5
    a = fit_supervised_streaming(_model(), binary(), zsrc, y, config=CFG, seed=1, period=0)
    b = fit_supervised_streaming(_model(), binary(), nsrc, y, config=CFG, seed=1, period=0)
    np.testing.assert_allclose(a.step_loss, b.step_loss, rtol=1e-6, atol=1e-7)
    assert len(a.step_loss) == CFG.epochs * (N - 6) // 8 or a.stopped_early
    # a fold of the cache (a subset) streams only the spans that hold its units
    sub = zsrc.subset(np.arange(0, N, 3))
    got = {int(u) for units, _, _ in sub.blocks() for u in units}
    assert got == set(range(sub.n)) and sub.n == 10


def test_crossfit_of_a_cache_streams_every_fold(cache, never_whole):
    from geocausal.encoders.crossfit import crossfit

    c, chips, mask, y, _ = cache
    spec = ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,))
    src = ChipSource.of(c, block_units=64, budget="1GB")
    cfg = TrainConfig(epochs=1, batch_size=8, val_frac=0.0, progress=False)
    x1 = np.where(mask[:, 0, ..., None], chips[:, 0], np.nan)
    # a ChipSource of a two-period cache needs a period: crossfit takes single-period sources
    with pytest.raises(DataError, match="set period="):
        crossfit(src, y, spec=spec, folds=2, config=cfg, seed=1)
    a = crossfit(ChipSource.of(x1[:, None], block_units=64, budget="1GB"), y, spec=spec,
                 folds=2, config=cfg, seed=1)
    b = crossfit(x1, y, spec=spec, folds=2, config=cfg, seed=1)
    np.testing.assert_allclose(a.predictions, b.predictions, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-5, atol=1e-5)


def test_bad_input_is_refused_with_what_to_lower(cache, never_whole):
    from geocausal.nuisance.image_learner import ImageLearner

    c, _, _, y, _ = cache
    with pytest.raises(DataError, match="lower block_units"):
        ImageLearner(epochs=1, period=0, block_units=20, memory_budget="20KB").fit(c, y)
    with pytest.raises(DataError, match="set period="):
        ImageLearner(epochs=1).fit(c, y)
    with pytest.raises(DataError, match="no value for 3 of the cache's 30 unit ids"):
        ImageLearner(epochs=1, period=0).fit(c, pd.Series(y, index=c.unit_ids)[3:])
    with pytest.raises(DataError, match="cannot repeat units"):
        ChipSource.of(c).subset(np.array([1, 1, 2]))
    with pytest.raises(DataError, match="period=5 must be an integer"):
        ImageLearner(epochs=1, period=5).fit(c, y)

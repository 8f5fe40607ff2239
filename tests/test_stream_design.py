"""Chips stream through the design path: ``gc.aipw`` with an ``ImageLearner`` on a chips cache.

The cache is written as the extractor writes it (units in a shuffled storage order, small zarr
chunks, nodata values under the mask) and the whole cache is never loaded: ``UnitOrderArray`` and the
row-aligned ``ChipsView`` refuse ``__array__``. With one block holding every unit the streamed
design gives the in-memory numbers for the same seed.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.data.chips import ChipsCache, UnitOrderArray
from geocausal.encoders.stream import ChipSource
from geocausal.errors import DataError, MissingImagesWarning
from geocausal.features.align import ChipsView, align_images
from geocausal.nuisance.crossfit import SourceRows, crossfit_predict, make_folds
from geocausal.nuisance.image_learner import ImageLearner

N, T, H, C = 36, 2, 8, 3
BAD = 5  # unit position whose period-1 band-0 pixels are all invalid


@pytest.fixture
def cache(tmp_path):
    import zarr

    rng = np.random.default_rng(0)
    chips = rng.normal(1.0, 2.0, size=(N, T, H, H, C)).astype("float32")
    mask = rng.random((N, T, H, H)) > 0.1
    chips[~mask] = 0.0  # a nodata value under the mask, as the extractor leaves it
    chips[BAD, 1, ..., 0] = np.nan
    rows = rng.permutation(N)  # rows[i]: storage row of unit i
    store, mstore = np.empty_like(chips), np.empty_like(mask)
    store[rows], mstore[rows] = chips, mask
    g = zarr.open_group(str(tmp_path / "chips-d.zarr"), mode="w")
    g.create_array("chips", data=store, chunks=(2, T, H, H, C))
    g.create_array("mask", data=mstore, chunks=(2, T, H, H))
    ids = np.arange(100, 100 + N)
    c = ChipsCache(path=tmp_path / "chips-d.zarr", chips=UnitOrderArray(g["chips"], rows),
                   mask=UnitOrderArray(g["mask"], rows), unit_ids=ids, periods=[2019, 2020],
                   bands=list("abc"), outside_ids=[], coverage=np.ones((N, T), bool),
                   chip_size=H, manifest_hash="t")
    # the data: 30 of the 36 units, in another order, keyed by unit id
    keep = rng.permutation(N)[:30]
    keep = np.union1d(keep[keep != BAD][:29], [BAD])[rng.permutation(30)]
    bright = np.nanmean(chips[keep, 0, ..., 1], axis=(1, 2))
    x = rng.normal(size=30)
    d = rng.binomial(1, 1 / (1 + np.exp(-(bright - 1.0) * 3 - 0.5 * x)))
    y = 1.0 * d + bright + x + rng.normal(scale=0.5, size=30)
    df = pd.DataFrame({"y": y, "d": d, "x": x}, index=pd.Index(ids[keep], name="unit"))
    return c, chips, mask, df, keep


def _learner(**kw):
    return ImageLearner(epochs=2, widths=(4,), embed_dim=4, batch_size=8, seed=2, period=0,
                           **kw)


def _aipw(images, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est = gc.aipw("y ~ d + x", kw.pop("data"), images=images, folds=2, seed=1,
                      learners={"propensity": _learner(**kw)})
    return est, [x for x in w if issubclass(x.category, MissingImagesWarning)]


def test_align_keeps_a_cache_lazy_and_row_aligned(cache, never_whole):
    c, chips, mask, df, keep = cache
    with pytest.warns(MissingImagesWarning, match="no usable image for 1 units"):
        al = align_images(c, df, lazy=True)
    assert isinstance(al.images, ChipsView) and al.n_dropped == 1
    assert al.images.unit_ids.tolist() == al.data.index.tolist()  # aligned by id
    got, m = al.images.read([0, 3])
    np.testing.assert_array_equal(got, chips[keep[keep != BAD][[0, 3]]])
    np.testing.assert_array_equal(m, mask[keep[keep != BAD][[0, 3]]])
    # by= subgroups take rows of the view (geocausal.api._by.subset), still lazy
    from geocausal.api._by import subset

    grp = np.arange(len(al.data)) % 3 == 0
    sub = subset(al.images, grp)
    assert isinstance(sub, ChipsView)
    assert sub.unit_ids.tolist() == al.data.index[grp].tolist()
    # summary features by blocks of 2 units = the in-memory features of the same rows
    from geocausal.features.images import summary_features

    view = ChipsView(c, al.images.units, block_units=2)
    np.testing.assert_allclose(view.summary_features(),
                               summary_features(chips[al.images.units], mask[al.images.units]))


def test_crossfit_passes_fold_subsets_of_the_source():
    class Spy:
        uses_images = True
        seen: list = []

        def get_params(self, deep=True):
            return {}

        def set_params(self, **kw):
            return self

        def fit(self, X, y):
            src, tab = X
            Spy.seen.append((type(src).__name__, src.n, tab.shape[0], len(y)))
            self.m = float(np.mean(y))
            return self

        def predict(self, X):
            return np.full(X[0].n, self.m)

    x = np.zeros((10, 4, 4, 1), "float32")
    rows = SourceRows(ChipSource.of(x, block_units=3), np.arange(10.0)[:, None])
    y = np.arange(10.0)
    out = crossfit_predict(Spy(), rows, y, make_folds(10, folds=2, seed=0))
    assert [s[0] for s in Spy.seen] == ["ChipSource"] * 2
    assert all(s[1] == s[2] == s[3] == 5 for s in Spy.seen)
    assert np.isfinite(out).all()


def test_aipw_image_learner_from_cache_equals_in_memory(cache, never_whole, monkeypatch):
    c, chips, mask, df, keep = cache
    lazy, w1 = _aipw(c, data=df)
    assert len(w1) == 1 and "1 units" in str(w1[0].message)
    monkeypatch.undo()  # the in-memory path loads the aligned chips
    pos = pd.Index(c.unit_ids).get_indexer(df.index)
    mem, w2 = _aipw((chips[pos], mask[pos]), data=df.reset_index(drop=True).set_index(
        pd.RangeIndex(len(df))))
    assert len(w2) == 1
    np.testing.assert_allclose(lazy.params.to_numpy(), mem.params.to_numpy(), rtol=1e-4,
                               atol=1e-5)
    np.testing.assert_allclose(np.sqrt(np.diag(lazy.vcov)), np.sqrt(np.diag(mem.vcov)),
                               rtol=1e-4, atol=1e-5)
    pl, pm = (e.diagnostics["propensity"]["propensity"].to_numpy() for e in (lazy, mem))
    np.testing.assert_allclose(pl, pm, rtol=1e-4, atol=1e-5)
    sl, sm = lazy.diagnostics["salience"], mem.diagnostics["salience"]
    assert isinstance(sl, dict) and isinstance(sm, dict), (sl, sm)
    assert sl["units"] == sm["units"] and sl["maps"].shape == (6, H, H)
    assert sl["images"].shape == sm["images"].shape == (6, H, H, C)
    np.testing.assert_array_equal(sl["images"], sm["images"])
    np.testing.assert_allclose(sl["maps"], sm["maps"], rtol=1e-3, atol=1e-5)


def test_salience_by_blocks_equals_in_memory(cache, never_whole):
    from geocausal.encoders.modules import ModelSpec, build_model
    from geocausal.encoders.salience import gradient_salience, integrated_gradients

    c, chips, mask, _, _ = cache
    m = build_model(ModelSpec("cnn", in_bands=C, embed_dim=4, widths=(4,), n_outputs=1), 0)
    idx = np.array([7, 2, 30, 11, 0])
    src = ChipSource.of(c, block_units=2).subset(idx)
    assert len(src.spans()) > 1
    x = np.where(mask[idx, 1, ..., None], chips[idx, 1], np.nan)  # masked pixels left out
    np.testing.assert_allclose(gradient_salience(m, src, period=1), gradient_salience(m, x),
                               rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(integrated_gradients(m, src, period=1, steps=3),
                               integrated_gradients(m, x, steps=3), rtol=1e-5, atol=1e-6)
    with pytest.raises(DataError, match="set period="):
        gradient_salience(m, src)


def test_a_block_too_large_is_refused_with_what_to_lower(cache, never_whole):
    c, _, _, df, _ = cache
    with pytest.raises(DataError, match="lower block_units"):
        _aipw(c, data=df, block_units=20, memory_budget="20KB")


def test_loading_a_view_above_the_budget_is_refused(cache):
    c, chips, _, _, _ = cache
    view = ChipsView(c, np.array([3, 1, 4]), memory_budget="10KB")
    with pytest.raises(DataError, match="lower the number of units"):
        np.asarray(view)
    x, m = ChipsView(c, np.array([3, 1, 4])).load()
    np.testing.assert_array_equal(x, chips[[3, 1, 4]])

"""The default image path of ``gc.aipw`` / ``gc.ipw`` streams a chips cache (issue 18, item 1).

With ``representation="auto"`` (the default) and no image learner, a chips cache passed as
``images=`` stays on disk as a row-aligned view: the stack's summary and engineered candidates
are computed by blocks, the learned candidate pretrains on its ``max_train`` images gathered
from the cache and embeds by blocks, and the salience reads only the units it shows. The
``streamed`` fixture makes a whole read of the cache, or gathering its rows into memory, fail
the test; the numbers equal those of the same aligned chips and mask as arrays (same seed).
``representation="engineered"`` and ``"learned"`` stream the cache the same way. A memory
budget too small for the learned candidate's training images is a named error that says what
to lower.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.data.chips import ChipsCache, UnitOrderArray
from geocausal.errors import DataError, MissingImagesWarning

N, T, H, C = 70, 2, 8, 3
BAD = 4  # a unit whose period-1 band-0 pixels are all invalid: dropped with a warning
NDATA = 64
LEARNED = {"epochs": 2, "patience": 1, "embed_dim": 4, "widths": (4,), "batch_size": 16,
           "max_train": 60}
#: the engineered statistics read ``block`` units at a time (the ``streamed`` fixture's limit)
BLOCK = 16
AUTO = {"image_options": {"min_learned_images": 50, "learned": LEARNED,
                          "engineered": {"block": BLOCK}}}


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """A cache written as the extractor writes it (shuffled storage order, small chunks,
    nodata values under the mask) and data on a subset of its units in another order."""
    import zarr

    rng = np.random.default_rng(11)
    chips = rng.normal(1.0, 2.0, size=(N, T, H, H, C)).astype("float32")
    mask = rng.random((N, T, H, H)) > 0.1
    chips[~mask] = 0.0
    chips[BAD, 1, ..., 0] = np.nan
    ids = np.arange(500, 500 + N)
    rows = rng.permutation(N)
    store, mstore = np.empty_like(chips), np.empty_like(mask)
    store[rows], mstore[rows] = chips, mask
    path = tmp_path_factory.mktemp("cache") / "chips.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("chips", data=store, chunks=(4, T, H, H, C))
    g.create_array("mask", data=mstore, chunks=(4, T, H, H))
    cache = ChipsCache(path=path, chips=UnitOrderArray(g["chips"], rows),
                       mask=UnitOrderArray(g["mask"], rows), unit_ids=ids,
                       periods=[2019, 2020], bands=list("abc"), outside_ids=[],
                       coverage=np.ones((N, T), bool), chip_size=H, manifest_hash="t")
    keep = rng.permutation(N)
    keep = np.union1d(keep[keep != BAD][:NDATA - 1], [BAD])[rng.permutation(NDATA)]
    bright = np.nanmean(np.where(mask[keep, 0], chips[keep, 0, ..., 1], np.nan), axis=(1, 2))
    x = rng.normal(size=NDATA)
    d = rng.binomial(1, 1 / (1 + np.exp(-2 * (bright - 1.0) - 0.5 * x)))
    y = d * 1.0 + 2 * bright + x + rng.normal(scale=0.5, size=NDATA)
    df = pd.DataFrame({"y": y, "d": d, "x": x}, index=pd.Index(ids[keep], name="unit"))
    return cache, chips, mask, df


@pytest.fixture
def streamed(never_whole, monkeypatch):
    """No whole read (``never_whole``), no rows of the cache gathered into memory
    (``cache.chips[rows]``, what the in-memory alignment does), no read of every row of a view
    at once (at most the engineered statistics' ``BLOCK`` units, or the salience's 6) and no
    gather of every image (the learned candidate gathers its ``max_train`` images only)."""
    import geocausal.encoders.multiscale as ms
    from geocausal.features.align import ChipsView

    def refuse(self, key):
        raise AssertionError("rows of the chips cache were gathered into memory")

    read, gather = ChipsView.read, ms.gather

    def few(self, rows):
        assert len(np.asarray(rows)) <= BLOCK, "all rows of the view were read at once"
        return read(self, rows)

    def some(source, chosen, **kw):
        assert len(chosen) < source.n * source.t, "every image was gathered"
        return gather(source, chosen, **kw)

    monkeypatch.setattr(UnitOrderArray, "__getitem__", refuse)
    monkeypatch.setattr(ChipsView, "read", few)
    monkeypatch.setattr(ms, "gather", some)


def _in_memory(world, data):
    """The aligned chips and mask as arrays (by unit id) and the data matched by position."""
    cache, chips, mask, _ = world
    pos = pd.Index(cache.unit_ids).get_indexer(data.index)
    return (chips[pos], mask[pos]), data.reset_index(drop=True)


def _quiet(fn, *args, **kw):
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est = fn(*args, **kw)
    return est, [x for x in w if issubclass(x.category, MissingImagesWarning)]


def _same(a, b, rtol, atol):
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.sqrt(np.diag(a.vcov)), np.sqrt(np.diag(b.vcov)), rtol=rtol,
                               atol=atol)


def test_aipw_default_stack_streams_the_cache_and_equals_in_memory(world, streamed):
    cache, _, _, df = world
    kw = {"folds": 2, "seed": 3, "options": AUTO}
    lazy, w1 = _quiet(gc.aipw, "y ~ d + x", df, images=cache, **kw)
    # the engineered candidate's one-pixel window is empty where the unit's pixel is masked:
    # imputed with a counted warning, the same on both paths (checked below)
    imputed = [str(x.message) for x in w1 if "imputed the other units' means" in str(x.message)]
    w1 = [x for x in w1 if "imputed the other units' means" not in str(x.message)]
    assert len(w1) == 1 and "1 units" in str(w1[0].message)
    sel = lazy.diagnostics["nuisance_selection"]
    assert not sel["skipped"] and not sel["dropped"]  # all four candidates were built
    assert {"summary", "engineered", "learned"} <= set(lazy.diagnostics["nuisance_quality"]
                                                       .reset_index().to_string().split())
    imgs, data = _in_memory(world, df.drop(index=cache.unit_ids[BAD]))
    mem, w2 = _quiet(gc.aipw, "y ~ d + x", data, images=imgs, **kw)
    assert [str(x.message) for x in w2] == imputed
    _same(lazy, mem, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(lazy.diagnostics["propensity"]["propensity"],
                               mem.diagnostics["propensity"]["propensity"], rtol=1e-5, atol=1e-7)
    sl, sm = lazy.diagnostics["salience"], mem.diagnostics["salience"]
    assert isinstance(sl, dict) and sl["units"] == sm["units"]
    np.testing.assert_array_equal(sl["images"], sm["images"])  # the k units shown, read alone
    np.testing.assert_allclose(sl["maps"], sm["maps"], rtol=1e-4, atol=1e-6)


def test_ipw_default_stack_and_summary_stream_the_cache(world, streamed):
    cache, _, _, df = world
    opts = {"image_options": {"candidates": ("tabular", "summary", "engineered"),
                              "engineered": {"block": BLOCK}}}
    for options in (opts, {"representation": "summary"}):
        lazy, _ = _quiet(gc.ipw, "y ~ d + x", df, images=cache, folds=2, seed=1,
                         options=options)
        imgs, data = _in_memory(world, df.drop(index=cache.unit_ids[BAD]))
        mem, _ = _quiet(gc.ipw, "y ~ d + x", data, images=imgs, folds=2, seed=1,
                        options=options)
        _same(lazy, mem, rtol=1e-6, atol=1e-8)
    without = gc.ipw("y ~ d + x", df.drop(index=cache.unit_ids[BAD]), folds=2, seed=1)
    assert abs(float(without.params["d"]) - float(lazy.params["d"])) > 1e-6  # images used


@pytest.mark.parametrize("rep", ["engineered", "learned"])
def test_aipw_engineered_and_learned_representations_stream_the_cache(world, streamed, rep):
    cache, _, _, df = world
    opts = {"representation": rep,
            "image_options": {"indices": (), "block": BLOCK} if rep == "engineered"
            else LEARNED}
    kw = {"folds": 2, "seed": 2, "options": opts}
    lazy, _ = _quiet(gc.aipw, "y ~ d + x", df, images=cache, **kw)
    imgs, data = _in_memory(world, df.drop(index=cache.unit_ids[BAD]))
    mem, _ = _quiet(gc.aipw, "y ~ d + x", data, images=imgs, **kw)
    _same(lazy, mem, rtol=1e-5, atol=1e-7)
    bl, bm = (e.diagnostics["balance"].select_dtypes("number").to_numpy() for e in (lazy, mem))
    assert bl.shape[0] > 3  # the image features' principal components are balanced too
    np.testing.assert_allclose(bl, bm, rtol=1e-5, atol=1e-7)


def test_learned_candidate_budget_too_small_names_max_train(world, streamed, monkeypatch):
    cache, _, _, df = world
    # room for the blocks of one unit at a time, not for the 60 training images at once
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "40KB")
    with pytest.raises(DataError, match="lower max_train"):
        _quiet(gc.aipw, "y ~ d + x", df, images=cache, folds=2, seed=3,
               options={"image_options": {**AUTO["image_options"],
                                          "candidates": ("tabular", "learned")}})


def test_engineered_blocks_follow_the_memory_budget(world, streamed, monkeypatch):
    import geocausal.features.engineered as eng

    cache, _, _, df = world
    blocks, real = [], eng.engineered_features

    def spy(*a, **kw):
        blocks.append(kw.get("block"))
        return real(*a, **kw)

    monkeypatch.setattr(eng, "engineered_features", spy)
    # one unit's float64 statistics: 2 x 8 x 8 x 3 x 8 B x 10 copies = 30 KB: blocks of 2 units
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "60KB")
    opts = {"image_options": {"candidates": ("tabular", "summary", "engineered")}}
    lazy, _ = _quiet(gc.aipw, "y ~ d + x", df, images=cache, folds=2, seed=4, options=opts)
    assert blocks == [2]
    monkeypatch.delenv("GEOCAUSAL_MEMORY_BUDGET")
    imgs, data = _in_memory(world, df.drop(index=cache.unit_ids[BAD]))
    mem, _ = _quiet(gc.aipw, "y ~ d + x", data, images=imgs, folds=2, seed=4, options=opts)
    assert blocks == [2, None]  # in memory: the default block; the statistics do not depend on it
    _same(lazy, mem, rtol=1e-6, atol=1e-8)

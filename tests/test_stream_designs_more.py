"""A chips cache streams through ``gc.cate``, ``gc.dml_panel``, ``gc.debias`` and ``gc.ppi``.

The cache is written as the extractor writes it (units in a shuffled storage order, small zarr
chunks, nodata values under the mask) and the whole cache is never loaded (the ``streamed``
fixture makes a whole read, or gathering rows of the cache into memory, fail the test). Image learners cross-fit from the cache fold by
fold and summary features are computed by blocks; with one block holding every unit the
streamed designs give the in-memory numbers (the same aligned chips and mask as arrays) for the
same seed. A block that does not fit the memory budget is a named error saying what to lower.
"""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.data.chips import ChipsCache, UnitOrderArray
from geocausal.errors import DataError, MissingImagesWarning
from geocausal.features.align import ChipsView, align_images
from geocausal.nuisance.image_learner import ImageLearner

N, T, H, C = 60, 2, 8, 3
BAD = 5  # unit position whose period-1 band-0 pixels are all invalid
NDATA = 48


def _write_cache(folder, chips, mask, ids, rng):
    """A chips cache as the extractor writes it: units in a shuffled storage order."""
    import zarr

    rows = rng.permutation(len(ids))  # rows[i]: storage row of unit i
    store, mstore = np.empty_like(chips), np.empty_like(mask)
    store[rows], mstore[rows] = chips, mask
    path = folder / "chips-d.zarr"
    g = zarr.open_group(str(path), mode="w")
    g.create_array("chips", data=store, chunks=(3, T, H, H, C))
    g.create_array("mask", data=mstore, chunks=(3, T, H, H))
    return ChipsCache(path=path, chips=UnitOrderArray(g["chips"], rows),
                      mask=UnitOrderArray(g["mask"], rows), unit_ids=ids,
                      periods=[2019, 2020], bands=list("abc"), outside_ids=[],
                      coverage=np.ones((N, T), bool), chip_size=H, manifest_hash="t")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    rng = np.random.default_rng(3)
    chips = rng.normal(1.0, 2.0, size=(N, T, H, H, C)).astype("float32")
    mask = rng.random((N, T, H, H)) > 0.1
    chips[~mask] = 0.0  # a nodata value under the mask, as the extractor leaves it
    chips[BAD, 1, ..., 0] = np.nan
    ids = np.arange(200, 200 + N)
    cache = _write_cache(tmp_path_factory.mktemp("cache"), chips, mask, ids, rng)
    keep = rng.permutation(N)
    keep = np.union1d(keep[keep != BAD][:NDATA - 1], [BAD])[rng.permutation(NDATA)]
    bright = np.nanmean(np.where(mask[keep, 0], chips[keep, 0, ..., 1], np.nan), axis=(1, 2))
    x = rng.normal(size=NDATA)
    d = rng.binomial(1, 1 / (1 + np.exp(-(bright - 1.0) - 0.5 * x)))
    y = d * (1.0 + bright) + x + rng.normal(scale=0.5, size=NDATA)
    df = pd.DataFrame({"y": y, "d": d, "x": x}, index=pd.Index(ids[keep], name="unit"))
    return cache, chips, mask, df, keep


@pytest.fixture
def streamed(never_whole, monkeypatch):
    """Beyond ``never_whole``: no rows of the cache are gathered at all (``cache.chips[rows]``,
    which the in-memory alignment does); the streamed path reads storage blocks only.
    """
    def refuse(self, key):
        raise AssertionError("rows of the chips cache were gathered into memory")

    monkeypatch.setattr(UnitOrderArray, "__getitem__", refuse)


def _learner(**kw):
    return ImageLearner(epochs=1, widths=(4,), embed_dim=4, batch_size=8, seed=2, period=0,
                        **kw)


def _quiet(fn, *args, **kw):
    """Run a design, returning its result and the MissingImagesWarnings it emitted."""
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        est = fn(*args, **kw)
    return est, [x for x in w if issubclass(x.category, MissingImagesWarning)]


def _in_memory(world, data, per_row=None):
    """The aligned chips and mask as arrays, and the data matched to them by position."""
    cache, chips, mask, _, _ = world
    keys = data.index if per_row is None else pd.Index(data[per_row])
    pos = pd.Index(cache.unit_ids).get_indexer(keys)
    return (chips[pos], mask[pos]), data.reset_index(drop=per_row is None)


def _same(a, b, rtol=1e-6, atol=1e-8):
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=rtol, atol=atol)
    np.testing.assert_allclose(np.sqrt(np.diag(a.vcov)), np.sqrt(np.diag(b.vcov)), rtol=rtol,
                               atol=atol)


# ----------------------------------------------------------------------------- the view
def test_a_panel_view_reads_each_unit_once(world, streamed):
    cache, chips, mask, df, _ = world
    six = [*[u for u in df.index[:6] if u != cache.unit_ids[BAD]][:5], cache.unit_ids[BAD]]
    panel = pd.DataFrame({"unit": np.repeat(six, 3), "t": np.tile([0, 1, 2], 6)})
    with pytest.warns(MissingImagesWarning, match="3 data rows"):  # BAD's 3 rows dropped
        al = align_images(cache, panel, unit="unit", lazy=True)
    assert isinstance(al.images, ChipsView) and len(al.images) == 15
    view, inv = al.images.distinct()
    assert len(view) == 5 and np.array_equal(view.units[inv], al.images.units)
    from geocausal.features.images import summary_features

    pos = al.images.units
    np.testing.assert_allclose(al.images.summary_features(), summary_features(chips[pos], mask[pos]),
                               rtol=1e-12)
    x, m = al.images.read([4, 0, 4])
    np.testing.assert_array_equal(x, chips[pos[[4, 0, 4]]])
    np.testing.assert_array_equal(m, mask[pos[[4, 0, 4]]])


def test_engineered_and_learned_features_of_a_view_stream_and_equal_in_memory(world, streamed):
    from geocausal.features.images import image_features

    cache, chips, mask, df, _ = world
    panel = pd.DataFrame({"unit": np.repeat(df.index.to_numpy()[:20], 2)})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MissingImagesWarning)
        al = align_images(cache, panel, unit="unit", lazy=True)
    once, inv = np.unique(al.images.units, return_inverse=True)  # each unit once (a panel)
    learned = {"encoder": "cnn", "epochs": 1, "embed_dim": 4, "widths": (4,),
               "progress": False, "max_train": 30}
    for rep, kw in (("engineered", {"indices": ()}), ("learned", learned)):
        lazy = image_features(al.images, len(al.data), representation=rep, seed=0, **kw)
        mem = image_features((chips[once], mask[once]), len(once), representation=rep, seed=0,
                             **kw)
        np.testing.assert_allclose(lazy, mem[inv.ravel()], rtol=1e-6, atol=1e-7)
        np.testing.assert_array_equal(lazy[0::2], lazy[1::2])  # a unit's two rows


# ----------------------------------------------------------------------------- gc.cate
CATE = {"folds": 2, "seed": 1, "progress": False}


def test_cate_summary_features_from_a_cache_equal_in_memory(world, streamed):
    cache, _, _, df, _ = world
    for rep in ("sequence", "single"):
        lazy, w1 = _quiet(gc.cate, "y ~ d + x", df, images=cache, propensity=0.5,
                          options={"evaluate": False, "representation": rep}, **CATE)
        assert len(w1) == 1 and "1 units" in str(w1[0].message)
        imgs, data = _in_memory(world, df)
        mem, _ = _quiet(gc.cate, "y ~ d + x", data, images=imgs, propensity=0.5,
                        options={"evaluate": False, "representation": rep}, **CATE)
        _same(lazy, mem, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(lazy.diagnostics["cate"], mem.diagnostics["cate"], rtol=1e-10)


def test_cate_image_learner_streams_the_cache_and_equals_in_memory(world, streamed):
    cache, chips, mask, df, _ = world
    lrn = {"propensity": _learner()}
    opts = {"n_splits": 2, "n_groups": 2, "n_boot": 19}  # the evaluation refits on halves
    lazy, w1 = _quiet(gc.cate, "y ~ d + x", df, images=cache, learners=lrn, options=opts,
                      **CATE)
    assert len(w1) == 1 and lazy.fitted.streamed and lazy.diagnostics["features"]["raw_chips"]
    # new units from the cache: the streamed image learner reads their chips by blocks
    new = pd.DataFrame({"x": [0.0, 1.0, -1.0]}, index=pd.Index(cache.unit_ids[[3, 7, 40]]))
    eff_lazy = lazy.fitted.effect(new, images=cache)
    imgs, data = _in_memory(world, df)
    mem, _ = _quiet(gc.cate, "y ~ d + x", data, images=imgs, learners=lrn, options=opts,
                    **CATE)
    assert not mem.fitted.streamed
    for name in ("blp", "gates", "rate", "calibration"):
        a, b = (e.tables[name].select_dtypes("number").to_numpy() for e in (lazy, mem))
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6, err_msg=name)
    _same(lazy, mem, rtol=1e-4, atol=1e-6)
    np.testing.assert_allclose(lazy.diagnostics["cate"], mem.diagnostics["cate"], rtol=1e-4,
                               atol=1e-6)
    np.testing.assert_allclose(lazy.fitted.fit.e, mem.fitted.fit.e, rtol=1e-4, atol=1e-6)
    arrays = (chips[[3, 7, 40]], mask[[3, 7, 40]])
    eff_mem = mem.fitted.effect(new.reset_index(drop=True), images=arrays)
    np.testing.assert_allclose(eff_lazy.to_numpy(), eff_mem.to_numpy(), rtol=1e-4, atol=1e-6)
    # the streamed model predicts new chips given as arrays too (as transport_cate passes)
    eff_arr = lazy.fitted.effect(new.reset_index(drop=True), images=arrays)
    np.testing.assert_allclose(eff_arr.to_numpy(), eff_lazy.to_numpy(), rtol=1e-6, atol=1e-8)
    assert eff_lazy.index.tolist() == cache.unit_ids[[3, 7, 40]].tolist()


def test_cate_block_too_large_is_refused_with_what_to_lower(world, streamed, monkeypatch):
    cache, _, _, df, _ = world
    with pytest.raises(DataError, match="lower block_units"):
        _quiet(gc.cate, "y ~ d + x", df, images=cache, options={"evaluate": False},
               learners={"propensity": _learner(block_units=20, memory_budget="20KB")}, **CATE)
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "1KB")  # the summary features' blocks
    with pytest.raises(DataError, match="raise memory_budget / GEOCAUSAL_MEMORY_BUDGET"):
        _quiet(gc.cate, "y ~ d + x", df, images=cache, propensity=0.5,
               options={"evaluate": False}, **CATE)


# ----------------------------------------------------------------------------- gc.dml_panel
def _panel(df):
    rng = np.random.default_rng(5)
    units = np.repeat(df.index.to_numpy(), 3)
    out = pd.DataFrame({"unit": units, "time": np.tile([0, 1, 2], len(df)),
                        "x1": rng.normal(size=len(units))})
    out["d"] = out.x1 + rng.normal(size=len(units))
    out["y"] = 0.5 * out.d + out.x1 + rng.normal(size=len(units))
    return out


def test_dml_panel_summary_features_from_a_cache_equal_in_memory(world, streamed):
    from sklearn.linear_model import LinearRegression

    cache, _, _, df, _ = world
    panel = _panel(df)
    kw = {"unit": "unit", "time": "time", "approach": "pooled", "seed": 0, "progress": False,
          "learners": {"ml_l": LinearRegression(), "ml_m": LinearRegression()},
          "folds": gc.Folds.group("unit", k=3)}
    lazy, w1 = _quiet(gc.dml_panel, "y ~ d + x1", panel, images=cache, **kw)
    assert len(w1) == 1 and "3 data rows" in str(w1[0].message)
    imgs, data = _in_memory(world, panel, per_row="unit")
    mem, _ = _quiet(gc.dml_panel, "y ~ d + x1", data, images=imgs, **kw)
    _same(lazy, mem, rtol=1e-9, atol=1e-12)
    without = gc.dml_panel("y ~ d + x1", panel.loc[panel.unit != cache.unit_ids[BAD]], **kw)
    assert abs(float(without.params["d"]) - float(lazy.params["d"])) > 1e-9  # images used


def test_dml_panel_block_too_large_is_refused(world, streamed, monkeypatch):
    cache, _, _, df, _ = world
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "1KB")
    with pytest.raises(DataError, match="one unit's chips take"):
        _quiet(gc.dml_panel, "y ~ d + x1", _panel(df), images=cache, unit="unit",
               time="time", approach="within", progress=False)


# ----------------------------------------------------------------------------- debias / ppi
def _calibration():
    rng = np.random.default_rng(7)
    truth = rng.normal(size=80)
    return pd.DataFrame({"yhat": 0.7 * truth + rng.normal(scale=0.3, size=80), "truth": truth})


@pytest.mark.parametrize("learner", ["summary", "image"])
def test_debias_and_ppi_from_a_cache_equal_in_memory(world, streamed, learner):
    from sklearn.linear_model import LogisticRegression

    cache, _, _, df, _ = world
    rng = np.random.default_rng(9)
    data = df.assign(yhat=0.7 * df.y + rng.normal(scale=0.3, size=len(df)),
                     truth=np.where(np.arange(len(df)) % 3 == 0, df.y, np.nan))
    prop = _learner() if learner == "image" else LogisticRegression()
    common = {"learners": {"propensity": prop}, "folds": 2, "seed": 1}
    deb = {"calibration": _calibration(), "method": "lcc", "interval": "delta", **common}
    ppi = {"truth": "truth", "estimand": "ATE", **common}
    lazy_d, w1 = _quiet(gc.debias, "yhat ~ d + x", data, images=cache, **deb)
    lazy_p, w2 = _quiet(gc.ppi, "yhat ~ d + x", data, images=cache, **ppi)
    assert len(w1) == len(w2) == 1
    if learner == "image":
        assert "ImageLearner" in lazy_d.diagnostics["propensity"]
    imgs, mem_data = _in_memory(world, data)
    mem_d, _ = _quiet(gc.debias, "yhat ~ d + x", mem_data, images=imgs, **deb)
    mem_p, _ = _quiet(gc.ppi, "yhat ~ d + x", mem_data, images=imgs, **ppi)
    tol = {"rtol": 1e-4, "atol": 1e-6} if learner == "image" else {"rtol": 1e-9, "atol": 1e-12}
    _same(lazy_d, mem_d, **tol)
    _same(lazy_p, mem_p, **tol)


def test_debias_and_ppi_block_too_large_is_refused(world, streamed, monkeypatch):
    cache, _, _, df, _ = world
    data = df.assign(yhat=df.y, truth=np.where(np.arange(len(df)) % 3 == 0, df.y, np.nan))
    big = {"learners": {"propensity": _learner(block_units=20, memory_budget="20KB")},
           "folds": 2, "images": cache}
    with pytest.raises(DataError, match="lower block_units"):
        _quiet(gc.debias, "yhat ~ d + x", data, calibration=_calibration(), method="lcc",
               interval="delta", **big)
    with pytest.raises(DataError, match="lower block_units"):
        _quiet(gc.ppi, "yhat ~ d + x", data, truth="truth", estimand="ATE", **big)
    with pytest.raises(DataError, match="image learner: pass images= as chips"):
        _quiet(gc.ppi, "yhat ~ d + x", data, truth="truth", estimand="ATE",
               learners=big["learners"], images=data[["x"]])
    monkeypatch.setenv("GEOCAUSAL_MEMORY_BUDGET", "1KB")  # the summary features' blocks
    with pytest.raises(DataError, match="one unit's chips take"):
        _quiet(gc.ppi, "yhat ~ d + x", data, truth="truth", estimand="ATE", images=cache)


# ----------------------------------------------------------------------------- placement, balance
def test_placement_and_balance_from_a_cache_equal_in_memory(world, streamed):
    cache, chips, mask, df, _ = world
    lazy_b, _ = _quiet(gc.balance, "y ~ d + x", df, images=cache, folds=2, seed=1)
    lazy_p, w = _quiet(gc.placement, "d ~ x", df, images=cache, folds=2, seed=1,
                       learners={"image_propensity": _learner()})
    assert len(w) == 1
    (x, m), data = _in_memory(world, df)
    mem_b, _ = _quiet(gc.balance, "y ~ d + x", data, images=(x, m), folds=2, seed=1)
    pd.testing.assert_frame_equal(lazy_b.reset_index(drop=True), mem_b.reset_index(drop=True),
                                  rtol=1e-9)
    # the image learner sees masked pixels as NaN (as the cache's mask makes it)
    seen = np.where(m[..., None], x, np.nan).astype("float32")
    mem_p, _ = _quiet(gc.placement, "d ~ x", data, images=seen, folds=2, seed=1,
                      learners={"image_propensity": _learner()})
    assert "auc_image" in lazy_p.params.index
    _same(lazy_p, mem_p, rtol=1e-4, atol=1e-6)


def test_placement_block_too_large_is_refused(world, streamed):
    cache, _, _, df, _ = world
    with pytest.raises(DataError, match="lower block_units"):
        _quiet(gc.placement, "d ~ x", df, images=cache, folds=2,
               learners={"image_propensity": _learner(block_units=20, memory_budget="20KB")})


# ----------------------------------------------------------------------------- study features
def test_study_learned_features_stream_from_the_cache(world, streamed, monkeypatch):
    import importlib
    from types import SimpleNamespace

    from geocausal.data.study import _features
    from geocausal.features.images import cache_features

    embed = importlib.import_module("geocausal.encoders.embed")  # the module, not gc.embed
    cache, _, _, _, _ = world
    seen = []

    def learned(chips, seed=0, **kw):  # a stand-in encoder: per-period summaries, streamed
        seen.append(chips)
        return cache_features(chips, "summary")

    monkeypatch.setattr(embed, "learned_features", learned)
    ids = cache.unit_ids[[9, 2, 9, 30]]
    table = pd.DataFrame({"uid": ids, "year": ["2020", "2019", "2019", "2020"]})
    manifest = SimpleNamespace(units=SimpleNamespace(id="uid"), role=lambda r: ["year"])
    got = _features(manifest, table, cache, "learned", 0)
    assert seen == [cache]  # the cache itself, never its arrays
    ref = cache_features(cache, "summary").reshape(N, T, -1)  # by unit and period
    np.testing.assert_allclose(got.to_numpy(), ref[[9, 2, 9, 30], [1, 0, 0, 1]], rtol=1e-12)
    assert got.index.equals(table.index) and got.shape[1] == 2 * C

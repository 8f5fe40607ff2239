"""Pixel distributions per unit equal a direct numpy computation on the raster."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from rasterio.transform import from_origin
from shapely.geometry import Point, box

from geocausal.data.distributions import pixel_distributions, weighted_quantiles
from geocausal.data.rasters import write_geotiff
from geocausal.errors import DataError, EmptyZoneWarning

CRS = "EPSG:32633"
X0, Y0, RES = 400_000.0, 4_600_000.0, 10.0
N = 30


@pytest.fixture
def raster(tmp_path):
    rng = np.random.default_rng(3)
    red = rng.uniform(0.05, 0.3, (N, N)).astype(np.float32)
    nir = rng.uniform(0.2, 0.6, (N, N)).astype(np.float32)
    red[12, 13] = -1.0  # nodata
    nir[12, 13] = -1.0
    path = write_geotiff(tmp_path / "img.tif", np.stack([red, nir]), CRS,
                         from_origin(X0, Y0, RES, RES), nodata=-1.0)
    return path, red, nir


def _rect(r0: float, r1: float, c0: float, c1: float):
    """A rectangle given in (fractional) pixel coordinates, in the raster CRS."""
    return box(X0 + RES * c0, Y0 - RES * r1, X0 + RES * c1, Y0 - RES * r0)


def _direct(arr: np.ndarray, r0: float, r1: float, c0: float, c1: float):
    """Pixel values and exact overlap fractions of a pixel-aligned rectangle, by numpy."""
    rows = np.arange(N)[:, None]
    cols = np.arange(N)[None, :]
    wr = np.clip(np.minimum(rows + 1, r1) - np.maximum(rows, r0), 0, None)
    wc = np.clip(np.minimum(cols + 1, c1) - np.maximum(cols, c0), 0, None)
    w = wr * wc
    keep = (w > 0) & (arr != -1.0)
    return arr[keep].astype(float), w[keep]


RECTS = [(2.25, 6.5, 3.75, 9.0), (10.5, 15.25, 11.0, 16.75), (25.0, 29.75, 0.25, 4.5)]


def test_polygon_samples_and_quantiles_equal_numpy(raster):
    path, red, _ = raster
    units = gpd.GeoDataFrame({"id": ["a", "b", "c"]}, geometry=[_rect(*r) for r in RECTS], crs=CRS)
    grid = np.linspace(0.05, 0.95, 10)
    d = pixel_distributions(path, units, band=1, bands=["red", "nir"], quantiles=grid,
                            id_col="id")
    assert list(d.unit_ids) == ["a", "b", "c"] and d.variable == "red"
    for k, rect in enumerate(RECTS):
        v, w = _direct(red, *rect)
        got = sorted(zip(d.values[k], d.weights[k]))
        want = sorted(zip(v, w))
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=0, atol=1e-7)
        # weights are multiples of 1/16: repeating values 16 w times gives the same
        # distribution, whose inverted-CDF quantiles numpy computes directly
        rep = np.repeat(v, np.round(w * 16).astype(int))
        np.testing.assert_allclose(d.quantiles[k], np.quantile(rep, grid, method="inverted_cdf"))
        assert d.total_weight[k] == pytest.approx(w.sum())
    frame = d.to_frame()
    assert len(frame) == sum(len(v) for v in d.values) and set(frame.unit) == {"a", "b", "c"}


def test_units_in_another_crs_give_the_same(raster):
    path, red, _ = raster
    units = gpd.GeoDataFrame({"id": [1, 2, 3]}, geometry=[_rect(*r) for r in RECTS], crs=CRS)
    here = pixel_distributions(path, units, band="red", bands=["red", "nir"], quantiles=5)
    there = pixel_distributions(path, units.to_crs("EPSG:4326"), band="red",
                                bands=["red", "nir"], quantiles=5)
    np.testing.assert_allclose(here.quantiles, there.quantiles)
    np.testing.assert_allclose(here.total_weight, there.total_weight, rtol=1e-3)


def test_ndvi_and_callable_index(raster):
    path, red, nir = raster
    units = gpd.GeoDataFrame({"id": [0]}, geometry=[_rect(*RECTS[1])], crs=CRS)
    d = pixel_distributions(path, units, index="ndvi", bands=["red", "nir"])
    assert d.variable == "NDVI"  # spyndex's index, found by the band roles
    r, w = _direct(red, *RECTS[1])
    n, _ = _direct(nir, *RECTS[1])
    ndvi = (n - r) / (n + r)
    np.testing.assert_allclose(np.sort(d.values[0]), np.sort(ndvi), rtol=1e-6)
    ratio = pixel_distributions(path, units, index=lambda b: b["nir"] / b["red"],
                                bands=["red", "nir"], samples=False, quantiles=[0.5])
    assert ratio.values is None
    rep = np.repeat(n / r, np.round(w * 16).astype(int))
    assert ratio.quantiles[0, 0] == pytest.approx(np.quantile(rep, 0.5, method="inverted_cdf"),
                                                  rel=1e-6)


def test_point_buffer_weights_match_exact_areas(raster):
    path, red, _ = raster
    centre = Point(X0 + RES * 20.3, Y0 - RES * 8.6)
    units = gpd.GeoDataFrame({"id": [0]}, geometry=[centre], crs=CRS)
    d = pixel_distributions(path, units.to_crs("EPSG:4326"), band="red", bands=["red", "nir"],
                            buffer_m=55.0)
    here = pixel_distributions(path, units, band="red", bands=["red", "nir"], buffer_m=55.0)
    circle = centre.buffer(55.0, quad_segs=32)
    exact = {}
    for r in range(N):
        for c in range(N):
            a = circle.intersection(_rect(r, r + 1, c, c + 1)).area / RES**2
            if a > 0:
                exact[float(red[r, c])] = a
    # exact coverage fractions (exactextract), not the 1/64 steps of the old 8x8 supersampling
    got = dict(zip(here.values[0].tolist(), here.weights[0].tolist()))
    assert set(got) == set(exact)
    assert max(abs(got[k] - exact[k]) for k in exact) < 1e-6
    # through EPSG:4326 and back to the UTM zone the circle moves by millimetres
    assert d.total_weight[0] == pytest.approx(sum(exact.values()), rel=1e-4)
    assert d.total_weight[0] == pytest.approx(np.pi * 5.5**2, rel=1e-3)


def test_coverage_equals_exactextract_called_directly(raster):
    from exactextract import exact_extract

    path, *_ = raster
    pts = [Point(X0 + RES * 7.2, Y0 - RES * 9.9), Point(X0 + RES * 15.5, Y0 - RES * 22.1)]
    units = gpd.GeoDataFrame({"id": [3, 4]}, geometry=pts, crs=CRS)
    d = pixel_distributions(path, units, band="nir", bands=["red", "nir"], buffer_m=42.0,
                            id_col="id")
    zones = gpd.GeoDataFrame({"id": [3, 4]}, geometry=units.buffer(42.0, quad_segs=32), crs=CRS)
    peer = exact_extract(str(path), zones, ["values", "coverage"], output="pandas")
    for k in range(2):
        want = sorted(zip(peer["band_2_values"][k], peer["band_2_coverage"][k]))
        got = sorted(zip(d.values[k], d.weights[k]))
        np.testing.assert_allclose(np.array(got), np.array(want), rtol=1e-12)


def test_manifest_source_with_cloud_mask(tmp_path, raster):
    import rasterio

    path, red, nir = raster
    qa = np.zeros((N, N), np.float32)
    qa[3:5, 4:6] = 8.0
    with rasterio.open(path) as src:
        write_geotiff(tmp_path / "p1.tif", np.stack([src.read(1), src.read(2), qa]), CRS,
                      src.transform, nodata=-1.0)
    units = gpd.GeoDataFrame({"uid": [7]}, geometry=[_rect(*RECTS[0])], crs=CRS)
    units.to_file(tmp_path / "units.gpkg")
    man = {"name": "d", "units": {"path": "units.gpkg", "id": "uid"},
           "rasters": [{"period": 1, "paths": ["p1.tif"], "bands": ["red", "nir", "qa"],
                        "cloud_mask": {"band": "qa", "clear_values": [0]}}],
           "periods": [1], "chip": {"size_px": 4}}
    (tmp_path / "m.yaml").write_text(yaml.safe_dump(man))
    d = pixel_distributions(tmp_path / "m.yaml", band="red", quantiles=[0.5])
    v, w = _direct(np.where(qa == 0, red, -1.0), *RECTS[0])
    np.testing.assert_allclose(np.sort(d.values[0]), np.sort(v), rtol=1e-6)
    assert d.unit_ids.tolist() == [7] and d.period == 1


def test_bad_input(raster):
    path, *_ = raster
    pts = gpd.GeoDataFrame({"id": [0, 1]}, geometry=[Point(X0 + 50, Y0 - 50),
                                                     Point(X0 - 1e5, Y0)], crs=CRS)
    with pytest.raises(DataError, match="buffer_m"):
        pixel_distributions(path, pts, band=1)
    with pytest.raises(DataError, match="exactly one of 'band' and 'index'"):
        pixel_distributions(path, pts, buffer_m=20.0)
    with pytest.raises(DataError, match="band 'blue' not in"):
        pixel_distributions(path, pts, band="blue", bands=["red", "nir"], buffer_m=20.0)
    with pytest.warns(EmptyZoneWarning, match="1 units have no valid pixel"):
        d = pixel_distributions(path, pts, band=1, buffer_m=20.0, quantiles=[0.5])
    assert np.isnan(d.quantiles[1, 0]) and np.isfinite(d.quantiles[0, 0])


def test_weighted_quantiles_equal_weights_match_numpy():
    x = np.random.default_rng(0).normal(size=101)
    grid = np.linspace(0, 1, 21)
    np.testing.assert_allclose(weighted_quantiles(x, np.ones_like(x), grid),
                               np.quantile(x, grid, method="inverted_cdf"))
    assert pd.isna(weighted_quantiles(x, np.zeros_like(x), [0.5])[0])


def test_scheduler_chunks_equal_serial(raster):
    from dask.distributed import LocalCluster

    path, *_ = raster
    units = gpd.GeoDataFrame({"id": range(6)}, geometry=[_rect(*r) for r in RECTS * 2], crs=CRS)
    kw = dict(band="red", bands=["red", "nir"], quantiles=7, chunk_units=2)
    serial = pixel_distributions(path, units, **kw)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=False,
                      dashboard_address=None) as cluster:
        par = pixel_distributions(path, units, scheduler=cluster.scheduler_address, **kw)
    np.testing.assert_array_equal(serial.quantiles, par.quantiles)
    for a, b in zip(serial.weights, par.weights):
        np.testing.assert_array_equal(a, b)

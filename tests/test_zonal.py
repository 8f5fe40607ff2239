"""Zonal statistics equal hand computations on small rasters, and rasterstats where both apply."""

from __future__ import annotations

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
from rasterio.transform import from_origin
from shapely.geometry import Point, box

from geocausal.data.rasters import write_geotiff
from geocausal.data.zonal import (
    index_pixels,
    sample_stats,
    weighted_quantiles,
    zonal_stats,
    zone_geometries,
)
from geocausal.errors import DataError, EmptyZoneWarning
from geocausal.features.roles import resolve_band_roles

CRS = "EPSG:32633"
X0, Y0, RES = 400_000.0, 4_600_000.0, 10.0
N = 20
NAMES = ["red", "nir", "lc"]


@pytest.fixture
def raster(tmp_path):
    rng = np.random.default_rng(7)
    red = rng.uniform(0.05, 0.3, (N, N)).round(3).astype(np.float32)
    nir = rng.uniform(0.2, 0.6, (N, N)).round(3).astype(np.float32)
    lc = rng.integers(1, 4, (N, N)).astype(np.float32)
    red[5, 6] = nir[5, 6] = lc[5, 6] = -1.0  # nodata
    path = write_geotiff(tmp_path / "img.tif", np.stack([red, nir, lc]), CRS,
                         from_origin(X0, Y0, RES, RES), nodata=-1.0)
    return path, red, nir, lc


def _rect(r0: float, r1: float, c0: float, c1: float):
    return box(X0 + RES * c0, Y0 - RES * r1, X0 + RES * c1, Y0 - RES * r0)


def _by_hand(arr: np.ndarray, r0: float, r1: float, c0: float, c1: float):
    """Values and exact coverage fractions of a rectangle given in pixel coordinates."""
    rows, cols = np.arange(N)[:, None], np.arange(N)[None, :]
    w = (np.clip(np.minimum(rows + 1, r1) - np.maximum(rows, r0), 0, None)
         * np.clip(np.minimum(cols + 1, c1) - np.maximum(cols, c0), 0, None))
    keep = (w > 0) & (arr != -1.0)
    return arr[keep].astype(float), w[keep]


RECTS = [(2.25, 6.5, 3.75, 9.0), (10.5, 15.25, 11.0, 16.75), (0.0, 3.0, 0.0, 4.0)]


def test_partial_pixels_equal_hand_computation(raster):
    path, red, *_ = raster
    zones = gpd.GeoSeries([_rect(*r) for r in RECTS], crs=CRS)
    grid = [0.1, 0.5, 0.9]
    z = zonal_stats(path, zones, bands=["red"], band_names=NAMES, ids=["a", "b", "c"],
                    stats=["mean", "sum", "sd", "min", "max", "count"], quantiles=grid)
    assert list(z.index) == ["a", "b", "c"]
    assert list(z.columns) == ["red_mean", "red_sum", "red_sd", "red_min", "red_max",
                               "red_count", "red_q10", "red_q50", "red_q90"]
    for k, rect in enumerate(RECTS):
        v, w = _by_hand(red, *rect)
        mean = np.sum(w * v) / w.sum()
        row = z.iloc[k]
        assert row.red_count == pytest.approx(w.sum(), abs=1e-9)
        assert row.red_sum == pytest.approx(np.sum(w * v), rel=1e-6)
        assert row.red_mean == pytest.approx(mean, rel=1e-6)
        assert row.red_sd == pytest.approx(np.sqrt(np.sum(w * (v - mean) ** 2) / w.sum()),
                                           rel=1e-5)
        assert (row.red_min, row.red_max) == pytest.approx((v.min(), v.max()))
        # coverage fractions here are multiples of 1/16: repeating each value 16 w times
        # gives the same distribution, whose inverted-CDF quantiles numpy computes unweighted
        rep = np.repeat(v, np.round(w * 16).astype(int))
        np.testing.assert_allclose(row[["red_q10", "red_q50", "red_q90"]].to_numpy(float),
                                   np.quantile(rep, grid, method="inverted_cdf"), rtol=1e-6)
    # the nodata pixel (5, 6) lies in the first rectangle: its count is short of the area
    assert z.red_count.iloc[0] == pytest.approx((6.5 - 2.25) * (9.0 - 3.75) - 1.0)


def test_circle_weights_equal_exact_areas(raster):
    path, red, *_ = raster
    centre = Point(X0 + RES * 9.3, Y0 - RES * 8.6)
    units = gpd.GeoDataFrame({"id": [0]}, geometry=[centre], crs=CRS).to_crs("EPSG:4326")
    zones = zone_geometries(units, kind="buffer", radius_m=45.0)
    z = zonal_stats(path, zones, bands=["red"], band_names=NAMES, stats=["mean", "count"])
    circle = gpd.GeoSeries([centre], crs=CRS).to_crs("EPSG:4326").to_crs(
        units.estimate_utm_crs()).buffer(45.0, quad_segs=32).to_crs(CRS).iloc[0]
    area = np.array([[circle.intersection(_rect(r, r + 1, c, c + 1)).area / RES**2
                      for c in range(N)] for r in range(N)])
    keep = (area > 0) & (red != -1)
    # exact, not quantised to 1/16 as the old supersampling was
    assert z.red_count.iloc[0] == pytest.approx(area[keep].sum(), rel=1e-6)
    assert z.red_mean.iloc[0] == pytest.approx(np.sum(area[keep] * red[keep]) / area[keep].sum(),
                                               rel=1e-6)
    assert area.sum() == pytest.approx(np.pi * 4.5**2, rel=2e-3)
    assert area.sum() - z.red_count.iloc[0] == pytest.approx(area[5, 6])  # the nodata pixel


def test_equal_to_rasterstats_on_pixel_aligned_polygons(raster):
    rasterstats = pytest.importorskip("rasterstats")
    path, *_ = raster
    rects = [(1, 5, 2, 9), (8, 16, 10, 13), (0, 20, 0, 20), (12, 19, 1, 7)]
    zones = gpd.GeoSeries([_rect(*r) for r in rects], crs=CRS)
    z = zonal_stats(path, zones, bands=["nir"], categorical=["lc"], band_names=NAMES,
                    stats=["mean", "sum", "min", "max", "count"], quantiles=[0.5])
    peer = rasterstats.zonal_stats(list(zones), str(path), band=2,
                                   stats=["mean", "sum", "min", "max", "count", "median"])
    cats = rasterstats.zonal_stats(list(zones), str(path), band=3, categorical=True,
                                   stats=["majority", "count"])
    for k in range(len(rects)):
        assert z.nir_mean.iloc[k] == pytest.approx(peer[k]["mean"], rel=1e-6)
        assert z.nir_sum.iloc[k] == pytest.approx(peer[k]["sum"], rel=1e-6)
        assert z.nir_min.iloc[k] == pytest.approx(peer[k]["min"])
        assert z.nir_max.iloc[k] == pytest.approx(peer[k]["max"])
        assert z.nir_count.iloc[k] == pytest.approx(peer[k]["count"])
        assert z.lc_majority.iloc[k] == cats[k]["majority"]
        for cls in (1, 2, 3):
            assert z[f"lc_frac_{cls}"].iloc[k] == pytest.approx(
                cats[k].get(float(cls), 0) / cats[k]["count"])
        # an odd count: rasterstats' median (numpy's) is the middle order statistic, which
        # the inverted CDF also picks
        if peer[k]["count"] % 2 == 1:
            assert z.nir_q50.iloc[k] == pytest.approx(peer[k]["median"])


def test_tiles_pool_to_the_single_file(raster, tmp_path):
    import rasterio
    from rasterio.windows import Window

    path, *_ = raster
    tiles = []
    with rasterio.open(path) as src:
        for k, (c0, w) in enumerate([(0, 9), (9, 11)]):
            win = Window(c0, 0, w, N)
            tiles.append(write_geotiff(tmp_path / f"t{k}.tif", src.read(window=win), CRS,
                                       src.window_transform(win), nodata=-1.0))
    zones = gpd.GeoSeries([_rect(*r) for r in RECTS], crs=CRS)  # the first straddles the seam
    kw = dict(bands=["red", "nir"], categorical=["lc"], band_names=NAMES, quantiles=[0.3, 0.8],
              stats=["mean", "sum", "sd", "min", "max", "count", "majority"])
    one = zonal_stats(path, zones, **kw)
    two = zonal_stats(tiles, zones, **kw)
    assert list(one.columns) == list(two.columns)
    np.testing.assert_allclose(two.to_numpy(float), one.to_numpy(float), rtol=1e-6)


def test_sample_stats_definitions():
    v = np.array([1.0, 2.0, 2.0, 5.0])
    w = np.array([0.5, 1.0, 0.25, 1.0])
    d = sample_stats(v, w, ["mean", "sum", "sd", "majority"], [0.2, 0.5])
    assert d["count"] == 2.75 and d["sum"] == 0.5 + 2.5 + 5.0
    assert d["mean"] == pytest.approx(8.0 / 2.75)
    assert d["majority"] == 2.0  # 1.25 pixels of 2 against 1.0 of 5
    np.testing.assert_allclose(d["quantiles"], [2.0, 2.0])
    assert np.isnan(sample_stats(v, 0 * w, ["mean"])["mean"])
    np.testing.assert_allclose(weighted_quantiles(v, w, [0.5, 1.0]),
                               np.quantile(v, [0.5, 1.0], weights=w, method="inverted_cdf"))


def test_spectral_index_from_band_roles(raster):
    path, red, nir, _ = raster
    zones = gpd.GeoSeries([_rect(*RECTS[1])], crs=CRS)
    z = zonal_stats(path, zones, indices=["NDVI", "savi"], band_names=NAMES, stats=["mean"])
    r, w = _by_hand(red, *RECTS[1])
    n, _ = _by_hand(nir, *RECTS[1])
    ndvi = (n - r) / (n + r)  # the test's own check of spyndex's formula
    assert z.NDVI_mean.iloc[0] == pytest.approx(np.sum(w * ndvi) / w.sum(), rel=1e-6)
    assert z.columns.tolist() == ["NDVI_mean", "SAVI_mean"]
    roles = resolve_band_roles(["B4", "B8"], preset="sentinel2")
    got = index_pixels("NDVI", {"B4": np.array([0.1]), "B8": np.array([0.3])}, roles)
    assert got[0] == pytest.approx(0.5)
    with pytest.raises(DataError, match="spyndex codes"):
        zonal_stats(path, zones, indices=["NDVI"], band_names=["a", "b", "c"])
    with pytest.raises(DataError, match="unknown spectral index 'NOPE'"):
        zonal_stats(path, zones, indices=["NOPE"], band_names=NAMES)


def test_chip_zone_is_the_chip_window(raster):
    from geocausal.data.zonal import _as_tiles

    path, red, *_ = raster
    tile = _as_tiles(path, NAMES)[0][0]
    units = gpd.GeoDataFrame({"id": [1]}, geometry=[Point(X0 + RES * 7.5, Y0 - RES * 9.2)],
                             crs=CRS)
    zones = zone_geometries(units, kind="chip", chip_px=4, tile=tile)
    z = zonal_stats(tile, zones, bands=["red"], band_names=NAMES, stats=["mean", "count"])
    # the chip of a point in pixel (9, 7) starts at (9 - 2, 7 - 2), 4 pixels a side
    assert z.red_count.iloc[0] == 16
    assert z.red_mean.iloc[0] == pytest.approx(red[7:11, 5:9].mean(), rel=1e-6)


def test_bad_input(raster):
    path, *_ = raster
    zones = gpd.GeoSeries([_rect(*RECTS[0]), _rect(30, 31, 30, 31), _rect(5, 6, 6, 7)], crs=CRS)
    with pytest.warns(EmptyZoneWarning, match="2 of 3 zones cover no valid pixel of 'x_red'"):
        z = zonal_stats(path, zones, bands=["red"], band_names=NAMES, prefix="x_",
                        stats=["mean", "sum", "count"], ids=[10, 11, 12])
    assert z.x_red_count.tolist()[1:] == [0.0, 0.0]
    assert z.loc[[11, 12], ["x_red_mean", "x_red_sum"]].isna().all().all()
    with pytest.raises(DataError, match="unknown zonal statistics"):
        zonal_stats(path, zones, bands=["red"], band_names=NAMES, stats=["median"])
    with pytest.raises(DataError, match="quantiles"):
        zonal_stats(path, zones, bands=["red"], band_names=NAMES, quantiles=[1.5])
    with pytest.raises(DataError, match="band 'blue' is not one of"):
        zonal_stats(path, zones, bands=["blue"], band_names=NAMES)
    with pytest.raises(DataError, match="no CRS"):
        zonal_stats(path, gpd.GeoSeries(list(zones)), bands=["red"], band_names=NAMES)
    with pytest.raises(DataError, match="ids repeat"):
        zonal_stats(path, zones, bands=["red"], band_names=NAMES, ids=[1, 1, 2])
    with pytest.raises(DataError, match="needs 'radius_m'"):
        zone_geometries(gpd.GeoDataFrame(geometry=[Point(0, 0)], crs=CRS), kind="buffer")
    with pytest.raises(DataError, match="cannot be reprojected"):
        far = gpd.GeoSeries([box(0, 95, 1, 96)], crs="EPSG:4326")  # beyond the pole
        zonal_stats(path, far, bands=["red"], band_names=NAMES)


def _study(tmp_path, **extra):
    import yaml

    from geocausal.data.rasters import write_example_study

    m = write_example_study(tmp_path)
    data = yaml.safe_load((tmp_path / "manifest.yaml").read_text())
    data.update(extra)
    (tmp_path / "manifest.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    return tmp_path / "manifest.yaml", m


def _centre_values(units: pd.DataFrame, t: int) -> tuple[np.ndarray, np.ndarray]:
    """red and nir at each unit's pixel (write_example_study: 1000 t + 100 b + r + c / 100)."""
    from pyproj import Transformer

    x, y = Transformer.from_crs("EPSG:4326", CRS, always_xy=True).transform(units.lon, units.lat)
    r = np.floor((5_000_000.0 - np.asarray(y)) / 10.0)
    c = np.floor((np.asarray(x) - 500_000.0) / 10.0)
    return 1000 * t + r + c / 100, 1000 * t + 100 + r + c / 100


def test_manifest_zonal_columns_in_the_study_table(tmp_path):
    from geocausal.data.study import load_study

    path, _ = _study(tmp_path, zonal=[{"name": "b25", "radius_m": 25.0, "bands": ["red"],
                                       "indices": ["NDVI"], "stats": ["mean", "count"]}],
                     columns={"treatment": ["treat"], "covariates": ["x1", "b25_red_mean_2020"]})
    s = load_study(path, features="none")
    cols = [c for c in s.table.columns if c.startswith("b25_")]
    assert cols == ["b25_red_mean_2020", "b25_red_count_2020", "b25_NDVI_mean_2020",
                    "b25_NDVI_count_2020", "b25_red_mean_2021", "b25_red_count_2021",
                    "b25_NDVI_mean_2021", "b25_NDVI_count_2021"]
    for t, p in enumerate((2020, 2021)):
        red, nir = _centre_values(s.table, t)
        # a zone symmetric about the pixel centre averages a linear field to its centre value
        np.testing.assert_allclose(s.table[f"b25_red_mean_{p}"], red, rtol=1e-6)
        np.testing.assert_allclose(s.table[f"b25_red_count_{p}"], np.pi * 2.5**2, rtol=2e-3)
    # NDVI is not linear: compare with its pixel average, not with its value at the centre
    red, nir = _centre_values(s.table, 0)
    assert np.all(np.abs(s.table["b25_NDVI_mean_2020"] - (nir - red) / (nir + red)) < 1e-3)


def test_manifest_zonal_per_row_period_from_align_time(tmp_path):
    from geocausal.data.study import load_study

    path, m = _study(tmp_path, zonal=[{"name": "z", "zone": "chip", "bands": ["nir"],
                                       "stats": ["mean"]}],
                     align_time={"column": "survey", "how": "nearest"})
    units = pd.read_csv(tmp_path / "units.csv")
    units["survey"] = [2018, 2022, 2020, 2021, 2019, 2023]
    units.to_csv(tmp_path / "units.csv", index=False)
    s = load_study(path, features="none")
    assert s.table["image_period"].tolist() == [2020, 2021, 2020, 2021, 2020, 2021]
    t = (s.table["image_period"] == 2021).to_numpy().astype(int)
    _, nir0 = _centre_values(s.table, 0)
    # the 8-pixel chip's window is centred half a pixel up-left of the unit's pixel
    np.testing.assert_allclose(s.table["z_nir_mean"], nir0 + 1000 * t - 0.5 - 0.005, rtol=1e-6)


def test_manifest_zonal_bad_input(tmp_path):
    from geocausal.data.study import load_study
    from geocausal.errors import ManifestError

    path, _ = _study(tmp_path, zonal=[{"name": "x1", "radius_m": 20.0, "bands": ["red"],
                                       "stats": ["mean"], "period": 2020}])
    s = load_study(path, features="none")
    assert "x1_red_mean" in s.table.columns
    path, _ = _study(tmp_path, zonal=[{"name": "x1", "radius_m": 20.0, "bands": ["blue"]}])
    with pytest.raises(DataError, match=r"zonal.0' \(period 2020\): band 'blue'"):
        load_study(path, features="none")
    path, _ = _study(tmp_path, zonal=[{"name": "x", "radius_m": 20.0, "bands": ["red"],
                                       "period": 2020}, {"name": "x", "radius_m": 50.0,
                                                         "bands": ["red"], "period": 2020}])
    with pytest.raises(DataError, match=r"zonal.1'.*collide"):
        load_study(path, features="none")
    path, _ = _study(tmp_path, zonal=[{"name": "x", "bands": ["red"]}])
    with pytest.raises(ManifestError, match="radius_m"):
        load_study(path, features="none")
    path, _ = _study(tmp_path, zonal=[{"name": "x", "radius_m": 20.0, "bands": ["red"],
                                       "stats": ["median"]}])
    with pytest.raises(ManifestError, match="zonal.0.stats"):
        load_study(path, features="none")


def test_benchmark_script_runs_small(capsys):
    from conftest import load_script

    mod = load_script("benchmarks/zonal.py", "bench_zonal")
    out = mod.main(["--size", "256", "--bands", "2", "--n", "40", "--radius", "60",
                    "--no-record"])
    assert out["max_mean_diff"] < 1e-9 and np.isfinite(out["ratio"]) and out["ratio"] > 0
    assert "ratio geocausal / exactextract" in capsys.readouterr().out

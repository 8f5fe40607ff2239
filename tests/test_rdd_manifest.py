"""Distribution-valued outcomes declared in the manifest, through load_study and the CLI.

The border study (geocausal.datasets.boundary) plants a jump in the NDVI pixel distribution
at a slanted border; its exact quantile effects are in the manifest's ``truth``. Monte Carlo
(benchmarks/rdd_manifest_mc.md): with clipped zones the bias is within its Monte Carlo error
and the error's SD (~0.007) matches the reported SEs; without clipping the effects are
biased towards zero by up to half of the jump.
"""

from __future__ import annotations

import math
import warnings

import geopandas as gpd
import numpy as np
import pandas as pd
import pytest
import yaml
from shapely.geometry import Point

import geocausal as gc
from geocausal.cli import main
from geocausal.data.study import load_study
from geocausal.datasets.boundary import TRUTH_LEVELS, border_ndvi_study, border_truth
from geocausal.errors import DataError, EmptyZoneWarning, ManifestError

GRID = list(TRUTH_LEVELS)
N_BOOT = 500
SEED = 1


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    return border_ndvi_study(tmp_path_factory.mktemp("border") / "study", seed=0)


@pytest.fixture(scope="module")
def loaded(study):
    return load_study(study.manifest_path, features="none")


@pytest.fixture(scope="module")
def fit(loaded):
    return gc.rdd("ndvi ~ 1", loaded.table, running="dist_border", weights="ndvi_weight",
                  q_grid=GRID, inference={"n_boot": N_BOOT}, seed=SEED)


def _truth(study) -> np.ndarray:
    return np.array([study.truth[f"qte_{round(100 * q)}"] for q in GRID])


def _variant(study, tmp_path, name: str, edit) -> str:
    """A copy of the study's manifest (same data files) changed by ``edit(dict)``."""
    m = yaml.safe_load(study.manifest_path.read_text())
    edit(m)
    folder = study.manifest_path.parent
    for key in ("units",):
        m[key]["path"] = str(folder / m[key]["path"])
    m["rasters"] = [{**r, "paths": [str(folder / p) for p in r["paths"]]} for r in m["rasters"]]
    m["joins"] = [{**j, "path": j["path"] if j["path"].startswith("/") else str(folder / j["path"])}
                  for j in m.get("joins", [])]
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(m))
    return str(path)


# --------------------------------------------------------------------------- the study table
def test_study_table_has_running_and_distribution_columns(study, loaded):
    tab = loaded.table
    assert {"dist_border", "ndvi", "ndvi_weight"} <= set(tab.columns)
    assert len(tab) == 300 and loaded.features is None
    assert all(len(v) == len(w) and len(v) > 0 for v, w in zip(tab.ndvi, tab.ndvi_weight))
    # NDVI from the bands' roles: the field lies in (-1, 1) and centres near the planted base
    allv = np.concatenate(tab.ndvi.to_numpy())
    assert np.all(np.abs(allv) < 1) and abs(np.median(allv) - 0.48) < 0.05


def test_running_variable_is_signed_metres_east_positive(study, loaded):
    # the generator's border: through a = (x0 + .45 S, y0 + .3 S), b = (x0 + .55 S, y0 - 1.3 S)
    from geocausal.datasets.boundary import CRS, ORIGIN

    side = 400 * 10.0
    a = np.array([ORIGIN[0] + 0.45 * side, ORIGIN[1] + 0.3 * side])
    b = np.array([ORIGIN[0] + 0.55 * side, ORIGIN[1] - 1.3 * side])
    t = (b - a) / np.hypot(*(b - a))
    xy = gpd.read_file(study.manifest_path.parent / "units.gpkg").to_crs(CRS).get_coordinates()
    by_hand = (xy.x - a[0]) * -t[1] + (xy.y - a[1]) * t[0]  # positive east of the line
    np.testing.assert_allclose(loaded.table["dist_border"].to_numpy(), by_hand.to_numpy(),
                               atol=1e-3)


def test_zones_are_clipped_to_their_own_side(loaded):
    # covered area (pixels of 100 m2) = the part of the 60 m disc on the unit's own side
    tab = loaded.table
    d = np.abs(tab["dist_border"].to_numpy())
    area = np.array([w.sum() for w in tab["ndvi_weight"]]) * 100.0
    r = 60.0
    dd = np.minimum(d, r)
    expected = r * r * (math.pi - np.arccos(dd / r)) + dd * np.sqrt(r * r - dd * dd)
    np.testing.assert_allclose(area, expected, rtol=2e-3)
    assert (d < r).sum() >= 5  # some zones were clipped


# --------------------------------------------------------------------------- the planted truth
def test_load_study_recovers_planted_quantile_effects(study, fit):
    c = fit.curve
    truth = _truth(study)
    se = c["std_error"].to_numpy()
    err = c["estimate"].to_numpy() - truth
    # two-sided, per level, at 4 SE (Monte Carlo: error SD ~ mean SE, benchmarks/rdd_manifest_mc)
    assert np.all(np.abs(err) <= 4 * se), (err, se)
    assert np.all(se > 0.001) and np.all(se < 0.02)
    # the truth is in the uniform band, and zero is not (the planted jump is detected)
    assert np.all((c.uniform_low <= truth) & (truth <= c.uniform_high))
    assert np.all(c.uniform_low > 0)
    assert abs(fit.params["mean"] - study.truth["mean"]) <= 4 * fit.std_errors["mean"]


def test_truth_is_the_half_disc_quadrature():
    t = border_truth([0.1, 0.5, 0.9], slope=0.0)
    z = np.array([-1.2815515655446004, 0.0, 1.2815515655446004])
    np.testing.assert_allclose([t["qte_10"], t["qte_50"], t["qte_90"]],
                               0.08 + 0.5 * 0.06 * z, atol=1e-8)
    # the trend adds its half-disc mean offset on each side: 2 * slope * 4 r / (3 pi)
    t2 = border_truth([0.5], slope=0.02)
    assert t2["qte_50"] - 0.08 == pytest.approx(2 * 0.02e-3 * 4 * 60 / (3 * math.pi), rel=2e-2)


def test_without_clipping_the_estimate_is_biased(study, tmp_path):
    def off(m):
        m["distributions"][0]["clip_to_side"] = False

    tab = load_study(_variant(study, tmp_path, "noclip", off), features="none").table
    est = gc.rdd("ndvi ~ 1", tab, running="dist_border", weights="ndvi_weight", q_grid=GRID,
                 inference={"n_boot": N_BOOT}, seed=SEED)
    err = est.curve["estimate"].to_numpy() - _truth(study)
    # mixing both sides pulls the upper quantile effects towards zero by many SEs
    assert err[-2] < -3 * est.curve["std_error"].to_numpy()[-2], err


# --------------------------------------------------------------------------- the command line
def test_cli_writes_quantile_table_and_figure(study, fit, tmp_path, capsys):
    out = tmp_path / "out"
    rc = main(["estimate", "--design", "rdd", "--manifest", str(study.manifest_path),
               "--formula", "ndvi ~ 1", "--running", "dist_border", "--out", str(out),
               "--seed", str(SEED), "--set", f'inference={{"n_boot": {N_BOOT}}}',
               "--set", f"q_grid={GRID}"])
    assert rc == 0, capsys.readouterr().err
    curve = pd.read_csv(out / "rdd_curve.csv")
    assert (out / "rdd.png").stat().st_size > 10_000
    # the command line passes the coverage weights: the same numbers as the Python face
    np.testing.assert_allclose(curve["estimate"], fit.curve["estimate"], rtol=1e-10)
    np.testing.assert_allclose(curve["uniform_low"], fit.curve["uniform_low"], rtol=1e-10)
    truth = _truth(study)
    assert np.all(np.abs(curve["estimate"] - truth) <= 4 * curve["std_error"])
    tidy = pd.read_csv(out / "rdd.csv").set_index("term")
    assert tidy.loc["mean", "estimate"] == pytest.approx(fit.params["mean"], rel=1e-10)


# --------------------------------------------------------------------------- boundary sides
def test_polygon_regions_with_a_side_column_give_the_same_running(study, loaded, tmp_path):
    def regions(m):
        m["joins"][0].update(layer="regions", side_column="country", treated="east")

    tab = load_study(_variant(study, tmp_path, "regions", regions), features="none").table
    np.testing.assert_allclose(tab["dist_border"], loaded.table["dist_border"], atol=1e-3)
    np.testing.assert_allclose([w.sum() for w in tab.ndvi_weight],
                               [w.sum() for w in loaded.table.ndvi_weight], rtol=1e-6)


def test_west_is_the_negative_of_east(study, loaded, tmp_path):
    def west(m):
        m["joins"][0]["treated"] = "west"
        m.pop("distributions")
        m["columns"].pop("outcome")

    tab = load_study(_variant(study, tmp_path, "west", west), features="none").table
    np.testing.assert_allclose(tab["dist_border"], -loaded.table["dist_border"], atol=1e-9)


# --------------------------------------------------------------------------- bad input
def test_unknown_side_label_names_field_and_file(study, tmp_path):
    def bad(m):
        m["joins"][0]["treated"] = "upstream"

    path = _variant(study, tmp_path, "badside", bad)
    with pytest.raises(ManifestError, match=r"badside\.yaml.*joins\.0.*unknown side label"):
        load_study(path)


def test_unknown_region_label_names_field_and_file(study, tmp_path):
    def bad(m):
        m["joins"][0].update(layer="regions", side_column="country", treated="north")

    path = _variant(study, tmp_path, "badregion", bad)
    with pytest.raises(DataError, match=r"badregion\.yaml.*joins\.0.*treated.*'north'.*"
                                        r"country.*\['east', 'west'\]"):
        load_study(path, features="none")


def test_side_label_that_does_not_fit_the_geometry(study, tmp_path):
    def inside(m):
        m["joins"][0]["treated"] = "inside"

    with pytest.raises(DataError, match=r"joins\.0.*'inside' is for a polygon layer"):
        load_study(_variant(study, tmp_path, "inside", inside), features="none")

    def north(m):  # the border runs north-south: its north side is not defined
        m["joins"][0]["treated"] = "north"

    with pytest.raises(DataError, match=r"joins\.0.*side 'north'.*ambiguous"):
        load_study(_variant(study, tmp_path, "north", north), features="none")


def test_boundary_without_crs_names_field_and_file(study, tmp_path):
    layer = gpd.read_file(study.manifest_path.parent / "border.gpkg", layer="border")
    nocrs = tmp_path / "border_nocrs.gpkg"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        gpd.GeoDataFrame(layer.drop(columns="geometry"), geometry=list(layer.geometry),
                         crs=None).to_file(nocrs, layer="border", driver="GPKG")

    def bad(m):
        m["joins"][0]["path"] = str(nocrs)

    with pytest.raises(DataError, match=r"joins\.0.*border_nocrs\.gpkg.*has no CRS"):
        load_study(_variant(study, tmp_path, "nocrs", bad), features="none")
    rc = main(["estimate", "--design", "rdd", "--manifest", str(tmp_path / "nocrs.yaml"),
               "--formula", "ndvi ~ 1", "--running", "dist_border",
               "--out", str(tmp_path / "o")])
    assert rc == 2


def test_zone_without_valid_pixels_is_counted_and_dropped(study, tmp_path):
    units = gpd.read_file(study.manifest_path.parent / "units.gpkg", layer="units")
    far = gpd.GeoDataFrame({"unit_id": [9001, 9002]},
                           geometry=[Point(9.0, 44.0), Point(9.1, 44.1)], crs="EPSG:4326")
    path = tmp_path / "units_far.gpkg"
    pd.concat([units, far], ignore_index=True).to_file(path, layer="units", driver="GPKG")

    def bad(m):
        m["units"]["path"] = str(path)

    with pytest.warns(EmptyZoneWarning, match=r"distributions\.0.*'ndvi'.*2 of 302 rows have "
                                              r"no valid pixel.*\[9001, 9002\].*dropped"):
        tab = load_study(_variant(study, tmp_path, "far", bad), features="none").table
    assert len(tab) == 300 and not tab["unit_id"].isin([9001, 9002]).any()


def test_manifest_refusals():
    from geocausal.data.manifest import manifest_from_dict

    base = {"name": "s", "units": {"path": "u.gpkg", "id": "id"},
            "rasters": [{"period": 1, "paths": ["a.tif"], "bands": ["red", "nir"]}],
            "chip": {"size_px": 8}}
    j = {"kind": "distance", "path": "b.gpkg", "name": "d1"}
    cases = [
        ({"distributions": [{"name": "x", "band": "red"}]}, "radius_m"),
        ({"distributions": [{"name": "x", "band": "red", "index": "NDVI", "radius_m": 5}]},
         "exactly one of 'band' and 'index'"),
        ({"distributions": [{"name": "x", "band": "swir", "radius_m": 5}]},
         r"distributions\.0\.band: 'swir'"),
        ({"joins": [j, {**j, "name": "d2"}],
          "distributions": [{"name": "x", "band": "red", "radius_m": 5}]},
         "several 'distance' joins"),
        ({"joins": [j], "distributions": [{"name": "x", "band": "red", "radius_m": 5,
                                           "boundary": "d9"}]}, "'d9' is not the name"),
        ({"joins": [{**j, "treated": "east", "treated_side": [0, 0]}]}, "not both"),
        ({"joins": [{**j, "side_column": "c"}]}, "needs 'treated'"),
    ]
    for extra, msg in cases:
        with pytest.raises(ManifestError, match=msg):
            manifest_from_dict({**base, **extra}, check_files=False)


# --------------------------------------------------------------------------- the shipped study
def test_shipped_border_study_by_name_through_the_cli(tmp_path, monkeypatch, capsys):
    """``--manifest border_ndvi`` from a fresh cwd: the study is generated in the user data
    folder (GEOCAUSAL_DATA_DIR), nothing is written to the cwd or the package, and the
    quantile effects recover the truth the shipped manifest records."""
    from geocausal.datasets import committed_manifest, ensure_study, shipped_manifest

    data, cwd = tmp_path / "data", tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.setenv("GEOCAUSAL_DATA_DIR", str(data))
    monkeypatch.chdir(cwd)
    before = sorted(p.name for p in shipped_manifest("border_ndvi").parent.iterdir())
    rc = main(["estimate", "--design", "rdd", "--manifest", "border_ndvi", "--formula",
               "ndvi ~ 1", "--running", "dist_border", "--out", "D", "--seed", str(SEED)])
    assert rc == 0, capsys.readouterr().err
    assert sorted(p.name for p in cwd.iterdir()) == ["D"]
    assert sorted(p.name for p in shipped_manifest("border_ndvi").parent.iterdir()) == before
    folder = data / "studies" / "border_ndvi"
    assert sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) == sorted(
        ["imagery.tif", "border.gpkg", "units.gpkg", "manifest.yaml"])
    # the shipped manifest is the generator's, with every path (the join's too) under the folder
    committed = committed_manifest("border_ndvi")
    generated = yaml.safe_load((folder / "manifest.yaml").read_text())
    assert committed["joins"][0]["path"] == "border_ndvi/" + generated["joins"][0]["path"]
    assert committed["distributions"] == generated["distributions"]
    for k, v in border_truth().items():
        assert committed["truth"][k] == pytest.approx(v, abs=1e-12)
    # the planted truth, two-sided at 4 SE per level (SEs run ~20% low: rdd_manifest_mc.md)
    curve = pd.read_csv(cwd / "D" / "rdd_curve.csv")
    rows = [int(np.argmin(np.abs(curve["quantile"].to_numpy() - q))) for q in GRID]
    assert np.allclose(curve["quantile"].to_numpy()[rows], GRID)
    est, se = curve["estimate"].to_numpy()[rows], curve["std_error"].to_numpy()[rows]
    truth = np.array([committed["truth"][f"qte_{round(100 * q)}"] for q in GRID])
    assert np.all(np.abs(est - truth) <= 4 * se), (est - truth, se)
    assert np.all((se > 0.001) & (se < 0.02)) and np.all(est > 0)
    tidy = pd.read_csv(cwd / "D" / "rdd.csv").set_index("term")
    assert abs(tidy.loc["mean", "estimate"] - committed["truth"]["mean"]) \
        <= 4 * tidy.loc["mean", "std_error"]
    assert (cwd / "D" / "rdd.png").stat().st_size > 10_000
    # the Python face finds the same study and rewrites nothing
    path = ensure_study("border_ndvi")
    stamp = (folder / "imagery.tif").stat().st_mtime_ns
    assert path == data / "studies" / "border_ndvi.yaml"
    assert gc.datasets.ensure_study("border_ndvi") == path
    assert (folder / "imagery.tif").stat().st_mtime_ns == stamp
    # a missing join layer counts as an incomplete study
    (folder / "border.gpkg").unlink()
    with pytest.raises(DataError, match="delete that folder"):
        ensure_study("border_ndvi")


# --------------------------------------------------------------------------- overlapping zones
def test_overlap_groups_are_components_of_zones_sharing_pixels(study, loaded):
    """Units whose clipped buffers overlap share a group; a group never joins units farther
    apart than two radii plus a pixel diagonal (the zones' own extent)."""
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    from geocausal.datasets.boundary import CRS

    tab = loaded.table
    g = tab["ndvi_overlap_group"].to_numpy()
    units = gpd.read_file(study.manifest_path.parent / "units.gpkg").set_index("unit_id")
    xy = units.loc[tab["unit_id"]].to_crs(CRS).get_coordinates().to_numpy()
    d = np.hypot(*(xy[:, None, :] - xy[None, :, :]).transpose(2, 0, 1))
    side = np.sign(tab["dist_border"].to_numpy())
    must = (d < 2 * 60.0 - 1e-6) & (side[:, None] == side[None, :])
    i, j = np.nonzero(must)
    assert i.size > len(tab) + 20  # the study has overlapping zones
    assert np.all(g[i] == g[j])
    may = d < 2 * 60.0 + 10 * np.sqrt(2)
    _, comp = connected_components(coo_matrix(may), directed=False)
    same = g[:, None] == g[None, :]
    assert np.all((comp[:, None] == comp[None, :])[same])
    assert 50 < np.unique(g).size < len(tab)


def test_cluster_on_overlap_groups_gives_finite_tests(loaded):
    """Clustered fits (few clusters, t(G-1) tails) keep every curve test finite: large t
    statistics map to the normal scale through upper tails, not ``ppf(cdf)`` (which was inf)."""
    from geocausal.designs.rdd.smallsample import normal_equivalent

    eq = normal_equivalent(np.array([2.228, 12.0, 40.0]), np.array([10.0, 5.0, 8.0]))
    assert np.all(np.isfinite(eq)) and eq[0] == pytest.approx(1.96, abs=1e-3)
    assert eq[1] < 12.0 and eq[2] < 40.0 and eq[1] > 3.5
    est = gc.rdd("ndvi ~ 1", loaded.table, running="dist_border", weights="ndvi_weight",
                 q_grid=GRID, inference={"n_boot": N_BOOT}, seed=SEED,
                 vcov={"cluster": "ndvi_overlap_group"})
    tests = est.diagnostics["tests"]
    assert np.all(np.isfinite(tests["statistic"])) and np.all(np.isfinite(est.curve.to_numpy()))
    hetero = gc.rdd("ndvi ~ 1", loaded.table, running="dist_border", weights="ndvi_weight",
                    q_grid=GRID, inference={"n_boot": N_BOOT}, seed=SEED)
    np.testing.assert_allclose(est.curve["estimate"], hetero.curve["estimate"], rtol=1e-12)


def test_overlapping_zones_are_warned_with_a_count(tmp_path):
    """Zones sharing pixels made the SEs run low (benchmarks/rdd_manifest_mc.md): a counted
    warning, and none when the units are spaced so that no zone shares a pixel."""
    import warnings

    from geocausal.errors import OverlappingZonesWarning

    dense = border_ndvi_study(tmp_path / "dense", n_units=120, seed=2)
    with pytest.warns(OverlappingZonesWarning, match=r"\d+ of \d+ rows have zones that share"):
        load_study(dense.manifest_path, features="none")
    spaced = border_ndvi_study(tmp_path / "spaced", n_units=60, min_spacing_m=140, seed=2)
    with warnings.catch_warnings():
        warnings.simplefilter("error", OverlappingZonesWarning)
        tab = load_study(spaced.manifest_path, features="none").table
    assert tab["ndvi_overlap_group"].is_unique

"""Real-data paths of the paper pipelines (``geocausal paper run NAME --data DIR``).

Each test WRITES small fixture files in the published schema of the paper's data, then runs
the path through the command line (manifest -> load_study -> the paper's steps).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from geocausal.cli import main

pytest.importorskip("rasterio")


# ----------------------------------------------------------------------------- china_worldbank
def _utm_to_lonlat(x, y):
    from pyproj import Transformer

    return Transformer.from_crs("EPSG:32633", "EPSG:4326", always_xy=True).transform(x, y)


def write_china_worldbank_fixture(root: Path, n: int = 240, seed: int = 0,
                                  effect: float = 5.0) -> dict:
    """AidData level-1a CSVs (China, World Bank), DHS GPS clusters, an IWI table and two
    yearly Landsat-like mosaics (5 bands, UTM 33N, 1 km pixels); placement follows the
    brightness the mosaics show, IWI = 40 + 20 brightness + ``effect`` for treated clusters."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(seed)
    W, H, res, x0, y0 = 260, 300, 1000.0, 370000.0, 420000.0
    field = rng.normal(size=(H // 20 + 2, W // 20 + 2))
    from scipy import ndimage

    bright = ndimage.zoom(field, 20, order=1)[:H, :W]
    bright = (bright - bright.mean()) / bright.std()
    (root / "landsat").mkdir(parents=True)
    for year, shift in ((2000, 0.0), (2015, 0.3)):
        bands = np.stack([0.1 + 0.02 * k + 0.05 * (bright + shift) + 0.01 * rng.normal(size=(H, W))
                          for k in range(5)]).astype("float32")
        with rasterio.open(root / "landsat" / f"landsat_{year}.tif", "w", driver="GTiff",
                           width=W, height=H, count=5, dtype="float32", crs="EPSG:32633",
                           transform=from_origin(x0, y0, res, res)) as dst:
            dst.write(bands)
            for k, name in enumerate(("blue", "green", "red", "nir", "swir1")):
                dst.set_band_description(k + 1, name)
    # clusters on a jittered grid away from the mosaic's edges (>= 15 km)
    px = rng.uniform(20, W - 20, n)
    py = rng.uniform(20, H - 20, n)
    b = bright[py.astype(int), px.astype(int)]
    lon, lat = _utm_to_lonlat(x0 + px * res, y0 - py * res)
    role = rng.choice(["china", "world_bank", "control"], n, p=[0.3, 0.3, 0.4])
    p_treat = 1 / (1 + np.exp(-(0.2 + 1.2 * b)))
    treated = rng.random(n) < p_treat
    role = np.where(treated & (role == "control"), "china", role)
    role = np.where(~treated, "control", role)
    sectors = ["Education", "Health", "Energy Generation and Supply", "Transport and Storage",
               "Trade and Tourism"]
    projects = {"china": [], "world_bank": []}
    for i in range(n):
        if role[i] == "control":
            continue
        # a project 500 m to 2 km from the cluster, geocoded at precision 1 or 2
        ang, dist = rng.uniform(0, 2 * np.pi), rng.uniform(500, 2000)
        plon, plat = _utm_to_lonlat(x0 + px[i] * res + dist * np.cos(ang),
                                    y0 - py[i] * res + dist * np.sin(ang))
        projects[role[i]].append({
            "project_id": f"{role[i][:2].upper()}{i:05d}", "project_location_id": f"L{i}",
            "precision_code": int(rng.integers(1, 3)), "geoname_id": 1000 + i,
            "latitude": plat, "longitude": plon, "location_type_code": "PPL",
            "transactions_start_year": int(rng.integers(2003, 2012)),
            "transactions_end_year": 2014,
            "ad_sector_names": f"{sectors[i % len(sectors)]}|Other",
            "recipients_iso3": "CMR"})
    # locations the filters must drop: imprecise (ADM1, precision 4) and too late
    for f in projects:
        projects[f].append({**projects[f][0], "project_id": "IMPRECISE", "precision_code": 4})
        projects[f].append({**projects[f][0], "project_id": "LATE",
                            "transactions_start_year": 2019})
    (root / "china").mkdir()
    (root / "worldbank").mkdir()
    pd.DataFrame(projects["china"]).to_csv(root / "china" / "level_1a.csv", index=False)
    pd.DataFrame(projects["world_bank"]).to_csv(root / "worldbank" / "level_1a.csv", index=False)
    ids = [f"CM2018{i:08d}" for i in range(n)]
    dhs = pd.DataFrame({"DHSID": ids, "DHSCC": np.where(np.arange(n) % 2, "CM", "GA"),
                        "DHSYEAR": 2015, "DHSCLUST": np.arange(n) + 1,
                        "URBAN_RURA": rng.choice(["U", "R"], n), "LATNUM": lat,
                        "LONGNUM": lon, "ALT_GPS": 500})
    dhs.loc[:2, ["LATNUM", "LONGNUM"]] = 0.0  # DHS's code for a missing location
    dhs.to_csv(root / "dhs_clusters.csv", index=False)
    iwi = 40 + 20 * b + effect * (role != "control") + 3 * rng.normal(size=n)
    pd.DataFrame({"DHSID": ids, "iwi": iwi}).to_csv(root / "iwi.csv", index=False)
    return {"effect": effect, "n_missing_coords": 3}


def test_china_worldbank_real_data_path(tmp_path, capsys):
    data = tmp_path / "data"
    truth = write_china_worldbank_fixture(data)
    out = tmp_path / "out"
    assert main(["paper", "run", "china_worldbank", "--data", str(data),
                 "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert "MissingCoordinatesWarning" in err and "3 of 240 rows have no usable" in err, err
    # the manifest for the user's folder was written and loaded
    man = (out / "study" / "manifest.yaml").read_text()
    assert "kind: count" in man and "kind: table" in man and "align_time" in man
    tables = out / "tables"
    eff = pd.read_csv(tables / "real_effects.csv")
    assert set(eff.method) == {"naive", "tabular", "image", "cnn"}
    assert np.isfinite(eff[["estimate", "std_error"]].to_numpy()).all()
    for f in ("china", "world_bank"):
        img = eff[(eff.funder == f) & (eff.method == "image")].iloc[0]
        # two-sided: the planted +5 IWI within 4 SE of the image-aware estimate
        assert abs(img.estimate - truth["effect"]) < 4 * img.std_error, img
    cells = pd.read_csv(tables / "real_funder_sector.csv")
    assert {"n_units", "n_treated", "p_holm", "p_bh"} <= set(cells.columns)
    assert cells.n_units.sum() > 0
    plc = pd.read_csv(tables / "real_placement.csv")
    assert (plc.null == 0.5).all() and plc.p_value.between(0, 1).all()
    fe = pd.read_csv(tables / "real_fe_predicted_iwi.csv")
    assert np.isfinite(fe.estimate).all() and fe.oof_r2.iloc[0] > 0.3
    assert (out / "figures" / "salience_china.png").stat().st_size > 0
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["summary"]["n_with_iwi"] == 237


def test_china_worldbank_real_data_refusals(tmp_path):
    from geocausal.errors import DataError

    rd = pytest.importorskip("geocausal")  # noqa: F841
    from conftest import load_script

    mod = load_script("paper/china_worldbank/data_paths.py", "cw_data_paths")
    cfg = {"precision_max": 2, "years": [2002, 2013], "radius_m": 3350, "chip_m": 6700}
    bad = tmp_path / "p.csv"
    pd.DataFrame({"project_id": [1], "latitude": [0.1], "longitude": [1.0]}).to_csv(bad)
    with pytest.raises(DataError, match="ad_sector_names"):
        mod.read_projects(bad, "china", cfg)
    with pytest.raises(DataError, match="should hold"):
        mod.build_manifest(tmp_path / "nope", tmp_path / "w", cfg)


# ----------------------------------------------------------------------------- r3d
def test_r3d_real_data_path(tmp_path):
    """A unit table with distribution-valued outcomes: the planted quantile shift is found."""
    rng = np.random.default_rng(3)
    data = tmp_path / "data"
    data.mkdir()
    n = 300
    x = rng.uniform(-1, 1, n)
    units = pd.DataFrame({"unit_id": [f"v{i}" for i in range(n)], "lon": 10 + x,
                          "lat": 5 + rng.uniform(0, 1, n), "running": x})
    units.to_csv(data / "units.csv", index=False)
    rows = []
    for uid, xi in zip(units.unit_id, x):
        k = int(rng.integers(20, 40))
        rows.append(pd.DataFrame({"unit_id": uid, "value": rng.normal(0.5 * xi + 1.0 * (xi >= 0),
                                                                      1.0, k)}))
    draws = pd.concat(rows[:-2], ignore_index=True)  # the last two units have no draws
    draws.sample(frac=1, random_state=0).to_csv(data / "outcomes.csv", index=False)
    out = tmp_path / "out"
    assert main(["paper", "run", "r3d", "--data", str(data), "--out", str(out)]) == 0
    qte = pd.read_csv(out / "tables" / "real_qte_curve.csv")
    mid = qte.iloc[(qte.iloc[:, 0] - 0.5).abs().argmin()]
    est = mid["estimate"]
    lo, hi = mid.filter(like="low").iloc[0], mid.filter(like="high").iloc[0]
    assert lo <= 1.0 <= hi and abs(est - 1.0) < 0.6  # planted shift of 1 at every quantile
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["summary"]["n_units"] == n - 2
    # draws of a unit that the unit table lacks are refused, not dropped
    pd.concat([draws, pd.DataFrame({"unit_id": ["ghost"], "value": [1.0]})]).to_csv(
        data / "outcomes.csv", index=False)
    assert main(["paper", "run", "r3d", "--data", str(data), "--out", str(tmp_path / "o2")]) == 2


# ----------------------------------------------------------------------------- one_map
def test_one_map_real_data_path(tmp_path):
    """DHS-style calibration labels plus trial frames: LCC undoes the planted shrinkage."""
    rng = np.random.default_rng(5)
    data = tmp_path / "data"
    data.mkdir()
    n_cal = 400
    iwi = rng.normal(40, 10, n_cal)
    cal = pd.DataFrame({"DHSID": [f"C{i}" for i in range(n_cal)],
                        "LATNUM": rng.uniform(-5, 5, n_cal), "LONGNUM": rng.uniform(20, 30, n_cal),
                        "iwi": iwi, "iwi_hat": 40 + 0.6 * (iwi - 40) + rng.normal(0, 3, n_cal)})
    cal.loc[0, ["LATNUM", "LONGNUM"]] = 0.0
    cal.to_csv(data / "calibration.csv", index=False)
    frames = []
    for t, tau in enumerate((-8.0, 0.0, 8.0)):
        m = 400
        d = rng.integers(0, 2, m)
        y = rng.normal(40, 10, m) + tau * d
        frames.append(pd.DataFrame({"trial_id": f"T{t}", "DHSID": [f"U{t}_{i}" for i in range(m)],
                                    "treated": d,
                                    "iwi_hat": 40 + 0.6 * (y - 40) + rng.normal(0, 3, m),
                                    "tau": tau}))
    pd.concat(frames).to_csv(data / "trials.csv", index=False)
    out = tmp_path / "out"
    assert main(["paper", "run", "one_map_many_trials", "--data", str(data),
                 "--out", str(out)]) == 0
    res = pd.read_csv(out / "tables" / "real_trials.csv")
    taus = {"T0": -8.0, "T1": 0.0, "T2": 8.0}
    lcc = res[res.method == "lcc"].assign(tau=lambda r: r.trial_id.map(taus))
    naive = res[res.method == "naive"].assign(tau=lambda r: r.trial_id.map(taus))
    slope_l = np.polyfit(lcc.tau, lcc.estimate, 1)[0]
    slope_n = np.polyfit(naive.tau, naive.estimate, 1)[0]
    assert 0.45 < slope_n < 0.75 and 0.75 < slope_l < 1.3, (slope_n, slope_l)
    prov = json.loads((out / "provenance.json").read_text())
    assert prov["summary"]["n_calibration"] == n_cal - 1


# ----------------------------------------------------------------------------- eo_heterogeneity
def test_eo_heterogeneity_real_data_path(tmp_path):
    """An RCT unit table with a yearly imagery sequence; the effect grows with built-up change
    between the years, which only the sequence shows."""
    import rasterio
    from rasterio.transform import from_origin

    rng = np.random.default_rng(7)
    data = tmp_path / "data"
    (data / "imagery").mkdir(parents=True)
    W = H = 120
    res, x0, y0 = 30.0, 500000.0, 100000.0
    growth = np.kron(rng.uniform(0, 1, (H // 10, W // 10)), np.ones((10, 10)))
    for t, year in enumerate((2014, 2016, 2018)):
        b = np.stack([0.2 + 0.5 * growth * t / 2 + 0.02 * rng.normal(size=(H, W)),
                      0.3 + 0.02 * rng.normal(size=(H, W))]).astype("float32")
        with rasterio.open(data / "imagery" / f"mosaic_{year}.tif", "w", driver="GTiff",
                           width=W, height=H, count=2, dtype="float32", crs="EPSG:32633",
                           transform=from_origin(x0, y0, res, res)) as dst:
            dst.write(b)
    n = 400
    r, c = rng.integers(1, H // 10 - 1, n), rng.integers(1, W // 10 - 1, n)
    xs, ys = x0 + (c * 10 + 5) * res, y0 - (r * 10 + 5) * res
    lon, lat = _utm_to_lonlat(xs, ys)
    g = growth[r * 10 + 5, c * 10 + 5]
    d = rng.integers(0, 2, n)
    x1 = rng.normal(size=n)
    y = 1 + x1 + d * (4 * g) + rng.normal(0, 0.5, n)
    pd.DataFrame({"unit_id": [f"h{i}" for i in range(n)], "lon": lon, "lat": lat,
                  "treated": d, "outcome": y, "x1": x1}).to_csv(data / "units.csv", index=False)
    out = tmp_path / "out"
    assert main(["paper", "run", "eo_heterogeneity", "--data", str(data), "--out", str(out)]) == 0
    t = pd.read_csv(out / "tables" / "real_representations.csv")
    assert set(t.learner) == {"t", "s", "x", "dr"}
    assert {"tabular", "image_single", "image_sequence", "combined"} == set(t.representation)
    prov = json.loads((out / "provenance.json").read_text())
    best = prov["summary"]["best_by_rate_ratio"]
    assert best["representation"] in ("image_sequence", "combined"), best

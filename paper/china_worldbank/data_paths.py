"""china_worldbank on the paper's real data: ``geocausal paper run china_worldbank --data DIR``.

``DIR`` holds the published files (their own column layouts; extra columns are ignored)::

    china/level_1a.csv       AidData, Global Chinese Development Finance, geocoded (level 1a):
                             project_id, precision_code, latitude, longitude,
                             transactions_start_year, ad_sector_names
    worldbank/level_1a.csv   AidData's World Bank geocoded research release (IBRD/IDA), same
                             columns
    dhs_clusters.csv         DHS GPS cluster coordinates: DHSID, DHSCC, DHSYEAR, LATNUM,
                             LONGNUM, URBAN_RURA (0, 0 = location missing: dropped, counted)
    iwi.csv                  the International Wealth Index per cluster: DHSID, iwi
    landsat/*_<year>.tif     Landsat mosaics, one per year (same bands in every file)

What runs: the projects with ``precision_code`` at most ``precision_max`` (1 exact, 2 within
25 km) that started within ``years`` become point layers; a manifest for this folder (units:
the clusters; ``count`` and ``nearest`` joins to each funder's projects within ``radius_m``;
a ``table`` join of the IWI table on DHSID; ``align_time`` of the survey year to the mosaics;
the mosaics as rasters) is written under the output folder and loaded with ``load_study``.
A cluster is treated by a funder when one of its projects lies within ``radius_m`` and by
neither funder otherwise (clusters near both are left out of both funders' comparisons). Then,
per funder: AIPW with tabular covariates only, with image features of the earliest mosaic
(pre-treatment), and with the paper's CNN propensity learned from those chips (salience maps);
funder x sector-group effects with Holm/BH adjustments and cell sizes; placement AUCs against
0.5; and unit + period fixed effects on the IWI panel predicted from every mosaic.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geocausal.errors import DataError, DiagnosticWarning, UnmatchedJoinWarning

HERE = Path(__file__).resolve().parent

#: the columns of AidData's level-1a geocoded releases this path uses
AIDDATA_COLUMNS = ("project_id", "precision_code", "latitude", "longitude",
                   "transactions_start_year", "ad_sector_names")
#: DHS GPS dataset columns used
DHS_COLUMNS = ("DHSID", "DHSCC", "DHSYEAR", "LATNUM", "LONGNUM", "URBAN_RURA")
IWI_COLUMNS = ("DHSID", "iwi")
FUNDERS = {"china": "china", "world_bank": "worldbank"}
LAYOUT = __doc__.split("::")[1].split("What runs")[0]


def _shared():
    from geocausal.paper_labels import load_module

    return load_module("geocausal_paper__real_data", HERE.parent / "_real_data.py")


def read_projects(path: Path, funder: str, cfg: dict) -> pd.DataFrame:
    """One funder's geocoded project locations, filtered by precision and start year."""
    rd = _shared()
    what = f"{funder} projects"
    df = rd.read_table(path, AIDDATA_COLUMNS, what)
    df = rd.numeric(df, ["precision_code", "transactions_start_year"], what)
    df = rd.drop_missing_coordinates(df, "longitude", "latitude", what)
    lo, hi = cfg["years"]
    keep = (df.precision_code <= cfg["precision_max"]) & df.transactions_start_year.between(lo, hi)
    df = df.loc[keep].copy()
    if df.empty:
        raise DataError(f"{what}: no location of '{path}' has precision_code <= "
                        f"{cfg['precision_max']} and transactions_start_year in {lo}-{hi}")
    # AidData lists several sectors as 'A|B': the first is the project's sector
    df["sector"] = df["ad_sector_names"].fillna("unspecified").astype(str) \
        .str.split("|").str[0].str.strip()
    df["start_year"] = df["transactions_start_year"].astype(int)
    return df


def build_manifest(data: Path, work: Path, cfg: dict) -> Path:
    """Write point layers and a manifest for the user's folder under ``work``."""
    rd = _shared()
    data = Path(data).resolve()
    work.mkdir(parents=True, exist_ok=True)
    joins = []
    for funder, folder in FUNDERS.items():
        src = rd.find_one(data, [f"{folder}/level_1a.csv", f"{folder}/*.csv"],
                          f"{funder} projects", LAYOUT)
        proj = read_projects(src, funder, cfg)
        layer = rd.write_points(proj, "longitude", "latitude", work / f"projects_{funder}.gpkg",
                                ["project_id", "sector", "start_year"])
        joins.append({"kind": "count", "path": layer.name, "radius_m": cfg["radius_m"],
                      "name": f"n_{funder}"})
        joins.append({"kind": "nearest", "path": layer.name, "columns": ["sector", "start_year"],
                      "prefix": f"{funder}_", "max_distance_m": cfg["radius_m"],
                      "name": f"dist_{funder}"})
    dhs_src = rd.find_one(data, ["dhs_clusters.csv", "dhs*.csv"], "DHS clusters", LAYOUT)
    dhs = rd.read_table(dhs_src, DHS_COLUMNS, "DHS clusters", key="DHSID")
    dhs = rd.drop_missing_coordinates(dhs, "LONGNUM", "LATNUM", "DHS clusters",
                                      zero_is_missing=True)
    dhs = rd.numeric(dhs, ["DHSYEAR"], "DHS clusters")
    dhs["urban"] = (dhs["URBAN_RURA"].astype(str).str.upper().str[0] == "U").astype(int)
    dhs.to_csv(work / "clusters.csv", index=False)
    iwi_src = rd.find_one(data, ["iwi.csv", "iwi*.csv", "iwi*.parquet"], "IWI table", LAYOUT)
    rd.read_table(iwi_src, IWI_COLUMNS, "IWI table", key="DHSID")
    joins.append({"kind": "table", "path": str(iwi_src), "on": "DHSID", "columns": ["iwi"]})
    rasters = rd.yearly_rasters(data / "landsat", "Landsat mosaics", min_bands=1)
    spec = {
        "name": "china_worldbank_real",
        "description": f"AidData China and World Bank projects near DHS clusters ({data})",
        "units": {"path": "clusters.csv", "id": "DHSID", "lon": "LONGNUM", "lat": "LATNUM"},
        "rasters": rasters, "periods": [r["period"] for r in rasters],
        "chip": {"size_m": float(cfg["chip_m"])},
        "joins": joins,
        "align_time": {"column": "DHSYEAR", "how": "nearest", "name": "image_period"},
        "columns": {"outcome": ["iwi"], "covariates": ["urban", "DHSYEAR"],
                    "groups": ["DHSCC"], "id": ["DHSID"]},
    }
    return rd.write_manifest(spec, work / "manifest.yaml")


def _treatment(table: pd.DataFrame) -> pd.DataFrame:
    """funder (china / world_bank / control / both), d, sector and start year per cluster."""
    nc, nw = table["n_china"].to_numpy() > 0, table["n_world_bank"].to_numpy() > 0
    funder = np.where(nc & nw, "both", np.where(nc, "china", np.where(nw, "world_bank",
                                                                      "control")))
    sector = np.where(nc, table["china_sector"], table["world_bank_sector"]).astype(object)
    start = np.where(nc, table["china_start_year"], table["world_bank_start_year"])
    return table.assign(funder=funder, d=(nc | nw).astype(int), sector=sector,
                        start_year=pd.to_numeric(pd.Series(start), errors="coerce").to_numpy())


def run(data: Path, out: Path, seed: int = 0, full: bool = False) -> dict:
    """Run the paper's analysis on the user's data; write tables, figures and provenance."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geocausal.data.study import load_study
    from geocausal.results.estimate import make_provenance
    from geocausal.results.plot import save
    from geocausal.results.plot_ipw import overlap_plot

    rd = _shared()
    pipe = rd.load_sibling("china_worldbank/pipeline.py")
    steps = rd.load_sibling("china_worldbank/paper_steps.py")
    cfg_all = yaml.safe_load((HERE / "config.yaml").read_text())
    cfg = {**cfg_all["full" if full else "ci"], **cfg_all["paper_steps"], **cfg_all["real_data"]}
    out = Path(out)
    tables, figs, work = out / "tables", out / "figures", out / "study"
    for p in (tables, figs, work):
        p.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    manifest = build_manifest(Path(data), work, cfg)
    with warnings.catch_warnings():  # controls have no project near: expected, not a defect
        warnings.filterwarnings("ignore", ".*have no feature of.*", UnmatchedJoinWarning)
        study = load_study(manifest, features="summary", seed=seed, cache_dir=work / "chips")
    table = _treatment(study.table)
    keep = table["iwi"].notna().to_numpy()
    n_no_iwi = int((~keep).sum())
    if n_no_iwi:
        warnings.warn(f"{n_no_iwi} of {len(table)} DHS clusters have no IWI in the IWI table; "
                      "they are left out", UnmatchedJoinWarning, stacklevel=2)
    periods = list(study.chips.periods)
    pre = periods[0]
    chips_all, _mask = study.chips.load()
    pos = {u: i for i, u in enumerate(study.chips.unit_ids.tolist())}
    rows = np.array([pos[u] for u in table["DHSID"]])  # chips by key, never by position
    feats = pipe.first_period(study.features, pre)
    lrn = pipe.learners(cfg["outcome_learner"], seed)
    xs = ["urban", "DHSYEAR"]
    multi_country = table["DHSCC"].nunique() > 1
    f_tab = "iwi ~ d + " + " + ".join(xs) + (" + C(DHSCC)" if multi_country else "")
    vcov = {"cluster": "DHSCC"} if table["DHSCC"].nunique() >= 10 else "hetero"
    effects, cells, placement, cnn_ests = [], [], [], []
    for funder in FUNDERS:
        m = keep & np.isin(table["funder"], [funder, "control"])
        sub = table.loc[m].reset_index(drop=True)
        if sub["d"].sum() < 4 or (1 - sub["d"]).sum() < 4:
            raise DataError(f"{funder}: {int(sub['d'].sum())} treated and "
                            f"{int((1 - sub['d']).sum())} control clusters with IWI; too few to "
                            f"estimate (widen radius_m or years in the config's real_data)")
        img = feats.loc[m].reset_index(drop=True)
        three = pipe.three_estimates(f_tab, sub, img, lrn=lrn, folds=cfg["folds"], seed=seed,
                                     trim=cfg["trim"], vcov=vcov)
        chips = chips_all[rows[m], 0]
        three["cnn"] = steps.cnn_effects(f_tab, sub, chips, cfg, seed, lrn["outcome"],
                                         vcov=vcov)
        cnn_ests.append(three["cnn"])
        for name, est in three.items():
            effects.append(est.tidy().assign(funder=funder, method=name,
                                             n_treated=int(sub["d"].sum()), n=len(sub)))
        steps.save_salience(three["cnn"], figs / f"salience_{funder}.png",
                            f"{funder}: salience of the CNN propensity")
        save(overlap_plot(three["cnn"], title=f"{funder}: CNN propensity"),
             figs / f"overlap_{funder}.png")
        cells.append(steps.pooled_cells(f_tab, sub.assign(funder=funder), img, cfg, seed, lrn))
        placement.append(steps.placement_tests(sub.assign(funder=funder), xs, img, cfg, seed,
                                               make_pipeline(StandardScaler(),
                                                             LogisticRegression(max_iter=5000))))
    pd.concat(effects, ignore_index=True).to_csv(tables / "real_effects.csv", index=False)
    pd.concat(cells, ignore_index=True).to_csv(tables / "real_funder_sector.csv", index=False)
    pd.concat(placement, ignore_index=True).to_csv(tables / "real_placement.csv", index=False)

    # IWI predicted from every mosaic, then unit + period fixed effects on that panel
    fe_row, r2 = {}, None
    if len(periods) >= 2:
        per = {p: pipe.first_period(study.features, p).loc[keep].to_numpy() for p in periods}
        cols = {p: pipe.first_period(study.features, p).columns for p in periods}
        width = {len(c) for c in cols.values()}
        if len(width) == 1:
            sub = table.loc[keep].reset_index(drop=True)
            # train on each cluster's own survey period (align_time), features of that period
            own = sub["image_period"].astype(object).to_numpy()
            Xown = np.vstack([per[p][i] for i, p in enumerate(own)])
            pred, r2 = steps.predicted_panel({**per, "own": Xown}, sub["iwi"].to_numpy(),
                                             "own", cfg, seed)
            pred.pop("own")
            start = np.where(sub["d"] == 1, sub["start_year"], np.inf)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", DiagnosticWarning)
                fe, panel = steps.predicted_panel_fe(pred, sub["DHSID"], sub["d"].to_numpy(),
                                                     start.astype(float))
            fe.tidy().assign(oof_r2=r2).to_csv(tables / "real_fe_predicted_iwi.csv",
                                               index=False)
            panel.to_csv(tables / "real_predicted_iwi_panel.csv", index=False)
            fe_row = {"estimate": float(fe.params.iloc[0]), "oof_r2": r2}
    summary = {"n_clusters": int(len(table)), "n_with_iwi": int(keep.sum()),
               "n_by_funder": table["funder"].value_counts().to_dict(), "periods": periods,
               "pre_period": pre, "fe_predicted_iwi": fe_row}
    prov = make_provenance(f_tab, seed, study.manifest_hash, size="real data", data=str(data),
                           config=cfg, summary=summary,
                           seconds=round(time.perf_counter() - t0, 1))
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    print(f"china_worldbank on real data: {summary['n_with_iwi']} clusters with IWI, "
          f"{summary['n_by_funder']}; tables under {tables}")
    return summary

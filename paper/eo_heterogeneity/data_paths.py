"""eo_heterogeneity on an RCT: ``geocausal paper run eo_heterogeneity --data DIR``.

``DIR`` holds::

    units.csv              the RCT's unit table: unit_id, lon, lat, treated (0/1), outcome,
                           optional numeric covariates (every other numeric column)
    imagery/*_<year>.tif   the imagery sequence: one mosaic per year, the same bands in each

A manifest for the folder (units, the yearly mosaics, a chip of ``chip_m`` metres) is written
under the output folder and loaded with ``load_study``; chips are matched to units by id. The
representations (tabular, image at the last date, image sequence, combined) compete under each
learner of the config's ``real_data.learners`` (T, S, X, DR), judged without ground truth by the
RATE ratio (AUTOC over its SE) on held-out folds; the best is reported.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.errors import DataError, GeocausalError

HERE = Path(__file__).resolve().parent
LAYOUT = __doc__.split("::")[1].split("A manifest")[0]
DEFAULTS = {"chip_m": 300.0, "learners": ["t", "s", "x", "dr"], "folds": 5, "n_splits": 5,
            "n_boot": 100}


def _shared():
    from geocausal.paper_labels import load_module

    return load_module("geocausal_paper__real_data", HERE.parent / "_real_data.py")


def load(data: Path, work: Path, cfg: dict):
    """The RCT table and its chips ``(N, T, H, W, C)`` (by unit id) through the manifest."""
    from geocausal.data.study import load_study

    rd = _shared()
    data = Path(data).resolve()
    src = rd.find_one(data, ["units.csv"], "RCT unit table", LAYOUT)
    units = rd.read_table(src, ["unit_id", "lon", "lat", "treated", "outcome"],
                          "RCT unit table", key="unit_id")
    units = rd.numeric(units, ["treated", "outcome"], "RCT unit table")
    if not units["treated"].isin([0, 1]).all():
        raise DataError("RCT unit table: column 'treated' must be 0 or 1")
    units = rd.drop_missing_coordinates(units, "lon", "lat", "RCT unit table")
    work.mkdir(parents=True, exist_ok=True)
    units.to_csv(work / "units.csv", index=False)
    rasters = rd.yearly_rasters(data / "imagery", "imagery sequence")
    covs = [c for c in units.columns if c not in ("unit_id", "lon", "lat", "treated", "outcome")
            and pd.api.types.is_numeric_dtype(units[c])]
    man = rd.write_manifest({
        "name": "eo_heterogeneity_real",
        "units": {"path": "units.csv", "id": "unit_id", "lon": "lon", "lat": "lat"},
        "rasters": rasters, "periods": [r["period"] for r in rasters],
        "chip": {"size_m": float(cfg["chip_m"])},
        "columns": {"outcome": ["outcome"], "treatment": ["treated"],
                    **({"covariates": covs} if covs else {}), "id": ["unit_id"]}},
        work / "manifest.yaml")
    study = load_study(man, features="summary", cache_dir=work / "chips")
    chips, _mask = study.chips.load()
    pos = {u: i for i, u in enumerate(study.chips.unit_ids.tolist())}
    table = study.table.reset_index(drop=True)
    rows = np.array([pos[u] for u in table["unit_id"]])
    return table, chips[rows], covs, study.manifest_hash


def run(data: Path, out: Path, seed: int = 0, full: bool = False) -> dict:
    """Every representation x learner, evaluated by the RATE ratio; the best reported."""
    import yaml

    from geocausal.api.cate import compare_representations
    from geocausal.results.estimate import make_provenance

    cfg = {**DEFAULTS, **(yaml.safe_load((HERE / "config.yaml").read_text())
                          .get("real_data") or {})}
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    table, chips, covs, mhash = load(Path(data), out / "study", cfg)
    tab = " + ".join(covs)
    specs = {"image_single": {"formula": "outcome ~ treated", "images": chips,
                              "representation": "single"},
             "image_sequence": {"formula": "outcome ~ treated", "images": chips,
                                "representation": "sequence"}}
    if covs:
        specs = {"tabular": {"formula": f"outcome ~ treated + {tab}"}, **specs,
                 "combined": {"formula": f"outcome ~ treated + {tab}", "images": chips,
                              "representation": "sequence"}}
    rows = []
    for learner in cfg["learners"]:
        for name, spec in specs.items():
            try:  # one cell at a time: a learner that cannot rank (constant CATE) is recorded
                t = compare_representations("outcome ~ treated", table, {name: spec},
                                            learner=learner,
                                            propensity=float(table["treated"].mean()),
                                            folds=cfg["folds"],
                                            options={"n_splits": cfg["n_splits"],
                                                     "n_boot": cfg["n_boot"]}, seed=seed)
            except GeocausalError as exc:
                rows.append(pd.DataFrame({"representation": [name], "learner": [learner],
                                          "error": [f"{type(exc).__name__}: {exc}"]}))
                continue
            t.index.name = "representation"
            rows.append(t.reset_index().assign(learner=learner, error=""))
    res = pd.concat(rows, ignore_index=True)
    if res["error"].astype(bool).all():
        raise DataError("no learner x representation could be evaluated: "
                        + "; ".join(res["error"].unique()[:3]))
    res.to_csv(out / "tables" / "real_representations.csv", index=False)
    best = res.loc[res["autoc_ratio"].astype(float).idxmax()]
    summary = {"n_units": int(len(table)), "periods": int(chips.shape[1]),
               "n_failed_cells": int(res["error"].astype(bool).sum()),
               "best_by_rate_ratio": {"learner": best.learner,
                                      "representation": best.representation,
                                      "autoc_ratio": float(best.autoc_ratio)}}
    prov = make_provenance("outcome ~ treated", seed, mhash, size="real data", data=str(data),
                           config=cfg, summary=summary)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    return summary

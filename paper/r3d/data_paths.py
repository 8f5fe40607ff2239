"""r3d on a user's unit table with distribution-valued outcomes: ``paper run r3d --data DIR``.

``DIR`` holds::

    units.csv      one row per unit: unit_id, lon, lat, running (signed distance or score;
                   treated at running >= cutoff), optional cluster
    outcomes.csv   the distribution-valued outcome, long: unit_id, value (one row per draw,
                   e.g. per pixel or per household), optional weight

A manifest for the folder (units with their coordinates and roles) is written under the output
folder and loaded with ``load_study``; each unit's draws are gathered by ``unit_id`` (never by
position; units without draws are counted and dropped, draws of unknown units refused) and
``gc.rdd`` estimates the quantile treatment effects at the cutoff (config ``real_data``).
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from geocausal.errors import DataError, EmptyZoneWarning

HERE = Path(__file__).resolve().parent
LAYOUT = __doc__.split("::")[1].split("A manifest")[0]


def _shared():
    from geocausal.paper_labels import load_module

    return load_module("geocausal_paper__real_data", HERE.parent / "_real_data.py")


def build_table(data: Path, work: Path) -> tuple[pd.DataFrame, str]:
    """The study table (through the manifest) with one array of draws per unit."""
    from geocausal.data.study import load_study

    rd = _shared()
    data = Path(data).resolve()
    units_src = rd.find_one(data, ["units.csv"], "unit table", LAYOUT)
    units = rd.read_table(units_src, ["unit_id", "lon", "lat", "running"], "unit table",
                          key="unit_id")
    units = rd.drop_missing_coordinates(rd.numeric(units, ["running"], "unit table"),
                                        "lon", "lat", "unit table")
    work.mkdir(parents=True, exist_ok=True)
    units.to_csv(work / "units.csv", index=False)
    roles = {"running": ["running"], "id": ["unit_id"]}
    if "cluster" in units.columns:
        roles["cluster"] = ["cluster"]
    man = rd.write_manifest({"name": "r3d_real", "units": {"path": "units.csv", "id": "unit_id",
                                                           "lon": "lon", "lat": "lat"},
                             "chip": {"size_px": 1}, "columns": roles}, work / "manifest.yaml")
    study = load_study(man, features="none")
    table = study.table.reset_index(drop=True)
    out_src = rd.find_one(data, ["outcomes.csv", "outcomes.parquet"], "outcome draws", LAYOUT)
    draws = rd.read_table(out_src, ["unit_id", "value"], "outcome draws")
    draws = rd.numeric(draws, ["value"] + (["weight"] if "weight" in draws else []),
                       "outcome draws")
    unknown = set(draws["unit_id"]) - set(table["unit_id"])
    if unknown:
        raise DataError(f"outcome draws: {len(unknown)} unit_id value(s) of '{out_src.name}' are "
                        f"not in units.csv, e.g. {sorted(map(str, unknown))[:3]}; fix the key")
    draws = draws[np.isfinite(draws["value"])]
    groups = {k: g["value"].to_numpy(float) for k, g in draws.groupby("unit_id", sort=False)}
    has = table["unit_id"].map(lambda k: k in groups and groups[k].size > 0).to_numpy(bool)
    if (~has).any():
        warnings.warn(f"{int((~has).sum())} of {len(table)} units have no finite outcome draw in "
                      f"'{out_src.name}'; they are dropped", EmptyZoneWarning, stacklevel=2)
    table = table.loc[has].reset_index(drop=True)
    table["y"] = [groups[k] for k in table["unit_id"]]
    return table, study.manifest_hash


def run(data: Path, out: Path, seed: int = 0, full: bool = False) -> dict:
    """Quantile treatment effects of the distribution-valued outcome at the cutoff."""
    import geocausal as gc
    from geocausal.results.estimate import make_provenance
    from geocausal.results.plot import save

    cfg = yaml.safe_load((HERE / "config.yaml").read_text()).get("real_data", {})
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    table, mhash = build_table(Path(data), out / "study")
    cutoff = float(cfg.get("cutoff", 0.0))
    side = table["running"] >= cutoff
    if side.sum() < 5 or (~side).sum() < 5:
        raise DataError(f"units.csv: {int(side.sum())} units at or above the cutoff {cutoff} and "
                        f"{int((~side).sum())} below; r3d needs at least 5 on each side")
    est = gc.rdd("y ~ 1", table, running="running", cutoff=cutoff,
                 inference={"n_boot": int(cfg.get("n_boot", 500))}, seed=seed)
    est.curve.to_csv(out / "tables" / "real_qte_curve.csv", index=False)
    est.tidy().to_csv(out / "tables" / "real_qte.csv", index=False)
    save(est.plot(), out / "figures" / "real_qte_curve.png")
    summary = {"n_units": int(len(table)), "n_treated_side": int(side.sum()),
               "draws_per_unit_median": float(np.median([len(v) for v in table["y"]]))}
    prov = make_provenance("y ~ 1", seed, mhash, size="real data", data=str(data),
                           config=cfg, summary=summary)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    return summary

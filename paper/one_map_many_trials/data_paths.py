"""one_map_many_trials on DHS-style data: ``geocausal paper run one_map_many_trials --data DIR``.

``DIR`` holds::

    calibration.csv   DHS-style calibration labels: DHSID, LATNUM, LONGNUM, iwi (the surveyed
                      truth), iwi_hat (the map's held-out prediction)
    trials.csv        trial frames, one row per unit and trial: trial_id, DHSID, treated (0/1),
                      iwi_hat; optional propensity

The calibration clusters go through a manifest (units with DHS coordinates; 0, 0 = missing,
dropped and counted) and ``load_study``; trial rows are matched to their predictions by key.
Per trial: the naive effect on the predictions and the LCC and Tweedie corrections
(``gc.debias``), plus ``compare_debiasers`` pseudo-trials on the calibration labels.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DiagnosticWarning

HERE = Path(__file__).resolve().parent
LAYOUT = __doc__.split("::")[1].split("The calibration")[0]


def _shared():
    from geocausal.paper_labels import load_module

    return load_module("geocausal_paper__real_data", HERE.parent / "_real_data.py")


def load_calibration(data: Path, work: Path) -> tuple[pd.DataFrame, str]:
    """Calibration labels through a manifest and ``load_study``."""
    from geocausal.data.study import load_study

    rd = _shared()
    src = rd.find_one(data, ["calibration.csv"], "calibration labels", LAYOUT)
    cal = rd.read_table(src, ["DHSID", "LATNUM", "LONGNUM", "iwi", "iwi_hat"],
                        "calibration labels", key="DHSID")
    cal = rd.numeric(cal, ["iwi", "iwi_hat"], "calibration labels")
    cal = rd.drop_missing_coordinates(cal, "LONGNUM", "LATNUM", "calibration labels",
                                      zero_is_missing=True)
    work.mkdir(parents=True, exist_ok=True)
    cal.to_csv(work / "calibration.csv", index=False)
    man = rd.write_manifest({"name": "one_map_calibration",
                             "units": {"path": "calibration.csv", "id": "DHSID",
                                       "lon": "LONGNUM", "lat": "LATNUM"},
                             "chip": {"size_px": 1},
                             "columns": {"outcome": ["iwi"], "id": ["DHSID"]}},
                            work / "manifest.yaml")
    study = load_study(man, features="none")
    return study.table.dropna(subset=["iwi", "iwi_hat"]).reset_index(drop=True), \
        study.manifest_hash


def run(data: Path, out: Path, seed: int = 0, full: bool = False) -> dict:
    """Naive, LCC and Tweedie effects per trial, and the pseudo-trial recommendation."""
    import geocausal as gc
    from geocausal.api.debias import compare_debiasers
    from geocausal.results.estimate import make_provenance

    rd = _shared()
    data = Path(data).resolve()
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    cal, mhash = load_calibration(data, out / "study")
    src = rd.find_one(data, ["trials.csv"], "trial frames", LAYOUT)
    trials = rd.read_table(src, ["trial_id", "DHSID", "treated", "iwi_hat"], "trial frames")
    trials = rd.numeric(trials, ["treated", "iwi_hat"], "trial frames")
    bad = ~trials["treated"].isin([0, 1])
    if bad.any():
        raise DataError(f"trial frames: column 'treated' must be 0 or 1; {int(bad.sum())} rows "
                        f"are not, e.g. {trials.loc[bad, 'treated'].iloc[0]!r}")
    dup = trials.duplicated(["trial_id", "DHSID"])
    if dup.any():
        raise DataError(f"trial frames: {int(dup.sum())} (trial_id, DHSID) pairs repeat; each "
                        "unit appears once per trial")
    calib = cal.rename(columns={"iwi_hat": "prediction", "iwi": "truth"})[["prediction",
                                                                          "truth"]]
    rows = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        for tid, g in trials.groupby("trial_id", sort=True):
            g = g.reset_index(drop=True)
            prop = "propensity" if "propensity" in g else None
            for method in ("none", "lcc", "tweedie"):
                est = gc.debias("iwi_hat ~ treated", g, calibration=calib.rename(
                    columns={"prediction": "iwi_hat"}), method=method, propensity=prop,
                    interval="delta" if method != "tweedie" else "bootstrap",
                    n_boot=199, seed=seed)
                t = est.tidy().iloc[0]
                rows.append({"trial_id": tid, "method": "naive" if method == "none" else method,
                             "estimate": t.estimate, "std_error": t.std_error,
                             "conf_low": t.conf_low, "conf_high": t.conf_high,
                             "n": len(g), "n_treated": int(g.treated.sum())})
        cmp = compare_debiasers(calib, criterion="slope", seed=seed)
    res = pd.DataFrame(rows)
    res.to_csv(out / "tables" / "real_trials.csv", index=False)
    cmp.table.to_csv(out / "tables" / "real_debiaser_comparison.csv")
    summary = {"n_calibration": int(len(cal)), "n_trials": int(trials.trial_id.nunique()),
               "recommended": cmp.recommended,
               "calibration_slope": float(np.polyfit(cal["iwi"], cal["iwi_hat"], 1)[0])}
    prov = make_provenance("iwi_hat ~ treated", seed, mhash, size="real data", data=str(data),
                           summary=summary)
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    return summary

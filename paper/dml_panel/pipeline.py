"""Fuhr and Papies (2024) simulation harness for ``gc.dml_panel``.

For each cell of the grid (structure A/B/C, linear or u-shaped confounding, N and T, J
confounders, AR(1) errors, two-way effects) and each simulated dataset, every DML approach and
the linear baselines (OLS of y on d, pooled OLS with the controls, linear FE, the infeasible
oracle FE with the true functional form) are fitted. The table reports mean and median
estimate and bias, RMSE, the coverage of the nominal 95% cluster-robust interval, the coverage
of the bias-aware interval, how often the coverage diagnostic fired (and how often it could
check anything: ``checked``), and seconds per dataset, with the paper's medians beside ours.
Replications run on Dask (serial at CI size). The coverage Monte Carlo at the Fuhr-Papies cell
is :mod:`paper.dml_panel.montecarlo` (table in ``MONTECARLO.md``).

The spread of the estimates across datasets is not what a standard error estimates: every
dataset redraws ``gamma`` and ``delta`` (as in the paper), so the spread mixes datasets with
very different confounding, and a few strongly confounded draws carry most of it (at the CI
cell, seed 3 with ``gamma = 2.04``, ``delta = -2.56``). Judge the standard error by the
coverage and by the standard deviation of the t-statistics instead.

Run: ``geocausal paper run dml_panel [--full] --out DIR``.
"""

from __future__ import annotations

import json
import time
import warnings
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
import yaml

from geocausal.paper_labels import attach_labels, write_numbers

HERE = Path(__file__).resolve().parent
CELL_DEFAULTS = {"n_confounders": 1, "rho": 0.0, "two_way": False}


def make_learner(kind: str, seed: int):
    """``spline``: cubic splines + ridge (fast); ``boosting``: histogram gradient boosting
    close to the paper's XGBoost (learning rate 0.3, depth 6, <= 200 rounds, early stopping)."""
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import Ridge
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import SplineTransformer

    if kind == "spline":
        return make_pipeline(SplineTransformer(n_knots=8, degree=3), Ridge(alpha=1e-3))
    if kind == "boosting":
        return HistGradientBoostingRegressor(learning_rate=0.3, max_depth=6, max_iter=200,
                                             early_stopping=True, n_iter_no_change=10,
                                             validation_fraction=0.2, random_state=seed)
    raise ValueError(f"learner '{kind}' is not 'spline' or 'boosting'")


def _linear(df: pd.DataFrame, xcols: list[str], kind: str, shape: str, two_way: bool) -> dict:
    from geocausal.designs.panel_transforms import demean

    y, d = df["y"].to_numpy(), df["d"].to_numpy()
    x = df[xcols].to_numpy()
    unit, tcode = df["unit"].to_numpy(), df["time"].to_numpy()
    if kind == "ols":
        z = sm.add_constant(d[:, None])
    elif kind == "pols":
        z = sm.add_constant(np.column_stack([d, x]))
    else:
        feats = x**2 if (kind == "oracle_fe" and shape == "u") else x
        tm = tcode if two_way else None
        z = np.column_stack([demean(d, unit, tm), demean(feats, unit, tm)])
        y = demean(y, unit, tm)
    fit = sm.OLS(y, z).fit(cov_type="cluster", cov_kwds={"groups": unit})
    j = 1 if kind in ("ols", "pols") else 0
    return {"estimate": float(fit.params[j]), "std_error": float(fit.bse[j]),
            "bias_aware_low": np.nan, "bias_aware_high": np.nan, "flag": False,
            "checked": False, "residual_share": np.nan}


def replicate(task: dict[str, Any]) -> list[dict[str, Any]]:
    """All approaches on one simulated dataset (a Dask task)."""
    from threadpoolctl import threadpool_limits

    from geocausal.api.dml_panel import dml_panel
    from geocausal.datasets.panel_dgp import make_fuhr_papies

    cell, seed = task["cell"], task["seed"]
    df = make_fuhr_papies(cell["n_units"], cell["n_periods"], structure=cell["structure"],
                          shape=cell["shape"], n_confounders=cell["n_confounders"],
                          rho=cell["rho"], two_way=cell["two_way"], seed=seed)
    xcols = [c for c in df.columns if c.startswith("x")]
    formula = "y ~ d + " + " + ".join(xcols)
    rows = []
    base = {**cell, "seed": seed, "gamma1": df.attrs["gamma"][0], "delta": df.attrs["delta"]}
    with threadpool_limits(1), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for approach in task["approaches"]:
            lrn = make_learner(task["learner"], seed)
            t0 = time.perf_counter()
            est = dml_panel(formula, df, unit="unit", time="time", approach=approach,
                            learners={"ml_l": lrn, "ml_m": lrn}, folds=task["folds"],
                            seed=seed,
                            options={"n_rep": task["n_rep"], "n_boot": 0, "time_effects": cell["two_way"],
                                     "bias_check": task["bias_check"]})
            ba = est.diagnostics["bias_aware_ci"].iloc[0]
            rows.append({**base, "approach": approach, "estimate": float(est.params["d"]),
                         "std_error": float(est.std_errors["d"]),
                         "bias_aware_low": float(ba.conf_low),
                         "bias_aware_high": float(ba.conf_high),
                         "flag": bool(est.diagnostics["coverage_flag"]),
                         "checked": bool(est.diagnostics["coverage_checked"]),
                         "residual_share": float(est.diagnostics["residual_share"]["d"]),
                         "seconds": time.perf_counter() - t0})
        for kind in ("ols", "pols", "fe", "oracle_fe"):
            t0 = time.perf_counter()
            res = _linear(df, xcols, kind, cell["shape"], cell["two_way"])
            rows.append({**base, "approach": kind, **res,
                         "seconds": time.perf_counter() - t0})
    return rows


def summarise(reps: pd.DataFrame, truth: float, paper: dict[str, float]) -> pd.DataFrame:
    """Mean and median estimate and bias, RMSE, coverage, flag share, seconds per dataset."""
    keys = ["structure", "shape", "n_units", "n_periods", "n_confounders", "rho", "two_way",
            "approach"]
    r = reps.copy()
    r["covered"] = (r["estimate"] - 1.96 * r["std_error"] <= truth) & \
        (truth <= r["estimate"] + 1.96 * r["std_error"])
    r["covered_bias_aware"] = (r["bias_aware_low"] <= truth) & (truth <= r["bias_aware_high"])
    g = r.groupby(keys, sort=False)
    out = g.agg(datasets=("estimate", "size"), mean=("estimate", "mean"),
                median=("estimate", "median"), sd=("estimate", "std"),
                mean_se=("std_error", "mean"), coverage=("covered", "mean"),
                coverage_bias_aware=("covered_bias_aware", "mean"),
                flagged=("flag", "mean"), checked=("checked", "mean"),
                seconds=("seconds", "mean")).reset_index()
    out["mean_bias"] = out["mean"] - truth
    out["median_bias"] = out["median"] - truth
    out["rmse"] = g["estimate"].apply(lambda e: float(np.sqrt(np.mean((e - truth) ** 2)))).to_numpy()
    dml = ~out["approach"].isin(["ols", "pols", "fe", "oracle_fe"])
    out.loc[~dml, "coverage_bias_aware"] = np.nan
    baseline = (out.structure == "C") & (out["shape"] == "u") & (out.n_units == 500) & \
        (out.n_periods == 10) & (out.n_confounders == 1) & (out.rho == 0) & ~out.two_way
    out["paper_median"] = np.where(baseline, out["approach"].map(paper), np.nan)
    return out


def run(full: bool, out: Path, seed: int = 0, size: str | None = None,
        n_datasets: int | None = None, workers: int | None = None) -> None:
    """Run the harness at CI size (or the paper's with ``full``; ``size`` names any section of
    config.yaml, e.g. ``"reduced"`` or ``"paper_cell"``; ``n_datasets`` and ``workers``
    override the section's) and write tables, a figure and provenance under ``out``."""
    from geocausal.parallel import dask_client
    from geocausal.results.estimate import make_provenance
    from geocausal.results.plot import save
    from geocausal.results.plot_dml import estimates_boxplot

    cfg_all = yaml.safe_load((HERE / "config.yaml").read_text())
    size = size or ("full" if full else "ci")
    if size not in cfg_all or size == "paper_medians":
        raise ValueError(f"size '{size}' is not a section of {HERE / 'config.yaml'}")
    cfg = dict(cfg_all[size])
    for key, val in (("n_datasets", n_datasets), ("workers", workers)):
        if val is not None:
            if int(val) < 0 or (key == "n_datasets" and int(val) < 1):
                raise ValueError(f"{key}={val} must be a positive integer")
            cfg[key] = int(val)
    out = Path(out)
    (out / "tables").mkdir(parents=True, exist_ok=True)
    (out / "figures").mkdir(parents=True, exist_ok=True)
    tasks = [{"cell": {**CELL_DEFAULTS, **cell}, "seed": seed + s, "learner": cfg["learner"],
              "folds": cfg["folds"], "n_rep": cfg["n_rep"], "approaches": cfg["approaches"],
              "bias_check": cfg.get("bias_check", True)}
             for cell in cfg["cells"] for s in range(cfg["n_datasets"])]
    from geocausal._progress import progress

    t0 = time.perf_counter()
    with dask_client(workers=cfg.get("workers") or None) as client:
        if client is None:
            results = [replicate(t) for t in progress(tasks, desc="dml_panel replications")]
        else:
            from dask.distributed import as_completed

            futures = client.map(replicate, tasks, pure=False)
            for _ in progress(as_completed(futures), total=len(futures),
                              desc="dml_panel replications"):
                pass
            results = client.gather(futures)
    wall = time.perf_counter() - t0
    reps = pd.DataFrame([row for rows in results for row in rows])
    reps.to_csv(out / "tables" / "replications.csv", index=False)
    summary = summarise(reps, 1.0, cfg_all["paper_medians"])
    summary.to_csv(out / "tables" / "summary.csv", index=False)
    first = {**CELL_DEFAULTS, **cfg["cells"][0]}
    paper_cell = (first["structure"], first["shape"], first["n_units"], first["n_periods"],
                  first["n_confounders"], first["rho"], first["two_way"]) == \
        ("C", "u", 500, 10, 1, 0.0, False)
    sel = np.ones(len(reps), dtype=bool)
    for k, v in first.items():
        sel &= (reps[k] == v).to_numpy()
    ax = estimates_boxplot(reps[sel], truth=1.0, reference=cfg_all["paper_medians"],
                           title=f"cell: structure {first['structure']}, {first['shape']}, "
                                 f"N={first['n_units']}, T={first['n_periods']}; "
                                 f"{cfg['n_datasets']} datasets, {cfg['learner']} learners"
                                 + ("" if paper_cell else " (not the paper's cell)"))
    save(ax, out / "figures" / "estimates.png")
    prov = make_provenance(None, seed, size=size, config=cfg,
                           wall_seconds=wall, tasks=len(tasks), figure_cell=first,
                           figure_is_paper_cell=paper_cell)
    prov = attach_labels(prov, "dml_panel")
    (out / "provenance.json").write_text(json.dumps(prov, indent=2, default=str))
    numbers = reference_numbers(reps, summary)
    write_numbers(out / "tables" / "reference_numbers.json", numbers, pipeline="dml_panel",
                  size=size, seed=seed, n_datasets=cfg["n_datasets"])
    print(summary[["approach", "median", "paper_median", "coverage", "seconds"]]
          .round(3).to_string(index=False), flush=True)


def reference_numbers(reps: pd.DataFrame, summary: pd.DataFrame) -> dict[str, dict]:
    """Median estimate per approach with its Monte Carlo SE (first cell): the numbers the
    drift test compares with ``reference_ci.json``.

    The MC SE of a median is ``1.2533 * sd / sqrt(n)`` under normality; the spread across
    datasets is heavy-tailed (one strongly confounded draw), so we use the robust spread
    ``1.4826 * MAD`` instead of the SD, floored at 0.01.
    """
    from geocausal.paper_labels import number

    first = summary.iloc[0]
    keys = ["structure", "shape", "n_units", "n_periods"]
    sel = np.ones(len(reps), dtype=bool)
    for k in keys:
        sel &= (reps[k] == first[k]).to_numpy()
    out = {}
    for a, g in reps[sel].groupby("approach"):
        e = g["estimate"].to_numpy()
        spread = 1.4826 * np.median(np.abs(e - np.median(e)))
        mcse = max(1.2533 * spread / np.sqrt(e.size), 0.01)
        out[f"median_{a}"] = number(np.median(e), mcse)
    return out

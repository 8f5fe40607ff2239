"""Coverage Monte Carlo for ``gc.dml_panel`` at the Fuhr and Papies cell (N = 500, T = 10).

Every replication draws one Fuhr-Papies dataset (a new seed, so new ``gamma`` and ``delta``
as in the paper), fits each approach with each learner and records the estimate, its
cluster-robust standard error, whether the nominal 95% interval covers the truth (1), the
coverage diagnostic of the fit (``coverage_flag``, ``coverage_ratio``, ``bias_over_se``,
``residual_share``) and whether the bias-aware interval covers. The summary table reports per
structure x learner x approach the coverage with its binomial Monte Carlo standard error, the
mean and median bias, the mean standard error beside the standard deviation of the estimates,
the standard deviation of the t-statistics (1 when the standard error is honest), how often
the diagnostic fired, and the coverage among flagged and unflagged replications.

Run (full size, 16 cores)::

    .venv/bin/python -m paper.dml_panel.montecarlo --reps 200 --workers 16 \\
        --out paper/dml_panel/mc_full

Structures are ``<A|B|C>-<u|linear>``; learners are ``linear`` (least squares; correctly
specified for the linear structure), ``spline`` (cubic splines + ridge) and ``boosting``
(the paper's gradient boosting, see :func:`paper.dml_panel.pipeline.make_learner`).
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from geocausal.parallel import ScriptParser, add_parallel_arguments, parallel_map

TRUTH = 1.0
DEFAULT_APPROACHES = ("cre", "cre_cp", "fd", "pooled", "within", "late")
DEFAULT_STRUCTURES = ("C-u", "C-linear")
DEFAULT_LEARNERS = ("linear", "spline", "boosting")
KEYS = ["structure", "learner", "approach"]


def parse_structure(key: str) -> tuple[str, str]:
    """``"C-u"`` -> ``("C", "u")``.

    Examples
    --------
    >>> parse_structure("B-linear")
    ('B', 'linear')
    """
    from geocausal.errors import DataError

    parts = key.split("-")
    if len(parts) != 2 or parts[0] not in ("A", "B", "C") or parts[1] not in ("u", "linear"):
        raise DataError(f"structure '{key}' is not '<A|B|C>-<u|linear>', e.g. 'C-u'")
    return parts[0], parts[1]


def _learner(kind: str, seed: int):
    from sklearn.linear_model import LinearRegression

    from paper.dml_panel.pipeline import make_learner

    return LinearRegression() if kind == "linear" else make_learner(kind, seed)


def one_replication(task: dict[str, Any]) -> list[dict[str, Any]]:
    """Every structure x learner x approach on the datasets of one seed (a process task)."""
    from threadpoolctl import threadpool_limits

    from geocausal.api.dml_panel import dml_panel
    from geocausal.datasets.panel_dgp import make_fuhr_papies

    seed = int(task["seed"])
    rows = []
    for key in task["structures"]:
        structure, shape = parse_structure(key)
        df = make_fuhr_papies(task["n_units"], task["n_periods"], structure=structure,
                              shape=shape, seed=seed)
        base = {"structure": key, "seed": seed, "n_units": task["n_units"],
                "n_periods": task["n_periods"], "gamma": df.attrs["gamma"][0],
                "delta": df.attrs["delta"]}
        for kind in task["learners"]:
            for approach in task["approaches"]:
                lrn = _learner(kind, seed)
                t0 = time.perf_counter()
                with threadpool_limits(1), warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    est = dml_panel("y ~ d + x1", df, unit="unit", time="time",
                                    approach=approach, learners={"ml_l": lrn, "ml_m": lrn},
                                    folds=task["folds"], seed=seed,
                                    options={"n_rep": task["n_rep"], "bias_check": True,
                                             "n_boot": 0})
                dg = est.diagnostics
                theta, se = float(est.params["d"]), float(est.std_errors["d"])
                ba = dg["bias_aware_ci"].iloc[0]
                rows.append({
                    **base, "learner": kind, "approach": approach, "estimate": theta,
                    "std_error": se, "t": (theta - TRUTH) / se,
                    "covered": bool(abs(theta - TRUTH) <= 1.959964 * se),
                    "covered_bias_aware": bool(ba.conf_low <= TRUTH <= ba.conf_high),
                    "flag": bool(dg["coverage_flag"]),
                    "coverage_ratio": float(dg["coverage_ratio"]),
                    "bias_over_se": float(dg.get("bias_over_se", {"d": np.nan})["d"]),
                    "residual_share": float(dg.get("residual_share", {"d": np.nan})["d"]),
                    "r2_m": float(dg["nuisance_r2"]["propensity[0]"]),
                    "seconds": time.perf_counter() - t0})
    return rows


def run_montecarlo(
    reps: int,
    *,
    structures: Sequence[str] = DEFAULT_STRUCTURES,
    approaches: Sequence[str] = DEFAULT_APPROACHES,
    learners: Sequence[str] = DEFAULT_LEARNERS,
    n_units: int = 500,
    n_periods: int = 10,
    folds: int = 5,
    n_rep: int = 1,
    seed: int = 0,
    workers: int = 1,
    scheduler: str | None = None,
    client: Any = None,
) -> pd.DataFrame:
    """Per-replication records (one row per seed x structure x learner x approach).

    Replication ``r`` uses seed ``seed + r`` for the data, the folds and the learners, so a
    run is reproducible whatever the number of workers, and the same on local processes
    (``workers``) or a Dask cluster (``scheduler`` address or ``client``).

    Examples
    --------
    >>> reps = run_montecarlo(2, structures=["C-linear"], approaches=["cre"],
    ...                       learners=["linear"], n_units=30, n_periods=4, folds=2)
    >>> reps[["structure", "learner", "approach"]].drop_duplicates().values.tolist()
    [['C-linear', 'linear', 'cre']]
    >>> len(reps)
    2
    """
    for key in structures:
        parse_structure(key)
    tasks = [{"seed": seed + r, "structures": list(structures), "approaches": list(approaches),
              "learners": list(learners), "n_units": n_units, "n_periods": n_periods,
              "folds": folds, "n_rep": n_rep} for r in range(reps)]
    results = parallel_map(one_replication, tasks, workers=workers, scheduler=scheduler,
                           client=client, desc="Monte Carlo")
    return pd.DataFrame([row for rows in results for row in rows])


def _binom_region(n: int, p: float = 0.95, level: float = 0.99) -> tuple[float, float]:
    lo = stats.binom.ppf((1 - level) / 2, n, p) / n
    hi = stats.binom.ppf(1 - (1 - level) / 2, n, p) / n
    return float(lo), float(hi)


def summarise_mc(reps: pd.DataFrame) -> pd.DataFrame:
    """Coverage (with its binomial MC SE and the 99% region of an honest 95% interval), bias,
    mean SE versus SD of the estimates, SD of t, flag rate, coverage by flag.

    Examples
    --------
    >>> r = pd.DataFrame({"structure": "C-u", "learner": "spline", "approach": "cre",
    ...                   "estimate": [1.0, 1.2], "std_error": 0.1, "t": [0.0, 2.0],
    ...                   "covered": [True, False], "covered_bias_aware": [True, True],
    ...                   "flag": [False, True], "seconds": 0.1})
    >>> s = summarise_mc(r).iloc[0]
    >>> float(s.coverage), float(s.coverage_unflagged), float(s.coverage_flagged)
    (0.5, 1.0, 0.0)
    """
    rows = []
    for key, g in reps.groupby(KEYS, sort=False):
        n = len(g)
        cov = float(g["covered"].mean())
        lo, hi = _binom_region(n)
        flagged = g["flag"].to_numpy(dtype=bool)
        rows.append({
            **dict(zip(KEYS, key)), "reps": n, "coverage": cov,
            "coverage_mcse": float(np.sqrt(max(cov * (1 - cov), 0.95 * 0.05) / n)),
            "honest_region_low": lo, "honest_region_high": hi,
            "mean_bias": float(g["estimate"].mean() - TRUTH),
            "median_bias": float(g["estimate"].median() - TRUTH),
            "mean_se": float(g["std_error"].mean()),
            "sd_estimate": float(g["estimate"].std(ddof=1)) if n > 1 else np.nan,
            "sd_t": float(g["t"].std(ddof=1)) if n > 1 else np.nan,
            "median_abs_t": float(g["t"].abs().median()),
            "flag_rate": float(flagged.mean()),
            "coverage_unflagged": float(g.loc[~flagged, "covered"].mean())
            if (~flagged).any() else np.nan,
            "coverage_flagged": float(g.loc[flagged, "covered"].mean())
            if flagged.any() else np.nan,
            "coverage_bias_aware": float(g["covered_bias_aware"].mean()),
            "seconds": float(g["seconds"].mean()),
        })
    return pd.DataFrame(rows)


def to_markdown(summary: pd.DataFrame, *, title: str = "") -> str:
    """The summary as a Markdown table (numbers rounded for reading).

    Examples
    --------
    >>> s = pd.DataFrame({"structure": ["C-u"], "learner": ["spline"], "approach": ["cre"],
    ...                   "reps": [2], "coverage": [0.5], "coverage_mcse": [0.35]})
    >>> print(to_markdown(s).splitlines()[0])
    | structure | learner | approach | reps | coverage | coverage_mcse |
    """
    cols = list(summary.columns)
    lines = [f"### {title}", ""] if title else []
    lines.append("| " + " | ".join(cols) + " |")
    lines.append("|" + "|".join("---" for _ in cols) + "|")
    for _, row in summary.iterrows():
        cells = []
        for c in cols:
            v = row[c]
            if isinstance(v, float | np.floating):
                cells.append("" if np.isnan(v) else f"{v:.3f}")
            else:
                cells.append(str(v))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    """Command line: run, write ``replications.csv``, ``summary.csv`` and ``summary.md``."""
    p = ScriptParser(description=__doc__.splitlines()[0])
    p.add_argument("--reps", type=int, default=200)
    add_parallel_arguments(p)
    p.add_argument("--approaches", default=",".join(DEFAULT_APPROACHES))
    p.add_argument("--structures", default=",".join(DEFAULT_STRUCTURES))
    p.add_argument("--learners", default=",".join(DEFAULT_LEARNERS))
    p.add_argument("--n-units", type=int, default=500)
    p.add_argument("--n-periods", type=int, default=10)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument("--n-rep", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", required=True, type=Path)
    a = p.parse_args(argv)
    t0 = time.perf_counter()
    reps = run_montecarlo(a.reps, structures=a.structures.split(","),
                          approaches=a.approaches.split(","), learners=a.learners.split(","),
                          n_units=a.n_units, n_periods=a.n_periods, folds=a.folds,
                          n_rep=a.n_rep, seed=a.seed, workers=a.workers,
                          scheduler=a.scheduler)
    wall = time.perf_counter() - t0
    summary = summarise_mc(reps)
    a.out.mkdir(parents=True, exist_ok=True)
    reps.to_csv(a.out / "replications.csv", index=False)
    summary.to_csv(a.out / "summary.csv", index=False)
    title = (f"N = {a.n_units}, T = {a.n_periods}, {a.reps} replications, {a.folds} unit "
             f"folds, n_rep = {a.n_rep}, seed {a.seed}; wall {wall:.0f} s on {a.workers} "
             "worker(s)")
    (a.out / "summary.md").write_text(to_markdown(summary, title=title))
    print(to_markdown(summary, title=title))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

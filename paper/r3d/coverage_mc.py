"""Monte Carlo: uniform coverage of the R3D bands in small samples, before and after the fix.

Each replication draws DGP1 or DGP2 of Van Dijcke (2025) (``tau(q) = delta`` at every q), fits
the "simple" and "frechet" estimators on the deciles with the defaults of ``gc.rdd`` (p = 2,
s = 1, MSE bandwidths) and the Epanechnikov kernel (``--kernel``), and records whether the 95% uniform band
covers ``delta`` at every decile, for these inference variants:

``hc2_normal``
    the old default: HC2 scores, Gaussian multiplier critical value.
``hc3_normal``
    HC3 scores, Gaussian critical value.
``hc2_bm``
    HC2 scores, critical values with Bell-McCaffrey degrees of freedom per quantile (the new
    default; :mod:`geocausal.designs.rdd.smallsample`).
``hc3_bm``
    HC3 scores with Bell-McCaffrey degrees of freedom.

Usage (the recorded table in ``coverage_mc.md`` is the full size)::

    python paper/r3d/coverage_mc.py --reps 1000 --workers 16 --out paper/r3d/coverage_mc.md
    python paper/r3d/coverage_mc.py --reps 50 --workers 1          # a smoke run
    python paper/r3d/coverage_mc.py --reps 1000 --scheduler tcp://10.0.0.5:8786  # on Dask

Every replication has its own seed (``seed * 1_000_003 + rep``); the Monte Carlo standard
error of a coverage near 0.95 is ``sqrt(.95 * .05 / reps)`` (0.0069 at 1,000 reps).
"""

from __future__ import annotations

import os
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from geocausal.parallel import ScriptParser, add_parallel_arguments, parallel_map

GRID = np.arange(1, 10) / 10
VARIANTS = ("hc2_normal", "hc3_normal", "hc2_bm", "hc3_bm")


def one_replication(args: tuple) -> list[dict]:
    """All variants on one simulated sample: one row per (method, variant)."""
    from geocausal.designs.rdd.bootstrap import critical_value, gaussian_draws
    from geocausal.designs.rdd.estimator import fit_r3d
    from geocausal.designs.rdd.simulate import simulate
    from geocausal.designs.rdd.smallsample import t_critical

    dgp, n, delta, rep, seed, n_boot, bandwidth, methods, kernel = args
    s = seed * 1_000_003 + rep
    x, Y = simulate(dgp, n, 50, delta=delta, seed=s)
    Q = np.quantile(Y, GRID, axis=1).T
    rows = []
    for method in methods:
        for vce in ("hc2", "hc3"):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                fit = fit_r3d(x, Q, GRID, method=method, kernel=kernel, vce=vce,
                              bandwidth=bandwidth)
            se = fit.se
            D = gaussian_draws(fit.score, n_boot, seed=s + 7)
            c = critical_value(np.abs(D / se).max(axis=1), 0.05)
            t = np.abs(fit.tau - delta) / se
            for kind, crit in (("normal", np.full(GRID.size, c)), ("bm", t_critical(c, fit.df))):
                rows.append({"dgp": dgp, "n": n, "method": method, "variant": f"{vce}_{kind}",
                             "covered": bool(np.all(t <= crit)),
                             "width": float(np.mean(2 * crit * se)),
                             "df_median": float(np.median(fit.df))})
    return rows


def run(reps: int, workers: int, seed: int = 0, ns=(200, 500), dgps=("dgp1",),
        methods=("simple", "frechet"), n_boot: int = 500, bandwidth: str = "mse",
        delta: float = 1.0, kernel: str = "epanechnikov", scheduler: str | None = None,
        client=None) -> pd.DataFrame:
    """Coverage table: one row per (dgp, n, method, variant).

    ``workers`` local processes, or a Dask cluster (``scheduler`` address or ``client``): the
    same replications with the same seeds, so the table does not depend on where they ran.
    """
    jobs = [(d, n, delta, r, seed, n_boot, bandwidth, tuple(methods), kernel)
            for d in dgps for n in ns for r in range(reps)]
    out = parallel_map(one_replication, jobs, workers=workers, scheduler=scheduler,
                       client=client, desc="coverage Monte Carlo")
    df = pd.DataFrame([row for rows in out for row in rows])
    tab = (df.groupby(["dgp", "n", "method", "variant"], sort=False)
           .agg(coverage=("covered", "mean"), mean_width=("width", "mean"),
                df_median=("df_median", "median"), reps=("covered", "size"))
           .reset_index())
    tab["mc_se"] = np.sqrt(tab.coverage * (1 - tab.coverage) / tab.reps)
    return tab


def to_markdown(tab: pd.DataFrame) -> str:
    """A GitHub markdown table (floats with 4 decimals)."""
    from geocausal.results.table import pipe_table

    return pipe_table(tab, digits=4)


def main(argv: list[str] | None = None) -> None:
    ap = ScriptParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=200)
    add_parallel_arguments(ap)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n", type=int, nargs="+", default=[200, 500])
    ap.add_argument("--dgp", nargs="+", default=["dgp1"])
    ap.add_argument("--bandwidth", default="mse")
    ap.add_argument("--n-boot", type=int, default=500)
    ap.add_argument("--kernel", default="epanechnikov")
    ap.add_argument("--out", type=Path, default=None,
                    help="markdown file to write the table to (else printed)")
    a = ap.parse_args(argv)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    t0 = time.perf_counter()
    tab = run(a.reps, a.workers, a.seed, tuple(a.n), tuple(a.dgp), n_boot=a.n_boot,
              bandwidth=a.bandwidth, kernel=a.kernel, scheduler=a.scheduler)
    secs = time.perf_counter() - t0
    md = to_markdown(tab)
    head = (f"reps={a.reps} seed={a.seed} n_boot={a.n_boot} bandwidth={a.bandwidth} "
            f"kernel={a.kernel} "
            f"({secs:.0f} s on {a.workers} workers)\n\n")
    if a.out is None:
        print(head + md)
    else:
        a.out.write_text(head + md + "\n")
        print(f"wrote {a.out}")


if __name__ == "__main__":
    main()

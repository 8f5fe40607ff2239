"""AIPW (gc.aipw) against DoubleML's DoubleMLIRM with the same learners and the same folds.

Prints both timings, their ratio (ours / DoubleML; below 1 means faster) and the difference of
the estimates and standard errors, which must be zero up to floating point.

    .venv/bin/python benchmarks/aipw.py            # 100,000 units
    .venv/bin/python benchmarks/aipw.py --small    # 10,000 units
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd
from sklearn.linear_model import LinearRegression, LogisticRegression


def make_data(n: int, p: int, seed: int) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    e = 1 / (1 + np.exp(-(X[:, 0] - 0.5 * X[:, 1] + 0.25 * X[:, 2])))
    d = rng.binomial(1, e)
    y = 2.0 * d + X @ np.linspace(1, 0.1, p) + rng.normal(size=n)
    df = pd.DataFrame(X, columns=[f"x{j}" for j in range(p)])
    df["d"], df["y"] = d, y
    return df


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--small", action="store_true", help="10,000 units")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--p", type=int, default=10)
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args(argv)
    n = args.n or (10_000 if args.small else 100_000)

    import doubleml as dml

    import geocausal as gc
    from geocausal.nuisance.crossfit import fold_indices, make_folds

    df = make_data(n, args.p, 0)
    xcols = [c for c in df.columns if c.startswith("x")]
    folds = make_folds(n, args.folds, seed=1, stratify=df["d"])
    smpls = [fold_indices(folds)]
    learners = {"propensity": LogisticRegression(max_iter=1000), "outcome": LinearRegression()}
    formula = "y ~ d + " + " + ".join(xcols)

    def ours():
        # clip=0.01: DoubleML's default propensity clipping
        return gc.aipw(formula, df, learners=learners, folds=folds, clip=0.01)

    def peer():
        obj = dml.DoubleMLData(df, "y", "d", xcols)
        m = dml.DoubleMLIRM(obj, LinearRegression(), LogisticRegression(max_iter=1000),
                            score="ATE", draw_sample_splitting=False)
        m.set_sample_splitting(smpls)
        m.fit()
        return m

    t_ours, t_peer = [], []
    for _ in range(args.repeats):  # interleave so that machine load hits both alike
        t0 = time.perf_counter()
        est = ours()
        t_ours.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        m = peer()
        t_peer.append(time.perf_counter() - t0)
    to, tp = min(t_ours), min(t_peer)
    print(f"units={n:,} features={args.p} folds={args.folds} (best of {args.repeats})")
    print(f"geocausal aipw : {to:8.3f} s   ATE {est.params['d']:.10f}  SE {est.std_errors['d']:.10f}")
    print(f"DoubleMLIRM    : {tp:8.3f} s   ATE {m.coef[0]:.10f}  SE {m.se[0]:.10f}")
    print(f"time ratio (geocausal / DoubleML): {to / tp:.3f}")
    print(f"|ATE difference| = {abs(est.params['d'] - m.coef[0]):.2e}, "
          f"|SE difference| = {abs(est.std_errors['d'] - m.se[0]):.2e}")
    if args.n is None and not args.small:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import record, speedup

        record(f"AIPW, {n:,} units", "DoubleMLIRM (same learners and folds)", speedup(to, tp),
               result=f"{to:.2f} s vs {tp:.2f} s; |ATE diff| "
               f"{abs(est.params['d'] - m.coef[0]):.1e}")


if __name__ == "__main__":
    main()

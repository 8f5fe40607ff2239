"""Benchmark: DR-learner + BLP/GATES/RATE of geocausal against econml DRLearner + DRTester.

Same learners (linear outcome regression on [X, d], logistic propensity, linear final stage),
same cross-fitting folds for the DR-learner. Prints wall times, their ratio, and agreement:
max |CATE difference| with econml's DRLearner, ATEs, and the BLP slopes of both evaluations.

Both sides run in this process, alternating, ``--repeats`` times; the best time of each is
compared. "Equal work" runs geocausal's evaluation with one generic-ML split (econml's
DRTester makes one train/validation split); the default 20 splits are timed too.

Usage: ``python benchmarks/cate.py [--small] [--n N] [--splits S] [--repeats R] [--no-record]``
"""

from __future__ import annotations

import argparse
import time

import numpy as np
from sklearn.linear_model import LinearRegression, LogisticRegression


def dgp(n: int, p: int = 10, seed: int = 0):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(n, p))
    e = 1 / (1 + np.exp(-0.5 * X[:, 1]))
    d = (rng.random(n) < e).astype(float)
    tau = 1 + X[:, 0] + 0.5 * X[:, 2]
    y = X[:, 0] + X[:, 1] + 0.5 * X[:, 3] + d * tau + rng.normal(size=n)
    return X, d, y, tau


def ours(X, d, y, folds, n_splits, n_boot, seed=0):
    from geocausal.designs.cate import crossfit_cate
    from geocausal.designs.cate_eval import calibration_test, generic_ml, rates
    from geocausal.nuisance.crossfit import make_folds

    lrn = {"outcome": LinearRegression(), "propensity": LogisticRegression(),
           "final": LinearRegression()}
    t0 = time.perf_counter()
    fit = crossfit_cate("dr", X, y, d, folds, learners=lrn, outcome_mode="pooled", clip=1e-6)
    t_fit = time.perf_counter() - t0

    def proxy(rows, s):
        return crossfit_cate("dr", X[rows], y[rows], d[rows],
                             make_folds(rows.size, 2, s, stratify=d[rows]), learners=lrn,
                             outcome_mode="pooled", clip=1e-6)

    gml = generic_ml(y, d, proxy, X, n_splits=n_splits, n_groups=4, seed=seed, progress=False)
    rts = rates(fit.phi, fit.tau, targets=("AUTOC", "QINI"), n_boot=n_boot, seed=seed,
                progress=False)
    calibration_test(y, d, fit.e, fit.e * fit.mu1 + (1 - fit.e) * fit.mu0, fit.tau)
    return fit, gml, [rts["AUTOC"], rts["QINI"]], t_fit, time.perf_counter() - t0


def econml_run(X, d, y, folds, n_boot):
    from econml.dr import DRLearner
    from econml.validate import DRTester

    from geocausal.nuisance.crossfit import fold_indices

    t0 = time.perf_counter()
    est = DRLearner(model_propensity=LogisticRegression(), model_regression=LinearRegression(),
                    model_final=LinearRegression(), cv=list(fold_indices(folds)),
                    min_propensity=1e-6).fit(y, d, X=X)
    t_fit = time.perf_counter() - t0
    n = y.size
    tr, va = np.arange(n) < n // 2, np.arange(n) >= n // 2
    tester = DRTester(model_regression=LinearRegression(), model_propensity=LogisticRegression(),
                      cate=est, cv=5)
    di = d.astype(int)
    tester.fit_nuisance(X[va], di[va], y[va], X[tr], di[tr], y[tr])
    res = tester.evaluate_all(X[va], X[tr], n_groups=4, n_bootstrap=n_boot)
    return est, res, t_fit, time.perf_counter() - t0


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--small", action="store_true", help="5,000 units, 5 splits")
    ap.add_argument("--n", type=int, default=50_000)
    ap.add_argument("--splits", type=int, default=20)
    ap.add_argument("--boot", type=int, default=1000)
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side (best of)")
    ap.add_argument("--no-record", action="store_true", help="do not write benchmarks/rows.jsonl")
    a = ap.parse_args(argv)
    n, splits, boot = (5_000, 5, 200) if a.small else (a.n, a.splits, a.boot)
    from geocausal.nuisance.crossfit import make_folds

    Xw, dw, yw, _ = dgp(2000, seed=9)  # warm-up: imports and first calls are not timed
    fw = make_folds(2000, 5, seed=1, stratify=dw)
    ours(Xw, dw, yw, fw, 1, 10)
    econml_run(Xw, dw, yw, fw, 10)
    X, d, y, tau = dgp(n)
    folds = make_folds(n, 5, seed=1, stratify=d)
    # side by side, alternating, best of --repeats (the least disturbed run on a shared machine)
    t_fit, t_one, t_all, e_fit, e_all = ([] for _ in range(5))
    c_one, c_all, c_eco = [], [], []
    for _ in range(max(a.repeats, 1)):
        c0 = time.process_time()
        r1 = ours(X, d, y, folds, 1, boot)
        c1 = time.process_time()
        est, res, ef, ea = econml_run(X, d, y, folds, boot)
        c2 = time.process_time()
        fit, gml, rates, tf, ta = ours(X, d, y, folds, splits, boot)
        c_one.append(c1 - c0)
        c_eco.append(c2 - c1)
        c_all.append(time.process_time() - c2)
        t_fit += [r1[3], tf]
        t_one.append(r1[4])
        t_all.append(ta)
        e_fit.append(ef)
        e_all.append(ea)
    t_fit, t_one, t_all, e_fit, e_all = map(min, (t_fit, t_one, t_all, e_fit, e_all))
    c_one, c_all, c_eco = map(min, (c_one, c_all, c_eco))
    diff = float(np.max(np.abs(fit.predict(X) - est.effect(X))))
    blp = gml.blp.set_index("term")
    print(f"units {n:,}; folds 5; generic ML splits {splits}; bootstrap {boot}")
    print(f"DR-learner fit:  geocausal {t_fit:.2f}s  econml {e_fit:.2f}s  "
          f"ratio econml/geocausal {e_fit / t_fit:.2f}")
    print(f"fit + evaluation, equal work (one split): geocausal {t_one:.2f}s  econml "
          f"{e_all:.2f}s (DRTester evaluate_all)  ratio {e_all / t_one:.2f} (target >= 1); "
          f"CPU {c_one:.2f}s vs {c_eco:.2f}s, ratio {c_eco / c_one:.2f}")
    print(f"fit + evaluation: geocausal {t_all:.2f}s (BLP/GATES/CLAN x{splits} splits, "
          f"AUTOC+QINI, calibration)  econml {e_all:.2f}s (DRTester evaluate_all)  "
          f"ratio {e_all / t_all:.2f} (target >= 0.5); CPU {c_all:.2f}s, ratio "
          f"{c_eco / c_all:.2f}")
    print(f"max |CATE geocausal - econml| = {diff:.2e}")
    print(f"ATE: geocausal {fit.ate:.4f}, econml {float(est.ate(X)):.4f} "
          f"(final-stage mean), truth {tau.mean():.4f}")
    print(f"BLP slope: geocausal {blp.loc['beta2', 'estimate']:.4f} "
          f"[{blp.loc['beta2', 'conf_low']:.4f}, {blp.loc['beta2', 'conf_high']:.4f}]  "
          f"econml DRTester {float(np.ravel(res.blp.params)[0]):.4f} "
          f"(se {float(np.ravel(res.blp.errs)[0]):.4f})")
    g = gml.gates
    print("GATES geocausal: " + ", ".join(f"{v:.3f}" for v in g["estimate"][:4]))
    print(f"AUTOC {rates[0].estimate:.4f} (se {rates[0].std_error:.4f}); "
          f"QINI {rates[1].estimate:.4f} (se {rates[1].std_error:.4f})")
    if not a.small and not a.no_record:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import record, speedup

        what = f"DR-learner + BLP/GATES/CLAN/RATE/calibration, {n:,} units"
        record(f"{what}, equal work (1 split)", "econml DRLearner + DRTester",
               speedup(t_one, e_all), result=f"{t_one:.2f} s vs {e_all:.2f} s wall (CPU ratio "
               f"{c_eco / c_one:.2f}x); DR-learner fit "
               f"alone {e_fit / t_fit:.2f}x; max CATE diff {diff:.1e}; target 1.0x")
        record(f"{what}, {splits}-split default", "econml DRLearner + DRTester (one pass)",
               speedup(t_all, e_all), result=f"{t_all:.2f} s vs {e_all:.2f} s wall (CPU ratio "
               f"{c_eco / c_all:.2f}x); target 0.5x "
               "(within 2x)")


if __name__ == "__main__":
    main()

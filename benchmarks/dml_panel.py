"""Time gc.dml_panel against DoubleML's DoubleMLPLPR with the same learners and folds.

Data: the Fuhr-Papies DGP (structure C, u-shaped), N = 500 units and T = 10 periods by default
(``--small``: N = 100). Approaches compared: cre_cp / cre_general, fd / fd_exact and
within / wg_approx, each with 5 unit folds passed to both packages. The estimates are checked to
agree, and the ratio DoubleML time / our time is printed (above 1: we are faster). Our default
bias check (a second orthogonal score) is switched off here so both fit the same nuisances; its
cost is timed separately.
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor


def _timed(fn, repeats):
    best = np.inf
    out = None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return best, out


def main(argv=None) -> None:
    import doubleml as dml

    from geocausal.api.dml_panel import dml_panel
    from geocausal.datasets.panel_dgp import make_fuhr_papies

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=1,
                    help="OpenMP/BLAS threads for both packages (1 avoids oversubscription)")
    args = ap.parse_args(argv)
    from threadpoolctl import threadpool_limits

    with threadpool_limits(args.threads):
        _compare(args, dml, dml_panel, make_fuhr_papies)


def _compare(args, dml, dml_panel, make_fuhr_papies) -> None:
    n = 100 if args.small else 500
    df = make_fuhr_papies(n, 10, structure="C", shape="u", seed=0)
    lrn = HistGradientBoostingRegressor(max_iter=50, random_state=0)
    folds_of_unit = np.random.default_rng(0).permutation(np.arange(n) % 5)
    fid = folds_of_unit[df.unit.to_numpy()]
    warnings.simplefilter("ignore")
    print(f"N={n}, T=10, learner HistGradientBoosting(max_iter=50), 5 unit folds")
    dml_panel("y ~ d + x1", df, unit="unit", time="time", learners={"ml_l": lrn, "ml_m": lrn},
              folds=fid, options={"bias_check": False, "n_boot": 0})  # warm-up: imports and first calls
    for ours, theirs in [("cre_cp", "cre_general"), ("fd", "fd_exact"), ("within", "wg_approx")]:
        def run_ours(bias_check=False, ours=ours):
            return dml_panel("y ~ d + x1", df, unit="unit", time="time", approach=ours,
                             learners={"ml_l": lrn, "ml_m": lrn}, folds=fid,
                             options={"bias_check": bias_check, "n_boot": 0})

        def run_theirs(theirs=theirs):
            pdata = dml.DoubleMLPanelData(df, "y", "d", "time", "unit", x_cols=["x1"],
                                          static_panel=True)
            obj = dml.DoubleMLPLPR(pdata, lrn, lrn, approach=theirs, n_folds=5)
            tdf = obj.data_transform.data
            ft = folds_of_unit[tdf["unit"].to_numpy()]
            ids = tdf["unit"].to_numpy()
            smpls = [(np.flatnonzero(ft != k), np.flatnonzero(ft == k)) for k in range(5)]
            cl = [([np.unique(ids[a])], [np.unique(ids[b])]) for a, b in smpls]
            obj.set_sample_splitting([smpls], [cl])
            return obj.fit()

        t_ours, t_theirs = np.inf, np.inf
        for _ in range(args.repeats):  # interleaved, best of the repeats
            t, e = _timed(run_ours, 1)
            t_ours = min(t_ours, t)
            t, obj = _timed(run_theirs, 1)
            t_theirs = min(t_theirs, t)
        t_bias, _ = _timed(lambda: run_ours(True), 1)
        diff = abs(float(e.params["d"]) - float(obj.coef[0]))
        print(f"{ours:>7} vs {theirs:<11} ours {t_ours:6.2f}s  DoubleML {t_theirs:6.2f}s  "
              f"ratio {t_theirs / t_ours:5.2f}  |diff| {diff:.1e}  "
              f"(ours with bias check {t_bias:.2f}s)")
        if not args.small:
            import sys
            from pathlib import Path

            sys.path.insert(0, str(Path(__file__).resolve().parent))
            from _report import record, speedup

            record(f"panel DML ({ours}), N={n} T=10", f"DoubleMLPLPR ({theirs})",
                   speedup(t_ours, t_theirs), result=f"{t_ours:.2f} s vs {t_theirs:.2f} s; "
                   f"|diff| {diff:.1e}")


if __name__ == "__main__":
    main()

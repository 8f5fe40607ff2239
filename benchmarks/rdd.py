"""Benchmark: distributional RD on n units x K quantiles, against rdrobust once per quantile.

geocausal: one ``gc.rdd`` call (bandwidth per quantile, fit, 2,000-draw multiplier bootstrap
for the uniform band, tests and functionals). rdrobust: what a user does today, one
``rdrobust`` call per quantile (MSE-optimal bandwidth, robust CI), with no uniform band at all.

Both run in this process on one BLAS thread (``threadpoolctl``), after a warm-up call each;
the two are timed in alternation ``--repeats`` times. The recorded ratio is the median of the
per-repeat ratios (each repeat's two arms run back to back under the same load on a shared
machine); the best-vs-best wall ratio and the CPU ratio are printed beside it.

Usage: ``python benchmarks/rdd.py [--small] [--repeats R] [--no-record]`` (default: 5,000 units
x 99 quantiles, 3 repeats; the full size records its row in ``benchmarks/rows.jsonl``).
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np


def _timed(fn):
    c0, t0 = time.process_time(), time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t0, time.process_time() - c0


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true", help="1,000 units x 19 quantiles")
    ap.add_argument("--repeats", type=int, default=3, help="timed runs of each side")
    ap.add_argument("--no-record", action="store_true", help="do not write benchmarks/rows.jsonl")
    args = ap.parse_args()
    n, K, B = (1000, 19, 2000) if args.small else (5000, 99, 2000)

    from rdrobust import rdrobust
    from threadpoolctl import threadpool_limits

    import geocausal as gc
    from geocausal.designs.rdd.simulate import simulate

    x, Y = simulate("dgp1", n, 50, delta=1.0, seed=0)
    grid = np.arange(1, K + 1) / (K + 1)
    Q = np.quantile(Y, grid, axis=1).T

    def ours():
        return gc.rdd(outcome=Q, running=x, q_grid=grid, inference={"n_boot": B}, seed=0)

    def naive():
        coefs = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            for k in range(K):  # the naive way: one call per quantile
                r = rdrobust(Q[:, k], x, c=0.0, p=2, kernel="tri")
                coefs.append(float(r.coef.iloc[0, 0]))
        return coefs

    with threadpool_limits(limits=1):
        gc.rdd(outcome=Q[::10], running=x[::10], q_grid=grid,
               inference={"n_boot": 50})                                     # warm-up: imports
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            rdrobust(Q[::10, 0], x[::10], c=0.0, p=2, kernel="tri")         # warm-up
        t_gc, c_gc, t_rd, c_rd = [], [], [], []
        for _ in range(max(args.repeats, 1)):
            est, t, c = _timed(ours)
            t_gc.append(t)
            c_gc.append(c)
            coefs, t, c = _timed(naive)
            t_rd.append(t)
            c_rd.append(c)

    print(f"n={n} units, K={K} quantiles, B={B} bootstrap draws, best of {len(t_gc)} runs, "
          "one BLAS thread")
    print(f"geocausal gc.rdd (fit + uniform band + tests): {min(t_gc):8.3f} s wall "
          f"(median {np.median(t_gc):.3f}), {min(c_gc):.3f} s CPU")
    print(f"rdrobust, one call per quantile (no band):      {min(t_rd):8.3f} s wall "
          f"(median {np.median(t_rd):.3f}), {min(c_rd):.3f} s CPU")
    ratios = [r / g for g, r in zip(t_gc, t_rd)]
    med = float(np.median(ratios))
    print(f"speed-up: {med:.1f}x wall (median of the {len(ratios)} repeats' ratios: "
          f"{', '.join(f'{r:.1f}' for r in ratios)}), {min(t_rd) / min(t_gc):.1f}x best vs best, "
          f"{min(c_rd) / min(c_gc):.1f}x CPU")
    print(f"mean effect: geocausal {est.params['mean']:.4f}, rdrobust mean over q "
          f"{np.mean(coefs):.4f} (truth 1)")
    if not args.small and not args.no_record:
        import sys
        from pathlib import Path

        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from _report import record, speedup

        record(f"R3D fit + {B:,}-draw uniform band, {n:,} units x {K} quantiles",
               "rdrobust once per quantile (no band)", round(med, 2),
               result=f"median of {len(ratios)} alternated repeats (each "
               f"{', '.join(f'{r:.1f}x' for r in ratios)}); {np.median(t_gc):.3f} s vs "
               f"{np.median(t_rd):.2f} s wall (medians; ratio of the medians "
               f"{np.median(t_rd) / np.median(t_gc):.1f}x); best vs best "
               f"{speedup(min(t_gc), min(t_rd)):.1f}x; CPU ratio "
               f"{min(c_rd) / min(c_gc):.1f}x; target 20x")


if __name__ == "__main__":
    main()

"""Monte Carlo: uniform coverage of the bands on DGP1 (Van Dijcke 2025), at CI size."""

from __future__ import annotations

import numpy as np

from geocausal.designs.rdd.bootstrap import draws, uniform_band
from geocausal.designs.rdd.estimator import fit_r3d
from geocausal.designs.rdd.simulate import simulate

GRID = np.arange(1, 10) / 10


def test_uniform_coverage_dgp1():
    reps, n, B, delta = 120, 500, 300, 1.0
    covered = []
    for r in range(reps):
        x, Y = simulate("dgp1", n, 50, delta=delta, seed=1000 + r)
        Q = np.quantile(Y, GRID, axis=1).T
        res = fit_r3d(x, Q, GRID, kernel="epanechnikov")      # defaults of gc.rdd: hc2 scores
        D = draws(res.score, np.random.default_rng(r).standard_normal((B, n)))
        lo, hi, _ = uniform_band(res.tau, res.se, D, 0.05, studentize=True)
        covered.append(np.all((lo <= delta) & (hi >= delta)))
    cov = float(np.mean(covered))
    # Monte Carlo standard error at 95%: sqrt(.95 * .05 / 120) = 0.020; allow 3 of them
    assert abs(cov - 0.95) <= 3 * np.sqrt(0.95 * 0.05 / reps), cov

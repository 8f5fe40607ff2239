"""RATE (AUTOC, QINI): hand-computed cases, ties, bootstrap SE against Monte Carlo spread."""

from __future__ import annotations

import numpy as np
import pytest

from geocausal.designs.cate_eval import rate
from geocausal.errors import DataError, DesignError


def test_hand_computed_no_ties():
    phi = np.array([3.0, 1.0, 0.0, -1.0])
    prio = np.array([4.0, 3.0, 2.0, 1.0])
    # mean .75; TOC(k/4) = 3-.75, 2-.75, 4/3-.75, 0
    toc = np.array([2.25, 1.25, 4 / 3 - .75, 0.0])
    assert rate(phi, prio, n_boot=0).estimate == pytest.approx(toc.mean())
    q = np.arange(1, 5) / 4
    assert rate(phi, prio, target="QINI", n_boot=0).estimate == pytest.approx((q * toc).mean())
    # shuffling the rows changes nothing
    perm = np.array([2, 0, 3, 1])
    assert rate(phi[perm], prio[perm], n_boot=0).estimate == pytest.approx(toc.mean())


def test_hand_computed_ties_are_averaged():
    phi = np.array([4.0, 0.0, 2.0, -2.0])
    prio = np.array([1.0, 1.0, 0.0, 0.0])
    # tied scores averaged: (2, 2, 0, 0), mean 1; TOC = 1, 1, 1/3, 0
    assert rate(phi, prio, n_boot=0).estimate == pytest.approx(7 / 12)
    assert rate(phi, prio, target="QINI", n_boot=0).estimate == pytest.approx(0.25)
    # the order of rows within a tie does not matter
    assert rate(phi[[1, 0, 3, 2]], prio[[1, 0, 3, 2]], n_boot=0).estimate == pytest.approx(7 / 12)


def test_perfect_priority_beats_reversed():
    rng = np.random.default_rng(0)
    tau = rng.normal(size=500)
    phi = tau + rng.normal(size=500)
    assert rate(phi, tau, n_boot=0).estimate > 0 > rate(phi, -tau, n_boot=0).estimate


def test_bootstrap_se_matches_monte_carlo_spread():
    """Half-sample bootstrap SE within 20% of the sd of RATE over replications.

    R = 150 replications: the relative MC error of an sd is about 1/sqrt(2R) = 5.8%, and the
    mean of the bootstrap SEs (100 half-samples each) has a much smaller error, so a 20%
    tolerance is > 3 MC standard errors.
    """
    R, n = 150, 800
    est, se = {"AUTOC": [], "QINI": []}, {"AUTOC": [], "QINI": []}
    for r in range(R):
        rng = np.random.default_rng(1000 + r)
        x = rng.normal(size=n)
        d = rng.integers(0, 2, n)
        y = x + d * (0.5 + 0.5 * x) + rng.normal(size=n)
        mu0, mu1 = x, x + 0.5 + 0.5 * x
        phi = mu1 - mu0 + d * (y - mu1) / .5 - (1 - d) * (y - mu0) / .5
        prio = x + 0.5 * rng.normal(size=n)  # a noisy, fixed priority rule
        for t in est:
            res = rate(phi, prio, target=t, n_boot=100, seed=r)
            est[t].append(res.estimate)
            se[t].append(res.std_error)
    for t in est:
        mc = np.std(est[t], ddof=1)
        boot = np.mean(se[t])
        print(f"{t}: MC sd {mc:.4f}, mean bootstrap SE {boot:.4f}, ratio {boot / mc:.3f}")
        assert abs(boot / mc - 1) < 0.20


def test_cluster_bootstrap_is_wider_with_correlated_clusters():
    rng = np.random.default_rng(3)
    g = np.repeat(np.arange(100), 10)
    shock = rng.normal(size=100)[g] * 2
    prio = rng.normal(size=100)[g] + 0.1 * rng.normal(size=1000)
    phi = prio + shock + rng.normal(size=1000)
    iid = rate(phi, prio, n_boot=200).std_error
    cl = rate(phi, prio, clusters=g, n_boot=200).std_error
    assert cl > 1.5 * iid


def test_bad_input():
    with pytest.raises(DesignError, match="constant"):
        rate(np.arange(5.0), np.ones(5))
    with pytest.raises(DataError, match="AUTOC"):
        rate(np.arange(5.0), np.arange(5.0), target="bad")
    with pytest.raises(DataError, match="same length"):
        rate(np.arange(5.0), np.arange(4.0))
    with pytest.raises(DesignError, match="clusters"):
        rate(np.arange(6.0), np.arange(6.0), clusters=np.array([0, 0, 0, 1, 1, 2]))

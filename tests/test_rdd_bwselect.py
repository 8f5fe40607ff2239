"""Point-mass RD bandwidth selectors against rdrobust's ``rdbwselect`` (1e-6 relative).

rdrobust's senate data (vote share on the margin of the previous election, cutoff 0) and
three simulated designs: smooth continuous, mass points, and fuzzy with clusters. Every
selector (mserd, msetwo, msesum, msecomb1/2 and their CER versions), p = 1 (q = 2) and p = 2.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from rdrobust import rdbwselect, rdrobust_RDsenate

from geocausal.designs.rdd.bwselect import SELECTORS, nn_residuals, select_rd_bandwidth
from geocausal.errors import DataError, DesignError

REL = 1e-6


@pytest.fixture(scope="module")
def senate():
    d = rdrobust_RDsenate().dropna(subset=["vote", "margin"])
    return d.margin.to_numpy(), d.vote.to_numpy()


def _sim(seed, n=600, mass=False):
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    if mass:                                  # 21 distinct values: rdrobust's bwcheck kicks in
        x = np.round(x, 1) + 0.05
    t = (rng.uniform(size=n) < 0.2 + 0.6 * (x >= 0)).astype(float)
    y = 1 + x - 2 * x**2 + 1.5 * t + 0.5 * (x >= 0) * x**3 + rng.normal(0, 0.5, n) * (1 + 0.5 * x)
    return x, y, t, rng.integers(0, 60, n)


def _reference(y, x, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdbwselect(y, x, all=True, **kw).bws


def _check_all(x, y, ref, **kw):
    for sel in SELECTORS:
        bw = select_rd_bandwidth(x, y, bwselect=sel, **kw)
        mine = np.array([bw.h_left, bw.h_right, bw.b_left, bw.b_right])
        np.testing.assert_allclose(mine, ref.loc[sel].to_numpy(), rtol=REL, err_msg=sel)


@pytest.mark.parametrize("p", [1, 2])
@pytest.mark.parametrize("kernel", ["triangular", "epanechnikov", "uniform"])
def test_senate_every_selector_matches_rdbwselect(senate, p, kernel):
    x, y = senate
    _check_all(x, y, _reference(y, x, p=p, kernel=kernel), p=p, kernel=kernel)


def test_senate_default_is_rdrobust_mserd(senate):
    """The issue's numbers: rdrobust's mserd is 17.754 on the senate data (b = 28.028)."""
    x, y = senate
    bw = select_rd_bandwidth(x, y)
    assert bw.h_left == bw.h_right == pytest.approx(17.7543, abs=1e-4)
    assert bw.b_left == pytest.approx(28.0281, abs=1e-4)
    ref = rdbwselect(y, x)
    assert [bw.n_h_left, bw.n_h_right] == list(ref.N_h)
    assert [bw.n_left, bw.n_right] == list(ref.N)


@pytest.mark.parametrize("case", [
    dict(seed=0, p=1), dict(seed=1, p=2), dict(seed=2, p=1, vce="hc2"),
    dict(seed=3, p=1, vce="hc1", kernel="epanechnikov"), dict(seed=4, p=2, deriv=1),
    dict(seed=5, p=1, mass=True), dict(seed=6, p=1, scaleregul=0.0),
])
def test_simulated_sharp_matches_rdbwselect(case):
    case = dict(case)
    x, y, _, _ = _sim(case.pop("seed"), mass=case.pop("mass", False))
    _check_all(x, y, _reference(y, x, **case), **case)


@pytest.mark.parametrize("p", [1, 2])
def test_simulated_fuzzy_and_clustered_match_rdbwselect(p):
    x, y, t, cl = _sim(7)
    _check_all(x, y, _reference(y, x, p=p, fuzzy=t), p=p, treatment=t)
    _check_all(x, y, _reference(y, x, p=p, cluster=cl), p=p, cluster=cl)


def test_cer_rescales_mse_by_the_coverage_rate(senate):
    x, y = senate
    mse, cer = select_rd_bandwidth(x, y, bwselect="mserd"), select_rd_bandwidth(x, y, bwselect="cerrd")
    assert cer.h_left == pytest.approx(mse.h_left * x.size ** (-1 / 20), rel=1e-12)
    assert cer.b_left == mse.b_left


def test_nn_residuals_ties_take_whole_groups():
    x = np.array([0.0, 1, 1, 2, 4])
    y = np.array([0.0, 1, 2, 3, 4])
    r = nn_residuals(x, y, nnmatch=1)
    # unit 0: nearest group {1, 1} taken whole (J = 2): sqrt(2/3) (0 - 1.5)
    assert r[0] == pytest.approx(np.sqrt(2 / 3) * (0 - 1.5))
    # unit 1: its tie (y = 2) already gives J = 1
    assert r[1] == pytest.approx(np.sqrt(1 / 2) * (1 - 2))
    # unit 3: left (distance 1) beats right (distance 2): the group {1, 1}
    assert r[3] == pytest.approx(np.sqrt(2 / 3) * (3 - 1.5))


@pytest.mark.parametrize("kw, err, match", [
    (dict(bwselect="cct"), DataError, "bwselect"),
    (dict(vce="hc4"), DataError, "vce"),
    (dict(p=1, q=1), DataError, "q=1"),
    (dict(vce="cr1"), DataError, "cluster"),
    (dict(cutoff=5.0), DesignError, "outside the range"),
    (dict(masspoints="check"), DataError, "masspoints"),
])
def test_bad_options_are_named(kw, err, match):
    x, y, _, _ = _sim(8, n=200)
    with pytest.raises(err, match=match):
        select_rd_bandwidth(x, y, **kw)


def test_missing_values_refused():
    x, y, _, _ = _sim(9, n=200)
    y[3] = np.nan
    with pytest.raises(DataError, match="1 units"):
        select_rd_bandwidth(x, y)

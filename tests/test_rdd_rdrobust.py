"""Point-mass equivalence with rdrobust on its senate data (vote on margin, cutoff 0)."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from rdrobust import rdrobust as rdr
from rdrobust import rdrobust_RDsenate

import geocausal as gc


@pytest.fixture(scope="module")
def senate() -> pd.DataFrame:
    d = rdrobust_RDsenate()
    return d.dropna(subset=["vote", "margin"]).reset_index(drop=True)


def test_conventional_estimate_matches(senate):
    est = gc.rdd("vote ~ 1", senate, running="margin", cutoff=0, p=1, kernel="triangular",
                 h=17.754, vce="hc0", n_boot=200)
    assert est.params["mean"] == pytest.approx(7.41415, abs=5e-6)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = rdr(senate.vote, senate.margin, h=17.754, p=1, kernel="tri", vce="hc0")
    assert est.params["mean"] == pytest.approx(float(ref.coef.iloc[0, 0]), abs=1e-6)
    assert est.std_errors["mean"] == pytest.approx(float(ref.se.iloc[0, 0]), abs=1e-6)
    # every quantile of a point-mass outcome gives the same scalar RD
    many = gc.rdd("vote ~ 1", senate, running="margin", p=1, kernel="triangular", h=17.754,
                  q_grid=[0.1, 0.5, 0.9], n_boot=200, vce="hc0")
    np.testing.assert_allclose(many.curve.estimate, ref.coef.iloc[0, 0], atol=1e-6)


def _robust_pair(senate, h, b):
    """rdrobust and gc.rdd, both robust bias-corrected at bandwidths h and b (hc0 variance)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = rdr(senate.vote, senate.margin, h=h, b=b, p=1, kernel="tri", vce="hc0")
    est = gc.rdd("vote ~ 1", senate, running="margin", p=1, kernel="triangular", h=h, b=b,
                 bias_correction="explicit", vce="hc0", n_boot=200)
    assert est.params["mean"] == pytest.approx(float(ref.coef.iloc[1, 0]), abs=1e-6)
    assert est.std_errors["mean"] == pytest.approx(float(ref.se.iloc[2, 0]), abs=1e-6)
    return est, ref


def test_robust_bias_correction_matches(senate):
    est, ref = _robust_pair(senate, h=17.754, b=28.028)
    ci = est.conf_int().loc["mean"]
    assert ci.conf_low == pytest.approx(float(ref.ci.iloc[2, 0]), abs=1e-6)
    assert ci.conf_high == pytest.approx(float(ref.ci.iloc[2, 1]), abs=1e-6)
    # the curve's pointwise interval is the same robust interval (about [4.094, 10.919])
    assert est.curve.conf_low[0] == pytest.approx(float(ref.ci.iloc[2, 0]), abs=1e-6)
    assert 4.0 < est.curve.conf_low[0] < 4.2 and 10.8 < est.curve.conf_high[0] < 11.0


def test_robust_bias_correction_with_h_larger_than_b(senate):
    _robust_pair(senate, h=28.028, b=17.754)

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
    # bias_correction="implicit": no correction at p=1, the conventional fit alone
    est = gc.rdd("vote ~ 1", senate, running="margin", cutoff=0,
                 bandwidth=gc.Bandwidth(p=1, kernel="triangular", h=17.754,
                                        bias_correction="implicit"),
                 inference=gc.Inference(n_boot=200, residuals="hc0"))
    assert est.params["mean"] == pytest.approx(7.41415, abs=5e-6)
    # the default (explicit) fit reports the same number as its conventional row
    both = gc.rdd("vote ~ 1", senate, running="margin", bandwidth=gc.Bandwidth(h=17.754),
                  inference=gc.Inference(n_boot=200, residuals="hc0"))
    assert both.params["mean (conventional)"] == pytest.approx(est.params["mean"], abs=1e-10)
    assert both.std_errors["mean (conventional)"] == pytest.approx(est.std_errors["mean"],
                                                                   abs=1e-10)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = rdr(senate.vote, senate.margin, h=17.754, p=1, kernel="tri", vce="hc0")
    assert est.params["mean"] == pytest.approx(float(ref.coef.iloc[0, 0]), abs=1e-6)
    assert est.std_errors["mean"] == pytest.approx(float(ref.se.iloc[0, 0]), abs=1e-6)
    # every quantile of a point-mass outcome gives the same scalar RD
    many = gc.rdd("vote ~ 1", senate, running="margin", q_grid=[0.1, 0.5, 0.9],
                  bandwidth=gc.Bandwidth(p=1, kernel="triangular", h=17.754,
                                         bias_correction="implicit"),
                  inference=gc.Inference(n_boot=200, residuals="hc0"))
    np.testing.assert_allclose(many.curve.estimate, ref.coef.iloc[0, 0], atol=1e-6)


def _robust_pair(senate, h, b):
    """rdrobust and gc.rdd, both robust bias-corrected at bandwidths h and b (hc0 variance)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = rdr(senate.vote, senate.margin, h=h, b=b, p=1, kernel="tri", vce="hc0")
    est = gc.rdd("vote ~ 1", senate, running="margin",
                 bandwidth=gc.Bandwidth(p=1, kernel="triangular", h=h, b=b,
                                        bias_correction="explicit"),
                 inference=gc.Inference(n_boot=200, residuals="hc0"))
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


def _rdrobust(senate, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return rdr(senate.vote, senate.margin, **kw)


def _assert_rows(est, ref):
    """Robust row ("mean") and conventional row against rdrobust, estimate, SE and CI."""
    rob, conv = est.tidy().set_index("term").loc["mean"], est.tidy().set_index("term").loc[
        "mean (conventional)"]
    for row, i in ((conv, 0), (rob, 2)):
        est_ref = float(ref.coef.iloc[0 if i == 0 else 1, 0])
        assert row.estimate == pytest.approx(est_ref, abs=1e-6)
        assert row.std_error == pytest.approx(float(ref.se.iloc[i, 0]), abs=1e-6)
        assert row.conf_low == pytest.approx(float(ref.ci.iloc[i, 0]), abs=1e-6)
        assert row.conf_high == pytest.approx(float(ref.ci.iloc[i, 1]), abs=1e-6)


def test_default_options_give_rdrobust_default(senate):
    """gc.rdd with no options: rdrobust's default (p=1, q=2, mserd h=17.754, b=28.028, nn).

    Before: the default bandwidth was 22.97 (the R3D rule) with p=2 and one row only.
    """
    est = gc.rdd("vote ~ 1", senate, running="margin", inference=gc.Inference(n_boot=200))
    ref = _rdrobust(senate)
    _assert_rows(est, ref)
    d = est.diagnostics
    assert d["p"] == 1 and d["q"] == 2 and d["bwselect"] == "mserd"
    assert d["h_left"] == pytest.approx(float(ref.bws.iloc[0, 0]), rel=1e-6)
    assert d["b_right"] == pytest.approx(float(ref.bws.iloc[1, 1]), rel=1e-6)
    assert [d["n_h_left"], d["n_h_right"]] == [int(v) for v in ref.N_h]
    text = str(est.summary())
    assert "mean (conventional)" in text and "bwselect: mserd" in text and "n_h_left: 360" in text


@pytest.mark.parametrize("bwselect, bw, inf", [
    ("msetwo", {}, {}), ("cerrd", {}, {}),
    ("mserd", {"kernel": "epanechnikov"}, {"residuals": "hc2"}),
    ("msesum", {"p": 2}, {})])
def test_selectors_through_rdd_match_rdrobust(senate, bwselect, bw, inf):
    est = gc.rdd("vote ~ 1", senate, running="margin",
                 bandwidth=gc.Bandwidth(selector=bwselect, **bw),
                 inference=gc.Inference(n_boot=200, **inf))
    ref = _rdrobust(senate, bwselect=bwselect, **{"kernel": bw.get("kernel", "tri"),
                                                  "vce": inf.get("residuals", "nn"),
                                                  "p": bw.get("p", 1)})
    _assert_rows(est, ref)
    assert est.diagnostics["h_left"] == pytest.approx(float(ref.bws.iloc[0, 0]), rel=1e-6)
    assert est.diagnostics["h_right"] == pytest.approx(float(ref.bws.iloc[0, 1]), rel=1e-6)


def test_fuzzy_default_conventional_row_matches_rdrobust():
    """Fuzzy point mass with defaults: the fuzzy mserd bandwidths and the conventional row
    equal rdrobust's; the robust row corrects the two jumps before the ratio (rdrobust
    linearises), so it agrees to the order of the bias only."""
    rng = np.random.default_rng(11)
    x = rng.uniform(-1, 1, 1500)
    t = (rng.uniform(size=x.size) < 0.2 + 0.6 * (x >= 0)).astype(float)
    y = 1 + x + 2 * t + rng.normal(0, 0.5, x.size)
    df = pd.DataFrame({"x": x, "y": y, "d": t})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = gc.rdd("y ~ d", df, running="x", inference=gc.Inference(n_boot=200),
                     checks=gc.Checks(density_test=False))
        ref = rdr(y, x, fuzzy=t)
    assert est.diagnostics["h_left"] == pytest.approx(float(ref.bws.iloc[0, 0]), rel=1e-6)
    conv = est.tidy().set_index("term").loc["mean (conventional)"]
    assert conv.estimate == pytest.approx(float(ref.coef.iloc[0, 0]), abs=1e-6)
    assert conv.std_error == pytest.approx(float(ref.se.iloc[0, 0]), abs=1e-6)
    rob = est.tidy().set_index("term").loc["mean"]
    assert rob.estimate == pytest.approx(float(ref.coef.iloc[1, 0]), abs=0.1 * rob.std_error)
    assert rob.std_error == pytest.approx(float(ref.se.iloc[2, 0]), rel=0.05)


def test_selector_misuse_is_named(senate):
    from geocausal.errors import DataError

    with pytest.raises(DataError, match="per_side=True"):
        gc.rdd("vote ~ 1", senate, running="margin",
               bandwidth=gc.Bandwidth(selector="mserd", per_side=True))
    with pytest.raises(DataError, match="point-mass"):
        rng = np.random.default_rng(0)
        gc.rdd(outcome=[rng.normal(size=20) for _ in range(200)], running=rng.uniform(-1, 1, 200),
               bandwidth="mserd", inference=gc.Inference(n_boot=50),
               checks=gc.Checks(density_test=False))
    with pytest.raises(DataError, match="bandwidth rule"):
        gc.rdd("vote ~ 1", senate, running="margin", bandwidth="cct")
    # per_side=True alone picks rdrobust's two-sided selector
    two = gc.rdd("vote ~ 1", senate, running="margin", bandwidth=gc.Bandwidth(per_side=True),
                 inference=gc.Inference(n_boot=200))
    assert two.diagnostics["bwselect"] == "msetwo"

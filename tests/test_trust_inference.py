"""Issue 13, core inference: no silent wrong numbers in variances, tests and panels.

Items: "iid" really iid or refused (2); ``with_vcov(spec)`` equals a refit with ``vcov=spec``
or refuses, for every design (3); placement AUCs tested against chance (4); t(G - 1) critical
values and a counted warning with few clusters (5); panel guards and period order (7).
"""

from __future__ import annotations

import warnings

import matplotlib
import numpy as np
import pandas as pd
import pytest
from scipy import stats
from sklearn.linear_model import LinearRegression, LogisticRegression

import geocausal as gc
from geocausal.designs.panel_transforms import period_codes
from geocausal.errors import (
    DataError,
    DesignError,
    FewClustersWarning,
    FewSwitchersWarning,
    GeocausalWarning,
)
from geocausal.folds import Folds
from geocausal.results.estimate import Estimate

matplotlib.use("Agg")

LIN = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
PANEL_LIN = {"ml_l": LinearRegression(), "ml_m": LinearRegression(), "ml_g": LinearRegression()}


def assert_same(a: Estimate, b: Estimate) -> None:
    """``a`` (from with_vcov) equals ``b`` (a refit): variance, label, dof and the tidy table."""
    assert a.vcov_type == b.vcov_type
    assert a.dof == b.dof
    np.testing.assert_allclose(a.params.to_numpy(), b.params.to_numpy(), rtol=1e-10, atol=0)
    np.testing.assert_allclose(a.vcov.to_numpy(), b.vcov.to_numpy(), rtol=1e-10, atol=1e-14)
    num = ["estimate", "std_error", "statistic", "p_value", "conf_low", "conf_high"]
    np.testing.assert_allclose(a.tidy()[num].to_numpy(), b.tidy()[num].to_numpy(),
                               rtol=1e-10, atol=1e-14)


def quiet(fn, *args, **kw):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", GeocausalWarning)
        return fn(*args, **kw)


@pytest.fixture(scope="module")
def cross_section():
    rng = np.random.default_rng(11)
    n = 600
    x = rng.normal(size=n)
    d = rng.binomial(1, 1 / (1 + np.exp(-0.8 * x)))
    country = rng.integers(0, 40, n)
    y = 1.0 * d + x + 0.5 * rng.normal(size=40)[country] + rng.normal(size=n)
    return pd.DataFrame({"y": y, "d": d, "x": x, "x2": rng.normal(size=n), "country": country,
                         "region": country % 35})


@pytest.fixture(scope="module")
def panel():
    rng = np.random.default_rng(5)
    n_units, n_t = 50, 6
    unit = np.repeat(np.arange(n_units), n_t)
    time = np.tile(np.arange(n_t), n_units)
    alpha = rng.normal(size=n_units)[unit]
    x = rng.normal(size=unit.size) + alpha
    d = (rng.normal(size=unit.size) + 0.5 * x > 0).astype(float)
    y = 1.5 * d + x + alpha + 0.2 * time + rng.normal(size=unit.size)
    return pd.DataFrame({"unit": unit, "time": time, "y": y, "d": d, "x": x,
                         "state": unit % 31})


# ----------------------------------------------------------------------------- item 2: iid
def test_iid_is_refused_for_influence_function_designs(cross_section):
    psi = np.random.default_rng(0).normal(size=(100, 1))
    with pytest.raises(DesignError, match="iid"):
        Estimate.from_influence({"d": 0.0}, psi, vcov="iid")
    with pytest.raises(DesignError, match="iid"):
        gc.aipw("y ~ d + x", cross_section, learners=LIN, vcov="iid")
    est = gc.aipw("y ~ d + x", cross_section, learners=LIN)
    with pytest.raises(DesignError, match="iid"):
        est.with_vcov("iid")


def test_fe_iid_is_homoskedastic_ols_and_with_vcov_keeps_it(panel):
    import statsmodels.formula.api as smf

    iid = gc.fe("y ~ d + x | unit + time", panel, vcov="iid")
    hetero = gc.fe("y ~ d + x | unit + time", panel, vcov="hetero")
    ols = smf.ols("y ~ d + x + C(unit) + C(time)", panel).fit()
    for term in ("d", "x"):
        assert iid.std_errors[term] == pytest.approx(ols.bse[term], rel=1e-9)
        assert iid.pvalues[term] == pytest.approx(ols.pvalues[term], rel=1e-8)
    assert not np.allclose(iid.std_errors, hetero.std_errors, rtol=1e-3)
    assert_same(hetero.with_vcov("iid"), iid)


# ----------------------------------------------------------------------------- item 3: parity
@pytest.mark.parametrize(("first", "second"), [
    ("hetero", {"cluster": "unit"}),
    ({"cluster": "unit"}, "hetero"),
    ({"cluster": "unit"}, "iid"),
    ("hetero", {"cluster": ["unit", "time"]}),
])
@pytest.mark.parametrize("group_debias", [False, True])
def test_fe_with_vcov_equals_refit(panel, first, second, group_debias):
    kw = {"group_debias": group_debias}
    est = quiet(gc.fe, "y ~ d + x | unit + time", panel, vcov=first, **kw)
    assert_same(quiet(est.with_vcov, second),
                quiet(gc.fe, "y ~ d + x | unit + time", panel, vcov=second, **kw))


@pytest.mark.parametrize("design", ["ipw", "aipw"])
def test_ipw_aipw_with_vcov_equals_refit(cross_section, design):
    fn = getattr(gc, design)
    # ipw has one learner slot (propensity): an unused slot is an OptionError
    kw = {"learners": LIN if design == "aipw" else {"propensity": LIN["propensity"]}, "seed": 3}
    base = fn("y ~ d + x", cross_section, **kw)
    clus = quiet(fn, "y ~ d + x", cross_section, vcov={"cluster": "country"}, **kw)
    assert_same(quiet(base.with_vcov, {"cluster": "country"}), clus)
    assert_same(clus.with_vcov("hetero"), base)
    two = quiet(fn, "y ~ d + x", cross_section, vcov={"cluster": ["country", "region"]}, **kw)
    assert_same(quiet(base.with_vcov, {"cluster": ["country", "region"]}), two)


def test_placement_with_vcov_equals_refit(cross_section):
    kw = {"learners": {"propensity": LogisticRegression()}, "folds": 3}
    delong = gc.placement("d ~ x + x2", cross_section, **kw)
    clus = quiet(gc.placement, "d ~ x + x2", cross_section, vcov={"cluster": "country"}, **kw)
    assert_same(quiet(delong.with_vcov, {"cluster": "country"}), clus)
    assert_same(clus.with_vcov("delong"), delong)
    assert delong.vcov_type == "delong"


def test_cate_with_vcov_equals_refit(cross_section):
    kw = {"learner": "t", "propensity": 0.5, "options": {"evaluate": False}, "seed": 1}
    base = gc.cate("y ~ d + x + x2", cross_section, **kw)
    clus = quiet(gc.cate, "y ~ d + x + x2", cross_section, vcov={"cluster": "country"}, **kw)
    assert_same(quiet(base.with_vcov, {"cluster": "country"}), clus)
    assert_same(clus.with_vcov("hetero"), base)


@pytest.mark.parametrize("n_rep", [1, 3])
def test_dml_panel_with_vcov_equals_refit(panel, n_rep):
    kw = {"unit": "unit", "time": "time", "approach": "cre", "learners": PANEL_LIN,
          "folds": 3, "options": {"n_rep": n_rep, "bias_check": False, "n_boot": 0}, "seed": 2}
    by_unit = quiet(gc.dml_panel, "y ~ d + x", panel, **kw)
    hetero = quiet(gc.dml_panel, "y ~ d + x", panel, vcov="hetero", **kw)
    by_state = quiet(gc.dml_panel, "y ~ d + x", panel, vcov={"cluster": "state"}, **kw)
    assert_same(by_unit.with_vcov("hetero"), hetero)
    assert_same(quiet(hetero.with_vcov, {"cluster": "state"}), by_state)
    assert_same(hetero.with_vcov({"cluster": "unit"}), by_unit)
    if n_rep > 1:   # diagnostics computed with the old variance are not carried over stale
        moved = hetero.with_vcov({"cluster": "unit"})
        assert "rep_sd_over_se" not in moved.diagnostics
        assert "rep_sd_over_se" in moved.diagnostics["dropped_by_with_vcov"]


def test_debias_with_vcov_equals_refit_or_refuses(cross_section):
    df = cross_section.assign(yhat=cross_section.y + 0.1)
    kw = {"method": "none", "propensity": np.full(len(df), 0.5)}
    base = gc.debias("yhat ~ d", df, **kw)
    clus = quiet(gc.debias, "yhat ~ d", df, vcov={"cluster": "country"}, **kw)
    assert_same(quiet(base.with_vcov, {"cluster": "country"}), clus)


def test_estimates_without_a_recomputable_variance_refuse(cross_section):
    boot = Estimate(pd.Series({"d": 1.0}), pd.DataFrame([[0.04]]), vcov_type="bootstrap",
                    influence=np.ones((5, 1)))
    with pytest.raises(DesignError, match="cannot be recomputed"):
        boot.with_vcov("hetero")
    curve = pd.DataFrame({"q": [0.1, 0.5], "estimate": [1.0, 2.0]})
    psi = np.random.default_rng(0).normal(size=(50, 1))
    with_curve = Estimate.from_influence({"mean": 1.0}, psi, curve=curve, design="rdd")
    with pytest.raises(DesignError, match="curve"):
        with_curve.with_vcov("hetero")


def test_rdd_with_curve_bands_refuses():
    from geocausal.designs.rdd.simulate import simulate

    x, Y = simulate("dgp1", 200, 20, delta=1.0, seed=3)
    est = gc.rdd(outcome=list(Y), running=x, q_grid=np.arange(1, 10) / 10,
                 inference={"n_boot": 50}, checks={"density_test": False})
    assert est.curve is not None
    with pytest.raises(DesignError):
        est.with_vcov("hetero")


# ----------------------------------------------------------------------------- item 4: null
def test_placement_pvalues_test_chance_not_zero():
    rng = np.random.default_rng(4)
    n = 300
    x = rng.normal(size=n)
    d = rng.binomial(1, 1 / (1 + np.exp(-0.15 * x)))   # AUC a little above one half
    df = pd.DataFrame({"d": d, "x": x})
    est = gc.placement("d ~ x", df, learners={"propensity": LogisticRegression()}, folds=3)
    auc, se = est.params["auc_tabular"], est.std_errors["auc_tabular"]
    expected = 2 * stats.norm.sf(abs(auc - 0.5) / se)
    assert est.null["auc_tabular"] == 0.5
    assert est.pvalues["auc_tabular"] == pytest.approx(expected, rel=1e-12)
    assert est.tidy()["p_value"].iloc[0] == pytest.approx(expected, rel=1e-12)
    assert est.diagnostics["p_vs_chance"]["auc_tabular"] == pytest.approx(expected, rel=1e-12)
    assert expected > 1e-3            # tested against 0 this would print p = 0.000
    text = str(est.summary())
    assert "null" in text and "0.5000" in text
    ax = est.plot().axes[0]
    refs = [ln.get_xdata()[0] for ln in ax.get_lines() if ln.get_linestyle() == ":"]
    assert refs == [0.5]


def test_null_values_are_validated_and_used():
    est = Estimate(pd.Series({"a": 0.6, "b": 0.1}), pd.DataFrame(np.diag([0.01, 0.01])),
                   null={"a": 0.5})
    assert est.tstat.tolist() == pytest.approx([1.0, 1.0])
    with pytest.raises(DataError, match="unknown terms"):
        Estimate(pd.Series({"a": 0.6}), pd.DataFrame([[0.01]]), null={"z": 0.5})


# ----------------------------------------------------------------------------- item 5: t(G-1)
def test_cluster_inference_uses_t_with_g_minus_1_like_statsmodels():
    import statsmodels.formula.api as smf

    rng = np.random.default_rng(8)
    n, G = 120, 12
    g = np.arange(n) % G
    df = pd.DataFrame({"g": g, "fe": np.arange(n) % 5, "x": rng.normal(size=n)})
    df["d"] = rng.normal(size=n) + 0.3 * rng.normal(size=G)[g]
    df["y"] = 0.4 * df.d + df.x + rng.normal(size=G)[g] + rng.normal(size=n)
    with pytest.warns(FewClustersWarning, match="only 12 clusters"):
        est = gc.fe("y ~ d + x | fe", df, vcov={"cluster": "g"}, group_debias=True)
    ref = smf.ols("y ~ d + x + C(fe)", df).fit(cov_type="cluster", cov_kwds={"groups": g},
                                               use_t=True)
    assert est.dof == G - 1
    for term in ("d", "x"):
        assert est.std_errors[term] == pytest.approx(ref.bse[term], rel=1e-10)
        assert est.pvalues[term] == pytest.approx(ref.pvalues[term], rel=1e-10)
        ci = est.conf_int().loc[term]
        np.testing.assert_allclose(ci.to_numpy(), ref.conf_int().loc[term].to_numpy(),
                                   rtol=1e-10)
    # an influence-function design: the mean of y, one-way clusters (statsmodels' K = 1
    # correction is exactly G / (G - 1))
    mean = float(df.y.mean())
    with pytest.warns(FewClustersWarning):
        m = Estimate.from_influence({"Intercept": mean}, df.y.to_numpy() - mean,
                                    vcov={"cluster": "g"}, cluster_data={"g": g})
    ref = smf.ols("y ~ 1", df).fit(cov_type="cluster", cov_kwds={"groups": g}, use_t=True)
    assert m.std_errors["Intercept"] == pytest.approx(ref.bse["Intercept"], rel=1e-10)
    assert m.pvalues["Intercept"] == pytest.approx(ref.pvalues["Intercept"], rel=1e-10)
    np.testing.assert_allclose(m.conf_int().to_numpy()[0], ref.conf_int().to_numpy()[0],
                               rtol=1e-10)


def test_two_clusters_get_t1_and_a_warning_two_way_uses_the_smaller_count(cross_section):
    df = cross_section.assign(two=(cross_section.country == 0).astype(int))
    with pytest.warns(FewClustersWarning, match="only 2 clusters"):
        est = gc.aipw("y ~ d + x", df, learners=LIN, vcov={"cluster": "two"})
    assert est.dof == 1
    half = (est.conf_int()["conf_high"] - est.params).iloc[0]
    assert half == pytest.approx(stats.t(1).ppf(0.975) * est.std_errors.iloc[0], rel=1e-12)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FewClustersWarning)     # 40 x 35 clusters: no warning
        two = gc.aipw("y ~ d + x", df, learners=LIN, vcov={"cluster": ["country", "region"]})
    assert two.dof == 35 - 1
    assert two.with_vcov({"cluster": ["region", "country"]}).dof == 35 - 1


# ----------------------------------------------------------------------------- item 7: panels
def test_fe_refuses_duplicate_unit_time_rows(panel):
    dup = pd.concat([panel, panel.iloc[[3]]], ignore_index=True)
    with pytest.raises(DataError, match=r"1 rows duplicate a \(unit, time\)"):
        gc.fe("y ~ d + x | unit + time", dup)
    with pytest.raises(DataError, match="duplicate"):
        gc.fe("y ~ d + x", dup, unit="unit", time="time")
    est = gc.fe("y ~ d + x | unit + time", dup, allow_duplicates=True)
    assert est.nobs == len(dup)


def test_fe_warns_when_treatment_varies_within_few_units(panel):
    df = panel.copy()
    df["d"] = 0.0
    df.loc[(df.unit == 0) & (df.time >= 3), "d"] = 1.0   # one switcher
    with pytest.warns(FewSwitchersWarning, match="only 1 of 50 'unit'"):
        gc.fe("y ~ d + x | unit + time", df)
    df["d"] = (df.unit % 2).astype(float)                  # never varies within a unit
    with pytest.raises(DesignError, match="does not vary within any 'unit'"):
        gc.fe("y ~ d + x | unit + time", df)


def test_periods_sort_naturally_not_as_text(panel):
    assert period_codes(["t10", "t8", "t9"]).tolist() == [2, 0, 1]
    assert period_codes(pd.Series(["10", "8", "9"])).tolist() == [2, 0, 1]
    cat = pd.Categorical(["late", "early", "mid"], categories=["early", "mid", "late"],
                         ordered=True)
    assert period_codes(pd.Series(cat)).tolist() == [2, 0, 1]
    sub = panel[panel.time < 3].copy()          # periods 0, 1, 2 -> "t8", "t9", "t10"
    text = sub.assign(time="t" + (sub.time + 8).astype(str))
    kw = {"unit": "unit", "time": "time", "approach": "fd", "learners": PANEL_LIN,
          "folds": Folds(3), "options": {"bias_check": False, "n_boot": 0}}
    a = quiet(gc.dml_panel, "y ~ d + x", sub, **kw)
    b = quiet(gc.dml_panel, "y ~ d + x", text, **kw)
    assert a.params["d"] == pytest.approx(b.params["d"], rel=1e-12)
    assert a.diagnostics["rows_dropped"] == b.diagnostics["rows_dropped"] == 50

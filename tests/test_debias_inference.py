"""Intervals that carry the calibration uncertainty; gc.debias and gc.compare_debiasers."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
from _studies import confounded
from scipy import stats

import geocausal as gc
from geocausal.designs.debias import (
    LinearCalibration,
    Tweedie,
    hajek_ate,
    hajek_influence,
    joint_bootstrap,
    lcc_delta_influence,
)
from geocausal.errors import DataError, DesignError, DiagnosticWarning


def _confounded(rng, n, tau=1.0, k=0.5):
    _, e, a, y = confounded(rng, n, tau)
    return a, e, y, 0.3 + k * y + rng.normal(0, 0.5, n)


def test_lcc_interval_coverage_monte_carlo():
    # 400 replications: the Monte Carlo sd of a 95% coverage is sqrt(.95 * .05 / 400) = 0.011,
    # so the acceptance band [0.92, 0.98] is about +-2.7 sd around the nominal level.
    reps, hits_boot, hits_delta = 400, 0, 0
    for r in range(reps):
        rng = np.random.default_rng(1000 + r)
        _, _, yc, yhc = _confounded(rng, 300)
        a, e, _, yh = _confounded(rng, 1000)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            lcc = LinearCalibration().fit(yhc, yc)
            tau = float(hajek_ate(lcc.transform(yh), a, e))
        draws = joint_bootstrap(lcc, yh, a, e, n_boot=200, seed=r)
        hits_boot += abs(tau - 1.0) < 1.96 * draws.std(ddof=1)
        tau_d, psi = lcc_delta_influence(lcc, yh, a, e)
        hits_delta += abs(tau_d - 1.0) < 1.96 * np.sqrt((psi ** 2).sum()) / psi.size
    assert 0.92 <= hits_boot / reps <= 0.98
    assert 0.92 <= hits_delta / reps <= 0.98


def test_calibration_uncertainty_matters():
    # with only 60 calibration units the slope is noisy; the joint interval must be wider
    # than one that treats the corrector as known
    rng = np.random.default_rng(2)
    _, _, yc, yhc = _confounded(rng, 60)
    a, e, _, yh = _confounded(rng, 5000)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        lcc = LinearCalibration().fit(yhc, yc)
        fixed_psi = hajek_influence(lcc.transform(yh), a, e)
    se_fixed = np.sqrt(np.mean(fixed_psi ** 2) / yh.size)
    se_joint = joint_bootstrap(lcc, yh, a, e, n_boot=400, seed=0).std(ddof=1)
    assert se_joint > 1.5 * se_fixed


def test_tweedie_bootstrap_coverage_monte_carlo():
    # Gaussian DGP where Tweedie is exact up to KDE smoothing: y ~ N(0, 1), probit selection
    # a = 1{y + N(0,1) > 0}, yhat = rho y + N(0, rho - rho^2) (so y = yhat + independent noise).
    # True contrast E[y|a=1] - E[y|a=0] = 4 phi(0) / sqrt(2). The Scott-KDE smoothing bias is
    # (1 - rho) n_cal^-0.4 relative (about 2%, a quarter of an se), so the expected coverage is
    # ~0.94. 200 replications: Monte Carlo sd 0.016; the band [0.89, 0.99] is ~3 sd around it.
    rho, reps, hits = 0.8, 200, 0
    truth = 4 * stats.norm.pdf(0) / np.sqrt(2)
    for r in range(reps):
        rng = np.random.default_rng(5000 + r)

        def pop(n, rng=rng):
            y = rng.normal(size=n)
            a = (y + rng.normal(size=n) > 0).astype(float)
            return a, y, rho * y + rng.normal(0, np.sqrt(rho - rho ** 2), n)

        _, yc, yhc = pop(300)
        a, _, yh = pop(600)
        e = np.full(yh.size, 0.5)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            tw = Tweedie().fit(yhc, yc)
            tau = float(hajek_ate(tw.transform(yh), a, e))
        draws = joint_bootstrap(tw, yh, a, e, n_boot=150, seed=r, grid_size=128)
        hits += abs(tau - truth) < 1.96 * draws.std(ddof=1)
    assert 0.89 <= hits / reps <= 0.99


def _frames(seed=0, n=3000, n_cal=600, tau=1.0):
    rng = np.random.default_rng(seed)
    ac, ec, yc, yhc = _confounded(rng, n_cal, tau)
    a, e, y, yh = _confounded(rng, n, tau)
    c = np.log(e / (1 - e))
    df = pd.DataFrame({"yhat": yh, "d": a.astype(int), "c": c, "e": e, "y": y})
    cal = pd.DataFrame({"yhat": yhc, "truth": yc})
    return df, cal


def test_gc_debias_end_to_end():
    df, cal = _frames()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        lcc_b = gc.debias("yhat ~ d", df, calibration=cal, method="lcc", propensity="e",
                          n_boot=300, seed=1)
        lcc_b2 = gc.debias("yhat ~ d", df, calibration=cal, method="lcc", propensity="e",
                           n_boot=300, seed=1)
        lcc_d = gc.debias("yhat ~ d", df, calibration=cal, method="lcc", propensity="e",
                          interval="delta")
        tw = gc.debias("yhat ~ d + c", df, calibration=cal, method="tweedie", n_boot=300)
        naive = gc.debias("yhat ~ d", df, method="none", propensity="e")
    assert lcc_b.params["d"] == lcc_d.params["d"]
    assert lcc_b.std_errors["d"] == lcc_b2.std_errors["d"]        # seeded
    assert abs(lcc_b.std_errors["d"] / lcc_d.std_errors["d"] - 1) < 0.2
    assert abs(naive.params["d"] - lcc_b.diagnostics["naive"]) < 1e-12
    assert abs(lcc_b.params["d"] - naive.params["d"] / lcc_b.diagnostics["slope"]) < 1e-12
    # true effect 1, predictions shrunk by k = 0.5; se ~ 0.1
    assert abs(naive.params["d"] - 0.5) < 0.15
    assert abs(lcc_b.params["d"] - 1.0) < 0.35
    assert tw.diagnostics["method"] == "tweedie" and "cross-fitted" in tw.diagnostics["propensity"]
    assert tw.params["d"] > naive.params["d"]
    assert tw.vcov_type.startswith("bootstrap")
    assert set(lcc_b.tidy().columns) >= {"term", "estimate", "conf_low"}


def test_gc_debias_errors():
    df, cal = _frames(n=400, n_cal=200)
    with pytest.raises(DesignError, match="needs calibration"):
        gc.debias("yhat ~ d", df)
    with pytest.raises(DesignError, match="delta method"):
        gc.debias("yhat ~ d", df, calibration=cal, interval="delta")
    with pytest.raises(DataError, match="no column 'truth'"):
        gc.debias("yhat ~ d", df, calibration=cal.rename(columns={"truth": "y"}))
    with pytest.raises(DataError, match="200 values but truths have 199"):
        gc.debias("yhat ~ d", df, calibration=(cal.yhat.to_numpy(), cal.truth.to_numpy()[:-1]))
    bad = df.copy()
    bad.loc[3, "yhat"] = np.nan
    with pytest.raises(Exception, match="yhat"):
        gc.debias("yhat ~ d", bad, calibration=cal, method="lcc")
    with pytest.raises(DesignError, match="outcome_correction"):
        gc.debias("yhat ~ d", df, calibration=cal, outcome_correction=object())


def test_compare_debiasers_prefers_a_correction():
    rng = np.random.default_rng(3)
    y = rng.normal(size=2000)
    yhat = 0.5 * y + rng.normal(0, 0.3, 2000)
    cmp = gc.compare_debiasers((yhat, y), n_trials=15, seed=4)
    tab = cmp.table.set_index("method")
    # naive contrasts shrink by k = 0.5; both corrections are near 1 (pseudo-trial slopes over
    # ~75 trials have se ~ 0.05)
    assert abs(tab.loc["naive", "slope"] - 0.5) < 0.1
    assert abs(tab.loc["lcc", "slope"] - 1) < 0.15
    assert abs(tab.loc["tweedie", "slope"] - 1) < 0.2
    assert cmp.recommended in ("lcc", "tweedie")
    assert gc.debias.fit(yhat, y, method="lcc").slope == gc.debias.LCC().fit(yhat, y).slope
    assert tab.loc["naive", "mae"] > tab.loc[cmp.recommended, "mae"]
    groups = np.repeat(np.arange(4), 500)
    cmp2 = gc.compare_debiasers((yhat, y), pseudo_treatments=groups, folds=2)
    assert cmp2.settings["pseudo_treatments"] == "given"
    fig = cmp.plot()
    assert fig.axes[0].get_xlabel() == "true effect"


def _clustered_study(rng, n_clusters=60, size=20, tau=1.0, k=0.5):
    """Treatment assigned by cluster (propensity 0.5), a cluster effect with ICC 0.5."""
    g = np.repeat(np.arange(n_clusters), size)
    d = rng.integers(0, 2, n_clusters)[g].astype(float)
    y = tau * d + rng.normal(size=n_clusters)[g] + rng.normal(size=g.size)
    df = pd.DataFrame({"yhat": k * y + rng.normal(0, 0.3, g.size), "d": d, "e": 0.5,
                       "village": g})
    y_cal = rng.normal(0.5, np.sqrt(2.25), 400)
    cal = pd.DataFrame({"yhat": k * y_cal + rng.normal(0, 0.3, 400), "truth": y_cal})
    return df, cal


def test_clustered_intervals_cover_where_unit_level_ones_do_not():
    # Design effect 1 + 19 * 0.5 ~ 10: unit-level intervals are about 3 times too short and
    # cover ~45%. 150 replications: MC sd of a 95% coverage 0.018; band [0.89, 0.99].
    reps = 150
    hits = {"delta_cluster": 0, "boot_cluster": 0, "tweedie_cluster": 0, "delta_hetero": 0}
    for r in range(reps):
        rng = np.random.default_rng(7000 + r)
        df, cal = _clustered_study(rng)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DiagnosticWarning)
            runs = {
                "delta_cluster": dict(method="lcc", interval="delta",
                                      vcov={"cluster": "village"}),
                "boot_cluster": dict(method="lcc", interval="bootstrap", n_boot=199,
                                     vcov={"cluster": "village"}),
                "tweedie_cluster": dict(method="tweedie", interval="bootstrap", n_boot=199,
                                        vcov={"cluster": "village"}),
                "delta_hetero": dict(method="lcc", interval="delta"),
            }
            for name, kw in runs.items():
                est = gc.debias("yhat ~ d", df, calibration=cal, propensity="e", seed=r, **kw)
                lo, hi = est.conf_int().loc["d"]
                hits[name] += lo <= 1.0 <= hi
    cov = {k: v / reps for k, v in hits.items()}
    print("coverage under clustering:", cov)
    for name in ("delta_cluster", "boot_cluster", "tweedie_cluster"):
        assert 0.89 <= cov[name] <= 0.99, (name, cov)
    assert cov["delta_hetero"] < 0.7


def test_cluster_bootstrap_labels_and_errors():
    rng = np.random.default_rng(3)
    df, cal = _clustered_study(rng, n_clusters=30)
    est = gc.debias("yhat ~ d", df, calibration=cal, propensity="e", n_boot=99,
                    vcov={"cluster": "village"})
    assert est.vcov_type == "bootstrap(cluster(village); calibration+downstream)"
    with pytest.raises(DataError, match="'nope' is not a column"):
        gc.debias("yhat ~ d", df, calibration=cal, propensity="e", vcov={"cluster": "nope"})
    with pytest.raises(DesignError, match="one cluster column"):
        gc.debias("yhat ~ d", df.assign(v2=df.village), calibration=cal, propensity="e",
                  vcov={"cluster": ["village", "v2"]})
    with pytest.raises(DataError, match="at least 2 clusters"):
        gc.debias("yhat ~ d", df.assign(one=1), calibration=cal, propensity="e", n_boot=9,
                  vcov={"cluster": "one"})


def test_compare_debiasers_criteria():
    """Each criterion recommends the method best by that column of the table."""
    rng = np.random.default_rng(11)
    y = rng.normal(size=300)
    yhat = 0.25 * y + rng.normal(0, 0.3, 300)       # strong shrinkage, small calibration folds
    for crit, col in (("mae", "mae"), ("rmse", "rmse"), ("slope", "slope_error")):
        cmp = gc.compare_debiasers((yhat, y), n_trials=20, seed=2, criterion=crit)
        tab = cmp.table.set_index("method")
        assert cmp.recommended == tab[col].idxmin()
        assert cmp.settings["criterion"] == crit
        assert np.allclose(tab["slope_error"], (tab["slope"] - 1).abs())
    with pytest.raises(DataError, match="criterion='bias'"):
        gc.compare_debiasers((yhat, y), criterion="bias")


# ------------------------------------------------------------------ one vocabulary
def test_debias_vocabulary_slots_folds_and_options():
    from sklearn.linear_model import LogisticRegression

    from geocausal.errors import OptionError
    from geocausal.folds import Folds

    df, cal = _frames(n=600, n_cal=300)
    lr = LogisticRegression()
    kw = {"calibration": cal, "method": "lcc", "interval": "delta"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        canon = gc.debias("yhat ~ d + c", df, learners={"propensity": lr}, **kw)
        alias = gc.debias("yhat ~ d + c", df, learners={"ml_m": lr}, **kw)
        assert canon.params["d"] == alias.params["d"]
        # an integer is random stratified folds; fold ids and Folds specs work the same way
        fid = np.arange(len(df)) % 5
        by_ids = gc.debias("yhat ~ d + c", df, learners={"propensity": lr}, folds=fid, **kw)
        df2 = df.assign(block=fid)
        by_spec = gc.debias("yhat ~ d + c", df2, learners={"propensity": lr},
                            folds=Folds.group("block"), **kw)
        assert by_ids.params["d"] == pytest.approx(by_spec.params["d"], abs=1e-12)
        # the one default propensity learner, clipped at DEFAULTS.clip
        dflt = gc.debias("yhat ~ d + c", df, **kw)
        assert "Pipeline" in dflt.diagnostics["propensity"]
        # case-insensitive options
        upper = gc.debias("yhat ~ d + c", df, calibration=cal, method="LCC", interval="Delta")
        assert upper.params["d"] == dflt.params["d"]
    with pytest.raises(OptionError, match="no learner slot 'outcome'"):
        gc.debias("yhat ~ d + c", df, learners={"outcome": lr}, **kw)
    with pytest.raises(OptionError, match="interval='wild'"):
        gc.debias("yhat ~ d", df, calibration=cal, interval="wild")
    with pytest.raises(OptionError, match="unknown keyword"):
        gc.debias("yhat ~ d", df, calibration=cal, bandwith="scott")


def test_tweedie_options_object_dict_and_deprecated_keywords():
    from geocausal.designs.debias import TweedieOptions
    from geocausal.errors import OptionError

    df, cal = _frames(n=600, n_cal=300)
    kw = {"calibration": cal, "propensity": "e", "n_boot": 50, "seed": 3}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DiagnosticWarning)
        obj = gc.debias("yhat ~ d", df, tweedie=TweedieOptions(bandwidth="silverman",
                                                                score_sample="downstream"), **kw)
        dct = gc.debias("yhat ~ d", df, tweedie={"bandwidth": "silverman",
                                                 "score_sample": "downstream"}, **kw)
        with pytest.warns(FutureWarning, match="tweedie=TweedieOptions"):
            old = gc.debias("yhat ~ d", df, bandwidth="silverman", score_sample="downstream",
                            **kw)
        plain = gc.debias("yhat ~ d", df, **kw)
    assert obj.params["d"] == dct.params["d"] == old.params["d"]
    assert obj.std_errors["d"] == old.std_errors["d"]
    assert obj.diagnostics["bandwidth_rule"] == "silverman"
    assert obj.params["d"] != plain.params["d"]        # the options reach the corrector
    with pytest.raises(OptionError, match="derivative='exact'"):
        TweedieOptions(derivative="exact")
    with pytest.raises(OptionError, match="no field"):
        gc.debias("yhat ~ d", df, tweedie={"bw": 1.0}, **kw)


def test_one_propensity_check_refuses_values_at_zero_or_one():
    from geocausal.designs.debias import check_arms

    with pytest.raises(DesignError, match="1 propensities are <= 0"):
        check_arms([0, 1, 1], [0.0, 0.5, 0.5])
    with pytest.warns(DiagnosticWarning, match="1 propensities are below 0.01"):
        check_arms([0, 1, 1], [0.001, 0.5, 0.5])

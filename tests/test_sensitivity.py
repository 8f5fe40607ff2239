"""Sensitivity analysis (issue 19): OVB bounds against DoubleML, Cinelli-Hazlett bounds against
PySensemakr, benchmarks, the delta-method SE of the bounds, plots and refusals."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.errors import DataError, DesignError
from geocausal.inference import sensitivity as sens

dml = pytest.importorskip("doubleml")


def _irm_data(n=600, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    e = 1 / (1 + np.exp(-x[:, 0]))
    d = rng.binomial(1, e).astype(float)
    y = d * (1 + 0.5 * x[:, 1]) + x @ [1.0, 0.5, 0.2] + rng.normal(size=n)
    df = pd.DataFrame(x, columns=["x1", "x2", "x3"]).assign(d=d, y=y)
    ehat = np.clip(e + rng.normal(0, 0.05, n), 0.05, 0.95)
    mu0 = x @ [1.0, 0.5, 0.2] + rng.normal(0, 0.2, n)
    mu1 = mu0 + 1 + 0.5 * x[:, 1] + rng.normal(0, 0.2, n)
    return df, ehat, mu0, mu1


def _dml_irm(df, score, ehat, mu0, mu1):
    from sklearn.linear_model import LinearRegression, LogisticRegression

    data = dml.DoubleMLData(df, "y", "d", ["x1", "x2", "x3"])
    m = dml.DoubleMLIRM(data, LinearRegression(), LogisticRegression(), score=score, n_folds=2)
    m.fit(external_predictions={"d": {"ml_g0": mu0[:, None], "ml_g1": mu1[:, None],
                                      "ml_m": ehat[:, None]}})
    return m


SCENARIOS = [(0.03, 0.03, 1.0, 0.95), (0.1, 0.2, 0.5, 0.9), (0.2, 0.05, -0.7, 0.95)]


@pytest.mark.parametrize("estimand,score", [("ATE", "ATE"), ("ATT", "ATTE")])
def test_irm_equals_doubleml(estimand, score):
    df, ehat, mu0, mu1 = _irm_data()
    m = _dml_irm(df, score, ehat, mu0, mu1)
    est = gc.aipw("y ~ d + x1 + x2 + x3", df, estimand=estimand, propensity=ehat,
                  predictions={"mu0": mu0, "mu1": mu1})
    assert est.params["d"] == pytest.approx(m.coef[0], abs=1e-10)
    for cf_y, cf_d, rho, level in SCENARIOS:
        m.sensitivity_analysis(cf_y=cf_y, cf_d=cf_d, rho=rho, level=level)
        ref = m.sensitivity_params
        got = est.sensitivity(cf_y, cf_d, rho, level, se_rule="doubleml").tidy().iloc[0]
        for key in ("theta", "se", "ci"):
            for side in ("lower", "upper"):
                name = {"theta": "theta", "se": "se", "ci": "ci"}[key] + "_" + side
                assert got[name] == pytest.approx(ref[key][side][0], abs=1e-8), name
        # DoubleML's RV/RVa come from a bounded Brent minimiser stopped at xatol = 1e-5
        assert got.rv == pytest.approx(ref["rv"][0], abs=2e-5)
        assert got.rva == pytest.approx(ref["rva"][0], abs=2e-5)
        # the delta rule shares the bounds of theta and RV
        delta = est.sensitivity(cf_y, cf_d, rho, level).tidy().iloc[0]
        assert delta.theta_lower == pytest.approx(ref["theta"]["lower"][0], abs=1e-10)
        assert delta.rv == pytest.approx(got.rv, abs=1e-12)


def test_rv_is_exact_root():
    df, ehat, mu0, mu1 = _irm_data(seed=1)
    est = gc.aipw("y ~ d + x1 + x2 + x3", df, propensity=ehat,
                  predictions={"mu0": mu0, "mu1": mu1})
    r = est.sensitivity().tidy().iloc[0]
    at_rv = est.sensitivity(r.rv, r.rv).tidy().iloc[0]
    at_rva = est.sensitivity(r.rva, r.rva).tidy().iloc[0]
    assert abs(at_rv.theta_lower) < 1e-9 and abs(at_rva.ci_lower) < 1e-9


def _panel(n_units=80, n_t=5, seed=0):
    rng = np.random.default_rng(seed)
    df = pd.DataFrame({"unit": np.repeat(np.arange(n_units), n_t),
                       "time": np.tile(np.arange(n_t), n_units)})
    n = len(df)
    df["x1"], df["x2"] = rng.normal(size=n), rng.normal(size=n)
    df["d"] = 0.8 * df.x1 + rng.normal(size=n)
    df["y"] = 0.5 * df.d + df.x1 - 0.5 * df.x2 + rng.normal(size=n)
    return df


def _splits(f):
    return [(np.flatnonzero(f != k), np.flatnonzero(f == k)) for k in np.unique(f)]


@pytest.mark.parametrize("n_rep", [1, 3])
def test_plr_equals_doubleml(n_rep):
    from sklearn.linear_model import LinearRegression

    df = _panel()
    rng = np.random.default_rng(5)
    folds = [rng.permutation(np.arange(len(df)) % 4) for _ in range(n_rep)]
    lin = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    est = gc.dml_panel("y ~ d + x1 + x2", df, unit="unit", time="time", approach="pooled",
                       learners=lin, folds=folds, vcov="hetero")
    data = dml.DoubleMLData(df, "y", "d", ["x1", "x2"])
    m = dml.DoubleMLPLR(data, LinearRegression(), LinearRegression(), n_folds=4, n_rep=n_rep,
                        draw_sample_splitting=False)
    m.set_sample_splitting([_splits(f) for f in folds])
    m.fit()
    assert est.params["d"] == pytest.approx(m.coef[0], abs=1e-10)
    for cf_y, cf_d, rho, level in SCENARIOS:
        m.sensitivity_analysis(cf_y=cf_y, cf_d=cf_d, rho=rho, level=level)
        ref = m.sensitivity_params
        got = est.sensitivity(cf_y, cf_d, rho, level, se_rule="doubleml").tidy().iloc[0]
        for key in ("theta", "se", "ci"):
            for side in ("lower", "upper"):
                assert got[f"{key}_{side}"] == pytest.approx(ref[key][side][0], abs=1e-8)
        assert got.rv == pytest.approx(ref["rv"][0], abs=2e-5)
        assert got.rva == pytest.approx(ref["rva"][0], abs=2e-5)


def test_benchmark_equals_doubleml():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    df, *_ = _irm_data(n=500, seed=3)
    folds = np.random.default_rng(1).permutation(np.arange(len(df)) % 3)
    lrn = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
    bench = gc.sensitivity_benchmark("y ~ d + x1 + x2 + x3", df, {"x1": "x1", "x2+x3": ["x2", "x3"]},
                                     learners=lrn, folds=folds)
    data = dml.DoubleMLData(df, "y", "d", ["x1", "x2", "x3"])
    m = dml.DoubleMLIRM(data, LinearRegression(), LogisticRegression(), n_folds=3,
                        draw_sample_splitting=False)
    m.set_sample_splitting(_splits(folds))
    m.fit()
    est = gc.aipw("y ~ d + x1 + x2 + x3", df, learners=lrn, folds=folds)
    assert est.params["d"] == pytest.approx(m.coef[0], abs=1e-8)
    for group, cols in (("x1", ["x1"]), ("x2+x3", ["x2", "x3"])):
        ref = m.sensitivity_benchmark(cols)
        row = bench.set_index("group").loc[group]
        for k in ("cf_y", "cf_d", "rho", "delta_theta"):
            assert row[k] == pytest.approx(float(ref[k].iloc[0]), abs=1e-8), (group, k)
    res = est.sensitivity(0.03, 0.03, benchmarks=bench)
    assert "x2+x3" in res.summary()


def test_benchmark_images_and_bad_groups():
    from sklearn.linear_model import LinearRegression, LogisticRegression

    df, *_ = _irm_data(n=300, seed=4)
    rng = np.random.default_rng(0)
    emb = pd.DataFrame(np.column_stack([df.x1 + rng.normal(0, .1, len(df)),
                                        rng.normal(size=len(df))]), index=df.index,
                       columns=["f0", "f1"])
    lrn = {"propensity": LogisticRegression(), "outcome": LinearRegression()}
    b = gc.sensitivity_benchmark("y ~ d + x2", df, "images", images=emb, learners=lrn)
    # the images carry x1, a strong confounder: a large benchmark on both sides
    assert b.cf_y[0] > 0.2 and b.cf_d[0] > 0.05
    assert "without images" in b.refit[0]
    with pytest.raises(DataError, match="not controls"):
        gc.sensitivity_benchmark("y ~ d + x2", df, "x9", images=emb, learners=lrn)
    with pytest.raises(DataError, match="no images"):
        gc.sensitivity_benchmark("y ~ d + x2", df, "images", learners=lrn)


def _sensemakr_compare(est, ols, treatment, bench, kd=(1.0, 2.0, 3.0)):
    sensemakr = pytest.importorskip("sensemakr")
    bench = [bench] if isinstance(bench, str) else list(bench)
    # PySensemakr 0.0.8's single-covariate partial_r2 indexes a Series by position (KeyError
    # under pandas >= 2); one-covariate groups take its F-statistic route, F = t^2: the same R2
    ref = sensemakr.Sensemakr(model=ols, treatment=treatment,
                              benchmark_covariates=[[b] for b in bench],
                              kd=list(kd), r2dz_x=0.05, r2yz_dx=0.1)
    st = ref.sensitivity_stats
    res = est.sensitivity(cf_y=0.1, cf_d=0.05, benchmark=bench, kd=list(kd))
    row = res.tidy().iloc[0]
    assert row.estimate == pytest.approx(float(st["estimate"]), abs=1e-8)
    assert row.dof == int(st["dof"])
    for ours, theirs in (("rv", "rv_q"), ("rva", "rv_qa"), ("r2yd_x", "r2yd_x")):
        assert row[ours] == pytest.approx(float(np.asarray(st[theirs]).ravel()[0]), abs=1e-8)
    manual = ref.bounds.iloc[0]
    side = "theta_lower" if row.estimate > 0 else "theta_upper"
    assert row[side] == pytest.approx(float(manual.adjusted_estimate), abs=1e-8)
    assert row.se_lower == pytest.approx(float(manual.adjusted_se), abs=1e-8)
    bb = ref.bench_bounds
    ours_b = res.benchmarks
    assert len(ours_b) == len(bb)
    for (_, a), (_, b) in zip(ours_b.iterrows(), bb.iterrows()):
        assert a.cf_d == pytest.approx(float(b.r2dz_x), abs=1e-8)
        assert a.cf_y == pytest.approx(float(b.r2yz_dx), abs=1e-8)
        got = a.theta_lower if row.estimate > 0 else a.theta_upper
        assert got == pytest.approx(float(b.adjusted_estimate), abs=1e-8)
        assert a.se_lower == pytest.approx(float(b.adjusted_se), abs=1e-8)
        # sensemakr's CI is around its adjusted (reduced) estimate: ours on that side
        if row.estimate > 0:
            assert a.ci_lower == pytest.approx(float(b.adjusted_lower_CI), abs=1e-8)
        else:
            assert a.ci_upper == pytest.approx(float(b.adjusted_upper_CI), abs=1e-8)
    return res


def test_linear_equals_sensemakr_darfur():
    sensemakr = pytest.importorskip("sensemakr")
    import statsmodels.formula.api as smf

    darfur = sensemakr.data.load_darfur()
    ctrl = "age + farmer_dar + herder_dar + pastvoted + hhsize_darfur + female"
    ols = smf.ols(f"peacefactor ~ directlyharmed + {ctrl} + C(village)", data=darfur).fit()
    est = gc.fe(f"peacefactor ~ directlyharmed + {ctrl} | village", darfur, vcov="iid")
    res = _sensemakr_compare(est, ols, "directlyharmed", "female")
    # Cinelli and Hazlett (2020), Table 1: RV 13.9%, RV_a 7.6%, partial R2 2.2%
    r = res.tidy().iloc[0]
    assert round(r.rv, 3) == 0.139 and round(r.rva, 3) == 0.076 and round(r.r2yd_x, 3) == 0.022


def test_linear_equals_sensemakr_wage_panel():
    pytest.importorskip("sensemakr")
    lm_data = pytest.importorskip("linearmodels.datasets.wage_panel")
    import statsmodels.formula.api as smf

    wp = lm_data.load()
    f = "lwage ~ union + married + expersq + hours"
    ols = smf.ols(f + " + C(nr) + C(year)", data=wp).fit()
    est = gc.fe(f + " | nr + year", wp, vcov={"cluster": "nr"})
    _sensemakr_compare(est, ols, "union", ["married", "hours"], kd=(1.0, 2.0))
    # a group benchmark (both covariates together): sensemakr's F-statistic partial R2
    import sensemakr

    ref = sensemakr.Sensemakr(model=ols, treatment="union",
                              benchmark_covariates={"grp": ["married", "hours"]}, kd=[1.0])
    got = est.sensitivity(benchmark={"grp": ["married", "hours"]}).benchmarks.iloc[0]
    b = ref.bench_bounds.iloc[0]
    assert got.cf_d == pytest.approx(float(b.r2dz_x), abs=1e-8)
    assert got.cf_y == pytest.approx(float(b.r2yz_dx), abs=1e-8)
    assert got.theta_lower == pytest.approx(float(b.adjusted_estimate), abs=1e-8)


def test_bad_input_named_errors():
    df, ehat, mu0, mu1 = _irm_data(n=200)
    est = gc.aipw("y ~ d + x1", df, propensity=ehat, predictions={"mu0": mu0, "mu1": mu1})
    for kw in ({"cf_y": 1.0}, {"cf_y": -0.1}, {"cf_d": 1.0}, {"cf_d": float("nan")},
               {"rho": 1.5}, {"rho": -1.01}, {"level": 1.0}, {"cf_y": "a"}):
        with pytest.raises(DataError):
            est.sensitivity(**kw)
    with pytest.raises(DataError, match="se_rule"):
        est.sensitivity(se_rule="other")
    with pytest.raises(DataError, match="sensitivity_benchmark"):
        est.sensitivity(benchmark="x1")
    ipw = gc.ipw("y ~ d + x1", df, propensity=ehat)
    with pytest.raises(DesignError, match="gc.aipw"):
        ipw.sensitivity()
    att = gc.aipw("y ~ d + x1", df, estimand="ATT", propensity=ehat, predictions={"mu0": mu0})
    with pytest.raises(DesignError, match="mu1"):
        att.sensitivity()
    panel = _panel(30, 4)
    fe = gc.fe("y ~ d + x1 + x2 | unit + time", panel)
    with pytest.raises(DataError, match="not controls"):
        fe.sensitivity(benchmark="x9")
    with pytest.raises(DataError, match="rho"):
        fe.sensitivity(rho=0.5)
    from geocausal.results.estimate import Estimate

    other = Estimate.from_influence({"auc": 0.7}, np.ones(10), design="placement")
    with pytest.raises(DesignError, match="not derived for the design 'placement'"):
        other.sensitivity()


def test_delta_se_matches_bootstrap():
    """The delta-method SE of each bound against a row bootstrap of the bound with the nuisance
    predictions held fixed (B = 2000: the SD of a bootstrap SE is about 1.6%; accept 6%)."""
    df, ehat, mu0, mu1 = _irm_data(n=800, seed=7)
    y, d = df.y.to_numpy(), df.d.to_numpy()
    est = gc.aipw("y ~ d + x1", df, propensity=ehat, predictions={"mu0": mu0, "mu1": mu1})
    cf = 0.3
    r = est.sensitivity(cf, cf).tidy().iloc[0]
    r_dml = est.sensitivity(cf, cf, se_rule="doubleml").tidy().iloc[0]
    cs = sens.confounding_strength(cf, cf, 1.0)
    rng = np.random.default_rng(11)
    lows, ups = [], []
    for _ in range(2000):
        i = rng.integers(0, len(y), len(y))
        el = sens.irm_elements("d", y[i], d[i], ehat[i], mu0[i], mu1[i], influence=None)
        s = float(el.max_bias[0])
        lows.append(el.theta[0] - cs * s)
        ups.append(el.theta[0] + cs * s)
    boot_lo, boot_up = np.std(lows), np.std(ups)
    assert 0.94 < r.se_lower / boot_lo < 1.06
    assert 0.94 < r.se_upper / boot_up < 1.06
    # DoubleML 0.11 swaps them: its lower-bound SE is the upper bound's
    assert r_dml.se_lower == pytest.approx(r.se_upper, rel=1e-12)
    # measured: delta 0.0921, bootstrap 0.0954, DoubleML's rule 0.0889
    assert abs(r_dml.se_lower / boot_lo - 1) > abs(r.se_lower / boot_lo - 1)


def test_plot_and_summary(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    df, ehat, mu0, mu1 = _irm_data(n=300, seed=2)
    est = gc.aipw("y ~ d + x1", df, propensity=ehat, predictions={"mu0": mu0, "mu1": mu1})
    bench = pd.DataFrame({"group": ["x1"], "cf_y": [0.05], "cf_d": [0.02], "rho": [1.0],
                          "theta_lower": [np.nan], "theta_upper": [np.nan]})
    res = est.sensitivity(0.05, 0.05, benchmarks=bench)
    r = res.tidy().iloc[0]
    text = res.summary()
    assert f"{100 * r.rv:.3g}%" in text and "lower bound" in text and "x1" in text
    fig = res.plot()
    assert fig.axes[0].get_xlabel().startswith("cf_y")
    # the contour's bound at the scenario equals the table's
    z = res.bound_grid(np.array([r.cf_y]), np.array([r.cf_d]))
    assert z[0, 0] == pytest.approx(r.theta_lower, abs=1e-12)
    fig.savefig(tmp_path / "s.png")
    assert (tmp_path / "s.png").stat().st_size > 1000
    with pytest.raises(DataError, match="benchmarks"):
        est.sensitivity(benchmarks=pd.DataFrame({"x": [1]}))


def test_cli_sensitivity(tmp_path, capsys):
    from geocausal.cli import main

    out = tmp_path / "res"
    rc = main(["estimate", "--design", "aipw", "--manifest", "demo", "--formula",
               "y ~ d + x1 + x2", "--images", "none", "--out", str(out),
               "--sensitivity", "0.05,0.04", "--benchmark", "x1"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "Robustness value RV" in text and "x1: cf_y" in text
    tab = pd.read_csv(out / "aipw_sensitivity.csv")
    assert tab.cf_y[0] == 0.05 and tab.cf_d[0] == 0.04 and "benchmark" in set(tab.term)
    assert (out / "aipw_sensitivity.png").stat().st_size > 1000
    rc = main(["estimate", "--design", "aipw", "--manifest", "demo", "--formula",
               "y ~ d + x1", "--images", "none", "--out", str(tmp_path / "r2"),
               "--sensitivity", "1.5,0.1"])
    assert rc != 0
    assert "cf_y" in capsys.readouterr().err


def test_bound_se_follows_vcov_and_refusals_of_panel():
    from sklearn.linear_model import LinearRegression

    df, ehat, mu0, mu1 = _irm_data(n=400, seed=8)
    df["g"] = np.arange(len(df)) % 40
    est = gc.aipw("y ~ d + x1", df, propensity=ehat, predictions={"mu0": mu0, "mu1": mu1})
    for e in (est, est.with_vcov({"cluster": "g"})):
        r = e.sensitivity(cf_y=0.0, cf_d=0.0).tidy().iloc[0]  # no confounding: the estimate
        assert r.theta_lower == pytest.approx(e.params["d"], abs=1e-12)
        assert r.se_lower == pytest.approx(e.std_errors["d"], rel=1e-10)
        from scipy import stats

        q = stats.t(e.dof).ppf(0.95) if e.dof else stats.norm.ppf(0.95)
        assert r.ci_lower == pytest.approx(e.params["d"] - q * e.std_errors["d"], rel=1e-10)
    panel = _panel(40, 4)
    lin = {"ml_l": LinearRegression(), "ml_m": LinearRegression(), "ml_g": LinearRegression()}
    iv = gc.dml_panel("y ~ d + x1", panel, unit="unit", time="time", learners=lin, folds=3,
                      score="IV-type")
    with pytest.raises(DesignError, match="partialling-out"):
        iv.sensitivity()
    panel["d2"] = panel.x2 + np.random.default_rng(0).normal(size=len(panel))
    two = gc.dml_panel("y ~ d + d2 + x1", panel, unit="unit", time="time", learners=lin,
                       folds=3, options={"treatments": ["d", "d2"]})
    with pytest.raises(DesignError, match="one treatment"):
        two.sensitivity()


def test_elements_survive_save_load(tmp_path):
    df, ehat, mu0, mu1 = _irm_data(n=200)
    df["g"] = np.arange(len(df)) % 30
    est = gc.aipw("y ~ d + x1", df, propensity=ehat, predictions={"mu0": mu0, "mu1": mu1},
                  vcov={"cluster": "g"})
    est.save(tmp_path / "e.zip")
    back = gc.load(tmp_path / "e.zip")
    pd.testing.assert_frame_equal(back.sensitivity(0.1, 0.05).tidy(),
                                  est.sensitivity(0.1, 0.05).tidy(), rtol=1e-12)

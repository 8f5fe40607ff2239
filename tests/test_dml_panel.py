"""gc.dml_panel: exact identities, agreement with DoubleMLPLPR and linear FE, inference, bad input."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
import pytest
import statsmodels.api as sm
from linearmodels import PanelOLS
from linearmodels.datasets import wage_panel
from sklearn.linear_model import LinearRegression, Ridge
from sklearn.tree import DecisionTreeRegressor

from geocausal.api.dml_panel import dml_panel
from geocausal.datasets.panel_dgp import make_fuhr_papies
from geocausal.designs.dml_panel import PanelDMLFit, PanelOptions, panel_diagnostics
from geocausal.errors import (
    DataError,
    DesignError,
    DiagnosticWarning,
    FormulaError,
    GeocausalWarning,
    OptionError,
)
from geocausal.folds import Folds
from geocausal.inference.variance import VcovRequest

X = ["exper", "expersq", "married", "hours"]
FORMULA = "lwage ~ union + " + " + ".join(X)


def _lin(learner=None):
    lrn = learner if learner is not None else LinearRegression()
    return {"ml_l": lrn, "ml_m": lrn, "ml_g": lrn}


@pytest.fixture(scope="module")
def wage():
    return wage_panel.load()


@pytest.fixture(scope="module")
def unit_folds(wage):
    """One fold id per unit (545 units, 109 per fold), the same for us and for DoubleML."""
    units = np.unique(wage.nr)
    perm = np.random.default_rng(1).permutation(np.arange(units.size) % 5)
    return dict(zip(units, perm))


def test_cre_without_crossfitting_equals_mundlak_pooled_ols(wage):
    est = dml_panel(FORMULA, wage, unit="nr", time="year", approach="cre", learners=_lin(),
                    folds=1)
    z = wage[["union", *X]].copy()
    for c in ["union", *X]:
        z[f"mean_{c}"] = wage.groupby("nr")[c].transform("mean")
    ols = sm.OLS(wage.lwage, sm.add_constant(z)).fit()
    # FWL: partialling y and d on the same features is the OLS coefficient, exactly
    assert abs(est.params["union"] - ols.params["union"]) < 1e-8
    assert est.diagnostics["fold_type"].startswith("none")
    crossfit_off = dml_panel(FORMULA, wage, unit="nr", time="year", approach="cre",
                             learners=_lin(), options=PanelOptions(crossfit=False))
    assert crossfit_off.params["union"] == pytest.approx(est.params["union"], abs=1e-12)


def test_cre_crossfitted_close_to_linear_fe(wage):
    est = dml_panel(FORMULA, wage, unit="nr", time="year", approach="cre", learners=_lin(),
                    folds=5, seed=0)
    panel = wage.set_index(["nr", "year"])
    fe = PanelOLS(panel.lwage, panel[["union", *X]], entity_effects=True).fit(
        cov_type="clustered", cluster_entity=True)
    # Mundlak CRE == FE without cross-fitting; 5-fold cross-fitting only perturbs the linear
    # projections by O(p / n_train), far below a fifth of the sampling SE (~0.022)
    diff = abs(est.params["union"] - fe.params["union"])
    assert diff < 0.2 * fe.std_errors["union"]
    assert est.std_errors["union"] == pytest.approx(fe.std_errors["union"], rel=0.1)
    assert est.vcov_type == "cluster(nr)"


RIDGE = Ridge(alpha=1.0)
TREE = DecisionTreeRegressor(max_depth=3, random_state=0)


@pytest.mark.parametrize("ours,theirs,score,learner", [
    ("cre_cp", "cre_general", "partialling out", RIDGE),
    ("cre_cp", "cre_general", "IV-type", TREE),
    ("fd", "fd_exact", "partialling out", TREE),
    ("fd", "fd_exact", "IV-type", RIDGE),
    ("within", "wg_approx", "partialling out", RIDGE),
    ("within", "wg_approx", "IV-type", TREE),
], ids=lambda v: v if isinstance(v, str) else type(v).__name__)
def test_reproduces_doubleml_plpr(wage, unit_folds, ours, theirs, score, learner):
    import doubleml as dml

    fid = wage.nr.map(unit_folds).to_numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        est = dml_panel(FORMULA, wage, unit="nr", time="year", approach=ours, score=score,
                        learners=_lin(learner), folds=fid,
                        options=PanelOptions(bias_check=False, n_boot=0))
        pdata = dml.DoubleMLPanelData(wage, "lwage", "union", "year", "nr", x_cols=X,
                                      static_panel=True)
        obj = dml.DoubleMLPLPR(pdata, learner, learner, learner if score == "IV-type" else None,
                               approach=theirs, score=score, n_folds=5)
        tdf = obj.data_transform.data
        ids = tdf["nr"].to_numpy()
        ft = tdf["nr"].map(unit_folds).to_numpy()
        smpls = [(np.flatnonzero(ft != k), np.flatnonzero(ft == k)) for k in range(5)]
        cl = [([np.unique(ids[tr])], [np.unique(ids[te])]) for tr, te in smpls]
        obj.set_sample_splitting([smpls], [cl])
        obj.fit()
    assert est.nobs == len(tdf)
    assert abs(est.params["union"] - obj.coef[0]) < 1e-6
    # equal folds of 109 units: DoubleML's Chiang et al. variance is ours without G/(G-1)
    g = np.unique(ids).size
    assert est.std_errors["union"] == pytest.approx(obj.se[0] * np.sqrt(g / (g - 1)), rel=1e-6)


def test_repetitions_use_median_aggregation(wage):
    est = dml_panel(FORMULA, wage, unit="nr", time="year", approach="cre",
                    learners=_lin(DecisionTreeRegressor(max_depth=4, random_state=0)),
                    folds=3, options={"n_rep": 3, "bias_check": False}, seed=4)
    th = np.array(est.diagnostics["thetas"])[:, 0]
    se = np.array(est.diagnostics["ses"])[:, 0]
    assert th.size == 3 and np.unique(th).size == 3
    assert est.params["union"] == pytest.approx(np.median(th))
    expected = (np.median(th + 1.96 * se) - np.median(th)) / 1.96
    assert est.std_errors["union"] == pytest.approx(expected)
    assert "rep_sd_over_se" in est.diagnostics
    again = dml_panel(FORMULA, wage, unit="nr", time="year", approach="cre",
                      learners=_lin(DecisionTreeRegressor(max_depth=4, random_state=0)),
                      folds=3, options=PanelOptions(n_rep=3, bias_check=False), seed=4)
    assert again.params.equals(est.params)


def test_two_way_cluster_and_with_vcov(wage):
    est = dml_panel(FORMULA, wage, unit="nr", time="year", approach="fd", learners=_lin(),
                    vcov="twoway", options=PanelOptions(n_boot=0))
    assert est.vcov_type == "cluster(nr x year)"
    assert est.with_vcov("hetero").std_errors["union"] > 0


@pytest.fixture(scope="module")
def two_treatments():
    rng = np.random.default_rng(3)
    n, t = 150, 6
    unit = np.repeat(np.arange(n), t)
    c = rng.normal(size=n)[unit]
    x = rng.normal(size=n * t) + c
    d1 = 0.5 * x + c + rng.normal(size=n * t)
    d2 = -0.3 * x + rng.normal(size=n * t)
    y = 1.0 * d1 - 0.5 * d2 + x + 2 * c + rng.normal(size=n * t)
    return pd.DataFrame({"unit": unit, "time": np.tile(np.arange(t), n), "y": y, "d1": d1,
                         "d2": d2, "x": x})


def test_several_treatments_joint_intervals(two_treatments):
    est = dml_panel("y ~ d1 + d2 + x", two_treatments, unit="unit", time="time",
                    approach="cre", learners=_lin(), options={"treatments": 2, "n_boot": 2000},
                    seed=1)
    assert list(est.params.index) == ["d1", "d2"]
    # truth (1, -0.5); SEs are ~0.02, so 5 SEs
    assert est.params["d1"] == pytest.approx(1.0, abs=5 * est.std_errors["d1"])
    assert est.params["d2"] == pytest.approx(-0.5, abs=5 * est.std_errors["d2"])
    joint = est.tables["joint"]
    crit = est.diagnostics["sup_t_critical"]
    # the max of two |t| exceeds one |t|: the sup-t critical value lies between 1.96 and the
    # Bonferroni value 2.24 (bootstrap error with 2000 draws is about 0.03)
    assert 1.96 < crit < 2.30
    assert np.all(joint.ucb_high - joint.ucb_low > joint.ci_high - joint.ci_low)
    assert np.allclose(joint.std_error, est.std_errors)
    named = dml_panel("y ~ d1 + d2 + x", two_treatments, unit="unit", time="time",
                      approach="cre", learners=_lin(), options={"treatments": ["d1", "d2"], "n_boot": 0},
                      seed=1)
    assert np.allclose(named.params, est.params)


def test_fold_types_and_images(two_treatments):
    df = two_treatments
    specs = {"random": Folds(3), "time": Folds.time("time", k=3),
             "neighbours": Folds.time("time", k=3, gap=1)}
    for ft, spec in specs.items():
        est = dml_panel("y ~ d1 + x", df, unit="unit", time="time", approach="cre",
                        learners=_lin(), folds=spec, options=PanelOptions(n_boot=0))
        assert est.diagnostics["fold_type"] == ft
        assert est.params["d1"] == pytest.approx(1.0, abs=0.15)
    feats = np.random.default_rng(0).normal(size=(len(df), 2))
    est = dml_panel("y ~ d1 + x", df, unit="unit", time="time", approach="pooled",
                    learners=_lin(), images=feats, options=PanelOptions(n_boot=0))
    assert "image_1" in est.diagnostics["features"]


def test_outcome_correction_is_applied(two_treatments):
    class Double:
        def transform(self, y):
            return 2 * y

    base = dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time", learners=_lin(),
                     options=PanelOptions(n_boot=0))
    corr = dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time", learners=_lin(),
                     options=PanelOptions(n_boot=0), outcome_correction=Double())
    assert corr.params["d1"] == pytest.approx(2 * base.params["d1"], rel=1e-10)


def test_coverage_diagnostic_flags_bias_and_spread():
    tr_unit = np.repeat(np.arange(10), 2)
    fit = PanelDMLFit(theta=np.array([1.0]), se=np.array([0.1]), influence=np.ones((20, 1)),
                      thetas=np.array([[0.9], [1.0], [1.1]]), ses=np.full((3, 1), 0.1),
                      thetas_alt=np.array([[0.8], [0.9], [1.0]]))
    req = VcovRequest("cluster", (tr_unit,), ("unit",))
    diag = panel_diagnostics(fit, np.array([0.1]), ["d"], alpha=0.05)
    assert diag["coverage_flag"]
    assert diag["bias_over_se"]["d"] == pytest.approx(1.0)
    assert diag["rep_sd_over_se"]["d"] == pytest.approx(1.0)
    ci = diag["bias_aware_ci"].iloc[0]
    assert ci.conf_high - ci.conf_low == pytest.approx(2 * (1.96 * np.sqrt(0.02) + 0.1), rel=1e-3)
    calm = PanelDMLFit(theta=np.array([1.0]), se=np.array([0.1]), influence=np.ones((20, 1)),
                       thetas=np.array([[1.0]]), ses=np.full((1, 1), 0.1),
                       thetas_alt=np.array([[1.01]]))
    assert not panel_diagnostics(calm, np.array([0.1]), ["d"])["coverage_flag"]
    assert req.n_clusters == 10


def test_shallow_trees_bias_is_flagged():
    # gamma = 2.04 in this draw: strong nonlinear confounding that depth-3 trees cannot fit,
    # so the estimate is far from the truth (1) and the two orthogonal scores disagree
    df = make_fuhr_papies(200, 5, structure="C", shape="u", seed=3)
    shallow = DecisionTreeRegressor(max_depth=3, random_state=0)
    with pytest.warns(DiagnosticWarning, match="standard errors"):
        est = dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="cre",
                        learners=_lin(shallow), options=PanelOptions(n_boot=0))
    assert abs(est.params["d"] - 1) > 3 * est.std_errors["d"]
    assert est.diagnostics["coverage_flag"]
    assert est.diagnostics["bias_over_se"]["d"] > 0.5
    ci = est.diagnostics["bias_aware_ci"].iloc[0]
    assert ci.conf_high - ci.conf_low > 2 * 1.96 * est.std_errors["d"]


# ------------------------------------------------------------------ bad input
@pytest.fixture()
def gappy():
    df = make_fuhr_papies(30, 6, shape="linear", seed=5)
    drop = df.index[(df.unit == 3) & (df.time == 2)].tolist() + \
        df.index[(df.unit == 7) & (df.time.isin([1, 4]))].tolist()
    single = df.index[(df.unit == 9) & (df.time > 0)].tolist()
    return df.drop(index=drop + single).reset_index(drop=True)


def test_first_differences_report_dropped_rows(gappy):
    with pytest.warns(GeocausalWarning, match="3 rows whose previous period is missing"):
        est = dml_panel("y ~ d + x1", gappy, unit="unit", time="time", approach="fd",
                        learners=_lin(), options=PanelOptions(n_boot=0))
    dropped = est.diagnostics["dropped"]
    assert (dropped.reason == "previous period missing").sum() == 3
    assert (dropped.reason == "first period of the unit").sum() == 30
    assert est.diagnostics["rows_dropped"] == 33
    assert not est.diagnostics["balanced"]
    assert set(map(tuple, dropped.loc[dropped.reason != "first period of the unit",
                                      ["unit", "time"]].to_numpy())) == {(3, 3), (7, 2), (7, 5)}


def test_singletons_dropped_with_count(gappy):
    with pytest.warns(GeocausalWarning, match="dropped 1 rows of units observed once"):
        est = dml_panel("y ~ d + x1", gappy, unit="unit", time="time", approach="cre",
                        learners=_lin(), options=PanelOptions(n_boot=0))
    assert est.diagnostics["notes"]["singletons_dropped"] == 1
    pooled = dml_panel("y ~ d + x1", gappy, unit="unit", time="time", approach="pooled",
                       learners=_lin(), options=PanelOptions(n_boot=0))
    assert pooled.nobs == len(gappy)


def test_time_invariant_treatment_and_controls(two_treatments):
    df = two_treatments.copy()
    df["dfix"] = df.groupby("unit")["d1"].transform("mean")
    df["xfix"] = df.groupby("unit")["x"].transform("first")
    for approach in ("within", "fd", "cre", "late", "cre_cp"):
        with pytest.raises(DesignError, match="'dfix' is time-invariant"):
            dml_panel("y ~ dfix + x", df, unit="unit", time="time", approach=approach,
                      learners=_lin())
    dml_panel("y ~ dfix + x", df, unit="unit", time="time", approach="pooled", learners=_lin(),
              options=PanelOptions(n_boot=0))
    with pytest.warns(GeocausalWarning, match="xfix"):
        dml_panel("y ~ d1 + x + xfix", df, unit="unit", time="time", approach="within",
                  learners=_lin(), options=PanelOptions(n_boot=0))


def test_unit_dummies_with_unit_folds_warn(two_treatments):
    two_treatments = two_treatments[two_treatments.unit < 40]
    with pytest.warns(DiagnosticWarning, match="unit dummies with unit folds"):
        dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time", approach="dummies",
                  folds=Folds.group("unit"), learners=_lin(Ridge(1.0)),
                  options={"bias_check": False, "n_boot": 0})
    # explicit fold ids that keep units together are caught too
    by_unit = two_treatments.unit.to_numpy() % 3
    with pytest.warns(DiagnosticWarning, match="unit dummies with unit folds"):
        dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time", approach="dummies",
                  folds=by_unit, learners=_lin(Ridge(1.0)),
                  options={"bias_check": False, "n_boot": 0})
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticWarning)
        est = dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time",
                        approach="dummies", learners=_lin(Ridge(1.0)),
                        options={"bias_check": False, "n_boot": 0})
    assert est.diagnostics["fold_type"] == "random"


@pytest.mark.parametrize("kwargs,err,match", [
    ({"approach": "hybrid"}, OptionError, "approach='hybrid'"),
    ({"score": "ATE"}, OptionError, "score='ATE'"),
    ({"fold_type": "spatial"}, OptionError, "fold_type='spatial'"),
    ({"unit": "id"}, DataError, "unit column 'id'"),
    ({"options": {"n_rep": 0}}, OptionError, "n_rep"),
    ({"options": {"nrep": 2}}, OptionError, "no field"),
    ({"nrep": 2}, OptionError, "unknown keyword"),
    ({"learners": {"outcome": LinearRegression()}}, OptionError, "no learner slot 'outcome'"),
    ({"learners": {"ml_l": LinearRegression(), "marginal": LinearRegression()}}, OptionError,
     "given twice"),
    ({"folds": Folds.group("village")}, DataError, "village"),
    ({"folds": np.zeros(3)}, DataError, "folds array has length 3"),
])
def test_bad_arguments(two_treatments, kwargs, err, match):
    args = {"unit": "unit", "time": "time", "learners": _lin(), **kwargs}
    with pytest.raises(err, match=match):
        dml_panel("y ~ d1 + x", two_treatments, **args)


def test_bad_data(two_treatments):
    dup = pd.concat([two_treatments, two_treatments.iloc[:2]])
    with pytest.raises(DataError, match="2 duplicated"):
        dml_panel("y ~ d1 + x", dup, unit="unit", time="time", learners=_lin())
    with pytest.raises(FormulaError, match="approach="):
        dml_panel("y ~ d1 + x | unit", two_treatments, unit="unit", time="time")
    with pytest.raises(FormulaError, match="nope"):
        dml_panel("y ~ d1 + nope", two_treatments, unit="unit", time="time")
    nan = two_treatments.copy()
    nan.loc[3, "time"] = np.nan
    with pytest.raises(DataError, match="time column 'time' has 1 missing"):
        dml_panel("y ~ d1 + x", nan, unit="unit", time="time", learners=_lin())


# ------------------------------------------------------------------ one vocabulary
def test_canonical_slots_equal_doubleml_aliases(two_treatments):
    lin = LinearRegression()
    canon = dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time",
                      options=PanelOptions(n_boot=0),
                      learners={"marginal": lin, "propensity": lin, "structural": lin})
    alias = dml_panel("y ~ d1 + x", two_treatments, unit="unit", time="time",
                      options=PanelOptions(n_boot=0), learners=_lin())
    assert canon.params["d1"] == alias.params["d1"]
    assert set(canon.diagnostics["nuisance_r2"]) == {"marginal", "propensity[0]", "structural"}


def test_deprecated_keywords_warn_and_equal_the_new_spelling(two_treatments):
    df = two_treatments
    new = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(),
                    folds=Folds.time("time", k=3, gap=1), options={"n_rep": 2, "n_boot": 0})
    with pytest.warns(FutureWarning, match="deprecated") as rec:
        old = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(), n_boot=0,
                        folds=3, fold_type="neighbours", n_rep=2)
    assert any("Folds(k=3, kind='time'" in str(w.message) for w in rec)
    assert any("PanelOptions(n_rep=2)" in str(w.message) for w in rec)
    assert old.params["d1"] == new.params["d1"]
    assert old.diagnostics["fold_type"] == "neighbours"
    # unit folds are the default, the same as Folds.group(unit) and the old fold_type='unit'
    default = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(),
                        options=PanelOptions(n_boot=0))
    spec = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(),
                     options=PanelOptions(n_boot=0), folds=Folds.group("unit"))
    assert default.params["d1"] == spec.params["d1"] and default.diagnostics["fold_type"] == "unit"
    with pytest.raises(OptionError, match="gap"):
        dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(), gap=2)


def test_case_insensitive_options_and_fold_ids_by_row(two_treatments):
    df = two_treatments
    a = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(),
                  options=PanelOptions(n_boot=0), approach="CRE", score="iv-type")
    assert a.diagnostics["approach"] == "cre" and a.diagnostics["score"] == "IV-type"
    # fold ids given per data row follow their rows even when the rows come shuffled
    fid = df.unit.to_numpy() % 3
    shuffled = df.sample(frac=1.0, random_state=0).reset_index(drop=True)
    b = dml_panel("y ~ d1 + x", df, unit="unit", time="time", learners=_lin(),
                  options=PanelOptions(n_boot=0), folds=fid)
    c = dml_panel("y ~ d1 + x", shuffled, unit="unit", time="time", learners=_lin(),
                  options=PanelOptions(n_boot=0), folds=shuffled.unit.to_numpy() % 3)
    assert b.params["d1"] == pytest.approx(c.params["d1"], abs=1e-10)

"""gc.fe against linearmodels PanelOLS on the Vella-Verbeek wage panel."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

import geocausal as gc
from geocausal.errors import DesignError, FormulaError

FORMULA = "lwage ~ expersq + union + married + hours | nr + year"


@pytest.fixture(scope="module")
def wage():
    from linearmodels.datasets import wage_panel

    return wage_panel.load()


@pytest.fixture(scope="module")
def panel_ols(wage):
    from linearmodels.panel import PanelOLS

    return PanelOLS.from_formula(
        "lwage ~ expersq + union + married + hours + EntityEffects + TimeEffects",
        wage.set_index(["nr", "year"]))


@pytest.mark.parametrize(
    ("lm_kwargs", "vcov", "ours_kwargs"),
    [
        ({"cov_type": "clustered", "cluster_entity": True}, {"cluster": "nr"}, {}),
        ({"cov_type": "clustered", "cluster_entity": True, "group_debias": True},
         {"cluster": "nr"}, {"group_debias": True}),
        ({"cov_type": "clustered", "cluster_entity": True, "cluster_time": True},
         {"cluster": ["nr", "year"]}, {}),
        ({"cov_type": "robust"}, "hetero", {}),
        ({"cov_type": "unadjusted"}, "iid", {}),
    ],
)
def test_fe_equals_linearmodels_panelols(wage, panel_ols, lm_kwargs, vcov, ours_kwargs):
    ref = panel_ols.fit(**lm_kwargs)
    est = gc.fe(FORMULA, wage, vcov=vcov, **ours_kwargs)
    np.testing.assert_allclose(est.params.to_numpy(), ref.params.to_numpy(), rtol=0, atol=1e-8)
    np.testing.assert_allclose(est.std_errors.to_numpy(), ref.std_errors.to_numpy(),
                               rtol=0, atol=1e-8)
    assert list(est.params.index) == list(ref.params.index)


def test_fe_unbalanced_panel_matches_dummy_regression(wage):
    """Alternating projections on an unbalanced panel equal OLS with explicit dummies."""
    import statsmodels.formula.api as smf

    sub = wage[wage.nr < 1500].sample(frac=0.7, random_state=0).reset_index(drop=True)
    est = gc.fe(FORMULA, sub, vcov="iid", debiased=True)
    ols = smf.ols("lwage ~ expersq + union + married + hours + C(nr) + C(year)", sub).fit()
    for term in ("expersq", "union", "married", "hours"):
        assert abs(est.params[term] - ols.params[term]) < 1e-8
        assert abs(est.std_errors[term] - ols.bse[term]) < 1e-8


def test_fe_errors_and_with_vcov(wage):
    with pytest.raises(FormulaError, match="fixed effects"):
        gc.fe("lwage ~ union", wage)
    with pytest.raises(DesignError, match="collinear"):
        gc.fe("lwage ~ union + educ | nr + year", wage)
    est = gc.fe(FORMULA, wage, vcov={"cluster": "nr"})
    alt = est.with_vcov({"cluster": "year"})
    assert alt.vcov_type == "cluster(year)" and np.all(alt.std_errors > 0)
    by_unit = gc.fe("lwage ~ union | nr", wage, vcov={"cluster": "nr"}, unit=None)
    assert by_unit.diagnostics["fixed_effects"] == "nr"
    assert isinstance(est.tidy(), pd.DataFrame)


@pytest.mark.parametrize("two_way,group_debias", [(False, False), (False, True), (True, False)])
def test_fe_ols_cluster_path_is_the_registry_and_equals_linearmodels(wage, panel_ols, two_way,
                                                                     group_debias):
    """designs.fe.fe_ols's own cluster variance goes through inference.vcov_from_influence
    (one two-way rule) and keeps linearmodels' conventions exactly."""
    from geocausal.designs.fe import fe_ols

    kw = {"cov_type": "clustered", "cluster_entity": True, "group_debias": group_debias}
    if two_way:
        kw["cluster_time"] = True
    ref = panel_ols.fit(**kw)
    X = wage[["expersq", "union", "married", "hours"]].to_numpy(dtype=float)
    cl = [wage.nr.to_numpy(), wage.year.to_numpy()] if two_way else wage.nr.to_numpy()
    res = fe_ols(wage.lwage.to_numpy(), X, [wage.nr.to_numpy(), wage.year.to_numpy()],
                 clusters=cl, vcov="cluster", group_debias=group_debias)
    np.testing.assert_allclose(np.sqrt(np.diag(res.vcov)), ref.std_errors.to_numpy(),
                               rtol=0, atol=1e-8)


@pytest.mark.parametrize("key", ["debiased", "group_debias", "allow_duplicates"])
def test_fe_flags_are_validated(wage, key):
    from geocausal.errors import OptionError

    with pytest.raises(OptionError, match=f"{key} must be True or False"):
        gc.fe(FORMULA, wage, **{key: "yes"})

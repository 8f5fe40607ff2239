"""``gc.fe``: unit and time fixed-effects panel regression with cluster-robust SEs.

``gc.fe("y ~ d + x | unit + time", data, vcov={"cluster": "unit"})`` absorbs the effects
after ``|`` by exact demeaning (:mod:`geocausal.designs.fe`) and returns an Estimate of all
right-hand coefficients. Standard errors follow linearmodels' ``PanelOLS`` clustered
conventions (``debiased=True``: ``n / (n - k - d)``, ``d`` absorbed levels; no ``G/(G-1)``
unless ``group_debias=True``). Tests use t(G - 1) with clusters (two-way: the smaller count),
as fixest and statsmodels do, and t(n - k - d) otherwise. ``.with_vcov(spec)`` keeps these
conventions (it equals a refit with ``vcov=spec``; ``"iid"`` included).

Guards: a duplicated (unit, time) row is a :class:`~geocausal.errors.DataError`; a treatment
that varies within no unit (group of the first fixed effect) is a
:class:`~geocausal.errors.DesignError`, within fewer than
:data:`~geocausal.designs.panel_transforms.MIN_SWITCHERS` a
:class:`~geocausal.errors.FewSwitchersWarning` with the count.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> df = pd.DataFrame({"unit": np.repeat(np.arange(40), 5), "t": np.tile(np.arange(5), 40)})
>>> df["d"] = rng.binomial(1, 0.5, 200); df["y"] = 1.5 * df.d + df.unit * 0.2 + rng.normal(size=200)
>>> est = fe("y ~ d | unit + t", df, vcov={"cluster": "unit"})
>>> bool(abs(est.params["d"] - 1.5) < 0.4)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._correction import apply_correction
from geocausal.designs.common import check_values
from geocausal.designs.fe import estimate_fe
from geocausal.errors import DataError, FormulaError, OptionError
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from
from geocausal.results.estimate import Estimate, make_provenance


def fe(
    formula: str,
    data: pd.DataFrame,
    *,
    vcov: Any = "hetero",
    unit: str | None = None,
    time: str | None = None,
    group_debias: bool = False,
    debiased: bool = True,
    seed: int = 0,
    outcome_correction=None,
    allow_duplicates: bool = False,
) -> Estimate:
    """Two-way (or multi-way) fixed-effects regression.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + x2 | unit + time"``; effects after ``|``. Without ``|``, ``unit=`` and
        ``time=`` name the effects.
    data
        Long panel, one row per unit and period.
    vcov
        ``"iid"``, ``"hetero"``, ``{"cluster": "unit"}`` or two cluster columns.
    unit, time
        Effect columns when the formula has no ``|`` part.
    group_debias, debiased
        Small-sample scalings, as in linearmodels ``PanelOLS.fit``.
    seed
        Recorded in the provenance (the estimator is deterministic).
    outcome_correction
        A fitted corrector applied to the outcome before estimation.
    allow_duplicates
        Accept several rows per (unit, time) (the first two effects, or ``unit=`` and
        ``time=``), e.g. repeated cross-sections; by default they are a DataError.

    Returns
    -------
    Estimate
        ``design="fe"``, ``estimand="coefficients"``; diagnostics hold the number of absorbed
        effect levels, residual degrees of freedom and the within R^2.
    """
    pf = parse_formula(formula, data)
    effects = list(pf.fixed_effects) or [c for c in (unit, time) if c]
    if not effects:
        raise FormulaError(f"formula '{formula}' has no fixed effects: add '| unit + time' "
                           "or pass unit= and time=")
    missing = [c for c in effects if c not in data.columns]
    if missing:
        raise FormulaError(f"fixed-effect columns {missing} are not in the data")
    terms = list(pf.rhs)
    cols = pf.columns() | set(effects)
    nan_rows = data[sorted(cols)].isna().any(axis=1)
    if nan_rows.any():
        raise DataError(f"{int(nan_rows.sum())} rows have missing values in "
                        f"{sorted(c for c in cols if data[c].isna().any())}; drop them first")
    from formulaic import model_matrix

    for key, flag in (("allow_duplicates", allow_duplicates), ("debiased", debiased),
                      ("group_debias", group_debias)):
        if not isinstance(flag, bool):
            raise OptionError(f"fe: {key} must be True or False, got {flag!r}")
    keys = [unit, time] if unit and time else effects
    if len(keys) >= 2 and not allow_duplicates:
        dup = data.duplicated(keys)
        if dup.any():
            first = data.loc[dup, keys].iloc[0].tolist()
            raise DataError(f"{int(dup.sum())} rows duplicate a ({', '.join(keys)}) pair, e.g. "
                            f"{first}; gc.fe expects one row per unit and period: drop or "
                            "aggregate them (or pass allow_duplicates=True for repeated "
                            "cross-sections)")
    mm = model_matrix("0 + " + " + ".join(terms), data, na_action="raise")
    X = np.asarray(mm, dtype=float)
    names = list(mm.columns)
    for j, name in enumerate(names):
        check_values(X[:, j], str(name), data.index)
    y = apply_correction(outcome_correction, pf.outcome_vector(data))
    n = len(data)
    group = unit if unit and unit in data.columns else effects[0]
    cluster_data = cluster_data_from(data)
    fit = estimate_fe(y, X, [data[c].to_numpy() for c in effects], [str(c) for c in names],
                      vcov=vcov, cluster_data=cluster_data, debiased=debiased,
                      group_debias=group_debias, group=(group, data[group].to_numpy()))
    res, var = fit.result, fit.variance
    req = var.request
    diags = {"n_effect_levels": res.n_effects, "df_resid": res.df_resid,
             "r2_within": res.r2_within, "fixed_effects": ", ".join(effects),
             "n_clusters": req.n_clusters if req is not None else None}
    return Estimate(
        params=pd.Series(res.params, index=names),
        vcov=pd.DataFrame(var.matrix, index=names, columns=names),
        vcov_type=var.label,
        dof=var.dof,
        variance_rule=fit.rule,
        estimand="coefficients",
        design="fe",
        nobs=n,
        influence=res.influence,
        diagnostics=diags,
        provenance=make_provenance(formula, seed, fixed_effects=effects,
                                   small_sample={"debiased": debiased,
                                                 "group_debias": group_debias}),
        cluster_data=cluster_data,
        sensitivity_elements=fit.sensitivity,
    )

"""``gc.fe``: unit and time fixed-effects panel regression with cluster-robust SEs.

``gc.fe("y ~ d + x | unit + time", data, vcov={"cluster": "unit"})`` absorbs the effects
after ``|`` by exact demeaning (:mod:`geocausal.designs.fe`) and returns an Estimate of all
right-hand coefficients. Standard errors follow linearmodels' ``PanelOLS`` clustered
conventions (``debiased=True``: ``n / (n - k - d)``, ``d`` absorbed levels; no ``G/(G-1)``
unless ``group_debias=True``). ``.with_vcov(...)`` recomputes from the influence functions with
the package-wide convention (``G/(G-1)``, no degrees-of-freedom scaling).

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
from geocausal.designs.fe import fe_ols
from geocausal.errors import DataError, FormulaError
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from, parse_vcov
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

    mm = model_matrix("0 + " + " + ".join(terms), data, na_action="raise")
    X = np.asarray(mm, dtype=float)
    names = list(mm.columns)
    y = apply_correction(outcome_correction, pf.outcome_vector(data))
    n = len(data)
    cluster_data = cluster_data_from(data)
    req = parse_vcov(vcov, n, cluster_data)
    kind = "cluster" if req.kind == "cluster" else req.kind
    res = fe_ols(y, X, [data[c].to_numpy() for c in effects],
                 clusters=list(req.clusters) if req.clusters else None, vcov=kind,
                 debiased=debiased, group_debias=group_debias)
    diags = {"n_effect_levels": res.n_effects, "df_resid": res.df_resid,
             "r2_within": res.r2_within, "fixed_effects": ", ".join(effects),
             "n_clusters": int(len(np.unique(req.clusters[0]))) if req.clusters else None}
    return Estimate(
        params=pd.Series(res.params, index=names),
        vcov=pd.DataFrame(res.vcov, index=names, columns=names),
        vcov_type=req.label,
        estimand="coefficients",
        design="fe",
        nobs=n,
        influence=res.influence,
        diagnostics=diags,
        provenance=make_provenance(formula, seed, fixed_effects=effects,
                                   small_sample={"debiased": debiased,
                                                 "group_debias": group_debias}),
        cluster_data=cluster_data,
    )

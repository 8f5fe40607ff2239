"""Regression of predicted CATE on land-cover fractions (OLS, statsmodels), arrays in.

Fractions sum to one, so one class (the reference) is left out: each coefficient is the change
in predicted CATE when a unit's share of that class replaces the same share of the reference.

The ``vcov=`` words of the covariance registry (:mod:`geocausal.inference.variance`) mean, for
this OLS: ``"hetero"`` the HC1 sandwich (OLS's small-sample scaling ``n / (n - k)``, as
``gc.fe``'s ``"hetero"``), ``"iid"`` the classical ``s^2 (X'X)^-1``, ``{"cluster": ...}``
statsmodels' cluster-robust variance (one- or two-way); ``"HC0"`` keeps its literal meaning.
Other packages' names (HC2, HC3, CRV3, HAC) are refused by the registry with a pointer.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> X = pd.DataFrame({"water": rng.random(200)})
>>> tau = 1 + 2 * X.water.to_numpy() + 0.1 * rng.normal(size=200)
>>> fit = landcover_ols(tau, X, "hetero")
>>> round(float(fit.params["water"]), 1), fit.label
(2.0, 'hetero')
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm

from geocausal.errors import DataError
from geocausal.inference.variance import parse_vcov

#: registry kind -> statsmodels cov_type for this OLS
_COV_TYPES = {"hetero": "HC1", "iid": "nonrobust", "hc0": "HC0"}


@dataclass(frozen=True)
class LandcoverFit:
    """Coefficients, covariance, a tidy coefficient table and fit statistics."""

    params: pd.Series
    vcov: pd.DataFrame
    table: pd.DataFrame
    label: str
    nobs: int
    dof: int
    r_squared: float
    n_clusters: int | None = None


def landcover_ols(tau: np.ndarray, X: pd.DataFrame, vcov: Any = "hetero",
                  cluster_data: Mapping[str, Any] | None = None,
                  alpha: float = 0.05) -> LandcoverFit:
    """OLS of ``tau`` on a constant and the columns of ``X`` with a registry ``vcov=``.

    Parameters
    ----------
    tau
        ``(n,)`` predicted CATE.
    X
        ``(n, k)`` regressors (the fractions without the reference class).
    vcov
        ``"hetero"`` (HC1), ``"iid"``, ``"HC0"`` or ``{"cluster": column or array}``.
    cluster_data
        Columns that ``{"cluster": name}`` may name.
    alpha
        Level of the table's intervals.
    """
    tau = np.asarray(tau, dtype=float)
    if not np.all(np.isfinite(tau)):
        raise DataError(f"{int((~np.isfinite(tau)).sum())} CATE predictions are NaN or "
                        "infinite; drop those units first")
    Z = sm.add_constant(X.astype(float), has_constant="add")
    req = parse_vcov(vcov, n=tau.shape[0], cluster_data=cluster_data)
    model = sm.OLS(tau, Z)
    if req.kind == "cluster":
        groups = np.column_stack([pd.factorize(c)[0] for c in req.clusters])
        res = model.fit(cov_type="cluster",
                        cov_kwds={"groups": groups[:, 0] if groups.shape[1] == 1 else groups},
                        use_t=True)
        label, dof = req.label, int(req.dof)
    else:
        key = "hc0" if isinstance(vcov, str) and vcov.lower() == "hc0" else req.kind
        res = model.fit(cov_type=_COV_TYPES[key])
        label, dof = ("HC0" if key == "hc0" else req.kind), int(res.df_resid)
    params = pd.Series(np.asarray(res.params), index=["const", *X.columns])
    vc = pd.DataFrame(np.asarray(res.cov_params()), index=params.index, columns=params.index)
    ci = np.asarray(res.conf_int(alpha))
    table = pd.DataFrame({"term": params.index, "estimate": params.to_numpy(),
                          "std_error": np.asarray(res.bse), "ci_low": ci[:, 0],
                          "ci_high": ci[:, 1], "p_value": np.asarray(res.pvalues)})
    return LandcoverFit(params=params, vcov=vc, table=table, label=label, nobs=int(res.nobs),
                        dof=dof, r_squared=float(res.rsquared), n_clusters=req.n_clusters)

"""Interpreting CATE with land cover: fractions per unit and a regression of CATE on them.

:func:`landcover_fractions` lives in :mod:`geocausal.features.landcover`; :func:`cate_landcover`
resolves its inputs and calls :func:`geocausal.designs.cate_landcover.landcover_ols`.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> chips = rng.random((50, 8, 8, 2)); chips[:25, :4, :, 0] += 2   # a bright class
>>> fr = landcover_fractions(chips, n_classes=2, seed=0)
>>> tau = 1 + 2 * fr.iloc[:, 0].to_numpy() + 0.01 * rng.normal(size=50)
>>> est = cate_landcover(tau, fr)
>>> round(float(est.params.iloc[1]), 1) in (-2.0, 2.0), est.vcov_type
(True, 'hetero')
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geocausal.designs.cate_landcover import landcover_ols
from geocausal.errors import DataError
from geocausal.features.landcover import landcover_fractions
from geocausal.inference.variance import cluster_data_from
from geocausal.results.estimate import Estimate

__all__ = ["cate_landcover", "landcover_fractions"]


def cate_landcover(
    tau: np.ndarray | Estimate,
    fractions: pd.DataFrame,
    *,
    reference: str | None = None,
    vcov: Any = "hetero",
) -> Estimate:
    """Regress predicted CATE on land-cover fractions (OLS, statsmodels).

    Fractions sum to one, so one class (``reference``, default the last) is left out: each
    coefficient is the change in predicted CATE when a unit's share of that class replaces the
    same share of the reference class. Constant columns are dropped.

    Parameters
    ----------
    tau
        Per-unit CATE predictions, or a ``gc.cate`` result (its out-of-fold predictions).
    fractions
        From :func:`landcover_fractions` (one row per unit, in the order of ``tau``).
    reference
        Column left out.
    vcov
        The covariance registry's words: ``"hetero"`` (default; for this OLS statsmodels'
        HC1, the small-sample-scaled sandwich, as ``gc.fe``'s ``"hetero"``; formerly the
        default was spelled ``"HC1"``), ``"iid"`` (classical OLS), ``"HC0"`` or
        ``{"cluster": column of fractions or array}``. HC2/HC3 and other packages' names are
        refused with a pointer.

    Returns
    -------
    Estimate
        ``design="cate-landcover"``; ``tables["coefficients"]`` (``term``, ``estimate``,
        ``std_error``, ``ci_low``, ``ci_high``, ``p_value``), ``diagnostics["r_squared"]`` and
        ``["reference"]``, ``dof`` the residual (or ``G - 1`` cluster) degrees of freedom.
    """
    if isinstance(tau, Estimate):
        cate = tau.diagnostics.get("cate")
        if cate is None:
            raise DataError("this estimate has no CATE predictions; use a gc.cate result")
        tau = cate
    if not isinstance(fractions, pd.DataFrame):
        raise DataError(f"fractions must be a DataFrame (landcover_fractions), got "
                        f"{type(fractions).__name__}")
    tau = np.asarray(tau, dtype=float)
    if tau.shape[0] != len(fractions):
        raise DataError(f"{tau.shape[0]} CATE predictions but {len(fractions)} rows of fractions")
    ref = reference or fractions.columns[-1]
    if ref not in fractions.columns:
        raise DataError(f"reference '{ref}' is not a fraction column: {list(fractions.columns)}")
    X = fractions.drop(columns=[ref]).astype(float)
    X = X.loc[:, X.std() > 0]
    fit = landcover_ols(tau, X, vcov, cluster_data=cluster_data_from(fractions))
    return Estimate(params=fit.params, vcov=fit.vcov, vcov_type=fit.label,
                    estimand=f"CATE ~ land cover (ref {ref})", design="cate-landcover",
                    nobs=fit.nobs, dof=fit.dof, n_clusters=fit.n_clusters,
                    tables={"coefficients": fit.table},
                    diagnostics={"r_squared": fit.r_squared, "reference": ref})

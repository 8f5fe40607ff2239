"""``gc.ppi``: prediction-powered inference (PPI, PPI++) for a mean, OLS coefficients or an
ATE when some units carry labels and all carry predictions.

The estimators are in :mod:`geocausal.designs.ppi`; this face resolves the formula, the labels
and the propensity role.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y = rng.normal(size=1000); yh = y + rng.normal(0, .5, 1000)
>>> df = pd.DataFrame({"yh": yh, "y": np.where(np.arange(1000) < 100, y, np.nan)})
>>> bool(abs(ppi("yh ~ 1", df, truth="y", estimand="MEAN").params["mean"]) < 0.2)
True
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
from formulaic import model_matrix

from geocausal.api._correction import apply_correction
from geocausal.api._propensity import align_rows, propensity_role
from geocausal.designs.common import check_values
from geocausal.designs.debias import check_vector
from geocausal.designs.ppi import PPI_ESTIMANDS, ppi_estimate
from geocausal.errors import DataError, DesignError
from geocausal.folds import Folds
from geocausal.formula import parse_formula
from geocausal.results.estimate import Estimate, make_provenance
from geocausal.vocabulary import DEFAULTS, choice, resolve_learners

__all__ = ["ppi"]


def ppi(
    formula: str,
    data: pd.DataFrame,
    *,
    truth: str,
    estimand: str = "ATE",
    lam: float | None = None,
    propensity: Any = None,
    vcov: Any = "hetero",
    learners: dict | None = None,
    folds: int | Folds | np.ndarray = DEFAULTS.folds,
    seed: int = DEFAULTS.seed,
    images: Any = None,
    outcome_correction: Any = None,
    missing_images: str = "drop",
) -> Estimate:
    """Prediction-powered inference: a mean, OLS coefficients or an ATE from predictions plus a
    few labels.

    Parameters
    ----------
    formula
        ``"yhat ~ 1"`` (mean), ``"yhat ~ x1 + x2"`` (OLS, intercept added) or ``"yhat ~ d + x"``
        (ATE of the binary ``d``; the controls feed the propensity model).
    data
        All units; ``truth`` is missing (NaN) where a unit has no label.
    truth
        Column of labels.
    estimand
        ``"mean"``, ``"ols"`` or ``"ATE"`` (case-insensitive).
    lam
        ``None`` for PPI++ (power-tuned, clipped to [0, 1]), 1 for PPI, 0 for labels only.
    propensity
        Known propensities (a column or array) for the ATE; otherwise cross-fitted.
    vcov
        Only ``"hetero"`` (PPI's own variance).
    outcome_correction
        Optional corrector applied to the predictions first.
    learners, folds, seed, images, missing_images
        The propensity model of the ATE, as in :func:`debias` (slot ``propensity``).

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=2000); yh = y + rng.normal(0, .5, 2000)
    >>> lab = np.where(np.arange(2000) < 200, y, np.nan)
    >>> est = ppi("yh ~ 1", pd.DataFrame({"yh": yh, "y": lab}), truth="y", estimand="mean")
    >>> est.estimand
    'mean'
    """
    estimand = choice("estimand", estimand, PPI_ESTIMANDS, design="ppi")
    if vcov != "hetero":
        raise DesignError(f"vcov={vcov!r}: PPI intervals use their own two-sample variance; "
                          "use 'hetero'")
    resolve_learners("ppi", learners)
    if truth not in data.columns:
        raise DataError(f"truth column '{truth}' is not in the data")
    if estimand == "ATE":  # images feed only the propensity model of the ATE
        data, images, propensity, folds = align_rows(images, data, missing_images, propensity,
                                                      folds)
    parsed = parse_formula(formula, data, treatment=estimand == "ATE")
    yhat = apply_correction(outcome_correction, check_vector(
        parsed.outcome_vector(data), f"outcome '{parsed.outcome}'"))
    lab_all = check_values(pd.to_numeric(data[truth], errors="coerce").to_numpy(dtype=float),
                           truth, data.index)
    labelled = np.isfinite(lab_all)
    if labelled.sum() < 2 or (~labelled).sum() < 2:
        raise DataError(f"truth column '{truth}' has {int(labelled.sum())} labelled and "
                        f"{int((~labelled).sum())} unlabelled rows; PPI needs both")
    diag: dict[str, Any] = {"n_labelled": int(labelled.sum()),
                            "n_unlabelled": int((~labelled).sum())}
    kw: dict[str, Any] = {}
    names = ["mean"]
    if estimand == "ols":
        mm = model_matrix("1 + " + (" + ".join(parsed.rhs) or "1"), data, na_action="raise")
        kw["x"] = np.asarray(mm, dtype=float)
        for j, col in enumerate(mm.columns):
            check_values(kw["x"][:, j], str(col), data.index)
        names = kw["names"] = list(map(str, mm.columns))
    elif estimand == "ATE":
        kw["treat"] = parsed.treatment_vector(data)
        kw["propensity"], pdiag = propensity_role(parsed, data, kw["treat"], propensity,
                                                  "ppi", learners, folds, seed, images)
        diag.update(pdiag)
        names = [parsed.treatment_term]
    res = ppi_estimate(estimand, lab_all[labelled], yhat, labelled, lam=lam, **kw)
    diag["lam"] = res.lam
    diag["method"] = "ppi" if lam == 1 else "classical" if lam == 0 else (
        "ppi++" if lam is None else f"ppi(lam={lam})")
    return Estimate(params=pd.Series(res.estimate, index=names),
                    vcov=pd.DataFrame(res.vcov, index=names, columns=names), vcov_type="ppi",
                    estimand=estimand, design="ppi", nobs=int(yhat.size),
                    influence=res.influence, diagnostics=diag,
                    provenance=make_provenance(formula, seed, lam=lam, estimand=estimand))

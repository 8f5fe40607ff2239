"""Inverse-probability weighting and augmented IPW (doubly robust) for the ATE and the ATT.

Pure array functions: given the outcome ``y``, a binary treatment ``d`` and nuisance
predictions (propensity ``e``, outcome regressions ``mu0``, ``mu1``), each returns the point
estimate and its influence function ``psi`` with ``theta_hat - theta ~ mean(psi)``, so that
``psi' psi / n^2`` is the heteroskedasticity-robust variance.

AIPW scores are those of DoubleML's IRM model (scores ``"ATE"`` and ``"ATTE"``), so with the
same nuisance predictions the estimates and standard errors coincide:

* ATE: ``psi_b = mu1 - mu0 + d (y - mu1) / e - (1 - d) (y - mu0) / (1 - e)``, ``theta = mean(psi_b)``.
* ATT: ``theta = mean(d (y - mu0) - e (1 - d) (y - mu0) / (1 - e)) / p`` with ``p = mean(d)``;
  the influence function ``(d (y - mu0) - e (1 - d) (y - mu0) / (1 - e) - d theta) / p``
  accounts for the estimation of ``p``.

IPW (Horvitz-Thompson and Hajek) influence functions treat the propensities as given: this is
the robust sandwich variance of the weighted regression of ``y`` on ``d`` (as in Hernan and
Robins, ch. 12), conservative for the ATE when the propensity is estimated by maximum
likelihood.

Cross-fitting: :func:`crossfit_nuisances` fits the propensity on every training fold and the
outcome regressions on each arm of every training fold, as DoubleML does.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 2000; x = rng.normal(size=n); e = 1 / (1 + np.exp(-x)); d = rng.binomial(1, e)
>>> y = 2 * d + x + rng.normal(size=n)
>>> theta, psi = aipw_ate(y, d, e, x, 2 + x)
>>> bool(abs(theta - 2) < 0.15)
True
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
from sklearn.base import clone

from geocausal.designs.common import check_estimate
from geocausal.errors import DataError, DiagnosticWarning
from geocausal.nuisance.crossfit import check_fold_arms, crossfit_predict


def aipw_ate(y, d, e, mu0, mu1) -> tuple[float, np.ndarray]:
    """Doubly robust ATE and its influence function."""
    y, d, e, mu0, mu1 = (np.asarray(a, dtype=float) for a in (y, d, e, mu0, mu1))
    score = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    theta = float(score.mean())
    return theta, score - theta


def aipw_att(y, d, e, mu0) -> tuple[float, np.ndarray]:
    """Doubly robust ATT and its influence function (DoubleML's ATTE score)."""
    y, d, e, mu0 = (np.asarray(a, dtype=float) for a in (y, d, e, mu0))
    p = d.mean()
    b = d * (y - mu0) - e * (1 - d) * (y - mu0) / (1 - e)
    theta = float(b.mean() / p)
    return theta, (b - d * theta) / p


def ipw_ate(y, d, e, normalized: bool = True) -> tuple[float, np.ndarray]:
    """IPW ATE: Hajek (``normalized=True``) or Horvitz-Thompson, with its influence function."""
    y, d, e = (np.asarray(a, dtype=float) for a in (y, d, e))
    w1, w0 = d / e, (1 - d) / (1 - e)
    if not normalized:
        score = w1 * y - w0 * y
        theta = float(score.mean())
        return theta, score - theta
    m1 = float((w1 * y).sum() / w1.sum())
    m0 = float((w0 * y).sum() / w0.sum())
    psi = w1 * (y - m1) / w1.mean() - w0 * (y - m0) / w0.mean()
    return m1 - m0, psi


def ipw_att(y, d, e, normalized: bool = True) -> tuple[float, np.ndarray]:
    """IPW ATT: controls weighted by ``e / (1 - e)``; Hajek or Horvitz-Thompson."""
    y, d, e = (np.asarray(a, dtype=float) for a in (y, d, e))
    p = d.mean()
    w0 = (1 - d) * e / (1 - e)
    if not normalized:
        b = d * y - w0 * y
        theta = float(b.mean() / p)
        return theta, (b - d * theta) / p
    m1 = float((d * y).sum() / d.sum())
    m0 = float((w0 * y).sum() / w0.sum())
    psi = d * (y - m1) / p - w0 * (y - m0) / w0.mean()
    return m1 - m0, psi


ESTIMATORS = {
    ("aipw", "ATE"): lambda y, d, n: aipw_ate(y, d, n.e, n.mu0, n.mu1),
    ("aipw", "ATT"): lambda y, d, n: aipw_att(y, d, n.e, n.mu0),
    ("hajek", "ATE"): lambda y, d, n: ipw_ate(y, d, n.e, True),
    ("hajek", "ATT"): lambda y, d, n: ipw_att(y, d, n.e, True),
    ("ht", "ATE"): lambda y, d, n: ipw_ate(y, d, n.e, False),
    ("ht", "ATT"): lambda y, d, n: ipw_att(y, d, n.e, False),
}


@dataclass(frozen=True)
class Nuisances:
    """Out-of-fold nuisance predictions: propensity ``e`` and outcome regressions."""

    e: np.ndarray
    mu0: np.ndarray | None = None
    mu1: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> Nuisances:
        """The nuisances of the kept units."""
        return Nuisances(self.e[keep], None if self.mu0 is None else self.mu0[keep],
                         None if self.mu1 is None else self.mu1[keep])


def estimate(y, d, nuisances: Nuisances, method: str = "aipw",
             estimand: str = "ATE") -> tuple[float, np.ndarray]:
    """Dispatch to the estimator ``method`` in {"aipw", "hajek", "ht"} for ``estimand``.

    A non-finite estimate or variance is a :class:`DesignError`, never a returned number.

    Examples
    --------
    >>> import numpy as np
    >>> n = Nuisances(np.full(4, 0.5))
    >>> estimate(np.array([1., 2, 3, 4]), np.array([0, 1, 0, 1]), n, "hajek")[0]
    1.0
    """
    key = (method, estimand)
    if key not in ESTIMATORS:
        raise DataError(f"unknown method/estimand {key}; methods: aipw, hajek, ht; "
                        "estimands: ATE, ATT")
    if method == "aipw" and (nuisances.mu0 is None or
                             (estimand == "ATE" and nuisances.mu1 is None)):
        raise DataError("AIPW needs outcome predictions mu0 (and mu1 for the ATE)")
    theta, psi = ESTIMATORS[key](np.asarray(y, float), np.asarray(d, float), nuisances)
    check_estimate(theta, psi, f"the {method.upper()} {estimand}")
    return theta, psi


def uses_images(learner) -> bool:
    """Whether a learner wants the chips (an image learner) rather than a feature matrix."""
    return bool(getattr(learner, "uses_images", False)) or type(learner).__name__ == "ImageLearner"


def prepare_learner(learner, X: np.ndarray, images: np.ndarray | None,
                    X_tab: np.ndarray | None = None):
    """The learner and the array it is fitted on.

    Feature learners get ``X``. Image learners get the chips. When the formula has tabular
    controls and the image learner takes an ``image_shape`` (``ImageLearner`` does), it gets
    the flattened chips followed by the tabular columns ``X_tab`` (the 2-D form that row slicing
    in cross-fitting keeps aligned), with ``image_shape`` set on a clone, so the controls adjust
    the image nuisance models too. An image learner that cannot take them is warned about.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from geocausal.nuisance.image_learner import ImageLearner
    >>> chips, tab = np.zeros((5, 4, 4, 2)), np.ones((5, 1))
    >>> prepare_learner(LogisticRegression(), tab, chips, tab)[1].shape
    (5, 1)
    >>> lrn, X = prepare_learner(ImageLearner(), tab, chips, tab)
    >>> lrn.image_shape, X.shape
    ((4, 4, 2), (5, 33))
    """
    if not uses_images(learner):
        if X.shape[1] == 0:
            raise DataError("no features: the formula has no controls and images= is None")
        return learner, X
    if images is None:
        raise DataError("an image learner needs images= as a chips array (N, H, W, C) or "
                        "(N, T, H, W, C)")
    if X_tab is None or not X_tab.shape[1]:
        return learner, images
    params = learner.get_params() if hasattr(learner, "get_params") else {}
    if "image_shape" not in params:
        warnings.warn(f"{type(learner).__name__} takes no tabular covariates (no image_shape "
                      f"parameter): it sees the images only, not the formula's "
                      f"{X_tab.shape[1]} control column(s)", DiagnosticWarning, stacklevel=3)
        return learner, images
    if params["image_shape"] is None:
        learner = clone(learner).set_params(image_shape=tuple(images.shape[1:]))
    flat = np.asarray(images, np.float32).reshape(images.shape[0], -1)
    return learner, np.column_stack([flat, np.asarray(X_tab, np.float32)])


def crossfit_nuisances(
    X: np.ndarray,
    y: np.ndarray,
    d: np.ndarray,
    fold_ids: np.ndarray,
    propensity_learner,
    outcome_learner=None,
    *,
    images: np.ndarray | None = None,
    X_tab: np.ndarray | None = None,
    need_mu1: bool = True,
) -> Nuisances:
    """Cross-fitted propensity and arm-specific outcome predictions.

    Parameters
    ----------
    X
        ``(n, p)`` features (tabular and/or image features).
    y, d
        Outcome and binary treatment.
    fold_ids
        Integer fold of each unit.
    propensity_learner, outcome_learner
        scikit-learn compatible classifier / regressor (cloned per fold). A learner with a
        true ``uses_images`` attribute or an ``ImageLearner`` is fed the chips (see
        :func:`prepare_learner`).
    images
        Raw chips aligned with the rows, for image learners.
    X_tab
        Tabular controls, appended to the flattened chips for image learners.
    need_mu1
        Fit the treated-arm outcome regression (not needed for the ATT).

    Raises
    ------
    DesignError
        A fold whose training part has fewer than 2 treated or 2 control units
        (:func:`geocausal.nuisance.crossfit.check_fold_arms`).
    """
    d = np.asarray(d, dtype=float)
    check_fold_arms(d, fold_ids, min_train=2)
    lp, Xp = prepare_learner(propensity_learner, X, images, X_tab)
    e = crossfit_predict(lp, Xp, d.astype(int), fold_ids, method="predict_proba")
    if outcome_learner is None:
        return Nuisances(e)
    lo, Xo = prepare_learner(outcome_learner, X, images, X_tab)
    mu0 = crossfit_predict(lo, Xo, y, fold_ids, train_mask=d == 0)
    mu1 = crossfit_predict(lo, Xo, y, fold_ids, train_mask=d == 1) if need_mu1 else None
    return Nuisances(e, mu0, mu1)

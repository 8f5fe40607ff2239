"""How a fitted outcome learner's predictions move with the outcomes it was trained on.

Ridge regression, least squares and least squares after a lasso selection are *linear
smoothers* once their tuning (penalty, selected columns) is fixed: the predictions at new rows
are ``S @ y_train`` for a matrix ``S`` that depends on the features only. An estimator that
averages ``g * mu_hat`` over the held-out rows then moves with each training outcome through
``S.T @ g``, the *adjoint* computed here without forming ``S``. This is what lets an AIPW
standard error count the outcome fits' own sampling error (see
:func:`geocausal.nuisance.stacking.outcome_fit_influence`).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["smoother_adjoint"]


def _ridge_adjoint(Xtr: np.ndarray, Xte: np.ndarray, g: np.ndarray, alpha: float,
                   intercept: bool) -> np.ndarray:
    """``S.T @ g`` of a ridge fit ``min ||y - c - X b||^2 + alpha ||b||^2`` (``c``: the
    intercept, unpenalised, when ``intercept``).
    """
    n, p = Xtr.shape
    if intercept:
        m = Xtr.mean(0)
        Zc, Zt = Xtr - m, Xte - m
    else:
        Zc, Zt = Xtr, Xte
    v = Zt.T @ g
    if p == 0:
        b = np.zeros(0)
    elif alpha <= 0:  # least squares: the minimum-norm solution, as lstsq
        b = np.linalg.pinv(Zc.T @ Zc) @ v
    elif p > n:  # (Zc'Zc + a I)^-1 v through the n x n system (Woodbury)
        u = np.linalg.solve(Zc @ Zc.T + alpha * np.eye(n), Zc @ v)
        b = (v - Zc.T @ u) / alpha
    else:
        b = np.linalg.solve(Zc.T @ Zc + alpha * np.eye(p), v)
    out = Zc @ b
    if intercept:
        out = out + g.sum() / n
    return out


def smoother_adjoint(fit: Any, X_train: np.ndarray, X_test: np.ndarray, g: np.ndarray
                     ) -> np.ndarray | None:
    """``S.T @ g`` for a fitted linear-smoother regressor, its tuning held fixed.

    ``S`` maps the training outcomes to the fit's predictions at ``X_test``, so
    ``g @ fit.predict(X_test)`` changes by ``smoother_adjoint(...) @ delta`` when the training
    outcomes change by ``delta`` (the penalty, or the lasso's selection, unchanged).

    Parameters
    ----------
    fit
        A fitted regressor: :class:`~geocausal.nuisance.sparse.PostLassoRegressor`,
        :class:`~geocausal.nuisance.sparse.GCVRidge`, scikit-learn's ``Ridge``, ``RidgeCV``
        or ``LinearRegression`` (unweighted, with or without an intercept), or a ``Pipeline``
        of ``StandardScaler`` steps before one of these.
    X_train, X_test
        The rows it was fitted on and the rows it predicts, as passed to ``fit``/``predict``.
    g
        ``(len(X_test),)`` weights of the predictions.

    Returns
    -------
    numpy.ndarray or None
        ``(len(X_train),)``; None for a learner that is not one of these (gradient boosting,
        forests, image networks: not linear in the outcomes).

    Examples
    --------
    >>> from sklearn.linear_model import Ridge
    >>> rng = np.random.default_rng(0)
    >>> X, Xt = rng.normal(size=(30, 3)), rng.normal(size=(5, 3))
    >>> y, delta, g = rng.normal(size=30), rng.normal(size=30), rng.normal(size=5)
    >>> fit = Ridge(alpha=2.0).fit(X, y)
    >>> moved = g @ (Ridge(alpha=2.0).fit(X, y + delta).predict(Xt) - fit.predict(Xt))
    >>> bool(np.isclose(moved, smoother_adjoint(fit, X, Xt, g) @ delta))
    True
    """
    from sklearn.linear_model import LinearRegression, Ridge, RidgeCV
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from geocausal.nuisance.sparse import GCVRidge, PostLassoRegressor, _standardise

    Xtr, Xte = np.asarray(X_train, float), np.asarray(X_test, float)
    g = np.asarray(g, float)
    if isinstance(fit, Pipeline):
        for _, step in fit.steps[:-1]:
            if not isinstance(step, StandardScaler):
                return None
            Xtr, Xte = step.transform(Xtr), step.transform(Xte)
        return smoother_adjoint(fit.steps[-1][1], Xtr, Xte, g)
    if isinstance(fit, PostLassoRegressor):
        Xs, mu, sd = _standardise(Xtr)
        sel = np.asarray(fit.selected_, int)
        n = len(Xtr)
        return _ridge_adjoint(Xs[:, sel], ((Xte - mu) / sd)[:, sel], g, fit.alpha * n, True)
    if isinstance(fit, GCVRidge):
        fit = fit.ridge_
    if isinstance(fit, RidgeCV | Ridge | LinearRegression):
        if getattr(fit, "positive", False) or np.ndim(fit.coef_) != 1:
            return None
        alpha = (0.0 if isinstance(fit, LinearRegression) else
                 fit.alpha_ if isinstance(fit, RidgeCV) else fit.alpha)
        if np.ndim(alpha):  # a penalty per target
            return None
        return _ridge_adjoint(Xtr, Xte, g, float(alpha), bool(fit.fit_intercept))
    return None

"""Sparse nuisance learners for wide image feature matrices: select, then refit.

Engineered image statistics give hundreds of correlated columns for a few hundred units per
arm. A ridge regression on all of them predicts well but shrinks every coefficient, and the
part of a confounder it shrinks away is left in the effect estimate. A sparse *post-selection*
fit (Belloni and Chernozhukov 2013, "Least squares after model selection in high-dimensional
sparse models") selects a few columns by the lasso with the penalty chosen by an information
criterion (BIC along the LARS path: fast, and no inner cross-validation), then refits them
without the lasso's shrinkage. Where a few columns carry the confounders (a share of pixels
above a threshold, a centre-minus-ring contrast) this removes the shrinkage bias; where they do
not, the stack (:func:`geocausal.nuisance.stacking.stack_nuisances`) weights the ridge fits.

- :class:`PostLassoRegressor`: lasso selection (BIC) on standardised features, then least
  squares with a tiny ridge on the selected columns (an outcome learner of the default image
  stack, :func:`geocausal.nuisance.candidates.stack_learners`).
- :class:`GCVRidge`: scikit-learn's ``RidgeCV`` (efficient leave-one-out choice of the
  penalty) with the decomposition that suits the matrix's shape.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(200, 50)); y = 2 * X[:, 0] - X[:, 3] + rng.normal(size=200)
>>> m = PostLassoRegressor().fit(X, y)
>>> sorted(m.selected_[:2].tolist()), bool(abs(m.coef_[0] - 2) < 0.2)
([0, 3], True)
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin

from geocausal.errors import DataError

__all__ = ["GCVRidge", "PostLassoRegressor", "bic_select", "distinct_columns", "gcv_mode"]


def _standardise(X: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    mu = X.mean(0)
    sd = X.std(0)
    sd = np.where(sd > 1e-12, sd, 1.0)
    return (X - mu) / sd, mu, sd


def gcv_mode(shape: tuple[int, ...]) -> str:
    """The ``gcv_mode`` of scikit-learn's ``RidgeCV`` that is fastest for a dense ``(n, p)``
    matrix: the SVD of the matrix when it has more rows than columns, its Gram matrix
    otherwise. Both give the same leave-one-out errors; ``"auto"`` would eigendecompose the
    ``p x p`` covariance for tall matrices, which costs several times the SVD when ``p`` is
    close to ``n`` (a wide image feature matrix fitted on both arms at once).

    Examples
    --------
    >>> gcv_mode((900, 800)), gcv_mode((400, 800))
    ('svd', 'auto')
    """
    return "svd" if shape[0] > shape[1] else "auto"


class GCVRidge(RegressorMixin, BaseEstimator):
    """Ridge regression with the penalty chosen by efficient leave-one-out error: scikit-learn's
    ``RidgeCV``, with the decomposition chosen from the data's shape (:func:`gcv_mode`) when
    it is fitted. The penalty and coefficients are ``RidgeCV``'s.

    Parameters
    ----------
    alphas
        Candidate penalties.

    Examples
    --------
    >>> from sklearn.linear_model import RidgeCV
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(60, 40)); y = X[:, 0] + rng.normal(size=60)
    >>> a = GCVRidge(alphas=np.logspace(-2, 3, 6)).fit(X, y)
    >>> b = RidgeCV(alphas=np.logspace(-2, 3, 6)).fit(X, y)
    >>> bool(a.alpha_ == b.alpha_ and np.allclose(a.predict(X), b.predict(X)))
    True
    """

    def __init__(self, alphas: Any = (0.1, 1.0, 10.0)) -> None:
        self.alphas = alphas

    def fit(self, X: Any, y: Any) -> GCVRidge:
        """Fit ``RidgeCV`` with the decomposition that suits ``X``'s shape."""
        from sklearn.linear_model import RidgeCV

        X = np.asarray(X, float)
        self.ridge_ = RidgeCV(alphas=self.alphas, gcv_mode=gcv_mode(X.shape)).fit(X, y)
        self.alpha_ = self.ridge_.alpha_
        self.best_score_ = self.ridge_.best_score_
        self.coef_ = self.ridge_.coef_
        self.intercept_ = self.ridge_.intercept_
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of the fitted ridge regression."""
        return self.ridge_.predict(np.asarray(X, float))


def distinct_columns(X: np.ndarray) -> np.ndarray:
    """Positions of the columns of ``X`` that vary and that repeat no earlier column.

    Constant columns carry nothing a learner can use and a repeated column only doubles the
    penalty weight of its information (and breaks scikit-learn's LARS solver), so a feature
    matrix can be cut to these columns before fitting.

    Parameters
    ----------
    X
        ``(n, p)`` finite matrix.

    Returns
    -------
    numpy.ndarray
        Increasing column positions: each varying column's first copy.

    Examples
    --------
    >>> X = np.array([[1.0, 5.0, 1.0, 2.0], [2.0, 5.0, 2.0, 0.0], [3.0, 5.0, 3.0, 1.0]])
    >>> distinct_columns(X).tolist()
    [0, 3]
    """
    X = np.asarray(X)
    live = np.flatnonzero(np.ptp(X, axis=0) > 0) if X.shape[0] else np.zeros(0, int)
    if not len(live):
        return live
    return live[np.sort(np.unique(X[:, live], axis=1, return_index=True)[1])]


def bic_select(Xs: np.ndarray, y: np.ndarray, max_features: int) -> np.ndarray:
    """Columns of standardised ``Xs`` selected by the lasso at the BIC-optimal point of the
    LARS path, at most ``max_features`` of them (ordered by entry into the path).

    The noise variance of the criterion is estimated by a ridge regression's leave-one-out
    error (valid when there are more columns than rows, where least squares is not). Constant
    columns (a feature without variation among these rows, as happens to a threshold share
    within one arm of one fold) and repeats of an earlier column are left out of the path
    (scikit-learn's LARS solver fails on them); a repeated column can only be selected as its
    first copy.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> X = rng.normal(size=(100, 20)); y = X[:, 2] + 0.1 * rng.normal(size=100)
    >>> bic_select(X, y, 5).tolist()
    [2]
    """
    from sklearn.linear_model import LassoLarsIC

    yc = y - y.mean()
    # LARS fails on constant columns (e.g. within one arm) and on repeated ones: the path runs
    # on the distinct varying ones (each first copy), and positions map back by `live`
    live = distinct_columns(Xs)
    if np.var(yc) < 1e-24 or not len(live):
        return np.zeros(0, int)
    Z = Xs if len(live) == Xs.shape[1] else Xs[:, live]
    ridge = GCVRidge(alphas=np.logspace(-2, 5, 15)).fit(Z, yc)
    sigma2 = max(float(-ridge.best_score_), 1e-12 * float(np.var(yc)))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        lars = LassoLarsIC(criterion="bic", noise_variance=sigma2, fit_intercept=False,
                           max_iter=max(2 * max_features, 10), precompute=True).fit(Z, yc)
    coef = np.asarray(lars.coef_, float)
    sel = np.flatnonzero(coef != 0)
    if len(sel) > max_features:  # keep the largest standardised coefficients
        sel = np.sort(sel[np.argsort(-np.abs(coef[sel]))[:max_features]])
    return live[sel]


class PostLassoRegressor(RegressorMixin, BaseEstimator):
    """Least squares after lasso selection (BIC) on standardised features.

    Parameters
    ----------
    max_share
        At most ``max_share * n`` columns are kept (the refit stays well-posed).
    alpha
        Ridge penalty of the refit on the standardised selected columns (numerical safety;
        tiny by default).

    Examples
    --------
    >>> rng = np.random.default_rng(2)
    >>> X = rng.normal(size=(150, 30)); y = 1 + X[:, 5] + 0.1 * rng.normal(size=150)
    >>> PostLassoRegressor().fit(X, y).selected_.tolist()
    [5]
    """

    def __init__(self, max_share: float = 0.1, alpha: float = 1e-6) -> None:
        self.max_share = max_share
        self.alpha = alpha

    def fit(self, X: Any, y: Any) -> PostLassoRegressor:
        """Select columns by the lasso (BIC) and refit them by least squares."""
        X = np.asarray(X, float)
        y = np.asarray(y, float)
        if X.ndim != 2 or len(y) != len(X):
            raise DataError(f"X {X.shape} and y {y.shape} do not match")
        if not 0 < self.max_share <= 1:
            raise DataError(f"max_share={self.max_share} must be in (0, 1]")
        n = len(y)
        Xs, mu, sd = _standardise(X)
        sel = bic_select(Xs, y, max(1, int(self.max_share * n)))
        coef = np.zeros(X.shape[1])
        if len(sel):
            Z = Xs[:, sel]
            b = np.linalg.solve(Z.T @ Z + self.alpha * n * np.eye(len(sel)),
                                Z.T @ (y - y.mean()))
            coef[sel] = b / sd[sel]
        self.selected_ = sel
        self.coef_ = coef
        self.intercept_ = float(y.mean() - mu @ coef)
        self.n_features_in_ = X.shape[1]
        return self

    def predict(self, X: Any) -> np.ndarray:
        """Predictions of the refitted linear model."""
        return np.asarray(X, float) @ self.coef_ + self.intercept_

"""Cross-fitting: fold assignment (random, group, spatial block, time block) and
out-of-fold predictions for any scikit-learn compatible learner.

Fold ids are plain integer arrays (``fold_ids[i]`` is the fold in which unit ``i`` is
predicted), so the same folds can be handed to peers (DoubleML, econml) for comparisons.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> X = np.arange(20.0).reshape(-1, 1); y = 2 * X[:, 0]
>>> f = make_folds(20, folds=4, seed=0)
>>> np.allclose(crossfit_predict(LinearRegression(), X, y, f), y)
True
"""

from __future__ import annotations

import numpy as np
from sklearn.base import clone

from geocausal.errors import DesignError
from geocausal.folds import (  # noqa: F401  (fold construction lives in the leaf module)
    Folds,
    _plain,
    check_fold_arms,
    fold_indices,
    make_folds,
    resolve_folds,
)


def crossfit_predict(
    learner,
    X: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray | None,
    *,
    method: str = "predict",
    train_mask: np.ndarray | None = None,
    splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
) -> np.ndarray:
    """Out-of-fold predictions: for each fold, fit a clone on the other folds and predict it.

    Parameters
    ----------
    learner
        Any scikit-learn compatible estimator (cloned per fold).
    X, y
        Features and target.
    fold_ids
        From :func:`make_folds`.
    method
        ``"predict"`` or ``"predict_proba"`` (returns the probability of class 1).
    train_mask
        Fit only on training rows where the mask is true (e.g. the treated arm for mu1),
        but predict every row of the held-out fold.
    splits
        Explicit ``[(train_idx, test_idx), ...]`` used instead of the folds of ``fold_ids``
        (pass ``fold_ids=None``): training parts that leave out more than the held-out fold
        (neighbouring periods of a panel), or ``[(all, all)]`` for in-sample predictions.
    """
    X = np.asarray(X)
    y = np.asarray(y)
    out = np.empty(X.shape[0], dtype=float)
    mask = np.ones(X.shape[0], dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    pairs = fold_indices(fold_ids) if splits is None else splits
    for j, (train, test) in enumerate(pairs):
        tr = train[mask[train]]
        if tr.size == 0:
            which = _plain(np.asarray(fold_ids)[test[0]]) if splits is None else j
            raise DesignError(f"cross-fitting fold {which} has no training "
                              "rows in the requested arm; use fewer folds or more units")
        model = clone(learner).fit(X[tr], y[tr])
        if method == "predict_proba":
            out[test] = model.predict_proba(X[test])[:, 1]
        else:
            out[test] = model.predict(X[test])
    return out

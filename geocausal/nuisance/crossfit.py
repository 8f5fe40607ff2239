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

from dataclasses import dataclass
from typing import Any

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


@dataclass(frozen=True, eq=False)
class SourceRows:
    """Rows of a streamed chips source (and tabular columns) for cross-fitting: ``take(rows)``
    gives the learner ``source.subset(rows)`` (or ``(subset, tab[rows])``), so every fold
    streams only its units from the cache and no whole-cache array is ever made.

    Attributes
    ----------
    source
        A :class:`~geocausal.encoders.stream.ChipSource` whose unit order is the row order.
    tab
        ``(n, p)`` tabular columns in row order, or None.

    Examples
    --------
    >>> from geocausal.encoders.stream import ChipSource
    >>> rows = SourceRows(ChipSource.of(np.zeros((5, 4, 4, 2), "float32")), np.ones((5, 1)))
    >>> sub, tab = rows.take(np.array([4, 1]))
    >>> len(rows), sub.n, tab.shape
    (5, 2, (2, 1))
    """

    source: Any
    tab: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.tab is not None and np.shape(self.tab)[0] != self.source.n:
            raise DesignError(f"tabular columns have {np.shape(self.tab)[0]} rows for "
                              f"{self.source.n} image rows")

    def __len__(self) -> int:
        return int(self.source.n)

    @property
    def shape(self) -> tuple[int]:
        """``(rows,)``."""
        return (len(self),)

    def take(self, rows: np.ndarray) -> Any:
        """What the learner is fitted on / predicts for ``rows``."""
        sub = self.source.subset(np.asarray(rows, np.int64))
        return sub if self.tab is None else (sub, np.asarray(self.tab)[rows])


def _rows(X: Any, idx: np.ndarray) -> Any:
    return X.take(idx) if isinstance(X, SourceRows) else X[idx]


def crossfit_predict(
    learner,
    X: np.ndarray,
    y: np.ndarray,
    fold_ids: np.ndarray | None,
    *,
    method: str = "predict",
    train_mask: np.ndarray | None = None,
    splits: list[tuple[np.ndarray, np.ndarray]] | None = None,
    fits: list | None = None,
) -> np.ndarray:
    """Out-of-fold predictions: for each fold, fit a clone on the other folds and predict it.

    Parameters
    ----------
    learner
        Any scikit-learn compatible estimator (cloned per fold).
    X, y
        Features and target. ``X`` may be :class:`SourceRows` (an image learner on a chips
        cache): each fold's learner then gets ``X.take(rows)``, a subset of the source that
        streams only those units, never a whole-cache array.
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
    fits
        A list that receives ``(train rows, held-out rows, fitted model)`` of every fold (the
        positions of the rows each model was fitted on and predicts), when given.
    """
    if not isinstance(X, SourceRows):
        X = np.asarray(X)
    y = np.asarray(y)
    n = len(X)
    if y.shape[0] != n:
        raise DesignError(f"the target has {y.shape[0]} rows, the features {n}")
    out = np.empty(n, dtype=float)
    mask = np.ones(n, dtype=bool) if train_mask is None else np.asarray(train_mask, bool)
    pairs = fold_indices(fold_ids) if splits is None else splits
    for j, (train, test) in enumerate(pairs):
        tr = train[mask[train]]
        if tr.size == 0:
            which = _plain(np.asarray(fold_ids)[test[0]]) if splits is None else j
            raise DesignError(f"cross-fitting fold {which} has no training "
                              "rows in the requested arm; use fewer folds or more units")
        model = clone(learner).fit(_rows(X, tr), y[tr])
        if fits is not None:
            fits.append((tr, test, model))
        if method == "predict_proba":
            out[test] = model.predict_proba(_rows(X, test))[:, 1]
        else:
            out[test] = model.predict(_rows(X, test))
    return out

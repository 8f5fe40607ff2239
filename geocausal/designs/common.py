"""Input and output checks shared by the designs.

* :func:`check_treatment` -- a binary 0/1 treatment with both arms.
* :func:`check_values` -- finite values of a sane magnitude in a named column (every face's
  outcome, treatment and controls pass through it, via :mod:`geocausal.formula`).
* :func:`check_full_rank` -- a regressor matrix of full column rank, naming the collinear
  columns otherwise. geocausal refuses rather than drops (fixest drops with a note): which of
  two collinear columns to keep changes the meaning of the remaining coefficients, so the
  choice is the user's.
* :func:`check_estimate` -- a finite estimate and a finite variance before they are returned.

Examples
--------
>>> import numpy as np
>>> check_treatment(np.array([1, 0, 1])).tolist()
[1.0, 0.0, 1.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from scipy import linalg

from geocausal.errors import DataError, DesignError

#: Largest absolute value accepted in a data column. Estimators square values, multiply them
#: by inverse propensities and sum them over units; beyond 1e100 those sums come within reach
#: of float64's maximum (1.8e308) and a variance turns infinite. No measured quantity needs
#: such magnitudes: rescale the column (thousands, logs).
MAX_ABS_VALUE = 1e100


def check_treatment(d: np.ndarray, name: str = "treatment") -> np.ndarray:
    """Validate a binary 0/1 treatment; raise with counts otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> check_treatment(np.array([0., 1, 1])).tolist()
    [0.0, 1.0, 1.0]
    """
    d = np.asarray(d, dtype=float)
    nan = int(np.isnan(d).sum())
    if nan:
        raise DataError(f"{name} has {nan} missing values; drop or impute them first")
    vals = np.unique(d)
    if not np.all(np.isin(vals, [0.0, 1.0])):
        raise DataError(f"{name} must be binary 0/1, found {vals.size} distinct values "
                        f"(e.g. {vals[:5].tolist()}); recode it as 0/1")
    n1 = int(d.sum())
    if n1 == 0 or n1 == d.size:
        raise DesignError(f"{name} has {n1} treated and {d.size - n1} control units; "
                          "both arms are needed")
    return d


def _row_label(index: Any, pos: int) -> Any:
    return pos if index is None else index[pos]


def check_values(x: Any, name: str, index: Sequence | None = None,
                 max_abs: float = MAX_ABS_VALUE, column: bool = True) -> np.ndarray:
    """Return ``x`` as a float array; raise :class:`DataError` on infinite or absurd values.

    Missing values (NaN) are left to the caller, which counts them under its own message.

    Parameters
    ----------
    x
        Values of one column (any shape).
    name
        Column name used in the message.
    index
        Row labels (e.g. the DataFrame index) to name the first offending row.
    max_abs
        Largest accepted absolute value (default :data:`MAX_ABS_VALUE`, 1e100).
    column
        Whether the message says ``column 'name'`` (True) or just ``name`` (for arrays
        already described, e.g. ``"calibration truths"``).

    Examples
    --------
    >>> import numpy as np
    >>> check_values(np.array([1.0, -2.5]), "y").tolist()
    [1.0, -2.5]
    >>> check_values(np.array([1.0, 1e300]), "y")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: column 'y' has 1 values beyond +-1e+100 (largest 1e+300, first at row 1); rescale it (e.g. thousands or logs): squares of such values overflow float64
    """
    arr = np.asarray(x, dtype=float)
    label = f"column '{name}'" if column else name
    flat = arr.reshape(-1)
    inf = np.isinf(flat)
    if inf.any():
        first = _row_label(index, int(np.flatnonzero(inf)[0]) % max(len(flat), 1))
        raise DataError(f"{label} has {int(inf.sum())} infinite values (first at row "
                        f"{first}); drop or fix those rows")
    with np.errstate(invalid="ignore"):
        big = np.abs(flat) > max_abs
    if big.any():
        first = _row_label(index, int(np.flatnonzero(big)[0]))
        raise DataError(f"{label} has {int(big.sum())} values beyond +-{max_abs:g} "
                        f"(largest {np.nanmax(np.abs(flat)):.3g}, first at row {first}); "
                        "rescale it (e.g. thousands or logs): squares of such values "
                        "overflow float64")
    return arr


def check_full_rank(X: np.ndarray, names: Sequence[str] | None = None, what: str = "regressors",
                    rtol: float | None = None) -> None:
    """Raise :class:`DesignError` naming the columns of ``X`` that are linear combinations of
    the others (QR with column pivoting; the tolerance is numpy's ``matrix_rank`` default).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.column_stack([np.ones(5), np.arange(5.0), 2 * np.arange(5.0)])
    >>> check_full_rank(X, ["const", "a", "b"])
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: regressors have rank 2 of 3 columns: ['b'] are collinear with the others (perfectly or to machine precision); drop them or the columns they repeat
    """
    X = np.asarray(X, dtype=float)
    if X.ndim != 2 or X.shape[1] == 0:
        return
    names = [f"column {j}" for j in range(X.shape[1])] if names is None else list(names)
    if X.shape[0] < X.shape[1]:
        raise DesignError(f"{what} have {X.shape[1]} columns but only {X.shape[0]} rows: the "
                          "coefficients are not identified; use fewer columns or more units")
    scale = np.sqrt((X * X).sum(axis=0))
    Xs = X / np.where(scale > 0, scale, 1.0)
    _, r, piv = linalg.qr(Xs, mode="economic", pivoting=True)
    diag = np.abs(np.diag(r))
    tol = (rtol if rtol is not None else max(X.shape) * np.finfo(float).eps) * diag[0] \
        if diag.size and diag[0] > 0 else 0.0
    rank = int((diag > tol).sum())
    if rank < X.shape[1]:
        bad = [names[j] for j in sorted(piv[rank:])]
        zero = [names[j] for j in range(X.shape[1]) if scale[j] == 0]
        extra = f" ({zero} are zero in every row)" if zero else ""
        raise DesignError(f"{what} have rank {rank} of {X.shape[1]} columns: {bad} are "
                          "collinear with the others (perfectly or to machine precision)"
                          f"{extra}; drop them or the columns they repeat")


def check_estimate(theta: Any, psi: np.ndarray | None = None, what: str = "the estimate"
                   ) -> None:
    """Raise :class:`DesignError` if an estimate, its influence function or the variance
    ``psi' psi / n^2`` is not finite (an overflow or a division by a zero weight).

    Examples
    --------
    >>> import numpy as np
    >>> check_estimate(1.0, np.array([0.5, -0.5]))
    >>> check_estimate(np.nan)
    Traceback (most recent call last):
    ...
    geocausal.errors.DesignError: the estimate is not finite (nan); check the outcome's scale and the propensities (weights near 0 or 1)
    """
    t = np.asarray(theta, dtype=float)
    if not np.isfinite(t).all():
        raise DesignError(f"{what} is not finite ({np.ravel(t)[:3].tolist() if t.size > 1 else float(t)}); "
                          "check the outcome's scale and the propensities (weights near 0 or 1)")
    if psi is None:
        return
    p = np.asarray(psi, dtype=float)
    with np.errstate(over="ignore", invalid="ignore"):
        n = max(p.shape[0], 1)
        var = np.einsum("i...,i...->...", p / n, p / n)
    bad = int((~np.isfinite(p)).reshape(p.shape[0], -1).any(axis=1).sum())
    if bad or not np.isfinite(var).all():
        raise DesignError(f"{what} has a variance that is not finite ({bad} units with a "
                          "non-finite influence value); check the outcome's scale and the "
                          "propensities (weights near 0 or 1)")

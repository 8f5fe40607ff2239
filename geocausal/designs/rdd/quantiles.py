"""Per-unit quantile functions and functionals of quantile functions.

Every unit's outcome is a distribution. This module turns ragged samples (optionally with
within-unit weights) into an ``(n, K)`` matrix of quantiles on a grid, and evaluates
functionals of quantile functions (mean, variance, Gini) in a batched way: every function
accepts quantile curves with any number of leading dimensions, so bootstrap draws are handled
in one array operation.

Examples
--------
>>> import numpy as np
>>> Q = unit_quantiles([np.arange(5.0), np.array([2.0, 4.0])], np.array([0.25, 0.5]))
>>> Q.tolist()
[[1.0, 2.0], [2.5, 3.0]]
>>> round(float(gini(np.linspace(0.01, 0.99, 99), np.linspace(0.01, 0.99, 99))), 6)
0.333102
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from geocausal.errors import DataError

DEFAULT_GRID = np.round(np.arange(1, 100) / 100, 10)


def check_grid(q_grid: Sequence[float] | np.ndarray) -> np.ndarray:
    """Validate a quantile grid: strictly increasing values inside (0, 1).

    Examples
    --------
    >>> check_grid([0.1, 0.5, 0.9]).tolist()
    [0.1, 0.5, 0.9]
    """
    g = np.asarray(q_grid, dtype=float).ravel()
    if g.size == 0:
        raise DataError("q_grid is empty; pass quantile levels in (0, 1), e.g. [0.1, ..., 0.9]")
    if np.any(~np.isfinite(g)) or np.any(g <= 0) or np.any(g >= 1):
        raise DataError(f"q_grid values must lie strictly inside (0, 1); got min {g.min()}, "
                        f"max {g.max()}")
    if np.any(np.diff(g) <= 0):
        raise DataError("q_grid must be strictly increasing")
    return g


def weighted_quantile(values: np.ndarray, weights: np.ndarray, q_grid: np.ndarray) -> np.ndarray:
    """Weighted type-7 quantiles (the ``normwt=TRUE`` rule of Hmisc's ``wtd.quantile``).

    Weights are rescaled to sum to the sample size; position ``1 + (n - 1) q`` on the cumulative
    weight scale is interpolated between the two neighbouring order statistics. With equal
    weights this equals numpy's ``method="linear"`` (R type 7).

    Examples
    --------
    >>> import numpy as np
    >>> y = np.array([3.0, 1.0, 2.0, 5.0])
    >>> bool(np.allclose(weighted_quantile(y, np.ones(4), np.array([.3, .7])),
    ...                  np.quantile(y, [.3, .7])))
    True
    """
    order = np.argsort(values, kind="stable")
    x, w = values[order], weights[order]
    n = x.size
    w = w * (n / w.sum())
    cw = np.cumsum(w)
    pos = 1.0 + (n - 1.0) * q_grid
    low = np.maximum(np.floor(pos), 1.0)
    high = np.minimum(low + 1.0, n)
    frac = pos % 1.0
    # step function of the cumulative weights, right-continuous (approx(..., f=1, "constant"))
    idx_lo = np.clip(np.searchsorted(cw, low - 1e-12, side="left"), 0, n - 1)
    idx_hi = np.clip(np.searchsorted(cw, high - 1e-12, side="left"), 0, n - 1)
    return (1.0 - frac) * x[idx_lo] + frac * x[idx_hi]


def unit_quantiles(
    samples: Sequence[np.ndarray],
    q_grid: np.ndarray,
    weights: Sequence[np.ndarray] | None = None,
    method: str = "linear",
) -> np.ndarray:
    """Quantiles of each unit's sample on ``q_grid``: an ``(n, K)`` matrix.

    Parameters
    ----------
    samples
        One 1-D array of draws (pixels, wages, ...) per unit.
    q_grid
        Quantile levels in (0, 1).
    weights
        Optional within-unit weights, one array per unit, same lengths as ``samples``.
    method
        numpy quantile method for unweighted samples (default ``"linear"``, R type 7).

    Raises
    ------
    DataError
        Empty samples, NaN or infinite values, negative or all-zero weights (the unit is named).

    Examples
    --------
    >>> import numpy as np
    >>> unit_quantiles([np.array([0.0, 10.0])], np.array([0.5])).tolist()
    [[5.0]]
    """
    q_grid = check_grid(q_grid)
    n = len(samples)
    if weights is not None and len(weights) != n:
        raise DataError(f"weights has {len(weights)} entries but there are {n} units")
    out = np.empty((n, q_grid.size))
    for i in range(n):  # ragged input: one vectorised quantile call per unit
        y = np.asarray(samples[i], dtype=float).ravel()
        if y.size == 0:
            raise DataError(f"unit {i} has an empty outcome sample; drop it or give it values")
        if not np.all(np.isfinite(y)):
            raise DataError(f"unit {i} has {int((~np.isfinite(y)).sum())} NaN or infinite "
                            "outcome values; remove them (e.g. masked pixels) before fitting")
        if weights is None:
            out[i] = np.quantile(y, q_grid, method=method)
            continue
        w = np.asarray(weights[i], dtype=float).ravel()
        if w.shape != y.shape:
            raise DataError(f"unit {i}: {w.size} weights for {y.size} values")
        if np.any(~np.isfinite(w)) or np.any(w < 0) or w.sum() <= 0:
            raise DataError(f"unit {i} has negative, non-finite or all-zero within-unit weights")
        keep = w > 0
        out[i] = weighted_quantile(y[keep], w[keep], q_grid)
    return out


# --------------------------------------------------------------------------- functionals
def _trapz_weights(q_grid: np.ndarray) -> np.ndarray:
    """Trapezoid weights on the grid (the integral over [q_1, q_K])."""
    d = np.diff(q_grid)
    w = np.zeros_like(q_grid)
    w[:-1] += d / 2
    w[1:] += d / 2
    return w


def mean_functional(Q: np.ndarray, q_grid: np.ndarray) -> np.ndarray:
    """Mean of the distribution, ``int Q(u) du`` by the trapezoid rule, renormalised to the grid.

    Linear in ``Q``; works over any leading dimensions.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.linspace(0.01, 0.99, 99)
    >>> round(float(mean_functional(g, g)), 6)
    0.5
    """
    w = _trapz_weights(q_grid)
    return Q @ (w / w.sum())


def variance_functional(Q: np.ndarray, q_grid: np.ndarray) -> np.ndarray:
    """Variance of the distribution, ``int Q^2 - (int Q)^2`` on the grid.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.linspace(0.001, 0.999, 999)
    >>> round(float(variance_functional(g, g)), 3)
    0.083
    """
    w = _trapz_weights(q_grid)
    w = w / w.sum()
    m = Q @ w
    return (Q**2) @ w - m**2


def _lorenz_forms(q_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``a, t`` with ``int_0^1 L = (Q @ a) / (Q @ t)`` for the rule of :func:`gini`."""
    return _lorenz_forms_cached(q_grid.size, q_grid.tobytes())


@lru_cache(maxsize=32)
def _lorenz_forms_cached(K: int, grid_bytes: bytes) -> tuple[np.ndarray, np.ndarray]:
    """Vectors ``a, t`` with ``int_0^1 L = (Q @ a) / (Q @ t)`` for the rule of :func:`gini`.

    The trapezoid areas ``A_j = int_0^(p_j) Q`` on ``[0, grid, 1]`` (the curve extended flat to
    both ends) are linear in ``Q``, ``L_j = A_j / A_last``, and the trapezoid integral of ``L``
    is ``sum_j c_j A_j / A_last``; so both numerator and denominator are linear forms.
    """
    q_grid = np.frombuffer(grid_bytes, dtype=float)
    d = np.diff(np.concatenate([[0.0], q_grid, [1.0]]))           # (K + 1,)
    ext = np.zeros((K + 2, K))                                      # flat extension to 0 and 1
    ext[0, 0] = 1.0
    ext[1:K + 1] = np.eye(K)
    ext[K + 1, K - 1] = 1.0
    area = np.cumsum((ext[1:] + ext[:-1]) / 2 * d[:, None], axis=0)   # (K + 1, K)
    c = (d + np.concatenate([d[1:], [0.0]])) / 2
    a, t = c @ area, area[-1].copy()
    a.flags.writeable = False
    t.flags.writeable = False
    return a, t


def gini(Q: np.ndarray, q_grid: np.ndarray) -> np.ndarray:
    """Gini coefficient of a quantile function through its Lorenz curve (trapezoid rule).

    The quantile function is extended flat to ``u = 0`` and ``u = 1``; the Lorenz curve
    ``L(p) = int_0^p Q / int_0^1 Q`` is accumulated by the trapezoid rule on ``[0, grid, 1]``
    and ``G = 1 - 2 int_0^1 L``. This is the reference implementation's rule (its golden value
    for ``Q(u) = u`` on ``0.01..0.99`` is 0.333102). Both integrals are linear in ``Q``, so
    any number of curves (leading dimensions) costs two matrix-vector products.

    Examples
    --------
    >>> import numpy as np
    >>> g = np.linspace(0.01, 0.99, 99)
    >>> abs(float(gini(np.full(99, 2.0), g))) < 1e-12
    True
    """
    Q = np.asarray(Q, dtype=float)
    a, t = _lorenz_forms(np.ascontiguousarray(q_grid, dtype=float))
    with np.errstate(divide="ignore", invalid="ignore"):
        return 1.0 - 2.0 * (Q @ a) / (Q @ t)


FUNCTIONALS = {"mean": mean_functional, "variance": variance_functional, "gini": gini}

"""Monotone projections of quantile curves: rearrangement and isotonic (Frechet) projection.

The weighted Frechet mean of quantile functions in Wasserstein-2 space is the L2 projection of
the weighted average onto non-decreasing curves, computed by the pool-adjacent-violators
algorithm (``sklearn.isotonic.isotonic_regression``).

Deliberate deviation from the reference R implementation: it monotonises the "simple" limits
with ``Rearrangement::rearrangement``, which interpolates on a fine grid and moves even an
already monotone curve by up to about 1e-3; here rearrangement is the exact sort of the values
on the grid, which leaves monotone curves unchanged.

Examples
--------
>>> import numpy as np
>>> isotonic_rows(np.array([[1.0, 3.0, 2.0, 4.0]])).tolist()
[[1.0, 2.5, 2.5, 4.0]]
>>> rearrange(np.array([1.0, 3.0, 2.0]))[0].tolist()
[1.0, 2.0, 3.0]
"""

from __future__ import annotations

import numpy as np
from sklearn.isotonic import isotonic_regression


def isotonic_rows(Y: np.ndarray) -> np.ndarray:
    """L2 projection of each row onto non-decreasing sequences (PAVA, equal weights).

    Rows that are already non-decreasing are returned unchanged without calling PAVA.
    """
    Y = np.atleast_2d(np.asarray(Y, dtype=float))
    out = Y.copy()
    bad = np.flatnonzero(np.any(np.diff(Y, axis=1) < 0, axis=1))
    for i in bad:  # PAVA is sequential within a row; only non-monotone rows reach it
        out[i] = isotonic_regression(Y[i], increasing=True)
    return out


def rearrange(m: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted values and the permutation that sorts them (stable).

    The permutation lets influence functions follow the rearranged estimate.
    """
    order = np.argsort(m, kind="stable")
    return m[order], order

"""Outcomes of a distributional RD as one quantile matrix: scalars, samples, quantiles.

Each unit's outcome is a distribution (pixels in a district, wages in a firm) or a scalar (a
point mass). :func:`outcome_quantiles` turns every supported form into ``(Q, q_grid, kind)``:

- a 1-D array of scalars (point masses: every quantile equals the value);
- a list of per-unit arrays of draws (optionally with per-unit ``weights``);
- a dict ``{"values": [...], "weights": [...]}``;
- an ``(n, K)`` quantile matrix (with its ``q_grid``);
- any object with ``quantiles`` and ``q_grid`` (or ``grid``) attributes, or ``values`` (and
  ``weights``) attributes, such as the per-unit pixel distributions of
  :mod:`geocausal.data.distributions`.

Examples
--------
>>> import numpy as np
>>> Q, g, kind = outcome_quantiles([np.array([0.0, 1.0, 2.0, 3.0])], [0.5])
>>> Q.tolist(), kind
([[1.5]], 'samples')
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.designs.rdd.quantiles import DEFAULT_GRID, check_grid, unit_quantiles
from geocausal.errors import DataError, DiagnosticWarning


def is_sample_column(col: pd.Series) -> bool:
    """Whether a column holds one array of draws per row (a distribution-valued outcome).

    Examples
    --------
    >>> is_sample_column(pd.Series([np.ones(2), np.zeros(3)]))
    True
    """
    return col.dtype == object and len(col) > 0 and all(
        isinstance(v, np.ndarray | list | tuple) for v in col)


def outcome_quantiles(outcome: Any, q_grid: Sequence[float] | None, n: int | None = None,
                      weights: Any = None) -> tuple[np.ndarray, np.ndarray, str]:
    """Turn any supported outcome form into ``(Q, q_grid, kind)``.

    ``kind`` is ``"scalar"``, ``"samples"`` or ``"quantiles"``. Scalars become point masses
    (every quantile equals the value); their default grid is the median only.

    Parameters
    ----------
    outcome
        One of the forms of the module docstring.
    q_grid
        Quantile levels; default ``0.01..0.99`` for samples, the median for scalars, and
        ``k / (K + 1)`` for a ``K``-column quantile matrix.
    n
        Unused; kept for callers that pass the number of units.
    weights
        Within-unit weights of samples: one array per unit.

    Returns
    -------
    tuple
        ``(Q, q_grid, kind)``.

    Examples
    --------
    >>> Q, g, kind = outcome_quantiles(np.array([1.0, 2.0]), None)
    >>> Q.tolist(), g.tolist(), kind
    ([[1.0], [2.0]], [0.5], 'scalar')
    """
    # a per-unit distributions object: samples when kept (any grid), else its quantile matrix
    obj_grid = getattr(outcome, "q_grid", getattr(outcome, "grid", None))
    obj_q = getattr(outcome, "quantiles", None)
    obj_v = getattr(outcome, "values", None) if not isinstance(
        outcome, pd.Series | pd.DataFrame | np.ndarray | dict | list | tuple) else None
    if obj_q is not None and obj_grid is not None and (obj_v is None or q_grid is None):
        g = check_grid(obj_grid)
        return check_matrix(np.asarray(obj_q, dtype=float), g), g, "quantiles"
    if obj_v is not None:
        weights = getattr(outcome, "weights", None) if weights is None else weights
        outcome = list(obj_v)
    if isinstance(outcome, Mapping):
        if "values" not in outcome:
            raise DataError("an outcome dict needs a 'values' entry (one array per unit)")
        weights = outcome.get("weights", weights)
        outcome = list(outcome["values"])
    if isinstance(outcome, pd.Series):
        outcome = list(outcome) if is_sample_column(outcome) else outcome.to_numpy()
    if isinstance(outcome, np.ndarray) and outcome.dtype != object:
        arr = np.asarray(outcome, dtype=float)
        if arr.ndim == 1:
            if np.any(~np.isfinite(arr)):
                raise DataError(f"the outcome has {int((~np.isfinite(arr)).sum())} NaN or "
                                "infinite values; drop those units")
            g = check_grid([0.5] if q_grid is None else q_grid)
            return np.repeat(arr[:, None], g.size, axis=1), g, "scalar"
        if arr.ndim == 2:
            K = arr.shape[1]
            g = check_grid(np.arange(1, K + 1) / (K + 1) if q_grid is None else q_grid)
            if g.size != K:
                raise DataError(f"the quantile matrix has {K} columns but q_grid has {g.size} levels")
            return check_matrix(arr, g), g, "quantiles"
        raise DataError(f"an outcome array must be 1-D (scalars) or 2-D (quantiles), got {arr.ndim}-D")
    if isinstance(outcome, Sequence) or (isinstance(outcome, np.ndarray) and outcome.dtype == object):
        samples = [np.asarray(v, dtype=float).ravel() for v in outcome]
        g = check_grid(DEFAULT_GRID if q_grid is None else q_grid)
        Qm = unit_quantiles(samples, g, weights=weights)
        sizes = np.array([s.size for s in samples])
        const = np.array([s.size > 1 and np.ptp(s) == 0 for s in samples])
        if const.any():
            warnings.warn(f"{int(const.sum())} of {len(samples)} units have a constant outcome "
                          "sample (a point mass); check for masked or filled pixels",
                          DiagnosticWarning, stacklevel=3)
        if np.all(sizes == 1):
            return Qm, g, "scalar"
        return Qm, g, "samples"
    raise DataError(f"unsupported outcome of type {type(outcome).__name__}; pass a formula, a "
                    "list of per-unit arrays, a quantile matrix or a distributions object")


def check_matrix(Q: np.ndarray, g: np.ndarray) -> np.ndarray:
    """A finite ``(n, K)`` quantile matrix matching a grid of ``K`` levels.

    Examples
    --------
    >>> check_matrix(np.ones((2, 1)), np.array([0.5])).shape
    (2, 1)
    """
    if Q.ndim != 2 or Q.shape[1] != g.size:
        raise DataError(f"quantile matrix of shape {Q.shape} does not match a grid of {g.size}")
    bad = ~np.isfinite(Q)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(f"the quantile matrix has NaN or infinite values in {rows.size} units "
                        f"(first: row {rows[0]}); drop them or fill their distributions")
    return Q


def warn_mass_points(x: np.ndarray, stacklevel: int = 3) -> None:
    """A counted :class:`DiagnosticWarning` when the running variable has mass points.

    Examples
    --------
    >>> warn_mass_points(np.array([0.1, 0.2]))
    """
    n_unique = np.unique(x).size
    if n_unique < x.size:
        warnings.warn(f"the running variable has mass points: {x.size} units share "
                      f"{n_unique} distinct values; local polynomial fits assume a continuous "
                      "running variable (consider clustering on the running variable)",
                      DiagnosticWarning, stacklevel=stacklevel)

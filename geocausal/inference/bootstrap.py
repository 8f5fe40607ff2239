"""Multiplier bootstrap from stored influence functions, with joint (sup-t) bands.

Examples
--------
>>> import numpy as np
>>> psi = np.random.default_rng(0).normal(size=(500, 2))
>>> draws = multiplier_bootstrap(psi, n_boot=200, seed=1)
>>> draws.shape
(200, 2)
"""

from __future__ import annotations

import math

import numpy as np

from geocausal.errors import DataError
from geocausal.inference.variance import cluster_sums


def multipliers(n: int, n_boot: int, seed: int, kind: str = "normal") -> np.ndarray:
    """Draw an ``(n_boot, n)`` matrix of mean-zero, unit-variance multipliers.

    ``kind`` is ``"normal"``, ``"rademacher"`` or ``"mammen"``.
    """
    rng = np.random.default_rng(seed)
    if kind == "normal":
        return rng.standard_normal((n_boot, n))
    if kind == "rademacher":
        return rng.choice(np.array([-1.0, 1.0]), size=(n_boot, n))
    if kind == "mammen":
        s5 = np.sqrt(5.0)
        lo, hi = -(s5 - 1) / 2, (s5 + 1) / 2
        p = (s5 + 1) / (2 * s5)
        return np.where(rng.random((n_boot, n)) < p, lo, hi)
    raise DataError(f"multiplier kind '{kind}' is not one of 'normal', 'rademacher', 'mammen'")


def multiplier_bootstrap(
    influence: np.ndarray,
    n_boot: int = 999,
    seed: int = 0,
    clusters: np.ndarray | None = None,
    kind: str = "normal",
) -> np.ndarray:
    """Bootstrap draws of ``theta* - theta_hat = sum_g xi_g * s_g / n``.

    Parameters
    ----------
    influence
        ``(n, k)`` influence function values.
    n_boot
        Number of draws.
    seed
        Seed of the multipliers.
    clusters
        Optional labels: one multiplier per cluster (cluster sums of the influence function).
    kind
        Multiplier distribution, see :func:`multipliers`.

    Returns
    -------
    numpy.ndarray
        ``(n_boot, k)`` draws.
    """
    psi = np.asarray(influence, dtype=float)
    if psi.ndim == 1:
        psi = psi[:, None]
    n = psi.shape[0]
    s = psi if clusters is None else cluster_sums(psi, np.asarray(clusters))
    xi = multipliers(s.shape[0], n_boot, seed, kind)
    return xi @ s / n


def critical_value(sup_stats: np.ndarray, alpha: float) -> float:
    """The one critical-value rule of the package's uniform (sup) bands and tests: the order
    statistic ``ceil((1 - alpha)(B + 1))`` of the ``B`` bootstrap sup statistics (the rule
    under which a bootstrap test with ``(B + 1) alpha`` an integer has exact size).

    Examples
    --------
    >>> critical_value(np.arange(1.0, 101.0), 0.05)
    96.0
    """
    B = sup_stats.size
    k = min(max(math.ceil((1 - alpha) * (B + 1)), 1), B)
    return float(np.partition(np.asarray(sup_stats, dtype=float), k - 1)[k - 1])


def sup_t_critical(draws: np.ndarray, se: np.ndarray, alpha: float = 0.05) -> float:
    """Critical value of the max-|t| statistic over the columns of ``draws``
    (:func:`critical_value` of the sup statistics).

    Examples
    --------
    >>> import numpy as np
    >>> d = np.random.default_rng(0).normal(size=(4000, 1))
    >>> 1.9 < sup_t_critical(d, np.array([1.0])) < 2.05  # one coordinate: about 1.96
    True
    """
    se = np.asarray(se, dtype=float)
    if np.any(se <= 0):
        raise DataError("standard errors must be positive for a sup-t band")
    t = np.max(np.abs(draws / se), axis=1)
    return critical_value(t, alpha)


def normal_critical(alpha: float = 0.05) -> float:
    """Two-sided normal critical value, e.g. 1.96 for ``alpha=0.05``."""
    from scipy import stats

    return float(stats.norm.ppf(1 - alpha / 2))

"""Multiplier bootstrap for quantile-effect curves: uniform bands and tests, all draws at once.

A draw is ``nu*_b(q) = sum_i xi_ib s_i(q)`` with scores ``s_i(q)`` from
:func:`geocausal.designs.rdd.estimator.fit_r3d`; every unit with a non-zero weight contributes
(the reference implementation keeps only units with positive weights: a documented quirk not
copied). With clusters, one multiplier per cluster multiplies the cluster's summed scores.
All ``B`` draws and ``K`` quantiles are one matrix product ``xi @ S``.

Critical values are the order statistic ``ceil((1 - alpha)(B + 1))`` of the sup statistics
(:func:`geocausal.inference.bootstrap.critical_value`, the package's one rule); cluster sums
are :func:`geocausal.inference.variance.cluster_sums`.

Examples
--------
>>> import numpy as np
>>> S = np.random.default_rng(0).normal(size=(100, 5)) / 10
>>> xi = np.random.default_rng(1).normal(size=(500, 100))
>>> D = draws(S, xi)
>>> D.shape
(500, 5)
>>> bool(critical_value(np.abs(D).max(axis=1), 0.05) > 1.96 * 0.9)
True
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from geocausal.designs.rdd.quantiles import FUNCTIONALS
from geocausal.errors import DataError
from geocausal.inference.bootstrap import critical_value  # the one sup rule (re-exported)


def draws(S: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """Bootstrap draws ``xi @ S``: ``(B, K)`` from multipliers ``(B, n)`` and scores ``(n, K)``.

    Single-precision multipliers give a single-precision product (returned as float64).
    """
    if xi.shape[1] != S.shape[0]:
        raise DataError(f"multipliers have {xi.shape[1]} columns for {S.shape[0]} score rows")
    if xi.dtype == np.float32:
        return (xi @ S.astype(np.float32)).astype(np.float64)
    return xi @ S


def gaussian_draws(S: np.ndarray | Sequence[np.ndarray], n_boot: int, seed: int,
                   disjoint: bool = False) -> np.ndarray:
    """Gaussian-multiplier draws ``xi @ S`` drawn from their exact law, ``N(0, S'S)``.

    With standard normal multipliers, each draw ``sum_i xi_i s_i`` is exactly Gaussian with
    covariance ``S'S``: every unit (or cluster) enters through that ``K x K`` matrix. Drawing
    ``Z @ R'`` with ``R R' = S'S`` (Cholesky; rank-deficient ``S`` allowed by a 1e-12 relative
    jitter) costs
    ``O(n K^2 + B K^2)`` instead of ``O(B n K)``, so thousands of draws over thousands of units
    take milliseconds.

    ``S`` may be given as a list of column blocks ``[S_1, S_2, ...]`` (the columns of
    ``hstack(S)``), e.g. the scores of the two sides of a cutoff. Cross products are then
    taken over the rows where both blocks are non-zero only, and when the blocks share no
    such row (the two sides of a cutoff without clusters) the covariance is block diagonal
    and each block is factored and drawn on its own: the same draws at a fraction of the cost.
    With ``disjoint=True`` the blocks' rows are different units (they may differ in number)
    and the covariance is block diagonal by construction.

    Examples
    --------
    >>> import numpy as np
    >>> S = np.random.default_rng(0).normal(size=(300, 4))
    >>> D = gaussian_draws(S, 20000, seed=1)
    >>> C = S.T @ S
    >>> bool(np.abs(np.cov(D.T) - C).max() < 0.05 * C.diagonal().max())
    True
    >>> bool(np.allclose(gaussian_draws([S[:, :2], S[:, 2:]], 50, 3), gaussian_draws(S, 50, 3)))
    True
    >>> S[:150, 2:] = 0; S[150:, :2] = 0
    >>> bool(np.allclose(gaussian_draws([S[:150, :2], S[150:, 2:]], 50, 3, disjoint=True),
    ...                  gaussian_draws(S, 50, 3)))
    True
    """
    blocks = [np.asarray(S, dtype=float)] if isinstance(S, np.ndarray) else \
        [np.asarray(b, dtype=float) for b in S]
    sizes = [b.shape[1] for b in blocks]
    K = sum(sizes)
    cross = {}
    if len(blocks) > 1 and not disjoint:
        support = [np.flatnonzero(np.any(b != 0, axis=1)) for b in blocks]
        for i in range(len(blocks)):
            for j in range(i + 1, len(blocks)):
                both = np.intersect1d(support[i], support[j], assume_unique=True)
                if both.size:
                    cross[i, j] = blocks[i][both].T @ blocks[j][both]
        # rows of zeros add nothing to a block's cross-product matrix
        blocks = [b[s] if s.size < b.shape[0] else b for b, s in zip(blocks, support)]
    grams = [b.T @ b for b in blocks]
    scale = max(sum(float(np.trace(g)) for g in grams) / K, 1e-300)
    Z = np.random.default_rng(seed).standard_normal((n_boot, K))
    if cross:                                    # one covariance matrix, factored as a whole
        edges = np.cumsum([0, *sizes])
        C = np.zeros((K, K))
        for i, g in enumerate(grams):
            C[edges[i]:edges[i + 1], edges[i]:edges[i + 1]] = g
        for (i, j), g in cross.items():
            C[edges[i]:edges[i + 1], edges[j]:edges[j + 1]] = g
            C[edges[j]:edges[j + 1], edges[i]:edges[i + 1]] = g.T
        grams, sizes = [C], [K]
    roots = _cholesky_jittered(grams, scale)
    # Z @ R' block by block, written over Z a slab of rows at a time: no (B, K) temporary
    # (at this size each fresh array costs more in page faults than the product itself)
    start = 0
    for root, k in zip(roots, sizes):
        rt = root.T
        for r0 in range(0, n_boot, _SLAB):
            blk = Z[r0:r0 + _SLAB, start:start + k]
            blk[...] = blk @ rt
        start += k
    return Z


_SLAB = 256
"""Rows of multipliers transformed at once by :func:`gaussian_draws`."""


def _cholesky_jittered(grams: list[np.ndarray], scale: float) -> list[np.ndarray]:
    """Cholesky factors of the diagonal blocks of a covariance matrix, with a common jitter.

    A relative jitter of ``1e-12 * scale`` (``scale`` the mean variance) is added to every
    diagonal, raised a hundredfold until every block factors (up to ``1e-4``), handling
    rank-deficient scores.
    """
    eps = 1e-12
    while True:
        try:
            return [np.linalg.cholesky(g + eps * scale * np.eye(g.shape[0])) for g in grams]
        except np.linalg.LinAlgError:
            eps *= 100
            if eps > 1e-4:
                raise


def _range_mask(q_grid: np.ndarray, rng: Sequence[float] | None) -> np.ndarray:
    if rng is None:
        return np.ones(q_grid.size, bool)
    lo, hi = float(rng[0]), float(rng[1])
    m = (q_grid >= lo - 1e-12) & (q_grid <= hi + 1e-12)
    if not m.any():
        raise DataError(f"test range [{lo}, {hi}] contains no quantile of the grid")
    return m


def uniform_band(tau, se, D, alpha=0.05, studentize=False):
    """Uniform band ``tau +- c`` (or ``tau +- c se`` when studentized) and its critical value."""
    scale = se if studentize else np.ones_like(se)
    if not studentize:                      # |D / 1| = |D|: one pass, no division
        sup = np.abs(D).max(axis=1)
    elif np.all(scale > 0):
        t = D / scale
        sup = np.abs(t, out=t).max(axis=1)
    else:                                   # quantiles with a zero scale are left out
        with np.errstate(divide="ignore", invalid="ignore"):
            sup = np.nanmax(np.abs(D / np.where(scale > 0, scale, np.nan)), axis=1)
    c = critical_value(sup, alpha)
    return tau - c * scale, tau + c * scale, c


def curve_tests(tau, se, D, q_grid, tests=("nullity", "homogeneity", "dominance"),
                test_range=None, studentize=False):
    """Sup tests on a range of quantiles from the bootstrap draws ``D`` (``(B, K)``).

    ``nullity``: H0 tau(q) = 0; ``homogeneity``: H0 tau(q) constant; ``dominance``: H0
    tau(q) >= 0 for all q (the right-side distribution first-order stochastically dominates),
    rejected by large ``max(-tau)``. p-values are ``mean(T* >= T)``.

    Returns a list of dicts with ``test``, ``range``, ``statistic``, ``p_value``.
    """
    mask = _range_mask(q_grid, test_range)
    t, d = (tau, D) if mask.all() else (tau[mask], D[:, mask])
    sc = se[mask] if studentize else np.ones(mask.sum())
    sc = np.where(sc > 0, sc, np.inf)
    out = []
    label = f"[{q_grid[mask][0]:.4g}, {q_grid[mask][-1]:.4g}]"
    unit = not studentize and np.all(sc == 1.0)     # d / 1 = d exactly: skip the copies
    dn = d if unit else d / sc
    # max |d/sc| = max(max, -min) and max(-d/sc) = -min: one pass over the draws for both
    lo, hi = dn.min(axis=1), dn.max(axis=1)
    for name in tests:
        if name == "nullity":
            stat, null = np.max(np.abs(t / sc)), np.maximum(hi, -lo)
        elif name == "homogeneity":
            stat = np.max(np.abs((t - t.mean()) / sc))
            dev = np.subtract(d, d.mean(axis=1, keepdims=True))
            if not unit:
                dev /= sc
            null = np.max(np.abs(dev, out=dev), axis=1)
        elif name == "dominance":
            stat, null = np.max(-t / sc), -lo
        else:
            raise DataError(f"test '{name}' is not one of 'nullity', 'homogeneity', 'dominance'")
        out.append({"test": name, "range": label, "statistic": float(stat),
                    "p_value": float(np.mean(null >= stat))})
    return out


def functional_effects(m_plus, m_minus, Dp, Dm, q_grid, names=("mean", "variance", "gini"),
                       alpha=0.05):
    """Effects on functionals ``F(m_+) - F(m_-)`` with recentred bootstrap tests.

    The bootstrap statistic is ``[F(m_+ + nu_+*) - F(m_- + nu_-*)] - [F(m_+) - F(m_-)]``, so the
    test of ``H0: F_+ = F_-`` compares ``|effect|`` with the spread of a mean-zero distribution
    (the reference implementation forgets to recentre, which leaves its p-value near 0.5).

    Returns a list of dicts with ``functional``, ``estimate``, ``boot_se``, ``p_value``,
    ``conf_low``, ``conf_high`` (percentile-of-deviation interval).
    """
    for name in names:
        if name not in FUNCTIONALS:
            raise DataError(f"functional '{name}' is not one of {sorted(FUNCTIONALS)}")
    B = Dp.shape[0]
    Fp = np.empty((len(names), B))
    Fm = np.empty((len(names), B))
    # every draw's side curves, a slab of draws at a time (small temporaries, same numbers)
    for r0 in range(0, B, _SLAB):
        Qp, Qm = m_plus + Dp[r0:r0 + _SLAB], m_minus + Dm[r0:r0 + _SLAB]
        for j, name in enumerate(names):
            Fp[j, r0:r0 + _SLAB] = FUNCTIONALS[name](Qp, q_grid)
            Fm[j, r0:r0 + _SLAB] = FUNCTIONALS[name](Qm, q_grid)
    out = []
    for j, name in enumerate(names):
        F = FUNCTIONALS[name]
        est = float(F(m_plus, q_grid) - F(m_minus, q_grid))
        dev = Fp[j] - Fm[j] - est
        dev = dev[np.isfinite(dev)]
        lo, hi = np.quantile(dev, [alpha / 2, 1 - alpha / 2])
        out.append({"functional": name, "estimate": est, "boot_se": float(np.std(dev, ddof=1)),
                    "p_value": float(np.mean(np.abs(dev) >= abs(est))),
                    "conf_low": est - float(hi), "conf_high": est - float(lo)})
    return out


def functional_gradient(F, m: np.ndarray, q_grid: np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """Numerical gradient of a functional of a quantile curve (central differences, batched).

    Examples
    --------
    >>> import numpy as np
    >>> g = np.linspace(.1, .9, 9)
    >>> from geocausal.designs.rdd.quantiles import mean_functional
    >>> bool(np.isclose(functional_gradient(mean_functional, g, g).sum(), 1.0))
    True
    """
    K = m.size
    scale = eps * max(1.0, float(np.max(np.abs(m))))
    E = np.eye(K) * scale
    return (F(m[None, :] + E, q_grid) - F(m[None, :] - E, q_grid)) / (2 * scale)

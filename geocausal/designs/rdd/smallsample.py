"""Small-sample refinement of R3D inference: Bell-McCaffrey degrees of freedom per quantile.

A side limit is a linear estimator ``m = sum_i w_i Q_i`` and its robust variance estimate is a
quadratic form in the residuals, ``V = sum_i a_i e_i^2`` with ``a_i = w_i^2 s_i^2`` (``s_i`` the
HC scaling). Under the reference model of Bell and McCaffrey (2002), recommended for
regression discontinuity by Imbens and Kolesar (2016, "Robust standard errors in small
samples"), errors are iid normal, ``e = M u`` with ``M = I - H`` the annihilator of the local
(kernel-weighted) fit, and ``V`` is approximately ``sigma^2 chi^2_df / df`` with the
Satterthwaite degrees of freedom

    df = tr(C)^2 / tr(C^2),     C = A^(1/2) M M' A^(1/2),   A = diag(a).

The two sides of the cutoff are independent, so ``tr`` and ``tr^2`` add across them. ``M`` is
the identity minus a rank-``p + 1`` matrix, so both traces cost ``O(m (p+1)^2)`` per quantile
(``m`` units in the window) instead of ``O(m^2)``.

The studentized statistic at quantile ``k`` is then about ``t(df_k)`` rather than normal; a
Gaussian critical value ``c`` (pointwise level ``2 (1 - Phi(c))``) becomes
``t_{df_k}^{-1}(Phi(c))`` at that quantile: the same level, with the t tails (:func:`t_critical`).
With clusters, ``df = G - 1``.

Examples
--------
>>> import numpy as np
>>> from geocausal.designs.rdd.locpoly import local_poly
>>> x = np.linspace(0.01, 1, 60)
>>> fit = local_poly(x, np.sin(x)[:, None], np.array([0.5]), 1, "uniform", "plus")
>>> tr, tr2 = satterthwaite_parts(fit, fit.w0_window, 1.0)
>>> df = tr ** 2 / tr2
>>> bool(1 < df[0] < fit.n_eff[0])
True
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from geocausal.designs.rdd.locpoly import LocPolyFit


def satterthwaite_parts(fit: LocPolyFit, w: np.ndarray, scale: np.ndarray | float,
                        overwrite_scale: bool = False) -> tuple[np.ndarray, np.ndarray]:
    """``tr(C)`` and ``tr(C^2)`` per quantile (in units of ``sigma^2``, ``sigma^4``).

    Parameters
    ----------
    fit
        The local polynomial whose residuals enter the variance.
    w
        Equivalent-kernel weights of the limit on the fit's window, ``(m, K)``.
    scale
        The HC scaling of the residuals on the window (``1``, or ``(m, K)``).
    overwrite_scale
        Reuse an ``(m, K)`` ``scale`` array as scratch space (its values are lost).
    """
    p = fit.p
    r = p + 1
    K = fit.h.size
    # With R the scaled design (m, r) of quantile k, Qm = kw R G^-1 and A = diag(a), every
    # block below is G^-1-sandwiched weighted moments R' diag(c) R, whose (j, l) entry is
    # sum_i c_i x_i^(j+l) / h^(j+l): one (2p+1, m) x (m, K) product per weight c, O(m K p)
    # in all instead of O(m K p^2) elementwise work on (m, K, r) arrays.
    # Every (m, K) temporary is a fresh allocation (page faults dominate at this size), so
    # the seven weights below share one scratch buffer and ``a`` becomes ``a^2`` in place.
    own = overwrite_scale and isinstance(scale, np.ndarray) and scale.shape == w.shape \
        and scale.dtype == np.float64
    a = np.multiply(w, scale, out=scale if own else None)                            # (m, K)
    np.multiply(a, a, out=a)
    kw = fit.kw
    hp = fit.h[:, None] ** np.arange(2 * p + 1)                                      # (K, 2p+1)
    jl = np.add.outer(np.arange(r), np.arange(r))                                    # j + l

    def moments(c: np.ndarray) -> np.ndarray:
        return ((fit.xpow.T @ c).T / hp)[:, jl]                                      # (K, r, r)

    Gi = fit.ginv
    GiT = Gi.transpose(0, 2, 1)
    buf = np.multiply(kw, kw)
    QtQ = GiT @ moments(buf) @ Gi

    def gram(c: np.ndarray) -> np.ndarray:
        """Blocks of ``U'diag(c)U`` from the moments of ``c``, ``c kw`` and ``c kw^2``."""
        out = np.empty((K, 2 * r, 2 * r))
        out[:, r:, r:] = moments(c)
        np.multiply(c, kw, out=buf)
        cross = GiT @ moments(buf)
        np.multiply(buf, kw, out=buf)
        out[:, :r, :r] = GiT @ moments(buf) @ Gi
        out[:, :r, r:] = cross
        out[:, r:, :r] = cross.transpose(0, 2, 1)
        return out

    # U = sqrt(a) [Qm, R]: U'U and U' A U in blocks
    S = np.zeros((K, 2 * r, 2 * r))
    S[:, :r, r:] = -np.eye(r)
    S[:, r:, :r] = -np.eye(r)
    S[:, r:, r:] = QtQ
    UtU = gram(a)
    tr_a = a.sum(axis=0)
    np.multiply(a, a, out=a)                                                         # a^2
    UtDU = gram(a)
    SU = S @ UtU
    tr = tr_a + np.einsum("kaa->k", SU)
    tr2 = a.sum(axis=0) + 2 * np.einsum("kab,kba->k", S, UtDU) + \
        np.einsum("kab,kba->k", SU, SU)
    return tr, tr2


def t_critical(c: float | np.ndarray, df: np.ndarray) -> np.ndarray:
    """The t critical values with the same two-sided level as the normal critical value ``c``
    (``c`` and ``df`` broadcast; infinite or missing ``df`` leave ``c`` unchanged).

    Examples
    --------
    >>> import numpy as np
    >>> np.round(t_critical(1.959964, np.array([10.0, np.inf])), 3).tolist()
    [2.228, 1.96]
    """
    c, df = np.broadcast_arrays(np.asarray(c, dtype=float), np.asarray(df, dtype=float))
    out = c.copy()
    ok = np.isfinite(df) & (df > 0)
    out[ok] = stats.t.ppf(stats.norm.cdf(c[ok]), df[ok])
    return out


def normal_equivalent(tstat: np.ndarray, df: np.ndarray) -> np.ndarray:
    """``Phi^-1(F_t(|t|; df))``: a t statistic on the normal scale (the inverse of
    :func:`t_critical`), for sup tests against Gaussian bootstrap draws.

    Examples
    --------
    >>> import numpy as np
    >>> np.round(normal_equivalent(np.array([2.228]), np.array([10.0])), 2).tolist()
    [1.96]
    """
    t = np.abs(np.asarray(tstat, dtype=float))
    df = np.broadcast_to(np.asarray(df, dtype=float), t.shape)
    out = t.copy()
    ok = np.isfinite(df) & (df > 0)
    # upper tails (isf of sf), not ppf(cdf): cdf rounds to 1 for |t| beyond ~8 and gave inf
    eq = stats.norm.isf(stats.t.sf(t[ok], df[ok]))
    out[ok] = np.where(np.isfinite(eq), eq, t[ok])  # sf underflowed: |t| itself, finite
    return out

"""Batched one-sided local polynomial regression: every quantile in one array operation.

For side ``+`` (``x >= 0``) or ``-`` (``x < 0``) of a cutoff at 0 and a bandwidth ``h_k`` per
quantile ``k``, the fit solves

    alpha(k) = argmin sum_i 1{side} K(x_i / h_k) [Q_ik - sum_j alpha_j (x_i / h_k)^j]^2

so ``alpha_j`` is the ``j``-th coefficient in bandwidth-scaled units (the raw derivative is
``j! alpha_j / h^j``). The equivalent-kernel weights ``w_i(k) = e_j' (R'WR)^-1 r_i K_i`` are
returned for every coefficient, so ``alpha_j(k) = sum_i w_ij(k) Q_ik`` exactly.

Only the units on the side within the largest bandwidth (the *window*) can have a non-zero
kernel weight, so every array is computed on the window, ``(m, K)``. The moments of all
quantiles are one matrix product of the kernel weights with the powers of ``x``; weights,
fitted values and leverages are matrix products of those powers with per-quantile
coefficients (the ``1 / h_k^j`` scaling moved onto the coefficients).

Examples
--------
>>> import numpy as np
>>> x = np.linspace(-1, 1, 41)
>>> y = np.c_[1 + 2 * x, 3 - x ** 2]
>>> fit = local_poly(x, y, h=np.array([0.8, 0.8]), p=2, kernel="triangular", side="plus")
>>> np.round(fit.intercept, 8).tolist()
[1.0, 3.0]
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np

from geocausal.errors import DataError, DesignError

_ALIASES = {"tri": "triangular", "triangular": "triangular", "epa": "epanechnikov",
            "epanechnikov": "epanechnikov", "uni": "uniform", "uniform": "uniform"}


def kernel_name(kernel: str) -> str:
    """Canonical kernel name; accepts ``tri``/``epa``/``uni`` aliases.

    Examples
    --------
    >>> kernel_name("epa")
    'epanechnikov'
    """
    key = str(kernel).lower()
    if key not in _ALIASES:
        raise DataError(f"kernel '{kernel}' is not one of 'triangular', 'epanechnikov', 'uniform'")
    return _ALIASES[key]


def kernel(u: np.ndarray, name: str) -> np.ndarray:
    """Kernel values on ``[-1, 1]``: triangular ``1-|u|``, Epanechnikov ``.75(1-u^2)``, uniform ``.5``.

    Examples
    --------
    >>> import numpy as np
    >>> kernel(np.array([0.0, 0.5, 1.5]), "triangular").tolist()
    [1.0, 0.5, 0.0]
    """
    name = kernel_name(name)
    a = np.abs(u)
    inside = a <= 1.0
    if name == "triangular":
        k = 1.0 - a
    elif name == "epanechnikov":
        k = 0.75 * (1.0 - a * a)
    else:
        k = np.full_like(a, 0.5, dtype=float)
    return np.where(inside, k, 0.0)


@dataclass(frozen=True)
class LocPolyFit:
    """A one-sided local polynomial fit at every quantile.

    The fit lives on its *window*: the units on the side with ``|x| <= max(h)`` (``rows``);
    every weight is zero elsewhere. Window arrays have one row per window unit and one column
    per quantile; the full ``(n, ...)`` arrays are built on first access.

    Attributes
    ----------
    coef : ndarray, shape (p + 1, K)
        Coefficients in bandwidth-scaled units; row 0 is the side limit at the cutoff.
    h : ndarray, shape (K,)
        Bandwidths.
    n_eff : ndarray, shape (K,)
        Units with positive kernel weight.
    rows : ndarray, shape (m,)
        Indices of the window units.
    n : int
        Number of units.
    kw : ndarray, shape (m, K)
        Kernel weights ``K(x_i / h_k)`` on the window.
    y_win : ndarray, shape (m, K)
        The outcomes on the window.
    xpow : ndarray, shape (m, 2p + 1)
        Powers ``x_i^r`` of the running variable on the window.
    ginv : ndarray, shape (K, p + 1, p + 1)
        Inverse of the scaled design moment matrix ``sum_i K_i r_i r_i'`` (``r_i`` the powers
        of ``x_i / h``).
    weights : ndarray, shape (n, K, p + 1)
        Equivalent-kernel weights of each coefficient (zero off the side and outside the window).
    fitted : ndarray, shape (n, K)
        The fitted polynomial at each unit's running variable (units on the side within the
        largest bandwidth; 0 elsewhere, where every weight is 0).
    leverage : ndarray, shape (n, K)
        Diagonal of the local hat matrix ``K_i r_i' G^-1 r_i``.
    """

    coef: np.ndarray
    h: np.ndarray
    n_eff: np.ndarray
    rows: np.ndarray
    n: int
    kw: np.ndarray
    y_win: np.ndarray
    xpow: np.ndarray
    ginv: np.ndarray

    @property
    def p(self) -> int:
        """Polynomial order."""
        return self.coef.shape[0] - 1

    @property
    def intercept(self) -> np.ndarray:
        """The side limits ``m(k)``, shape ``(K,)``."""
        return self.coef[0]

    def _hpow(self, r: int) -> np.ndarray:
        """``h_k^j`` for ``j = 0..r``, shape ``(K, r + 1)``."""
        return powers(self.h, r)

    def weight_window(self, a: int) -> np.ndarray:
        """Equivalent-kernel weights of coefficient ``a`` on the window, ``(m, K)``.

        ``w_ia(k) = K_i(k) sum_b [G_k^-1]_ab (x_i / h_k)^b``: one matrix product with the raw
        powers of ``x`` (the ``1 / h_k^b`` scaling moved onto the coefficients).
        """
        p = self.p
        C = self.ginv[:, a, :] / self._hpow(p)                    # (K, p+1)
        out = self.xpow[:, : p + 1] @ C.T
        out *= self.kw
        return out

    @cached_property
    def w0_window(self) -> np.ndarray:
        """Intercept weights on the window, ``(m, K)``."""
        return self.weight_window(0)

    @cached_property
    def fitted_window(self) -> np.ndarray:
        """The fitted polynomial at the window units, ``(m, K)``."""
        return self.fitted_values()

    def fitted_values(self) -> np.ndarray:
        """A fresh array of :attr:`fitted_window` (not cached: the caller may overwrite it)."""
        p = self.p
        return self.xpow[:, : p + 1] @ (self.coef / self._hpow(p).T)

    @cached_property
    def leverage_window(self) -> np.ndarray:
        """``K_i r_i' G^-1 r_i`` on the window, ``(m, K)``: a polynomial of degree ``2p``."""
        return self.leverage_values()

    def leverage_values(self) -> np.ndarray:
        """A fresh array of :attr:`leverage_window` (not cached: the caller may overwrite it)."""
        p = self.p
        jj = np.arange(p + 1)
        rsum = jj[:, None] + jj[None, :]
        coefs = np.zeros((self.h.size, 2 * p + 1))
        for r in range(2 * p + 1):                                   # anti-diagonal sums
            coefs[:, r] = self.ginv[:, rsum == r].sum(axis=1)
        out = self.xpow @ (coefs / self._hpow(2 * p)).T
        out *= self.kw
        return out

    def _full(self, win: np.ndarray) -> np.ndarray:
        out = np.zeros((self.n,) + win.shape[1:])
        out[self.rows] = win
        return out

    @cached_property
    def weights(self) -> np.ndarray:
        """Equivalent-kernel weights of every coefficient, ``(n, K, p + 1)``."""
        W = np.stack([self.weight_window(a) for a in range(self.p + 1)], axis=-1)
        return self._full(W)

    @property
    def w0(self) -> np.ndarray:
        """Intercept weights, shape ``(n, K)``."""
        return self._full(self.w0_window)

    @cached_property
    def fitted(self) -> np.ndarray:
        """Fitted values ``(n, K)`` (0 off the window)."""
        return self._full(self.fitted_window)

    @cached_property
    def leverage(self) -> np.ndarray:
        """Leverage ``(n, K)`` (0 off the window)."""
        return self._full(self.leverage_window)


def side_window(x: np.ndarray, h_max: float, side: str) -> np.ndarray:
    """Indices of the units on ``side`` of 0 with ``|x| <= h_max`` (where kernels may be > 0).

    Examples
    --------
    >>> import numpy as np
    >>> side_window(np.array([-0.5, 0.1, 0.7, 2.0]), 1.0, "plus").tolist()
    [1, 2]
    """
    mask = (x >= 0) if side == "plus" else (x < 0)
    mask &= np.abs(x) <= h_max                                  # the kernels vanish beyond h
    return np.flatnonzero(mask)


def _kernel_of_ratio(a: np.ndarray, name: str) -> np.ndarray:
    """Kernel values at ``a = |u| >= 0``, computed in place (same values as :func:`kernel`)."""
    if name == "triangular":                   # 1 - a where a <= 1, else 0
        np.subtract(1.0, a, out=a)
        return np.maximum(a, 0.0, out=a)
    if name == "epanechnikov":                 # .75 (1 - a^2) where a <= 1, else 0
        np.multiply(a, a, out=a)
        np.subtract(1.0, a, out=a)
        np.multiply(a, 0.75, out=a)
        return np.maximum(a, 0.0, out=a)
    return np.where(a <= 1.0, 0.5, 0.0)


def _n_positive(ax: np.ndarray, h: np.ndarray, kw: np.ndarray, name: str) -> np.ndarray:
    """Units with a positive kernel weight per bandwidth.

    For the triangular and Epanechnikov kernels the weight is positive exactly when
    ``|x| < h`` (``|x| / h`` rounds below 1 then, and its square too), so the counts come
    from a search in the sorted ``|x|``; the uniform kernel counts the weights.
    """
    if name == "uniform":
        return np.count_nonzero(kw, axis=0)
    return np.searchsorted(np.sort(ax), h, side="left")


def local_poly(
    x: np.ndarray,
    y: np.ndarray,
    h: np.ndarray | float,
    p: int,
    kernel: str,
    side: str,
    rows: np.ndarray | None = None,
) -> LocPolyFit:
    """Fit a one-sided local polynomial of order ``p`` at every quantile at once.

    The design moments ``sum_i K_i(k) (x_i / h_k)^r`` of all quantiles come from one matrix
    product of the kernel weights with the raw powers of ``x`` (``R'WR`` has Hankel structure,
    so ``2p + 1`` moments give it), and so do the right-hand sides.

    Parameters
    ----------
    x
        Running variable centred at the cutoff, shape ``(n,)``.
    y
        Outcomes, ``(n, K)`` (one column per quantile) or ``(n,)``.
    h
        Bandwidth, scalar or one per column.
    p
        Polynomial order (any non-negative integer).
    kernel
        ``"triangular"``, ``"epanechnikov"`` or ``"uniform"``.
    side
        ``"plus"`` (``x >= 0``) or ``"minus"`` (``x < 0``).
    rows
        The window units (default :func:`side_window` at ``max(h)``); a larger window on the
        same side gives the same fit (the extra units have zero kernel weight).

    Raises
    ------
    DesignError
        Fewer than ``p + 1`` units with positive weight on that side for some bandwidth.
    """
    x = np.asarray(x, dtype=float)
    y = np.asarray(y, dtype=float)
    if y.ndim == 1:
        y = y[:, None]
    K = y.shape[1]
    h = np.broadcast_to(np.asarray(h, dtype=float), (K,)).copy()
    if np.any(~np.isfinite(h)) or np.any(h <= 0):
        raise DataError(f"bandwidths must be positive and finite; got min {np.nanmin(h)}")
    idx = side_window(x, h.max(), side) if rows is None else np.asarray(rows)
    xs = x[idx]
    ax = np.abs(xs)
    kw = _kernel_of_ratio(ax[:, None] / h[None, :], kernel)   # (m, K)
    n_eff = _n_positive(ax, h, kw, kernel)
    bad = np.flatnonzero(n_eff < p + 1)
    if bad.size:
        j = bad[0]
        raise DesignError(
            f"only {int(n_eff[j])} units lie within bandwidth h={h[j]:.4g} on the "
            f"{'right (treated)' if side == 'plus' else 'left (control)'} side of the cutoff; "
            f"a local polynomial of order {p} needs at least {p + 1}. Widen the bandwidth, "
            "lower p, or check the cutoff")
    xpow = powers(xs, 2 * p)                                   # (m, 2p+1)
    hpow = powers(h, 2 * p)                                    # (K, 2p+1)
    mom = (kw.T @ xpow) / hpow                                 # (K, 2p+1) scaled moments
    jj = np.arange(p + 1)
    G = mom[:, jj[:, None] + jj[None, :]]                      # (K, p+1, p+1)
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(G)
    if np.any(~np.isfinite(cond)) or np.any(cond > 1e14):
        raise DesignError(f"the local polynomial design on the {side} side is singular; the "
                          "running variable has too few distinct values in the window")
    Ginv = np.linalg.inv(G)
    if idx.size == x.size and y.flags.c_contiguous:            # every unit: no gather
        ys = y if np.array_equal(idx, np.arange(x.size)) else np.take(y, idx, axis=0)
    else:
        ys = np.take(y, idx, axis=0)                           # (m, K)
    rhs = ((kw * ys).T @ xpow[:, : p + 1]) / hpow[:, : p + 1]  # (K, p+1)
    coef = np.einsum("kjl,kl->jk", Ginv, rhs)                  # (p+1, K)
    return LocPolyFit(coef=coef, h=h, n_eff=n_eff, rows=idx, n=x.size, kw=kw, y_win=ys,
                      xpow=xpow, ginv=Ginv)


def powers(u: np.ndarray, p: int) -> np.ndarray:
    """``u ** j`` for ``j = 0..p`` stacked on a new last axis (by repeated products).

    Examples
    --------
    >>> import numpy as np
    >>> powers(np.array([2.0]), 3).tolist()
    [[1.0, 2.0, 4.0, 8.0]]
    """
    out = np.empty(u.shape + (p + 1,))
    out[..., 0] = 1.0
    for j in range(1, p + 1):
        out[..., j] = out[..., j - 1] * u
    return out

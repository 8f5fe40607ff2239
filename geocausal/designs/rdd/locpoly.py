"""Batched one-sided local polynomial regression: every quantile in one array operation.

For side ``+`` (``x >= 0``) or ``-`` (``x < 0``) of a cutoff at 0 and a bandwidth ``h_k`` per
quantile ``k``, the fit solves

    alpha(k) = argmin sum_i 1{side} K(x_i / h_k) [Q_ik - sum_j alpha_j (x_i / h_k)^j]^2

so ``alpha_j`` is the ``j``-th coefficient in bandwidth-scaled units (the raw derivative is
``j! alpha_j / h^j``). The equivalent-kernel weights ``w_i(k) = e_j' (R'WR)^-1 r_i K_i`` are
returned for every coefficient, so ``alpha_j(k) = sum_i w_ij(k) Q_ik`` exactly.

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

    Attributes
    ----------
    coef : ndarray, shape (p + 1, K)
        Coefficients in bandwidth-scaled units; row 0 is the side limit at the cutoff.
    weights : ndarray, shape (n, K, p + 1)
        Equivalent-kernel weights of each coefficient (zero off the side and outside the window).
    fitted : ndarray, shape (n, K)
        The fitted polynomial at each unit's running variable (units on the side within the
        largest bandwidth; 0 elsewhere, where every weight is 0).
    h : ndarray, shape (K,)
        Bandwidths.
    n_eff : ndarray, shape (K,)
        Units with positive kernel weight.
    leverage : ndarray, shape (n, K)
        Diagonal of the local hat matrix ``K_i r_i' G^-1 r_i``.
    """

    coef: np.ndarray
    weights: np.ndarray
    fitted: np.ndarray
    h: np.ndarray
    n_eff: np.ndarray
    leverage: np.ndarray

    @property
    def intercept(self) -> np.ndarray:
        """The side limits ``m(k)``, shape ``(K,)``."""
        return self.coef[0]

    @property
    def w0(self) -> np.ndarray:
        """Intercept weights, shape ``(n, K)``."""
        return self.weights[..., 0]


def local_poly(
    x: np.ndarray,
    y: np.ndarray,
    h: np.ndarray | float,
    p: int,
    kernel: str,
    side: str,
) -> LocPolyFit:
    """Fit a one-sided local polynomial of order ``p`` at every quantile at once.

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
    mask = (x >= 0) if side == "plus" else (x < 0)
    mask &= np.abs(x) <= h.max()                               # the kernels vanish beyond h
    idx = np.flatnonzero(mask)
    xs = x[idx]
    u = xs[None, :] / h[:, None]                               # (K, m) on this side only
    kw = _k(u, kernel)
    n_eff = (kw > 0).sum(axis=1)
    bad = np.flatnonzero(n_eff < p + 1)
    if bad.size:
        j = bad[0]
        raise DesignError(
            f"only {int(n_eff[j])} units lie within bandwidth h={h[j]:.4g} on the "
            f"{'right (treated)' if side == 'plus' else 'left (control)'} side of the cutoff; "
            f"a local polynomial of order {p} needs at least {p + 1}. Widen the bandwidth, "
            "lower p, or check the cutoff")
    # R'WR has Hankel structure: only the 2p + 1 kernel moments sum_i K_i u_i^r are needed
    ys = y[idx].T                                              # (K, m)
    ku = [kw]
    for _ in range(2 * p):
        ku.append(ku[-1] * u)
    mom = np.stack([a.sum(axis=1) for a in ku], axis=-1)       # (K, 2p+1)
    jj = np.arange(p + 1)
    G = mom[:, jj[:, None] + jj[None, :]]                      # (K, p+1, p+1)
    with np.errstate(all="ignore"):
        cond = np.linalg.cond(G)
    if np.any(~np.isfinite(cond)) or np.any(cond > 1e14):
        raise DesignError(f"the local polynomial design on the {side} side is singular; the "
                          "running variable has too few distinct values in the window")
    Ginv = np.linalg.inv(G)
    rhs = np.stack([(ku[r] * ys).sum(axis=1) for r in range(p + 1)], axis=-1)   # (K, p+1)
    coef = np.einsum("kjl,kl->jk", Ginv, rhs)                  # (p+1, K)
    # equivalent-kernel weights G^-1 r_i K_i (a loop over the polynomial order only)
    W = np.zeros((x.size, K, p + 1))
    lev = np.zeros((K, idx.size))
    upow = np.ones_like(u)
    for a in range(p + 1):
        wa = sum(Ginv[:, a, b, None] * ku[b] for b in range(p + 1))
        W[idx, :, a] = wa.T
        lev += wa * upow
        upow = upow * u
    # fitted values on the side's window only; rows with zero weight everywhere get 0
    fitted = np.zeros((x.size, K))
    fitted[idx] = polyval_scaled(u.T, coef)
    leverage = np.zeros((x.size, K))
    leverage[idx] = lev.T
    return LocPolyFit(coef=coef, weights=W, fitted=fitted, h=h, n_eff=n_eff, leverage=leverage)


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


def polyval_scaled(u: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """``sum_j coef[j, k] u[i, k]^j`` by Horner's rule, shape of ``u``."""
    out = np.broadcast_to(coef[-1], u.shape).copy()
    for j in range(coef.shape[0] - 2, -1, -1):
        out = out * u + coef[j]
    return out


def _k(u: np.ndarray, name: str) -> np.ndarray:
    return kernel(u, name)


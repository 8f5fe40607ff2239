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
        The fitted polynomial evaluated at every unit's running variable.
    h : ndarray, shape (K,)
        Bandwidths.
    n_eff : ndarray, shape (K,)
        Units with positive kernel weight.
    """

    coef: np.ndarray
    weights: np.ndarray
    fitted: np.ndarray
    h: np.ndarray
    n_eff: np.ndarray

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
    R = powers(u, p)                                           # (K, m, p+1)
    RK = R * kw[..., None]
    G = np.sum(RK[..., :, None] * R[..., None, :], axis=1)     # (K, p+1, p+1)
    try:
        Ginv = np.linalg.inv(G)
    except np.linalg.LinAlgError:
        raise DesignError(f"the local polynomial design on the {side} side is singular; the "
                          "running variable has too few distinct values in the window") from None
    # rows G^-1 r_i K_i; a short loop over the polynomial order only
    Ws = sum(RK[..., j, None] * Ginv[:, None, :, j] for j in range(p + 1))   # (K, m, p+1)
    ys = y[idx].T                                              # (K, m)
    coef = np.sum(Ws * ys[..., None], axis=1).T                # (p+1, K)
    W = np.zeros((x.size, K, p + 1))
    W[idx] = Ws.transpose(1, 0, 2)
    uf = x[:, None] / h[None, :]
    fitted = polyval_scaled(uf, coef)
    return LocPolyFit(coef=coef, weights=W, fitted=fitted, h=h, n_eff=n_eff)


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


"""Diagnostics of a distributional RD: manipulation test, placebo cutoffs, donut, sensitivity.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).uniform(-1, 1, 2000)
>>> res = density_test(x)
>>> 0.0 <= res["p_value"] <= 1.0
True
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
from scipy import stats

from geocausal.designs.rdd.locpoly import local_poly
from geocausal.errors import DesignError


def density_test(x: np.ndarray, h: float | None = None, bin_width: float | None = None) -> dict[str, Any]:
    """McCrary (2008) test of a discontinuity in the density of the running variable at 0.

    The running variable (centred at the cutoff) is binned on each side; normalised bin
    counts are smoothed by a triangular-kernel local linear regression on each side, and the
    log difference of the two boundary densities ``theta`` is compared with its asymptotic
    standard error ``sqrt((24 / 5) (1/f_+ + 1/f_-) / (n h))``.

    Returns ``theta``, ``se``, ``z``, ``p_value``, ``f_plus``, ``f_minus``, ``h``, ``bin_width``.
    """
    x = np.asarray(x, dtype=float)
    n = x.size
    sd = np.std(x, ddof=1)
    b = bin_width or 2 * sd * n ** -0.5
    lo, hi = np.floor(x.min() / b) * b, np.ceil(x.max() / b) * b + b
    edges = np.arange(lo, hi + b / 2, b)
    counts, edges = np.histogram(x, bins=edges)
    mids = (edges[:-1] + edges[1:]) / 2
    dens = counts / (n * b)
    if h is None:
        # rule of thumb: a global quartic per side for curvature, as in McCrary (2008)
        hs = []
        for side in (mids >= 0, mids < 0):
            m, yv = mids[side], dens[side]
            X = m[:, None] ** np.arange(5)
            beta, *_ = np.linalg.lstsq(X, yv, rcond=None)
            resid2 = np.mean((yv - X @ beta) ** 2)
            f2 = X[:, :3] @ np.array([2 * beta[2], 6 * beta[3], 12 * beta[4]])
            rng = np.ptp(m)
            hs.append(3.348 * (resid2 * rng / max(np.sum(f2**2), 1e-12)) ** 0.2)
        # at least five bins on each side, so that the local linear fits are defined
        h = max(float(np.mean(hs)), 5 * b)
    fp = local_poly(mids, dens, h, 1, "triangular", "plus").intercept[0]
    fm = local_poly(mids, dens, h, 1, "triangular", "minus").intercept[0]
    if fp <= 0 or fm <= 0:
        raise DesignError("the estimated density of the running variable at the cutoff is not "
                          "positive on one side; no units near the cutoff")
    theta = float(np.log(fp) - np.log(fm))
    se = float(np.sqrt(24 / 5 * (1 / fp + 1 / fm) / (n * h)))
    z = theta / se
    return {"theta": theta, "se": se, "z": float(z), "p_value": float(2 * stats.norm.sf(abs(z))),
            "f_plus": float(fp), "f_minus": float(fm), "h": float(h), "bin_width": float(b)}


def placebo_cutoffs(x: np.ndarray, cutoffs: Sequence[float], fit: Callable[..., Any]) -> list[dict]:
    """Refit at placebo cutoffs using only units on the same side of the true cutoff (0).

    ``fit(mask, shift)`` must fit on the units in ``mask`` with the running variable shifted by
    ``shift`` and return ``(mean_effect, se, nullity_p)``.
    """
    out = []
    for c in cutoffs:
        mask = (x < 0) if c < 0 else (x >= 0)
        try:
            eff, se, p = fit(mask, c)
            out.append({"cutoff": float(c), "mean_effect": eff, "std_error": se, "nullity_p": p})
        except DesignError as exc:
            out.append({"cutoff": float(c), "mean_effect": np.nan, "std_error": np.nan,
                        "nullity_p": np.nan, "error": str(exc)})
    return out

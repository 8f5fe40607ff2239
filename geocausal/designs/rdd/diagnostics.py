"""Diagnostics of a distributional RD: manipulation test, placebo cutoffs, donut, sensitivity.

Each refit (:func:`placebo_cutoffs`, :func:`bandwidth_sensitivity`, :func:`donut_sensitivity`)
runs :func:`quick_refit`: the fit with the options of the main estimate, the effect on the mean
with its standard error, and the bootstrap p-value of the nullity test. A refit that cannot be
computed (too few units) gives a row of NaN with the reason, never a number.

Examples
--------
>>> import numpy as np
>>> x = np.random.default_rng(0).uniform(-1, 1, 2000)
>>> res = density_test(x)
>>> 0.0 <= res["p_value"] <= 1.0
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from geocausal.designs.rdd.bootstrap import curve_tests, draws, gaussian_draws
from geocausal.designs.rdd.effects import params_influence
from geocausal.designs.rdd.estimator import R3DResult, fit_r3d
from geocausal.designs.rdd.locpoly import local_poly
from geocausal.errors import DesignError
from geocausal.inference.bootstrap import multipliers


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




#: the bootstrap of a refit: (seed, n_boot, multiplier)
Boot = tuple[int, int, str]


def quick_refit(x: np.ndarray, Q: np.ndarray, g: np.ndarray, T: np.ndarray | None,
                fit_kw: Mapping[str, Any], boot: Boot) -> tuple[float, float, float, R3DResult]:
    """Mean effect, its standard error and the nullity p-value of one refit.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> x = rng.uniform(-1, 1, 400)
    >>> Q = (x + 2 * (x >= 0) + rng.normal(0, .3, 400))[:, None]
    >>> eff, se, p, _ = quick_refit(x, Q, np.array([.5]), None, {"h": 0.5}, (0, 199, "normal"))
    >>> bool(abs(eff - 2) < 5 * se), p < 0.01
    (True, True)
    """
    res = fit_r3d(x, Q, g, T=T, **fit_kw)
    params, infl = params_influence(res, ("mean",))
    se = float(np.sqrt(np.sum(infl[:, 0] ** 2)) / x.size)
    seed, n_boot, multiplier = boot
    if multiplier == "normal":
        D = gaussian_draws(res.score, n_boot, seed)
    else:
        D = draws(res.score, multipliers(x.size, n_boot, seed, multiplier))
    if g.size > 1:
        p = curve_tests(res.tau, res.se, D, g, ("nullity",))[0]["p_value"]
    else:
        p = float(np.mean(np.abs(D[:, 0]) >= abs(res.tau[0])))
    return float(params["mean"]), se, p, res


def placebo_cutoffs(x: np.ndarray, Q: np.ndarray, g: np.ndarray, cutoffs: Sequence[float],
                    cutoff: float, fit_kw: Mapping[str, Any], boot: Boot,
                    T: np.ndarray | None = None) -> pd.DataFrame:
    """Refit at placebo cutoffs, each on the units of its side of the true cutoff only.

    ``x`` is the running variable minus the true ``cutoff``; ``cutoffs`` are values of the
    running variable. Fuzzy designs (``T`` given) are refused row by row.

    Returns
    -------
    pandas.DataFrame
        ``cutoff``, ``mean_effect``, ``std_error``, ``nullity_p``, ``error``.

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(-1, 1, 800)
    >>> Q = (x + (x >= 0) + rng.normal(0, .3, 800))[:, None]
    >>> tab = placebo_cutoffs(x, Q, np.array([.5]), [-0.5], 0.0, {"h": 0.4}, (0, 199, "normal"))
    >>> list(tab.columns), bool(abs(tab.mean_effect[0]) < 0.5)
    (['cutoff', 'mean_effect', 'std_error', 'nullity_p', 'error'], True)
    """
    rows = []
    for c in cutoffs:
        shift = float(c) - float(cutoff)
        side = (x < 0) if shift < 0 else (x >= 0)
        try:
            if T is not None:
                raise DesignError("placebo cutoffs are computed for sharp designs")
            eff, se, p, _ = quick_refit(x[side] - shift, Q[side], g, None, fit_kw, boot)
            rows.append({"cutoff": float(c), "mean_effect": eff, "std_error": se,
                         "nullity_p": p, "error": ""})
        except DesignError as exc:
            rows.append({"cutoff": float(c), "mean_effect": np.nan, "std_error": np.nan,
                         "nullity_p": np.nan, "error": str(exc)})
    return pd.DataFrame(rows)


def bandwidth_sensitivity(x: np.ndarray, Q: np.ndarray, g: np.ndarray, T: np.ndarray | None,
                          res: R3DResult, factors: Sequence[float],
                          fit_kw: Mapping[str, Any], boot: Boot) -> pd.DataFrame:
    """Refits at the fitted bandwidths times each factor (the first stage's bandwidth kept).

    Returns
    -------
    pandas.DataFrame
        ``factor``, ``h_median``, ``mean_effect``, ``std_error``, ``nullity_p``.
    """
    rows = []
    for f in factors:
        if fit_kw.get("method") == "frechet":  # one bandwidth per side
            h = {"plus": float(res.plus.h[0] * f), "minus": float(res.minus.h[0] * f)}
        else:
            h = {"plus": res.plus.h * f, "minus": res.minus.h * f}
        kw = dict(fit_kw, h=h)
        if T is not None and res.first_stage is not None:
            kw["h_den"] = res.first_stage["h"]
        try:
            eff, se, p, _ = quick_refit(x, Q, g, T, kw, boot)
        except DesignError:
            eff, se, p = np.nan, np.nan, np.nan
        rows.append({"factor": float(f), "h_median": float(np.median(res.plus.h) * f),
                     "mean_effect": eff, "std_error": se, "nullity_p": p})
    return pd.DataFrame(rows)


def donut_sensitivity(x: np.ndarray, Q: np.ndarray, g: np.ndarray, T: np.ndarray | None,
                      radii: Sequence[float], fit_kw: Mapping[str, Any],
                      boot: Boot) -> pd.DataFrame:
    """Refits without the units nearer the cutoff than each radius.

    Returns
    -------
    pandas.DataFrame
        ``radius``, ``n_dropped``, ``mean_effect``, ``std_error``, ``nullity_p``.
    """
    rows = []
    for r in radii:
        keep = np.abs(x) >= r
        try:
            eff, se, p, _ = quick_refit(x[keep], Q[keep], g, None if T is None else T[keep],
                                        fit_kw, boot)
        except DesignError:
            eff, se, p = np.nan, np.nan, np.nan
        rows.append({"radius": float(r), "n_dropped": int((~keep).sum()), "mean_effect": eff,
                     "std_error": se, "nullity_p": p})
    return pd.DataFrame(rows)

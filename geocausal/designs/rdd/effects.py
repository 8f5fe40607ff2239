"""Effects, influence columns and the bootstrap assembly of a fitted distributional RD.

From an :class:`~geocausal.designs.rdd.estimator.R3DResult` this module builds what the
estimate reports: the effects on functionals with their influence columns
(:func:`params_influence`, :func:`conventional`), the multiplier matrix
(:func:`multiplier_matrix`) and the pointwise and uniform bands, sup tests and functional
effects of the multiplier bootstrap (:func:`bands`), with t critical values at the
Bell-McCaffrey degrees of freedom of each quantile when asked (:func:`small_sample_df`).

Examples
--------
>>> import numpy as np
>>> from geocausal.designs.rdd.estimator import fit_r3d
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 300)
>>> Q = np.sort(x[:, None] + (x[:, None] >= 0) + rng.normal(size=(300, 3)), axis=1)
>>> res = fit_r3d(x, Q, np.array([.25, .5, .75]), h=0.6)
>>> params, infl = params_influence(res, ("mean",))
>>> list(params.index), infl.shape
(['mean'], (300, 1))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from geocausal.designs.rdd.bootstrap import (
    curve_tests,
    draws,
    functional_effects,
    functional_gradient,
    gaussian_draws,
    uniform_band,
)
from geocausal.designs.rdd.estimator import R3DResult
from geocausal.designs.rdd.quantiles import FUNCTIONALS, mean_functional
from geocausal.designs.rdd.smallsample import normal_equivalent, t_critical
from geocausal.errors import DataError
from geocausal.inference.bootstrap import multipliers
from geocausal.inference.variance import cluster_factor, cluster_sums

#: multipliers drawn from the exact Gaussian law: ``("gaussian", n_boot, seed)``
GaussianSpec = tuple[str, int, int]


def kind_defaults(point: bool, p: int | None, bias_correction: str | None,
                  residuals: str | None, selector: str | None,
                  per_side: bool) -> tuple[int, str, str, str]:
    """Defaults by outcome kind: rdrobust's for point masses, the R3D paper's for distributions.

    Examples
    --------
    >>> kind_defaults(True, None, None, None, None, False)
    (1, 'explicit', 'nn', 'mserd')
    >>> kind_defaults(False, None, None, None, None, False)
    (2, 'implicit', 'hc2', 'mse')
    """
    if point:
        return (1 if p is None else p, bias_correction or "explicit", residuals or "nn",
                selector or ("msetwo" if per_side else "mserd"))
    return (2 if p is None else p, bias_correction or "implicit", residuals or "hc2",
            selector or "mse")


def side_column(res: R3DResult, vp: np.ndarray, vm: np.ndarray) -> np.ndarray:
    """``n (S_+ vp - S_- vm)`` per unit, from the two sides' windows (disjoint units)."""
    n = res.plus.n
    col = np.zeros(n)
    col[res.plus.rows] = res.plus.score_window @ vp
    col[res.minus.rows] = -(res.minus.score_window @ vm)
    return n * col


def params_influence(res: R3DResult, functionals: Sequence[str]) -> tuple[pd.Series, np.ndarray]:
    """Effects on the mean (and, in sharp designs, the other functionals) and their
    influence columns (``n`` times the scores: the ``Estimate.from_influence`` convention).
    """
    n = res.plus.n
    g = res.q_grid
    if g.size == 1:
        return pd.Series({"mean": float(res.tau[0])}), n * res.score[:, :1]
    wmean = functional_gradient(mean_functional, res.tau, g)
    mean_col = n * res.score @ wmean if res.fuzzy else side_column(res, wmean, wmean)
    names, vals, cols = ["mean"], [float(mean_functional(res.tau, g))], [mean_col]
    if not res.fuzzy:
        for name in functionals or ():
            if name == "mean":
                continue
            F = FUNCTIONALS[name]
            gp = functional_gradient(F, res.plus.m, g)
            gm = functional_gradient(F, res.minus.m, g)
            names.append(name)
            vals.append(float(F(res.plus.m, g) - F(res.minus.m, g)))
            cols.append(side_column(res, gp, gm))
    return pd.Series(dict(zip(names, vals))), np.column_stack(cols)


def conventional(res: R3DResult) -> tuple[float, np.ndarray] | None:
    """The conventional (order-p, uncorrected) effect and its influence column, or ``None``.

    Only for one quantile of an explicitly bias-corrected fit (a point-mass RD): rdrobust's
    "Conventional" row beside the robust bias-corrected one.
    """
    if res.q_grid.size != 1 or res.plus.m_conventional is None or \
            res.minus.m_conventional is None:
        return None
    n = res.plus.n

    def score(side):
        out = np.zeros(n)
        out[side.rows] = side.score_conventional_window[:, 0]
        return out

    delta = float(res.plus.m_conventional[0] - res.minus.m_conventional[0])
    s = score(res.plus) - score(res.minus)
    if res.first_stage is None:
        return delta, n * s
    tp, tm = res.first_stage["plus"], res.first_stage["minus"]
    jump = float(tp.m_conventional[0] - tm.m_conventional[0])
    sT = score(tp) - score(tm)
    return delta / jump, n * (s / jump - sT * delta / jump**2)


def multiplier_matrix(xi: Any, multiplier: str, n_boot: int, seed: int, n: int,
                      rows: np.ndarray, G: int,
                      clustered: bool) -> np.ndarray | GaussianSpec:
    """The multipliers of the bootstrap over the ``G`` units (or clusters) with a score.

    Normal multipliers without a fixed ``xi`` are drawn from their exact law (a
    ``("gaussian", n_boot, seed)`` spec for :func:`bands`); a fixed ``xi`` may have one row
    (or column) per unit (``n``) or per unit with a non-zero score (``G``).
    """
    if xi is None and multiplier == "normal":
        return ("gaussian", int(n_boot), int(seed))
    if xi is None:
        return multipliers(G, n_boot, seed, multiplier)
    xi_m = np.asarray(xi, dtype=float)
    if not clustered and n in xi_m.shape and G not in xi_m.shape:
        xi_m = xi_m[rows] if xi_m.shape[0] == n else xi_m[:, rows]
    xi_m = xi_m.T if xi_m.shape[0] == G and xi_m.shape[1] != G else xi_m
    if xi_m.shape[1] != G:
        raise DataError(f"xi must have one row per unit (or cluster) with a non-zero weight "
                        f"({G}) or per unit ({n}); got {xi_m.shape}")
    return xi_m


def small_sample_df(res: R3DResult, small_sample: str, clusters: np.ndarray | None,
                    rows: np.ndarray) -> np.ndarray | None:
    """Degrees of freedom per quantile: Bell-McCaffrey, or ``G - 1`` with clusters."""
    if small_sample != "bell-mccaffrey":
        return None
    if clusters is not None:
        G = np.unique(clusters[rows]).size
        return np.full(res.q_grid.size, float(max(G - 1, 1)))
    return res.df


def bands(res: R3DResult, xi: np.ndarray | GaussianSpec, clusters: np.ndarray | None,
          alpha: float, studentize: bool, tests: Sequence[str],
          test_range: Sequence[float] | None, functionals: Sequence[str], rows: np.ndarray,
          df: np.ndarray | None = None) -> dict[str, Any]:
    """Bands, tests and functionals from the bootstrap over the units in ``rows``.

    ``rows`` are the units with a non-zero score (every other unit adds exactly zero to each
    draw), so multipliers are drawn for them only. With clusters the scores are summed within
    clusters (one multiplier each) and scaled by the small-cluster factor ``G / (G - 1)``.
    With degrees of freedom ``df`` (one per quantile) every normal critical value becomes
    the t critical value of the same level
    (:func:`geocausal.designs.rdd.smallsample.t_critical`) and the tests compare the
    t statistics' normal equivalents with the Gaussian draws.

    Returns
    -------
    dict
        ``curve`` (quantile, estimate, std_error, conf_low, conf_high, uniform_low,
        uniform_high), ``tests``, ``functionals`` (or None), ``crit`` (uniform critical
        value) and ``draws``.
    """
    K = res.q_grid.size
    sides = not res.fuzzy and bool(functionals) and K > 1
    if clusters is None and sides:
        # the two sides' scores live on disjoint units: draw each side from its own window
        Sp = res.plus.score_window[res.plus.support]
        Sm = res.minus.score_window[res.minus.support]
        se = np.sqrt(np.sum(Sp**2, axis=0) + np.sum(Sm**2, axis=0))
        if isinstance(xi, tuple):         # ("gaussian", n_boot, seed): the exact law
            D_all = gaussian_draws([Sp, Sm], int(xi[1]), int(xi[2]), disjoint=True)
        else:
            cols = [np.searchsorted(rows, s.rows[s.support]) for s in (res.plus, res.minus)]
            D_all = np.hstack([draws(Sp, xi[:, cols[0]]), draws(Sm, xi[:, cols[1]])])
    else:
        def summed(S: np.ndarray) -> np.ndarray:
            return S if clusters is None else cluster_sums(S, clusters[rows])

        S = summed(res.score[rows])
        fac = cluster_factor(S.shape[0]) if clusters is not None else 1.0
        se = np.sqrt(fac * np.sum(S**2, axis=0))
        blocks = [summed(res.plus.score[rows]), summed(res.minus.score[rows])] if sides else [S]
        # the small-cluster factor G / (G - 1) of the variance applies to the draws too
        blocks = [np.sqrt(fac) * blk for blk in blocks]
        if isinstance(xi, tuple):
            D_all = gaussian_draws(blocks, int(xi[1]), int(xi[2]))
        else:
            D_all = np.hstack([draws(b, xi) for b in blocks])
    Dp: np.ndarray | None = None
    Dm: np.ndarray | None = None
    if sides:
        Dp, Dm = D_all[:, :K], D_all[:, K:]
        D = Dp - Dm                       # the score of tau is plus minus minus
    else:
        D = D_all
    z = stats.norm.ppf(1 - alpha / 2)
    ulo, uhi, crit = uniform_band(res.tau, se, D, alpha, studentize)
    tau_test = res.tau
    if df is not None:
        z = np.where(np.isfinite(df), stats.t.ppf(1 - alpha / 2, np.where(np.isfinite(df), df, 1)),
                     z)
        pos = se > 0
        half = uhi - res.tau
        half[pos] = se[pos] * t_critical(half[pos] / se[pos], df[pos])
        ulo, uhi = res.tau - half, res.tau + half
        tau_test = res.tau.copy()
        tau_test[pos] = np.sign(res.tau[pos]) * se[pos] * normal_equivalent(
            res.tau[pos] / se[pos], df[pos])
    curve = pd.DataFrame({"quantile": res.q_grid, "estimate": res.tau, "std_error": se,
                          "conf_low": res.tau - z * se, "conf_high": res.tau + z * se,
                          "uniform_low": ulo, "uniform_high": uhi})
    tt = pd.DataFrame(curve_tests(tau_test, se, D, res.q_grid, tests, test_range, studentize)) \
        if tests and K > 1 else pd.DataFrame(columns=["test", "range", "statistic", "p_value"])
    ft = None
    if functionals and not res.fuzzy and K > 1:
        ft = pd.DataFrame(functional_effects(res.plus.m, res.minus.m, Dp, Dm, res.q_grid,
                                             functionals, alpha))
    return {"curve": curve, "tests": tt, "functionals": ft, "crit": crit, "draws": D}

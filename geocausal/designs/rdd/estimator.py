"""The R3D estimator: side limits of quantile functions at a cutoff, sharp or fuzzy.

Arrays in, arrays out. ``fit_r3d`` takes the running variable (already centred at the cutoff)
and an ``(n, K)`` matrix of per-unit quantiles and returns the quantile effect ``tau(q)``, the
side limits, the bandwidths and the *scores* ``s_i(q)`` with ``tau_hat(q) - tau(q) ~ sum_i
s_i(q)``, which drive the pointwise variance (``sum_i s_i^2``) and the multiplier bootstrap.

Estimators
----------
``"simple"``
    A bandwidth per quantile, a local polynomial per quantile (all at once), then the side
    limits are rearranged (sorted) to be monotone; scores follow the permutation.
``"frechet"``
    One common bandwidth; the side limits and every unit's fitted curve are projected onto
    non-decreasing curves (PAVA): local Frechet regression in Wasserstein-2 space.

Bias correction
---------------
``"implicit"`` (the paper's default): the bandwidth is optimal for order ``s`` and the fit uses
``p = s + 1`` (robust bias correction with equal bandwidths). ``"explicit"``: the
Calonico-Cattaneo-Titiunik correction, ``m_bc = m_p(h) - (sum_i w_i x_i^(p+1)) beta_(p+1)(b)``
with ``beta_(p+1)`` from an order ``p + 1`` fit at bandwidth ``b``; the scores then use the
bias-corrected equivalent kernel and residuals of the order ``p + 1`` fit (rdrobust's robust
variance with ``vce="hc0"``).

Deviations from the reference R implementation (R3D), each tested
-----------------------------------------------------------------
- Bootstrap scores use every unit with a non-zero equivalent-kernel weight; the reference keeps
  only positive weights (about a quarter of the weight mass is lost for p = 2).
  ``positive_weights_only=True`` reproduces it for golden comparisons.
- Effects on functionals (Gini, variance, mean) are tested with a recentred bootstrap.
- Bandwidth pilots use the chosen kernel; the second step uses the ``(s+1)``-th derivative with
  its kernel constants; within-unit weights reach the selector through the weighted quantiles.
- In the fuzzy design the first-stage scores use the first stage's own weights and residuals
  (the reference picks its residual rows from the outcome weights).
- Rearrangement is the exact sort on the grid by default (the reference's interpolating
  rearrangement moves monotone curves by up to about 1e-3, and spreads a large violation over
  its neighbours: up to 0.11 on the fuzzy reference fit); ``rearrangement="interpolate"``
  reproduces the reference to 1e-12.
- Fuzzy design with ``bias_correction="explicit"``: the effect is the ratio of the
  bias-corrected jumps; rdrobust instead corrects the conventional ratio along its
  linearisation. Both are first-order equivalent; the conventional fuzzy estimate and its
  delta-method variance equal rdrobust's.
- Scores are leverage-scaled (``vce="hc2"``) by default; ``vce="hc0"`` gives the reference's
  plain residuals and rdrobust's ``vce="hc0"``.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(1)
>>> x = rng.uniform(-1, 1, 300)
>>> Q = (x + 2.0 * (x >= 0))[:, None] + np.linspace(-1, 1, 5)
>>> r = fit_r3d(x, Q, np.linspace(.1, .9, 5), h=0.5, p=1, kernel="triangular")
>>> np.round(r.tau, 6).tolist()
[2.0, 2.0, 2.0, 2.0, 2.0]
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cached_property
from typing import Any

import numpy as np

from geocausal.designs.rdd.bandwidth import Bandwidths, select_bandwidth
from geocausal.designs.rdd.bwselect import (
    SELECTORS,
    RDBandwidths,
    nn_residuals,
    select_rd_bandwidth,
)
from geocausal.designs.rdd.frechet import isotonic_rows, rearrange, rearrange_interpolated
from geocausal.designs.rdd.locpoly import LocPolyFit, kernel_name, local_poly, side_window
from geocausal.designs.rdd.smallsample import satterthwaite_parts
from geocausal.errors import DataError, DesignError

METHODS = ("simple", "frechet")


@dataclass(frozen=True)
class SideFit:
    """One side of the cutoff: limits, scores, the fit behind them.

    Scores and weights are kept on the side's window of units (``rows``; every other unit has
    a zero weight and score); ``score`` and ``weights`` give the full ``(n, K)`` arrays.
    """

    m: np.ndarray                # (K,) side limits (monotone)
    fit: LocPolyFit
    h: np.ndarray                # (K,)
    raw: np.ndarray              # (K,) limits before the monotone projection
    rows: np.ndarray             # (m,) the window units, increasing
    score_window: np.ndarray     # (m, K) scores of m on the window (columns in the order of m)
    weights_unsorted: np.ndarray  # (m, K) effective intercept weights, columns of ``raw``
    order: np.ndarray            # (K,) the permutation from ``raw`` to ``m``'s columns
    # explicit bias correction only: the order-p limits before the correction and their
    # scores with the order-p residuals (rdrobust's "Conventional" row), on the window
    m_conventional: np.ndarray | None = None
    score_conventional_window: np.ndarray | None = None
    df_parts: tuple[np.ndarray, np.ndarray] | None = None  # tr(C), tr(C^2) per column of m
    mix: np.ndarray | None = None  # (K, K) linear rearrangement map (``m = mix @ raw``), if any

    @property
    def n(self) -> int:
        """Number of units."""
        return self.fit.n

    @cached_property
    def support(self) -> np.ndarray:
        """Boolean mask of the window rows with a non-zero score at some quantile, ``(m,)``."""
        return np.any(self.score_window != 0, axis=1)

    @cached_property
    def score(self) -> np.ndarray:
        """Scores of ``m``, ``(n, K)``."""
        out = np.zeros((self.n, self.score_window.shape[1]))
        out[self.rows] = self.score_window
        return out

    @cached_property
    def weights(self) -> np.ndarray:
        """Effective intercept weights (bias-corrected if explicit), ``(n, K)``.

        Columns follow ``m`` after a sort; after the interpolated rearrangement (which mixes
        quantiles, ``m = mix @ raw``) they are the weights of ``raw``.
        """
        out = np.zeros((self.n, self.weights_unsorted.shape[1]))
        out[self.rows] = self.weights_unsorted[:, self.order]
        return out


@dataclass(frozen=True)
class R3DResult:
    """Output of :func:`fit_r3d`."""

    q_grid: np.ndarray
    tau: np.ndarray
    plus: SideFit
    minus: SideFit
    method: str
    p: int
    kernel: str
    bias_correction: str
    bandwidths: Bandwidths | None = None
    first_stage: dict[str, Any] | None = None
    extra: dict[str, Any] = field(default_factory=dict)

    @cached_property
    def score(self) -> np.ndarray:
        """Scores ``s_i(q)`` of ``tau``, ``(n, K)``: plus minus minus (delta method if fuzzy)."""
        score = self.plus.score - self.minus.score
        if self.first_stage is None:
            return score
        jump, sT = self.first_stage["jump"], self.first_stage["score"]
        delta = self.plus.m - self.minus.m
        return score / jump - np.outer(sT, delta) / jump**2

    @property
    def se(self) -> np.ndarray:
        """Pointwise standard errors ``sqrt(sum_i s_i(q)^2)``."""
        return np.sqrt(np.sum(self.score**2, axis=0))

    @cached_property
    def df(self) -> np.ndarray:
        """Bell-McCaffrey degrees of freedom of the variance of ``tau`` per quantile, ``(K,)``.

        Satterthwaite's ``tr(C)^2 / tr(C^2)`` over both sides (see
        :mod:`geocausal.designs.rdd.smallsample`); in a fuzzy design those of the outcome
        jump (the first stage, estimated on the same window, is not counted).
        """
        tp, t2p = self.plus.df_parts
        tm, t2m = self.minus.df_parts
        with np.errstate(divide="ignore", invalid="ignore"):
            df = (tp + tm) ** 2 / (t2p + t2m)
        return np.where(np.isfinite(df) & (df > 0), df, np.inf)

    @property
    def fuzzy(self) -> bool:
        """Whether a first stage was estimated."""
        return self.first_stage is not None

    @cached_property
    def support(self) -> np.ndarray:
        """Increasing indices of the units with a non-zero score (plus, minus or first stage)."""
        parts = [self.plus.rows[self.plus.support], self.minus.rows[self.minus.support]]
        if self.first_stage is not None:
            parts.append(np.flatnonzero(self.first_stage["score"] != 0))
        return np.unique(np.concatenate(parts))


WEAK_FIRST_STAGE_F = 10.0
"""A fuzzy first stage with ``F = (jump / se)^2`` below this (``|t| < 3.16``) is flagged weak
(the Staiger-Stock rule of thumb): the Wald ratio is then biased towards the naive contrast and
its delta-method bands under-cover."""


def weak_first_stage(first: dict[str, Any] | None) -> str | None:
    """A warning message when a fuzzy first stage is weak (``F < 10``), else ``None``.

    Examples
    --------
    >>> weak_first_stage({"jump": 0.05, "se": 0.1, "t": 0.5, "F": 0.25, "n_window": 80})[:26]
    'weak first stage: the jump'
    >>> weak_first_stage({"jump": 0.8, "se": 0.1, "t": 8.0, "F": 64.0, "n_window": 80}) is None
    True
    """
    if first is None or first["F"] >= WEAK_FIRST_STAGE_F:
        return None
    return (f"weak first stage: the jump in take-up at the cutoff is {first['jump']:.3g} "
            f"(se {first['se']:.3g}, t = {first['t']:.2f}, F = {first['F']:.2f} < "
            f"{WEAK_FIRST_STAGE_F:g}) over {first['n_window']} units in the first-stage window; "
            "the fuzzy (Wald) ratio and its delta-method bands are unreliable. Report the "
            "sharp reduced form, or widen the bandwidth h_den")


def _side_bandwidths(h: Any, K: int) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(h, dict):
        if set(h) != {"plus", "minus"}:
            raise DataError(f"a per-side bandwidth dict needs keys 'plus' and 'minus', got {sorted(h)}")
        hp, hm = h["plus"], h["minus"]
    else:
        hp = hm = h
    out = []
    for v in (hp, hm):
        a = np.asarray(v, dtype=float).ravel()
        if a.size not in (1, K):
            raise DataError(f"bandwidth has {a.size} values; give one, or one per quantile ({K})")
        out.append(np.broadcast_to(a, (K,)).copy())
    return out[0], out[1]


def _vce_scale(vce: str, fit: LocPolyFit) -> np.ndarray | float:
    """Residual scaling of the scores on the fit's window."""
    if vce == "hc0":
        return 1.0
    if vce == "hc1":
        k = fit.coef.shape[0]
        return np.sqrt(fit.n_eff / np.maximum(fit.n_eff - k, 1))[None, :]
    lev = fit.leverage_values()                  # a fresh array, transformed in place
    np.clip(lev, 0.0, 0.99, out=lev)
    np.subtract(1.0, lev, out=lev)
    if vce == "hc2":
        np.sqrt(lev, out=lev)
    return np.divide(1.0, lev, out=lev)


def _one_side(x, Y, h, b, p, kern, side, method, bias_correction, positive_only, vce="hc0",
              rearrangement="sort", q_grid=None):
    """Side limits and their scores; every array lives on the side's window of units."""
    explicit = bias_correction == "explicit"
    rows = side_window(x, max(h.max(), b.max()) if explicit else h.max(), side)
    fit = local_poly(x, Y, h, p, kern, side, rows=rows)
    res_fit = fit
    w = fit.w0_window                                            # (m, K)
    m = fit.intercept
    fitted = None               # the order-p fit's values, computed into the residuals below
    if explicit:
        fq = local_poly(x, Y, b, p + 1, kern, side, rows=rows)
        xp1 = x[rows] ** (p + 1)
        c = xp1 @ w                                              # bias of m per unit beta
        wq = fq.weight_window(p + 1) / b ** (p + 1)              # raw-unit weights of beta_(p+1)
        beta = fq.coef[p + 1] / b ** (p + 1)
        m = m - c * beta
        w = w - c * wq
        # residuals of the order p+1 fit wherever the corrected weights are non-zero (as
        # rdrobust: its polynomial evaluated on the side's units, also beyond b when h > b)
        fitted = fq.fitted_values()
        res_fit = fq
    raw = m.copy()
    resid_fitted = fitted
    if method == "frechet":
        m = isotonic_rows(m[None, :])[0]
        nz = np.flatnonzero(np.any(w != 0, axis=1))
        resid_fitted = fit.fitted_values() if fitted is None else fitted.copy()
        resid_fitted[nz] = isotonic_rows(resid_fitted[nz])
    scale = 1.0
    if vce == "nn":               # nearest-neighbour residuals on the window (rdrobust's default)
        e = _nn_window(x[rows], fit.y_win)
    else:
        # residuals y - fitted, written over a fresh copy of the fitted values (every (m, K)
        # temporary costs page faults at this size)
        e = fit.fitted_values() if resid_fitted is None else resid_fitted   # fresh either way
        np.subtract(fit.y_win, e, out=e)
        scale = _vce_scale(vce, res_fit)
        e *= scale
    # Bell-McCaffrey degrees of freedom of the variance (small-sample critical values)
    tr, tr2 = satterthwaite_parts(res_fit, np.where(w > 0, w, 0.0) if positive_only else w,
                                  scale, overwrite_scale=True)
    conv = (None, None)
    if explicit:
        ec = e if vce == "nn" else np.subtract(fit.y_win, fit.fitted_window) * _vce_scale(vce, fit)
        conv = (fit.intercept.copy(), ec * fit.w0_window)
    e *= w
    if positive_only:
        score_w = np.where(w > 0, e, 0.0)
    else:
        # where w == 0 (outside the kernel support) the product is already 0 (e is finite)
        score_w = e
    order = np.arange(m.size)
    mix = None
    if method == "simple" and rearrangement == "interpolate" and m.size > 1:
        m, mix = rearrange_interpolated(m, q_grid)
        score_w = score_w @ mix.T
        am = np.abs(mix) / np.abs(mix).sum(axis=1, keepdims=True)   # df of the mixed columns:
        tr, tr2 = am @ tr, am @ tr2                                 # weighted averages
    elif method == "simple":
        m, order = rearrange(m)
        if np.any(order != np.arange(order.size)):      # already monotone: nothing to permute
            score_w = score_w[:, order]
            tr, tr2 = tr[order], tr2[order]
    return SideFit(m=m, fit=fit, h=np.asarray(h, float), raw=raw, rows=rows,
                   score_window=score_w, weights_unsorted=w, order=order, df_parts=(tr, tr2),
                   m_conventional=conv[0], score_conventional_window=conv[1], mix=mix)


def _nn_window(xw: np.ndarray, Yw: np.ndarray) -> np.ndarray:
    """Nearest-neighbour residuals (3 neighbours) of the window's rows, in the rows' order."""
    o = np.argsort(xw, kind="stable")
    out = np.empty(Yw.shape, dtype=float)
    out[o] = nn_residuals(xw[o], Yw[o], nnmatch=3)
    return out


def _point_mass_bandwidths(x, Q, T, p, kern, bandwidth, vce, per_side):
    """Bandwidths from rdrobust's selector (``bandwidth`` in SELECTORS), point-mass outcomes."""
    if Q.shape[1] > 1 and np.ptp(Q, axis=1).max() > 0:
        raise DataError(f"bandwidth='{bandwidth}' is rdrobust's selector for point-mass (scalar) "
                        "outcomes; distribution-valued outcomes take bandwidth='mse' or 'cer'")
    two = bandwidth in ("msetwo", "certwo", "msecomb2", "cercomb2")
    if per_side and not two:
        raise DataError(f"per_side=True asks for a bandwidth per side but bandwidth='{bandwidth}' "
                        "selects one common bandwidth; use bandwidth='msetwo' or 'certwo'")
    if T is not None and two:
        raise DataError(f"bandwidth='{bandwidth}' selects a bandwidth per side; the fuzzy design's "
                        "first stage takes one: use 'mserd', 'msesum', 'msecomb1' or their cer*")
    return select_rd_bandwidth(x, Q[:, 0], treatment=T, p=p, kernel=kern, bwselect=bandwidth,
                               vce=vce)


def fit_r3d(
    x: np.ndarray,
    Q: np.ndarray,
    q_grid: np.ndarray,
    *,
    T: np.ndarray | None = None,
    method: str = "simple",
    p: int = 2,
    s: int = 1,
    kernel: str = "triangular",
    h: Any = None,
    h_den: float | None = None,
    b: Any = None,
    bandwidth: str = "mse",
    per_side: bool = False,
    bias_correction: str = "implicit",
    positive_weights_only: bool = False,
    vce: str = "hc2",
    rearrangement: str = "sort",
) -> R3DResult:
    """Fit the distributional RD at every quantile of ``q_grid``.

    Parameters
    ----------
    x
        Running variable minus the cutoff, ``(n,)``.
    Q
        Per-unit quantiles, ``(n, K)``.
    q_grid
        The ``K`` quantile levels.
    T
        Treatment take-up for the fuzzy design (``None``: sharp).
    method
        ``"simple"`` or ``"frechet"``.
    p, s
        Order of the estimating polynomial and of the polynomial the bandwidth is optimal for.
    kernel
        ``"triangular"``, ``"epanechnikov"`` or ``"uniform"``.
    h
        User bandwidth: scalar, one per quantile, or ``{"plus": ..., "minus": ...}``;
        ``None`` selects it (MSE per quantile for "simple", IMSE common for "frechet").
    h_den
        Bandwidth of the first stage (fuzzy); selected when ``None``.
    b
        Bias bandwidth of the explicit correction (defaults to ``h``).
    bandwidth
        ``"mse"`` or ``"cer"`` (coverage-error rule) for selected bandwidths, or for point-mass
        outcomes one of rdrobust's selectors (:data:`~geocausal.designs.rdd.bwselect.SELECTORS`:
        ``"mserd"``, ``"msetwo"``, ``"cerrd"``, ...; ``h`` and ``b`` per side, equal to
        ``rdbwselect`` with ``q = p + 1``; stored in ``extra["rd_bandwidths"]``).
    per_side
        Select a separate bandwidth on each side.
    bias_correction
        ``"implicit"`` or ``"explicit"``.
    vce
        Residual scaling of the scores: ``"hc0"`` (plain residuals; rdrobust's ``vce="hc0"``),
        ``"hc1"`` (degrees of freedom), ``"hc2"`` (default; leverage ``1/sqrt(1 - h_ii)``) or
        ``"hc3"`` (``1/(1 - h_ii)``), with the leverage of the local fit.
    rearrangement
        How the "simple" limits are made monotone: ``"sort"`` (default; the exact sort on the
        grid) or ``"interpolate"`` (the reference implementation's rearrangement of the linear
        interpolant on a fine grid); see :mod:`geocausal.designs.rdd.frechet`.
    positive_weights_only
        Reproduce the reference implementation's quirk of dropping units with negative
        equivalent-kernel weights from the scores (for golden tests only; biased variance).
    """
    if method not in METHODS:
        raise DataError(f"method '{method}' is not one of {METHODS}")
    if bias_correction not in ("implicit", "explicit"):
        raise DataError(f"bias_correction '{bias_correction}' is not 'implicit' or 'explicit'")
    if rearrangement not in ("sort", "interpolate"):
        raise DataError(f"rearrangement '{rearrangement}' is not 'sort' or 'interpolate'")
    if vce not in ("nn", "hc0", "hc1", "hc2", "hc3"):
        raise DataError(f"vce '{vce}' is not one of 'nn', 'hc0', 'hc1', 'hc2', 'hc3'")
    if bandwidth not in ("mse", "cer", *SELECTORS):
        raise DataError(f"bandwidth rule '{bandwidth}' is not 'mse', 'cer' or one of {SELECTORS}")
    if int(p) != p or p < 0:
        raise DataError(f"polynomial order p={p} must be a non-negative integer")
    kern = kernel_name(kernel)
    x = np.asarray(x, dtype=float)
    Q = np.ascontiguousarray(Q, dtype=float)     # row-major: window rows are gathered often
    K = Q.shape[1]
    rdbw: RDBandwidths | None = None
    if h is None and bandwidth in SELECTORS:
        rdbw = _point_mass_bandwidths(x, Q, T, p, kern, bandwidth, vce, per_side)
        h = {"plus": rdbw.h_right, "minus": rdbw.h_left}
        b = {"plus": rdbw.b_right, "minus": rdbw.b_left} if b is None else b
        h_den = rdbw.h_left if T is not None and h_den is None else h_den
    bws = None
    if h is None:
        bws = select_bandwidth(x, Q, s=s, kernel=kern, common=method == "frechet",
                               per_side=per_side, coverage=bandwidth == "cer")
        hp, hm = bws.h_plus, bws.h_minus
    else:
        hp, hm = _side_bandwidths(h, K)
    if method == "frechet" and (np.ptp(hp) > 0 or np.ptp(hm) > 0):
        raise DataError("the 'frechet' estimator uses one common bandwidth; pass a scalar h")
    bp, bm = (hp, hm) if b is None else _side_bandwidths(b, K)
    args = (p, kern)
    grid = np.asarray(q_grid, float)
    plus = _one_side(x, Q, hp, bp, *args, "plus", method, bias_correction, positive_weights_only,
                     vce, rearrangement, grid)
    minus = _one_side(x, Q, hm, bm, *args, "minus", method, bias_correction,
                      positive_weights_only, vce, rearrangement, grid)
    delta = plus.m - minus.m
    first = None
    if T is not None:
        T = np.asarray(T, dtype=float)
        if h_den is None:
            hd = select_bandwidth(x, T, s=s, kernel=kern, coverage=bandwidth == "cer").h[0]
        else:
            hd = float(h_den)
        tp = _one_side(x, T[:, None], np.array([hd]), np.array([hd if b is None else
                       float(np.mean(bp))]), *args, "plus", "simple", bias_correction,
                       positive_weights_only, vce)
        tm = _one_side(x, T[:, None], np.array([hd]), np.array([hd if b is None else
                       float(np.mean(bm))]), *args, "minus", "simple", bias_correction,
                       positive_weights_only, vce)
        jump = float(tp.m[0] - tm.m[0])
        if abs(jump) < 1e-8:
            raise DesignError(f"the first-stage jump in treatment at the cutoff is {jump:.3g}: "
                              "no discontinuity in take-up, so the fuzzy design is not identified")
        sT = (tp.score - tm.score)[:, 0]
        tau = delta / jump
        se_T = float(np.sqrt(np.sum(sT**2)))
        t_T = jump / se_T if se_T > 0 else np.inf
        first = {"jump": jump, "se": se_T, "t": float(t_T), "F": float(t_T**2), "h": hd,
                 "score": sT, "plus": tp, "minus": tm,
                 "n_window": int(np.count_nonzero(sT))}
    else:
        tau = delta
    return R3DResult(q_grid=np.asarray(q_grid, float), tau=tau, plus=plus,
                     minus=minus, method=method, p=p, kernel=kern,
                     bias_correction=bias_correction, bandwidths=bws, first_stage=first,
                     extra={} if rdbw is None else {"rd_bandwidths": rdbw})

"""MSE- and CER-optimal bandwidths for point-mass (scalar) RD, sharp or fuzzy.

The selectors of Calonico, Cattaneo and Titiunik (2014, Econometrica; CCT) and Calonico,
Cattaneo and Farrell (2020, Econometrics Journal; CCF), with the conventions of rdrobust's
``rdbwselect`` so that the numbers agree with it (tested to 1e-6 relative).

For an order-``o`` local polynomial estimating the ``nu``-th derivative at the cutoff, the
MSE-optimal bandwidth is ``h = [V / (B^2 + R)]^(1 / (2o + 3))`` (the sample size is inside
``V``), with, on each side and from pilot fits:

- ``V = (2 nu + 1) h_V^(2 nu + 1) Var(beta_nu)``: the variance of the ``nu``-th coefficient of
  an order-``o`` fit at the pilot bandwidth ``h_V`` (sandwich with nearest-neighbour residuals,
  ``vce="nn"``, or plug-in ``hc0``-``hc3`` residuals, or cluster sums ``cr1``);
- ``B = sqrt(2 (o + 1 - nu)) C_B beta_(o+1)``: the leading bias, ``C_B`` the kernel constant
  ``h_V^nu e_nu' G^-1 R'W (x / h_V)^(o+1)`` and ``beta_(o+1)`` the top coefficient of an
  order-``o + 1`` fit at a second bandwidth;
- ``R = 2 (o + 1 - nu) * 3 C_B^2 Var(beta_(o+1))``: CCT's regularisation, the variance of the
  estimated bias, scaled by ``scaleregul`` (0 removes it).

The three steps: a rule-of-thumb pilot ``c = C_K min(sd, IQR/1.349) N^(-1/5)``; a bandwidth
``d`` for the order-``q + 1`` derivative; the bias bandwidth ``b`` (order ``q`` fit, derivative
``p + 1``, bias from an order ``q + 1`` fit at ``d``); the main bandwidth ``h`` (order ``p``,
derivative ``deriv``, bias from an order ``q`` fit at ``b``). The sides are combined as

- ``mserd``: one ``h`` for the difference, ``(V_- + V_+) / ((B_+ - B_-)^2 + R_- + R_+)``;
- ``msetwo``: one ``h`` per side, ``V_s / (B_s^2 + R_s)``;
- ``msesum``: one ``h`` for the sum, ``(V_- + V_+) / ((B_+ + B_-)^2 + R_- + R_+)``;
- ``msecomb1 = min(mserd, msesum)``; ``msecomb2 = median(mserd, msesum, msetwo)`` per side;
- ``cer*``: the MSE ``h`` times ``N^(-p / ((3 + p)(3 + 2p)))`` (CCF's coverage-error rate;
  ``N`` is the number of clusters with ``vce="cr1"``), ``b`` unchanged.

Fuzzy designs use the linearised ratio: residuals and top coefficients of outcome and take-up
are combined with ``s = (1 / tau_T, -tau_Y / tau_T^2)`` from each pilot fit. With perfect
compliance on one side (take-up constant there) the sharp selector is used, as rdrobust does.

Conventions shared with rdrobust: ``x`` and ``y`` are standardised before selection (the
bandwidths are scale-equivariant, so this only helps numerically); bandwidths are capped at
the range of ``x`` (``bwrestrict``); with ``masspoints="adjust"`` the pilot uses the number of
distinct values of ``x`` and, when 20% or more of a side are repeated values, every pilot
bandwidth covers at least ``bwcheck=10`` distinct values. One deliberate difference:
rdrobust multiplies the regularisation by ``scaleregul`` twice (it is squared); here it enters
once, as in CCT. The two agree for the values 0 and 1 (the default). And with ``q > p + 1``
the bias of the order-``p`` fit uses the ``(p + 1)``-th coefficient of the order-``q`` fit at
``b`` (the derivative ``b`` was selected for); rdrobust's Python port uses the top (``q``-th)
coefficient there. With the default ``q = p + 1`` the two are the same coefficient.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> x = rng.uniform(-1, 1, 500)
>>> y = 1 + x + 0.5 * x**2 + (x >= 0) + rng.normal(0, 0.3, 500)
>>> bw = select_rd_bandwidth(x, y, bwselect="mserd")
>>> bool(0.05 < bw.h_left == bw.h_right < 1), bw.bwselect
(True, 'mserd')
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from geocausal.designs.rdd.locpoly import kernel_name
from geocausal.errors import DataError, DesignError

__all__ = ["SELECTORS", "RDBandwidths", "nn_residuals", "select_rd_bandwidth"]

SELECTORS = ("mserd", "msetwo", "msesum", "msecomb1", "msecomb2",
             "cerrd", "certwo", "cersum", "cercomb1", "cercomb2")
VCE = ("nn", "hc0", "hc1", "hc2", "hc3", "cr1")
# rule-of-thumb constants of the pilot bandwidth per kernel (Silverman-type, as rdrobust)
_PILOT_CONSTANT = {"triangular": 2.576, "epanechnikov": 2.34, "uniform": 1.843}
_EPS = math.sqrt(np.finfo(float).eps)


@dataclass(frozen=True)
class RDBandwidths:
    """Selected bandwidths of a point-mass RD and the pilot quantities behind them.

    ``h_*`` are the bandwidths of the order-``p`` estimate, ``b_*`` those of the order-``q``
    bias correction (left: below the cutoff, right: at or above it), in units of the running
    variable. ``pilot`` is the rule-of-thumb bandwidth of the variance fits, ``d`` the
    bandwidths of the order-``q + 1`` derivative (per family: "rd", "sum", "two"), and
    ``constants`` the ``(V, B, R)`` per side and step, on the standardised scale.
    ``n_left``/``n_right`` count the units per side, ``n_h_*`` those with a positive kernel
    weight at ``h``.
    """

    bwselect: str
    h_left: float
    h_right: float
    b_left: float
    b_right: float
    p: int
    q: int
    deriv: int
    kernel: str
    vce: str
    pilot: float
    n_left: int
    n_right: int
    n_h_left: int
    n_h_right: int
    d: dict[str, Any] = field(default_factory=dict)
    constants: dict[str, Any] = field(default_factory=dict)
    sharp_fallback: bool = False

    def as_dict(self) -> dict[str, Any]:
        """The bandwidths and effective sizes as a flat dict (for diagnostics)."""
        return {"bwselect": self.bwselect, "h_left": self.h_left, "h_right": self.h_right,
                "b_left": self.b_left, "b_right": self.b_right, "p": self.p, "q": self.q,
                "n_h_left": self.n_h_left, "n_h_right": self.n_h_right, "pilot": self.pilot}


# --------------------------------------------------------------------------- building blocks
def _kernel_weights(x: np.ndarray, h: float, kern: str) -> np.ndarray:
    """``K(x / h) / h`` with the kernel supported on ``[-1, 1]`` (closed)."""
    a = np.abs(x / h)
    inside = a <= 1.0
    if kern == "triangular":
        k = 1.0 - a
    elif kern == "epanechnikov":
        k = 0.75 * (1.0 - a * a)
    else:
        k = np.full_like(a, 0.5)
    return np.where(inside, k, 0.0) / h


def nn_residuals(x: np.ndarray, Y: np.ndarray, nnmatch: int = 3) -> np.ndarray:
    """Nearest-neighbour residuals ``sqrt(J / (J + 1)) (Y_i - mean of J neighbours)``.

    The neighbours of unit ``i`` are the other units at its value of ``x`` and then the
    closest distinct values on either side, a whole group of tied units at a time (both
    sides at once when they are equally far), until at least ``nnmatch`` neighbours are found
    (Abadie and Imbens' matching variance estimator, as in CCT's ``vce="nn"``).

    Parameters
    ----------
    x
        Running variable, sorted increasingly, ``(m,)``.
    Y
        Outcomes, ``(m,)`` or ``(m, k)``.
    nnmatch
        Minimum number of neighbours.

    Examples
    --------
    >>> import numpy as np
    >>> r = nn_residuals(np.arange(5.0), np.array([0.0, 1, 2, 3, 4]), nnmatch=2)
    >>> np.round(r, 6).tolist()   # interior: neighbours i-1 and i+1 average to y_i
    [-1.224745, 0.0, 0.0, 0.0, 1.224745]
    """
    x = np.asarray(x, dtype=float)
    Y = np.asarray(Y, dtype=float)
    one_d = Y.ndim == 1
    Y = Y[:, None] if one_d else Y
    m = x.size
    if m < 2:
        raise DesignError("nearest-neighbour residuals need at least two units in the window")
    if np.any(np.diff(x) < 0):
        raise DataError("nn_residuals needs x sorted increasingly")
    vals, start, counts = np.unique(x, return_index=True, return_counts=True)
    G = vals.size
    csum = np.vstack([np.zeros((1, Y.shape[1])), np.cumsum(Y, axis=0)])   # prefix sums
    ends = start + counts                           # one past the last unit of each group
    cap = min(int(nnmatch), m - 1)
    lo = np.arange(G)                               # groups lo..hi are the neighbourhood
    hi = np.arange(G)
    have = counts - 1                               # neighbours so far (own tied units)
    while True:
        act = have < cap
        if not act.any():
            break
        can_l = act & (lo > 0)
        can_r = act & (hi < G - 1)
        dl = np.where(can_l, vals - vals[np.maximum(lo - 1, 0)], np.inf)
        dr = np.where(can_r, vals[np.minimum(hi + 1, G - 1)] - vals, np.inf)
        big = np.maximum(np.where(np.isfinite(dl), dl, 0), np.where(np.isfinite(dr), dr, 0))
        tol = big * _EPS
        with np.errstate(invalid="ignore"):          # inf - inf where a side is exhausted
            tie = np.abs(dl - dr) <= tol
            take_r = act & can_r & (~can_l | (dl - dr > tol) | tie)
            take_l = act & can_l & (~can_r | (dr - dl > tol) | tie)
        have = have + np.where(take_r, counts[np.minimum(hi + 1, G - 1)], 0) \
            + np.where(take_l, counts[np.maximum(lo - 1, 0)], 0)
        hi = hi + take_r
        lo = lo - take_l
    grp = np.repeat(np.arange(G), counts)
    J = have[grp].astype(float)
    total = csum[ends[hi[grp]]] - csum[start[lo[grp]]]
    res = np.sqrt(J / (J + 1))[:, None] * (Y - (total - Y) / J[:, None])
    return res[:, 0] if one_d else res


def _residuals(ex, eY, fitted, lev, vce, nnmatch, k):
    if vce == "nn":
        return nn_residuals(ex, eY, nnmatch)
    e = eY - fitted
    if vce in ("hc0", "cr1"):
        return e
    if vce == "hc1":
        if ex.size <= k:
            raise DesignError(f"a pilot window holds {ex.size} units for {k} coefficients; "
                              "vce='hc1' needs more: use vce='nn' or more data near the cutoff")
        return e * math.sqrt(ex.size / (ex.size - k))
    scale = 1.0 / np.maximum(1.0 - lev, 1e-8)
    return e * (np.sqrt(scale) if vce == "hc2" else scale)[:, None]


def _meat(RW, r, cl, k):
    """``sum_i (r_i RW_i)(r_i RW_i)'`` or its cluster-summed CR1 version."""
    S = RW * r[:, None]
    if cl is None:
        return S.T @ S
    labels, inv = np.unique(cl, return_inverse=True)
    g, n = labels.size, S.shape[0]
    if g < 2:
        raise DesignError("a pilot window holds a single cluster; the cluster variance of the "
                          "bandwidth selector is undefined: use more clusters or vce='nn'")
    Sg = np.zeros((g, S.shape[1]))
    np.add.at(Sg, inv, S)
    return (n - 1) / (n - k) * g / (g - 1) * (Sg.T @ Sg)


def _local_fit(xs, Y, cl, h, o, kern, vce, nnmatch, with_var, s=None, nu=0):
    """Order-``o`` fit at bandwidth ``h`` on one side; ``None`` when not identified."""
    w = _kernel_weights(xs, h, kern)
    keep = w > 0
    ex, eY, ew = xs[keep], Y[keep], w[keep]
    if np.unique(ex).size < o + 1:
        return None
    R = np.vander(ex, o + 1, increasing=True)
    RW = R * ew[:, None]
    G = R.T @ RW
    try:
        invG = np.linalg.inv(G)
    except np.linalg.LinAlgError:
        invG = np.linalg.pinv(G)
    beta = invG @ (RW.T @ eY)
    out = {"ex": ex, "RW": RW, "invG": invG, "beta": beta}
    if with_var:
        if s is None:
            s = _linearisation(beta, nu)
        lev = np.sum((R @ invG) * RW, axis=1) if vce in ("hc2", "hc3") else None
        res = _residuals(ex, eY, R @ beta, lev, vce, nnmatch, o + 1)
        out["var"] = invG @ _meat(RW, res @ s, None if cl is None else cl[keep], o + 1) @ invG
        out["s"] = s
    return out


def _linearisation(beta, nu):
    """``s``: 1 for a sharp design; the delta-method weights of ``tau_Y / tau_T`` if fuzzy."""
    if beta.shape[1] == 1:
        return np.ones(1)
    ty, tt = beta[nu, 0], beta[nu, 1]
    return np.array([1.0 / tt, -ty / tt**2])


class _Side:
    """One side's data (standardised, sorted) with a cache of the pilot variance fits."""

    def __init__(self, xs, Y, cl, kern, vce, nnmatch, pilot):
        self.xs, self.Y, self.cl = xs, Y, cl
        self.kern, self.vce, self.nnmatch, self.pilot = kern, vce, nnmatch, pilot
        self._cache: dict[tuple[int, int], tuple[float, float, np.ndarray] | None] = {}

    def _variance_fit(self, o, nu):
        key = (o, nu)
        if key not in self._cache:
            hv = self.pilot
            fit = _local_fit(self.xs, self.Y, self.cl, hv, o, self.kern, self.vce, self.nnmatch,
                             True, None, nu)
            if fit is None:
                self._cache[key] = None
            else:
                s = fit["s"]
                v_nu = float(fit["var"][nu, nu])
                bc = float(hv**nu * (fit["invG"] @ (fit["RW"].T @ (fit["ex"] / hv) ** (o + 1)))[nu])
                self._cache[key] = (v_nu, bc, s)
        return self._cache[key]

    def constants(self, o, nu, h_bias, regularise, o_bias=None):
        """``(V, B, R)`` of an order-``o`` fit for derivative ``nu``; NaNs if not identified.

        The ``(o + 1)``-th derivative behind the bias comes from an order-``o_bias`` fit
        (default ``o + 1``) at bandwidth ``h_bias``.
        """
        vf = self._variance_fit(o, nu)
        if vf is None or not (np.isfinite(h_bias) and h_bias > 0):
            return np.nan, np.nan, np.nan
        v_nu, bc, s = vf
        fb = _local_fit(self.xs, self.Y, self.cl, h_bias, o + 1 if o_bias is None else o_bias,
                        self.kern, self.vce, self.nnmatch, regularise, s)
        if fb is None:
            return np.nan, np.nan, np.nan
        B = math.sqrt(2 * (o + 1 - nu)) * bc * float(fb["beta"][o + 1] @ s)
        V = (2 * nu + 1) * self.pilot ** (2 * nu + 1) * v_nu
        R = 2 * (o + 1 - nu) * 3 * bc**2 * float(fb["var"][o + 1, o + 1]) if regularise else 0.0
        return V, B, R


def _combine(cl, cr, family, rate, scale):
    """Bandwidth of one family from the two sides' ``(V, B, R)``."""
    (Vl, Bl, Rl), (Vr, Br, Rr) = cl, cr
    if family == "two":
        return (Vl / (Bl**2 + scale * Rl)) ** rate, (Vr / (Br**2 + scale * Rr)) ** rate
    bias = Br - Bl if family == "rd" else Br + Bl
    h = ((Vl + Vr) / (bias**2 + scale * (Rl + Rr))) ** rate
    return h, h


# --------------------------------------------------------------------------- the selector
def select_rd_bandwidth(
    x: np.ndarray,
    y: np.ndarray,
    *,
    cutoff: float = 0.0,
    treatment: np.ndarray | None = None,
    p: int = 1,
    q: int | None = None,
    deriv: int = 0,
    kernel: str = "triangular",
    bwselect: str = "mserd",
    vce: str = "nn",
    nnmatch: int = 3,
    cluster: np.ndarray | None = None,
    scaleregul: float = 1.0,
    masspoints: str = "adjust",
    bwcheck: int | None = None,
    bwrestrict: bool = True,
    sharpbw: bool = False,
) -> RDBandwidths:
    """Data-driven bandwidths ``h`` and ``b`` of a point-mass RD (rdrobust's ``rdbwselect``).

    Parameters
    ----------
    x, y
        Running variable and scalar outcome, ``(n,)``.
    cutoff
        Units with ``x >= cutoff`` are on the right.
    treatment
        Take-up for a fuzzy design (``None``: sharp).
    p, q, deriv
        Order of the estimate, of the bias correction (default ``p + 1``) and the derivative
        estimated (0: the jump; 1: a kink).
    kernel
        ``"triangular"``, ``"epanechnikov"`` or ``"uniform"``.
    bwselect
        One of :data:`SELECTORS`.
    vce
        Variance of the pilot fits: ``"nn"`` (nearest neighbours), ``"hc0"``-``"hc3"``, or
        ``"cr1"`` with ``cluster``.
    nnmatch
        Minimum number of neighbours of ``vce="nn"``.
    cluster
        Cluster labels (with ``vce="cr1"``; ``"nn"`` switches to ``"cr1"`` when given).
    scaleregul
        Weight of the regularisation term (0 removes it).
    masspoints
        ``"adjust"`` (pilots see the distinct values of ``x``) or ``"off"``.
    bwcheck
        Minimum number of distinct values of ``x`` inside every pilot bandwidth per side.
    bwrestrict
        Cap the bandwidths at the range of ``x``.
    sharpbw
        Select the bandwidths of a fuzzy design with the sharp selector.

    Returns
    -------
    RDBandwidths

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(1)
    >>> x = rng.uniform(-1, 1, 400)
    >>> y = x + (x >= 0) + rng.normal(0, 0.2, 400)
    >>> bw = select_rd_bandwidth(x, y, bwselect="msetwo")
    >>> bool(bw.h_left > 0 and bw.h_right > 0 and bw.b_left > bw.h_left * 0.5)
    True
    """
    kern = kernel_name(kernel)
    if bwselect not in SELECTORS:
        raise DataError(f"bwselect '{bwselect}' is not one of {SELECTORS}")
    if vce not in VCE:
        raise DataError(f"vce '{vce}' is not one of {VCE} for the bandwidth selector")
    if masspoints not in ("adjust", "off"):
        raise DataError(f"masspoints '{masspoints}' is not 'adjust' or 'off'")
    q = p + 1 if q is None else q
    for name, v in (("p", p), ("q", q), ("deriv", deriv), ("nnmatch", nnmatch)):
        if int(v) != v or v < (1 if name == "nnmatch" else 0):
            raise DataError(f"{name}={v} must be a {'positive' if name == 'nnmatch' else 'non-negative'} integer")
    if q <= p:
        raise DataError(f"q={q} must exceed p={p} (the bias correction uses a higher order)")
    if deriv > p:
        raise DataError(f"deriv={deriv} must not exceed p={p}")
    if bwcheck is not None and (int(bwcheck) != bwcheck or bwcheck < 1):
        raise DataError(f"bwcheck={bwcheck} must be a positive integer")
    if scaleregul < 0:
        raise DataError(f"scaleregul={scaleregul} must be non-negative")
    x = np.asarray(x, dtype=float).ravel()
    y = np.asarray(y, dtype=float).ravel()
    n = x.size
    if y.size != n:
        raise DataError(f"y has {y.size} values but x has {n}")
    cols = [y]
    if treatment is not None:
        t = np.asarray(treatment, dtype=float).ravel()
        if t.size != n:
            raise DataError(f"treatment has {t.size} values but x has {n}")
        cols.append(t)
    Y = np.column_stack(cols)
    bad = ~np.all(np.isfinite(np.column_stack([x, Y])), axis=1)
    if bad.any():
        raise DataError(f"{int(bad.sum())} units have a missing running variable, outcome or "
                        "take-up; drop them before selecting a bandwidth")
    cl = None
    if cluster is not None:
        cl = np.asarray(cluster).ravel()
        if cl.size != n:
            raise DataError(f"cluster has {cl.size} labels but x has {n}")
        if vce == "nn":
            vce = "cr1"
        elif vce != "cr1":
            raise DataError(f"vce '{vce}' with cluster=: use vce='cr1' (or 'nn', which becomes "
                            "'cr1')")
    elif vce == "cr1":
        raise DataError("vce='cr1' needs cluster= labels")

    order = np.argsort(x, kind="stable")
    x, Y = x[order], Y[order]
    cl = None if cl is None else cl[order]
    # standardise (scale-equivariant selectors; numerically safer)
    x_sd = float(np.std(x, ddof=1))
    y_sd = float(np.std(Y[:, 0], ddof=1))
    if not (x_sd > 0 and y_sd > 0):
        raise DesignError("the running variable or the outcome is constant; no bandwidth can be "
                          "selected")
    q25, q75 = np.quantile(x, [0.25, 0.75], method="averaged_inverted_cdf")
    xs = (x - cutoff) / x_sd
    Y[:, 0] /= y_sd
    left, right = xs < 0, xs >= 0
    n_l, n_r = int(left.sum()), int(right.sum())
    if xs.min() >= 0 or xs.max() <= 0:
        raise DesignError(f"the cutoff {cutoff} is outside the range of the running variable "
                          f"[{x.min():.4g}, {x.max():.4g}]")
    uniq_l = np.unique(-xs[left])                  # distances, nearest first
    uniq_r = np.unique(xs[right])
    if min(uniq_l.size, uniq_r.size) < p + 1:
        side = "left" if uniq_l.size < p + 1 else "right"
        raise DesignError(f"only {min(uniq_l.size, uniq_r.size)} distinct running-variable values "
                          f"on the {side} of the cutoff; a polynomial of order p={p} needs {p + 1}")
    sharp_fallback = False
    if Y.shape[1] > 1:
        tl, tr = Y[left, 1], Y[right, 1]
        if np.var(tl) == 0 and np.var(tr) == 0 and abs(tl.mean() - tr.mean()) < _EPS:
            raise DesignError("the take-up neither varies nor jumps at the cutoff: the fuzzy "
                              "design is not identified")
        if np.var(tl) == 0 or np.var(tr) == 0 or sharpbw:
            sharp_fallback = not sharpbw
            Y = Y[:, :1]

    M = uniq_l.size + uniq_r.size if masspoints == "adjust" else n
    if masspoints == "adjust" and bwcheck is None and (
            1 - uniq_l.size / n_l >= 0.2 or 1 - uniq_r.size / n_r >= 0.2):
        bwcheck = 10
    pilot = _PILOT_CONSTANT[kern] * min(1.0, ((q75 - q25) / x_sd) / 1.349) * M ** (-0.2)
    range_l, range_r = -xs.min(), xs.max()
    bw_max = max(range_l, range_r)
    if bwrestrict:
        pilot = min(pilot, bw_max)
    bw_min_l = bw_min_r = 0.0
    if bwcheck is not None:
        bw_min_l = uniq_l[min(bwcheck, uniq_l.size) - 1] * (1 + _EPS)
        bw_min_r = uniq_r[min(bwcheck, uniq_r.size) - 1] * (1 + _EPS)
        pilot = max(pilot, bw_min_l, bw_min_r)

    sides = {s: _Side(xs[m], Y[m], None if cl is None else cl[m], kern, vce, nnmatch, pilot)
             for s, m in (("l", left), ("r", right))}

    def cap(v, limit):
        return min(v, limit) if bwrestrict else v

    def floor(v, *mins):
        return max(v, *mins) if bwcheck is not None else v

    needs = {"mserd": {"rd"}, "cerrd": {"rd"}, "msetwo": {"two"}, "certwo": {"two"},
             "msesum": {"sum"}, "cersum": {"sum"}, "msecomb1": {"rd", "sum"},
             "cercomb1": {"rd", "sum"}, "msecomb2": {"rd", "sum", "two"},
             "cercomb2": {"rd", "sum", "two"}}[bwselect]
    # step 1: bandwidth of the order-(q+1) derivative, bias from an order-(q+2) global fit
    C_d = {s: sides[s].constants(q + 1, q + 1, rng * (1 + _EPS), False)
           for s, rng in (("l", range_l), ("r", range_r))}
    rate_d, rate_b, rate_h = 1 / (2 * q + 5), 1 / (2 * q + 3), 1 / (2 * p + 3)
    out: dict[str, tuple[float, float, float, float]] = {}
    d_used: dict[str, Any] = {}
    consts: dict[str, Any] = {"d": C_d}
    lim = {"l": range_l, "r": range_r}
    for fam in ("rd", "sum", "two"):
        if fam not in needs:
            continue
        dl, dr = _combine(C_d["l"], C_d["r"], fam, rate_d, 0.0)
        if fam == "two":
            dl, dr = floor(cap(dl, lim["l"]), bw_min_l), floor(cap(dr, lim["r"]), bw_min_r)
        else:
            dl = dr = floor(cap(dl, bw_max), bw_min_l, bw_min_r)
        reg = scaleregul > 0
        C_b = {"l": sides["l"].constants(q, p + 1, dl, reg),
               "r": sides["r"].constants(q, p + 1, dr, reg)}
        bl, br = _combine(C_b["l"], C_b["r"], fam, rate_b, scaleregul)
        bl, br = (cap(bl, lim["l"]), cap(br, lim["r"])) if fam == "two" else \
            (cap(bl, bw_max),) * 2
        C_h = {"l": sides["l"].constants(p, deriv, bl, reg, q),
               "r": sides["r"].constants(p, deriv, br, reg, q)}
        hl, hr = _combine(C_h["l"], C_h["r"], fam, rate_h, scaleregul)
        hl, hr = (cap(hl, lim["l"]), cap(hr, lim["r"])) if fam == "two" else \
            (cap(hl, bw_max),) * 2
        out[fam] = tuple(x_sd * v for v in (hl, hr, bl, br))
        d_used[fam] = (x_sd * dl, x_sd * dr)
        consts[fam] = {"b": C_b, "h": C_h}
    base = bwselect.replace("cer", "mse")
    if base == "mserd":
        bws = out["rd"]
    elif base == "msetwo":
        bws = out["two"]
    elif base == "msesum":
        bws = out["sum"]
    elif base == "msecomb1":
        bws = tuple(float(np.min([a, b])) for a, b in zip(out["rd"], out["sum"]))
    else:
        bws = tuple(float(np.median([a, b, c])) for a, b, c in zip(out["rd"], out["sum"],
                                                                    out["two"]))
    if bwselect.startswith("cer"):
        units = n if cl is None else np.unique(cl[left]).size + np.unique(cl[right]).size
        shrink = units ** (-(p / ((3 + p) * (3 + 2 * p))))
        bws = (bws[0] * shrink, bws[1] * shrink, bws[2], bws[3])
    bws = tuple(float(v) for v in bws)
    if not all(np.isfinite(v) and v > 0 for v in bws):
        raise DesignError(f"the {bwselect} bandwidth selector failed (h, b = {bws}): a pilot fit "
                          "has too few distinct running-variable values or a zero bias estimate; "
                          "set bwcheck=, try another bwselect, or give h= and b= by hand")
    xo = x - cutoff
    n_h_l = int(np.sum(_kernel_weights(xo[xo < 0], bws[0], kern) > 0))
    n_h_r = int(np.sum(_kernel_weights(xo[xo >= 0], bws[1], kern) > 0))
    return RDBandwidths(bwselect=bwselect, h_left=bws[0], h_right=bws[1], b_left=bws[2],
                        b_right=bws[3], p=int(p), q=int(q), deriv=int(deriv), kernel=kern,
                        vce=vce, pilot=float(pilot * x_sd), n_left=n_l, n_right=n_r,
                        n_h_left=n_h_l, n_h_right=n_h_r, d=d_used, constants=consts,
                        sharp_fallback=sharp_fallback)

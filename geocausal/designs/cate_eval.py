"""Evaluating CATE predictions without ground truth.

* :func:`generic_ml` -- BLP, GATES and CLAN of Chernozhukov, Demirer, Duflo and
  Fernandez-Val ("generic machine learning inference"): many random splits into an auxiliary
  half (the CATE learner is trained there) and a main half (weighted regressions of the outcome
  on the proxy ``S`` and baseline ``B``); estimates and confidence bounds are medians over splits
  and p-values are ``min(1, 2 * median p)``, so intervals computed at level ``1 - alpha`` per split
  have level ``1 - 2 alpha`` after aggregation.
* :func:`rate` -- rank-weighted average treatment effects (AUTOC and QINI, Yadlowsky et al.)
  from doubly robust scores and a priority rule, with a half-sample (cluster) bootstrap SE.
* :func:`calibration_test` -- regression of ``y - m(x)`` on ``(d - e) mean(tau)`` and
  ``(d - e)(tau - mean(tau))`` (the test_calibration of grf), HC3 standard errors.

Examples
--------
>>> import numpy as np
>>> r = rate(np.array([3.0, 1.0, 0.0, -1.0]), np.array([4.0, 3.0, 2.0, 1.0]), n_boot=0)
>>> round(r.estimate, 4)  # TOC = (2.25, 1.25, .5833, 0), mean 1.0208
1.0208
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import statsmodels.api as sm
from scipy import stats

from geocausal._progress import progress as _progress
from geocausal.designs.common import check_full_rank, check_treatment
from geocausal.errors import DataError, DesignError
from geocausal.vocabulary import DEFAULTS


# ----------------------------------------------------------------------------- RATE
def _sorted(phi: np.ndarray, priority: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Scores sorted by decreasing priority, with tie ids (equal priorities share an id)."""
    order = np.argsort(-priority, kind="stable")
    p_sorted = priority[order]
    ties = np.concatenate([[0], np.cumsum(p_sorted[1:] != p_sorted[:-1])])
    return phi[order], ties


def _toc_sorted(s: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """TOC at q = k/n, k = 1..n: mean score of the top k units minus the mean; ties averaged."""
    if ties[-1] + 1 < s.size:
        _, inv, counts = np.unique(ties, return_inverse=True, return_counts=True)
        s = (np.bincount(inv, weights=s) / counts)[inv]
    k = np.arange(1, s.size + 1)
    return np.cumsum(s) / k - s.mean()


def _value(toc: np.ndarray, target: str) -> float:
    if target == "AUTOC":
        return float(toc.mean())
    q = np.arange(1, toc.size + 1) / toc.size
    return float((q * toc).mean())


@dataclass(frozen=True)
class RateResult:
    """A rank-weighted average treatment effect with its bootstrap standard error.

    ``curve`` is the TOC curve (columns ``quantile``, ``estimate``) on a grid of q, with a
    ``std_error`` column (the half-sample bootstrap's, NaN without bootstrap).
    """

    target: str
    estimate: float
    std_error: float
    n_boot: int
    curve: pd.DataFrame = field(repr=False)

    @property
    def ratio(self) -> float:
        """The RATE divided by its standard error (the "RATE ratio")."""
        return self.estimate / self.std_error if self.std_error > 0 else float("nan")

    @property
    def p_value(self) -> float:
        """One-sided p-value of "no heterogeneity the priority can find" (RATE <= 0)."""
        return float(stats.norm.sf(self.ratio)) if np.isfinite(self.ratio) else float("nan")

    def conf_int(self, alpha: float = 0.05) -> tuple[float, float]:
        """Normal-approximation interval."""
        z = stats.norm.ppf(1 - alpha / 2)
        return self.estimate - z * self.std_error, self.estimate + z * self.std_error


def _rate_draws_batched(s_sorted: np.ndarray, inv_sorted: np.ndarray, half: int,
                        grid: np.ndarray, targets: Sequence[str], rng: np.random.Generator,
                        draws: dict[str, np.ndarray], curve_draws: np.ndarray,
                        progress: bool) -> None:
    """Half-sample RATE draws without ties or clusters, in batches (fills ``draws`` per target
    and ``curve_draws``). The same half-samples (same calls to ``rng``) and the same sums as
    the draw-by-draw loop: each row's cumulative sum runs over its selected scores in order.
    """
    n, n_boot = s_sorted.size, curve_draws.shape[0]
    pos = np.empty(n, dtype=np.intp)
    pos[inv_sorted] = np.arange(n)                  # unit -> its place in priority order
    batch = max(1, min(n_boot, 4_000_000 // max(n, 1)))
    k = np.arange(1, half + 1)
    kb = np.clip(np.ceil(grid * half).astype(int), 1, half) - 1
    q = k / half
    sel = np.empty((batch, half))
    keep = np.empty(n, bool)
    for start in _progress(range(0, n_boot, batch), desc="RATE bootstrap", enabled=progress):
        stop = min(start + batch, n_boot)
        for i in range(stop - start):
            keep[:] = False
            keep[pos[rng.choice(n, half, replace=False)]] = True
            np.compress(keep, s_sorted, out=sel[i])
        cur = sel[: stop - start]
        toc = np.cumsum(cur, axis=1)
        toc /= k
        toc -= cur.mean(axis=1, keepdims=True)
        for t in targets:
            draws[t][start:stop] = toc.mean(axis=1) if t == "AUTOC" else (q * toc).mean(axis=1)
        curve_draws[start:stop] = toc[:, kb]


def rate(
    phi: np.ndarray,
    priority: np.ndarray,
    *,
    target: str = "AUTOC",
    clusters: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    q: Sequence[float] | None = None,
    progress: bool = True,
) -> RateResult:
    """RATE of a priority rule: AUTOC (``alpha(q) = 1``) or QINI (``alpha(q) = q``).

    The TOC at ``q = k/n`` is the mean doubly robust score of the ``k`` units with the highest
    priority minus the overall mean (scores averaged within ties of the priority); AUTOC is its
    average over ``k``, QINI the average of ``q * TOC(q)``. The standard error is the standard
    deviation over ``n_boot`` half-samples drawn without replacement (of clusters when given),
    which estimates the full-sample standard error.

    Parameters
    ----------
    phi
        Doubly robust scores (out-of-fold nuisances).
    priority
        Priority of each unit, e.g. out-of-fold CATE predictions. Must not be constant.
    target
        ``"AUTOC"`` or ``"QINI"``.
    clusters
        Cluster labels for the half-sample bootstrap.
    n_boot
        Number of half-samples (0: no standard error).
    seed
        Seed of the half-samples.
    q
        Grid of the returned TOC curve (default 0.05, 0.10, ..., 1). The curve's
        ``std_error`` at each q is the standard deviation of the half-samples' TOC at that q.
    progress
        Show a progress bar over the half-samples (in a terminal or notebook).

    Examples
    --------
    >>> r = rate(np.array([2.0, 0.0]), np.array([1.0, 0.0]), target="QINI", n_boot=0)
    >>> round(r.estimate, 4)  # TOC = (1, 0) at q = (.5, 1): mean(q * TOC) = .25
    0.25
    """
    return rates(phi, priority, targets=(target,), clusters=clusters, n_boot=n_boot, seed=seed,
                 q=q, progress=progress)[target.upper()]


def rates(
    phi: np.ndarray,
    priority: np.ndarray,
    *,
    targets: Sequence[str] = ("AUTOC", "QINI"),
    clusters: np.ndarray | None = None,
    n_boot: int = 200,
    seed: int = 0,
    q: Sequence[float] | None = None,
    progress: bool = True,
) -> dict[str, RateResult]:
    """Several RATE targets of one priority rule from one set of half-samples.

    Each result equals :func:`rate` called with that target and the same ``seed`` (the
    half-samples depend on the seed only), but the half-samples are drawn and their TOC
    curves computed once for all targets.

    Examples
    --------
    >>> rng = np.random.default_rng(0); phi = rng.normal(size=200); pr = phi + rng.normal(size=200)
    >>> both = rates(phi, pr, n_boot=50, progress=False)
    >>> one = rate(phi, pr, target="QINI", n_boot=50, progress=False)
    >>> both["QINI"].std_error == one.std_error, sorted(both)
    (True, ['AUTOC', 'QINI'])
    """
    if isinstance(targets, str):
        targets = (targets,)
    targets = tuple(dict.fromkeys(str(t).upper() for t in targets))
    bad = [t for t in targets if t not in ("AUTOC", "QINI")]
    if bad or not targets:
        raise DataError(f"target must be 'AUTOC' or 'QINI', got '{bad[0] if bad else targets}'")
    phi = np.asarray(phi, dtype=float)
    priority = np.asarray(priority, dtype=float)
    if phi.shape != priority.shape or phi.ndim != 1:
        raise DataError(f"scores {phi.shape} and priorities {priority.shape} must be 1-D, same length")
    if not (np.all(np.isfinite(phi)) and np.all(np.isfinite(priority))):
        raise DataError("RATE scores and priorities must be finite")
    if np.ptp(priority) == 0:
        raise DesignError("the priorities (CATE predictions) are constant, so RATE cannot rank "
                          "units; use a learner whose predictions vary")
    s_sorted, ties = _sorted(phi, priority)
    toc = _toc_sorted(s_sorted, ties)
    est = {t: _value(toc, t) for t in targets}
    grid = np.asarray(q if q is not None else np.linspace(0.05, 1, 20), dtype=float)
    k = np.clip(np.ceil(grid * phi.size).astype(int), 1, phi.size) - 1
    curve = pd.DataFrame({"quantile": grid, "estimate": toc[k]})
    se = {t: float("nan") for t in targets}
    curve["std_error"] = np.nan
    if n_boot:
        rng = np.random.default_rng(seed)
        labels = np.arange(phi.size) if clusters is None else np.asarray(clusters)
        if labels.shape[0] != phi.size:
            raise DataError(f"clusters has length {labels.shape[0]}, expected {phi.size}")
        uniq, inv = np.unique(labels, return_inverse=True)
        if uniq.size < 4:
            raise DesignError(f"only {uniq.size} clusters for the half-sample bootstrap; need 4+")
        inv_sorted = inv[np.argsort(-priority, kind="stable")]
        half = uniq.size // 2
        draws = {t: np.empty(n_boot) for t in targets}
        curve_draws = np.zeros((n_boot, grid.size))
        batched = clusters is None and ties[-1] + 1 == phi.size
        if batched:
            # units without tied priorities: every half-sample has exactly `half` rows, so a
            # batch of draws is one (batch, half) matrix and its TOC curves one cumsum
            _rate_draws_batched(s_sorted, inv_sorted, half, grid, targets, rng, draws,
                                curve_draws, progress)
        for b in _progress(range(0 if batched else n_boot), desc="RATE bootstrap",
                           enabled=progress and not batched):
            keep = np.zeros(uniq.size, bool)
            keep[rng.choice(uniq.size, half, replace=False)] = True
            rows = keep[inv_sorted]
            t = ties[rows]
            if t[-1] > t[0]:
                toc_b = _toc_sorted(s_sorted[rows], t)
                for tg in targets:
                    draws[tg][b] = _value(toc_b, tg)
                kb = np.clip(np.ceil(grid * toc_b.size).astype(int), 1, toc_b.size) - 1
                curve_draws[b] = toc_b[kb]
            else:
                for tg in targets:
                    draws[tg][b] = 0.0
        se = {t: float(np.std(draws[t], ddof=1)) for t in targets}
        curve["std_error"] = np.std(curve_draws, axis=0, ddof=1) if n_boot > 1 else np.nan
    return {t: RateResult(target=t, estimate=est[t], std_error=se[t], n_boot=n_boot,
                          curve=curve.copy()) for t in targets}


# ----------------------------------------------------------------------------- calibration
def calibration_test(y, d, e, m, tau) -> pd.DataFrame:
    """Calibration test of CATE predictions (grf's ``test_calibration``).

    OLS without intercept of ``y - m`` on ``(d - e) * mean(tau)`` ("mean_prediction") and
    ``(d - e) * (tau - mean(tau))`` ("differential_prediction"), HC3 standard errors. A mean
    coefficient of 1 says the average prediction is right; a differential coefficient of 1 says
    the heterogeneity is well calibrated, and its one-sided p-value tests for heterogeneity.

    Returns
    -------
    pandas.DataFrame
        ``term, estimate, std_error, statistic, p_value`` (one-sided, H1: coefficient > 0).

    Examples
    --------
    >>> rng = np.random.default_rng(1)
    >>> n = 2000; x = rng.normal(size=n); d = rng.integers(0, 2, n).astype(float)
    >>> y = x + d * (1 + x) + rng.normal(size=n)
    >>> t = calibration_test(y, d, np.full(n, .5), x + .5 * (1 + x), 1 + x)
    >>> bool(abs(t.estimate[1] - 1) < 0.2)
    True
    """
    y, d, e, m, tau = (np.asarray(a, dtype=float) for a in (y, d, e, m, tau))
    tbar = tau.mean()
    Z = np.column_stack([(d - e) * tbar, (d - e) * (tau - tbar)])
    if np.ptp(tau) == 0:
        raise DesignError("constant CATE predictions: the calibration test needs varying ones")
    check_full_rank(Z, ["mean_prediction", "differential_prediction"],
                    "calibration-test regressors")
    res = sm.OLS(y - m, Z).fit(cov_type="HC3")
    t = np.asarray(res.tvalues)
    est, se = np.asarray(res.params), np.asarray(res.bse)
    z = stats.norm.ppf(0.975)
    return pd.DataFrame({"term": ["mean_prediction", "differential_prediction"],
                         "estimate": est, "std_error": se, "statistic": t,
                         "p_value": stats.norm.sf(t), "conf_low": est - z * se,
                         "conf_high": est + z * se})


# ----------------------------------------------------------------------------- generic ML
def _groups(S: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    """Group 0..k-1 by rank of S (ties broken at random), equal sizes."""
    jitter = rng.random(S.size)
    order = np.lexsort((jitter, S))
    g = np.empty(S.size, dtype=int)
    g[order] = np.floor(np.arange(S.size) * k / S.size).astype(int)
    return g


def _wls(y, Z, w, clusters=None, names=None, what="regressors"):
    # statsmodels solves with a pseudo-inverse: collinear columns would get an arbitrary
    # split of one coefficient and a meaningless standard error, so refuse them by name
    check_full_rank(Z, names, what)
    if clusters is None:
        return sm.WLS(y, Z, weights=w).fit(cov_type="HC1")
    return sm.WLS(y, Z, weights=w).fit(cov_type="cluster", cov_kwds={"groups": clusters})


def split_once(y, d, p, S, B, *, n_groups=5, features=None, rng=None,
               clusters=None) -> dict[str, Any]:
    """BLP, GATES and CLAN on one main sample.

    BLP: weighted least squares (weights ``1/(p(1-p))``) of ``y`` on ``1, B, d - p,
    (d - p)(S - mean S)``; ``beta1`` estimates the ATE and ``beta2`` the best linear
    predictor slope of the CATE on ``S``. GATES: of ``y`` on ``1, B, (d - p) 1{G_k}`` with
    ``G_k`` the quantile groups of ``S``. CLAN: feature means in the top and bottom group.

    Standard errors are HC1, or cluster-robust when ``clusters`` (integer codes) are given.
    Returns a dict ``term -> (estimate, std_error)``.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 4000
    >>> S = rng.normal(size=n); d = rng.integers(0, 2, n).astype(float)
    >>> y = d * (1 + 2 * S) + rng.normal(size=n)
    >>> r = split_once(y, d, np.full(n, .5), S, np.zeros(n))
    >>> [bool(abs(r[k][0] - v) < 3 * r[k][1]) for k, v in (("beta1", 1), ("beta2", 2))]
    [True, True]
    """
    rng = rng or np.random.default_rng(0)
    w = 1.0 / (p * (1 - p))
    Sc = S - S.mean()
    out: dict[str, Any] = {}
    Bc = B - B.mean()
    cons = np.ones_like(y)
    Zb = np.column_stack([cons, Bc, d - p, (d - p) * Sc]) if np.ptp(B) > 0 else \
        np.column_stack([cons, d - p, (d - p) * Sc])
    r = _wls(y, Zb, w, clusters, (["const", "baseline"] if np.ptp(B) > 0 else ["const"])
             + ["d - p (beta1)", "(d - p)(S - mean S) (beta2)"], "BLP regressors")
    out["beta1"] = (r.params[-2], r.bse[-2])
    out["beta2"] = (r.params[-1], r.bse[-1])
    g = _groups(S, n_groups, rng)
    G = np.column_stack([(d - p) * (g == k) for k in range(n_groups)])
    Zg = np.column_stack([cons, Bc, G]) if np.ptp(B) > 0 else np.column_stack([cons, G])
    r = _wls(y, Zg, w, clusters, (["const", "baseline"] if np.ptp(B) > 0 else ["const"])
             + [f"(d - p) 1{{G{k + 1}}}" for k in range(n_groups)], "GATES regressors")
    gam = np.asarray(r.params[-n_groups:])
    V = np.asarray(r.cov_params())[-n_groups:, -n_groups:]
    for k in range(n_groups):
        out[f"gates_{k + 1}"] = (gam[k], np.sqrt(V[k, k]))
    out["gates_top_minus_bottom"] = (gam[-1] - gam[0],
                                     np.sqrt(V[-1, -1] + V[0, 0] - 2 * V[0, -1]))
    if features is not None:
        top, bot = g == n_groups - 1, g == 0
        for j, name in enumerate(features.columns):
            x = features.iloc[:, j].to_numpy(dtype=float)
            diff = x[top].mean() - x[bot].mean()
            se = np.sqrt(x[top].var(ddof=1) / top.sum() + x[bot].var(ddof=1) / bot.sum())
            out[f"clan_{name}"] = (diff, se)
            out[f"clan_top_{name}"] = (x[top].mean(), x[top].std(ddof=1) / np.sqrt(top.sum()))
            out[f"clan_bottom_{name}"] = (x[bot].mean(), x[bot].std(ddof=1) / np.sqrt(bot.sum()))
    return out


@dataclass(frozen=True)
class GenericMLResult:
    """Median-aggregated BLP, GATES and CLAN over repeated splits.

    ``table`` has columns ``term, estimate, conf_low, conf_high, p_value, level, oracle`` (the
    last only when the true CATE was supplied); ``splits`` holds every split's estimates and
    standard errors. ``level`` is the aggregated confidence level ``1 - 2 alpha``.
    """

    table: pd.DataFrame
    splits: pd.DataFrame = field(repr=False)
    alpha: float = 0.05
    n_splits: int = 0
    n_groups: int = 5

    def part(self, prefix: str) -> pd.DataFrame:
        """Rows whose term starts with ``prefix`` ("beta", "gates", "clan")."""
        return self.table[self.table["term"].str.startswith(prefix)].reset_index(drop=True)

    @property
    def blp(self) -> pd.DataFrame:
        """BLP rows: ``beta1`` (ATE) and ``beta2`` (heterogeneity loading)."""
        return self.part("beta")

    @property
    def gates(self) -> pd.DataFrame:
        """GATES rows, group 1 (least affected) to the top group, then top minus bottom."""
        return self.part("gates")

    @property
    def clan(self) -> pd.DataFrame:
        """CLAN rows: top-minus-bottom differences and group means per feature."""
        return self.part("clan")

    def tidy(self) -> pd.DataFrame:
        """The whole table (plot the GATES with
        :func:`geocausal.results.plot_cate.gates_plot`).
        """
        return self.table.copy()


def aggregate_splits(splits: pd.DataFrame, alpha: float) -> pd.DataFrame:
    """Median estimate, median bounds at level ``1 - alpha``, ``min(1, 2 median p)``.

    Examples
    --------
    >>> sp = pd.DataFrame({"term": ["b"] * 3, "estimate": [1.0, 2.0, 3.0],
    ...                    "std_error": [1.0, 1.0, 1.0]})
    >>> aggregate_splits(sp, 0.05)[["estimate", "level"]].values.round(2).tolist()
    [[2.0, 0.9]]
    """
    z = stats.norm.ppf(1 - alpha / 2)
    s = splits.copy()
    s["lo"] = s["estimate"] - z * s["std_error"]
    s["hi"] = s["estimate"] + z * s["std_error"]
    s["p"] = 2 * stats.norm.sf(np.abs(s["estimate"] / s["std_error"]))
    agg = s.groupby("term", sort=False).agg(estimate=("estimate", "median"),
                                             conf_low=("lo", "median"), conf_high=("hi", "median"),
                                             p_value=("p", "median"))
    agg["p_value"] = np.minimum(1.0, 2 * agg["p_value"])
    agg["level"] = 1 - 2 * alpha
    if "oracle" in s:
        agg["oracle"] = s.groupby("term", sort=False)["oracle"].median()
    return agg.reset_index()


def generic_ml(
    y: np.ndarray,
    d: np.ndarray,
    fit_proxy: Callable[[np.ndarray, int], Any],
    X: np.ndarray,
    *,
    propensity: np.ndarray | float | None = None,
    n_splits: int = 100,
    n_groups: int = 5,
    alpha: float = 0.05,
    features: pd.DataFrame | None = None,
    truth: np.ndarray | None = None,
    clusters: np.ndarray | None = None,
    seed: int = 0,
    progress: bool = True,
) -> GenericMLResult:
    """Generic ML inference on heterogeneous effects (BLP, GATES, CLAN).

    Parameters
    ----------
    y, d
        Outcome and binary treatment.
    fit_proxy
        ``fit_proxy(aux_rows, seed)`` trains a CATE learner on the auxiliary rows and returns an
        object with ``predict(X)`` (the proxy ``S``), ``baseline(X)`` (``B``) and
        ``propensity(X)`` (used when ``propensity`` is None), e.g. a
        :class:`geocausal.designs.cate.CateFit`.
    X
        Features handed to the fitted proxy for the main rows.
    propensity
        Known treatment probabilities (as in an experiment); else the proxy's.
    n_splits, n_groups, alpha
        Number of random half splits (stratified by treatment), quantile groups, and the
        per-split level (the aggregate intervals have level ``1 - 2 alpha``).
    features
        Covariates for CLAN (columns named).
    truth
        The true CATE, for simulations: adds per split oracle values ``Cov(tau, S) / Var(S)``
        for ``beta2`` and ``mean(tau)`` for ``beta1`` on the main sample.
    clusters
        Cluster labels: splits then keep clusters whole and standard errors are clustered.
    seed
        Seed of the splits.
    progress
        Show a progress bar over the splits (in a terminal or notebook).

    Returns
    -------
    GenericMLResult

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> from geocausal.designs.cate import crossfit_cate
    >>> rng = np.random.default_rng(0); n = 600
    >>> X = rng.normal(size=(n, 1)); d = rng.integers(0, 2, n).astype(float)
    >>> y = d * (1 + X[:, 0]) + rng.normal(size=n)
    >>> fp = lambda rows, s: crossfit_cate("dr", X[rows], y[rows], d[rows],
    ...                                    np.arange(rows.size) % 2, propensity=.5)
    >>> r = generic_ml(y, d, fp, X, propensity=.5, n_splits=5)
    >>> bool(r.blp.conf_low[1] > 0)
    True
    """
    d = check_treatment(d)
    y = np.asarray(y, dtype=float)
    n = y.size
    if n_splits < 1:
        raise DataError(f"n_splits must be at least 1, got {n_splits}")
    n1 = int(d.sum())
    if min(n1, n - n1) < 4 * n_groups:
        raise DesignError(f"{n1} treated and {n - n1} control units are too few for {n_groups} "
                          f"GATES groups on half samples; need {4 * n_groups} per arm")
    rng = np.random.default_rng(seed)
    rows = []
    idx = np.arange(n)
    codes = None
    if clusters is not None:
        _, codes = np.unique(np.asarray(clusters), return_inverse=True)
        if codes.max() + 1 < 4:
            raise DesignError(f"only {codes.max() + 1} clusters; repeated half splits need 4+")
    for s in _progress(range(n_splits), desc="generic ML splits", enabled=progress):
        if codes is None:
            aux = np.zeros(n, bool)
            for arm in (0.0, 1.0):
                a = idx[d == arm]
                aux[rng.choice(a, a.size // 2, replace=False)] = True
        else:
            k = codes.max() + 1
            aux = np.isin(codes, rng.choice(k, k // 2, replace=False))
        main = ~aux
        model = fit_proxy(idx[aux], int(rng.integers(2**31)))
        S = np.asarray(model.predict(X[main]), dtype=float)
        B = np.asarray(model.baseline(X[main]), dtype=float)
        if propensity is None:
            p = np.asarray(model.propensity(X[main]), dtype=float)
        else:
            p = np.broadcast_to(np.asarray(propensity, dtype=float), (n,))[main]
        feats = None if features is None else features.iloc[np.flatnonzero(main)]
        res = split_once(y[main], d[main], p, S, B, n_groups=n_groups, features=feats, rng=rng,
                         clusters=None if codes is None else codes[main])
        oracle = {}
        if truth is not None:
            t = np.asarray(truth, dtype=float)[main]
            vs = S.var()
            oracle = {"beta1": t.mean(), "beta2": np.cov(t, S, ddof=0)[0, 1] / vs if vs > 0 else 0.0}
        for term, (est, se) in res.items():
            row = {"split": s, "term": term, "estimate": float(est), "std_error": float(se)}
            if truth is not None:
                row["oracle"] = oracle.get(term, np.nan)
            rows.append(row)
    splits = pd.DataFrame(rows)
    return GenericMLResult(table=aggregate_splits(splits, alpha), splits=splits, alpha=alpha,
                           n_splits=n_splits, n_groups=n_groups)


# ----------------------------------------------------------------------------- the whole design
@dataclass(frozen=True)
class CateEvaluation:
    """Evaluation of CATE predictions without ground truth.

    Attributes
    ----------
    generic_ml : GenericMLResult or None
        BLP, GATES and CLAN, median-aggregated over repeated splits.
    rate : Mapping[str, RateResult]
        ``"AUTOC"`` and ``"QINI"`` of the out-of-fold CATE as priority.
    calibration : pandas.DataFrame
        The calibration test table.

    Plots: :func:`geocausal.results.plot_cate.evaluation_plot` (GATES and TOC side by side).
    """

    generic_ml: GenericMLResult | None
    rate: Mapping[str, RateResult]
    calibration: pd.DataFrame = field(repr=False)

    def tidy(self) -> pd.DataFrame:
        """One table: BLP/GATES/CLAN rows, RATE rows and calibration rows, with a ``part``."""
        parts = []
        if self.generic_ml is not None:
            g = self.generic_ml.tidy()
            g.insert(0, "part", g["term"].str.split("_").str[0].replace({"beta1": "blp",
                                                                         "beta2": "blp"}))
            parts.append(g)
        for name, r in self.rate.items():
            lo, hi = r.conf_int()
            parts.append(pd.DataFrame({"part": ["rate"], "term": [name], "estimate": [r.estimate],
                                       "std_error": [r.std_error], "conf_low": [lo],
                                       "conf_high": [hi], "p_value": [r.p_value]}))
        c = self.calibration.copy()
        c.insert(0, "part", "calibration")
        parts.append(c)
        return pd.concat(parts, ignore_index=True)

    def tables(self, alpha: float = 0.05) -> dict[str, pd.DataFrame]:
        """Typed tables for :attr:`Estimate.tables <geocausal.results.estimate.Estimate.tables>`.

        ``"blp"``, ``"gates"``, ``"clan"`` (key ``term``; median-aggregated bounds at level
        ``level``), ``"rate"`` (key ``target``), ``"toc"`` (key ``quantile``; pointwise normal
        band at ``1 - alpha``) and ``"calibration"`` (key ``term``); columns after the key:
        ``estimate``, ``std_error``, ``ci_low``, ``ci_high`` where they exist, then the rest.
        """
        ren = {"conf_low": "ci_low", "conf_high": "ci_high"}
        out: dict[str, pd.DataFrame] = {}
        if self.generic_ml is not None:
            for name, part in (("blp", self.generic_ml.blp), ("gates", self.generic_ml.gates),
                               ("clan", self.generic_ml.clan)):
                if len(part):
                    out[name] = part.rename(columns=ren).reset_index(drop=True)
        z = stats.norm.ppf(1 - alpha / 2)
        rows = []
        for name, r in self.rate.items():
            rows.append({"target": name, "estimate": r.estimate, "std_error": r.std_error,
                         "ci_low": r.estimate - z * r.std_error,
                         "ci_high": r.estimate + z * r.std_error, "ratio": r.ratio,
                         "p_value": r.p_value, "n_boot": r.n_boot})
        if rows:
            out["rate"] = pd.DataFrame(rows)
            toc = next(iter(self.rate.values())).curve.copy()
            if "std_error" in toc:
                toc["ci_low"] = toc["estimate"] - z * toc["std_error"]
                toc["ci_high"] = toc["estimate"] + z * toc["std_error"]
            out["toc"] = toc.reset_index(drop=True)
        out["calibration"] = self.calibration.rename(columns=ren)[
            ["term", "estimate", "std_error", "ci_low", "ci_high", "statistic", "p_value"]]
        return out

    def scalars(self) -> dict[str, float]:
        """Scalar summaries for diagnostics: BLP slope, GATES spread, RATEs, calibration."""
        out: dict[str, float] = {}
        if self.generic_ml is not None:
            t = self.generic_ml.table.set_index("term")
            out["blp_beta2"] = float(t.loc["beta2", "estimate"])
            out["blp_beta2_p"] = float(t.loc["beta2", "p_value"])
            out["gates_top_minus_bottom"] = float(t.loc["gates_top_minus_bottom", "estimate"])
        for k, r in self.rate.items():
            out[k.lower()] = r.estimate
            out[f"{k.lower()}_se"] = r.std_error
        cal = self.calibration.set_index("term")
        out["calibration_differential"] = float(cal.loc["differential_prediction", "estimate"])
        return out

    def summary(self) -> str:
        """Text summary."""
        t = self.tidy()
        cols = [c for c in ("part", "term", "estimate", "std_error", "conf_low", "conf_high",
                            "p_value") if c in t]
        return t[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}")

    def __str__(self) -> str:
        return self.summary()


def evaluate_cate(fit: Any, X: np.ndarray, y: np.ndarray, d: np.ndarray, *,
                  learners: Mapping[str, Any] | None = None,
                  propensity: Any = None, outcome_mode: str = "separate",
                  n_splits: int = 20, n_groups: int = 5, alpha: float = 0.05,
                  n_boot: int = DEFAULTS.n_boot, clusters: np.ndarray | None = None,
                  features: pd.DataFrame | None = None, truth: np.ndarray | None = None,
                  seed: int = 0, progress: bool = True) -> CateEvaluation:
    """BLP/GATES/CLAN (repeated splits), RATE and calibration for a fitted CATE learner.

    The generic ML proxies are the same meta-learner refitted on each auxiliary half (two inner
    folds, grouped when ``clusters`` are given); RATE ranks units by the out-of-fold CATE and
    scores them with the doubly robust scores of ``fit``
    (a :class:`~geocausal.designs.cate.CateFit`).

    Examples
    --------
    >>> from geocausal.designs.cate import crossfit_cate
    >>> rng = np.random.default_rng(0); n = 500
    >>> X = rng.normal(size=(n, 1)); d = rng.integers(0, 2, n).astype(float)
    >>> y = d * (1 + X[:, 0]) + rng.normal(size=n)
    >>> fit = crossfit_cate("dr", X, y, d, np.arange(n) % 5, propensity=.5)
    >>> ev = evaluate_cate(fit, X, y, d, propensity=.5, n_splits=3, n_boot=50)
    >>> bool(ev.rate["AUTOC"].ratio > 3), sorted(ev.tidy()["part"].unique())[:2]
    (True, ['blp', 'calibration'])
    """
    from geocausal.designs.cate import crossfit_cate
    from geocausal.folds import make_folds

    gml = None
    if n_splits:
        def fit_proxy(rows: np.ndarray, s: int) -> Any:
            f = make_folds(rows.size, 2, s, stratify=d[rows]) if clusters is None else \
                make_folds(rows.size, 2, s, groups=np.asarray(clusters)[rows])
            p = propensity if propensity is None or np.ndim(propensity) == 0 else \
                np.asarray(propensity)[rows]
            return crossfit_cate(fit.kind, X[rows], y[rows], d[rows], f, learners=learners,
                                 propensity=p, outcome_mode=outcome_mode, clip=fit.clip, seed=s,
                                 warn=False)

        gml = generic_ml(y, d, fit_proxy, X, propensity=propensity, n_splits=n_splits,
                         n_groups=n_groups, alpha=alpha, features=features, truth=truth,
                         clusters=clusters, seed=seed, progress=progress)
    rate_res = rates(fit.phi, fit.tau, targets=("AUTOC", "QINI"), clusters=clusters,
                     n_boot=n_boot, seed=seed, progress=progress)
    m = fit.e * fit.mu1 + (1 - fit.e) * fit.mu0
    cal = calibration_test(y, d, fit.e, m, fit.tau)
    return CateEvaluation(generic_ml=gml, rate=rate_res, calibration=cal)


@dataclass(frozen=True)
class CateRun:
    """Everything ``gc.cate`` wraps: the cross-fitted learner, its evaluation and summaries."""

    fit: Any
    evaluation: CateEvaluation | None
    diagnostics: Mapping[str, Any]
    tables: Mapping[str, pd.DataFrame]


def estimate_cate(kind: str, X: np.ndarray, y: np.ndarray, d: np.ndarray,
                  fold_ids: np.ndarray, *, learners: Mapping[str, Any] | None = None,
                  propensity: Any = None, clip: float = DEFAULTS.clip, options: Any = None,
                  evaluate: bool = True, clusters: np.ndarray | None = None,
                  features: pd.DataFrame | None = None, truth: np.ndarray | None = None,
                  seed: int = 0, progress: bool = True) -> CateRun:
    """The CATE design on arrays: cross-fit the meta-learner, evaluate it, summarise.

    Parameters
    ----------
    kind
        The meta-learner (:data:`geocausal.designs.cate.LEARNERS`).
    X, y, d, fold_ids
        Features, outcome, binary treatment and cross-fitting fold ids.
    learners, propensity, clip, seed
        As in :func:`~geocausal.designs.cate.crossfit_cate`.
    options
        A :class:`~geocausal.designs.cate.CateOptions` (or a dict of its fields).
    evaluate
        Run BLP/GATES/CLAN, RATE and calibration.
    clusters
        Units kept together by the folds: the clusters of the splits and of the bootstrap.
    features
        CLAN covariates (rows aligned with ``X``).
    truth
        The true CATE (simulations).
    progress
        Progress bars.

    Returns
    -------
    CateRun

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 400
    >>> X = rng.normal(size=(n, 1)); d = rng.integers(0, 2, n).astype(float)
    >>> y = d * (1 + X[:, 0]) + rng.normal(size=n)
    >>> run = estimate_cate("dr", X, y, d, np.arange(n) % 5, propensity=.5,
    ...                     options={"n_splits": 3, "n_boot": 49}, progress=False)
    >>> sorted(run.tables)
    ['blp', 'calibration', 'gates', 'rate', 'toc']
    """
    from geocausal.designs.cate import CateOptions, crossfit_cate

    opt = CateOptions.make(options)
    fit = crossfit_cate(kind, X, y, d, fold_ids, learners=learners, propensity=propensity,
                        outcome_mode=opt.outcome_mode, clip=clip, seed=seed)
    diag: dict[str, Any] = {"cate": fit.tau, "fold_ids": fit.fold_ids, "learner": kind,
                            "n_clipped": fit.n_clipped, "cate_mean": float(fit.tau.mean()),
                            "cate_sd": float(fit.tau.std())}
    ev = None
    tables: dict[str, pd.DataFrame] = {}
    if evaluate:
        ev = evaluate_cate(fit, X, y, d, learners=learners, propensity=propensity,
                           outcome_mode=opt.outcome_mode, n_splits=opt.n_splits,
                           n_groups=opt.n_groups, alpha=opt.alpha, n_boot=opt.n_boot,
                           clusters=clusters, features=features, truth=truth, seed=seed,
                           progress=progress)
        diag["evaluation"] = ev
        diag.update(ev.scalars())
        tables = ev.tables(opt.alpha)
    if truth is not None:
        truth = np.asarray(truth, dtype=float)
        diag["cor_truth"] = float(np.corrcoef(fit.tau, truth)[0, 1]) if np.ptp(fit.tau) > 0 \
            and np.ptp(truth) > 0 else float("nan")
    return CateRun(fit=fit, evaluation=ev, diagnostics=diag, tables=tables)


def representation_row(est: Any) -> dict[str, float]:
    """The comparison-table row of one ``gc.cate`` result (see ``compare_representations``),
    read from its typed tables (``est.tables``) and scalar diagnostics.
    """
    dg, tables = est.diagnostics, est.tables
    row = {"ate": float(est.params.iloc[0]), "ate_se": float(est.std_errors.iloc[0])}
    if "blp" in tables and "gates" in tables:
        b = tables["blp"].set_index("term").loc["beta2"]
        g = tables["gates"].set_index("term").loc["gates_top_minus_bottom"]
        row.update(blp_beta2=b["estimate"], blp_beta2_low=b["ci_low"],
                   blp_beta2_high=b["ci_high"], blp_beta2_p=b["p_value"],
                   gates_top_minus_bottom=g["estimate"], gates_diff_p=g["p_value"])
    if "rate" in tables:
        for _, r in tables["rate"].iterrows():
            k = str(r["target"]).lower()
            row.update({k: r["estimate"], f"{k}_se": r["std_error"], f"{k}_ratio": r["ratio"]})
        row["calibration_differential"] = dg.get("calibration_differential", np.nan)
    if "cor_truth" in dg:
        row["cor_truth"] = dg["cor_truth"]
    return row

"""Overlap: propensity checks, trimming (fixed threshold or Crump et al. 2009), stabilised
weights and covariate balance (standardised mean differences before and after weighting).

Pure array functions; :func:`geocausal.designs.ipw.fit_weighting` turns them into diagnostics.

Examples
--------
>>> import numpy as np
>>> e = np.array([0.005, 0.2, 0.5, 0.8, 0.999])
>>> trim_mask(e, 0.01).tolist()
[False, True, True, True, False]
>>> round(crump_threshold(np.full(10, 0.5)), 3)
0.0
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd

from geocausal.errors import DataError, DesignError, DiagnosticWarning


def check_propensity(e: np.ndarray, d: np.ndarray, *, warn_below: float = 0.01) -> None:
    """Raise on propensities outside (0, 1) and warn (with counts) on extreme ones.

    Parameters
    ----------
    e
        Propensity scores.
    d
        Binary treatment.
    warn_below
        Propensities below this or above ``1 - warn_below`` trigger a DiagnosticWarning.

    Raises
    ------
    DesignError
        Some propensities are at (or beyond) 0 or 1: inverse weights are infinite.

    Examples
    --------
    >>> import numpy as np
    >>> check_propensity(np.array([0.3, 0.6]), np.array([0, 1]))
    """
    e = np.asarray(e, dtype=float)
    if not np.all(np.isfinite(e)):
        raise DataError(f"propensity has {int((~np.isfinite(e)).sum())} non-finite values")
    at0, at1 = int((e <= 0).sum()), int((e >= 1).sum())
    if at0 or at1:
        raise DesignError(
            f"{at0} propensities are <= 0 and {at1} are >= 1 (no overlap for those units); "
            "pass trim=0.01 (or trim='crump') to drop them, or use a smoother propensity learner"
        )
    lo, hi = int((e < warn_below).sum()), int((e > 1 - warn_below).sum())
    if lo or hi:
        warnings.warn(
            f"{lo} propensities are below {warn_below} and {hi} above {1 - warn_below} "
            f"({int(d[(e < warn_below) | (e > 1 - warn_below)].sum())} of them treated); "
            "weights are extreme; consider trim=0.01, trim='crump' or clip=",
            DiagnosticWarning,
            stacklevel=3,
        )


def crump_threshold(e: np.ndarray) -> float:
    """The optimal trimming threshold alpha of Crump, Hotz, Imbens and Mitnik (2009).

    Keep units with ``alpha <= e <= 1 - alpha``. With ``g = 1 / (e (1 - e))``: alpha is 0 when
    ``max g <= 2 mean g``; otherwise ``gamma`` solves ``gamma = 2 E[g | g <= gamma]`` and
    ``alpha = 1/2 - sqrt(1/4 - 1/gamma)``.

    Examples
    --------
    >>> import numpy as np
    >>> e = np.random.default_rng(0).beta(0.4, 0.4, size=2000)
    >>> 0 < crump_threshold(e) < 0.2
    True
    """
    e = np.asarray(e, dtype=float)
    g = 1.0 / (e * (1.0 - e))
    if g.max() <= 2.0 * g.mean():
        return 0.0
    gs = np.sort(g)
    # candidate gamma = g_(k): the condition holds at the largest k with g_(k) <= 2 mean(g_(1..k))
    cmean = np.cumsum(gs) / np.arange(1, gs.size + 1)
    ok = gs <= 2.0 * cmean
    k = int(np.flatnonzero(ok).max())
    gamma = 2.0 * cmean[k]
    return float(0.5 - np.sqrt(max(0.25 - 1.0 / gamma, 0.0)))


def trim_mask(e: np.ndarray, threshold: float) -> np.ndarray:
    """Boolean mask of units kept: ``threshold <= e <= 1 - threshold``."""
    if not 0.0 <= threshold < 0.5:
        raise DataError(f"trim threshold must be in [0, 0.5), got {threshold}")
    e = np.asarray(e, dtype=float)
    return (e >= threshold) & (e <= 1.0 - threshold)


#: what :func:`clip_propensity`'s warning suggests by default (the IPW/AIPW designs' trim=)
TRIM_REMEDY = ("trim=0.01 or trim='crump' estimates the effect on the overlap population "
               "instead")


def clip_propensity(e: np.ndarray, d: np.ndarray, clip: float, *, stacklevel: int = 2,
                    where: str = "diagnostics['n_clipped']", remedy: str = TRIM_REMEDY,
                    warn: bool = True) -> tuple[np.ndarray, int]:
    """Propensities clipped to ``[clip, 1 - clip]`` and how many were outside it (the units
    :func:`trim_mask` would drop); a :class:`~geocausal.errors.DiagnosticWarning` counts them,
    says where the count is kept (``where``) and what to do instead (``remedy``: the options
    of the design that calls it). ``warn=False`` only counts: for a design's internal refits,
    whose clipping is not the estimate the user sees.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore")
    ...     e, n = clip_propensity(np.array([0.001, 0.5, 0.995]), np.array([0, 1, 1]), 0.01)
    >>> e.tolist(), n
    ([0.01, 0.5, 0.99], 2)
    """
    e = np.asarray(e, dtype=float)
    out = ~trim_mask(e, clip)
    n = int(out.sum())
    if n and warn:
        warnings.warn(f"{n} propensities are outside [{clip:g}, {1 - clip:g}] "
                      f"({int(np.asarray(d)[out].sum())} of them treated) and were clipped to "
                      f"it: their inverse weights are capped at {1 / clip:.0f} and the estimate "
                      f"depends on clip ({where}); {remedy}",
                      DiagnosticWarning, stacklevel=stacklevel + 1)
    return np.clip(e, clip, 1 - clip), n


@dataclass(frozen=True)
class Trimming:
    """Result of trimming: the rule, the threshold, the kept mask and counts by arm."""

    rule: str
    threshold: float
    keep: np.ndarray
    n_trimmed: int
    n_trimmed_treated: int
    n_trimmed_control: int

    def as_dict(self) -> dict:
        """Plain dict for diagnostics."""
        return {"rule": self.rule, "threshold": self.threshold, "n_trimmed": self.n_trimmed,
                "n_trimmed_treated": self.n_trimmed_treated,
                "n_trimmed_control": self.n_trimmed_control}


def trim(e: np.ndarray, d: np.ndarray, rule: float | str | None) -> Trimming:
    """Apply a trimming rule: ``None`` (keep all), a float threshold, or ``"crump"``.

    Examples
    --------
    >>> import numpy as np
    >>> t = trim(np.array([0.001, 0.3, 0.7]), np.array([0, 1, 1]), 0.05)
    >>> t.n_trimmed, t.n_trimmed_control
    (1, 1)
    """
    e = np.asarray(e, dtype=float)
    d = np.asarray(d)
    if rule is None:
        thr, name = 0.0, "none"
        keep = np.ones(e.size, dtype=bool)
    else:
        if isinstance(rule, str):
            if rule.lower() != "crump":
                raise DataError(f"trim='{rule}' is not a number or 'crump'")
            thr, name = crump_threshold(np.clip(e, 1e-12, 1 - 1e-12)), "crump"
        else:
            thr, name = float(rule), "fixed"
        keep = trim_mask(e, thr)
        if thr == 0.0:
            keep &= (e > 0) & (e < 1)
    drop = ~keep
    return Trimming(name, thr, keep, int(drop.sum()), int((drop & (d == 1)).sum()),
                    int((drop & (d == 0)).sum()))


def ipw_weights(e: np.ndarray, d: np.ndarray, estimand: str = "ATE",
                stabilized: bool = False) -> np.ndarray:
    """Inverse-probability weights.

    ATE: ``d / e + (1 - d) / (1 - e)``; stabilised: numerators ``P(D=1)`` and ``P(D=0)``.
    ATT: treated 1, controls ``e / (1 - e)``; stabilised: controls scaled by
    ``P(D=0) / P(D=1)``.

    Examples
    --------
    >>> import numpy as np
    >>> ipw_weights(np.array([0.5, 0.25]), np.array([1, 0])).tolist()
    [2.0, 1.3333333333333333]
    """
    e = np.asarray(e, dtype=float)
    d = np.asarray(d, dtype=float)
    p = d.mean()
    if estimand == "ATE":
        if stabilized:
            return d * p / e + (1 - d) * (1 - p) / (1 - e)
        return d / e + (1 - d) / (1 - e)
    if estimand == "ATT":
        w0 = e / (1 - e) * ((1 - p) / p if stabilized else 1.0)
        return d + (1 - d) * w0
    raise DataError(f"estimand '{estimand}' is not 'ATE' or 'ATT'")


def _wmean_var(x: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w = w / w.sum()
    m = w @ x
    return m, w @ (x - m) ** 2


def smd_table(X: np.ndarray, d: np.ndarray, weights: np.ndarray | None = None,
              names: list[str] | None = None) -> pd.DataFrame:
    """Standardised mean differences before and after weighting.

    ``smd = (mean_treated - mean_control) / sqrt((var_treated + var_control) / 2)`` (population
    variances), with the
    unweighted pooled standard deviation in the denominator both before and after weighting
    (so the two columns differ only through the means), and the variance ratio after
    weighting.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.array([[0.0], [1.0], [2.0], [3.0]]); d = np.array([0, 0, 1, 1])
    >>> round(float(smd_table(X, d)["smd_unweighted"].iloc[0]), 3)
    4.0
    """
    X = np.asarray(X, dtype=float)
    if X.ndim == 1:
        X = X[:, None]
    d = np.asarray(d).astype(bool)
    names = names or [f"x{j}" for j in range(X.shape[1])]
    ones = np.ones(X.shape[0])
    m1, v1 = _wmean_var(X[d], ones[d])
    m0, v0 = _wmean_var(X[~d], ones[~d])
    sd = np.sqrt((v1 + v0) / 2)
    sd = np.where(sd > 0, sd, 1.0)
    out = pd.DataFrame({"term": names, "mean_treated": m1, "mean_control": m0,
                        "smd_unweighted": (m1 - m0) / sd})
    if weights is not None:
        w = np.asarray(weights, dtype=float)
        wm1, wv1 = _wmean_var(X[d], w[d])
        wm0, wv0 = _wmean_var(X[~d], w[~d])
        out["smd_weighted"] = (wm1 - wm0) / sd
        with np.errstate(divide="ignore", invalid="ignore"):
            out["variance_ratio_weighted"] = np.where(wv0 > 0, wv1 / wv0, np.nan)
    return out


def image_components(F: np.ndarray, k: int = 5) -> np.ndarray:
    """Leading ``k`` principal components of standardised image features (via sklearn PCA).

    Examples
    --------
    >>> import numpy as np
    >>> image_components(np.random.default_rng(0).normal(size=(50, 8)), 3).shape
    (50, 3)
    """
    from sklearn.decomposition import PCA

    F = np.asarray(F, dtype=float)
    sd = F.std(axis=0)
    Z = (F - F.mean(axis=0)) / np.where(sd > 0, sd, 1.0)
    k = int(min(k, Z.shape[1], Z.shape[0]))
    return PCA(n_components=k, svd_solver="full").fit_transform(Z)

"""Meta-learners for conditional average treatment effects (CATE), arrays in, arrays out.

One entry point, :func:`crossfit_cate`, fits any of the DR, R, X, T and S learners (and an
honest random forest on doubly robust pseudo-outcomes, ``"forest"``, see :class:`HonestForest`)
with cross-fitting over given fold ids:

* nuisances (outcome regressions ``mu0``, ``mu1``, the propensity ``e`` unless it is known)
  are predicted out of fold;
* the final CATE stage is cross-fitted over the same folds, so every unit gets an out-of-fold
  CATE prediction ``tau``;
* every model is also refitted on all units, so :meth:`CateFit.predict` maps new features
  (other places, a raster grid) to CATE predictions.

The doubly robust (AIPW) score ``phi = mu1 - mu0 + d (y - mu1) / e - (1 - d)(y - mu0)/(1 - e)``
gives the ATE (its mean) with influence function ``phi - ATE`` whatever the learner.

With ``outcome_mode="pooled"`` one outcome regression is fitted on ``[X, d]`` and evaluated at
``d = 0, 1`` (the convention of econml's ``DRLearner``); ``"separate"`` fits one per arm.

Examples
--------
>>> import numpy as np
>>> from sklearn.linear_model import LinearRegression
>>> rng = np.random.default_rng(0)
>>> X = rng.normal(size=(400, 2)); d = rng.integers(0, 2, 400)
>>> y = X[:, 0] + d * (1 + X[:, 1]) + rng.normal(size=400)
>>> f = np.arange(400) % 4
>>> fit = crossfit_cate("dr", X, y, d, f, propensity=0.5,
...                     learners={"outcome": LinearRegression(), "final": LinearRegression()})
>>> abs(fit.ate - 1) < 0.2, fit.tau.shape
(True, (400,))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin, clone, is_classifier
from sklearn.ensemble import RandomForestRegressor

from geocausal import vocabulary
from geocausal.designs.common import check_estimate, check_treatment
from geocausal.designs.overlap import clip_propensity
from geocausal.errors import DataError, DesignError, OptionError
from geocausal.folds import Folds, check_fold_arms, fold_indices
from geocausal.vocabulary import (
    DEFAULTS,
    check_count,
    check_probability,
    choice,
    coerce_options,
)

LEARNERS = ("dr", "r", "x", "t", "s", "forest")
REPRESENTATIONS = ("sequence", "single", "first", "summary")
OUTCOME_MODES = ("separate", "pooled")


@dataclass(frozen=True)
class CateOptions:
    """Options of ``gc.cate`` beyond the learners, folds and images: one validated object.

    ``gc.cate(..., options=CateOptions(n_boot=199))`` or ``options={"n_boot": 199}``.

    Parameters
    ----------
    outcome_mode : {"separate", "pooled"}
        One outcome regression per arm, or one on ``[X, d]`` evaluated at ``d = 0, 1``
        (econml's ``DRLearner`` convention).
    n_splits : int
        Repeated sample splits of the generic ML inference (BLP/GATES/CLAN); 0 skips it.
    n_groups : int
        GATES groups (quantiles of the proxy CATE), at least 2.
    n_boot : int
        Half-sample draws for the RATE standard errors and the TOC band (shared default 999).
    alpha : float
        Level of the generic ML intervals (per split, before the median aggregation).
    clan : sequence of str, optional
        Columns whose means CLAN compares (default: the formula's plain controls).
    representation : {"sequence", "single", "first", "summary"}
        How chips become features: all periods plus change, the last period, the first, or
        summaries (as ``IPWOptions.representation`` of ``gc.aipw``).
    evaluate : bool
        Run BLP/GATES/CLAN, RATE and calibration (``False``: the ATE and the CATE model only).

    Examples
    --------
    >>> CateOptions.make({"n_boot": 99}).n_boot
    99
    >>> CateOptions(outcome_mode="joint")
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: cate: outcome_mode='joint' is not one of 'separate', 'pooled'
    """

    outcome_mode: Literal["separate", "pooled"] = "separate"
    n_splits: int = 20
    n_groups: int = 5
    n_boot: int = DEFAULTS.n_boot
    alpha: float = DEFAULTS.alpha
    clan: Sequence[str] | None = None
    representation: str = "sequence"
    evaluate: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "representation", choice(
            "representation", self.representation, REPRESENTATIONS, design="cate"))
        if not isinstance(self.evaluate, bool | np.bool_):
            raise OptionError(f"cate: evaluate must be True or False, got {self.evaluate!r}")
        object.__setattr__(self, "evaluate", bool(self.evaluate))
        object.__setattr__(self, "outcome_mode", choice("outcome_mode", self.outcome_mode,
                                                        OUTCOME_MODES, design="cate"))
        check_count("n_splits", self.n_splits)
        check_count("n_groups", self.n_groups, minimum=2)
        check_count("n_boot", self.n_boot, minimum=2)
        check_probability("alpha", self.alpha)
        if self.clan is not None:
            clan = (self.clan,) if isinstance(self.clan, str) else tuple(self.clan)
            if not all(isinstance(c, str) for c in clan):
                raise OptionError(f"cate: clan must be column names, got {self.clan!r}")
            object.__setattr__(self, "clan", clan)

    @classmethod
    def make(cls, options: CateOptions | Mapping[str, Any] | None) -> CateOptions:
        """The options from an object, a plain dict of its fields, or None (the defaults)."""
        return coerce_options(cls, options)


_OPTION_KEYWORDS = ("outcome_mode", "n_splits", "n_groups", "n_boot", "alpha", "clan",
                    "representation", "evaluate")


def legacy_keywords(kw: dict[str, Any], folds: Any, options: Any) -> tuple[Any, Any]:
    """``gc.cate``'s old keywords -> ``(folds, options)``, each with a ``FutureWarning``.

    ``outcome_mode``, ``n_splits``, ``n_groups``, ``n_boot``, ``alpha``, ``clan``,
    ``representation``, ``evaluate`` move into :class:`CateOptions`; ``groups=`` becomes ``folds=Folds.group(groups, k)`` and
    ``coords=`` (with ``block_size=``) ``folds=Folds.spatial(coords, k, block_size)``.

    Examples
    --------
    >>> import warnings
    >>> with warnings.catch_warnings():
    ...     warnings.simplefilter("ignore", FutureWarning)
    ...     folds, opt = legacy_keywords({"groups": "village", "n_boot": 99}, 4, None)
    >>> folds.kind, folds.by, opt.n_boot
    ('group', 'village', 99)
    """
    if not kw:
        return folds, options
    unknown = sorted(set(kw) - set(_OPTION_KEYWORDS) - {"groups", "coords", "block_size"})
    if unknown:
        raise OptionError(f"cate() got unexpected keyword arguments {unknown}; its options "
                          f"beyond the signature are the fields of CateOptions "
                          f"{list(CateOptions.__dataclass_fields__)}")
    opt = {k: kw.pop(k) for k in _OPTION_KEYWORDS if k in kw}
    if opt:
        warnings.warn(f"cate({', '.join(f'{k}=' for k in opt)}) is deprecated: pass "
                      f"options=gc.CateOptions({', '.join(f'{k}=...' for k in opt)})",
                      FutureWarning, stacklevel=3)
        base = CateOptions.make(options).__dict__
        options = CateOptions(**{**base, **opt})
    if kw:
        if not isinstance(folds, int | np.integer) or isinstance(folds, bool):
            raise DataError("groups=/coords= (deprecated) take an integer folds=; use "
                            "folds=gc.Folds.group(...) or gc.Folds.spatial(...) instead")
        if kw.get("groups") is not None and kw.get("coords") is not None:
            raise DataError("give groups= or coords=, not both")
        if kw.get("coords") is not None:
            new = Folds.spatial(_by(kw["coords"]), k=int(folds), block_size=kw.get("block_size"))
            hint = "folds=gc.Folds.spatial(coords, k, block_size=...)"
        elif kw.get("groups") is not None:
            new = Folds.group(kw["groups"], k=int(folds))
            hint = "folds=gc.Folds.group(groups, k)"
        elif kw.get("block_size") is not None:
            raise OptionError("block_size= is the side of spatial blocks: pass "
                              "folds=gc.Folds.spatial(coords, k, block_size=...)")
        else:  # groups=None / coords=None spelled out: nothing to do
            return folds, options
        warnings.warn(f"cate(groups=/coords=/block_size=) is deprecated: pass {hint}",
                      FutureWarning, stacklevel=3)
        folds = new
    return folds, options


def _by(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) and all(isinstance(v, str) for v in value) \
        else value


def check_folds(d: np.ndarray, fold_ids: np.ndarray, min_per_arm: int = 2) -> None:
    """Every fold's training part and held-out part must hold ``min_per_arm`` units of each arm.

    The shared check :func:`geocausal.folds.check_fold_arms` with both minima set.

    Examples
    --------
    >>> check_folds(np.array([0, 1] * 10), np.arange(20) // 10)
    """
    check_fold_arms(d, fold_ids, min_train=min_per_arm, min_test=min_per_arm)


class HonestForest(RegressorMixin, BaseEstimator):
    """Honest random forest: trees grown on one half, leaf values from the other half.

    The splits of a scikit-learn random forest are chosen on a random half of the rows; each
    leaf's value is then the mean target of the *other* half's rows falling in it (the tree's
    own value when none do), as in causal forests' honesty. Used on doubly robust scores by
    ``kind="forest"``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> X = rng.normal(size=(2000, 2)); y = X[:, 0] + rng.normal(size=2000)
    >>> f = HonestForest(n_estimators=50, random_state=0).fit(X, y)
    >>> bool(np.corrcoef(f.predict(X), X[:, 0])[0, 1] > 0.9)
    True
    """

    def __init__(self, n_estimators: int = 100, min_samples_leaf: int = 10,
                 max_features: float = 0.5, max_samples: float = 0.5,
                 random_state: int | None = 0):
        self.n_estimators = n_estimators
        self.min_samples_leaf = min_samples_leaf
        self.max_features = max_features
        self.max_samples = max_samples
        self.random_state = random_state

    def fit(self, X, y):
        """Grow the trees on one half and estimate leaf values on the other."""
        X, y = np.asarray(X, dtype=float), np.asarray(y, dtype=float)
        rng = np.random.default_rng(self.random_state)
        est = rng.permutation(X.shape[0])
        grow, fill = est[: X.shape[0] // 2], est[X.shape[0] // 2:]
        self.forest_ = RandomForestRegressor(
            n_estimators=self.n_estimators, min_samples_leaf=self.min_samples_leaf,
            max_features=self.max_features, max_samples=self.max_samples,
            random_state=self.random_state, n_jobs=1).fit(X[grow], y[grow])
        leaves = self.forest_.apply(X[fill])
        self.values_ = []
        for t, tree in enumerate(self.forest_.estimators_):
            own = tree.tree_.value[:, 0, 0].copy()
            cnt = np.bincount(leaves[:, t], minlength=own.size)
            tot = np.bincount(leaves[:, t], weights=y[fill], minlength=own.size)
            self.values_.append(np.where(cnt > 0, tot / np.maximum(cnt, 1), own))
        return self

    def predict(self, X):
        """Average over trees of the honest leaf values."""
        leaves = self.forest_.apply(np.asarray(X, dtype=float))
        return np.mean([v[leaves[:, t]] for t, v in enumerate(self.values_)], axis=0)


def default_learners(kind: str, seed: int = 0) -> dict[str, Any]:
    """Default learners per slot: :func:`geocausal.vocabulary.default_learners` ``("cate")``
    (linear outcome, the one default propensity learner, linear final stage), with an
    :class:`HonestForest` final stage for ``kind="forest"``.

    Examples
    --------
    >>> sorted(default_learners("dr"))
    ['final', 'marginal', 'outcome', 'propensity']
    """
    out = vocabulary.default_learners("cate", seed)
    if kind == "forest":
        out["final"] = HonestForest(random_state=seed)
    return out


def _fit(model, X, y, sample_weight=None):
    m = clone(model)
    if sample_weight is None:
        return m.fit(X, y)
    try:
        return m.fit(X, y, sample_weight=sample_weight)
    except TypeError:
        raise DataError(f"the final learner {type(model).__name__} does not accept sample_weight, "
                        "which the R-learner needs; pass one that does") from None


def _prob(model, X) -> np.ndarray:
    if is_classifier(model) or hasattr(model, "predict_proba"):
        return model.predict_proba(X)[:, 1]
    return np.clip(model.predict(X), 0.0, 1.0)


@dataclass(frozen=True)
class _Outcome:
    """Outcome regressions fitted on some rows: one per arm or one pooled on ``[X, d]``."""

    mode: str
    models: tuple

    @classmethod
    def fit(cls, learner, X, y, d, mode) -> _Outcome:
        if mode == "pooled":
            return cls(mode, (_fit(learner, np.column_stack([X, d]), y),))
        return cls(mode, (_fit(learner, X[d == 0], y[d == 0]), _fit(learner, X[d == 1], y[d == 1])))

    def predict(self, X) -> tuple[np.ndarray, np.ndarray]:
        if self.mode == "pooled":
            m = self.models[0]
            n = X.shape[0]
            return (m.predict(np.column_stack([X, np.zeros(n)])),
                    m.predict(np.column_stack([X, np.ones(n)])))
        return self.models[0].predict(X), self.models[1].predict(X)


@dataclass(frozen=True)
class CateFit:
    """Cross-fitted CATE learner: per-unit out-of-fold predictions and refitted models.

    Attributes
    ----------
    kind : str
        ``"dr"``, ``"r"``, ``"x"``, ``"t"``, ``"s"`` or ``"forest"``.
    tau : numpy.ndarray
        Out-of-fold CATE predictions, one per unit.
    phi : numpy.ndarray
        Doubly robust scores (out-of-fold nuisances); their mean is the ATE.
    mu0, mu1, e : numpy.ndarray
        Out-of-fold outcome regressions and (clipped) propensity.
    n_clipped : int
        Estimated propensities that were outside ``[clip, 1 - clip]`` and clipped to it (a
        counted :class:`~geocausal.errors.DiagnosticWarning` says so).
    fold_ids : numpy.ndarray
        The folds used.
    models : Mapping
        Models refitted on all units, used by :meth:`predict` and :meth:`baseline`.
    """

    kind: str
    tau: np.ndarray
    phi: np.ndarray
    mu0: np.ndarray
    mu1: np.ndarray
    e: np.ndarray
    fold_ids: np.ndarray
    models: Mapping[str, Any] = field(repr=False, default_factory=dict)
    propensity_known: float | None = None
    clip: float = 0.01
    n_clipped: int = 0

    @property
    def ate(self) -> float:
        """The AIPW average treatment effect, ``mean(phi)``."""
        return float(np.mean(self.phi))

    @property
    def influence(self) -> np.ndarray:
        """Influence function of the ATE, ``phi - ATE``."""
        return self.phi - self.ate

    def propensity(self, X: np.ndarray) -> np.ndarray:
        """Propensity at new features: the known value, or the refitted model (clipped)."""
        if self.propensity_known is not None:
            return np.full(X.shape[0], self.propensity_known)
        return np.clip(_prob(self.models["propensity"], X), self.clip, 1 - self.clip)

    def baseline(self, X: np.ndarray) -> np.ndarray:
        """Predicted untreated outcome ``mu0(X)`` from the refitted outcome model."""
        return self.models["outcome"].predict(np.asarray(X, dtype=float))[0]

    def predict(self, X: np.ndarray) -> np.ndarray:
        """CATE predictions at new features from the models refitted on all units."""
        X = np.asarray(X, dtype=float)
        return _predict_tau(self.kind, self.models, X, self.propensity(X))


def _predict_tau(kind: str, models: Mapping[str, Any], X: np.ndarray, e: np.ndarray) -> np.ndarray:
    if kind == "t":
        m0, m1 = models["outcome"].predict(X)
        return m1 - m0
    if kind == "s":
        n = X.shape[0]
        s = models["s"]
        return s.predict(np.column_stack([X, np.ones(n)])) - s.predict(np.column_stack([X, np.zeros(n)]))
    if kind == "x":
        return e * models["tau0"].predict(X) + (1 - e) * models["tau1"].predict(X)
    return models["final"].predict(X)


def _final_stage(kind, learners, X, y, d, mu0, mu1, e, m, phi, rows) -> dict[str, Any]:
    """Fit the CATE stage on ``rows`` given out-of-fold nuisances."""
    Xr, yr, dr = X[rows], y[rows], d[rows]
    if kind in ("dr", "forest"):
        return {"final": _fit(learners["final"], Xr, phi[rows])}
    if kind == "r":
        res_d = dr - e[rows]
        res_y = yr - m[rows]
        w = res_d ** 2
        ok = w > 1e-12
        return {"final": _fit(learners["final"], Xr[ok], res_y[ok] / res_d[ok], sample_weight=w[ok])}
    if kind == "x":
        t1, t0 = dr == 1, dr == 0
        return {"tau1": _fit(learners["final"], Xr[t1], yr[t1] - mu0[rows][t1]),
                "tau0": _fit(learners["final"], Xr[t0], mu1[rows][t0] - yr[t0])}
    if kind == "t":
        return {"outcome": _Outcome.fit(learners["outcome"], Xr, yr, dr, "separate")}
    if kind == "s":
        return {"s": _fit(learners["outcome"], np.column_stack([Xr, dr]), yr)}
    raise DataError(f"learner must be one of {LEARNERS}, got '{kind}'")


def crossfit_cate(
    kind: str,
    X: np.ndarray,
    y: np.ndarray,
    d: np.ndarray,
    fold_ids: np.ndarray,
    *,
    learners: Mapping[str, Any] | None = None,
    propensity: float | np.ndarray | None = None,
    outcome_mode: str = "separate",
    clip: float = DEFAULTS.clip,
    seed: int = 0,
    warn: bool = True,
) -> CateFit:
    """Cross-fitted CATE meta-learner.

    Parameters
    ----------
    kind
        ``"dr"``, ``"r"``, ``"x"``, ``"t"``, ``"s"`` or ``"forest"`` (honest random forest on DR scores).
    X, y, d
        Features ``(n, p)``, outcome ``(n,)``, binary treatment ``(n,)``.
    fold_ids
        Integer fold per unit (see :func:`geocausal.folds.resolve_folds`).
    learners
        Slots ``"outcome"`` (regressor), ``"propensity"`` (classifier), ``"final"`` (regressor of
        the CATE stage; must take ``sample_weight`` for ``"r"``), ``"marginal"`` (regressor of
        ``E[Y|X]`` for ``"r"``; default ``e mu1 + (1 - e) mu0``). Missing slots get defaults;
        econml's names (``model_regression``, ``model_propensity``, ``model_final``,
        ``model_y``, ``model_t``) are aliases (:data:`geocausal.vocabulary.ALIASES`); an
        unknown slot raises :class:`~geocausal.errors.OptionError`.
    propensity
        Known treatment probability (scalar or per unit, as in an experiment) or None to
        estimate it by cross-fitting.
    outcome_mode
        ``"separate"`` (one regression per arm) or ``"pooled"`` (one on ``[X, d]``).
    clip
        Estimated propensities are clipped to ``[clip, 1 - clip]``; how many were is
        ``n_clipped``, and a :class:`~geocausal.errors.DiagnosticWarning` says so.
    seed
        Seed for the default forest.
    warn
        False for internal refits (the evaluation's half-sample proxies): clipped
        propensities are counted, not warned about.

    Returns
    -------
    CateFit
    """
    if kind not in LEARNERS:
        raise DataError(f"learner must be one of {LEARNERS}, got '{kind}'")
    outcome_mode = choice("outcome_mode", outcome_mode, OUTCOME_MODES, design="cate")
    clip = check_probability("clip", clip, high=0.5)
    X = np.asarray(X, dtype=float)
    X = X[:, None] if X.ndim == 1 else X
    y = np.asarray(y, dtype=float)
    d = check_treatment(d)
    if X.shape[0] != y.shape[0] or y.shape[0] != d.shape[0]:
        raise DataError(f"X, y, d have {X.shape[0]}, {y.shape[0]}, {d.shape[0]} rows")
    if X.shape[1] == 0:
        X = np.zeros((X.shape[0], 1))
    fold_ids = np.asarray(fold_ids)
    check_folds(d, fold_ids)
    lrn = default_learners(kind, seed)
    lrn.update({k: v for k, v in vocabulary.resolve_learners("cate", learners).items()
                if v is not None})
    n = X.shape[0]
    known = None
    if propensity is not None:
        e_arr = np.broadcast_to(np.asarray(propensity, dtype=float), (n,)).copy()
        if np.any((e_arr <= 0) | (e_arr >= 1)):
            raise DataError("known propensity must lie strictly between 0 and 1")
        if np.ptp(e_arr) == 0:
            known = float(e_arr[0])
    mu0, mu1, e, m = (np.empty(n) for _ in range(4))
    for train, test in fold_indices(fold_ids):
        out = _Outcome.fit(lrn["outcome"], X[train], y[train], d[train], outcome_mode)
        mu0[test], mu1[test] = out.predict(X[test])
        if propensity is None:
            pm = _fit(lrn["propensity"], X[train], d[train])
            e[test] = _prob(pm, X[test])
        if lrn["marginal"] is not None and kind == "r":
            m[test] = _fit(lrn["marginal"], X[train], y[train]).predict(X[test])
    n_clipped = 0
    if propensity is not None:
        e = e_arr
    else:
        e, n_clipped = clip_propensity(
            e, d, clip, stacklevel=3, warn=warn,
            remedy="check where treated and control units overlap and restrict the sample "
                   "there, or set clip=")
    if lrn["marginal"] is None or kind != "r":
        m = e * mu1 + (1 - e) * mu0
    phi = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    check_estimate(phi.mean(), phi - phi.mean(), "the CATE design's AIPW ATE")
    tau = np.empty(n)
    for train, test in fold_indices(fold_ids):
        models = _final_stage(kind, lrn, X, y, d, mu0, mu1, e, m, phi, train)
        tau[test] = _predict_tau(kind, models, X[test], e[test])
    everyone = np.arange(n)
    models = dict(_final_stage(kind, lrn, X, y, d, mu0, mu1, e, m, phi, everyone))
    models.setdefault("outcome", _Outcome.fit(lrn["outcome"], X, y, d, outcome_mode))
    if propensity is None:
        models["propensity"] = _fit(lrn["propensity"], X, d)
    elif known is None:
        # per-unit known propensities: predict new places with their mean
        known = float(np.mean(e_arr))
    bad = int((~np.isfinite(tau)).sum())
    if bad:
        raise DesignError(f"{bad} of {n} CATE predictions of the '{kind}' learner are not "
                          "finite; check the outcome's scale and the final-stage learner")
    for arr in (tau, phi, mu0, mu1, e):
        arr.setflags(write=False)
    return CateFit(kind=kind, tau=tau, phi=phi, mu0=mu0, mu1=mu1, e=e, fold_ids=fold_ids,
                   models=models, propensity_known=known, clip=clip, n_clipped=n_clipped)

"""``gc.cate``: heterogeneous effects in experiments from tabular data and image sequences.

The returned :class:`~geocausal.results.estimate.Estimate` holds the ATE (AIPW, with its
influence-function standard error). Its diagnostics hold

* ``"cate"``: out-of-fold CATE predictions, one per row;
* ``"model"``: the fitted :class:`CateModel`: ``.effect(new_rows, images=new_chips)`` predicts
  the CATE of new units through the same feature path (formula terms with the training
  encoding, the same image representation), ``.predict(features)`` from a feature matrix,
  ``.save(path)`` / ``CateModel.load(path)`` keep it (``est.save`` does not: fitted models stay
  out of the safe result format);
* ``"features"``: the feature spec (tabular columns, image representation) to rebuild features
  for new places (see :mod:`geocausal.api.transport`);
* ``"evaluation"``: a :class:`CateEvaluation` with BLP/GATES/CLAN (median over repeated splits),
  RATE (AUTOC and QINI, half-sample bootstrap SEs) and the calibration test;
* scalar summaries (``blp_beta2``, ``autoc``, ...), printed by ``summary()``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0); n = 600
>>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
>>> df["y"] = df.x + df.d * (1 + df.x) + rng.normal(size=n)
>>> est = cate("y ~ d + x", df, propensity=0.5, n_splits=5, n_boot=50)
>>> bool(abs(est.params["d"] - 1) < 0.25), est.diagnostics["cate"].shape
(True, (600,))
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pandas as pd
from sklearn.base import BaseEstimator, clone

from geocausal.api._correction import apply_correction
from geocausal.api._images import align_images, image_features, summary_features
from geocausal.designs.cate import (
    LEARNERS,
    CateFit,
    crossfit_cate,
    default_learners,
)
from geocausal.designs.cate_eval import (
    GenericMLResult,
    RateResult,
    calibration_test,
    generic_ml,
)
from geocausal.designs.cate_eval import rates as rate_targets
from geocausal.designs.common import check_treatment
from geocausal.errors import DataError, DesignError
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from
from geocausal.nuisance.crossfit import make_folds
from geocausal.results.estimate import Estimate, make_provenance

REPRESENTATIONS = ("sequence", "single", "first", "summary")


# ----------------------------------------------------------------------------- features
def chip_features(chips: np.ndarray, representation: str = "sequence",
                  mask: np.ndarray | None = None) -> np.ndarray:
    """Summary features of chips ``(N, T, H, W, C)`` for a representation.

    ``"sequence"``: per-band mean and sd at every period plus the change of each from the first
    to the last period; ``"single"``: the last period only; ``"first"``: the first period only;
    ``"summary"``: every period, no change features.

    Examples
    --------
    >>> chips = np.zeros((3, 2, 4, 4, 2)); chips[:, 1] += 1
    >>> chip_features(chips).shape, chip_features(chips, "single").shape
    ((3, 12), (3, 4))
    """
    if representation not in REPRESENTATIONS:
        raise DataError(f"image representation must be one of {REPRESENTATIONS}, "
                        f"got '{representation}'")
    x = np.asarray(chips, dtype=float)
    if x.ndim == 4:
        x = x[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    if representation in ("single", "first"):
        t = -1 if representation == "single" else 0
        return summary_features(x[:, t], None if mask is None else mask[:, t])
    per = summary_features(x, mask).reshape(x.shape[0], x.shape[1], -1)
    flat = per.reshape(x.shape[0], -1)
    if representation == "summary" or x.shape[1] == 1:
        return flat
    return np.concatenate([flat, per[:, -1] - per[:, 0]], axis=1)


def _image_matrix(images: Any, n: int, representation: str, seed: int) -> np.ndarray | None:
    if images is None:
        return None
    if isinstance(images, Mapping):
        # multi-scale: chips of the same sites at several sizes, features concatenated
        if not images:
            raise DataError("images= is an empty mapping; give {scale name: chips}")
        return np.concatenate([_image_matrix(v, n, representation, seed)
                               for v in images.values()], axis=1)
    arr = images[0] if isinstance(images, tuple) else images
    if isinstance(arr, np.ndarray) and arr.ndim in (4, 5):
        mask = images[1] if isinstance(images, tuple) else None
        feats = chip_features(arr, representation, mask)
        if feats.shape[0] != n:
            raise DataError(f"images have {feats.shape[0]} chips but the data have {n} rows")
        return feats
    return image_features(images, n, representation="summary", seed=seed)


def design_matrix(parsed, data: pd.DataFrame, images: Any, representation: str,
                  seed: int) -> tuple[np.ndarray, list[str]]:
    """Tabular controls (formulaic) next to image features; returns the matrix and names."""
    tab = parsed.control_matrix(data)
    parts, names = [tab.to_numpy(dtype=float)], list(map(str, tab.columns))
    img = _image_matrix(images, len(data), representation, seed)
    if img is not None:
        parts.append(img)
        names += [f"img{j}" for j in range(img.shape[1])]
    X = np.concatenate(parts, axis=1)
    if X.shape[1] == 0:
        raise DataError("gc.cate needs effect modifiers: add controls to the formula "
                        "('y ~ d + x1 + x2') or pass images=")
    return X, names


# ----------------------------------------------------------------------------- image learners
class DropColumns(BaseEstimator):
    """Fit ``estimator`` on ``X`` without the columns ``[start, stop)`` (scikit-learn meta).

    ``gc.cate`` hands image learners the raw flattened chips (dropping the summary features)
    and every other learner the summary features (dropping the raw chips).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> X = np.c_[np.arange(6.0), np.ones(6) * 9]
    >>> DropColumns(LinearRegression(), 1, 2).fit(X, 2 * X[:, 0]).predict(X[:2]).round(6).tolist()
    [0.0, 2.0]
    """

    def __init__(self, estimator=None, start: int = 0, stop: int = 0):
        self.estimator = estimator
        self.start = start
        self.stop = stop

    def _cols(self, X):
        X = np.asarray(X)
        return np.concatenate([X[:, :self.start], X[:, self.stop:]], axis=1)

    def fit(self, X, y, sample_weight=None):
        """Fit a clone of the estimator on the kept columns."""
        kw = {} if sample_weight is None else {"sample_weight": sample_weight}
        self.estimator_ = clone(self.estimator).fit(self._cols(X), y, **kw)
        return self

    def predict(self, X):
        """Predictions from the kept columns."""
        return self.estimator_.predict(self._cols(X))

    def predict_proba(self, X):
        """Class probabilities from the kept columns."""
        return self.estimator_.predict_proba(self._cols(X))


def _is_image_learner(obj: Any) -> bool:
    return obj is not None and hasattr(obj, "image_shape") and hasattr(obj, "encoder")


def _with_image_learners(kind: str, learners: Mapping[str, Any] | None, X: np.ndarray,
                         images: Any, n_summary: int, seed: int):
    """Put raw chips in front of ``X`` and route columns: raw to image learners, rest to others."""
    if not any(_is_image_learner(v) for v in (learners or {}).values()):
        return X, learners, False
    chips = images[0] if isinstance(images, tuple) else images
    chips = np.asarray(chips)
    if chips.ndim not in (4, 5):
        raise DataError("an image learner needs images= as chips (N, H, W, C) or (N, T, H, W, C)")
    raw = chips.reshape(chips.shape[0], -1).astype(float)
    k, p = raw.shape[1], X.shape[1]
    full = default_learners(kind, seed)
    full.update({s: v for s, v in (learners or {}).items() if v is not None})
    routed = {}
    for slot, lrn in full.items():
        if lrn is None:
            routed[slot] = None
        elif _is_image_learner(lrn):
            lrn = clone(lrn).set_params(image_shape=tuple(chips.shape[1:]))
            routed[slot] = DropColumns(lrn, k + p - n_summary, k + p)
        else:
            routed[slot] = DropColumns(lrn, 0, k)
    return np.concatenate([raw, X], axis=1), routed, True


# ----------------------------------------------------------------------------- evaluation
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

    def summary(self) -> str:
        """Text summary."""
        t = self.tidy()
        cols = [c for c in ("part", "term", "estimate", "std_error", "conf_low", "conf_high",
                            "p_value") if c in t]
        return t[cols].to_string(index=False, float_format=lambda x: f"{x:.4f}")

    def __str__(self) -> str:
        return self.summary()

    def plot(self, axes=None):
        """GATES and TOC curves side by side."""
        from geocausal.results.plot_cate import evaluation_plot

        return evaluation_plot(self, axes=axes)


def evaluate_cate(fit: CateFit, X: np.ndarray, y: np.ndarray, d: np.ndarray, *,
                  learners: Mapping[str, Any] | None = None,
                  propensity: Any = None, outcome_mode: str = "separate",
                  n_splits: int = 20, n_groups: int = 5, alpha: float = 0.05,
                  n_boot: int = 200, clusters: np.ndarray | None = None,
                  features: pd.DataFrame | None = None, truth: np.ndarray | None = None,
                  seed: int = 0, progress: bool = True) -> CateEvaluation:
    """BLP/GATES/CLAN (repeated splits), RATE and calibration for a fitted CATE learner.

    The generic ML proxies are the same meta-learner refitted on each auxiliary half (two inner
    folds, grouped when ``clusters`` are given); RATE ranks units by the out-of-fold CATE and
    scores them with the doubly robust scores of ``fit``.

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
    gml = None
    if n_splits:
        def fit_proxy(rows: np.ndarray, s: int) -> CateFit:
            f = make_folds(rows.size, 2, s, stratify=d[rows]) if clusters is None else \
                make_folds(rows.size, 2, s, groups=np.asarray(clusters)[rows])
            p = propensity if propensity is None or np.ndim(propensity) == 0 else \
                np.asarray(propensity)[rows]
            return crossfit_cate(fit.kind, X[rows], y[rows], d[rows], f, learners=learners,
                                 propensity=p, outcome_mode=outcome_mode, clip=fit.clip, seed=s)

        gml = generic_ml(y, d, fit_proxy, X, propensity=propensity, n_splits=n_splits,
                         n_groups=n_groups, alpha=alpha, features=features, truth=truth,
                         clusters=clusters, seed=seed, progress=progress)
    rates = rate_targets(fit.phi, fit.tau, targets=("AUTOC", "QINI"), clusters=clusters,
                         n_boot=n_boot, seed=seed, progress=progress)
    m = fit.e * fit.mu1 + (1 - fit.e) * fit.mu0
    cal = calibration_test(y, d, fit.e, m, fit.tau)
    return CateEvaluation(generic_ml=gml, rate=rates, calibration=cal)


# ----------------------------------------------------------------------------- API
def _column_or_array(data: pd.DataFrame, value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    if isinstance(value, str):
        if value not in data.columns:
            raise DataError(f"{name}='{value}' is not a column of the data")
        return data[value].to_numpy()
    if isinstance(value, Sequence) and not isinstance(value, np.ndarray) and \
            all(isinstance(v, str) for v in value):
        miss = [v for v in value if v not in data.columns]
        if miss:
            raise DataError(f"{name}= names columns not in the data: {miss}")
        return data[list(value)].to_numpy()
    arr = np.asarray(value)
    if arr.shape[0] != len(data):
        raise DataError(f"{name}= has {arr.shape[0]} rows, the data {len(data)}")
    return arr


def _check_group_sizes(d: np.ndarray, groups: np.ndarray | None, folds: int) -> None:
    if groups is None:
        return
    n_groups = np.unique(groups).size
    if n_groups < folds:
        raise DesignError(f"only {n_groups} groups for {folds} cross-fitting folds; "
                          "use fewer folds or finer groups")


def cate(
    formula: str,
    data: pd.DataFrame,
    *,
    images: Any = None,
    learner: str = "dr",
    learners: Mapping[str, Any] | None = None,
    propensity: float | str | np.ndarray | None = None,
    folds: int = 5,
    groups: str | np.ndarray | None = None,
    coords: Sequence[str] | np.ndarray | None = None,
    block_size: float | None = None,
    vcov: Any = "hetero",
    representation: str = "sequence",
    outcome_mode: str = "separate",
    clip: float = 0.01,
    evaluate: bool = True,
    n_splits: int = 20,
    n_groups: int = 5,
    alpha: float = 0.05,
    n_boot: int = 200,
    clan: Sequence[str] | None = None,
    truth: str | np.ndarray | None = None,
    outcome_correction: Any = None,
    seed: int = 0,
    missing_images: str = "drop",
    progress: bool = True,
) -> Estimate:
    """Conditional average treatment effects in a randomised (or unconfounded) trial.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + x2"``: outcome, binary treatment, tabular effect modifiers.
    data
        One row per unit.
    images
        Chips ``(N, T, H, W, C)`` / ``(N, H, W, C)``, an embeddings frame, a feature array, a
        ``ChipsResult``, a chips cache path or the long Parquet of ``geocausal embed``: image
        effect modifiers next to the tabular ones. Frames and caches are matched to the data's
        index by unit id; raw arrays by position (one row per data row). A mapping
        ``{name: chips}`` of the same sites at several chip sizes (multi-scale) concatenates
        the features of every scale.
    learner
        ``"dr"``, ``"r"``, ``"x"``, ``"t"``, ``"s"`` or ``"forest"`` (honest random forest on DR scores).
    learners
        Slots ``outcome``, ``propensity``, ``final``, ``marginal`` (scikit-learn compatible).
    propensity
        Known treatment probability (number, column name or array); None estimates it.
    folds
        Number of cross-fitting folds.
    groups
        Column (or array) of groups kept within one fold (villages, clusters); also the
        clusters of the RATE half-sample bootstrap.
    coords
        Two coordinate columns (or an ``(n, 2)`` array) for spatial-block folds of
        ``block_size``; the blocks are also the bootstrap clusters.
    vcov
        Variance of the ATE: ``"hetero"``, ``"iid"`` or ``{"cluster": column}``.
    representation
        How chips become features: ``"sequence"`` (all periods plus change), ``"single"``
        (last period), ``"first"``, ``"summary"``.
    outcome_mode
        ``"separate"`` outcome regressions per arm or ``"pooled"`` on ``[X, d]``.
    clip
        Clipping of estimated propensities.
    evaluate
        Run BLP/GATES/CLAN, RATE and calibration.
    n_splits, n_groups, alpha
        Repeated splits, GATES groups and per-split level of the generic ML inference.
    n_boot
        Half-samples for the RATE standard errors (and the TOC curve's pointwise band).
    clan
        Columns of ``data`` whose means CLAN compares (default: the formula's plain controls).
    truth
        Column or array with the true CATE (simulations): adds oracle BLP values and the
        correlation of the predictions with the truth.
    outcome_correction
        A fitted corrector applied to the outcome first.
    seed
        Seed of folds, splits, bootstrap and default forest.
    missing_images
        Units whose image is unusable (no valid pixel in some period, NaN features):
        ``"drop"`` (default, counted ``MissingImagesWarning``), ``"impute"`` or ``"error"``.
    progress
        Progress bars over the splits and half-samples (shown only in a terminal or notebook).

    Returns
    -------
    Estimate
        The ATE; CATE predictions and the evaluation in ``diagnostics``.
    """
    from geocausal._progress import progress_visible

    progress_visible(progress)  # validates the option
    if learner not in LEARNERS:
        raise DataError(f"learner must be one of {LEARNERS}, got '{learner}'")
    al = align_images(images, data, missing_images=missing_images)
    data, images = al.data, al.images
    propensity, groups, coords, truth = (al.rows(v) for v in (propensity, groups, coords, truth))
    parsed = parse_formula(formula, data)
    y = apply_correction(outcome_correction, parsed.outcome_vector(data))
    d = check_treatment(parsed.treatment_vector(data), parsed.treatment)
    X, names = design_matrix(parsed, data, images, representation, seed)
    n_summary = len(names) - len(parsed.control_matrix(data).columns)
    X, learners, raw = _with_image_learners(learner, learners, X, images, n_summary, seed)
    n = len(data)
    prop = propensity
    if isinstance(propensity, str):
        prop = _column_or_array(data, propensity, "propensity").astype(float)
    grp = _column_or_array(data, groups, "groups")
    xy = _column_or_array(data, coords, "coords")
    if grp is not None and xy is not None:
        raise DataError("give groups= or coords=, not both")
    _check_group_sizes(d, grp, folds)
    if xy is not None:
        xy = np.asarray(xy, dtype=float)
        fold_ids = make_folds(n, folds, seed, coords=xy, block_size=block_size)
        lo = xy.min(axis=0)
        size = block_size or float(np.max(xy.max(axis=0) - lo)) / (2 * folds) or 1.0
        cells = np.floor((xy - lo) / size).astype(np.int64)
        clusters = cells[:, 0] * (cells[:, 1].max() + 1) + cells[:, 1]
    elif grp is not None:
        fold_ids = make_folds(n, folds, seed, groups=grp)
        clusters = grp
    else:
        fold_ids = make_folds(n, folds, seed, stratify=d)
        clusters = None
    fit = crossfit_cate(learner, X, y, d, fold_ids, learners=learners, propensity=prop,
                        outcome_mode=outcome_mode, clip=clip, seed=seed)
    true_tau = None if truth is None else _column_or_array(data, truth, "truth").astype(float)
    model = CateModel(fit=fit, formula=formula, controls=tuple(parsed.controls),
                      names=tuple(names), representation=representation,
                      images=images is not None, raw_chips=raw,
                      multiscale=isinstance(images, Mapping), n_features=X.shape[1],
                      control_spec=_control_spec(parsed, data), seed=seed)
    diag: dict[str, Any] = {"cate": fit.tau, "model": model, "fold_ids": fold_ids,
                            "features": {"controls": parsed.controls, "names": names,
                                         "representation": representation,
                                         "images": images is not None, "raw_chips": raw,
                                         "multiscale": isinstance(images, Mapping)},
                            "learner": learner, "cate_mean": float(fit.tau.mean()),
                            "cate_sd": float(fit.tau.std())}
    if evaluate:
        clan_cols = list(clan) if clan is not None else \
            [c for c in parsed.controls if c in data.columns]
        feats = data[clan_cols].astype(float).reset_index(drop=True) if clan_cols else None
        ev = evaluate_cate(fit, X, y, d, learners=learners, propensity=prop,
                           outcome_mode=outcome_mode, n_splits=n_splits, n_groups=n_groups,
                           alpha=alpha, n_boot=n_boot, clusters=clusters, features=feats,
                           truth=true_tau, seed=seed, progress=progress)
        diag["evaluation"] = ev
        diag.update(_scalar_summary(ev))
    if true_tau is not None:
        diag["cor_truth"] = float(np.corrcoef(fit.tau, true_tau)[0, 1]) if np.ptp(fit.tau) > 0 \
            else float("nan")
    cluster_data = cluster_data_from(data)  # every column: with_vcov may cluster on any
    return Estimate.from_influence(
        params=pd.Series({parsed.treatment: fit.ate}), influence=fit.influence, vcov=vcov,
        cluster_data=cluster_data, estimand="ATE", design=f"cate-{learner}",
        diagnostics=diag,
        provenance=make_provenance(formula, seed, learner=learner, folds=folds,
                                   representation=representation, n_splits=n_splits))


def _scalar_summary(ev: CateEvaluation) -> dict[str, float]:
    out: dict[str, float] = {}
    if ev.generic_ml is not None:
        t = ev.generic_ml.table.set_index("term")
        out["blp_beta2"] = float(t.loc["beta2", "estimate"])
        out["blp_beta2_p"] = float(t.loc["beta2", "p_value"])
        out["gates_top_minus_bottom"] = float(t.loc["gates_top_minus_bottom", "estimate"])
    for k, r in ev.rate.items():
        out[k.lower()] = r.estimate
        out[f"{k.lower()}_se"] = r.std_error
    cal = ev.calibration.set_index("term")
    out["calibration_differential"] = float(cal.loc["differential_prediction", "estimate"])
    return out


def compare_representations(
    formula: str,
    data: pd.DataFrame,
    specs: Mapping[str, Mapping[str, Any]],
    **common: Any,
) -> pd.DataFrame:
    """Fit ``gc.cate`` once per representation and compare them in one table.

    Parameters
    ----------
    formula
        Default formula (a spec may override it with ``"formula"``).
    data
        The trial data.
    specs
        ``{name: keyword overrides}``, e.g. ``{"tabular": {}, "image": {"formula": "y ~ d",
        "images": chips, "representation": "single"}}``.
    **common
        Keywords shared by every fit (``learner``, ``propensity``, ``seed``, ``truth``, ...).

    Returns
    -------
    pandas.DataFrame
        One row per representation: ATE and SE, BLP slope with its aggregated interval and
        p-value, GATES top minus bottom, AUTOC and QINI with SEs and RATE ratios, calibration,
        and the correlation with the true CATE when ``truth`` is given.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 400
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "z": rng.normal(size=n),
    ...                    "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> t = compare_representations("y ~ d + x", df, {"x": {}, "z": {"formula": "y ~ d + z"}},
    ...                             propensity=.5, n_splits=3, n_boot=30)
    >>> list(t.index), bool(t.loc["x", "autoc"] > t.loc["z", "autoc"])
    (['x', 'z'], True)
    """
    rows = {}
    for name, spec in specs.items():
        kw = {**common, **spec}
        f = kw.pop("formula", formula)
        est = cate(f, data, **kw)
        rows[name] = representation_row(est)
    return pd.DataFrame(rows).T


def representation_row(est: Estimate) -> dict[str, float]:
    """The comparison-table row of one ``gc.cate`` result."""
    dg = est.diagnostics
    row = {"ate": float(est.params.iloc[0]), "ate_se": float(est.std_errors.iloc[0])}
    ev: CateEvaluation | None = dg.get("evaluation")
    if ev is not None and ev.generic_ml is not None:
        t = ev.generic_ml.table.set_index("term")
        row.update(blp_beta2=t.loc["beta2", "estimate"], blp_beta2_low=t.loc["beta2", "conf_low"],
                   blp_beta2_high=t.loc["beta2", "conf_high"], blp_beta2_p=t.loc["beta2", "p_value"],
                   gates_top_minus_bottom=t.loc["gates_top_minus_bottom", "estimate"],
                   gates_diff_p=t.loc["gates_top_minus_bottom", "p_value"])
    if ev is not None:
        for k, r in ev.rate.items():
            row.update({k.lower(): r.estimate, f"{k.lower()}_se": r.std_error,
                        f"{k.lower()}_ratio": r.ratio})
        row["calibration_differential"] = dg.get("calibration_differential", np.nan)
    if "cor_truth" in dg:
        row["cor_truth"] = dg["cor_truth"]
    return row


# ----------------------------------------------------------------------------- new units
def _control_spec(parsed, data: pd.DataFrame):
    """formulaic's model spec of the controls: new rows get the training encoding."""
    if not parsed.controls:
        return None
    from formulaic import model_matrix

    return model_matrix("0 + " + " + ".join(parsed.controls), data, na_action="raise").model_spec


_EFFECT_MISSING = ("drop", "error")


@dataclass(frozen=True)
class CateModel:
    """The fitted CATE model of a ``gc.cate`` result, for new units and new places.

    It holds the cross-fitted learner (:class:`~geocausal.designs.cate.CateFit`, refitted on
    all units) and how features were built: the formula's control terms with formulaic's
    training encoding (levels of categorical terms, transforms), the image representation,
    whether raw chips fed an image learner. :meth:`effect` builds features of new rows and new
    chips through that same path; :meth:`predict` takes a feature matrix as built at fit time.

    ``Estimate.save`` leaves the model out (fitted scikit-learn models are not in the safe
    format); :meth:`save` writes it with joblib, which runs code when loaded: load only files
    you wrote yourself.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> est = cate("y ~ d + x", df, propensity=.5, evaluate=False)
    >>> model = est.diagnostics["model"]
    >>> model.effect(pd.DataFrame({"x": [0.0, 1.0]}, index=["a", "b"])).round(0).to_dict()
    {'a': 1.0, 'b': 2.0}
    """

    fit: CateFit = field(repr=False)
    formula: str
    controls: tuple[str, ...]
    names: tuple[str, ...]
    representation: str
    images: bool
    raw_chips: bool
    multiscale: bool
    n_features: int
    control_spec: Any = field(default=None, repr=False)
    seed: int = 0
    _not_saved: ClassVar[bool] = True  # holds fitted models: never in the safe result format

    # the CateFit interface, for code written against diagnostics["model"] before
    @property
    def kind(self) -> str:
        """The meta-learner (``"dr"``, ``"r"``, ...)."""
        return self.fit.kind

    @property
    def models(self) -> Mapping[str, Any]:
        """Models refitted on all units."""
        return self.fit.models

    @property
    def tau(self) -> np.ndarray:
        """Out-of-fold CATE predictions of the training units."""
        return self.fit.tau

    def propensity(self, X: np.ndarray) -> np.ndarray:
        """Propensity at feature rows ``X``."""
        return self.fit.propensity(X)

    def baseline(self, X: np.ndarray) -> np.ndarray:
        """Untreated outcome ``mu0`` at feature rows ``X``."""
        return self.fit.baseline(X)

    def predict(self, X: np.ndarray) -> np.ndarray:
        """CATE at feature rows ``X`` (columns as at fit time, ``n_features`` of them)."""
        X = np.asarray(X, dtype=float)
        X = X[:, None] if X.ndim == 1 else X
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise DataError(f"the CATE model takes {self.n_features} feature columns, got "
                            f"shape {X.shape}; build features with model.effect(data, "
                            "images=...) or model.features(...)")
        if not np.all(np.isfinite(X)):
            bad = int((~np.isfinite(X).all(axis=1)).sum())
            raise DataError(f"{bad} feature rows have NaN or infinite values")
        return self.fit.predict(X)

    def features(self, data: pd.DataFrame | None = None, *, images: Any = None,
                 missing_images: str = "drop") -> tuple[np.ndarray, pd.Index]:
        """Features of new units, built as at fit time: ``(X, index of the rows kept)``.

        Parameters
        ----------
        data
            New rows with the formula's control columns (the outcome and treatment are not
            needed). May be None for a model on images only: rows are then the images' rows
            (an embeddings frame's index, or positions of a chips array).
        images
            New chips (``(N, T, H, W, C)``, ``(N, H, W, C)``, a ``(chips, mask)`` pair), an
            embeddings frame, a ``ChipsResult`` or cache: anything ``gc.cate`` takes, matched
            to ``data`` by unit id in the same way.
        missing_images
            ``"drop"`` (counted ``MissingImagesWarning``) or ``"error"``; imputation is not
            offered here (the training means are not those of new units).
        """
        if missing_images not in _EFFECT_MISSING:
            raise DataError(f"missing_images must be one of {_EFFECT_MISSING} for new units, "
                            f"got {missing_images!r}")
        if self.images and images is None:
            raise DataError("this CATE model uses image features: pass images= for the new "
                            "units (chips, an embeddings frame or a chips cache)")
        if not self.images and images is not None:
            raise DataError("this CATE model was fitted without images; do not pass images=")
        if data is None:
            if self.controls:
                raise DataError(f"this CATE model uses the controls {list(self.controls)}: "
                                "pass data= with those columns for the new units")
            data = _rows_of(images)
        if not isinstance(data, pd.DataFrame):
            raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
        if self.images:
            al = align_images(images, data, missing_images=missing_images, stacklevel=4)
            data, images = al.data, al.images
        n = len(data)
        if n == 0:
            raise DataError("no new units to predict (empty data, or every image missing)")
        parts = []
        if self.controls:
            miss = sorted({c for c in _needed_columns(self.controls)} - set(data.columns))
            if miss:
                raise DataError(f"new data lack the control columns {miss} of the formula "
                                f"'{self.formula}'")
            from formulaic.errors import DataMismatchWarning

            try:
                with warnings.catch_warnings():
                    # formulaic turns unseen levels into NaN rows with a warning: refuse them
                    warnings.simplefilter("error", DataMismatchWarning)
                    mm = self.control_spec.get_model_matrix(data, na_action="raise")
            except Exception as err:  # formulaic raises several types (unseen levels, NaN)
                raise DataError(f"new data cannot be encoded as at fit time "
                                f"({type(err).__name__}: {err}); check categorical levels "
                                "and missing values") from None
            tab = np.asarray(mm, dtype=float)
            expect = list(self.names[:tab.shape[1]])
            if list(map(str, mm.columns)) != expect:
                raise DataError(f"new data encode to columns {list(map(str, mm.columns))}, "
                                f"the model was fitted on {expect}")
            parts.append(tab)
        if self.images:
            img = _image_matrix(images, n, self.representation, self.seed)
            parts.append(img)
        X = np.concatenate(parts, axis=1) if parts else np.zeros((n, 0))
        if X.shape[1] == 0:
            X = np.zeros((n, 1))  # crossfit_cate's placeholder column for no modifiers
        if self.raw_chips:
            chips = np.asarray(images[0] if isinstance(images, tuple) else images)
            X = np.concatenate([chips.reshape(chips.shape[0], -1).astype(float), X], axis=1)
        if X.shape[1] != self.n_features:
            raise DataError(f"new units give {X.shape[1]} features, the model was fitted on "
                            f"{self.n_features}; pass images of the same shape (periods, "
                            "bands, scales) as at fit time")
        return X, data.index

    def effect(self, data: pd.DataFrame | None = None, *, images: Any = None,
               missing_images: str = "drop") -> pd.Series:
        """Predicted CATE of new units (rows of ``data`` and/or new chips), by unit.

        See :meth:`features` for the arguments. Returns a Series named ``"cate"`` on the new
        units' index (rows whose image is missing are dropped with a counted warning).
        """
        X, index = self.features(data, images=images, missing_images=missing_images)
        return pd.Series(self.predict(X), index=index, name="cate")

    def save(self, path: str | Path, *, overwrite: bool = False) -> Path:
        """Write the model with joblib. Loading a joblib file runs code: load only your own."""
        import joblib

        path = Path(path)
        if path.exists() and not overwrite:
            raise DataError(f"'{path}' exists; pass overwrite=True to replace it")
        if not path.parent.is_dir():
            raise DataError(f"the folder of '{path}' does not exist; create it first")
        joblib.dump(self, path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> CateModel:
        """Read a model written by :meth:`save` (joblib: runs code, so only trusted files)."""
        import joblib

        path = Path(path)
        if not path.is_file():
            raise DataError(f"no saved CATE model at '{path}'")
        obj = joblib.load(path)
        if not isinstance(obj, cls):
            raise DataError(f"'{path}' does not hold a CateModel")
        return obj


def _needed_columns(controls: Sequence[str]) -> set[str]:
    from geocausal.formula import _names

    out: set[str] = set()
    for c in controls:
        out |= _names(c)
    return out


def _rows_of(images: Any) -> pd.DataFrame:
    """Rows of new images without data: a frame's index or array positions."""
    if isinstance(images, pd.DataFrame):
        return pd.DataFrame(index=images.index)
    first = images
    if isinstance(images, Mapping) and images:
        first = next(iter(images.values()))
    if isinstance(first, tuple):
        first = first[0]
    if isinstance(first, np.ndarray):
        return pd.DataFrame(index=pd.RangeIndex(first.shape[0]))
    raise DataError("pass data= (one row per new unit, indexed by unit id) with images= of "
                    f"type {type(images).__name__}, so that images are matched by id")


def cate_model(est: Estimate) -> CateModel:
    """The fitted :class:`CateModel` of a ``gc.cate`` result (a DesignError when absent).

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 200
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d + rng.normal(size=n)
    >>> cate_model(cate("y ~ d + x", df, propensity=.5, evaluate=False)).kind
    'dr'
    """
    if isinstance(est, CateModel):
        return est
    if not isinstance(est, Estimate):
        raise DataError(f"expected a gc.cate result, got {type(est).__name__}")
    model = est.diagnostics.get("model")
    if isinstance(model, CateModel):
        return model
    if model is not None and type(model).__name__ == "NotSaved":
        raise DesignError("this gc.cate result was loaded from a file, which holds no fitted "
                          "model; save the model with est.diagnostics['model'].save(path) and "
                          "use CateModel.load(path)")
    raise DataError("this estimate has no fitted CATE model; use a gc.cate result")


def effect(est: Estimate | CateModel, data: pd.DataFrame | None = None, *, images: Any = None,
           missing_images: str = "drop") -> pd.Series:
    """Predicted CATE of new units from a ``gc.cate`` result: :meth:`CateModel.effect`.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> est = cate("y ~ d + x", df, propensity=.5, evaluate=False)
    >>> effect(est, pd.DataFrame({"x": [-1.0, 2.0]})).round(0).abs().tolist()
    [0.0, 3.0]
    """
    return cate_model(est).effect(data, images=images, missing_images=missing_images)


def predict_cate(est: Estimate, X: np.ndarray) -> np.ndarray:
    """CATE predictions at new feature rows from a ``gc.cate`` result.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> est = cate("y ~ d + x", df, propensity=.5, evaluate=False)
    >>> predict_cate(est, np.array([[0.0], [1.0]])).round(0).tolist()
    [1.0, 2.0]
    """
    return cate_model(est).predict(np.asarray(X, dtype=float))

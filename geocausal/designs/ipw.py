"""Inverse-probability weighting and augmented IPW (doubly robust) for the ATE and the ATT.

Pure array functions: given the outcome ``y``, a binary treatment ``d`` and nuisance
predictions (propensity ``e``, outcome regressions ``mu0``, ``mu1``), each returns the point
estimate and its influence function ``psi`` with ``theta_hat - theta ~ mean(psi)``, so that
``psi' psi / n^2`` is the heteroskedasticity-robust variance.

AIPW scores are those of DoubleML's IRM model (scores ``"ATE"`` and ``"ATTE"``), so with the
same nuisance predictions the estimates and standard errors coincide:

* ATE: ``psi_b = mu1 - mu0 + d (y - mu1) / e - (1 - d) (y - mu0) / (1 - e)``, ``theta = mean(psi_b)``.
* ATT: ``theta = mean(d (y - mu0) - e (1 - d) (y - mu0) / (1 - e)) / p`` with ``p = mean(d)``;
  the influence function ``(d (y - mu0) - e (1 - d) (y - mu0) / (1 - e) - d theta) / p``
  accounts for the estimation of ``p``.

IPW (Horvitz-Thompson and Hajek) influence functions treat the propensities as given: this is
the robust sandwich variance of the weighted regression of ``y`` on ``d`` (as in Hernan and
Robins, ch. 12), conservative for the ATE when the propensity is estimated by maximum
likelihood.

Cross-fitting: :func:`crossfit_nuisances` fits the propensity on every training fold and the
outcome regressions on each arm of every training fold, as DoubleML does.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> n = 2000; x = rng.normal(size=n); e = 1 / (1 + np.exp(-x)); d = rng.binomial(1, e)
>>> y = 2 * d + x + rng.normal(size=n)
>>> theta, psi = aipw_ate(y, d, e, x, 2 + x)
>>> bool(abs(theta - 2) < 0.15)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import pandas as pd
from sklearn.base import clone

from geocausal.designs import overlap as ov
from geocausal.designs.common import check_estimate
from geocausal.errors import DataError, DesignError, DiagnosticWarning, OptionError
from geocausal.features.align import ChipsView
from geocausal.nuisance.crossfit import SourceRows, check_fold_arms, crossfit_predict
from geocausal.vocabulary import (
    DEFAULTS,
    check_count,
    check_probability,
    choice,
    coerce_options,
    default_learners,
    is_image_learner,
)


def aipw_ate(y, d, e, mu0, mu1) -> tuple[float, np.ndarray]:
    """Doubly robust ATE and its influence function."""
    y, d, e, mu0, mu1 = (np.asarray(a, dtype=float) for a in (y, d, e, mu0, mu1))
    score = mu1 - mu0 + d * (y - mu1) / e - (1 - d) * (y - mu0) / (1 - e)
    theta = float(score.mean())
    return theta, score - theta


def aipw_att(y, d, e, mu0) -> tuple[float, np.ndarray]:
    """Doubly robust ATT and its influence function (DoubleML's ATTE score)."""
    y, d, e, mu0 = (np.asarray(a, dtype=float) for a in (y, d, e, mu0))
    p = d.mean()
    b = d * (y - mu0) - e * (1 - d) * (y - mu0) / (1 - e)
    theta = float(b.mean() / p)
    return theta, (b - d * theta) / p


def aipw_outcome_gradient(d, e, estimand: str = "ATE") -> dict[str, np.ndarray]:
    """Derivative of the AIPW estimate (:func:`aipw_ate`, :func:`aipw_att`) with respect to
    each unit's outcome prediction: ``{"mu0": ..., "mu1": ...}`` (``mu0`` only for the ATT).

    The estimate is linear in the predictions, so it moves by ``g @ delta`` when they move by
    ``delta``. With the true propensity each gradient averages to about zero given the
    features (the double robustness); with a shrunk one it does not.

    Examples
    --------
    >>> d, e = np.array([1.0, 0, 1, 0]), np.array([0.5, 0.5, 0.25, 0.75])
    >>> g = aipw_outcome_gradient(d, e)
    >>> y, mu0, mu1 = np.arange(4.0), np.zeros(4), np.ones(4)
    >>> bump = np.eye(4)[2] * 1e-3
    >>> moved = (aipw_ate(y, d, e, mu0, mu1 + bump)[0] - aipw_ate(y, d, e, mu0, mu1)[0])
    >>> bool(np.isclose(moved, g["mu1"] @ bump))
    True
    """
    d, e = np.asarray(d, float), np.asarray(e, float)
    n = len(d)
    if estimand == "ATT":
        return {"mu0": (-d + e * (1 - d) / (1 - e)) / (n * d.mean())}
    return {"mu1": (1 - d / e) / n, "mu0": -(1 - (1 - d) / (1 - e)) / n}


def ipw_ate(y, d, e, normalized: bool = True) -> tuple[float, np.ndarray]:
    """IPW ATE: Hajek (``normalized=True``) or Horvitz-Thompson, with its influence function."""
    y, d, e = (np.asarray(a, dtype=float) for a in (y, d, e))
    w1, w0 = d / e, (1 - d) / (1 - e)
    if not normalized:
        score = w1 * y - w0 * y
        theta = float(score.mean())
        return theta, score - theta
    m1 = float((w1 * y).sum() / w1.sum())
    m0 = float((w0 * y).sum() / w0.sum())
    psi = w1 * (y - m1) / w1.mean() - w0 * (y - m0) / w0.mean()
    return m1 - m0, psi


def ipw_att(y, d, e, normalized: bool = True) -> tuple[float, np.ndarray]:
    """IPW ATT: controls weighted by ``e / (1 - e)``; Hajek or Horvitz-Thompson."""
    y, d, e = (np.asarray(a, dtype=float) for a in (y, d, e))
    p = d.mean()
    w0 = (1 - d) * e / (1 - e)
    if not normalized:
        b = d * y - w0 * y
        theta = float(b.mean() / p)
        return theta, (b - d * theta) / p
    m1 = float((d * y).sum() / d.sum())
    m0 = float((w0 * y).sum() / w0.sum())
    psi = d * (y - m1) / p - w0 * (y - m0) / w0.mean()
    return m1 - m0, psi


ESTIMATORS = {
    ("aipw", "ATE"): lambda y, d, n: aipw_ate(y, d, n.e, n.mu0, n.mu1),
    ("aipw", "ATT"): lambda y, d, n: aipw_att(y, d, n.e, n.mu0),
    ("hajek", "ATE"): lambda y, d, n: ipw_ate(y, d, n.e, True),
    ("hajek", "ATT"): lambda y, d, n: ipw_att(y, d, n.e, True),
    ("ht", "ATE"): lambda y, d, n: ipw_ate(y, d, n.e, False),
    ("ht", "ATT"): lambda y, d, n: ipw_att(y, d, n.e, False),
}


@dataclass(frozen=True)
class Nuisances:
    """Out-of-fold nuisance predictions: propensity ``e`` and outcome regressions."""

    e: np.ndarray
    mu0: np.ndarray | None = None
    mu1: np.ndarray | None = None

    def subset(self, keep: np.ndarray) -> Nuisances:
        """The nuisances of the kept units."""
        return Nuisances(self.e[keep], None if self.mu0 is None else self.mu0[keep],
                         None if self.mu1 is None else self.mu1[keep])


def estimate(y, d, nuisances: Nuisances, method: str = "aipw",
             estimand: str = "ATE") -> tuple[float, np.ndarray]:
    """Dispatch to the estimator ``method`` in {"aipw", "hajek", "ht"} for ``estimand``.

    A non-finite estimate or variance is a :class:`DesignError`, never a returned number.

    Examples
    --------
    >>> import numpy as np
    >>> n = Nuisances(np.full(4, 0.5))
    >>> estimate(np.array([1., 2, 3, 4]), np.array([0, 1, 0, 1]), n, "hajek")[0]
    1.0
    """
    key = (method, estimand)
    if key not in ESTIMATORS:
        raise DataError(f"unknown method/estimand {key}; methods: aipw, hajek, ht; "
                        "estimands: ATE, ATT")
    if method == "aipw" and (nuisances.mu0 is None or
                             (estimand == "ATE" and nuisances.mu1 is None)):
        raise DataError("AIPW needs outcome predictions mu0 (and mu1 for the ATE)")
    theta, psi = ESTIMATORS[key](np.asarray(y, float), np.asarray(d, float), nuisances)
    check_estimate(theta, psi, f"the {method.upper()} {estimand}")
    return theta, psi


def prepare_learner(learner: Any, X: np.ndarray, images: np.ndarray | ChipsView | None,
                    X_tab: np.ndarray | None = None) -> tuple[Any, Any]:
    """The learner and the array it is fitted on.

    Feature learners get ``X``. Image learners get the chips. When the formula has tabular
    controls and the image learner takes an ``image_shape`` (``ImageLearner`` does), it gets
    the flattened chips followed by the tabular columns ``X_tab`` (the 2-D form that row slicing
    in cross-fitting keeps aligned), with ``image_shape`` set on a clone, so the controls adjust
    the image nuisance models too. An image learner that cannot take them is warned about.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from geocausal.nuisance.image_learner import ImageLearner
    >>> chips, tab = np.zeros((5, 4, 4, 2)), np.ones((5, 1))
    >>> prepare_learner(LogisticRegression(), tab, chips, tab)[1].shape
    (5, 1)
    >>> lrn, X = prepare_learner(ImageLearner(), tab, chips, tab)
    >>> lrn.image_shape, X.shape
    ((4, 4, 2), (5, 33))
    """
    if not is_image_learner(learner):
        if X.shape[1] == 0:
            raise DataError("no features: the formula has no controls and images= is None")
        return learner, X
    if images is None:
        raise DataError("an image learner needs images= as a chips array (N, H, W, C) or "
                        "(N, T, H, W, C)")
    if isinstance(images, ChipsView):
        params = learner.get_params() if hasattr(learner, "get_params") else {}
        if "block_units" in params:  # a streaming learner: cross-fit from the cache by folds
            tab = None if X_tab is None or not X_tab.shape[1] else np.asarray(X_tab, float)
            src = images.source(params.get("block_units"), params.get("memory_budget"))
            return learner, SourceRows(src, tab)
        images = np.asarray(images)  # a learner that cannot stream: loaded if it fits
    if X_tab is None or not X_tab.shape[1]:
        return learner, images
    params = learner.get_params() if hasattr(learner, "get_params") else {}
    if "image_shape" not in params:
        warnings.warn(f"{type(learner).__name__} takes no tabular covariates (no image_shape "
                      f"parameter): it sees the images only, not the formula's "
                      f"{X_tab.shape[1]} control column(s)", DiagnosticWarning, stacklevel=3)
        return learner, images
    if params["image_shape"] is None:
        learner = clone(learner).set_params(image_shape=tuple(images.shape[1:]))
    flat = np.asarray(images, np.float32).reshape(images.shape[0], -1)
    return learner, np.column_stack([flat, np.asarray(X_tab, np.float32)])


def crossfit_nuisances(
    X: np.ndarray,
    y: np.ndarray,
    d: np.ndarray,
    fold_ids: np.ndarray,
    propensity_learner,
    outcome_learner=None,
    *,
    images: np.ndarray | ChipsView | None = None,
    X_tab: np.ndarray | None = None,
    need_mu1: bool = True,
) -> Nuisances:
    """Cross-fitted propensity and arm-specific outcome predictions.

    Parameters
    ----------
    X
        ``(n, p)`` features (tabular and/or image features).
    y, d
        Outcome and binary treatment.
    fold_ids
        Integer fold of each unit.
    propensity_learner, outcome_learner
        scikit-learn compatible classifier / regressor (cloned per fold). An image learner
        (:func:`geocausal.vocabulary.is_image_learner`: ``uses_images = True``, as
        ``ImageLearner``) is fed the chips (see :func:`prepare_learner`).
    images
        Raw chips aligned with the rows, for image learners.
    X_tab
        Tabular controls, appended to the flattened chips for image learners.
    need_mu1
        Fit the treated-arm outcome regression (not needed for the ATT).

    Raises
    ------
    DesignError
        A fold whose training part has fewer than 2 treated or 2 control units
        (:func:`geocausal.nuisance.crossfit.check_fold_arms`).
    """
    d = np.asarray(d, dtype=float)
    check_fold_arms(d, fold_ids, min_train=2)
    lp, Xp = prepare_learner(propensity_learner, X, images, X_tab)
    e = crossfit_predict(lp, Xp, d.astype(int), fold_ids, method="predict_proba")
    if outcome_learner is None:
        return Nuisances(e)
    lo, Xo = prepare_learner(outcome_learner, X, images, X_tab)
    mu0 = crossfit_predict(lo, Xo, y, fold_ids, train_mask=d == 0)
    mu1 = crossfit_predict(lo, Xo, y, fold_ids, train_mask=d == 1) if need_mu1 else None
    return Nuisances(e, mu0, mu1)


# ----------------------------------------------------------------------------- options
#: what chips become for the nuisance models (``"auto"``: the cross-fitted candidate stack)
REPRESENTATION_CHOICES: tuple[str, ...] = ("auto", "summary", "engineered", "learned")
#: what happens to units whose image is unusable
MISSING_CHOICES: tuple[str, ...] = ("drop", "impute", "error")


@dataclass(frozen=True)
class IPWOptions:
    """Image and weighting-diagnostic options of ``gc.aipw``, ``gc.ipw``, ``gc.balance`` and
    ``gc.placement`` (``options=``: this object or a dict of its fields).

    Parameters
    ----------
    representation : {"auto", "summary", "engineered", "learned"}
        What chips become for the nuisance models. ``"auto"`` (default): a cross-fitted stack
        (super learner) over the candidates tabular-only, per-band summaries, engineered
        statistics of bands and spectral indices, and learned position-aware self-supervised
        embeddings (:mod:`geocausal.nuisance.candidates`), weighted by out-of-fold loss; the
        weights used for each fold are fitted on the other folds, so AIPW only sees
        out-of-fold nuisances; unless ``learners`` names them, the propensity learner is a
        logistic regression with a cross-validated penalty
        (:func:`geocausal.nuisance.candidates.stack_learners`). The other values use that one
        representation. Image learners and feature frames are used as given; ``gc.balance``
        and ``gc.placement`` use the summary features for ``"auto"``.
    image_options : dict, optional
        Keywords of the representation: with ``"auto"`` the keys ``roles`` (band roles: a
        manifest, a preset name or a mapping), ``candidates``, ``combine`` (``"stack"``,
        ``"select"`` or ``"select_propensity"``: :mod:`geocausal.nuisance.stacking`),
        ``min_learned_images`` (default 1000; fewer images skip the learned
        candidate), ``engineered`` and ``learned`` (keyword dicts) and ``outcome_adaptive``
        (default False; True stacks the propensity learner with a second fit on the columns
        that predict the outcome: :func:`geocausal.nuisance.candidates.propensity_library`);
        otherwise the keywords of the representation's function.
    missing_images : {"drop", "impute", "error"}
        Units whose image is unusable (no valid pixel in some period, NaN features): dropped
        with a counted ``MissingImagesWarning`` (default), given the other units' mean
        features, or refused.
    n_pcs : int
        Leading principal components of the image features in the balance table.
    stabilized : bool
        Report balance and weight diagnostics with stabilised weights (the estimates do not
        depend on it).

    Examples
    --------
    >>> IPWOptions.coerce({"representation": "Summary", "n_pcs": 3})
    IPWOptions(representation='summary', image_options=None, missing_images='drop', n_pcs=3, stabilized=True)
    >>> IPWOptions.coerce({"n_pc": 3})
    Traceback (most recent call last):
    ...
    geocausal.errors.OptionError: options has no field 'n_pc'; the fields of IPWOptions are 'representation', 'image_options', 'missing_images', 'n_pcs', 'stabilized'
    """

    representation: Literal["auto", "summary", "engineered", "learned"] = "auto"
    image_options: Mapping[str, Any] | None = field(default=None, hash=False)
    missing_images: Literal["drop", "impute", "error"] = "drop"
    n_pcs: int = 5
    stabilized: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "representation", choice(
            "representation", self.representation, REPRESENTATION_CHOICES))
        object.__setattr__(self, "missing_images", choice(
            "missing_images", self.missing_images, MISSING_CHOICES))
        if self.image_options is not None and not isinstance(self.image_options, Mapping):
            raise OptionError("image_options must be a dict of options of the representation, "
                              f"got {type(self.image_options).__name__}")
        object.__setattr__(self, "n_pcs", check_count("n_pcs", self.n_pcs))
        if not isinstance(self.stabilized, bool | np.bool_):
            raise OptionError(f"stabilized must be True or False, got {self.stabilized!r}")

    @classmethod
    def coerce(cls, value: Any) -> IPWOptions:
        """``None`` (the defaults), an :class:`IPWOptions`, or a dict of its fields."""
        return coerce_options(cls, value)


# ----------------------------------------------------------------------------- features
def chips_of(images: Any) -> tuple[np.ndarray | ChipsView | None, np.ndarray | None]:
    """Raw chips ``(N, [T,] H, W, C)`` and their mask when ``images`` are chips, else Nones.

    Examples
    --------
    >>> chips, mask = chips_of((np.zeros((2, 4, 4, 1)), np.ones((2, 4, 4), bool)))
    >>> chips.shape, mask.dtype
    ((2, 4, 4, 1), dtype('bool'))
    >>> chips_of(np.zeros((2, 3)))
    (None, None)
    """
    if images is None or isinstance(images, pd.DataFrame | str):
        return None, None
    if isinstance(images, ChipsView):  # a lazy view of a cache: its mask travels with it
        return images, None
    mask = None
    if isinstance(images, tuple):
        images, mask = images
    elif hasattr(images, "chips") and hasattr(images, "mask"):
        images, mask = images.chips, images.mask
    arr = np.asarray(images)
    if arr.ndim < 4:
        return None, None
    return arr, None if mask is None else np.asarray(mask, bool)


def _with_options(f: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``f``; an unknown ``image_options`` keyword is an OptionError naming it."""
    try:
        return f(*args, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        raise OptionError(f"image_options: {exc}; see the representation's function for its "
                          "options") from None


def image_arrays(images: Any, n: int, *, seed: int = 0, representation: str = "summary",
                 options: Mapping[str, Any] | None = None
                 ) -> tuple[np.ndarray | None, np.ndarray | ChipsView | None, np.ndarray | None]:
    """Image features ``F`` (or None), raw chips and mask (when chips were given).

    ``representation="auto"`` gives the summary features (balance table, placement); the
    nuisance stack of :func:`fit_weighting` builds its own candidates from the chips.

    Examples
    --------
    >>> F, chips, mask = image_arrays(np.ones((3, 2)), 3)
    >>> F.shape, chips
    ((3, 2), None)
    """
    from geocausal.features.images import image_features

    chips, mask = chips_of(images)
    if images is None:
        return None, None, None
    rep = "summary" if representation == "auto" else representation
    if isinstance(chips, ChipsView):  # by blocks of units, never the whole cache
        if rep == "summary":
            F = chips.summary_features()
        elif rep == "learned":  # pretrained on its max_train images, embedded by blocks
            from geocausal.features.images import learned_multiscale

            F = _with_options(learned_multiscale, chips, None, seed, **dict(options or {}))[0]
        else:
            F = _with_options(image_features, chips, n, representation=rep, seed=seed,
                              **dict(options or {}))
        if F.shape[0] != n:
            raise DataError(f"images have {F.shape[0]} rows but the data have {n}")
        return F, chips, None
    if rep == "learned" and chips is not None:
        from geocausal.encoders.multiscale import multiscale_features

        F = _with_options(multiscale_features, chips, mask, seed, **dict(options or {}))
    else:
        opts = {} if representation == "auto" else dict(options or {})
        F = _with_options(image_features, images, n, representation=rep, seed=seed, **opts)
    return F, chips, mask


def propensity_salience(learner: Any, X: np.ndarray | SourceRows,
                        chips: np.ndarray | ChipsView | None, e: np.ndarray,
                        d: np.ndarray) -> Any:
    """Causal salience maps of a JAX image propensity learner, or why there are none.

    The propensity model is refit on all units and the gradient of its logit with respect to
    the pixels (L2 over bands) is computed for the 3 most likely treated units and the 3 least
    likely controls. ``learner`` and ``X`` come from :func:`prepare_learner`; with a chips
    cache (``X`` a :class:`~geocausal.nuisance.crossfit.SourceRows`) the refit streams the
    cache and the gradients are computed by blocks of the chosen units' chips (the
    ``period=`` of a single-image learner).
    """
    if chips is None or not is_image_learner(learner):
        return None
    import sys

    if "jax" not in sys.modules:  # gradient salience needs a JAX image model
        return "unavailable: the image propensity learner is not a JAX model"
    order = np.argsort(e)
    idx = np.concatenate([order[d[order] == 1][-3:], order[d[order] == 0][:3]])
    try:
        from geocausal.encoders.salience import gradient_salience

        # refit on all units: a streamed source is trained from the cache by blocks
        fit_on = X.take(np.arange(len(X))) if isinstance(X, SourceRows) else X
        model = clone(learner).fit(fit_on, d.astype(int))
        inner = getattr(model, "model_", None)
        if inner is None:
            return "unavailable: the fitted image learner exposes no JAX model (model_)"
        tab = None
        if getattr(model, "n_tabular_", 0):
            tab = (model.standardised_tabular(X.tab[idx]) if isinstance(X, SourceRows)
                   and X.tab is not None else model.scaled_tabular(np.asarray(X)[idx]))
        period = (None if getattr(learner, "encoder", "cnn") == "sequence"
                  else getattr(learner, "period", None))
        if isinstance(chips, ChipsView):  # only the chosen units are read
            shown, m = chips.read(idx)
            shown = shown if m is None else np.where(m[..., None], shown, np.nan)
        else:
            shown = np.asarray(chips[idx], np.float32)
        if shown.ndim == 5 and period is not None:
            shown = shown[:, period]  # the frames the model saw
        if isinstance(X, SourceRows):  # the gradients computed by blocks from the cache
            maps = gradient_salience(inner, X.source.subset(idx), tab=tab, period=period)
        else:
            maps = gradient_salience(inner, shown, tab=tab)
        return {"units": idx.tolist(), "maps": maps, "images": shown,
                "propensity": e[idx].tolist(), "treated": d[idx].astype(int).tolist()}
    except Exception as exc:  # salience is a diagnostic: never fail the estimate
        return f"unavailable: {type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- the fit
@dataclass(frozen=True, eq=False)
class WeightingFit:
    """What :func:`fit_weighting` returns: the estimate on the kept units and its record.

    ``keep`` marks the units kept after trimming; ``y``, ``d``, ``nuisances`` and
    ``influence`` are those of the kept units; ``learners`` maps slot to the repr of the
    learner used (or is ``"fixed nuisances"``).
    """

    theta: float
    influence: np.ndarray
    keep: np.ndarray
    y: np.ndarray
    d: np.ndarray
    nuisances: Nuisances
    diagnostics: dict[str, Any]
    learners: Any
    n_folds: int


def learner_chips(chips: Any, mask: np.ndarray | None) -> Any:
    """The chips an image learner sees: masked pixels (nodata, clouds) as NaN, which the
    encoders leave out, as a streamed cache's mask does; a :class:`ChipsView` as it is.

    Examples
    --------
    >>> x = np.ones((1, 2, 2, 1)); m = np.array([[[True, False], [True, True]]])
    >>> learner_chips(x, m)[0, 0, :, 0].tolist()
    [1.0, nan]
    """
    if chips is None or mask is None or isinstance(chips, ChipsView) or np.all(mask):
        return chips
    return np.where(np.asarray(mask, bool)[..., None], chips, np.nan).astype(np.float32)


def _nuisances(method, y, d, X_tab, F_img, chips, mask, fold_ids, learners, seed, propensity,
               predictions, opts):
    """Out-of-fold nuisances: the default image stack, fixed ones, or cross-fitted learners."""
    X = X_tab if F_img is None else np.column_stack([X_tab, F_img])
    lrn = {**default_learners("aipw" if method == "aipw" else "ipw", seed), **learners}
    need_outcome = method == "aipw" and predictions is None
    stack = skipped = None
    images_learned = any(is_image_learner(v) for v in lrn.values())
    if images_learned:  # image learners see masked pixels as NaN (a streamed cache: its mask)
        chips = learner_chips(chips, mask)
    if (opts.representation == "auto" and chips is not None and propensity is None
            and not images_learned):
        from geocausal.nuisance.candidates import stack_learners, stacked_nuisances

        stack_lrn = {**stack_learners(seed), **learners}
        stack, skipped = stacked_nuisances(chips, mask, X_tab, y, d, fold_ids, stack_lrn,
                                           need_outcome=need_outcome,
                                           need_mu1=method == "aipw", seed=seed,
                                           options=opts.image_options)
        nu = Nuisances(stack.e, stack.mu0, stack.mu1)
        lrn = {k: v for k, v in stack_lrn.items() if k == "propensity" or need_outcome}
    elif propensity is not None:
        nu = Nuisances(propensity)
        if need_outcome:
            o = crossfit_nuisances(X, y, d, fold_ids, lrn["propensity"], lrn["outcome"],
                                   images=chips, X_tab=X_tab, need_mu1=True)
            nu = Nuisances(propensity, o.mu0, o.mu1)
    else:
        nu = crossfit_nuisances(X, y, d, fold_ids, lrn["propensity"],
                                lrn["outcome"] if need_outcome else None, images=chips,
                                X_tab=X_tab, need_mu1=method == "aipw")
    if predictions is not None:
        nu = Nuisances(nu.e, predictions["mu0"], predictions.get("mu1"))
    return nu, lrn, X, stack, skipped


def with_outcome_fits(psi: np.ndarray, stack: Any, fold_ids: np.ndarray, y: np.ndarray,
                      d: np.ndarray, e: np.ndarray, keep: np.ndarray, estimand: str = "ATE"
                      ) -> tuple[np.ndarray, dict[str, Any]]:
    """The AIPW influence function ``psi`` of the kept units, with the stacked outcome fits'
    first-order term added (:func:`geocausal.nuisance.stacking.outcome_fit_influence`), and
    its record: the SE that holds the fits fixed, the term's own size and the share of fits
    held fixed.

    ``stack`` is the :func:`~geocausal.nuisance.stacking.stack_nuisances` result the estimate
    used, ``y``, ``d`` all units, ``e`` the kept units' (clipped) propensities and ``keep`` the
    kept units. A trimmed unit's own term is left out (its row is not in ``psi``); the kept
    units' terms count every training unit's fit.
    """
    from geocausal.nuisance.stacking import outcome_fit_influence

    n, dk = len(d), d[keep]
    grad = {}
    for k, g in aipw_outcome_gradient(dk, e, estimand).items():
        grad[k] = np.zeros(n)
        grad[k][keep] = g
    mu1 = stack.mu1 if stack.mu1 is not None else stack.mu0
    term, fixed = outcome_fit_influence(stack, fold_ids, grad,
                                        y - np.where(d == 1, mu1, stack.mu0))
    m = int(dk.size)
    out = psi + m * term[keep]
    check_estimate(0.0, out, "the AIPW influence function with the outcome fits")
    return out, {"se_outcome_fits_fixed": float(np.sqrt((psi ** 2).sum()) / m),
                 "outcome_fit_se": float(np.sqrt((term[keep] ** 2).sum())),
                 "outcome_fits_fixed_share": fixed}


def _stack_diagnostics(stack, skipped) -> dict[str, Any]:
    from geocausal.nuisance.stacking import quality_lines

    out: dict[str, Any] = {"nuisance_quality": stack.quality}
    sal_learned = skipped.pop("_salience", None)
    if sal_learned is not None:
        out["salience"] = sal_learned
    out["nuisance_selection"] = {"combine": stack.combine, "winner": dict(stack.winner),
                                 "weights": stack.weights, "dropped": dict(stack.dropped),
                                 "skipped": dict(skipped)}
    out["propensity_winner"] = stack.winner["e"]
    if "mu0" in stack.winner:
        out["outcome_winner"] = stack.winner["mu0"]
    out.update(quality_lines(stack.quality, stack.combine))
    return out


def _weight_diagnostics(e, d, w, X_tab, tab_names, F_img, keep, n_pcs) -> dict[str, Any]:
    """Balance table, effective sample sizes and overlap quantiles of the kept units."""
    bal_X, bal_names = X_tab[keep], list(tab_names)
    if F_img is not None and F_img.shape[1] > 0:
        pcs = ov.image_components(F_img, n_pcs)[keep]
        bal_X = np.column_stack([bal_X, pcs])
        bal_names += [f"image_pc{j + 1}" for j in range(pcs.shape[1])]
    balance = ov.smd_table(bal_X, d, w, bal_names) if bal_X.shape[1] else pd.DataFrame()
    ess = {arm: float(w[m].sum() ** 2 / (w[m] ** 2).sum())
           for arm, m in (("treated", d == 1), ("control", d == 0))}
    q = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0]
    return {
        "propensity_min": float(e.min()), "propensity_max": float(e.max()),
        "max_weight": float(w.max()), "ess_treated": ess["treated"],
        "ess_control": ess["control"],
        "overlap": pd.DataFrame({"quantile": q, "treated": np.quantile(e[d == 1], q),
                                 "control": np.quantile(e[d == 0], q)}),
        "balance": balance,
        "max_abs_smd_unweighted": (float(balance["smd_unweighted"].abs().max())
                                   if len(balance) else None),
        "max_abs_smd_weighted": (float(balance["smd_weighted"].abs().max())
                                 if len(balance) else None),
        "propensity": pd.DataFrame({"propensity": e, "treated": d.astype(int)}),
    }


def fit_weighting(
    method: str,
    estimand: str,
    y: np.ndarray,
    d: np.ndarray,
    X_tab: np.ndarray,
    fold_ids: np.ndarray,
    *,
    tab_names: list[str] | None = None,
    F_img: np.ndarray | None = None,
    chips: np.ndarray | ChipsView | None = None,
    mask: np.ndarray | None = None,
    learners: Mapping[str, Any] | None = None,
    seed: int = 0,
    trim: float | str | None = None,
    clip: float | None = DEFAULTS.clip,
    propensity: np.ndarray | None = None,
    predictions: Mapping[str, np.ndarray | None] | None = None,
    options: IPWOptions | None = None,
) -> WeightingFit:
    """IPW (``method`` ``"hajek"`` or ``"ht"``) or AIPW (``"aipw"``) from arrays.

    Parameters
    ----------
    method, estimand
        ``"aipw"``, ``"hajek"`` or ``"ht"``; ``"ATE"`` or ``"ATT"``.
    y, d
        Outcome and binary treatment.
    X_tab
        ``(n, p)`` tabular controls (``p`` may be 0).
    fold_ids
        Cross-fitting fold of every unit.
    tab_names
        Names of the tabular columns (balance table).
    F_img, chips, mask
        Image features, raw chips and their mask (:func:`image_arrays`).
    learners
        ``{slot: learner}`` with canonical slots (``geocausal.vocabulary.resolve_learners``);
        missing slots take :func:`geocausal.vocabulary.default_learners`.
    seed
        Seed of the default learners and the image representations.
    trim
        ``None``, a threshold (keep ``trim <= e <= 1 - trim``) or ``"crump"``, applied to the
        estimated propensities first.
    clip
        The kept propensities are clipped to ``[clip, 1 - clip]`` (None: no clipping); the
        number clipped is ``diagnostics["n_clipped"]``, and a ``DiagnosticWarning`` gives it
        when it is not 0. Given propensities of exactly 0 or 1 are refused (without ``trim``)
        rather than clipped.
    propensity, predictions
        Fixed nuisances: ``(n,)`` propensities; ``{"mu0": ..., "mu1": ...}`` outcome
        predictions (``mu1`` may be None for the ATT).
    options
        :class:`IPWOptions`.

    Returns
    -------
    WeightingFit

    Raises
    ------
    DesignError
        Propensities at 0 or 1, an arm emptied by trimming, too few units of an arm in a fold.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 500
    >>> x = rng.normal(size=(n, 1)); d = rng.binomial(1, 1 / (1 + np.exp(-x[:, 0])))
    >>> y = 2 * d + x[:, 0] + rng.normal(size=n)
    >>> from geocausal.folds import resolve_folds
    >>> fit = fit_weighting("hajek", "ATE", y, d, x, resolve_folds(5, n=n, stratify=d))
    >>> bool(abs(fit.theta - 2) < 0.3), fit.diagnostics["n_clipped"]
    (True, 0)
    """
    opts = IPWOptions.coerce(options)
    y, d = np.asarray(y, float), np.asarray(d, float)
    X_tab = np.asarray(X_tab, float)
    if clip is not None:
        clip = check_probability("clip", clip, high=0.5)
    nu, lrn, X, stack, skipped = _nuisances(
        method, y, d, X_tab, F_img, chips, mask, fold_ids, dict(learners or {}), seed,
        propensity, predictions, opts)
    if propensity is not None and trim is None:
        ov.check_propensity(nu.e, d, warn_below=0.0)  # given 0s and 1s are refused, not clipped
    tr = ov.trim(nu.e, d, trim)
    keep = tr.keep
    if tr.n_trimmed:
        warnings.warn(f"trimming ({tr.rule}, threshold {tr.threshold:.4f}) dropped "
                      f"{tr.n_trimmed} units ({tr.n_trimmed_treated} treated, "
                      f"{tr.n_trimmed_control} control); the estimand is now the effect on "
                      "the overlap population", DiagnosticWarning, stacklevel=5)
    yk, dk, nk = y[keep], d[keep], nu.subset(keep)
    n_clipped = 0
    if clip is not None:
        e_clipped, n_clipped = ov.clip_propensity(nk.e, dk, clip, stacklevel=5)
        nk = Nuisances(e_clipped, nk.mu0, nk.mu1)
    if trim is None:
        ov.check_propensity(nk.e, dk)
    n1, n0 = int(dk.sum()), int((1 - dk).sum())
    if n1 == 0 or n0 == 0:
        raise DesignError(f"after trimming {n1} treated and {n0} control units remain; "
                          "lower the trim threshold")
    theta, psi = estimate(yk, dk, nk, method, estimand)
    fit_term = None
    if method == "aipw" and stack is not None and stack.outcome_fits:
        psi, fit_term = with_outcome_fits(psi, stack, fold_ids, y, d, nk.e, keep, estimand)
    w = ov.ipw_weights(nk.e, dk, estimand, stabilized=opts.stabilized)
    diags: dict[str, Any] = {
        "n_treated": n1, "n_control": n0, "n_trimmed": tr.n_trimmed, "n_clipped": n_clipped,
        "clip": clip, "trimming": tr.as_dict(), "stabilized_weights": opts.stabilized,
        **_weight_diagnostics(nk.e, dk, w, X_tab, tab_names or [], F_img, keep, opts.n_pcs),
        "features": ("tabular" if F_img is None else "tabular+image" if X_tab.shape[1]
                     else "image"),
    }
    if F_img is not None or chips is not None:
        diags["representation"] = opts.representation if chips is not None else "features"
    need_outcome = method == "aipw" and predictions is None
    if stack is not None:
        diags.update(_stack_diagnostics(stack, skipped))
        diags.update(fit_term or {})
    elif propensity is None:
        from geocausal.nuisance.stacking import nuisance_quality, quality_lines

        preds = {"e": nu.e}
        if need_outcome and nu.mu0 is not None:
            preds["mu0"] = nu.mu0
        if need_outcome and nu.mu1 is not None:
            preds["mu1"] = nu.mu1
        q = nuisance_quality({"model": preds}, y, d)
        diags["nuisance_quality"] = q
        diags.update(quality_lines(q, "model"))
    if method == "aipw":
        fitted = np.where(dk == 1, nk.mu1 if nk.mu1 is not None else nk.mu0, nk.mu0)
        diags["outcome_rmse"] = float(np.sqrt(np.mean((yk - fitted) ** 2)))
    if propensity is None and chips is not None and is_image_learner(lrn["propensity"]):
        seen = learner_chips(chips, mask)
        sal = propensity_salience(*prepare_learner(lrn["propensity"], X, seen, X_tab), seen,
                                  nu.e, d)
        if sal is not None:
            diags["salience"] = sal
    used = ({k: repr(v) for k, v in lrn.items()} if propensity is None or need_outcome
            else "fixed nuisances")
    return WeightingFit(theta, psi, keep, yk, dk, nk, diags, used,
                        int(len(np.unique(fold_ids))))

"""``gc.debias``, ``gc.compare_debiasers`` and ``gc.ppi``: effects on ML-predicted outcomes.

When the outcome is a prediction (a poverty map from satellite images), effects shrink. The
logic lives in :mod:`geocausal.designs.debias`; these faces resolve formula and options.

* ``gc.debias("yhat ~ d + x", data, calibration=cal)``: a corrector fitted on predictions and
  truths, the corrected Hajek IPW effect, its interval carrying the calibration error.
* ``gc.fit_corrector(yhat_cal, y_cal)``: the corrector alone (``outcome_correction=``).
* ``gc.compare_debiasers(cal)``: K-fold pseudo-trials on the calibration data (slope and MAE of
  corrected against true contrasts) with a recommendation; ``gc.ppi``: :mod:`geocausal.api.ppi`.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0)
>>> y_cal = rng.normal(size=400)
>>> cal = pd.DataFrame({"yhat": 0.5 * y_cal + rng.normal(0, .2, 400), "truth": y_cal})
>>> d = rng.integers(0, 2, 2000); y = 1.0 * d + rng.normal(size=2000)
>>> df = pd.DataFrame({"yhat": 0.5 * y + rng.normal(0, .2, 2000), "d": d})
>>> est = debias("yhat ~ d", df, calibration=cal, method="lcc", n_boot=200)
>>> bool(abs(est.params["d"] - 1.0) < 0.2)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._faces import public_signature
from geocausal.api._propensity import align_rows, propensity_role
from geocausal.api.ppi import ppi
from geocausal.designs.debias import (
    INTERVALS,
    METHODS,
    LinearCalibration,
    Tweedie,
    TweedieOptions,
    calibration_arrays,
    check_vector,
    debias_effect,
    fit_corrector,
    pseudo_trials,
    resolve_corrector,
)
from geocausal.errors import DesignError, OptionError
from geocausal.folds import Folds, resolve_folds
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from, parse_vcov
from geocausal.results.estimate import Estimate, make_provenance
from geocausal.vocabulary import DEFAULTS, check_count, choice

__all__ = ["LCC", "LinearCalibration", "Tweedie", "TweedieOptions", "fit",
           "DebiaserComparison", "compare_debiasers", "debias", "fit_corrector", "ppi"]


# ----------------------------------------------------------------------------- gc.debias
@public_signature
def debias(
    formula: str,
    data: pd.DataFrame,
    *,
    calibration: Any = None,
    method: str = "tweedie",
    prediction: str | None = None,
    truth: str = "truth",
    propensity: Any = None,
    interval: str = "bootstrap",
    n_boot: int = DEFAULTS.n_boot,
    vcov: Any = "hetero",
    learners: dict | None = None,
    folds: int | Folds | np.ndarray = DEFAULTS.folds,
    seed: int = DEFAULTS.seed,
    images: Any = None,
    missing_images: str = "drop",
    tweedie: TweedieOptions | dict | None = None,
    **deprecated: Any,
) -> Estimate:
    """Average effect on an ML-predicted outcome, corrected for shrinkage.

    Parameters
    ----------
    formula
        ``"yhat ~ d + x1 + x2"``: the predicted outcome, the binary treatment, controls for the
        propensity model.
    data
        The downstream sample.
    calibration
        Held-out predictions and truths: a DataFrame (columns ``prediction``, default the
        formula's outcome name, and ``truth``), a ``(predictions, truths)`` pair, or a fitted
        corrector from :func:`fit_corrector`.
    method
        ``"tweedie"`` (default), ``"lcc"`` or ``"none"`` (the naive effect).
    prediction, truth
        Columns of the calibration frame.
    propensity
        A column (or array) of known propensities; otherwise cross-fitted on the controls and
        ``images`` features with ``learners={"propensity": ...}`` (default
        :func:`~geocausal.vocabulary.default_propensity`), clipped to
        ``[DEFAULTS.clip, 1 - DEFAULTS.clip]``; the treated share when there are no features.
    interval
        ``"bootstrap"`` (joint over calibration and downstream samples, default), ``"delta"``
        (LCC or ``"none"`` only), or ``"fixed"`` (treats the corrector as known).
    n_boot
        Bootstrap draws (``DEFAULTS.n_boot``).
    vcov
        ``"hetero"`` (default), or ``{"cluster": "village"}``: the bootstrap resamples whole
        downstream clusters (and calibration clusters when the calibration frame has the same
        column), and the delta method clusters the downstream influence. With
        ``interval="fixed"`` any variance of the designs is accepted.
    learners, folds, seed
        As in every design: ``learners`` has the slot ``propensity`` (alias ``ml_m``);
        ``folds`` an integer, a :class:`~geocausal.folds.Folds` or fold ids.
    images, missing_images
        Image features for the propensity model (an ``ImageLearner`` there gets the chips; a
        chips cache streams by blocks), matched by unit id (raw arrays by position); units with
        unusable images: ``"drop"`` (counted warning), ``"impute"``, ``"error"``.
    tweedie
        :class:`~geocausal.designs.debias.TweedieOptions` (or a dict): ``bandwidth``,
        ``derivative``, ``score_sample``.
    **deprecated
        ``bandwidth=``, ``derivative=``, ``score_sample=`` given directly (FutureWarning; use
        ``tweedie=``); ``outcome_correction=`` is refused (this function is the correction).

    Returns
    -------
    Estimate
        ``estimand="ATE"``, ``design="debias"``; diagnostics hold the naive effect, the
        corrector's fitted quantities, out-of-support counts and the bootstrap percentile
        interval.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1)
    >>> yc = rng.normal(size=300); cal = (0.6 * yc + rng.normal(0, .3, 300), yc)
    >>> d = rng.integers(0, 2, 1000); yh = 0.6 * (2 * d + rng.normal(size=1000))
    >>> est = debias("yh ~ d", pd.DataFrame({"yh": yh, "d": d}), calibration=cal,
    ...              method="lcc", interval="delta")
    >>> est.vcov_type
    'hetero'
    """
    tweedie = _tweedie_options(tweedie, deprecated)
    method = choice("method", method, METHODS, design="debias")
    interval = choice("interval", interval, INTERVALS, design="debias")
    n_boot = check_count("n_boot", n_boot, minimum=2 if interval == "bootstrap" else 0)
    seed = check_count("seed", seed)
    if calibration is None and method != "none":
        raise DesignError("gc.debias needs calibration=: held-out predictions and truths (a "
                          "DataFrame, a pair of arrays or a fitted corrector)")
    data, images, propensity, folds = align_rows(images, data, missing_images, propensity, folds)
    parsed = parse_formula(formula, data)
    yhat = check_vector(parsed.outcome_vector(data), f"outcome '{parsed.outcome}'")
    treat = parsed.treatment_vector(data)
    e, pdiag = propensity_role(parsed, data, treat, propensity, "debias", learners, folds,
                               seed, images)
    corrector = None if method == "none" else resolve_corrector(
        calibration, method, prediction or parsed.outcome, truth, tweedie, yhat, seed)
    cluster_data = cluster_data_from(data)
    req = None if interval == "fixed" or corrector is None else parse_vcov(
        vcov, len(data), cluster_data)
    res = debias_effect(yhat, treat, e, corrector, interval=interval, vcov=vcov, req=req,
                        cluster_data=cluster_data, calibration=calibration, n_boot=n_boot,
                        seed=seed, alpha=DEFAULTS.alpha)
    diag = {"method": method, **res.diagnostics, **pdiag}
    prov = make_provenance(formula, seed, method=method, interval=interval, n_boot=n_boot)
    common: dict[str, Any] = {"estimand": "ATE", "design": "debias", "provenance": prov,
                              "diagnostics": diag}
    term = parsed.treatment
    if res.influence is not None:
        return Estimate.from_influence({term: res.estimate}, res.influence, vcov=res.vcov,
                                       cluster_data=res.cluster_data, nobs=yhat.size, **common)
    if res.se is None or res.label is None:  # pragma: no cover - debias_effect sets both
        raise DesignError("gc.debias: the interval gave neither influence functions nor a "
                          "bootstrap standard error; please report this")
    return Estimate(params=pd.Series({term: res.estimate}),
                    vcov=pd.DataFrame([[res.se ** 2]], index=[term], columns=[term]),
                    vcov_type=res.label, nobs=int(yhat.size), **common)


def _tweedie_options(tweedie: Any, kw: dict[str, Any]) -> TweedieOptions:
    """``tweedie=`` with the deprecated direct keywords folded in (FutureWarning)."""
    if kw.get("outcome_correction") is not None:
        raise DesignError("gc.debias applies its own correction; pass the corrector as "
                          "calibration= instead of outcome_correction=")
    kw = {k: v for k, v in kw.items() if k != "outcome_correction"}
    fields = set(TweedieOptions.__dataclass_fields__)
    bad = sorted(set(kw) - fields)
    if bad:
        raise OptionError(f"debias got unknown keyword(s) {bad}; see help(gc.debias)")
    opts = TweedieOptions.coerce(tweedie)
    if kw:
        warnings.warn(f"debias({', '.join(f'{k}=' for k in kw)}) is deprecated: pass "
                      f"tweedie=TweedieOptions({', '.join(f'{k}={v!r}' for k, v in kw.items())})"
                      " (or a dict)", FutureWarning, stacklevel=3)
        return TweedieOptions(**{**opts.__dict__, **kw})
    return opts


fit, LCC = fit_corrector, LinearCalibration
# ``gc.debias`` is this function; ``gc.debias.fit`` / ``.LCC`` / ``.Tweedie`` reach the correctors
debias.fit, debias.LCC, debias.Tweedie = fit_corrector, LinearCalibration, Tweedie  # type: ignore[attr-defined]


@dataclass(frozen=True)
class DebiaserComparison:
    """Pseudo-trial validation of correctors on calibration data.

    Attributes
    ----------
    table : pandas.DataFrame
        One row per method: ``slope`` and ``intercept`` of corrected on true contrasts, ``mae``,
        ``rmse``, ``n_trials``, ``slope_error`` (``|slope - 1|``).
    trials : pandas.DataFrame
        One row per pseudo-trial and method: ``fold``, ``trial``, ``method``, ``true``,
        ``estimate``, ``n_treated``.
    recommended : str
        The best method by the comparison's ``criterion`` (``settings["criterion"]``).
    """

    table: pd.DataFrame
    trials: pd.DataFrame
    recommended: str
    settings: dict = field(default_factory=dict)

    def plot(self, ax=None):
        """Estimated against true pseudo-trial contrasts, one colour per method."""
        from geocausal.results.plot_debias import comparison_plot

        return comparison_plot(self, ax=ax)

    def __repr__(self) -> str:
        return (f"DebiaserComparison(recommended={self.recommended!r})\n"
                + self.table.to_string(index=False, float_format=lambda v: f"{v:.3f}"))


def compare_debiasers(
    calibration: Any,
    *,
    prediction: str = "prediction",
    truth: str = "truth",
    methods: Sequence[str] = ("naive", "lcc", "tweedie"),
    folds: int | Folds | np.ndarray = DEFAULTS.folds,
    n_trials: int = 20,
    pseudo_treatments: Any = None,
    tilt: float = 1.5,
    min_arm: int = 5,
    seed: int = DEFAULTS.seed,
    criterion: str = "mae",
    tweedie: TweedieOptions | dict | None = None,
) -> DebiaserComparison:
    """K-fold pseudo-trials on calibration data: which correction recovers the true contrasts.

    The calibration units are split into ``folds``; correctors are fitted on the other folds
    and applied to the held-out fold, where pseudo-trials compare a pseudo-treated group with
    the rest (difference in means of the corrected predictions against the same contrast of the
    truths). Without ``pseudo_treatments`` each trial draws ``A ~ Bern(sigmoid(g z(y)))`` with
    ``g ~ U(-tilt, tilt)`` and ``z`` the standardised truth, so trials span a range of true
    effects and the prediction depends on the pseudo-treatment only through the truth (as it
    does for a real treatment). ``pseudo_treatments`` may instead be an ``(n_cal, T)`` boolean
    matrix or a 1-D array of group labels (each group against the rest).

    ``criterion`` picks the recommendation: ``"mae"`` (default) or ``"rmse"`` of the pseudo-trial
    contrasts, or ``"slope"``, the distance of the slope of corrected on true contrasts from 1.
    MAE and RMSE mix bias with the noise of contrasts on one held-out fold (``n_cal / folds``
    units, fewer than downstream; LCC's division by a small ``k`` pays for that noise here
    more than downstream); the slope measures only systematic shrinkage or over-correction.
    ``tweedie`` (:class:`~geocausal.designs.debias.TweedieOptions` or a dict) sets the KDE's
    ``bandwidth`` and ``derivative``; ``folds`` an integer, a :class:`~geocausal.folds.Folds`
    (e.g. ``Folds.group("village")`` on a calibration frame) or fold ids.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=1000); yhat = 0.5 * y + rng.normal(0, .3, 1000)
    >>> cmp = compare_debiasers((yhat, y), n_trials=10)
    >>> cmp.recommended in ("lcc", "tweedie")
    True
    """
    yhat, y = calibration_arrays(calibration, prediction, truth)
    criterion = choice("criterion", criterion, ("mae", "rmse", "slope"), design="debias")
    methods = tuple(choice("methods", m, ("naive", "lcc", "tweedie"), design="debias")
                    for m in ([methods] if isinstance(methods, str) else methods))
    opts = TweedieOptions.coerce(tweedie)
    if opts.score_sample != "calibration":
        raise OptionError("compare_debiasers builds the Tweedie KDE on the training folds' "
                          "predictions; score_sample='downstream' does not apply")
    frame = calibration if isinstance(calibration, pd.DataFrame) else None
    fold_ids = resolve_folds(folds, frame, n=y.size, seed=seed)
    res = pseudo_trials(yhat, y, methods=methods, fold_ids=fold_ids, n_trials=n_trials,
                        pseudo=pseudo_treatments, tilt=tilt, min_arm=min_arm, seed=seed,
                        criterion=criterion, tweedie_options={
                            "bandwidth": opts.bandwidth, "derivative": opts.derivative})
    return DebiaserComparison(res.table, res.trials, res.recommended, res.settings)

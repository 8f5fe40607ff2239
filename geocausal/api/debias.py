"""``gc.debias``, ``gc.compare_debiasers`` and ``gc.ppi``: effects on ML-predicted outcomes.

When the outcome column is a prediction (a poverty map from satellite images), effects shrink.

* ``gc.debias("yhat ~ d + x", data, calibration=cal, method="tweedie")`` fits a corrector on a
  calibration set of predictions and truths and returns the corrected Hajek IPW effect, with an
  interval that carries the calibration uncertainty (a joint bootstrap over the calibration set
  and the downstream sample, or the delta method for LCC).
* ``gc.debias.fit(yhat_cal, y_cal, method="lcc")`` (``fit_corrector``) returns just the fitted corrector, which every
  design accepts as ``outcome_correction=``.
* ``gc.compare_debiasers(cal)`` runs K-fold pseudo-trials on the calibration data and reports
  the slope and MAE of corrected against true contrasts, with a recommendation.
* ``gc.ppi("yhat ~ d", data, truth="y", estimand="ate")``: prediction-powered inference (PPI++)
  when some downstream units carry labels.

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

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from formulaic import model_matrix

from geocausal.designs.common import check_estimate, check_values
from geocausal.designs.debias import (
    LinearCalibration,
    Tweedie,
    check_calibration_relation,
    check_pair,
    check_propensity,
    check_vector,
    hajek_ate,
    hajek_influence,
    joint_bootstrap,
    lcc_delta_influence,
    make_corrector,
)
from geocausal.designs.ppi import ppi_ate, ppi_mean, ppi_ols
from geocausal.errors import DataError, DesignError, FormulaError
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from, parse_vcov
from geocausal.nuisance.crossfit import crossfit_predict, make_folds
from geocausal.results.estimate import Estimate, make_provenance

__all__ = ["LCC", "LinearCalibration", "Tweedie", "fit", "DebiaserComparison", "compare_debiasers", "debias",
           "fit_corrector", "ppi"]

Corrector = LinearCalibration | Tweedie
PROPENSITY_CLIP = 0.01


# ----------------------------------------------------------------------------- helpers
def _calibration_arrays(calibration: Any, prediction: str, truth: str
                        ) -> tuple[np.ndarray, np.ndarray]:
    if isinstance(calibration, pd.DataFrame):
        for col in (prediction, truth):
            if col not in calibration.columns:
                raise DataError(f"calibration frame has no column '{col}' (columns: "
                                f"{list(calibration.columns)[:10]}); name the prediction and "
                                "truth columns with prediction= and truth=")
        names = (f"predictions '{prediction}'", f"truths '{truth}'")
        pair = check_pair(calibration[prediction].to_numpy(), calibration[truth].to_numpy(),
                          names)
        check_calibration_relation(*pair, names)
        return pair
    if isinstance(calibration, tuple | list) and len(calibration) == 2:
        pair = check_pair(*calibration)
        check_calibration_relation(*pair)
        return pair
    raise DataError("calibration must be a DataFrame with prediction and truth columns, a "
                    f"(predictions, truths) pair or a fitted corrector; got "
                    f"{type(calibration).__name__}")


def fit_corrector(predictions: Any, truths: Any, method: str = "tweedie",
                  **options: Any) -> Corrector:
    """Fit an LCC (``method="lcc"``) or Tweedie corrector on a calibration pair.

    ``options`` go to :class:`Tweedie` (``bandwidth``, ``derivative``, ``delta``, ``score``);
    ``score_sample=`` builds the KDE on other predictions.

    Examples
    --------
    >>> import numpy as np
    >>> y = np.linspace(0, 1, 150)
    >>> round(fit_corrector(2 + 0.5 * y, y, method="lcc").slope, 10)
    0.5
    """
    score_sample = options.pop("score_sample", None)
    corrector = make_corrector(method, **options)
    if isinstance(corrector, Tweedie):
        return corrector.fit(predictions, truths, score_sample=score_sample)
    return corrector.fit(predictions, truths)


def _propensity(parsed, data: pd.DataFrame, treat: np.ndarray, propensity: Any,
                learners: Any, folds: int, seed: int, images: Any) -> tuple[np.ndarray, dict]:
    n = treat.size
    if propensity is not None:
        if isinstance(propensity, str):
            if propensity not in data.columns:
                raise DataError(f"propensity column '{propensity}' is not in the data")
            e = data[propensity].to_numpy(dtype=float)
        else:
            e = np.asarray(propensity, dtype=float)
        return check_vector(e, "propensity"), {"propensity": "given"}
    feats = []
    if parsed.controls:
        feats.append(parsed.control_matrix(data).to_numpy())
    if images is not None:
        from geocausal.api._images import image_features

        feats.append(image_features(images, n, seed=seed))
    if not feats:
        return np.full(n, treat.mean()), {"propensity": "constant (difference in means)"}
    x = np.column_stack(feats)
    learner = (learners or {}).get("propensity")
    if learner is None:
        from sklearn.linear_model import LogisticRegression
        from sklearn.pipeline import make_pipeline
        from sklearn.preprocessing import StandardScaler

        learner = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000))
    fold_ids = make_folds(n, folds, seed, stratify=treat)
    e = crossfit_predict(learner, x, treat, fold_ids, method="predict_proba")
    clipped = int(((e < PROPENSITY_CLIP) | (e > 1 - PROPENSITY_CLIP)).sum())
    e = np.clip(e, PROPENSITY_CLIP, 1 - PROPENSITY_CLIP)
    return e, {"propensity": f"cross-fitted {type(learner).__name__}, {folds} folds",
               "propensity_clipped": clipped}


def _resampling_clusters(vcov: Any, data: pd.DataFrame, calibration: Any, interval: str
                         ) -> tuple[str | None, np.ndarray | None, np.ndarray | None]:
    """Cluster name, downstream labels and calibration labels for a bootstrap/delta interval.

    ``vcov="hetero"``: no clusters (``"iid"`` is refused: no homoskedastic variance is defined). ``{"cluster": col}``: downstream units are
    clustered by ``data[col]``; calibration units by ``calibration[col]`` when the calibration
    frame has that column, else they count as independent units.
    """
    req = parse_vcov(vcov, len(data), cluster_data_from(data))
    if req.kind == "iid":
        raise DesignError(f"vcov='iid' is not defined for interval='{interval}': the bootstrap "
                          "and delta-method intervals resample or sum independent units "
                          "(heteroskedasticity-robust); use vcov='hetero' or a cluster column")
    if req.kind != "cluster":
        return None, None, None
    if len(req.clusters) != 1:
        raise DesignError(f"vcov={vcov!r} is not available with interval='{interval}': use "
                          "'hetero' or one cluster column, {'cluster': 'village'}")
    col = req.names[0]
    cal_groups = None
    if isinstance(calibration, pd.DataFrame) and col in calibration.columns:
        cal_groups = calibration[col].to_numpy()
    return col, req.clusters[0], cal_groups


# ----------------------------------------------------------------------------- gc.debias
def debias(
    formula: str,
    data: pd.DataFrame,
    *,
    calibration: Any = None,
    method: str = "tweedie",
    prediction: str | None = None,
    truth: str = "truth",
    propensity: Any = None,
    score_sample: str = "calibration",
    bandwidth: str | float = "scott",
    derivative: str = "analytic",
    interval: str = "bootstrap",
    n_boot: int = 999,
    vcov: Any = "hetero",
    learners: dict | None = None,
    folds: int = 5,
    seed: int = 0,
    images: Any = None,
    outcome_correction: Any = None,
    missing_images: str = "drop",
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
    propensity
        A column (or array) of known propensities; otherwise a cross-fitted logistic regression
        on the controls and ``images`` features (``learners={"propensity": ...}``), or the
        treated share when there are none.
    score_sample
        Tweedie KDE on the ``"calibration"`` predictions (default) or the ``"downstream"`` ones.
    bandwidth, derivative
        KDE bandwidth rule (``"scott"``, ``"silverman"``, ``"cv"`` or a number) and score
        derivative (``"analytic"`` or ``"fd"``).
    interval
        ``"bootstrap"`` (joint over calibration and downstream samples, default), ``"delta"``
        (LCC or ``"none"`` only), or ``"fixed"`` (treats the corrector as known).
    n_boot
        Bootstrap draws.
    vcov
        ``"hetero"`` (default), or ``{"cluster": "village"}``: the bootstrap resamples whole
        downstream clusters (and calibration clusters when the calibration frame has the same
        column), and the delta method clusters the downstream influence. With
        ``interval="fixed"`` any variance of the designs is accepted.
    learners, folds, seed, images
        As in every design (``images`` are matched to the data's index by unit id, raw arrays
        by position; see :mod:`geocausal.features.align`).
    outcome_correction
        Not used here (this function is the correction); must be None.
    missing_images
        Units whose image is unusable: ``"drop"`` (default, counted ``MissingImagesWarning``),
        ``"impute"`` or ``"error"``.

    Returns
    -------
    Estimate
        ``estimand="ATE"``, ``design="debias"``; diagnostics hold the naive effect, the corrector's
        fitted quantities, out-of-support counts and the bootstrap percentile interval.

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
    if outcome_correction is not None:
        raise DesignError("gc.debias applies its own correction; pass the corrector as "
                          "calibration= instead of outcome_correction=")
    if calibration is None and method != "none":
        raise DesignError("gc.debias needs calibration=: held-out predictions and truths (a "
                          "DataFrame, a pair of arrays or a fitted corrector)")
    if interval not in ("bootstrap", "delta", "fixed"):
        raise DataError(f"interval '{interval}' is not 'bootstrap', 'delta' or 'fixed'")
    from geocausal.api._images import align_images

    al = align_images(images, data, missing_images=missing_images)
    data, images, propensity = al.data, al.images, al.rows(propensity)
    parsed = parse_formula(formula, data)
    yhat = check_vector(parsed.outcome_vector(data), f"outcome '{parsed.outcome}'")
    treat = parsed.treatment_vector(data)
    e, pdiag = _propensity(parsed, data, treat, propensity, learners, folds, seed, images)
    treat, e = check_propensity(treat, e)
    naive = float(hajek_ate(yhat, treat, e))
    naive_psi = hajek_influence(yhat, treat, e)
    diag: dict[str, Any] = {"method": method, "interval": interval, "naive": naive,
                            "naive_se": float(np.sqrt(np.mean(naive_psi ** 2) / yhat.size)),
                            **pdiag}
    term = parsed.treatment
    prov = make_provenance(formula, seed, method=method, interval=interval, n_boot=n_boot)
    common = {"estimand": "ATE", "design": "debias", "provenance": prov}

    if method == "none":
        if interval == "bootstrap":
            interval = "fixed"
        diag["interval"] = interval
        return Estimate.from_influence({term: naive}, naive_psi, vcov=vcov,
                                       cluster_data=cluster_data_from(data), diagnostics=diag,
                                       **common)
    if isinstance(calibration, LinearCalibration | Tweedie):
        corrector = calibration
        if not corrector.fitted:
            raise DesignError("calibration= got an unfitted corrector; call .fit first")
    else:
        cal_pred, cal_truth = _calibration_arrays(calibration, prediction or parsed.outcome,
                                                  truth)
        corrector = fit_corrector(cal_pred, cal_truth, method, bandwidth=bandwidth,
                                  derivative=derivative, seed=seed) if method == "tweedie" \
            else fit_corrector(cal_pred, cal_truth, method)
    if isinstance(corrector, Tweedie) and score_sample == "downstream":
        corrector = corrector.with_score_sample(yhat)
    elif score_sample not in ("calibration", "downstream"):
        raise DataError(f"score_sample '{score_sample}' is not 'calibration' or 'downstream'")
    corrected = corrector.transform(yhat)
    diag.update(corrector.diagnostics())
    diag["out_of_support"] = int(((yhat < corrector.support[0])
                                  | (yhat > corrector.support[1])).sum())
    if isinstance(corrector, Tweedie):
        score_contrast = float(hajek_ate(corrector.score_fn(yhat), treat, e))
        diag["score_contrast"] = score_contrast
        tau = naive - corrector.sigma2 * score_contrast     # tau(yhat) - s^2 tau(score)
    else:
        tau = float(hajek_ate(corrected, treat, e))

    if interval == "fixed":
        psi = hajek_influence(corrected, treat, e)
        check_estimate(tau, psi, f"the {method} corrected effect")
        return Estimate.from_influence({term: tau}, psi, vcov=vcov,
                                       cluster_data=cluster_data_from(data), diagnostics=diag,
                                       **common)
    col, groups, cal_groups = _resampling_clusters(vcov, data, calibration, interval)
    if interval == "delta":
        if not isinstance(corrector, LinearCalibration):
            raise DesignError("the delta method is available for method='lcc'; the Tweedie KDE "
                              "score has no simple influence function, use interval='bootstrap'")
        tau_d, psi = lcc_delta_influence(corrector, yhat, treat, e)
        check_estimate(tau_d, psi, "the LCC corrected effect")
        cluster_data = None
        if col is not None:     # stacked rows: downstream clusters, then calibration clusters
            cal = (np.arange(corrector.n_cal) if cal_groups is None else cal_groups).astype(str)
            cluster_data = {col: np.concatenate([np.char.add("d:", groups.astype(str)),
                                                 np.char.add("c:", cal)])}
            vcov = {"cluster": col}
        return Estimate.from_influence({term: tau_d}, psi, vcov=vcov, nobs=yhat.size,
                                       cluster_data=cluster_data, diagnostics=diag, **common)
    draws = joint_bootstrap(corrector, yhat, treat, e, n_boot=n_boot, seed=seed,
                            groups=groups, cal_groups=cal_groups)
    se = float(np.std(draws, ddof=1))
    check_estimate(tau, None, f"the {method} corrected effect")
    check_estimate(se, None, f"the bootstrap standard error of the {method} corrected effect")
    lo, hi = np.quantile(draws, [0.025, 0.975])
    diag.update({"n_boot": int(n_boot), "boot_percentile_95": (float(lo), float(hi)),
                 "boot_bias": float(draws.mean() - tau)})
    label = "calibration+downstream" if col is None else f"cluster({col}); calibration+downstream"
    return Estimate(params=pd.Series({term: tau}),
                    vcov=pd.DataFrame([[se ** 2]], index=[term], columns=[term]),
                    vcov_type=f"bootstrap({label})", nobs=int(yhat.size),
                    diagnostics=diag, **common)


fit = fit_corrector
LCC = LinearCalibration
# ``gc.debias`` is this function; ``gc.debias.fit`` / ``.LCC`` / ``.Tweedie`` reach the correctors
debias.fit = fit_corrector              # type: ignore[attr-defined]
debias.LCC = LinearCalibration          # type: ignore[attr-defined]
debias.Tweedie = Tweedie                # type: ignore[attr-defined]


# ----------------------------------------------------------------------------- comparison
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


def _pseudo_treatments(y: np.ndarray, n_trials: int, tilt: float, rng: np.random.Generator
                       ) -> np.ndarray:
    z = (y - y.mean()) / y.std()
    gam = rng.uniform(-tilt, tilt, n_trials)
    p = 1 / (1 + np.exp(-gam[:, None] * z[None, :]))
    return (rng.random(p.shape) < p).T            # (n, n_trials)


def compare_debiasers(
    calibration: Any,
    *,
    prediction: str = "prediction",
    truth: str = "truth",
    methods: Sequence[str] = ("naive", "lcc", "tweedie"),
    folds: int = 5,
    n_trials: int = 20,
    pseudo_treatments: Any = None,
    tilt: float = 1.5,
    min_arm: int = 5,
    seed: int = 0,
    criterion: str = "mae",
    **tweedie_options: Any,
) -> DebiaserComparison:
    """K-fold pseudo-trials on calibration data: which correction recovers true contrasts?

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
    MAE and RMSE mix bias with the noise of contrasts on one held-out fold, whose size
    (``n_cal / folds``) is usually much smaller than a downstream study; corrections that divide
    by a small ``k`` (LCC) pay for that noise here more than they will downstream. The slope
    measures only the systematic shrinkage or over-correction, whatever the sample size.

    Examples
    --------
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=1000); yhat = 0.5 * y + rng.normal(0, .3, 1000)
    >>> cmp = compare_debiasers((yhat, y), n_trials=10)
    >>> cmp.recommended in ("lcc", "tweedie")
    True
    """
    yhat, y = _calibration_arrays(calibration, prediction, truth)
    n = y.size
    rng = np.random.default_rng(seed)
    if pseudo_treatments is None:
        treat = _pseudo_treatments(y, n_trials, tilt, rng)
        source = f"tilted on the truth, |g| <= {tilt}"
    else:
        pt = np.asarray(pseudo_treatments)
        if pt.shape[0] != n:
            raise DataError(f"pseudo_treatments has {pt.shape[0]} rows but the calibration set "
                            f"has {n} units")
        if pt.ndim == 1:
            labels = pd.unique(pt)
            treat = np.column_stack([pt == g for g in labels])
        else:
            treat = pt.astype(bool)
        source = "given"
    if criterion not in ("mae", "rmse", "slope"):
        raise DataError(f"criterion '{criterion}' is not 'mae', 'rmse' or 'slope'")
    bad = set(methods) - {"naive", "lcc", "tweedie"}
    if bad:
        raise DataError(f"methods {sorted(bad)} are not among 'naive', 'lcc', 'tweedie'")
    fold_ids = make_folds(n, folds, seed)
    rows = []
    for k in range(folds):
        te = fold_ids == k
        tr = ~te
        corrected = {"naive": yhat[te]}
        import warnings as _w

        with _w.catch_warnings():
            _w.simplefilter("ignore")
            if "lcc" in methods:
                corrected["lcc"] = LinearCalibration().fit(yhat[tr], y[tr]).transform(yhat[te])
            if "tweedie" in methods:
                corrected["tweedie"] = Tweedie(**tweedie_options).fit(
                    yhat[tr], y[tr]).transform(yhat[te])
        for t in range(treat.shape[1]):
            a = treat[te, t]
            if a.sum() < min_arm or (~a).sum() < min_arm:
                continue
            true = y[te][a].mean() - y[te][~a].mean()
            for m in methods:
                c = corrected[m]
                rows.append({"fold": k, "trial": t, "method": m, "true": true,
                             "estimate": c[a].mean() - c[~a].mean(), "n_treated": int(a.sum())})
    trials = pd.DataFrame(rows)
    if trials.empty:
        raise DesignError(f"no pseudo-trial has {min_arm} or more units in both arms; use "
                          "fewer folds or larger groups")
    summ = []
    for m in methods:
        t = trials[trials.method == m]
        slope, icpt = np.polyfit(t["true"], t["estimate"], 1) if t["true"].std() > 0 else (
            np.nan, np.nan)
        err = t["estimate"] - t["true"]
        summ.append({"method": m, "slope": float(slope), "intercept": float(icpt),
                     "mae": float(err.abs().mean()), "rmse": float(np.sqrt((err ** 2).mean())),
                     "n_trials": int(len(t))})
    table = pd.DataFrame(summ)
    table["slope_error"] = (table["slope"] - 1).abs()
    order = {"mae": ["mae", "rmse"], "rmse": ["rmse", "mae"], "slope": ["slope_error", "mae"]}
    best = table.sort_values(order[criterion]).iloc[0]["method"]
    return DebiaserComparison(table=table, trials=trials, recommended=str(best),
                              settings={"folds": folds, "n_trials": int(treat.shape[1]),
                                        "pseudo_treatments": source, "seed": seed,
                                        "criterion": criterion})


# ----------------------------------------------------------------------------- gc.ppi
def ppi(
    formula: str,
    data: pd.DataFrame,
    *,
    truth: str,
    estimand: str = "ate",
    lam: float | None = None,
    propensity: Any = None,
    vcov: Any = "hetero",
    learners: dict | None = None,
    folds: int = 5,
    seed: int = 0,
    images: Any = None,
    outcome_correction: Any = None,
    missing_images: str = "drop",
) -> Estimate:
    """Prediction-powered inference: a mean, OLS coefficients or an ATE from predictions plus a
    few labels.

    Parameters
    ----------
    formula
        ``"yhat ~ 1"`` (mean), ``"yhat ~ x1 + x2"`` (OLS, intercept added) or ``"yhat ~ d + x"``
        (ATE of the binary ``d``; the controls feed the propensity model).
    data
        All units; ``truth`` is missing (NaN) where a unit has no label.
    truth
        Column of labels.
    estimand
        ``"mean"``, ``"ols"`` or ``"ate"``.
    lam
        ``None`` for PPI++ (power-tuned, clipped to [0, 1]), 1 for PPI, 0 for labels only.
    propensity
        Known propensities (a column or array) for the ATE; otherwise cross-fitted.
    vcov
        Only ``"hetero"`` (PPI's own variance).
    outcome_correction
        Optional corrector applied to the predictions first.
    learners, folds, seed, images, missing_images
        The propensity model of the ATE, as in :func:`debias`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> y = rng.normal(size=2000); yh = y + rng.normal(0, .5, 2000)
    >>> lab = np.where(np.arange(2000) < 200, y, np.nan)
    >>> est = ppi("yh ~ 1", pd.DataFrame({"yh": yh, "y": lab}), truth="y", estimand="mean")
    >>> est.estimand
    'mean'
    """
    from geocausal.api._correction import apply_correction

    if vcov != "hetero":
        raise DesignError(f"vcov={vcov!r}: PPI intervals use their own two-sample variance; "
                          "use 'hetero'")
    if truth not in data.columns:
        raise DataError(f"truth column '{truth}' is not in the data")
    if estimand == "ate":  # images feed only the propensity model of the ATE
        from geocausal.api._images import align_images

        al = align_images(images, data, missing_images=missing_images)
        data, images, propensity = al.data, al.images, al.rows(propensity)
    parsed = parse_formula(formula, data, treatment=estimand == "ate")
    yhat = apply_correction(outcome_correction, check_vector(
        parsed.outcome_vector(data), f"outcome '{parsed.outcome}'"))
    lab_all = check_values(pd.to_numeric(data[truth], errors="coerce").to_numpy(dtype=float),
                           truth, data.index)
    labelled = np.isfinite(lab_all)
    if labelled.sum() < 2 or (~labelled).sum() < 2:
        raise DataError(f"truth column '{truth}' has {int(labelled.sum())} labelled and "
                        f"{int((~labelled).sum())} unlabelled rows; PPI needs both")
    y = lab_all[labelled]
    diag: dict[str, Any] = {"n_labelled": int(labelled.sum()),
                            "n_unlabelled": int((~labelled).sum())}
    if estimand == "mean":
        res = ppi_mean(y, yhat[labelled], yhat[~labelled], lam=lam)
        names = ["mean"]
    elif estimand == "ols":
        rhs = " + ".join(parsed.rhs) or "1"
        mm = model_matrix("1 + " + rhs, data, na_action="raise")
        x = np.asarray(mm, dtype=float)
        for j, col in enumerate(mm.columns):
            check_values(x[:, j], str(col), data.index)
        names = list(map(str, mm.columns))
        res = ppi_ols(x[labelled], y, yhat[labelled], x[~labelled], yhat[~labelled], lam=lam,
                      names=names)
    elif estimand == "ate":
        treat = parsed.treatment_vector(data)
        e, pdiag = _propensity(parsed, data, treat, propensity, learners, folds, seed, images)
        diag.update(pdiag)
        res = ppi_ate(y, yhat[labelled], treat[labelled], e[labelled], yhat[~labelled],
                      treat[~labelled], e[~labelled], lam=lam)
        names = [parsed.treatment]
    else:
        raise FormulaError(f"estimand '{estimand}' is not 'mean', 'ols' or 'ate'")
    diag["lam"] = res.lam
    diag["method"] = "ppi" if lam == 1 else "classical" if lam == 0 else (
        "ppi++" if lam is None else f"ppi(lam={lam})")
    return Estimate(params=pd.Series(res.estimate, index=names),
                    vcov=pd.DataFrame(res.vcov, index=names, columns=names), vcov_type="ppi",
                    estimand=estimand if estimand != "ate" else "ATE", design="ppi",
                    nobs=int(yhat.size), influence=res.influence, diagnostics=diag,
                    provenance=make_provenance(formula, seed, lam=lam, estimand=estimand))

"""``gc.dml_panel``: double machine learning for panels with unobserved unit heterogeneity.

Approaches (Fuhr and Papies 2024; Clarke and Polselli 2025): ``"pooled"``, ``"cre"``
(Mundlak: unit means of the covariates and of the treatments as features; period means
too with ``time_effects=True``), ``"cre_cp"`` (covariate means with re-centred treatment
predictions), ``"fd"`` (first differences), ``"within"`` (early demeaning), ``"late"``
(demeaned residuals) and ``"dummies"`` (unit indicators).

Which folds meet which features: unit dummies need the unit's own rows in the training folds
to learn its effect, so **unit folds with ``approach="dummies"`` are the harmful combination**
(the held-out unit's indicator is never seen in training; a warning is raised). Random or
time-block folds with dummies are fine. CRE features are computed from each unit's own rows,
so they exist for held-out units and unit folds are harmless there; unit folds are the default
for every other approach because the cluster-robust variance treats units as independent.

Inference: cluster-robust by unit by default (``vcov={"cluster": [unit, time]}`` or
``"twoway"`` for two-way clustering), repeated cross-fitting (``n_rep``) with median
aggregation, a clustered multiplier bootstrap with joint sup-t intervals over the treatments,
and a coverage diagnostic: the spread across repetitions and the gap between the two
orthogonal scores (an estimate of the second-order bias) are compared with the standard
error; when either exceeds half of it, or when less than 20% of a treatment's variance is left
after partialling out, a :class:`~geocausal.errors.DiagnosticWarning` says the nominal level
cannot be trusted and ``diagnostics["bias_aware_ci"]`` widens the interval; when no check could
see bias the note says coverage is unverified (:func:`coverage_verdict`).

Examples
--------
>>> from sklearn.linear_model import LinearRegression
>>> from geocausal.datasets.panel_dgp import make_fuhr_papies
>>> df = make_fuhr_papies(60, 5, shape="linear", seed=0)
>>> lin = {"ml_l": LinearRegression(), "ml_m": LinearRegression(), "ml_g": LinearRegression()}
>>> est = dml_panel("y ~ d + x1", df, unit="unit", time="time", learners=lin, folds=3)
>>> bool(abs(est.params["d"] - 1) < 0.2)
True
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import clone
from sklearn.ensemble import HistGradientBoostingRegressor

from geocausal.api._correction import apply_correction
from geocausal.api._images import align_images, image_features
from geocausal.designs.dml_panel import (
    FOLD_TYPES,
    SCORES,
    fit_panel_dml,
    make_fold_ids,
)
from geocausal.designs.panel_transforms import (
    APPROACHES,
    MIN_SWITCHERS,
    period_codes,
    transform_panel,
)
from geocausal.errors import (
    DataError,
    DesignError,
    DiagnosticWarning,
    FewSwitchersWarning,
    FormulaError,
    GeocausalWarning,
)
from geocausal.formula import parse_formula
from geocausal.inference.bootstrap import multiplier_bootstrap, sup_t_critical
from geocausal.inference.sensitivity import plr_elements
from geocausal.inference.variance import (
    VarianceRule,
    cluster_data_from,
    parse_vcov,
    variance_from_rule,
)
from geocausal.results.estimate import Estimate, make_provenance

FLAG_RATIO = 0.5  # |bias| or repetition spread above half an SE: coverage below about 92%
# Share of a treatment's variance left after partialling out below which the estimate rests
# on a small residual: in the Fuhr-Papies Monte Carlo (paper/dml_panel/MONTECARLO.md, u-shaped
# structure C, 250 replications) flagged CRE fits covered the truth 38-46% of the time,
# unflagged spline ones 90%.
RESIDUAL_SHARE_MIN = 0.2
BLIND_TOL = 1e-8  # two scores this close (relative to the SE) coincide: a linear smoother


def default_learners(seed: int = 0) -> dict[str, Any]:
    """Gradient boosting for every nuisance slot (``ml_l``, ``ml_m``, ``ml_g``).

    Examples
    --------
    >>> sorted(default_learners())
    ['ml_g', 'ml_l', 'ml_m']
    """
    base = HistGradientBoostingRegressor(max_iter=200, learning_rate=0.1, random_state=seed)
    return {"ml_l": clone(base), "ml_m": clone(base), "ml_g": clone(base)}


def _learners(learners: Mapping[str, Any] | None, seed: int) -> dict[str, Any]:
    out = default_learners(seed)
    if learners is None:
        return out
    unknown = sorted(set(learners) - {"ml_l", "ml_m", "ml_g"})
    if unknown:
        raise DataError(f"unknown learner slots {unknown}; use 'ml_l', 'ml_m' and 'ml_g'")
    out.update(learners)
    if "ml_g" not in learners:
        out["ml_g"] = clone(out["ml_l"])
    return out


def _treatments(parsed, treatments) -> tuple[list[str], tuple[str, ...]]:
    rhs = list(parsed.rhs)
    if treatments is None:
        names = rhs[:1]
    elif isinstance(treatments, int):
        if not 1 <= treatments <= len(rhs):
            raise FormulaError(f"treatments={treatments} but the formula has {len(rhs)} terms")
        names = rhs[:treatments]
    else:
        names = list(treatments)
        bad = [t for t in names if t not in rhs]
        if bad:
            raise FormulaError(f"treatments {bad} are not right-hand terms of '{parsed.formula}'")
    return names, tuple(t for t in rhs if t not in names)


def _panel_codes(data: pd.DataFrame, unit: str, time: str) -> tuple[np.ndarray, np.ndarray]:
    for role, col in (("unit", unit), ("time", time)):
        if col not in data.columns:
            raise DataError(f"{role} column '{col}' is not in the data")
        nmiss = int(data[col].isna().sum())
        if nmiss:
            raise DataError(f"{role} column '{col}' has {nmiss} missing values")
    dup = data.duplicated([unit, time])
    if dup.any():
        first = data.loc[dup, [unit, time]].iloc[0].tolist()
        raise DataError(f"{int(dup.sum())} duplicated ({unit}, {time}) rows, e.g. {first}; "
                        "keep one row per unit and period")
    _, u = np.unique(data[unit].to_numpy(), return_inverse=True)
    return u.ravel().astype(np.int64), period_codes(data[time], f"time column '{time}'")


def _fold_plan(folds, fold_type, n_rep, tr, seed, crossfit, n_rows) -> list[np.ndarray | None]:
    if not crossfit or (isinstance(folds, int | np.integer) and folds == 1):
        return [None]
    if isinstance(folds, int | np.integer):
        return [make_fold_ids(tr, int(folds), fold_type, seed + r) for r in range(n_rep)]
    arrs = [np.asarray(folds)] if np.ndim(folds) == 1 else [np.asarray(f) for f in folds]
    out = []
    for a in arrs:
        if a.shape[0] != n_rows:
            raise DataError(f"folds array has length {a.shape[0]}, expected one id per data row "
                            f"({n_rows})")
        out.append(a[tr.rows])
    return out


def _units_nested(fold_ids: np.ndarray, unit: np.ndarray) -> bool:
    """Whether every unit sits in a single fold (unit-grouped folds)."""
    per_unit = pd.Series(fold_ids).groupby(unit).nunique()
    return bool((per_unit == 1).all())


def _dropped_rows(data, unit, time, tr, approach) -> pd.DataFrame:
    kept = np.zeros(len(data), dtype=bool)
    kept[tr.rows] = True
    gone = data.loc[~kept, [unit, time]].copy()
    if approach == "fd":
        first = data.groupby(unit)[time].transform("min")
        gone["reason"] = np.where(data.loc[~kept, time].to_numpy() == first[~kept].to_numpy(),
                                  "first period of the unit", "previous period missing")
    else:
        gone["reason"] = "singleton unit"
    return gone.reset_index(drop=True)


def _check_treatment_variation(tr, d_names, approach) -> dict[str, int]:
    counts = {}
    for j, name in enumerate(d_names):
        dj = tr.d[:, j]
        if approach == "fd":
            moved = np.abs(dj) > 1e-12
        else:
            moved = np.abs(dj - pd.Series(dj).groupby(tr.unit).transform("mean").to_numpy()) > 1e-12
        n_var = int(np.unique(tr.unit[moved]).size)
        counts[name] = n_var
        if approach == "pooled":
            continue
        if n_var == 0:
            raise DesignError(f"treatment '{name}' is time-invariant within every unit, so "
                              f"approach '{approach}' cannot identify its effect; use "
                              "approach='pooled' (between variation) or a time-varying treatment")
        if n_var < MIN_SWITCHERS:
            warnings.warn(f"treatment '{name}' varies within only {n_var} units (fewer than "
                          f"{MIN_SWITCHERS}); the estimate rests on very few units",
                          FewSwitchersWarning, stacklevel=3)
    return counts


def dml_panel(
    formula: str,
    data: pd.DataFrame,
    *,
    unit: str,
    time: str,
    approach: str = "cre",
    score: str = "partialling out",
    learners: Mapping[str, Any] | None = None,
    folds: int | np.ndarray | Sequence[np.ndarray] = 5,
    fold_type: str | None = None,
    n_rep: int = 1,
    vcov: Any = None,
    seed: int = 0,
    images: Any = None,
    outcome_correction: Any = None,
    treatments: int | Sequence[str] | None = None,
    time_effects: bool = False,
    crossfit: bool = True,
    gap: int = 1,
    bias_check: bool = True,
    n_boot: int = 999,
    alpha: float = 0.05,
    missing_images: str = "drop",
    progress: bool = True,
) -> Estimate:
    """Double machine learning for a partially linear panel model.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + x2"``; the first ``treatments`` right-hand terms are treatments.
    data
        Long panel, one row per unit and period (unbalanced panels and gaps are fine).
    unit, time
        Unit and period columns (periods must sort in time order).
    approach
        One of ``"pooled"``, ``"cre"``, ``"cre_cp"``, ``"fd"``, ``"within"``, ``"late"``,
        ``"dummies"``.
    score
        ``"partialling out"`` or ``"IV-type"``.
    learners
        ``{"ml_l": E[y|X], "ml_m": E[d|X], "ml_g": E[y - d theta|X]}``; scikit-learn
        compatible; gradient boosting by default; ``ml_g`` defaults to a copy of ``ml_l``.
    folds
        Number of folds, ``1`` for no cross-fitting, or fold ids (one per data row, or a list
        of such arrays, one per repetition).
    fold_type
        ``"random"``, ``"unit"``, ``"time"`` (period blocks) or ``"neighbours"`` (period
        blocks with the ``gap`` neighbouring periods left out of training). Default ``"unit"``,
        except ``"random"`` for ``approach="dummies"``.
    n_rep
        Repetitions of the sample splitting (median aggregation).
    vcov
        ``{"cluster": unit}`` (default), ``"twoway"`` / ``{"cluster": [unit, time]}``,
        ``"hetero"``, or any column of ``data`` as a cluster.
    seed
        Seed of the folds and of the default learners and the bootstrap.
    images
        Image features, added to the covariates: an embeddings frame, a ``ChipsResult``, a
        chips cache path or the long Parquet of ``geocausal embed``, matched on the ``unit``
        column by unit id (one image row per unit serves all its periods); or raw chips / a
        feature matrix with one row per data row, matched by position.
    outcome_correction
        A fitted corrector applied to the outcome first.
    treatments
        ``None`` (the first term), a number of leading terms, or a list of term names.
    time_effects
        Two-way effects (period means, two-way demeaning, period dummies).
    crossfit
        ``False`` fits and predicts on all rows (same as ``folds=1``).
    gap
        Periods left out on each side of the held-out block (``fold_type="neighbours"``).
    bias_check
        Compute the other orthogonal score too and report the gap as a bias estimate.
    n_boot
        Clustered multiplier-bootstrap draws for the joint intervals (0 to skip).
    alpha
        Level of the joint and bias-aware intervals in the diagnostics.
    progress
        A progress bar over the repetitions (shown only in a terminal or notebook).
    missing_images
        Units whose image is unusable (no valid pixel in some period, NaN features):
        ``"drop"`` (default; all their rows, with a counted ``MissingImagesWarning``),
        ``"impute"`` or ``"error"``.

    Returns
    -------
    Estimate
        ``params`` indexed by treatment, cluster-robust ``vcov``, ``influence``, and
        ``diagnostics`` (rows dropped, per-repetition estimates, nuisance R-squared, bias and
        spread ratios, ``coverage_flag``, ``bias_aware_ci``, ``joint_ci``).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> from geocausal.datasets.panel_dgp import make_fuhr_papies
    >>> df = make_fuhr_papies(40, 4, shape="linear", seed=2)
    >>> lr = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    >>> e = dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="fd",
    ...                  learners=lr, folds=4)
    >>> e.diagnostics["rows_dropped"]
    40
    """
    if approach not in APPROACHES:
        raise DataError(f"approach '{approach}' is not one of {APPROACHES}")
    if score not in SCORES:
        raise DataError(f"score '{score}' is not one of {SCORES}")
    fold_type = fold_type or ("random" if approach == "dummies" else "unit")
    if fold_type not in FOLD_TYPES:
        raise DataError(f"fold_type '{fold_type}' is not one of {FOLD_TYPES}")
    from geocausal._progress import progress_visible

    progress_visible(progress)  # validates the option
    if not isinstance(n_rep, int | np.integer) or n_rep < 1:
        raise DataError(f"n_rep must be a positive integer, got {n_rep}")
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    al = align_images(images, data, unit=unit, missing_images=missing_images)
    data, images, folds = al.data, al.images, al.rows(folds)
    parsed = parse_formula(formula, data)
    if parsed.fixed_effects:
        raise FormulaError(f"dml_panel handles unit effects through approach=, not '| "
                           f"{' + '.join(parsed.fixed_effects)}' in '{formula}'")
    d_names, controls = _treatments(parsed, treatments)
    u_codes, t_codes = _panel_codes(data, unit, time)
    y = apply_correction(outcome_correction, parsed.outcome_vector(data))
    d = np.column_stack([replace(parsed, treatment=t).treatment_vector(data) for t in d_names])
    xdf = replace(parsed, controls=controls).control_matrix(data)
    x, x_names = xdf.to_numpy(dtype=float), list(map(str, xdf.columns))
    feats = image_features(images, len(data), seed=seed)
    if feats is not None:
        x = np.column_stack([x, feats])
        x_names += [f"image_{j}" for j in range(feats.shape[1])]
    if x.shape[1] == 0 and approach not in ("cre", "dummies"):
        raise FormulaError(f"formula '{formula}' has no controls; the nuisance learners need "
                           "features (add covariates or images=)")

    tr = transform_panel(approach, y, d, x, u_codes, t_codes, x_names=x_names, d_names=d_names,
                         time_effects=time_effects)
    if tr.features.shape[1] == 0:
        raise DesignError(f"approach '{approach}' leaves no features: every control is "
                          "time-invariant within units")
    notes = dict(tr.notes)
    dropped = _dropped_rows(data, unit, time, tr, approach)
    if notes.get("singletons_dropped"):
        warnings.warn(f"dropped {notes['singletons_dropped']} rows of units observed once "
                      f"(singletons carry no within-unit information for '{approach}')",
                      GeocausalWarning, stacklevel=2)
    if notes.get("fd_dropped_after_gap"):
        warnings.warn(f"first differences dropped {len(dropped)} rows: "
                      f"{notes['fd_dropped_first_period']} first periods of units and "
                      f"{notes['fd_dropped_after_gap']} rows whose previous period is missing "
                      "(gaps); see diagnostics['dropped']", GeocausalWarning, stacklevel=2)
    if approach == "within" and notes.get("time_invariant_controls"):
        warnings.warn(f"controls {notes['time_invariant_controls']} are time-invariant and "
                      "vanish under within demeaning", GeocausalWarning, stacklevel=2)
    within_counts = _check_treatment_variation(tr, d_names, approach)

    vcov = {"cluster": unit} if vcov is None else vcov
    if isinstance(vcov, str) and vcov.lower() in ("twoway", "two-way"):
        vcov = {"cluster": [unit, time]}
    cluster_data = cluster_data_from(data, tr.rows)  # every column: with_vcov may cluster on any
    req = parse_vcov(vcov, tr.y.size, cluster_data)

    lrn = _learners(learners, seed)
    plan = _fold_plan(folds, fold_type, int(n_rep), tr, seed, crossfit, len(data))
    if approach == "dummies" and plan[0] is not None and _units_nested(plan[0], tr.unit):
        warnings.warn("unit dummies with unit folds: a held-out unit's indicator is never seen "
                      "in training, so its effect is not learned and the unit heterogeneity is "
                      "not removed; use fold_type='random' or 'time'", DiagnosticWarning,
                      stacklevel=2)
    fit = fit_panel_dml(tr, lrn, plan, score=score, vcov=req,
                        gap=gap if fold_type == "neighbours" else 0,
                        bias_check=bias_check, time_effects=time_effects, progress=progress)

    params = pd.Series(fit.theta, index=d_names)
    rule = VarianceRule() if len(plan) == 1 else VarianceRule(
        method="median", rep_thetas=fit.thetas, rep_influence=fit.influences)
    var = variance_from_rule(rule, fit.influence, req, stacklevel=4)
    est_vcov = var.matrix
    se = np.sqrt(np.diag(est_vcov))
    diag = _diagnostics(fit, se, d_names, alpha, req, tr, n_boot, seed)
    rule = replace(rule, vcov_dependent=tuple(k for k in diag if k != "thetas"))
    if diag["coverage_flag"]:
        warnings.warn(diag["coverage_note"], DiagnosticWarning, stacklevel=2)
    diag.update({
        "approach": approach, "score": score, "fold_type": fold_type if plan[0] is not None
        else "none (no cross-fitting)", "folds": int(len(np.unique(plan[0])))
        if plan[0] is not None else 1, "n_rep": len(plan), "n_units": int(np.unique(tr.unit).size),
        "n_periods": int(np.unique(tr.time).size),
        "balanced": bool(len(data) == np.unique(u_codes).size * np.unique(t_codes).size),
        "rows_dropped": int(len(dropped)), "dropped": dropped, "notes": notes,
        "units_with_within_variation": within_counts, "features": list(tr.feature_names),
        "nuisance_r2": dict(fit.nuisance_r2),
    })
    prov = make_provenance(formula, seed, approach=approach, score=score, n_rep=len(plan),
                           learners={k: repr(v) for k, v in lrn.items()})
    return Estimate(params=params, vcov=pd.DataFrame(est_vcov), vcov_type=var.label,
                    estimand="ATE (partially linear)", design=f"dml_panel[{approach}]",
                    nobs=int(tr.y.size), influence=fit.influence, diagnostics=diag,
                    provenance=prov, cluster_data=cluster_data, dof=var.dof,
                    variance_rule=rule,
                    sensitivity_elements=_sensitivity_elements(fit, tr, d_names, score, req))


def _sensitivity_elements(fit, tr, d_names, score, req):
    """PLR sensitivity elements (one treatment, partialling out), or why there are none."""
    if score != "partialling out":
        return ("the sensitivity elements are computed for the partialling-out score; refit "
                "with score='partialling out'")
    if len(d_names) != 1:
        return (f"the bounds are derived for one treatment; this fit has {len(d_names)} "
                f"({', '.join(d_names)}): refit with one")
    u, v = fit.residuals
    return plr_elements(d_names[0], list(u), [vr[:, 0] for vr in v], fit.thetas[:, 0],
                        [i[:, 0] for i in fit.influences], float(np.var(tr.y)), req)


def coverage_verdict(
    ratio: float,
    residual_share: np.ndarray,
    d_names: Sequence[str],
    *,
    alpha: float = 0.05,
    bias_checked: bool = True,
    blind: bool = False,
    n_rep: int = 1,
    n_units: int | None = None,
    n_rows: int | None = None,
) -> tuple[bool, str, bool]:
    """Whether the nominal interval can be trusted, in plain words.

    Two signals, both calibrated on the Fuhr-Papies Monte Carlo
    (``paper/dml_panel/montecarlo.py``, table in ``paper/dml_panel/MONTECARLO.md``):

    - ``ratio``: the gap between the two orthogonal scores (a second-order bias estimate) or
      the spread across repetitions, in standard errors; above ``FLAG_RATIO`` the interval
      under-covers.
    - ``residual_share``: the share of each treatment's variance left after partialling out
      the features (``1 - R^2`` of ``ml_m``); below ``RESIDUAL_SHARE_MIN`` the estimate rests
      on a small residual and small errors of the nuisance fits become a bias of the order of
      the standard error (strong nonlinear confounding; flagged CRE fits covered the truth
      38-46% of the time there, unflagged spline fits 90%; 250 replications).

    When neither check could run (``bias_check=False`` and ``n_rep=1``) or the bias check is
    blind (both scores coincide exactly, as they do for linear smoothers: least squares,
    splines with ridge), the note says that coverage is unverified instead of "no sign of bias".

    Parameters
    ----------
    ratio
        The largest of ``|bias| / se`` and ``rep_sd / se`` over treatments.
    residual_share
        ``(k,)`` share of each treatment's variance left in its residual (NaN when unknown).
    d_names
        Treatment names.
    alpha
        Level of the nominal interval.
    bias_checked
        Whether the other orthogonal score was computed.
    blind
        Whether the two scores coincide to rounding (the bias check saw nothing).
    n_rep
        Repetitions of the sample splitting.
    n_units, n_rows
        Size of the sample, for the message.

    Returns
    -------
    flag : bool
        True when the nominal level should not be trusted (a ``DiagnosticWarning`` follows).
    note : str
        What was found and what to do.
    checked : bool
        Whether any check that can see bias or split noise ran.

    Examples
    --------
    >>> flag, note, checked = coverage_verdict(0.1, np.array([0.05]), ["d"])
    >>> flag, note.split(":")[0]
    (True, "only 5% of the variance of treatment 'd' is left after partialling out")
    >>> coverage_verdict(0.0, np.array([0.6]), ["d"], bias_checked=False)[1][:32]
    'nominal coverage is unverified: '
    """
    level = f"{100 * (1 - alpha):.0f}%"
    size = (f" ({n_units} units, {n_rows} rows)" if n_units is not None and n_rows is not None
            else "")
    reasons = []
    share = np.asarray(residual_share, dtype=float)
    for name, s in zip(d_names, share):
        if np.isfinite(s) and s < RESIDUAL_SHARE_MIN:
            reasons.append(
                f"only {max(s, 0.0):.0%} of the variance of treatment '{name}' is left after "
                f"partialling out: the estimate rests on a small residual (threshold "
                f"{RESIDUAL_SHARE_MIN:.0%}), so small errors of the nuisance fits turn into a "
                "bias of the order of the standard error (strong, nonlinear confounding)")
    if ratio > FLAG_RATIO:
        reasons.append(
            f"the gap between orthogonal scores or the spread across repetitions is "
            f"{ratio:.2f} standard errors (threshold {FLAG_RATIO})")
    if reasons:
        note = ("; ".join(reasons) + f". The nominal {level} interval{size} cannot be "
                "trusted and may badly under-cover: report diagnostics['bias_aware_ci'], "
                "compare approaches ('cre_cp', 'fd') and learners, and increase n_rep")
        return True, note, True
    if not bias_checked and n_rep == 1:
        return False, ("nominal coverage is unverified: no bias check (bias_check=False) "
                       "and one sample split (n_rep=1); set bias_check=True with a nonlinear "
                       "learner or n_rep > 1 to check it"), False
    if blind and n_rep == 1:
        return False, ("nominal coverage is unverified: the two orthogonal scores coincide "
                       "exactly, as they do for linear-smoother learners (least squares, "
                       "splines with ridge), so the bias check cannot see bias; check with a "
                       "nonlinear learner (e.g. boosting) or compare approaches"), False
    return False, (f"no sign of bias or repetition spread; the residual keeps at least "
                   f"{np.nanmin(share) if np.isfinite(share).any() else float('nan'):.0%} "
                   "of each treatment's variance"), True


def _diagnostics(fit, se, d_names, alpha, req, tr, n_boot, seed) -> dict[str, Any]:
    from scipy import stats

    z = float(stats.norm.ppf(1 - alpha / 2))
    diag: dict[str, Any] = {"thetas": fit.thetas.tolist(), "ses": fit.ses.tolist()}
    ratios = []
    spread = np.zeros(len(d_names))
    if fit.thetas.shape[0] > 1:
        spread = fit.thetas.std(axis=0, ddof=1)
        diag["rep_sd_over_se"] = dict(zip(d_names, (spread / se).tolist()))
        ratios.append(spread / se)
    bias = np.zeros(len(d_names))
    if fit.thetas_alt is not None:
        bias = np.median(fit.thetas_alt - fit.thetas, axis=0)
        diag["bias_estimate"] = dict(zip(d_names, bias.tolist()))
        diag["bias_over_se"] = dict(zip(d_names, (np.abs(bias) / se).tolist()))
        ratios.append(np.abs(bias) / se)
    worst = float(np.max(ratios)) if ratios else 0.0
    diag["coverage_ratio"] = worst
    share = np.array([1 - float(fit.nuisance_r2.get(f"ml_m[{j}]", np.nan))
                      for j in range(len(d_names))])
    diag["residual_share"] = dict(zip(d_names, share.tolist()))
    blind = fit.thetas_alt is not None and bool(
        np.all(np.abs(fit.thetas_alt - fit.thetas) <= BLIND_TOL * np.maximum(se, 1e-300)))
    diag["coverage_flag"], diag["coverage_note"], diag["coverage_checked"] = coverage_verdict(
        worst, share, d_names, alpha=alpha, bias_checked=fit.thetas_alt is not None,
        blind=blind, n_rep=int(fit.thetas.shape[0]),
        n_units=int(np.unique(tr.unit).size) if tr is not None else None,
        n_rows=int(tr.y.size) if tr is not None else None)
    half = z * np.sqrt(se**2 + spread**2) + np.abs(bias)
    diag["bias_aware_ci"] = pd.DataFrame({"term": d_names, "estimate": fit.theta,
                                          "conf_low": fit.theta - half,
                                          "conf_high": fit.theta + half})
    if n_boot:
        clusters = req.clusters[0] if req.kind == "cluster" else None
        draws = multiplier_bootstrap(fit.influence, n_boot=n_boot, seed=seed, clusters=clusters)
        crit = sup_t_critical(draws, se, alpha)
        diag["sup_t_critical"] = crit
        diag["joint_ci"] = pd.DataFrame({
            "term": d_names, "estimate": fit.theta,
            "conf_low": fit.theta - z * se, "conf_high": fit.theta + z * se,
            "uniform_low": fit.theta - crit * se, "uniform_high": fit.theta + crit * se})
    return diag

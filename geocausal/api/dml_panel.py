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
aggregation, a clustered multiplier bootstrap with joint sup-t intervals over the treatments
(``est.tables["joint"]``), and a coverage diagnostic
(:func:`~geocausal.designs.dml_panel.coverage_verdict`). The logic lives in
:mod:`geocausal.designs.dml_panel`; this face resolves the formula and the options.

Examples
--------
>>> from sklearn.linear_model import LinearRegression
>>> from geocausal.datasets.panel_dgp import make_fuhr_papies
>>> df = make_fuhr_papies(60, 5, shape="linear", seed=0)
>>> lin = {"marginal": LinearRegression(), "propensity": LinearRegression()}
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

from geocausal.api._correction import apply_correction
from geocausal.api._faces import public_signature
from geocausal.designs.dml_panel import (  # noqa: F401  (coverage_verdict: public re-export)
    RESIDUAL_SHARE_MIN,
    SCORES,
    PanelOptions,
    coverage_verdict,
    estimate_panel_dml,
    select_treatments,
)
from geocausal.designs.panel_transforms import APPROACHES, period_codes
from geocausal.errors import DataError, FormulaError, OptionError
from geocausal.features.images import align_images, image_features
from geocausal.folds import Folds
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from
from geocausal.results.estimate import Estimate, make_provenance
from geocausal.vocabulary import (
    DEFAULTS,
    check_count,
    choice,
    default_learners,
    resolve_learners,
)

FOLD_TYPES = ("random", "unit", "time", "neighbours")  # the deprecated fold_type= values


@public_signature
def dml_panel(
    formula: str,
    data: pd.DataFrame,
    *,
    unit: str,
    time: str,
    approach: str = "cre",
    score: str = "partialling out",
    learners: Mapping[str, Any] | None = None,
    folds: int | Folds | np.ndarray | Sequence[np.ndarray] = DEFAULTS.folds,
    vcov: Any = None,
    seed: int = DEFAULTS.seed,
    images: Any = None,
    outcome_correction: Any = None,
    options: PanelOptions | Mapping[str, Any] | None = None,
    missing_images: str = "drop",
    progress: bool = True,
    **deprecated: Any,
) -> Estimate:
    """Double machine learning for a partially linear panel model.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + x2"``; the first ``options.treatments`` right-hand terms are treatments.
    data
        Long panel, one row per unit and period (unbalanced panels and gaps are fine).
    unit, time
        Unit and period columns (periods must sort in time order).
    approach
        ``"pooled"``, ``"cre"``, ``"cre_cp"``, ``"fd"``, ``"within"``, ``"late"`` or
        ``"dummies"`` (case-insensitive).
    score
        ``"partialling out"`` or ``"IV-type"``.
    learners
        ``{"marginal": E[y|X], "propensity": E[d|X], "structural": E[y - d theta|X]}``
        (DoubleML's ``ml_l``, ``ml_m``, ``ml_g`` are aliases); gradient boosting by default;
        ``structural`` defaults to a copy of ``marginal``. Unknown slots raise OptionError.
    folds
        An integer (unit folds, ``Folds.group(unit)``; random folds for
        ``approach="dummies"``; ``1`` for no cross-fitting), a :class:`~geocausal.folds.Folds`
        (``Folds(k)`` random rows, ``Folds.time(time, gap=1)`` period blocks with the
        neighbouring periods left out of training, ``Folds.group(col)``), or fold ids (one per
        data row, or a list of such arrays, one per repetition).
    vcov
        ``{"cluster": unit}`` (default), ``"twoway"`` / ``{"cluster": [unit, time]}``,
        ``"hetero"``, or any column of ``data`` as a cluster.
    seed
        Seed of the folds, the default learners and the bootstrap.
    images
        Image features added to the covariates (embeddings, ``ChipsResult``, cache, or a
        matrix with one row per data row), matched on the ``unit`` column. A chips cache gives
        per-band summary features computed by blocks of units, each unit read once.
    outcome_correction
        A fitted corrector applied to the outcome first.
    options
        :class:`~geocausal.designs.dml_panel.PanelOptions` (or a dict of its fields):
        ``treatments``, ``time_effects``, ``crossfit``, ``bias_check``, ``n_rep``,
        ``n_boot`` (clustered multiplier-bootstrap draws for the joint intervals, 0 to skip)
        and ``alpha`` (level of the joint and bias-aware intervals).
    missing_images
        Units whose image is unusable: ``"drop"`` (counted warning), ``"impute"``, ``"error"``.
    progress
        A progress bar over the repetitions (shown only in a terminal or notebook).
    **deprecated
        Deprecated spellings, each with a ``FutureWarning``: the fields of ``PanelOptions``
        given directly (``n_rep=2``, ``bias_check=False``, ``n_boot=0``, ``alpha=0.1``, ...), ``fold_type=`` (``"unit"``,
        ``"random"``, ``"time"``, ``"neighbours"``; use ``folds=Folds...``) and ``gap=``.

    Returns
    -------
    Estimate
        ``params`` by treatment, cluster-robust ``vcov``, ``influence``, ``tables["joint"]``
        (sup-t bands), ``diagnostics`` (rows dropped, per-repetition estimates, nuisance
        R-squared, bias and spread ratios, ``coverage_flag``, ``bias_aware_ci``).

    Examples
    --------
    >>> from sklearn.linear_model import LinearRegression
    >>> from geocausal.datasets.panel_dgp import make_fuhr_papies
    >>> df = make_fuhr_papies(40, 4, shape="linear", seed=2)
    >>> lr = {"ml_l": LinearRegression(), "ml_m": LinearRegression()}
    >>> e = dml_panel("y ~ d + x1", df, unit="unit", time="time", approach="fd",
    ...               learners=lr, folds=Folds.group("unit", k=4))
    >>> e.diagnostics["rows_dropped"]
    40
    """
    opts, folds = _deprecated(deprecated, options, folds, unit, time)
    approach = choice("approach", approach, APPROACHES, design="dml_panel")
    score = choice("score", score, SCORES, design="dml_panel")
    seed = check_count("seed", seed)
    from geocausal._progress import progress_visible

    progress_visible(progress)  # validates the option
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    # a chips cache stays on disk: its summary features are computed by blocks of units
    al = align_images(images, data, unit=unit, missing_images=missing_images, lazy=True)
    data, images = al.data, al.images
    folds = replace(folds, by=al.rows(folds.by)) if isinstance(folds, Folds) else al.rows(folds)
    parsed = parse_formula(formula, data)
    if parsed.fixed_effects:
        raise FormulaError(f"dml_panel handles unit effects through approach=, not '| "
                           f"{' + '.join(parsed.fixed_effects)}' in '{formula}'")
    d_names, controls = select_treatments(parsed.rhs, opts.treatments, parsed.formula)
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
    if isinstance(folds, Folds) and isinstance(folds.by, str | tuple):  # columns -> labels
        by = folds.by
        cols = [by] if isinstance(by, str) else list(by)
        missing = [c for c in cols if not isinstance(c, str) or c not in data.columns]
        if missing:
            raise DataError(f"folds: columns {missing} are not in the data")
        folds = replace(folds, by=u_codes if by == unit else t_codes if by == time
                        else data[by].to_numpy() if isinstance(by, str) else data[cols].to_numpy())
    vcov = {"cluster": unit} if vcov is None else vcov
    if isinstance(vcov, str) and vcov.lower() in ("twoway", "two-way"):
        vcov = {"cluster": [unit, time]}
    given = {k: v for k, v in resolve_learners("dml_panel", learners).items() if v is not None}
    lrn = {**default_learners("dml_panel", seed), **given}
    if "structural" not in given:
        lrn["structural"] = clone(lrn["marginal"])
    res = estimate_panel_dml(
        y, d, x, u_codes, t_codes, approach=approach, learners=lrn, folds=folds, vcov=vcov,
        cluster_data=cluster_data_from(data), score=score, options=opts, x_names=x_names,
        d_names=d_names, seed=seed, progress=progress,
        stacklevel=3)
    gone, reason = res.dropped
    diag = dict(res.diagnostics)
    diag["dropped"] = data.iloc[gone][[unit, time]].assign(reason=reason).reset_index(drop=True)
    prov = make_provenance(formula, seed, approach=approach, score=score, n_rep=diag["n_rep"],
                           learners={k: repr(v) for k, v in lrn.items()})
    return Estimate(params=pd.Series(res.fit.theta, index=d_names),
                    vcov=pd.DataFrame(res.variance.matrix), vcov_type=res.variance.label,
                    estimand="ATE (partially linear)", design=f"dml_panel[{approach}]",
                    nobs=int(res.transform.y.size), influence=res.fit.influence,
                    diagnostics=diag, provenance=prov, cluster_data=res.cluster_data,
                    dof=res.variance.dof, variance_rule=res.rule, tables=res.tables,
                    sensitivity_elements=res.sensitivity)


def _deprecated(kw: dict[str, Any], options: Any, folds: Any, unit: str, time: str
                ) -> tuple[PanelOptions, Any]:
    """Map the deprecated keywords onto ``options`` and ``folds`` (with a FutureWarning)."""
    fields = set(PanelOptions.__dataclass_fields__)
    bad = sorted(set(kw) - fields - {"fold_type", "gap"})
    if bad:
        raise OptionError(f"dml_panel got unknown keyword(s) {bad}; see help(gc.dml_panel)")
    moved = {k: v for k, v in kw.items() if k in fields}
    for key, v in moved.items():  # one warning per keyword, each naming its new spelling
        warnings.warn(f"dml_panel({key}=) is deprecated: pass options=gc.PanelOptions({key}="
                      f"{v!r}) (or a dict)", FutureWarning, stacklevel=3)
    opts = PanelOptions.coerce(options)
    opts = replace(opts, **moved) if moved else opts
    fold_type, gap = kw.get("fold_type"), kw.get("gap")
    if fold_type is None and gap is None:
        return opts, folds
    if fold_type is not None:
        fold_type = choice("fold_type", fold_type, FOLD_TYPES, design="dml_panel")
    if not isinstance(folds, int | np.integer) or (fold_type != "neighbours" and gap):
        raise OptionError("fold_type= and gap= (deprecated) take an integer folds= and gap only "
                          "with fold_type='neighbours'; use folds=Folds.time(time, k, gap=...)")
    k = int(folds)
    new = {"random": Folds(k=k), "unit": Folds.group(unit, k=k),
           "time": Folds.time(time, k=k),
           "neighbours": Folds.time(time, k=k, gap=1 if gap is None else gap),
           None: folds}[fold_type]
    warnings.warn(f"dml_panel(fold_type=, gap=) is deprecated: pass folds={new!r}",
                  FutureWarning, stacklevel=3)
    return opts, new


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

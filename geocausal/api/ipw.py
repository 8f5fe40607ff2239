"""``gc.ipw``, ``gc.aipw``, ``gc.balance`` and ``gc.placement``: average effects when the
confounders are seen in images.

Faces only: each resolves the formula, the roles and the options into arrays and calls
:func:`geocausal.designs.ipw.fit_weighting` or :func:`geocausal.designs.placement.fit_placement`.
Features of the nuisance models are the formula's controls, image features from ``images=``
(an embeddings frame, a feature matrix, chips or a chips cache, matched to the data's index by
unit id; see :mod:`geocausal.features.align`), or both. Learners are named slots
(:mod:`geocausal.vocabulary`): ``learners={"propensity": clf, "outcome": reg}`` (DoubleML's
``ml_m``/``ml_g`` are aliases); an image learner (``uses_images = True``) is fed the chips.
Fixed nuisances can be passed instead (``propensity=``, ``predictions={"mu0", "mu1"}``), e.g.
to compare with another package on the same predictions. Image and diagnostic options are one
object, ``options=gc.IPWOptions(...)`` (or a dict of its fields).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0); n = 1000
>>> df = pd.DataFrame({"x": rng.normal(size=n)})
>>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-df.x)))
>>> df["y"] = 1.0 * df.d + df.x + rng.normal(size=n)
>>> from sklearn.linear_model import LinearRegression, LogisticRegression
>>> est = aipw("y ~ d + x", df, learners={"propensity": LogisticRegression(),
...            "outcome": LinearRegression()})
>>> bool(abs(est.params["d"] - 1.0) < 0.3)
True
"""

from __future__ import annotations

import inspect
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._by import fit_by, group_columns, subset
from geocausal.api._correction import apply_correction
from geocausal.designs.common import check_treatment, check_values
from geocausal.designs.ipw import IPWOptions, crossfit_nuisances, fit_weighting, image_arrays
from geocausal.designs.overlap import check_propensity, image_components, ipw_weights, smd_table
from geocausal.designs.placement import fit_placement, placement_nulls
from geocausal.errors import DataError, OptionError
from geocausal.features.images import align_images
from geocausal.folds import Folds, resolve_folds
from geocausal.formula import ParsedFormula, parse_formula
from geocausal.inference.sensitivity import irm_elements
from geocausal.inference.variance import cluster_data_from, variance_from_rule
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance
from geocausal.vocabulary import DEFAULTS, ESTIMANDS, choice, default_learners, resolve_learners

__all__ = ["IPWOptions", "aipw", "balance", "ipw", "placement"]


# ----------------------------------------------------------------------------- resolution
def _public_signature(fn):
    """Hide ``**deprecated`` from ``inspect.signature`` (the command line and ``spec_curve``
    pass only the keywords a face lists); the old keywords still work, with a FutureWarning."""
    sig = inspect.signature(fn)
    fn.__signature__ = sig.replace(parameters=[
        p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD])
    return fn


def _legacy(fn: str, options: Any, folds: Any, vcov: Any, old: Mapping[str, Any]):
    """Deprecated keywords (FutureWarning naming the new spelling) merged into the options."""
    fields = {k: v for k, v in (IPWOptions.coerce(options).__dict__).items()}
    for key, value in old.items():
        if key in fields:
            new = f"options=gc.IPWOptions({key}=...) (or options={{'{key}': ...}})"
            fields[key] = value
        elif key == "fold_groups" and fn != "placement":
            new = "folds=gc.Folds.group(<column or labels>, k=...)"
            if value is not None:
                folds = Folds.group(value, k=folds if isinstance(folds, int) else DEFAULTS.folds)
        elif key == "ci" and fn == "placement":
            new = "vcov='delong' or vcov='bootstrap' (with n_boot=)"
            vcov = choice("ci", value, ("delong", "bootstrap"), design=fn) if vcov == "delong" else vcov
        else:
            raise OptionError(f"{fn}() has no option {key!r}; see help(gc.{fn})")
        warnings.warn(f"{fn}({key}=...) is deprecated; use {new}", FutureWarning, stacklevel=4)
    return IPWOptions(**fields), folds, vcov


def _prepare(formula: str, data: Any, images: Any, opts: IPWOptions, by: Any, rows: Mapping):
    """Align images to the data (dropping unusable units), parse the formula, refuse NaNs."""
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    al = align_images(images, data, missing_images=opts.missing_images, stacklevel=5)
    data = al.data
    rows = {k: (replace(v, by=al.rows(v.by)) if isinstance(v, Folds) and not _names(v.by)
                else al.rows(v)) for k, v in rows.items()}
    pf = parse_formula(formula, data)
    used = pf.columns() | (set(group_columns(data, by)) if by is not None else set())
    bad = {c: int(data[c].isna().sum()) for c in sorted(used & set(data.columns))
           if data[c].isna().any()}
    if bad:
        raise DataError(f"missing values in {bad} (column: count); drop or impute these rows "
                        "before estimating")
    return data, al.images, pf, rows


def _names(by: Any) -> bool:
    return isinstance(by, str) or (isinstance(by, tuple) and all(isinstance(b, str) for b in by))


def _vector(data: pd.DataFrame, value: Any, name: str) -> np.ndarray | None:
    if value is None:
        return None
    arr = data[value].to_numpy(dtype=float) if isinstance(value, str) else np.asarray(value, float)
    if arr.shape != (len(data),):
        raise DataError(f"{name} has shape {arr.shape}, expected ({len(data)},)")
    if np.isnan(arr).any():
        raise DataError(f"{name} has {int(np.isnan(arr).sum())} missing values")
    return check_values(arr, name, data.index, column=False)


def _fold_subset(folds: Any, mask: np.ndarray) -> Any:
    if isinstance(folds, Folds):
        return folds if _names(folds.by) or folds.by is None else replace(folds, by=subset(folds.by, mask))
    return subset(folds, mask)


def _min_arm(folds: Any) -> int:
    return folds.k if isinstance(folds, Folds) else int(folds) if np.isscalar(folds) else 2


def _by(fit_one, data, by, d, folds, rows):
    """``by=``: :func:`fit_by` with per-row arguments subset and arms checked against folds."""
    k = _min_arm(folds)

    def too_small(m):
        n1, n0 = int(d[m].sum()), int((1 - d[m]).sum())
        if min(n1, n0) < k:
            return (f"{n1} treated and {n0} control units (need at least {k} of each for "
                    f"{k}-fold cross-fitting)")
        return None

    return fit_by(lambda sub, m, name: fit_one(
        sub, {k2: (_fold_subset(v, m) if k2 == "folds" else subset(v, m))
              for k2, v in rows.items()}, name), data, by, too_small=too_small, stacklevel=5)


# ----------------------------------------------------------------------------- weighting
def _weighting(fn, method, formula, data, *, estimand, vcov, learners, folds, seed, images, by,
               trim, clip, propensity, predictions, outcome_correction, options, old):
    opts, folds, _ = _legacy(fn, options, folds, vcov, old)
    estimand = choice("estimand", estimand, ESTIMANDS[:2], design=fn)
    lrn = resolve_learners(fn, learners)
    if predictions is not None and (not isinstance(predictions, Mapping) or "mu0" not in predictions
                                    or set(predictions) - {"mu0", "mu1"}):
        raise OptionError("predictions must be a dict {'mu0': ..., 'mu1': ...} (mu1 optional "
                          "for the ATT)")
    rows = {"propensity": propensity, "folds": folds, "predictions": predictions}
    data, images, pf, rows = _prepare(formula, data, images, opts, by, rows)
    rows["images"] = images

    def one(data: pd.DataFrame, r: Mapping[str, Any], name: str = "") -> Estimate:
        d = check_treatment(pf.treatment_vector(data), pf.treatment)
        y = apply_correction(outcome_correction, pf.outcome_vector(data))
        tab = pf.control_matrix(data)
        F, chips, mask = image_arrays(r["images"], len(data), seed=seed,
                                      representation=opts.representation,
                                      options=opts.image_options)
        pred = None if r["predictions"] is None else {
            k: _vector(data, r["predictions"].get(k), f"predictions['{k}']") for k in ("mu0", "mu1")}
        fit = fit_weighting(
            method, estimand, y, d, tab.to_numpy(dtype=float),
            resolve_folds(r["folds"], data, seed=seed, stratify=d), tab_names=list(tab.columns),
            F_img=F, chips=chips, mask=mask, learners=lrn, seed=seed, trim=trim, clip=clip,
            propensity=_vector(data, r["propensity"], "propensity"), predictions=pred,
            options=opts)
        prov = make_provenance(pf.formula, seed, method=method, estimand=estimand, trim=trim,
                               clip=clip, group=name or None, folds=fit.n_folds,
                               learners=fit.learners)
        psi = fit.influence
        return Estimate.from_influence(
            pd.Series({pf.treatment: fit.theta}), psi[:, None], vcov=vcov,
            cluster_data=cluster_data_from(data, fit.keep), estimand=estimand,
            design={"aipw": "aipw", "hajek": "ipw-hajek", "ht": "ipw-ht"}[method],
            diagnostics=fit.diagnostics, provenance=prov,
            sensitivity_elements=_sensitivity(method, pf.treatment, fit, estimand, vcov))

    if by is None:
        return one(data, rows)
    d_all = check_treatment(pf.treatment_vector(data), pf.treatment)
    return _by(one, data, by, d_all, rows["folds"], rows)


def _sensitivity(method, term, fit, estimand, vcov):
    """OVB sensitivity elements of the AIPW score, or the reason there are none."""
    if method != "aipw":
        return ("sensitivity bounds (Chernozhukov et al. 2022) are derived for the doubly "
                "robust score, which needs the outcome regressions; IPW has none: use gc.aipw")
    nu = fit.nuisances
    if nu.mu1 is None:
        return ("the sensitivity bounds need the treated-arm outcome regression mu1 (sigma2 "
                "uses every unit's residual); pass predictions={'mu0': ..., 'mu1': ...}")
    return irm_elements(term, fit.y, fit.d, nu.e, nu.mu0, nu.mu1, estimand,
                        influence=fit.influence, vcov=vcov)


# ----------------------------------------------------------------------------- public API
@_public_signature
def aipw(formula: str, data: pd.DataFrame, *, estimand: str = "ATE", vcov: Any = "hetero",
         learners: Mapping[str, Any] | None = None, folds: int | Folds | np.ndarray = DEFAULTS.folds,
         seed: int = DEFAULTS.seed, images: Any = None, by: str | Sequence[str] | None = None,
         trim: float | str | None = None, clip: float | None = DEFAULTS.clip,
         propensity: Any = None, predictions: Mapping[str, Any] | None = None,
         outcome_correction: Any = None, options: IPWOptions | Mapping[str, Any] | None = None,
         **deprecated: Any) -> Estimate | EstimateSet:
    """Doubly robust (augmented IPW) ATE or ATT with cross-fitted nuisances.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + C(region)"``: outcome, binary treatment, tabular controls.
    data
        One row per unit.
    estimand
        ``"ATE"`` or ``"ATT"`` (any case; DoubleML's IRM scores ``"ATE"`` and ``"ATTE"``).
    vcov
        ``"hetero"`` (default; equals DoubleML's SE) or ``{"cluster": col}``; later also
        ``est.with_vcov({"cluster": col})``.
    learners
        ``{"propensity": classifier, "outcome": regressor}`` (aliases ``ml_m``, ``ml_g``);
        missing slots take :func:`geocausal.vocabulary.default_learners`; an unknown slot is
        an OptionError.
    folds
        Number of cross-fitting folds (stratified by treatment), a :class:`geocausal.folds.Folds`
        spec (``gc.Folds.group("village")``, spatial or time blocks) or an array of fold ids.
    seed
        Seed of the folds, the default learners and the image representations.
    images
        Image confounders: an embeddings frame (index = unit ids, as the data's index), a
        ``ChipsResult``, a chips cache path, the long Parquet of ``geocausal embed``, or raw
        chips / a feature matrix (matched by position: one row per data row, same order).
    by
        Column or columns defining subgroups: returns an EstimateSet (Holm/BH in ``tidy()``).
    trim
        ``None``, a threshold (keep ``trim <= e <= 1 - trim``) or ``"crump"``.
    clip
        Propensities are clipped to ``[clip, 1 - clip]`` (default 0.01, DoubleML's trimming
        threshold; None: no clipping); units are kept, unlike ``trim``; the number clipped is
        ``diagnostics["n_clipped"]``. Given propensities of exactly 0 or 1 are refused.
    propensity, predictions
        Fixed nuisances: propensity array or column; ``{"mu0": ..., "mu1": ...}``.
    outcome_correction
        Fitted corrector applied to the outcome (ML-predicted outcomes).
    options
        :class:`geocausal.designs.ipw.IPWOptions` (or a dict of its fields): the image
        ``representation`` (default ``"auto"``: the cross-fitted candidate stack, whose
        out-of-fold quality is in ``diagnostics["nuisance_quality"]``), its ``image_options``,
        ``missing_images``, ``n_pcs`` and ``stabilized``.
    **deprecated
        ``representation``, ``image_options``, ``missing_images``, ``n_pcs``, ``stabilized``
        (now fields of ``options``) and ``fold_groups`` (now ``folds=gc.Folds.group(...)``)
        still work with a FutureWarning.

    Returns
    -------
    Estimate or EstimateSet
    """
    return _weighting("aipw", "aipw", formula, data, estimand=estimand, vcov=vcov,
                      learners=learners, folds=folds, seed=seed, images=images, by=by, trim=trim,
                      clip=clip, propensity=propensity, predictions=predictions,
                      outcome_correction=outcome_correction, options=options, old=deprecated)


@_public_signature
def ipw(formula: str, data: pd.DataFrame, *, estimand: str = "ATE", normalized: bool = True,
        vcov: Any = "hetero", learners: Mapping[str, Any] | None = None,
        folds: int | Folds | np.ndarray = DEFAULTS.folds, seed: int = DEFAULTS.seed,
        images: Any = None, by: str | Sequence[str] | None = None,
        trim: float | str | None = None, clip: float | None = DEFAULTS.clip,
        propensity: Any = None, outcome_correction: Any = None,
        options: IPWOptions | Mapping[str, Any] | None = None,
        **deprecated: Any) -> Estimate | EstimateSet:
    """Inverse-probability weighting: Hajek (``normalized=True``) or Horvitz-Thompson.

    The Hajek estimate equals the weighted regression of ``y`` on ``d`` with stabilised
    weights; its ``"hetero"`` standard error is that regression's robust sandwich
    (propensities treated as known, as in Hernan and Robins ch. 12), conservative for the
    ATE. The one learner slot is ``propensity``; other parameters as in :func:`aipw`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1); n = 800
    >>> df = pd.DataFrame({"x": rng.normal(size=n)})
    >>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-df.x))); df["y"] = 2 * df.d + df.x
    >>> round(float(ipw("y ~ d + x", df).params["d"]), 0)
    2.0
    """
    return _weighting("ipw", "hajek" if normalized else "ht", formula, data, estimand=estimand,
                      vcov=vcov, learners=learners, folds=folds, seed=seed, images=images, by=by,
                      trim=trim, clip=clip, propensity=propensity, predictions=None,
                      outcome_correction=outcome_correction, options=options, old=deprecated)


@_public_signature
def balance(formula: str, data: pd.DataFrame, *, estimand: str = "ATE", propensity: Any = None,
            images: Any = None, learners: Mapping[str, Any] | None = None,
            folds: int | Folds | np.ndarray = DEFAULTS.folds, seed: int = DEFAULTS.seed,
            options: IPWOptions | Mapping[str, Any] | None = None,
            **deprecated: Any) -> pd.DataFrame:
    """Balance table: standardised mean differences before and after weighting.

    Rows are the formula's controls and the leading ``options.n_pcs`` principal components of
    the image features. The propensity is cross-fitted unless given. Parameters as in
    :func:`aipw`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(2); n = 600
    >>> df = pd.DataFrame({"x": rng.normal(size=n)})
    >>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-df.x))); df["y"] = df.x
    >>> t = balance("y ~ d + x", df)
    >>> bool(abs(t.smd_weighted[0]) < abs(t.smd_unweighted[0]))
    True
    """
    opts, folds, _ = _legacy("balance", options, folds, None, deprecated)
    estimand = choice("estimand", estimand, ESTIMANDS[:2], design="balance")
    lrn = {**default_learners("balance", seed), **resolve_learners("balance", learners)}
    rows = {"propensity": propensity, "folds": folds}
    data, images, pf, rows = _prepare(formula, data, images, opts, None, rows)
    d = check_treatment(pf.treatment_vector(data), pf.treatment)
    tab = pf.control_matrix(data)
    F, chips, _ = image_arrays(images, len(data), seed=seed)
    e = _vector(data, rows["propensity"], "propensity")
    if e is None:
        X = tab.to_numpy(float) if F is None else np.column_stack([tab.to_numpy(float), F])
        e = crossfit_nuisances(X, pf.outcome_vector(data), d,
                               resolve_folds(rows["folds"], data, seed=seed, stratify=d),
                               lrn["propensity"], images=chips, X_tab=tab.to_numpy(float)).e
    check_propensity(e, d)
    Xb, names = tab.to_numpy(float), list(tab.columns)
    if F is not None:
        pcs = image_components(F, opts.n_pcs)
        Xb, names = np.column_stack([Xb, pcs]), names + [f"image_pc{j + 1}" for j in range(pcs.shape[1])]
    return smd_table(Xb, d, ipw_weights(e, d, estimand, opts.stabilized), names)


@_public_signature
def placement(formula: str, data: pd.DataFrame, *, images: Any = None,
              by: str | Sequence[str] | None = None, learners: Mapping[str, Any] | None = None,
              folds: int | Folds | np.ndarray = DEFAULTS.folds, seed: int = DEFAULTS.seed,
              vcov: Any = "delong", n_boot: int = DEFAULTS.n_boot,
              options: IPWOptions | Mapping[str, Any] | None = None,
              **deprecated: Any) -> Estimate | EstimateSet:
    """How predictable is placement: cross-validated AUCs of image-only, tabular-only and
    combined propensity models, with confidence intervals and tests of AUC differences.

    Parameters
    ----------
    formula
        ``"d ~ x1 + x2"`` (the treatment on the left), or the effect formula
        ``"y ~ d + x1 + x2"`` (the first right-hand term is then the treatment).
    images
        Image features (required for the image-only and combined models), matched to the
        data as in :func:`aipw`; ``options`` (``missing_images``) likewise.
    by
        Subgroups (e.g. funder): one Estimate per group in an EstimateSet.
    learners
        ``{"propensity": classifier}`` used for every feature set, optionally
        ``{"image_propensity": classifier}`` (alias ``"image"``) for the image-only set.
    folds, seed
        Cross-validation folds (an integer: stratified; a ``Folds`` spec or fold ids) and seed.
    vcov
        ``"delong"`` (default: the paired DeLong covariance), ``"bootstrap"`` (paired,
        arm-stratified, ``n_boot`` draws) or any influence-function vcov (e.g.
        ``{"cluster": col}``) computed from the DeLong structural components.
    n_boot
        Bootstrap draws with ``vcov="bootstrap"``.
    **deprecated
        ``ci="bootstrap"`` (now ``vcov="bootstrap"``) and ``missing_images`` (now a field of
        ``options``) still work with a FutureWarning.

    Returns
    -------
    Estimate or EstimateSet
        Terms ``auc_image``, ``auc_tabular``, ``auc_both`` and the differences
        ``both_minus_tabular`` and ``image_minus_tabular``. The AUCs are tested against chance
        (``Estimate.null`` is 0.5), the differences against 0;
        ``diagnostics["p_vs_chance"]`` repeats the AUCs' p-values.
    """
    opts, folds, vcov = _legacy("placement", options, folds, vcov, deprecated)
    user = resolve_learners("placement", learners)
    lrn = {**default_learners("placement", seed), **user}
    boot = isinstance(vcov, str) and vcov.lower() == "bootstrap"
    data, images, pf, rows = _prepare(formula, data, images, opts, by, {"folds": folds})
    if pf.outcome in data.columns and set(np.unique(data[pf.outcome].dropna())) <= {0, 1}:
        treat, controls = pf.outcome, pf.rhs
    else:
        treat, controls = pf.treatment, pf.controls
    pf = ParsedFormula(formula, treat, treat, tuple(controls), ())

    def one(data: pd.DataFrame, r: Mapping[str, Any], name: str = "") -> Estimate:
        d = check_treatment(pf.treatment_vector(data), pf.treatment)
        F, chips, _ = image_arrays(r["images"], len(data), seed=seed)
        fit = fit_placement(d, pf.control_matrix(data).to_numpy(float),
                            resolve_folds(r["folds"], data, seed=seed, stratify=d),
                            lrn["propensity"], F_img=F, chips=chips,
                            image_learner=user.get("image_propensity"),
                            bootstrap=boot, n_boot=n_boot, seed=seed)
        cluster_data = cluster_data_from(data)
        var = variance_from_rule(fit.rule, fit.influence, vcov, cluster_data, stacklevel=6)
        names = list(fit.params.index)
        diags = {"n_treated": int(d.sum()), "n_control": int(len(d) - d.sum()),
                 "scores": fit.scores}
        prov = make_provenance(pf.formula, seed, folds=folds if np.isscalar(folds) else None,
                               vcov=var.label, group=name or None, learners=fit.learners)
        est = Estimate(params=fit.params, vcov=pd.DataFrame(var.matrix), vcov_type=var.label,
                       estimand="AUC", design="placement", nobs=len(d), influence=fit.influence,
                       diagnostics=diags, provenance=prov, cluster_data=cluster_data,
                       dof=var.dof, variance_rule=fit.rule, null=placement_nulls(names))
        p_chance = {t: float(est.pvalues[t]) for t in names if t.startswith("auc_")}
        return replace(est, diagnostics={**est.diagnostics, "p_vs_chance": p_chance})

    rows["images"] = images
    if by is None:
        return one(data, rows)
    return _by(one, data, by, check_treatment(pf.treatment_vector(data), pf.treatment),
               rows["folds"], rows)

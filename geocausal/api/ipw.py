"""``gc.ipw``, ``gc.aipw``, ``gc.balance`` and ``gc.placement``: average effects when the
confounders are seen in images.

Faces only: each resolves the formula, the roles and the options into arrays and calls
:func:`geocausal.designs.ipw.fit_weighting` or :func:`geocausal.designs.placement.fit_placement`.
Features of the nuisance models are the formula's controls, image features from ``images=``
(an embeddings frame, a feature matrix, chips or a chips cache, matched to the data's index by
unit id; see :mod:`geocausal.features.align`), or both. Learners are named slots
(:mod:`geocausal.vocabulary`): ``learners={"propensity": clf, "outcome": reg}`` (DoubleML's
``ml_m``/``ml_g`` are aliases); an image learner (``uses_images = True``) is fed the chips.
A chips cache is never loaded whole: it stays on disk as a row-aligned view, read by blocks
by the default image stack's candidates, the summary / engineered / learned features and
image learners alike.
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

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._correction import apply_correction
from geocausal.api._ipw_common import (
    fit_groups,
    legacy_options,
    prepare,
    public_signature,
    row_vector,
)
from geocausal.designs.common import check_treatment
from geocausal.designs.ipw import IPWOptions, crossfit_nuisances, fit_weighting, image_arrays
from geocausal.designs.overlap import check_propensity, image_components, ipw_weights, smd_table
from geocausal.errors import OptionError
from geocausal.folds import Folds, resolve_folds
from geocausal.inference.sensitivity import irm_elements
from geocausal.inference.variance import cluster_data_from
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance
from geocausal.vocabulary import (
    DEFAULTS,
    ESTIMANDS,
    choice,
    default_learners,
    resolve_learners,
)

__all__ = ["IPWOptions", "aipw", "balance", "ipw"]


# ----------------------------------------------------------------------------- weighting
def _weighting(fn, method, formula, data, *, estimand, vcov, learners, folds, seed, images, by,
               trim, clip, propensity, predictions, outcome_correction, options, old):
    opts, folds, _ = legacy_options(fn, options, folds, vcov, old)
    estimand = choice("estimand", estimand, ESTIMANDS[:2], design=fn)
    lrn = resolve_learners(fn, learners)
    if predictions is not None and (not isinstance(predictions, Mapping) or "mu0" not in predictions
                                    or set(predictions) - {"mu0", "mu1"}):
        raise OptionError("predictions must be a dict {'mu0': ..., 'mu1': ...} (mu1 optional "
                          "for the ATT)")
    rows = {"propensity": propensity, "folds": folds, "predictions": predictions}
    # a chips cache stays on disk (a row-aligned view): the default stack's candidates, the
    # summary / engineered / learned features and image learners read it by blocks
    data, images, pf, rows = prepare(formula, data, images, opts, by, rows, lazy=True)
    rows["images"] = images

    def one(data: pd.DataFrame, r: Mapping[str, Any], name: str = "") -> Estimate:
        d = check_treatment(pf.treatment_vector(data), pf.treatment)
        y = apply_correction(outcome_correction, pf.outcome_vector(data))
        tab = pf.control_matrix(data)
        F, chips, mask = image_arrays(r["images"], len(data), seed=seed,
                                      representation=opts.representation,
                                      options=opts.image_options)
        pred = None if r["predictions"] is None else {
            k: row_vector(data, r["predictions"].get(k), f"predictions['{k}']") for k in ("mu0", "mu1")}
        fit = fit_weighting(
            method, estimand, y, d, tab.to_numpy(dtype=float),
            resolve_folds(r["folds"], data, seed=seed, stratify=d), tab_names=list(tab.columns),
            F_img=F, chips=chips, mask=mask, learners=lrn, seed=seed, trim=trim, clip=clip,
            propensity=row_vector(data, r["propensity"], "propensity"), predictions=pred,
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
    return fit_groups(one, data, by, d_all, rows["folds"], rows)


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
@public_signature
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
        ``diagnostics["n_clipped"]``, and a ``DiagnosticWarning`` says it when it is not 0.
        Given propensities of exactly 0 or 1 are refused.
    propensity, predictions
        Fixed nuisances: propensity array or column; ``{"mu0": ..., "mu1": ...}``.
    outcome_correction
        Fitted corrector applied to the outcome (ML-predicted outcomes).
    options
        :class:`geocausal.designs.ipw.IPWOptions` (or a dict of its fields): the image
        ``representation`` (default ``"auto"``: the cross-fitted candidate stack, whose
        out-of-fold quality is in ``diagnostics["nuisance_quality"]``), its ``image_options``,
        ``missing_images``, ``n_pcs`` and ``stabilized``. The stack's standard error counts
        the outcome fits' own sampling error
        (:func:`~geocausal.nuisance.stacking.outcome_fit_influence`: its penalised propensity
        leaves the AIPW estimate moving with them at first order);
        ``diagnostics["se_outcome_fits_fixed"]`` is the SE that holds them fixed (DoubleML's,
        with the same nuisances), ``"outcome_fit_se"`` the term's own size.
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


@public_signature
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


@public_signature
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
    opts, folds, _ = legacy_options("balance", options, folds, None, deprecated)
    estimand = choice("estimand", estimand, ESTIMANDS[:2], design="balance")
    lrn = {**default_learners("balance", seed), **resolve_learners("balance", learners)}
    rows = {"propensity": propensity, "folds": folds}
    # a chips cache stays on disk: summary features by blocks, image learners stream it
    data, images, pf, rows = prepare(formula, data, images, opts, None, rows, lazy=True)
    d = check_treatment(pf.treatment_vector(data), pf.treatment)
    tab = pf.control_matrix(data)
    F, chips, _ = image_arrays(images, len(data), seed=seed)
    e = row_vector(data, rows["propensity"], "propensity")
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

"""``gc.placement``: how predictable treatment placement is from images and controls.

The face resolves the formula (``"d ~ x"`` or the effect formula ``"y ~ d + x"``), the images
and the options, and calls :func:`geocausal.designs.placement.fit_placement` (cross-validated
AUCs with DeLong or paired-bootstrap covariances).

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0); n = 400
>>> df = pd.DataFrame({"x": rng.normal(size=n)})
>>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-2 * df.x)))
>>> est = placement("d ~ x", df)
>>> list(est.params.index), bool(est.params["auc_tabular"] > 0.7)
(['auc_tabular'], True)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._ipw_common import fit_groups, legacy_options, prepare, public_signature
from geocausal.designs.common import check_treatment
from geocausal.designs.ipw import IPWOptions, image_arrays
from geocausal.designs.placement import fit_placement, placement_nulls
from geocausal.folds import Folds, resolve_folds
from geocausal.formula import ParsedFormula
from geocausal.inference.variance import cluster_data_from, variance_from_rule
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance
from geocausal.vocabulary import DEFAULTS, default_learners, resolve_learners

__all__ = ["placement"]


@public_signature
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
    opts, folds, vcov = legacy_options("placement", options, folds, vcov, deprecated)
    user = resolve_learners("placement", learners)
    lrn = {**default_learners("placement", seed), **user}
    boot = isinstance(vcov, str) and vcov.lower() == "bootstrap"
    # a chips cache stays on disk (summary features by blocks, image learners stream it)
    data, images, pf, rows = prepare(formula, data, images, opts, by, {"folds": folds},
                                     lazy=True)
    if pf.outcome in data.columns and set(np.unique(data[pf.outcome].dropna())) <= {0, 1}:
        treat, controls = pf.outcome, pf.rhs
    else:
        treat, controls = pf.treatment, pf.controls
    pf = ParsedFormula(formula, treat, treat, tuple(controls), ())

    def one(data: pd.DataFrame, r: Mapping[str, Any], name: str = "") -> Estimate:
        d = check_treatment(pf.treatment_vector(data), pf.treatment_term)
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
    return fit_groups(one, data, by, check_treatment(pf.treatment_vector(data), pf.treatment_term),
               rows["folds"], rows)

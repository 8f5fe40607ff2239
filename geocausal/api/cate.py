"""``gc.cate``: heterogeneous effects in experiments from tabular data and image sequences.

A face: formula, images, folds and options become arrays for
:func:`geocausal.designs.cate_eval.estimate_cate` (features: :mod:`geocausal.designs.cate_model`).
The :class:`~geocausal.results.estimate.Estimate` holds the ATE (AIPW, influence-function SE) and

* ``est.fitted``: the :class:`~geocausal.designs.cate_model.CateModel` (``.effect(new_rows,
  images=new_chips)``, ``.predict(features)``, ``.save(path)``; ``est.save`` keeps no models);
* ``est.tables``: ``"blp"``, ``"gates"``, ``"clan"``, ``"rate"``, ``"toc"`` and
  ``"calibration"`` (key column, then ``estimate``, ``std_error``, ``ci_low``, ``ci_high``);
* ``est.diagnostics``: ``"cate"`` (out-of-fold CATE per row), ``"fold_ids"``, ``"n_clipped"``
  (estimated propensities clipped to ``[clip, 1 - clip]``), ``"features"``
  (the feature spec), ``"evaluation"`` (the :class:`~geocausal.designs.cate_eval.CateEvaluation`
  behind the tables, for :func:`geocausal.results.plot_cate.evaluation_plot`) and scalar
  summaries (``blp_beta2``, ``autoc``, ...) printed by ``summary()``.

Examples
--------
>>> import numpy as np, pandas as pd
>>> rng = np.random.default_rng(0); n = 600
>>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
>>> df["y"] = df.x + df.d * (1 + df.x) + rng.normal(size=n)
>>> est = cate("y ~ d + x", df, propensity=0.5, options={"n_splits": 5, "n_boot": 49})
>>> bool(abs(est.params["d"] - 1) < 0.25), est.diagnostics["cate"].shape, sorted(est.tables)[:2]
(True, (600,), ['blp', 'calibration'])
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._correction import apply_correction
from geocausal.api._faces import public_signature
from geocausal.designs.cate import LEARNERS, CateOptions, legacy_keywords
from geocausal.designs.cate_eval import estimate_cate, representation_row
from geocausal.designs.cate_model import (
    CateModel,
    align_folds,
    clan_frame,
    column_values,
    control_spec,
    design_matrix,
    with_image_learners,
)
from geocausal.designs.common import check_treatment
from geocausal.errors import DataError, DesignError
from geocausal.features.images import align_images
from geocausal.folds import Folds, fold_blocks, resolve_folds
from geocausal.formula import parse_formula
from geocausal.inference.variance import cluster_data_from
from geocausal.results.estimate import Estimate, make_provenance
from geocausal.vocabulary import DEFAULTS, check_probability, choice, resolve_learners


@public_signature
def cate(
    formula: str,
    data: pd.DataFrame,
    *,
    images: Any = None,
    learner: str = "dr",
    learners: Mapping[str, Any] | None = None,
    propensity: float | str | np.ndarray | None = None,
    folds: int | Folds | np.ndarray = DEFAULTS.folds,
    vcov: Any = "hetero",
    clip: float = DEFAULTS.clip,
    options: CateOptions | Mapping[str, Any] | None = None,
    truth: str | np.ndarray | None = None,
    outcome_correction: Any = None,
    seed: int = DEFAULTS.seed,
    missing_images: str = "drop",
    progress: bool = True,
    **deprecated: Any,
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
        index by unit id (a cache is read by blocks: features and ``ImageLearner``s stream it);
        raw arrays by position. A mapping ``{name: chips}`` of the same sites at several chip
        sizes (multi-scale) concatenates the features of every scale.
    learner
        ``"dr"``, ``"r"``, ``"x"``, ``"t"``, ``"s"`` or ``"forest"`` (honest random forest on
        DR scores); case-insensitive.
    learners
        ``{slot: learner}`` with slots ``outcome``, ``propensity``, ``final``, ``marginal``
        (:data:`geocausal.vocabulary.DESIGN_SLOTS`); econml's names (``model_regression``,
        ``model_propensity``, ``model_final``, ``model_y``, ``model_t``) and DoubleML's are
        aliases; an unknown slot raises :class:`~geocausal.errors.OptionError`. The default
        propensity learner is :func:`geocausal.vocabulary.default_propensity`.
    propensity
        Known treatment probability (number, column name or array); None estimates it.
    folds
        Cross-fitting folds: an integer (random folds stratified by treatment), a
        :class:`~geocausal.folds.Folds` (``Folds.group("village")``,
        ``Folds.spatial(("lon", "lat"), block_size=...)``, ``Folds.time(...)``) or fold ids.
        The units a Folds keeps together are also the clusters of the generic ML splits and
        of the RATE half-sample bootstrap.
    vcov
        Variance of the ATE (the covariance registry): ``"hetero"``, ``"iid"`` or
        ``{"cluster": column}``.
    clip
        Estimated propensities are clipped to ``[clip, 1 - clip]`` (shared default 0.01); how
        many were is ``diagnostics["n_clipped"]``, and a ``DiagnosticWarning`` says so once.
    options
        A :class:`~geocausal.designs.cate.CateOptions` or a dict of its fields:
        ``outcome_mode``, ``n_splits``, ``n_groups``, ``n_boot`` (999), ``alpha``, ``clan``,
        ``representation`` (how chips become features: ``"sequence"``, all periods plus
        change, the default; ``"single"``, the last period; ``"first"``; ``"summary"``) and
        ``evaluate`` (run BLP/GATES/CLAN, RATE and calibration; default True).
    truth
        Column or array with the true CATE (simulations; the role ``truth`` of the registry):
        adds oracle BLP values and the correlation of the predictions with the truth.
    outcome_correction
        A fitted corrector applied to the outcome first.
    seed
        Seed of folds, splits, bootstrap and default forest.
    missing_images
        Units whose image is unusable (no valid pixel in some period, NaN features):
        ``"drop"`` (default, counted ``MissingImagesWarning``), ``"impute"`` or ``"error"``.
    progress
        Progress bars over the splits and half-samples (shown only in a terminal or notebook).
    **deprecated
        The old keywords ``outcome_mode``, ``n_splits``, ``n_groups``, ``n_boot``, ``alpha``,
        ``clan``, ``representation``, ``evaluate`` (now in ``options``) and ``groups``,
        ``coords``, ``block_size``
        (now ``folds=Folds.group(...)`` / ``Folds.spatial(...)``) still work, with a
        ``FutureWarning`` naming the new spelling.

    Returns
    -------
    Estimate
        The ATE; ``fitted`` the CATE model, ``tables`` the evaluation, ``diagnostics`` the
        CATE predictions and summaries.
    """
    from geocausal._progress import progress_visible

    progress_visible(progress)  # validates the option
    folds, options = legacy_keywords(dict(deprecated), folds, options)
    opt = CateOptions.make(options)
    learner = choice("learner", learner, LEARNERS, design="cate")
    representation, evaluate = opt.representation, opt.evaluate
    clip = check_probability("clip", clip, high=0.5)
    lrn: Mapping[str, Any] = resolve_learners("cate", learners)
    al = align_images(images, data, missing_images=missing_images, lazy=True)
    data, images = al.data, al.images
    propensity, truth = al.rows(propensity), al.rows(truth)
    folds = align_folds(folds, al)
    parsed = parse_formula(formula, data)
    y = apply_correction(outcome_correction, parsed.outcome_vector(data))
    d = check_treatment(parsed.treatment_vector(data), parsed.treatment_term)
    X, names = design_matrix(parsed, data, images, representation, seed)
    n_summary = len(names) - len(parsed.control_matrix(data).columns)
    X, lrn, raw = with_image_learners(learner, lrn, X, images, n_summary, seed)
    e = column_values(data, propensity, "propensity")
    prop = None if e is None else (float(e) if e.ndim == 0 else e.astype(float))
    fold_ids = resolve_folds(folds, data, seed=seed, stratify=d)
    feats = clan_frame(data, opt.clan, parsed.controls) if evaluate else None
    true_tau = column_values(data, truth, "truth")
    run = estimate_cate(learner, X, y, d, fold_ids, learners=lrn, propensity=prop, clip=clip,
                        options=opt, evaluate=evaluate, clusters=fold_blocks(folds, data),
                        features=feats, truth=None if true_tau is None else
                        true_tau.astype(float), seed=seed, progress=progress)
    multiscale = isinstance(images, Mapping)
    model = CateModel(fit=run.fit, formula=formula, controls=tuple(parsed.controls),
                      names=tuple(names), representation=representation,
                      images=images is not None, raw_chips=raw, multiscale=multiscale,
                      n_features=X.shape[1], control_spec=control_spec(parsed, data), seed=seed)
    diag = {**run.diagnostics, "features": {
        "controls": parsed.controls, "names": names, "representation": representation,
        "images": images is not None, "raw_chips": raw, "multiscale": multiscale}}
    return Estimate.from_influence(
        params=pd.Series({parsed.treatment: run.fit.ate}), influence=run.fit.influence,
        vcov=vcov, cluster_data=cluster_data_from(data), estimand="ATE",
        design=f"cate-{learner}", diagnostics=diag, tables=run.tables, fitted=model,
        provenance=make_provenance(formula, seed, learner=learner, folds=getattr(
            folds, "kind", folds if isinstance(folds, int) else "ids"),
                                   representation=representation, n_splits=opt.n_splits))


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
        "images": chips, "representation": "single"}}``; ``representation`` and ``evaluate``
        here go into that fit's ``options``.
    **common
        Keywords of ``gc.cate`` shared by every fit (``learner``, ``propensity``, ``seed``,
        ``options``, ...).

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
    ...                             propensity=.5, options={"n_splits": 3, "n_boot": 29})
    >>> list(t.index), bool(t.loc["x", "autoc"] > t.loc["z", "autoc"])
    (['x', 'z'], True)
    """
    rows = {}
    for name, spec in specs.items():
        kw = {**common, **spec}
        f = kw.pop("formula", formula)
        moved = {k: kw.pop(k) for k in ("representation", "evaluate") if k in kw}
        if moved:
            kw["options"] = {**CateOptions.make(kw.get("options")).__dict__, **moved}
        rows[name] = representation_row(cate(f, data, **kw))
    return pd.DataFrame(rows).T


# ----------------------------------------------------------------------------- new units
def cate_model(est: Estimate | CateModel) -> CateModel:
    """The fitted :class:`~geocausal.designs.cate_model.CateModel` of a ``gc.cate`` result.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 200
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d + rng.normal(size=n)
    >>> cate_model(cate("y ~ d + x", df, propensity=.5, options={"evaluate": False})).kind
    'dr'
    """
    if isinstance(est, CateModel):
        return est
    if not isinstance(est, Estimate):
        raise DataError(f"expected a gc.cate result, got {type(est).__name__}")
    model = est.fitted
    if isinstance(model, CateModel):
        return model
    if model is not None or str(est.design).startswith("cate-"):
        raise DesignError("this gc.cate result holds no fitted model (a result loaded from a "
                          "file keeps none); save the model with est.fitted.save(path) and use "
                          "CateModel.load(path)")
    raise DataError("this estimate has no fitted CATE model; use a gc.cate result")


def effect(est: Estimate | CateModel, data: pd.DataFrame | None = None, *, images: Any = None,
           missing_images: str = "drop") -> pd.Series:
    """Predicted CATE of new units from a ``gc.cate`` result: :meth:`CateModel.effect`.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> est = cate("y ~ d + x", df, propensity=.5, options={"evaluate": False})
    >>> effect(est, pd.DataFrame({"x": [-1.0, 2.0]})).round(0).abs().tolist()
    [0.0, 3.0]
    """
    return cate_model(est).effect(data, images=images, missing_images=missing_images)


def predict_cate(est: Estimate | CateModel, X: np.ndarray) -> np.ndarray:
    """CATE predictions at new feature rows from a ``gc.cate`` result.

    Examples
    --------
    >>> rng = np.random.default_rng(0); n = 300
    >>> df = pd.DataFrame({"x": rng.normal(size=n), "d": rng.integers(0, 2, n)})
    >>> df["y"] = df.d * (1 + df.x) + rng.normal(size=n)
    >>> est = cate("y ~ d + x", df, propensity=.5, options={"evaluate": False})
    >>> predict_cate(est, np.array([[0.0], [1.0]])).round(0).tolist()
    [1.0, 2.0]
    """
    return cate_model(est).predict(np.asarray(X, dtype=float))


__all__ = ["CateModel", "CateOptions", "cate", "cate_model", "compare_representations", "effect",
           "predict_cate"]

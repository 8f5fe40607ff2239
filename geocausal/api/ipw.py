"""``gc.ipw``, ``gc.aipw``, ``gc.balance`` and ``gc.placement``: average effects when the
confounders are seen in images.

Features of the nuisance models are the formula's controls (expanded by formulaic), image
features from ``images=`` (an embeddings frame, a feature matrix, chips or a chips cache,
matched to the data's index by unit id; see :mod:`geocausal.features.align`), or both. Learners are named slots:
``learners={"propensity": clf, "outcome": reg}``; defaults are a standardised logistic
regression for the propensity and scikit-learn's ``HistGradientBoostingRegressor`` for the
outcome. A learner with ``uses_images = True`` (an image learner) is fed the chips directly.
Fixed nuisances can be passed instead (``propensity=``, ``predictions={"mu0", "mu1"}``), e.g.
to compare with another package on the same predictions.

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

import warnings
from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np
import pandas as pd

from geocausal.api._correction import apply_correction
from geocausal.api._images import REPRESENTATIONS, align_images, image_features
from geocausal.designs import overlap as ov
from geocausal.designs.common import check_treatment, check_values
from geocausal.designs.ipw import (
    Nuisances,
    crossfit_nuisances,
    estimate,
    prepare_learner,
    uses_images,
)
from geocausal.designs.placement import bootstrap_auc, contrast_matrix, delong, placement_nulls
from geocausal.errors import DataError, DesignError, DiagnosticWarning
from geocausal.formula import ParsedFormula, parse_formula
from geocausal.inference.sensitivity import irm_elements
from geocausal.inference.variance import VarianceRule, cluster_data_from, variance_from_rule
from geocausal.nuisance.crossfit import crossfit_predict, make_folds
from geocausal.results.estimate import Estimate, EstimateSet, make_provenance


# ----------------------------------------------------------------------------- helpers
def default_learners(seed: int = 0) -> dict[str, Any]:
    """Default nuisance learners: standardised logistic regression and gradient boosting.

    Examples
    --------
    >>> sorted(default_learners())
    ['outcome', 'propensity']
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    return {
        "propensity": make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000)),
        "outcome": HistGradientBoostingRegressor(max_iter=100, random_state=seed),
    }


def _check_nan(data: pd.DataFrame, cols: set[str]) -> None:
    bad = {c: int(data[c].isna().sum()) for c in sorted(cols) if data[c].isna().any()}
    if bad:
        raise DataError(f"missing values in {bad} (column: count); drop or impute these rows "
                        "before estimating")


def _vector(data: pd.DataFrame, value: Any, name: str, n: int) -> np.ndarray:
    arr = data[value].to_numpy(dtype=float) if isinstance(value, str) else np.asarray(value, float)
    if arr.shape != (n,):
        raise DataError(f"{name} has shape {arr.shape}, expected ({n},)")
    if np.isnan(arr).any():
        raise DataError(f"{name} has {int(np.isnan(arr).sum())} missing values")
    return check_values(arr, name, data.index, column=False)


def _features(pf: ParsedFormula, data: pd.DataFrame, images: Any, seed: int,
              representation: str = "summary", options: Mapping[str, Any] | None = None
              ) -> tuple[np.ndarray, list[str], np.ndarray | None, np.ndarray | None]:
    """Tabular controls, their names, image features and raw chips (if chips were given).

    ``representation="auto"`` gives the summary features here (for the balance table); the
    nuisance stack builds its own candidates (:func:`_stacked`).
    """
    tab = pf.control_matrix(data)
    n = len(data)
    chips, mask = _chips_of(images)
    rep = "summary" if representation == "auto" else representation
    feats = None
    if images is not None:
        if rep == "learned" and chips is not None:
            from geocausal.encoders.multiscale import multiscale_features

            feats = _with_options(multiscale_features, chips, mask, seed, **dict(options or {}))
        else:
            opts = {} if representation == "auto" else dict(options or {})
            feats = _with_options(image_features, images, n, representation=rep, seed=seed,
                                  **opts)
    return tab.to_numpy(dtype=float), list(tab.columns), feats, chips


def _with_options(f: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``f``; an unknown ``image_options`` keyword is a DataError naming it."""
    try:
        return f(*args, **kwargs)
    except TypeError as exc:
        if "unexpected keyword" not in str(exc):
            raise
        raise DataError(f"image_options: {exc}; see the representation's function for its "
                        "options") from None


def _chips_of(images: Any) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Raw chips ``(N, [T,] H, W, C)`` and their mask when ``images`` are chips."""
    if images is None or isinstance(images, pd.DataFrame | str):
        return None, None
    mask = None
    if isinstance(images, tuple):
        images, mask = images
    elif hasattr(images, "chips") and hasattr(images, "mask"):
        images, mask = images.chips, images.mask
    arr = np.asarray(images)
    if arr.ndim < 4:
        return None, None
    return arr, None if mask is None else np.asarray(mask, bool)


#: keys of ``image_options`` with ``representation="auto"``
AUTO_OPTIONS = ("roles", "candidates", "combine", "min_learned_images", "engineered", "learned")


def _stacked(images: Any, X_tab: np.ndarray, y: np.ndarray, d: np.ndarray,
             fold_ids: np.ndarray, lrn: Mapping[str, Any], need_outcome: bool, need_mu1: bool,
             seed: int, options: Mapping[str, Any] | None):
    """The default image path: cross-fitted stack over tabular, summary, engineered and
    learned candidates (:mod:`geocausal.nuisance.stacking`)."""
    from geocausal.nuisance.candidates import CANDIDATES, image_candidates
    from geocausal.nuisance.stacking import stack_nuisances

    opts = dict(options or {})
    bad = sorted(set(opts) - set(AUTO_OPTIONS))
    if bad:
        raise DataError(f"image_options {bad} are not options of representation='auto' "
                        f"({list(AUTO_OPTIONS)})")
    chips, mask = _chips_of(images)
    cands, skipped = image_candidates(
        chips, mask, X_tab, seed=seed, roles=opts.get("roles"),
        candidates=tuple(opts.get("candidates", CANDIDATES)),
        min_learned_images=int(opts.get("min_learned_images", 1000)),
        engineered_options=opts.get("engineered"), learned_options=opts.get("learned"))
    res = stack_nuisances(cands, y, d, fold_ids, lrn["propensity"],
                          lrn["outcome"] if need_outcome else None, need_mu1=need_mu1,
                          combine=opts.get("combine", "stack"), stacklevel=5)
    if "learned" in res.candidates:
        from geocausal.nuisance.candidates import learned_salience

        skipped = {**skipped, "_salience": learned_salience(cands["learned"], lrn["propensity"],
                                                            d, res.e, chips, mask)}
    return res, skipped


def _quality_lines(q: pd.DataFrame, combined: str) -> dict[str, Any]:
    """Scalar out-of-fold quality of the nuisances used (shown by ``summary()``)."""
    out: dict[str, Any] = {}
    row = q[(q.candidate == combined) & (q.nuisance == "propensity")]
    if len(row):
        r = row.iloc[0]
        out.update(propensity_oof_logloss=float(r.loss), propensity_oof_auc=float(r.auc),
                   propensity_calibration_slope=float(r.calibration_slope))
    for k in ("outcome0", "outcome1"):
        row = q[(q.candidate == combined) & (q.nuisance == k)]
        if len(row):
            out[f"{k}_oof_r2"] = float(row.iloc[0].r2)
    return out


def _folds(folds: int | np.ndarray, n: int, seed: int, d: np.ndarray,
           groups: np.ndarray | None) -> np.ndarray:
    if not np.isscalar(folds):
        f = np.asarray(folds).astype(int)
        if f.shape != (n,):
            raise DataError(f"fold ids have shape {f.shape}, expected ({n},)")
        return f
    if groups is not None:
        return make_folds(n, int(folds), seed, groups=groups)
    return make_folds(n, int(folds), seed, stratify=d)


def _group_labels(data: pd.DataFrame, by: str | Sequence[str]) -> tuple[list[str], pd.Series]:
    if isinstance(by, str):  # "funder,sector" from the command line
        cols = [by] if by in data.columns else [c.strip() for c in by.split(",")]
    else:
        cols = list(by)
    missing = [c for c in cols if c not in data.columns]
    if missing:
        raise DataError(f"by= columns {missing} are not in the data")
    _check_nan(data, set(cols))
    lab = data[cols].astype(str).agg(" x ".join, axis=1)
    return cols, lab


def _salience(learner, Xfit, chips, e, d) -> Any:
    """Causal salience maps when the propensity learner is a JAX image learner.

    The propensity model is refit on all units and the gradient of its logit with respect to
    the pixels (L2 over bands) is computed for the 3 most likely treated units and the 3 least
    likely controls.
    """
    if chips is None or not uses_images(learner):
        return None
    import sys

    if "jax" not in sys.modules:  # gradient salience needs a JAX image model
        return "unavailable: the image propensity learner is not a JAX model"
    from sklearn.base import clone

    order = np.argsort(e)
    idx = np.concatenate([order[d[order] == 1][-3:], order[d[order] == 0][:3]])
    try:
        from geocausal.encoders.salience import gradient_salience

        model = clone(learner).fit(Xfit, d.astype(int))
        inner = getattr(model, "model_", None)
        if inner is None:
            return "unavailable: the fitted image learner exposes no JAX model (model_)"
        tab = None
        if getattr(model, "n_tabular_", 0):
            tab = model._tab(model._split_X(Xfit[idx])[1])
        maps = gradient_salience(inner, chips[idx].astype(np.float32), tab=tab)
        return {"units": idx.tolist(), "maps": maps, "images": chips[idx],
                "propensity": e[idx].tolist(), "treated": d[idx].astype(int).tolist()}
    except Exception as exc:  # salience is a diagnostic: never fail the estimate
        return f"unavailable: {type(exc).__name__}: {exc}"


# ----------------------------------------------------------------------------- core
def _fit_one(
    pf: ParsedFormula,
    data: pd.DataFrame,
    *,
    method: str,
    estimand: str,
    images: Any,
    learners: Mapping[str, Any] | None,
    folds: int | np.ndarray,
    seed: int,
    vcov: Any,
    trim: float | str | None,
    propensity: Any,
    predictions: Mapping[str, Any] | None,
    fold_groups: Any,
    outcome_correction: Any,
    n_pcs: int,
    stabilized: bool,
    clip: float | None = None,
    name: str = "",
    representation: str = "auto",
    image_options: Mapping[str, Any] | None = None,
) -> Estimate:
    n = len(data)
    d = check_treatment(pf.treatment_vector(data), pf.treatment)
    y = apply_correction(outcome_correction, pf.outcome_vector(data))
    X_tab, tab_names, F_img, chips = _features(pf, data, images, seed, representation,
                                               image_options)
    X = X_tab if F_img is None else np.column_stack([X_tab, F_img])
    lrn = {**default_learners(seed), **dict(learners or {})}
    groups = None
    if fold_groups is not None:
        groups = data[fold_groups].to_numpy() if isinstance(fold_groups, str) else np.asarray(fold_groups)
    fold_ids = _folds(folds, n, seed, d, groups)

    need_outcome = method == "aipw" and predictions is None
    stack = skipped = None
    if (representation == "auto" and chips is not None and propensity is None
            and not any(uses_images(v) for v in lrn.values())):
        from geocausal.nuisance.candidates import stack_learners

        stack, skipped = _stacked(images, X_tab, y, d, fold_ids,
                                  {**stack_learners(seed), **dict(learners or {})},
                                  need_outcome, method == "aipw", seed, image_options)
        nu = Nuisances(stack.e, stack.mu0, stack.mu1)
    elif propensity is not None:
        e = _vector(data, propensity, "propensity", n)
        nu = Nuisances(e)
        if need_outcome:
            o = crossfit_nuisances(X, y, d, fold_ids, lrn["propensity"], lrn["outcome"],
                                   images=chips, X_tab=X_tab, need_mu1=True)
            nu = Nuisances(e, o.mu0, o.mu1)
    else:
        nu = crossfit_nuisances(X, y, d, fold_ids, lrn["propensity"],
                                lrn["outcome"] if need_outcome else None, images=chips,
                                X_tab=X_tab, need_mu1=method == "aipw")
    if predictions is not None:
        mu0 = _vector(data, predictions["mu0"], "predictions['mu0']", n)
        mu1 = (_vector(data, predictions["mu1"], "predictions['mu1']", n)
               if "mu1" in predictions else None)
        nu = Nuisances(nu.e, mu0, mu1)

    n_clipped = 0
    if clip is not None:
        if not 0.0 < float(clip) < 0.5:
            raise DataError(f"clip must be in (0, 0.5), got {clip}")
        n_clipped = int(((nu.e < clip) | (nu.e > 1 - clip)).sum())
        nu = Nuisances(np.clip(nu.e, clip, 1 - clip), nu.mu0, nu.mu1)
    tr = ov.trim(nu.e, d, trim)
    if trim is None:
        ov.check_propensity(nu.e, d)
    keep = tr.keep
    if tr.n_trimmed:
        warnings.warn(f"trimming ({tr.rule}, threshold {tr.threshold:.4f}) dropped "
                      f"{tr.n_trimmed} units ({tr.n_trimmed_treated} treated, "
                      f"{tr.n_trimmed_control} control); the estimand is now the effect on "
                      "the overlap population", DiagnosticWarning, stacklevel=3)
    yk, dk, nk = y[keep], d[keep], nu.subset(keep)
    n1, n0 = int(dk.sum()), int((1 - dk).sum())
    if n1 == 0 or n0 == 0:
        raise DesignError(f"after trimming {n1} treated and {n0} control units remain; "
                          "lower the trim threshold")
    theta, psi = estimate(yk, dk, nk, method, estimand)

    w = ov.ipw_weights(nk.e, dk, estimand, stabilized=stabilized)
    bal_X, bal_names = X_tab[keep], list(tab_names)
    if F_img is not None and F_img.shape[1] > 0:
        pcs = ov.image_components(F_img, n_pcs)[keep]
        bal_X = np.column_stack([bal_X, pcs])
        bal_names += [f"image_pc{j + 1}" for j in range(pcs.shape[1])]
    balance = ov.smd_table(bal_X, dk, w, bal_names) if bal_X.shape[1] else pd.DataFrame()
    ess = {arm: float(w[m].sum() ** 2 / (w[m] ** 2).sum())
           for arm, m in (("treated", dk == 1), ("control", dk == 0))}
    q = [0.0, 0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99, 1.0]
    overlap = pd.DataFrame({"quantile": q,
                            "treated": np.quantile(nk.e[dk == 1], q),
                            "control": np.quantile(nk.e[dk == 0], q)})
    diags: dict[str, Any] = {
        "n_treated": n1, "n_control": n0, "n_trimmed": tr.n_trimmed, "n_clipped": n_clipped,
        "trimming": tr.as_dict(),
        "propensity_min": float(nk.e.min()), "propensity_max": float(nk.e.max()),
        "max_weight": float(w.max()), "ess_treated": ess["treated"], "ess_control": ess["control"],
        "stabilized_weights": stabilized,
        "overlap": overlap, "balance": balance,
        "max_abs_smd_unweighted": float(balance["smd_unweighted"].abs().max()) if len(balance) else None,
        "max_abs_smd_weighted": float(balance["smd_weighted"].abs().max()) if len(balance) else None,
        "propensity": pd.DataFrame({"propensity": nk.e, "treated": dk.astype(int)}),
        "features": ("tabular" if F_img is None else "tabular+image" if X_tab.shape[1] else "image"),
    }
    if images is not None:
        diags["representation"] = representation if chips is not None else "features"
    if stack is not None:
        diags["nuisance_quality"] = stack.quality
        sal_learned = skipped.pop("_salience", None)
        if sal_learned is not None:
            diags["salience"] = sal_learned
        diags["nuisance_selection"] = {"combine": stack.combine, "winner": dict(stack.winner),
                                       "weights": stack.weights, "dropped": dict(stack.dropped),
                                       "skipped": dict(skipped)}
        diags["propensity_winner"] = stack.winner["e"]
        if "mu0" in stack.winner:
            diags["outcome_winner"] = stack.winner["mu0"]
        diags.update(_quality_lines(stack.quality, stack.combine))
    elif propensity is None:
        from geocausal.nuisance.stacking import nuisance_quality

        q = nuisance_quality({"model": {"e": nu.e, "mu0": nu.mu0 if need_outcome else None,
                                        "mu1": nu.mu1 if need_outcome else None}}, y, d)
        diags["nuisance_quality"] = q
        diags.update(_quality_lines(q, "model"))
    if method == "aipw":
        diags["outcome_rmse"] = float(np.sqrt(np.mean(
            (yk - np.where(dk == 1, nk.mu1 if nk.mu1 is not None else nk.mu0, nk.mu0)) ** 2)))
    sal = None
    if propensity is None and chips is not None and uses_images(lrn["propensity"]):
        sal = _salience(*prepare_learner(lrn["propensity"], X, chips, X_tab), chips, nu.e, d)
    if sal is not None:
        diags["salience"] = sal
    cluster_data = cluster_data_from(data, keep)
    label = {"aipw": "aipw", "hajek": "ipw-hajek", "ht": "ipw-ht"}[method]
    prov = make_provenance(
        pf.formula, seed, method=method, estimand=estimand, trim=trim, group=name or None,
        folds=int(len(np.unique(fold_ids))),
        learners={k: repr(v) for k, v in lrn.items()} if propensity is None or need_outcome
        else "fixed nuisances")
    return Estimate.from_influence(
        pd.Series({pf.treatment: theta}), psi[:, None], vcov=vcov, cluster_data=cluster_data,
        estimand=estimand, design=label, diagnostics=diags, provenance=prov,
        sensitivity_elements=_sensitivity_elements(method, pf.treatment, yk, dk, nk, estimand,
                                                   psi, vcov))


def _sensitivity_elements(method, term, y, d, nu, estimand, psi, vcov):
    """OVB sensitivity elements of the AIPW score, or the reason there are none."""
    if method != "aipw":
        return ("sensitivity bounds (Chernozhukov et al. 2022) are derived for the doubly "
                "robust score, which needs the outcome regressions; IPW has none: use gc.aipw")
    if nu.mu1 is None:
        return ("the sensitivity bounds need the treated-arm outcome regression mu1 (sigma2 "
                "uses every unit's residual); pass predictions={'mu0': ..., 'mu1': ...}")
    return irm_elements(term, y, d, nu.e, nu.mu0, nu.mu1, estimand, influence=psi, vcov=vcov)


def _run(formula: str, data: pd.DataFrame, *, by: Any, method: str, **kw: Any
         ) -> Estimate | EstimateSet:
    if not isinstance(data, pd.DataFrame):
        raise DataError(f"data must be a pandas DataFrame, got {type(data).__name__}")
    al = align_images(kw["images"], data, missing_images=kw.pop("missing_images"), stacklevel=4)
    data, kw["images"] = al.data, al.images
    for key in ("propensity", "predictions", "folds", "fold_groups"):
        kw[key] = al.rows(kw[key])
    pf = parse_formula(formula, data)
    used = pf.columns()
    if by is not None:
        used |= set(_group_labels(data, by)[0])
    _check_nan(data, used & set(data.columns))
    if kw["estimand"] not in ("ATE", "ATT"):
        raise DataError(f"estimand '{kw['estimand']}' is not 'ATE' or 'ATT'")
    reps = ("auto", *REPRESENTATIONS)
    if kw["representation"] not in reps:
        raise DataError(f"representation={kw['representation']!r} is not one of {reps}")
    if kw["image_options"] is not None and not isinstance(kw["image_options"], Mapping):
        raise DataError("image_options must be a dict of options of the representation, got "
                        f"{type(kw['image_options']).__name__}")
    if by is None:
        return _fit_one(pf, data, method=method, **kw)
    _, labels = _group_labels(data, by)
    d_all = check_treatment(pf.treatment_vector(data), pf.treatment)
    min_arm = int(kw["folds"]) if np.isscalar(kw["folds"]) else 2
    ests, names, skipped = [], [], {}
    for g in sorted(labels.unique()):
        m = (labels == g).to_numpy()
        n1, n0 = int(d_all[m].sum()), int((1 - d_all[m]).sum())
        if n1 < min_arm or n0 < min_arm:
            skipped[g] = {"treated": n1, "control": n0}
            warnings.warn(f"subgroup '{g}' has {n1} treated and {n0} control units (need at "
                          f"least {min_arm} of each for {min_arm}-fold cross-fitting); skipped",
                          DiagnosticWarning, stacklevel=3)
            continue
        sub_kw = dict(kw)
        for key in ("images", "propensity", "folds", "fold_groups"):
            sub_kw[key] = _subset(kw[key], m)
        if kw["predictions"] is not None:
            sub_kw["predictions"] = {k: _subset(v, m) for k, v in kw["predictions"].items()}
        ests.append(_fit_one(pf, data.loc[m].reset_index(drop=True), method=method, name=g,
                             **sub_kw))
        names.append(g)
    if not ests:
        raise DesignError(f"no subgroup of by={by} has both treated and control units: {skipped}")
    return EstimateSet(tuple(ests), tuple(names), diagnostics={"skipped_groups": skipped,
                                                               "by": by})


def _subset(value: Any, mask: np.ndarray) -> Any:
    if value is None or isinstance(value, str) or np.isscalar(value):
        return value
    if isinstance(value, pd.DataFrame):
        return value.loc[mask].reset_index(drop=True)
    if isinstance(value, tuple):
        return tuple(_subset(v, mask) for v in value)
    return np.asarray(value)[mask]


# ----------------------------------------------------------------------------- public API
def aipw(
    formula: str,
    data: pd.DataFrame,
    *,
    estimand: str = "ATE",
    vcov: Any = "hetero",
    learners: Mapping[str, Any] | None = None,
    folds: int | np.ndarray = 5,
    seed: int = 0,
    images: Any = None,
    outcome_correction: Any = None,
    by: str | Sequence[str] | None = None,
    trim: float | str | None = None,
    propensity: Any = None,
    predictions: Mapping[str, Any] | None = None,
    fold_groups: Any = None,
    n_pcs: int = 5,
    stabilized: bool = True,
    clip: float | None = None,
    missing_images: str = "drop",
    representation: str = "auto",
    image_options: Mapping[str, Any] | None = None,
) -> Estimate | EstimateSet:
    """Doubly robust (augmented IPW) ATE or ATT with cross-fitted nuisances.

    Parameters
    ----------
    formula
        ``"y ~ d + x1 + C(region)"``: outcome, binary treatment, tabular controls.
    data
        One row per unit.
    estimand
        ``"ATE"`` or ``"ATT"`` (DoubleML's IRM scores ``"ATE"`` and ``"ATTE"``).
    vcov
        ``"hetero"`` (default; equals DoubleML's SE), ``"iid"`` or ``{"cluster": "country"}``.
        Any data column can be used later with ``est.with_vcov({"cluster": col})``.
    learners
        ``{"propensity": classifier, "outcome": regressor}``; see :func:`default_learners`.
    folds
        Number of cross-fitting folds (stratified by treatment), or an array of fold ids.
    seed
        Seed of the folds and of the default learners.
    images
        Image confounders: an embeddings frame (index = unit ids, as the data's index), a
        ``ChipsResult``, a chips cache path, the long Parquet of ``geocausal embed``, or raw
        chips / a feature matrix (matched by position: one row per data row, same order).
    outcome_correction
        Fitted corrector applied to the outcome (ML-predicted outcomes).
    by
        Column or columns defining subgroups: returns an EstimateSet (Holm/BH in ``tidy()``).
    trim
        ``None``, a threshold (keep ``trim <= e <= 1 - trim``) or ``"crump"``.
    propensity, predictions
        Fixed nuisances: propensity array or column; ``{"mu0": ..., "mu1": ...}``.
    fold_groups
        Column (or labels) keeping groups (e.g. villages) within one fold.
    n_pcs
        Leading image principal components in the balance table.
    stabilized
        Report balance and weight diagnostics with stabilised weights.
    clip
        Clip propensities to ``[clip, 1 - clip]`` before weighting (DoubleML clips at 0.01 by
        default); units are kept, unlike ``trim``. The number clipped is in the diagnostics.
    missing_images
        Units whose image is unusable (a chip with no valid pixel in some period, NaN
        features): ``"drop"`` (default, with a counted ``MissingImagesWarning``), ``"impute"``
        (the other units' mean features) or ``"error"``.
    representation
        What chips become for the nuisance models. ``"auto"`` (default): a cross-fitted stack
        (super learner) over the candidates tabular-only, per-band summaries, engineered
        statistics of bands and spectral indices, and learned position-aware self-supervised
        embeddings (:mod:`geocausal.nuisance.candidates`), weighted by out-of-fold loss; the
        weights used for each fold are fitted on the other folds, so AIPW only sees
        out-of-fold nuisances; unless ``learners`` names them, the propensity learner is a
        logistic regression with a cross-validated penalty
        (:func:`geocausal.nuisance.candidates.stack_learners`). The out-of-fold R², log-loss, AUC and calibration of every
        candidate are in ``diagnostics["nuisance_quality"]``, the winners and weights in
        ``diagnostics["nuisance_selection"]``. ``"summary"``, ``"engineered"`` or
        ``"learned"`` use that one representation. Image learners (``uses_images``) and
        feature frames are used as given.
    image_options
        Options of the representation: with ``"auto"`` the keys ``roles`` (band roles: a
        manifest, a preset name or a mapping), ``candidates``, ``combine`` (``"stack"`` or
        ``"select"``), ``min_learned_images`` (default 1000; fewer images skip the learned
        candidate), ``engineered`` and ``learned`` (keyword dicts); otherwise the keywords of
        the representation's function.

    Returns
    -------
    Estimate or EstimateSet
    """
    return _run(formula, data, by=by, method="aipw", estimand=estimand, vcov=vcov,
                learners=learners, folds=folds, seed=seed, images=images,
                outcome_correction=outcome_correction, trim=trim, propensity=propensity,
                predictions=predictions, fold_groups=fold_groups, n_pcs=n_pcs,
                stabilized=stabilized, clip=clip, missing_images=missing_images,
                representation=representation, image_options=image_options)


def ipw(
    formula: str,
    data: pd.DataFrame,
    *,
    estimand: str = "ATE",
    normalized: bool = True,
    stabilized: bool = True,
    vcov: Any = "hetero",
    learners: Mapping[str, Any] | None = None,
    folds: int | np.ndarray = 5,
    seed: int = 0,
    images: Any = None,
    outcome_correction: Any = None,
    by: str | Sequence[str] | None = None,
    trim: float | str | None = None,
    propensity: Any = None,
    fold_groups: Any = None,
    n_pcs: int = 5,
    clip: float | None = None,
    missing_images: str = "drop",
    representation: str = "auto",
    image_options: Mapping[str, Any] | None = None,
) -> Estimate | EstimateSet:
    """Inverse-probability weighting: Hajek (``normalized=True``) or Horvitz-Thompson.

    The Hajek estimate equals the weighted regression of ``y`` on ``d`` with stabilised
    weights; its ``"hetero"`` standard error is that regression's robust sandwich
    (propensities treated as known, as in Hernan and Robins ch. 12), conservative for the
    ATE. Other parameters as in :func:`aipw`.

    Examples
    --------
    >>> import numpy as np, pandas as pd
    >>> rng = np.random.default_rng(1); n = 800
    >>> df = pd.DataFrame({"x": rng.normal(size=n)})
    >>> df["d"] = rng.binomial(1, 1 / (1 + np.exp(-df.x))); df["y"] = 2 * df.d + df.x
    >>> round(float(ipw("y ~ d + x", df).params["d"]), 0)
    2.0
    """
    return _run(formula, data, by=by, method="hajek" if normalized else "ht",
                estimand=estimand, vcov=vcov, learners=learners, folds=folds, seed=seed,
                images=images, outcome_correction=outcome_correction, trim=trim,
                propensity=propensity, predictions=None, fold_groups=fold_groups,
                n_pcs=n_pcs, stabilized=stabilized, clip=clip, missing_images=missing_images,
                representation=representation, image_options=image_options)


def balance(
    formula: str,
    data: pd.DataFrame,
    *,
    estimand: str = "ATE",
    propensity: Any = None,
    images: Any = None,
    learners: Mapping[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    n_pcs: int = 5,
    stabilized: bool = True,
    missing_images: str = "drop",
) -> pd.DataFrame:
    """Balance table: standardised mean differences before and after weighting.

    Rows are the formula's controls and the leading ``n_pcs`` principal components of the
    image features. The propensity is cross-fitted unless given. ``images`` and
    ``missing_images`` as in :func:`aipw`.

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
    al = align_images(images, data, missing_images=missing_images)
    data, images, propensity = al.data, al.images, al.rows(propensity)
    pf = parse_formula(formula, data)
    _check_nan(data, pf.columns())
    n = len(data)
    d = check_treatment(pf.treatment_vector(data), pf.treatment)
    X_tab, names, F_img, chips = _features(pf, data, images, seed)
    if propensity is None:
        X = X_tab if F_img is None else np.column_stack([X_tab, F_img])
        lrn = {**default_learners(seed), **dict(learners or {})}
        e = crossfit_nuisances(X, pf.outcome_vector(data), d, _folds(folds, n, seed, d, None),
                               lrn["propensity"], images=chips, X_tab=X_tab).e
    else:
        e = _vector(data, propensity, "propensity", n)
    ov.check_propensity(e, d)
    Xb, nb = X_tab, list(names)
    if F_img is not None:
        pcs = ov.image_components(F_img, n_pcs)
        Xb = np.column_stack([Xb, pcs])
        nb += [f"image_pc{j + 1}" for j in range(pcs.shape[1])]
    return ov.smd_table(Xb, d, ov.ipw_weights(e, d, estimand, stabilized), nb)


def placement(
    formula: str,
    data: pd.DataFrame,
    *,
    images: Any = None,
    by: str | Sequence[str] | None = None,
    learners: Mapping[str, Any] | None = None,
    folds: int = 5,
    seed: int = 0,
    ci: str = "delong",
    n_boot: int = 500,
    vcov: Any = "delong",
    missing_images: str = "drop",
) -> Estimate | EstimateSet:
    """How predictable is placement: cross-validated AUCs of image-only, tabular-only and
    combined propensity models, with confidence intervals and tests of AUC differences.

    Parameters
    ----------
    formula
        ``"d ~ x1 + x2"`` (the treatment on the left), or the effect formula
        ``"y ~ d + x1 + x2"`` (the first right-hand term is then the treatment).
    images
        Image features (required for the image-only and combined models), matched to the
        data as in :func:`aipw`; ``missing_images`` likewise.
    by
        Subgroups (e.g. funder): one Estimate per group in an EstimateSet.
    learners
        ``{"propensity": classifier}`` used for every feature set, optionally
        ``{"image": classifier}`` for the image-only and combined sets.
    folds, seed
        Cross-validation folds (stratified) and their seed.
    ci
        ``"delong"`` (paired DeLong covariance) or ``"bootstrap"`` (paired, arm-stratified).
    n_boot
        Bootstrap draws when ``ci="bootstrap"``.
    vcov
        ``"delong"`` (default) or any influence-function vcov (e.g. ``{"cluster": col}``),
        computed from the DeLong structural components.

    Returns
    -------
    Estimate or EstimateSet
        Terms ``auc_image``, ``auc_tabular``, ``auc_both`` and the differences
        ``both_minus_tabular`` and ``image_minus_tabular``. The AUCs are tested against chance
        (``Estimate.null`` is 0.5: p-values, stars, summary and the plot's reference marks),
        the differences against 0; ``diagnostics["p_vs_chance"]`` repeats the AUCs' p-values.
    """
    al = align_images(images, data, missing_images=missing_images)
    data, images = al.data, al.images
    pf = parse_formula(formula, data)
    if pf.outcome in data.columns and set(np.unique(data[pf.outcome].dropna())) <= {0, 1}:
        treat, controls = pf.outcome, pf.rhs
    else:
        treat, controls = pf.treatment, pf.controls
    pf2 = ParsedFormula(formula, treat, treat, tuple(c for c in controls), ())
    _check_nan(data, pf2.columns() | (set(_group_labels(data, by)[0]) if by is not None else set()))
    if by is None:
        return _placement_one(pf2, data, images, learners, folds, seed, ci, n_boot, vcov)
    _, labels = _group_labels(data, by)
    ests, names = [], []
    for g in sorted(labels.unique()):
        m = (labels == g).to_numpy()
        dg = data.loc[m, treat].to_numpy()
        n1, n0 = int((dg == 1).sum()), int((dg == 0).sum())
        if min(n1, n0) < folds:
            warnings.warn(f"subgroup '{g}' has {n1} treated and {n0} control units; skipped",
                          DiagnosticWarning, stacklevel=2)
            continue
        ests.append(_placement_one(pf2, data.loc[m].reset_index(drop=True), _subset(images, m),
                                   learners, folds, seed, ci, n_boot, vcov))
        names.append(g)
    if not ests:
        raise DesignError(f"no subgroup of by={by} has enough treated and control units")
    return EstimateSet(tuple(ests), tuple(names), diagnostics={"by": by})


def _placement_one(pf, data, images, learners, folds, seed, ci, n_boot, vcov) -> Estimate:
    n = len(data)
    d = check_treatment(pf.treatment_vector(data), pf.treatment)
    X_tab, _, F_img, chips = _features(pf, data, images, seed)
    lrn = {**default_learners(seed), **dict(learners or {})}
    clf = lrn["propensity"]
    img_clf = lrn.get("image", clf)
    fold_ids = make_folds(n, folds, seed, stratify=d)
    sets: dict[str, tuple[Any, Any]] = {}
    if F_img is not None or chips is not None:
        img_X = chips if uses_images(img_clf) else F_img
        sets["image"] = (img_clf, img_X)
    if X_tab.shape[1]:
        sets["tabular"] = (clf, X_tab)
    if "image" in sets and "tabular" in sets and F_img is not None:
        sets["both"] = (clf, np.column_stack([X_tab, F_img]))
    if not sets:
        raise DataError("placement needs tabular controls in the formula and/or images=")
    keys = list(sets)
    scores = np.vstack([crossfit_predict(lr, Xs, d.astype(int), fold_ids, method="predict_proba")
                        for lr, Xs in sets.values()])
    if ci == "delong":
        aucs, cov, psi = delong(scores, d)
    elif ci == "bootstrap":
        aucs, cov = bootstrap_auc(scores, d, n_boot, seed)
        psi = delong(scores, d)[2]
    else:
        raise DataError(f"ci='{ci}' is not 'delong' or 'bootstrap'")
    pairs = [(keys.index(a), keys.index(b)) for a, b in (("both", "tabular"), ("image", "tabular"))
             if a in keys and b in keys]
    L = contrast_matrix(len(keys), pairs)
    names = [f"auc_{k}" for k in keys] + [f"{keys[a]}_minus_{keys[b]}" for a, b in pairs]
    params = pd.Series(L @ aucs, index=names)
    diags = {"n_treated": int(d.sum()), "n_control": int(n - d.sum()), "ci": ci,
             "scores": pd.DataFrame(scores.T, columns=keys)}
    prov = make_provenance(pf.formula, seed, folds=folds, ci=ci,
                           learners={k: repr(v[0]) for k, v in sets.items()})
    psi_all = psi @ L.T
    # vcov="delong" returns the DeLong (or bootstrap) matrix; other specs the influence variance
    rule = VarianceRule(named=(("delong", f"{ci}", L @ cov @ L.T),),
                        vcov_dependent=("p_vs_chance",))
    cluster_data = cluster_data_from(data)
    var = variance_from_rule(rule, psi_all, vcov, cluster_data, stacklevel=5)
    est = Estimate(params=params, vcov=pd.DataFrame(var.matrix), vcov_type=var.label,
                   estimand="AUC", design="placement", nobs=n, influence=psi_all,
                   diagnostics=diags, provenance=prov, cluster_data=cluster_data,
                   dof=var.dof, variance_rule=rule, null=placement_nulls(names))
    p_chance = {t: float(est.pvalues[t]) for t in names if t.startswith("auc_")}
    return replace(est, diagnostics={**est.diagnostics, "p_vs_chance": p_chance})

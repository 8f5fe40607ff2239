"""The candidate feature sets that ``images=`` chips offer the nuisance models by default.

:func:`image_candidates` returns, in order, the candidates that
:func:`geocausal.nuisance.stacking.stack_nuisances` cross-fits and stacks when a design gets
chips with ``representation="auto"`` (the default):

- ``tabular``: the formula's controls alone (an intercept when there are none);
- ``summary``: plus per-band mean and SD per date (masked pixels excluded);
- ``engineered``: plus statistics of bands and spectral indices (quantiles, centre versus
  rings and their contrasts, means over the central 1, 3 and 5 px windows, texture, shares /
  fragmentation / distances of pixels above thresholds pooled over the chips and at fixed
  index values, change between early and late periods: every group of
  :func:`geocausal.features.engineered.engineered_features`, with the band ``roles`` when
  given);
- ``learned``: plus position-aware self-supervised embeddings
  (:func:`geocausal.encoders.multiscale.multiscale_features`: one contrastive pretraining on all
  chips, pooled over the whole chip, its centre and its ring, with the change over time when
  there are several dates; ``learned_options={"sides": True}`` also pools over the chip's
  four halves, for confounders that lie on one side of the unit). The nuisance heads are
  then fitted fold by fold on these frozen features. Skipped, and recorded, when there are fewer than ``min_learned_images`` images
  (units x dates): a representation learned from so few images is not worth its noise.

Image candidates are callables, built only when the stack asks for them, so that one that fails
(chips too small for the rings, a training that diverges) is dropped with a named warning
instead of stopping the estimate.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(30, 8, 8, 2))
>>> cands, skipped = image_candidates(chips, None, np.zeros((30, 0)))
>>> list(cands), skipped["learned"][:31]
(['tabular', 'summary', 'engineered'], '30 images < min_learned_images=')
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from sklearn.linear_model import LogisticRegressionCV

from geocausal.errors import DataError
from geocausal.features.engineered import INDEX_CONTRAST_VALUES, INDEX_THRESHOLD_VALUES
from geocausal.features.indices import NORMALISED_DIFFERENCES
from geocausal.nuisance.sparse import GCVRidge, distinct_columns

__all__ = ["AUTO_OPTIONS", "CANDIDATES", "ENGINEERED_DEFAULTS", "engineered_candidate",
           "image_candidates", "propensity_library",
           "learned_salience", "stack_learners", "stacked_nuisances"]

#: the candidates of the default stack, in order
CANDIDATES = ("tabular", "summary", "engineered", "learned")
#: keys of ``image_options`` with ``representation="auto"`` (the default stack)
AUTO_OPTIONS = ("roles", "candidates", "combine", "min_learned_images", "engineered", "learned",
                "outcome_adaptive")


class PenalisedLogit(LogisticRegressionCV):
    """Penalised logistic regression whose penalty is chosen by inner cross-validated log-loss
    (scikit-learn's ``LogisticRegressionCV`` with its arguments, its transition warnings
    silenced).
    """

    def fit(self, X: Any, y: Any, **kwargs: Any) -> PenalisedLogit:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", FutureWarning)
            return super().fit(X, y, **kwargs)


def stack_learners(seed: int = 0) -> dict[str, Any]:
    """Nuisance learners of the default image stack, used unless ``learners=`` names them.

    The propensity is a standardised L1 (lasso) logistic regression with its penalty tuned by
    inner 3-fold cross-validated log-loss: image candidates bring tens to hundreds of correlated
    columns, on which the fixed-penalty default overfits (out-of-fold propensities of exactly 0
    or 1 on the semi-synthetic suite). An L2 penalty, tuned the same way, has to shrink every
    column to keep the noise of hundreds of them out, and with them the few that carry the
    confounding (half of a confounder's logit coefficient on the suite); the lasso keeps a few
    dozen columns and reaches a lower out-of-fold log-loss there (0.585 against 0.609 on
    composition, 0.535 against 0.614 on change over time); ``image_options={"outcome_adaptive":
    True}`` stacks it with a second fit on the columns that predict the outcome
    (:func:`propensity_library`). The outcome is a *library* stacked with the candidates (every
    candidate x learner pair is cross-fitted and weighted by out-of-fold loss,
    :func:`geocausal.nuisance.stacking.stack_nuisances`): ``ridge``, a ridge regression on
    standardised features with its penalty chosen by efficient leave-one-out error, fitted per
    arm; ``ridge_pooled``, the same fitted once on both arms with the treatment as a feature
    (:class:`~geocausal.nuisance.stacking.PooledArms`: twice the units per fit);
    ``post_lasso``, least squares on the columns a lasso selects by BIC
    (:class:`~geocausal.nuisance.sparse.PostLassoRegressor`: where a few image columns carry
    a confounder it is not shrunk as ridge shrinks it); ``post_lasso_pooled``, the same fitted
    once on both arms with the treatment as a feature (selection sees twice the units: on the
    semi-synthetic suite, 8 paired draws per mechanism, adding it lowered the default's RMSE on
    every mechanism, 0.161 to 0.146 on composition, 0.131 to 0.121 on change over time); and
    ``hgb``, histogram gradient
    boosting (up to 100 trees, stopped when 10 more do not lower the loss on a 10% validation
    split, 63 bins per feature: on hundreds of image columns this costs a third of the
    package's plain default for the same out-of-fold loss on the semi-synthetic suite). With a
    few hundred units per arm and hundreds of image columns the boosted trees alone leave a
    regularisation bias of about a tenth of the outcome's SD even with the true confounders;
    the linear learners do not, and the trees still win where the outcome is far from linear
    in the features.

    Examples
    --------
    >>> lrn = stack_learners()
    >>> sorted(lrn), sorted(lrn["outcome"])
    (['outcome', 'propensity'], ['hgb', 'post_lasso', 'post_lasso_pooled', 'ridge', 'ridge_pooled'])
    """
    from sklearn.ensemble import HistGradientBoostingRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from geocausal.nuisance.sparse import PostLassoRegressor
    from geocausal.nuisance.stacking import PooledArms

    def ridge() -> Any:
        return make_pipeline(StandardScaler(), GCVRidge(alphas=np.logspace(-2, 5, 15)))

    return {"propensity": make_pipeline(StandardScaler(), PenalisedLogit(
                Cs=np.logspace(-2, 0, 5), cv=3, l1_ratios=(1.0,), solver="liblinear",
                intercept_scaling=10.0, scoring="neg_log_loss", max_iter=2000,
                random_state=seed)),
            "outcome": {"ridge": ridge(), "ridge_pooled": PooledArms(ridge()),
                        "post_lasso": PostLassoRegressor(),
                        "post_lasso_pooled": PooledArms(PostLassoRegressor()),
                        "hgb": HistGradientBoostingRegressor(
                            max_iter=100, max_bins=63, early_stopping=True,
                            validation_fraction=0.1, n_iter_no_change=10, random_state=seed)}}


def _with_tab(X_tab: np.ndarray, f: np.ndarray) -> np.ndarray:
    return np.column_stack([X_tab, f]) if X_tab.shape[1] else np.asarray(f, float)


#: options of the default stack's engineered candidate (every statistic group of
#: :func:`geocausal.features.engineered.engineered_features`; thresholds on bands and indices
#: at the default pooled quantile levels, and on the normalised-difference indices also at
#: every 0.1 from -0.9 to 0.9, where analysts cut them: NDVI 0.4, NDWI 0, ...; their edge
#: density at fixed contrasts 0.05 to 0.3; means over the central 1, 3 and 5 px square windows,
#: the unit's pixel and blocks that survey-linked studies extract)
ENGINEERED_DEFAULTS: dict[str, Any] = {
    "stats": ("mean", "sd", "quantiles", "rings", "texture", "thresholds", "valid", "surround",
              "change", "windows"),
    "threshold_channels": "all",
    "index_threshold_values": {k: INDEX_THRESHOLD_VALUES for k in NORMALISED_DIFFERENCES},
    "index_contrast_values": {k: INDEX_CONTRAST_VALUES for k in NORMALISED_DIFFERENCES}}


def engineered_candidate(chips: Any, mask: np.ndarray | None = None, roles: Any = None,
                         options: Mapping[str, Any] | None = None) -> np.ndarray:
    """The default stack's engineered candidate: :data:`ENGINEERED_DEFAULTS` (updated by
    ``options``) through :func:`geocausal.features.images.engineered_matrix`, with constant and
    repeated columns dropped (:func:`geocausal.nuisance.sparse.distinct_columns`).

    Parameters
    ----------
    chips, mask
        As for :func:`image_candidates`.
    roles
        Band roles for the spectral indices (None and no ``bands``/``preset``/``indices``
        among ``options``: band statistics only).
    options
        Keywords of :func:`geocausal.features.engineered.engineered_features`.

    Returns
    -------
    numpy.ndarray
        ``(N, p)`` finite features.

    Examples
    --------
    >>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(20, 8, 8, 2))
    >>> f = engineered_candidate(chips, roles={"red": 1, "nir": 2})
    >>> f.shape[0], bool(np.ptp(f, axis=0).min() > 0)
    (20, True)
    """
    from geocausal.features.images import engineered_matrix as eng

    kw = {**ENGINEERED_DEFAULTS, **dict(options or {})}
    if roles is not None:
        kw["roles"] = roles
    elif not any(k in kw for k in ("bands", "preset", "indices")):
        kw["indices"] = ()  # no band roles: band statistics only, no index to skip
    f = eng(chips, mask, **kw)
    return f[:, distinct_columns(f)]  # constant and repeated statistics carry nothing


def image_candidates(chips: np.ndarray, mask: np.ndarray | None, X_tab: np.ndarray, *,
                     seed: int = 0, roles: Any = None, candidates: tuple[str, ...] = CANDIDATES,
                     min_learned_images: int = 1000,
                     engineered_options: Mapping[str, Any] | None = None,
                     learned_options: Mapping[str, Any] | None = None,
                     ) -> tuple[dict[str, np.ndarray | Callable[[], np.ndarray]], dict[str, str]]:
    """Candidate feature matrices (or callables making them) and the candidates skipped.

    Parameters
    ----------
    chips, mask
        ``(N, [T,] H, W, C)`` chips aligned with the data rows and their validity mask, or a
        :class:`~geocausal.features.align.ChipsView` of a chips cache (``mask=None``): read by
        blocks, never whole, with the same candidates as its arrays.
    X_tab
        ``(N, p)`` tabular controls (``p`` may be 0).
    seed
        Seed of the learned representation.
    roles
        Band roles for the spectral indices (a manifest, a preset name or a mapping; see
        :func:`geocausal.features.engineered.engineered_features`).
    candidates
        Which of :data:`CANDIDATES` to offer (``tabular`` is always first).
    min_learned_images
        Fewest images (units x dates) for the learned candidate.
    engineered_options, learned_options
        Keywords of ``engineered_features`` and of ``multiscale_features``.

    Returns
    -------
    tuple
        ``(candidates, skipped)``: name -> matrix or callable, and name -> reason.
    """
    bad = [c for c in candidates if c not in CANDIDATES]
    if bad:
        raise DataError(f"unknown nuisance candidates {bad}; choose from {CANDIDATES}")
    X_tab = np.asarray(X_tab, float)
    from geocausal.features.align import ChipsView

    chips = chips if isinstance(chips, ChipsView) else np.asarray(chips)  # a view: by blocks
    n = chips.shape[0]
    if X_tab.shape[0] != n:
        raise DataError(f"tabular controls have {X_tab.shape[0]} rows but chips have {n}")
    base = X_tab if X_tab.shape[1] else np.zeros((n, 1))
    out: dict[str, Any] = {"tabular": base}
    skipped: dict[str, str] = {}
    if "summary" in candidates:
        from geocausal.features.images import summary_features

        out["summary"] = _with_tab(X_tab, summary_features(chips, mask))
    if "engineered" in candidates:
        eo = dict(engineered_options or {})
        out["engineered"] = lambda: _with_tab(X_tab, engineered_candidate(chips, mask, roles, eo))
    if "learned" in candidates:
        n_images = n * (chips.shape[1] if chips.ndim == 5 else 1)
        if n_images < int(min_learned_images):
            skipped["learned"] = (f"{n_images} images < min_learned_images="
                                  f"{int(min_learned_images)}")
        else:
            lo = dict(learned_options or {})
            from geocausal.features.images import check_learned_fits

            check_learned_fits(chips, seed, **lo)  # a view's training images: a named error

            def learned() -> np.ndarray:
                from geocausal.features.images import learned_multiscale

                z, pre = learned_multiscale(chips, mask, seed, **lo)  # a view: streamed
                learned.pretrained, learned.n_tab = pre, X_tab.shape[1]  # for salience
                # the pooling the features were made with, for the salience maps
                learned.pooling = {k: lo[k] for k in ("centre", "sides") if k in lo}
                learned.matrix = _with_tab(X_tab, z)
                return learned.matrix

            out["learned"] = learned
    return out, skipped


def learned_salience(learned: Any, propensity_learner: Any, d: np.ndarray, e: np.ndarray,
                     chips: np.ndarray, mask: np.ndarray | None, k: int = 3) -> dict | str:
    """Salience maps of the learned candidate's propensity, or why there are none.

    The candidate's propensity learner is refitted on all units (frozen self-supervised
    features plus the tabular controls); for a linear head (a scaler and a logistic
    regression, as :func:`stack_learners`) the gradient of its logit with respect to the
    pixels is taken through the encoder
    (:func:`geocausal.encoders.multiscale.multiscale_salience`) for the ``k`` units most
    likely treated and the ``k`` controls least likely treated under ``e`` (the stacked
    propensity). The dict is what :func:`geocausal.results.plot_ipw.salience_plot` draws.
    """
    from sklearn.base import clone

    pre = getattr(learned, "pretrained", None)
    X = getattr(learned, "matrix", None)
    if isinstance(propensity_learner, Mapping):  # a library: its first (linear) learner
        propensity_learner = next(iter(propensity_learner.values()))
    if pre is None or X is None:
        return "unavailable: the learned candidate was not built"
    try:
        fitted = clone(propensity_learner).fit(X, np.asarray(d).astype(int))
        steps = getattr(fitted, "steps", [(None, fitted)])
        head = steps[-1][1]
        coef = np.asarray(getattr(head, "coef_", None), float).ravel()
        scale = np.ones(X.shape[1])
        for _, st in steps[:-1]:
            scale = scale * np.asarray(getattr(st, "scale_", np.ones(X.shape[1])), float)
        if coef.shape != (X.shape[1],):
            return ("unavailable: the propensity learner has no linear head (coef_) on the "
                    "learned features")
        w = (coef / scale)[learned.n_tab:]
        from geocausal.encoders.multiscale import multiscale_salience

        order = np.argsort(e)
        d = np.asarray(d)
        idx = np.concatenate([order[d[order] == 1][-k:], order[d[order] == 0][:k]])
        from geocausal.features.images import chip_rows

        shown, shown_mask = chip_rows(chips, mask, idx)  # a view: only these k units read
        maps = multiscale_salience(pre.model, shown, shown_mask, w, **learned.pooling)
        return {"units": idx.tolist(), "maps": maps, "images": shown,
                "propensity": np.asarray(e)[idx].tolist(),
                "treated": d[idx].astype(int).tolist(),
                "source": "learned candidate: SSL multiscale CNN + logistic head"}
    except Exception as exc:  # salience is a diagnostic: never fail the estimate
        return f"unavailable: {type(exc).__name__}: {exc}"


def propensity_library(propensity: Any, outcome_adaptive: bool = False) -> Any:
    """The propensity learners of the image stack: ``propensity`` itself, or with
    ``outcome_adaptive`` a library of it on every column of a candidate (``all_columns``) and
    the same learner on the columns that a post-lasso of the outcome keeps
    (``outcome_adaptive``, :class:`~geocausal.nuisance.stacking.OutcomeAdaptive`), stacked
    like every other pair. A library (a mapping) is returned as it is.

    ``image_options={"outcome_adaptive": True}`` turns it on in ``gc.aipw`` / ``gc.ipw``. It is
    off by default because it was measured not to pay on the semi-synthetic suite
    (``benchmarks/image_representations_mc_outcome_adaptive.md``, 100 draws per mechanism):
    its propensity is closer to the truth (logit slope on the true logit 0.88-0.95 against
    0.76-0.82, out-of-fold log-loss 0.570 -> 0.558) and takes 86-92% of the stack's weight,
    so the weights are more extreme; the bias falls (+0.026 / +0.033 / +0.034 / +0.027 ->
    +0.018 / +0.016 / +0.004 / +0.022) but the RMSE rises by 9-22% and the coverage moves
    by at most one Monte Carlo SE (0.90 / 0.89 / 0.90 / 0.93 -> 0.90 / 0.92 / 0.92 / 0.93).
    Use it where many image columns move the treatment but not the outcome.

    Examples
    --------
    >>> from sklearn.linear_model import LogisticRegression
    >>> sorted(propensity_library(LogisticRegression(), outcome_adaptive=True))
    ['all_columns', 'outcome_adaptive']
    >>> propensity_library(LogisticRegression())
    LogisticRegression()
    """
    from sklearn.base import clone

    from geocausal.nuisance.stacking import OutcomeAdaptive
    from geocausal.vocabulary import check_bool

    if isinstance(propensity, Mapping) or not check_bool("image_options outcome_adaptive",
                                                         outcome_adaptive):
        return propensity

    return {"all_columns": propensity, "outcome_adaptive": OutcomeAdaptive(clone(propensity))}


def stacked_nuisances(chips: np.ndarray, mask: np.ndarray | None, X_tab: np.ndarray,
                      y: np.ndarray, d: np.ndarray, fold_ids: np.ndarray,
                      learners: Mapping[str, Any], *, need_outcome: bool = True,
                      need_mu1: bool = True, seed: int = 0,
                      options: Mapping[str, Any] | None = None, stacklevel: int = 8):
    """The default image path of the weighting designs: the cross-fitted stack over the
    candidates of :func:`image_candidates` (:func:`geocausal.nuisance.stacking.stack_nuisances`).

    Parameters
    ----------
    chips, mask, X_tab
        As in :func:`image_candidates`.
    y, d, fold_ids
        Outcome, binary treatment and fold ids.
    learners
        ``{"propensity": classifier, "outcome": regressor}`` (:func:`stack_learners` plus the
        user's).
    need_outcome, need_mu1
        Fit the outcome regressions; the treated arm's too.
    seed
        Seed of the learned candidate.
    options
        ``image_options`` of ``representation="auto"``: keys of :data:`AUTO_OPTIONS`.
    stacklevel
        Of the warnings of dropped candidates.

    Returns
    -------
    tuple
        ``(StackResult, skipped)``; ``skipped["_salience"]`` holds the learned candidate's
        salience maps when it was used.

    Raises
    ------
    OptionError
        An option that is not one of :data:`AUTO_OPTIONS`.
    """
    from geocausal.errors import OptionError
    from geocausal.nuisance.stacking import COMBINE, DEFAULT_COMBINE, stack_nuisances
    from geocausal.vocabulary import choice

    opts = dict(options or {})
    bad = sorted(set(opts) - set(AUTO_OPTIONS))
    if bad:
        raise OptionError(f"image_options {bad} are not options of representation='auto' "
                          f"({list(AUTO_OPTIONS)})")
    # checked before the candidates' features are computed (the learned one trains an encoder)
    combine = choice("image_options combine", opts.get("combine", DEFAULT_COMBINE), COMBINE)
    cands, skipped = image_candidates(
        chips, mask, X_tab, seed=seed, roles=opts.get("roles"),
        candidates=tuple(opts.get("candidates", CANDIDATES)),
        min_learned_images=int(opts.get("min_learned_images", 1000)),
        engineered_options=opts.get("engineered"), learned_options=opts.get("learned"))
    res = stack_nuisances(cands, y, d, fold_ids,
                          propensity_library(learners["propensity"],
                                             opts.get("outcome_adaptive", False)),
                          learners["outcome"] if need_outcome else None, need_mu1=need_mu1,
                          combine=combine, stacklevel=stacklevel)
    if "learned" in res.candidates:
        skipped = {**skipped, "_salience": learned_salience(
            cands["learned"], learners["propensity"], d, res.e, chips, mask)}
    return res, skipped

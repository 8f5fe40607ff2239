"""Cross-fitted encoders: one model per fold, out-of-fold predictions and embeddings.

For fold ``k`` a fresh model (same spec, seed ``seed + k``) is trained on the other folds and
applied to fold ``k``; so every unit gets a prediction and an embedding from a model that never
saw it, which is what a downstream estimator may use. Continuous targets are standardised on the
training folds and predictions returned on the original scale; binary targets come back as
probabilities.

``x`` may be a chips cache's lazy array (``cache.chips``) or a
:class:`~geocausal.encoders.stream.ChipSource`: each fold then trains streaming its units from
the cache in blocks (:func:`~geocausal.encoders.stream.fit_supervised_streaming`, the same
numbers as in memory when a block holds the whole fold) and the held-out fold is predicted and
embedded in blocks; the whole cache is never loaded and a block that does not fit the memory
budget is a :class:`~geocausal.errors.DataError` saying what to lower.

Examples
--------
>>> import numpy as np
>>> from geocausal.encoders.modules import ModelSpec
>>> from geocausal.encoders.train import TrainConfig
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(40, 8, 8, 2)).astype("float32"); y = rng.integers(0, 2, 40) * 1.0
>>> spec = ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,))
>>> res = crossfit(x, y, spec=spec, folds=2, config=TrainConfig(epochs=1, progress=False))
>>> res.predictions.shape, res.embeddings.shape
((40, 1), (40, 4))
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
from scipy.special import expit

from geocausal.encoders.modules import ImageModel, ModelSpec, build_model
from geocausal.encoders.objectives import Objective, objective_for
from geocausal.encoders.stream import (
    ChipSource,
    apply_source,
    fit_supervised_streaming,
    is_lazy,
)
from geocausal.encoders.train import TrainConfig, TrainResult, embed_array, fit, predict
from geocausal.errors import DataError
from geocausal.folds import fold_indices, make_folds


@dataclass(frozen=True)
class CrossfitResult:
    """Out-of-fold predictions ``(N, k)`` and embeddings ``(N, d)``, with the fold models."""

    predictions: np.ndarray
    embeddings: np.ndarray
    fold_ids: np.ndarray
    models: tuple[ImageModel, ...]
    histories: tuple[TrainResult, ...]


def standardise_targets(y: np.ndarray, binary: tuple[bool, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Centre and scale continuous columns: returns ``(loc, scale)`` per column."""
    y = np.asarray(y, float)
    y = y[:, None] if y.ndim == 1 else y
    loc = np.zeros(y.shape[1])
    scale = np.ones(y.shape[1])
    for j, b in enumerate(binary):
        if not b:
            loc[j] = np.nanmean(y[:, j])
            sd = np.nanstd(y[:, j])
            scale[j] = sd if sd > 0 else 1.0
    return loc, scale


def crossfit(x: np.ndarray, y: np.ndarray, *, spec: ModelSpec,
             objective: Objective | None = None, folds: int = 5,
             fold_ids: np.ndarray | None = None, tab: np.ndarray | None = None,
             mask: np.ndarray | None = None, config: TrainConfig | None = None,
             seed: int = 0) -> CrossfitResult:
    """Train one model per fold and return out-of-fold predictions and embeddings.

    ``spec.n_outputs`` and ``spec.n_tabular`` are set from ``y`` and ``tab``; ``objective``
    defaults to :func:`~geocausal.encoders.objectives.objective_for` of ``y``.
    """
    lazy = is_lazy(x) or isinstance(x, ChipSource)
    x = x if lazy else np.asarray(x)
    y = np.asarray(y, float)
    y2 = y[:, None] if y.ndim == 1 else y
    n = x.shape[0]
    if y2.shape[0] != n:
        raise DataError(f"targets have {y2.shape[0]} rows, images have {n}")
    obj = objective or objective_for(y)
    if not obj.supervised:
        raise DataError("cross-fitting needs a supervised objective (binary/regression/"
                        "multitask); use geocausal.encoders.embed.learned_features for labels-"
                        "free representations")
    ids = (make_folds(n, folds, seed) if fold_ids is None else np.asarray(fold_ids))
    spec = replace(spec, n_outputs=y2.shape[1],
                   n_tabular=0 if tab is None else np.asarray(tab).shape[1])
    preds = np.full((n, y2.shape[1]), np.nan)
    embs = None
    models, hists = [], []
    binary = np.asarray(obj.binary, bool)
    source = None
    if lazy:
        source = x if isinstance(x, ChipSource) else ChipSource.of(x, mask)
    tab = None if tab is None else np.asarray(tab, float)

    def rows(a, idx):
        return None if a is None else np.asarray(a)[idx]

    for k, (tr, te) in enumerate(fold_indices(ids)):
        loc, scale = standardise_targets(y2[tr], obj.binary)
        model = build_model(spec, seed + k)
        target = (y2[tr] - loc) / scale
        if source is None:
            res = fit(model, obj, x[tr], target, tab=rows(tab, tr), mask=rows(mask, tr),
                      config=config, seed=seed + k)
            out = predict(res.model, x[te], rows(tab, te), rows(mask, te))
            e = embed_array(res.model, x[te], rows(mask, te))
        else:  # stream the fold's units from the cache in blocks
            res = fit_supervised_streaming(model, obj, source.subset(tr), target,
                                           tab=rows(tab, tr), config=config, seed=seed + k)
            held = source.subset(te)
            out = apply_source(res.model, held, tab=rows(tab, te))
            e = apply_source(res.model, held, kind="embed")
        preds[te] = np.where(binary[None], expit(out), out * scale + loc)
        if embs is None:
            embs = np.zeros((n, e.shape[1]), np.float32)
        embs[te] = e
        models.append(res.model)
        hists.append(res)
    return CrossfitResult(preds, embs, ids, tuple(models), tuple(hists))

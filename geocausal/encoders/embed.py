"""Embeddings from chips: label-free learned features and ``gc.embed`` to Parquet.

:func:`learned_features` is the ``representation="learned"`` path of every design's
``images=`` argument: a small CNN is trained self-supervised (contrastive, two augmented views
per chip) on the chips themselves and each unit's dates are embedded and concatenated. No
label, treatment or outcome is used, so the same representation serves every study of the
mosaic and needs no cross-fitting (a supervised encoder, which does, lives in
:mod:`geocausal.encoders.crossfit` and :class:`geocausal.nuisance.image_learner.ImageLearner`).

:func:`embed` reads a chips cache (``geocausal.data.chips.open_cache``), trains the chosen
encoder the same way (``"random"`` trains nothing) and writes one row per unit and period.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).normal(size=(12, 2, 8, 8, 3)).astype("float32")
>>> learned_features(chips, epochs=1, embed_dim=4, widths=(4,), progress=False).shape
(12, 8)
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.encoders.modules import ENCODERS, ModelSpec, build_model, set_normaliser
from geocausal.encoders.objectives import contrastive
from geocausal.encoders.train import TrainConfig, embed_array, fit
from geocausal.errors import DataError


def _as_sequences(chips: np.ndarray, mask: np.ndarray | None):
    x = np.asarray(chips, np.float32)
    if x.ndim == 4:
        x = x[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    if mask is not None and np.asarray(mask).shape != x.shape[:-1]:
        raise DataError(f"mask shape {np.asarray(mask).shape} must equal chips shape without "
                        f"bands {x.shape[:-1]}")
    return x, None if mask is None else np.asarray(mask, bool)


def train_self_supervised(x: np.ndarray, mask: np.ndarray | None, spec: ModelSpec, *,
                          seed: int = 0, epochs: int = 3, batch_size: int = 128,
                          max_train: int | None = 1024, learning_rate: float = 3e-3,
                          progress: bool = True):
    """Contrastive training of ``spec`` on (a random subset of at most ``max_train``) images.

    Returns the trained model (``"random"`` encoders only get their normalisation statistics).
    """
    spec = replace(spec, proj_dim=spec.proj_dim or max(spec.embed_dim, 8), n_outputs=0)
    model = build_model(spec, seed)
    if spec.encoder == "random" or epochs <= 0:
        set_normaliser(model, x, mask)
        return model
    n = x.shape[0]
    idx = np.arange(n)
    if max_train is not None and n > max_train:
        idx = np.sort(np.random.default_rng(seed).choice(n, max_train, replace=False))
    cfg = TrainConfig(epochs=epochs, batch_size=min(batch_size, len(idx)), val_frac=0.0,
                      learning_rate=learning_rate, band_dropout=0.2, progress=progress)
    res = fit(model, contrastive(proj_dim=spec.proj_dim), x[idx],
              mask=None if mask is None else mask[idx], config=cfg, seed=seed)
    return res.model


def learned_features(chips: np.ndarray, mask: np.ndarray | None = None, seed: int = 0, *,
                     encoder: str = "cnn", epochs: int = 3, embed_dim: int = 16,
                     widths: tuple[int, ...] = (8, 16), batch_size: int = 128,
                     max_train: int | None = 1024, progress: bool = True,
                     **kwargs: Any) -> np.ndarray:
    """Self-supervised embeddings of every unit: ``(N, T * embed_dim)``.

    Each date of each unit is one image; a ``encoder`` (``"cnn"``, ``"vit"`` or ``"random"``)
    is trained contrastively for ``epochs`` on at most ``max_train`` of them, then every image
    is embedded and a unit's dates are concatenated in period order.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)``.
    mask
        Valid pixels, chips' shape without the band axis.
    seed
        Seeds initialisation, subsample, batches and augmentations.
    encoder, epochs, embed_dim, widths, batch_size, max_train, progress
        Model and training size.
    kwargs
        Other :class:`~geocausal.encoders.modules.ModelSpec` fields (``patch``, ``dim``...).
    """
    if encoder not in ("cnn", "vit", "random"):
        raise DataError(f"learned_features encoder={encoder!r} must be 'cnn', 'vit' or 'random'")
    x, m = _as_sequences(chips, mask)
    n, t = x.shape[:2]
    frames = x.reshape((n * t, *x.shape[2:]))
    fmask = None if m is None else m.reshape((n * t, *m.shape[2:]))
    spec = ModelSpec(encoder=encoder, in_bands=x.shape[-1], embed_dim=embed_dim,
                     widths=tuple(widths), **kwargs)
    model = train_self_supervised(frames, fmask, spec, seed=seed, epochs=epochs,
                                  batch_size=batch_size, max_train=max_train, progress=progress)
    z = embed_array(model, frames, fmask)
    return z.reshape(n, t * z.shape[1]).astype(np.float64)


def foldwise_learned_features(chips: np.ndarray, fold_ids: np.ndarray,
                               mask: np.ndarray | None = None, seed: int = 0, *,
                               encoder: str = "cnn", epochs: int = 3, embed_dim: int = 16,
                               widths: tuple[int, ...] = (8, 16), batch_size: int = 128,
                               max_train: int | None = 1024, progress: bool = True,
                               **kwargs: Any) -> np.ndarray:
    """Cross-fitted self-supervised embeddings: ``(K, N, T * embed_dim)``.

    For each fold ``k`` an encoder is trained (as in :func:`learned_features`) only on the
    images of units outside fold ``k``, then embeds every unit. A nuisance model for fold ``k``
    is then fit on the other folds' rows of ``out[k]`` and predicts fold ``k``'s rows, so
    neither the representation nor the nuisance model has seen the units it predicts.

    Examples
    --------
    >>> chips = np.random.default_rng(0).random((6, 2, 4, 4, 3), dtype="float32")
    >>> z = foldwise_learned_features(chips, np.array([0, 0, 0, 1, 1, 1]), encoder="random",
    ...                               embed_dim=4, progress=False)
    >>> z.shape
    (2, 6, 8)
    """
    if encoder not in ("cnn", "vit", "random"):
        raise DataError(f"encoder={encoder!r} must be 'cnn', 'vit' or 'random'")
    x, m = _as_sequences(chips, mask)
    n, t = x.shape[:2]
    fold_ids = np.asarray(fold_ids)
    if fold_ids.shape != (n,):
        raise DataError(f"fold_ids has shape {fold_ids.shape}, expected ({n},)")
    frames = x.reshape((n * t, *x.shape[2:]))
    fmask = None if m is None else m.reshape((n * t, *m.shape[2:]))
    frame_fold = np.repeat(fold_ids, t)
    spec = ModelSpec(encoder=encoder, in_bands=x.shape[-1], embed_dim=embed_dim,
                     widths=tuple(widths), **kwargs)
    out = []
    for j, k in enumerate(np.unique(fold_ids)):
        train = frame_fold != k
        model = train_self_supervised(frames[train], None if fmask is None else fmask[train],
                                      spec, seed=seed + j, epochs=epochs, batch_size=batch_size,
                                      max_train=max_train, progress=progress)
        z = embed_array(model, frames, fmask)
        out.append(z.reshape(n, t * z.shape[1]).astype(np.float64))
    return np.stack(out)


def embed(cache_path: str | Path, out: str | Path, *, encoder: str = "cnn", seed: int = 0,
          epochs: int = 5, embed_dim: int = 32, batch_size: int = 64,
          max_train: int | None = None, progress: bool = True) -> Path:
    """Embed every unit and period of a chips cache and write a Parquet table.

    Columns: ``unit_id``, ``period``, ``emb_0 .. emb_{d-1}``. ``encoder="sequence"`` trains a
    sequence encoder (shared CNN per date, temporal transformer) on each unit's whole
    sequence; its per-date CNN embeddings fill ``emb_*`` and the unit's sequence embedding is
    repeated in ``seq_0 ..``. The other encoders are trained on single dates.

    Examples
    --------
    >>> import tempfile, types, numpy as np, pandas as pd
    >>> rng = np.random.default_rng(0)
    >>> cache = types.SimpleNamespace(chips=rng.normal(size=(6, 2, 8, 8, 3)).astype("float32"),
    ...     mask=np.ones((6, 2, 8, 8), bool), unit_ids=np.arange(6), periods=[2019, 2020],
    ...     bands=["b", "g", "r"])
    >>> p = embed(cache, tempfile.mkdtemp() + "/e.parquet", encoder="random", embed_dim=4,
    ...           progress=False)
    >>> pd.read_parquet(p).shape
    (12, 6)
    """
    if encoder not in ENCODERS:
        raise DataError(f"encoder={encoder!r} is not one of {ENCODERS}")
    if isinstance(cache_path, str | Path):
        from geocausal.data.chips import open_cache

        cache = open_cache(cache_path)
    else:
        cache = cache_path
    x, m = _as_sequences(np.asarray(cache.chips), None if cache.mask is None
                         else np.asarray(cache.mask))
    n, t = x.shape[:2]
    unit_ids = np.asarray(cache.unit_ids)
    periods = np.asarray(cache.periods)
    if len(unit_ids) != n or len(periods) != t:
        raise DataError(f"cache has {len(unit_ids)} unit ids and {len(periods)} periods for "
                        f"chips of shape {x.shape}")
    frames = x.reshape((n * t, *x.shape[2:]))
    fmask = None if m is None else m.reshape((n * t, *m.shape[2:]))
    kw = dict(seed=seed, epochs=epochs, batch_size=batch_size, max_train=max_train,
              progress=progress)
    seq = None
    if encoder == "sequence":
        spec = ModelSpec(encoder="sequence", in_bands=x.shape[-1], embed_dim=embed_dim,
                         max_len=max(64, t))
        model = train_self_supervised(x, m, spec, **kw)
        seq = embed_array(model, x, m, batch_size=max(1, 256 // t))
        z = _frame_embed(model, model.encoder.frame, frames, fmask)
    else:
        spec = ModelSpec(encoder=encoder, in_bands=x.shape[-1], embed_dim=embed_dim)
        model = train_self_supervised(frames, fmask, spec, **kw)
        z = embed_array(model, frames, fmask)
    df = pd.DataFrame({"unit_id": np.repeat(unit_ids, t), "period": np.tile(periods, n)})
    emb = pd.DataFrame(z, columns=[f"emb_{j}" for j in range(z.shape[1])])
    parts = [df, emb]
    if seq is not None:
        parts.append(pd.DataFrame(np.repeat(seq, t, axis=0),
                                  columns=[f"seq_{j}" for j in range(seq.shape[1])]))
    table = pd.concat(parts, axis=1)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(out, index=False)
    return out


def _frame_embed(model, frame_model, frames: np.ndarray, fmask: np.ndarray | None) -> np.ndarray:
    """Per-date embeddings from a sequence model's shared frame encoder."""
    import jax
    from flax import nnx

    from geocausal.encoders.train import normalised

    graphdef, state = nnx.split(frame_model)
    f = jax.jit(lambda s, xb: nnx.merge(graphdef, s)(xb))
    xn = normalised(model, frames, fmask)
    out = [np.asarray(f(state, xn[i:i + 256])) for i in range(0, len(xn), 256)]
    return np.concatenate(out, axis=0)

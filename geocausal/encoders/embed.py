"""Embeddings from chips: label-free learned features and ``gc.embed`` to Parquet.

:func:`learned_features` is the ``representation="learned"`` path of every design's
``images=`` argument: a small CNN is trained self-supervised (contrastive, two augmented views
per chip) on the chips themselves and each unit's dates are embedded and concatenated. No
label, treatment or outcome is used, so the same representation serves every study of the
mosaic and needs no cross-fitting (a supervised encoder, which does, lives in
:mod:`geocausal.encoders.crossfit` and :class:`geocausal.nuisance.image_learner.ImageLearner`).

:func:`embed` reads a chips cache (``geocausal.data.chips.open_cache``), trains the chosen
encoder the same way (``"random"`` trains nothing) and writes one row per unit and period.

Chips are streamed (:mod:`geocausal.encoders.stream`): a cache is read in blocks of units that
fit the memory budget (``memory_budget=`` / ``$GEOCAUSAL_MEMORY_BUDGET``, ``block_units=``),
never loaded whole; training images that fit the budget are gathered in memory, more are
streamed in shuffled minibatches. ``embed(..., workers=N)`` or ``scheduler=ADDRESS`` embeds the
blocks on Dask workers (which must see the cache folder); the result equals the serial run.

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
from geocausal.encoders.stream import (
    ChipSource,
    choose_items,
    fit_streaming,
    gather,
    is_lazy,
    streaming_band_statistics,
)
from geocausal.encoders.stream import memory_budget as stream_budget
from geocausal.encoders.train import TrainConfig, embed_array, fit
from geocausal.errors import DataError


def _ssl_setup(spec: ModelSpec, n_train: int, *, epochs: int, batch_size: int,
               learning_rate: float, progress: bool) -> tuple[ModelSpec, TrainConfig]:
    """The spec (with a projection head) and training settings of self-supervised training."""
    spec = replace(spec, proj_dim=spec.proj_dim or max(spec.embed_dim, 8), n_outputs=0)
    cfg = TrainConfig(epochs=epochs, batch_size=max(1, min(batch_size, n_train)), val_frac=0.0,
                      learning_rate=learning_rate, band_dropout=0.2, progress=progress)
    return spec, cfg


def train_self_supervised(x: np.ndarray, mask: np.ndarray | None, spec: ModelSpec, *,
                          seed: int = 0, epochs: int = 3, batch_size: int = 128,
                          max_train: int | None = 1024, learning_rate: float = 3e-3,
                          progress: bool = True):
    """Contrastive training of ``spec`` on (a random subset of at most ``max_train``) images.

    Returns the trained model (``"random"`` encoders only get their normalisation statistics).
    """
    idx = choose_items(x.shape[0], max_train, seed)
    spec, cfg = _ssl_setup(spec, len(idx), epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, progress=progress)
    model = build_model(spec, seed)
    if spec.encoder == "random" or epochs <= 0:
        set_normaliser(model, x, mask)
        return model
    res = fit(model, contrastive(proj_dim=spec.proj_dim), x[idx],
              mask=None if mask is None else mask[idx], config=cfg, seed=seed)
    return res.model


def train_source(source: ChipSource, spec: ModelSpec, chosen: np.ndarray, *,
                 sequences: bool = False, seed: int = 0, epochs: int = 3,
                 batch_size: int = 128, learning_rate: float = 3e-3, progress: bool = True,
                 memory_budget: int | str | None = None):
    """:func:`train_self_supervised` on the ``chosen`` images of a streamed source.

    ``chosen`` holds unit-order item indices (``unit * T + period`` for single dates, ``unit``
    for sequences). When they fit the memory budget they are gathered and trained in memory
    (the same model as :func:`train_self_supervised` on the loaded array); otherwise training
    streams minibatches from the source (:func:`~geocausal.encoders.stream.fit_streaming`).
    """
    spec, cfg = _ssl_setup(spec, len(chosen), epochs=epochs, batch_size=batch_size,
                           learning_rate=learning_rate, progress=progress)
    model = build_model(spec, seed)
    if spec.encoder == "random" or epochs <= 0:
        return _random_model(source, spec, seed, None)
    item = (source.t,) * sequences + source.frame_shape
    nbytes = len(chosen) * int(np.prod(item)) * 5
    if nbytes * 3 <= stream_budget(memory_budget):
        x, m = gather(source, chosen, sequences=sequences)
        return fit(model, contrastive(proj_dim=spec.proj_dim), x, mask=m, config=cfg,
                   seed=seed).model
    return fit_streaming(model, contrastive(proj_dim=spec.proj_dim), source, chosen=chosen,
                         config=cfg, seed=seed, sequences=sequences).model


def embed_source(model, source: ChipSource, *, sequences: bool = False,
                 client: Any = None) -> np.ndarray:
    """Embeddings of every image of ``source``, block by block: ``(N, T, d)`` for a
    single-date encoder, ``(N, d)`` for a sequence encoder (``sequences=True``).

    With a Dask ``client`` the blocks are embedded on its workers (they read the cache at
    ``source.path`` themselves); the result equals the serial one.
    """
    n = source.n
    if client is not None:
        if source.path is None:
            raise DataError("embedding on Dask workers needs a chips cache on disk (its path "
                            "is sent to the workers); pass the cache, not arrays")
        shared = client.scatter(model, broadcast=True)
        futures = client.map(_embed_span, [(str(source.path), a, b, source.block_units,
                                            sequences) for a, b in source.spans()],
                             model=shared, pure=False)
        parts = client.gather(futures)
    else:
        parts = (_embed_block(model, units, x, m, sequences)
                 for units, x, m in source.blocks())
    out = None
    for units, z in parts:
        if out is None:
            out = np.zeros((n, *z.shape[1:]), np.float32)
        out[units] = z
    return out


def _embed_block(model, units: np.ndarray, x: np.ndarray, m: np.ndarray | None,
                 sequences: bool) -> tuple[np.ndarray, np.ndarray]:
    if sequences:
        return units, embed_array(model, x, m, batch_size=max(1, 256 // x.shape[1]))
    b, t = x.shape[:2]
    frames = x.reshape((b * t, *x.shape[2:]))
    fm = None if m is None else m.reshape((b * t, *m.shape[2:]))
    if getattr(model, "is_sequence", False):
        z = _frame_embed(model, model.encoder.frame, frames, fm)
    else:
        z = embed_array(model, frames, fm)
    return units, z.reshape(b, t, z.shape[-1])


def _embed_span(job: tuple, model) -> tuple[np.ndarray, np.ndarray]:
    """One Dask task: open the cache, read storage rows ``a:b`` and embed them."""
    from geocausal.data.chips import open_cache

    path, a, b, block_units, sequences = job
    src = ChipSource.of(open_cache(path), block_units=block_units, budget=2**62)
    units, x, m = src._read(a, b)
    return _embed_block(model, units, x, m, sequences)


def _source_of(chips: Any, mask: Any, block_units: int | None,
               memory_budget: int | str | None) -> ChipSource:
    if hasattr(chips, "chips") and hasattr(chips, "unit_ids"):
        return ChipSource.of(chips, block_units=block_units, budget=memory_budget)
    if not is_lazy(chips):
        x = np.asarray(chips, np.float32)
        if x.ndim not in (4, 5):
            raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape "
                            f"{x.shape}")
        if mask is not None and np.asarray(mask).shape != x.shape[:-1]:
            raise DataError(f"mask shape {np.asarray(mask).shape} must equal chips shape "
                            f"without bands {x.shape[:-1]}")
        chips = x
    return ChipSource.of(chips, mask, block_units=block_units, budget=memory_budget)


def learned_features(chips: Any, mask: np.ndarray | None = None, seed: int = 0, *,
                     encoder: str = "cnn", epochs: int = 3, embed_dim: int = 16,
                     widths: tuple[int, ...] = (8, 16), batch_size: int = 128,
                     max_train: int | None = 1024, progress: bool = True,
                     block_units: int | None = None, memory_budget: int | str | None = None,
                     **kwargs: Any) -> np.ndarray:
    """Self-supervised embeddings of every unit: ``(N, T * embed_dim)``.

    Each date of each unit is one image; a ``encoder`` (``"cnn"``, ``"vit"`` or ``"random"``)
    is trained contrastively for ``epochs`` on at most ``max_train`` of them, then every image
    is embedded and a unit's dates are concatenated in period order.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)`` array, or a chips cache (``ChipsCache``,
        ``ChipsResult``) which is streamed in blocks of units, never loaded whole.
    mask
        Valid pixels, chips' shape without the band axis (a cache brings its own).
    seed
        Seeds initialisation, subsample, batches and augmentations.
    encoder, epochs, embed_dim, widths, batch_size, max_train, progress
        Model and training size.
    block_units, memory_budget
        Units per block and the memory chips may take (see :mod:`geocausal.encoders.stream`).
    kwargs
        Other :class:`~geocausal.encoders.modules.ModelSpec` fields (``patch``, ``dim``...).
    """
    if encoder not in ("cnn", "vit", "random"):
        raise DataError(f"learned_features encoder={encoder!r} must be 'cnn', 'vit' or 'random'")
    src = _source_of(chips, mask, block_units, memory_budget)
    spec = ModelSpec(encoder=encoder, in_bands=src.shape[-1], embed_dim=embed_dim,
                     widths=tuple(widths), **kwargs)
    chosen = choose_items(src.n * src.t, max_train, seed)
    model = train_source(src, spec, chosen, seed=seed, epochs=epochs, batch_size=batch_size,
                         progress=progress, memory_budget=memory_budget)
    z = embed_source(model, src)
    return z.reshape(src.n, -1).astype(np.float64)


def foldwise_learned_features(chips: Any, fold_ids: np.ndarray,
                               mask: np.ndarray | None = None, seed: int = 0, *,
                               encoder: str = "cnn", epochs: int = 3, embed_dim: int = 16,
                               widths: tuple[int, ...] = (8, 16), batch_size: int = 128,
                               max_train: int | None = 1024, progress: bool = True,
                               block_units: int | None = None,
                               memory_budget: int | str | None = None,
                               **kwargs: Any) -> np.ndarray:
    """Cross-fitted self-supervised embeddings: ``(K, N, T * embed_dim)``.

    For each fold ``k`` an encoder is trained (as in :func:`learned_features`) only on the
    images of units outside fold ``k``, then embeds every unit. A nuisance model for fold ``k``
    is then fit on the other folds' rows of ``out[k]`` and predicts fold ``k``'s rows, so
    neither the representation nor the nuisance model has seen the units it predicts. Chips
    (an array or a chips cache) are streamed in blocks as in :func:`learned_features`.

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
    src = _source_of(chips, mask, block_units, memory_budget)
    n, t = src.n, src.t
    fold_ids = np.asarray(fold_ids)
    if fold_ids.shape != (n,):
        raise DataError(f"fold_ids has shape {fold_ids.shape}, expected ({n},)")
    frame_fold = np.repeat(fold_ids, t)
    spec = ModelSpec(encoder=encoder, in_bands=src.shape[-1], embed_dim=embed_dim,
                     widths=tuple(widths), **kwargs)
    out = []
    for j, k in enumerate(np.unique(fold_ids)):
        train = np.flatnonzero(frame_fold != k)
        chosen = train[choose_items(len(train), max_train, seed + j)]
        if encoder == "random" or epochs <= 0:  # statistics of the training folds only
            model = _random_model(src, spec, seed + j, frame_fold != k)
        else:
            model = train_source(src, spec, chosen, seed=seed + j, epochs=epochs,
                                 batch_size=batch_size, progress=progress,
                                 memory_budget=memory_budget)
        out.append(embed_source(model, src).reshape(n, -1).astype(np.float64))
    return np.stack(out)


def _random_model(src: ChipSource, spec: ModelSpec, seed: int, select: np.ndarray | None):
    """An untrained encoder normalised by the statistics of the selected images."""
    spec, _ = _ssl_setup(spec, 1, epochs=0, batch_size=1, learning_rate=1.0, progress=False)
    model = build_model(spec, seed)
    import jax.numpy as jnp

    mean, std = streaming_band_statistics(
        src, None if select is None else np.asarray(select).reshape(src.n, src.t))
    model.band_mean[...] = jnp.asarray(mean)
    model.band_std[...] = jnp.asarray(std)
    return model


def embed(cache_path: Any, out: str | Path, *, encoder: str = "cnn", seed: int = 0,
          epochs: int = 5, embed_dim: int = 32, batch_size: int = 64,
          max_train: int | None = None, progress: bool = True,
          block_units: int | None = None, memory_budget: int | str | None = None,
          workers: int | None = None, scheduler: str | None = None) -> Path:
    """Embed every unit and period of a chips cache and write a Parquet table.

    Columns: ``unit_id``, ``period``, ``emb_0 .. emb_{d-1}``. ``encoder="sequence"`` trains a
    sequence encoder (shared CNN per date, temporal transformer) on each unit's whole
    sequence; its per-date CNN embeddings fill ``emb_*`` and the unit's sequence embedding is
    repeated in ``seq_0 ..``. The other encoders are trained on single dates.

    The cache is streamed in blocks of ``block_units`` units (default: as many as fit
    ``memory_budget``, see :mod:`geocausal.encoders.stream`); ``workers`` (a local Dask
    cluster) or ``scheduler`` (an address) embeds the blocks on Dask workers.

    Raises
    ------
    DataError
        Unknown encoder, a malformed cache, a ``block_units`` (or a single unit) that does
        not fit the memory budget, a bad ``workers`` or an unreachable scheduler.

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
    from geocausal.parallel import check_workers, dask_client

    if encoder not in ENCODERS:
        raise DataError(f"encoder={encoder!r} is not one of {ENCODERS}")
    check_workers(workers)
    if isinstance(cache_path, str | Path):
        from geocausal.data.chips import open_cache

        cache = open_cache(cache_path)
    else:
        cache = cache_path
    src = ChipSource.of(cache, block_units=block_units, budget=memory_budget)
    n, t = src.n, src.t
    unit_ids = np.asarray(cache.unit_ids)
    periods = np.asarray(cache.periods)
    if len(unit_ids) != n or len(periods) != t:
        raise DataError(f"cache has {len(unit_ids)} unit ids and {len(periods)} periods for "
                        f"chips of shape {src.shape}")
    kw = dict(seed=seed, epochs=epochs, batch_size=batch_size, progress=progress,
              memory_budget=memory_budget)
    seq = None
    with dask_client(scheduler, workers) as client:
        if encoder == "sequence":
            spec = ModelSpec(encoder="sequence", in_bands=src.shape[-1], embed_dim=embed_dim,
                             max_len=max(64, t))
            model = train_source(src, spec, choose_items(n, max_train, seed), sequences=True,
                                 **kw)
            seq = embed_source(model, src, sequences=True, client=client)
        else:
            spec = ModelSpec(encoder=encoder, in_bands=src.shape[-1], embed_dim=embed_dim)
            model = train_source(src, spec, choose_items(n * t, max_train, seed), **kw)
        z = embed_source(model, src, client=client)
    z = z.reshape(n * t, -1)
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

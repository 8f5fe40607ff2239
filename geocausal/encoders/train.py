"""Training library: a pure jitted train step, the fit loop and batched inference.

The model is split once into a static graph, trainable parameters (``nnx.Param``) and the rest
of its state (normalisation statistics, frozen weights). The train step is a pure function
``(params, rest, opt_state, batch, key) -> (params, opt_state, loss)`` compiled with
``jax.jit``: no hidden state, the random key is explicit (one ``fold_in`` per step). The
optimiser is AdamW with linear warm-up and cosine decay, after global-norm gradient clipping
(optax). Each sample is augmented by a random flip / 90-degree rotation and band dropout.
Per-band normalisation statistics are computed from the training images and stored in the
model. Held-out loss is evaluated after each epoch; training stops after ``patience`` epochs
without improvement and the best parameters are kept. On GPU the forward and backward passes
run in bfloat16 (parameters and optimiser state stay float32). With several devices the batch
is sharded across them (see :mod:`geocausal.encoders.sharding`).

Examples
--------
>>> import numpy as np
>>> from geocausal.encoders.modules import ModelSpec, build_model
>>> from geocausal.encoders.objectives import binary
>>> rng = np.random.default_rng(0)
>>> x = rng.normal(size=(32, 8, 8, 2)).astype("float32"); y = (x[..., 0].mean((1, 2)) > 0) * 1.0
>>> model = build_model(ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,), n_outputs=1))
>>> res = fit(model, binary(), x, y, config=TrainConfig(epochs=2, batch_size=16, progress=False))
>>> len(res.train_loss), predict(res.model, x).shape
(2, (32, 1))
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from geocausal.encoders import sharding
from geocausal.encoders.augment import augment
from geocausal.encoders.modules import ImageModel, set_normaliser
from geocausal.encoders.objectives import Objective
from geocausal.errors import DataError

#: environment variable naming a folder for JAX's persistent compilation cache (opt-in)
CACHE_ENV = "GEOCAUSAL_JAX_CACHE"


def enable_compile_cache(path: str | os.PathLike[str] | None = None) -> Path | None:
    """Keep compiled XLA programs on disk so later runs skip compilation (opt-in).

    Nothing is cached unless asked: importing geocausal never touches JAX's configuration or
    the file system. Call this function with a folder, or set ``GEOCAUSAL_JAX_CACHE=DIR``
    (read when a model is first trained by :func:`fit`). A cache folder the user already
    configured in JAX is left alone.

    Parameters
    ----------
    path : str or os.PathLike, optional
        Folder for the cache; created if needed. ``None`` reads ``$GEOCAUSAL_JAX_CACHE``
        and does nothing when it is unset, empty or ``"0"``.

    Returns
    -------
    pathlib.Path or None
        The cache folder JAX now uses, or None when no cache is on.

    Raises
    ------
    DataError
        When ``path`` (or the environment variable) names a folder that cannot be created.

    Examples
    --------
    >>> import os, tempfile, jax
    >>> previous = jax.config.jax_compilation_cache_dir  # None unless the user set one
    >>> with tempfile.TemporaryDirectory() as tmp:
    ...     where = enable_compile_cache(os.path.join(tmp, "jax"))
    ...     print(where.is_dir(), jax.config.jax_compilation_cache_dir == str(where))
    ...     jax.config.update("jax_compilation_cache_dir", previous)  # switch it off again
    True True
    """
    if path is None:
        env = os.environ.get(CACHE_ENV, "").strip()
        if env in ("", "0"):
            return None
        path = env
    current = jax.config.jax_compilation_cache_dir
    if current:
        return Path(current)
    folder = Path(path).expanduser()
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the JAX compilation cache folder '{folder}' ({exc}); "
                        f"give a writable folder to enable_compile_cache() or "
                        f"{CACHE_ENV}") from exc
    jax.config.update("jax_compilation_cache_dir", str(folder))
    return folder


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation settings.

    ``compute_dtype`` ``"auto"`` means bfloat16 on GPU/TPU and float32 on CPU. ``shard``
    trains data-parallel over all devices when there are several. ``val_frac`` of the units
    are held out for early stopping (0 disables it).
    """

    epochs: int = 10
    batch_size: int = 64
    learning_rate: float = 2e-3
    weight_decay: float = 1e-4
    warmup_frac: float = 0.1
    clip_norm: float = 1.0
    val_frac: float = 0.2
    patience: int = 3
    flips: bool = True
    band_dropout: float = 0.1
    compute_dtype: str = "auto"
    progress: bool = True
    shard: bool = True


@dataclass(frozen=True)
class TrainResult:
    """Trained model (best held-out epoch) and its loss history."""

    model: ImageModel
    train_loss: tuple[float, ...]
    val_loss: tuple[float, ...]
    step_loss: tuple[float, ...]
    best_epoch: int
    stopped_early: bool


def resolve_dtype(name: str) -> jnp.dtype:
    """``"auto"`` -> bfloat16 on accelerators, float32 on CPU."""
    if name == "auto":
        return jnp.bfloat16 if jax.default_backend() in ("gpu", "tpu") else jnp.float32
    if name not in ("float32", "bfloat16"):
        raise DataError(f"compute_dtype={name!r} must be 'auto', 'float32' or 'bfloat16'")
    return jnp.dtype(name)


def learning_rate_schedule(cfg: TrainConfig, total_steps: int) -> optax.Schedule:
    """Linear warm-up to ``cfg.learning_rate`` then cosine decay to 1% of it."""
    total = max(int(total_steps), 1)
    warm = max(int(cfg.warmup_frac * total), 1) if total > 1 else 0
    return optax.warmup_cosine_decay_schedule(
        init_value=cfg.learning_rate * 0.01, peak_value=cfg.learning_rate,
        warmup_steps=warm, decay_steps=max(total, warm + 1), end_value=cfg.learning_rate * 0.01)


def make_optimizer(cfg: TrainConfig) -> optax.GradientTransformation:
    """Global-norm clipping, then the AdamW direction (Adam scaling plus decoupled weight decay).

    The step size is applied by the train step (``-lr * update``) with ``lr`` from
    :func:`learning_rate_schedule`: together this is ``optax.adamw`` on that schedule, and one
    compiled step serves any number of steps (every fold of a cross-fit reuses it).
    """
    return optax.chain(optax.clip_by_global_norm(cfg.clip_norm), optax.scale_by_adam(),
                       optax.add_decayed_weights(cfg.weight_decay))


def _cast(tree, dtype):
    return jax.tree.map(lambda a: a.astype(dtype) if jnp.issubdtype(a.dtype, jnp.floating)
                        else a, tree)


def make_train_step(graphdef, objective: Objective, cfg: TrainConfig,
                    dtype_name: str = "float32"):
    """The pure jitted step ``(params, rest, opt_state, batch, key, lr) -> (params, opt_state,
    loss)`` (cached: models with the same structure and settings share one compiled step).
    """
    return _train_step(graphdef, objective, cfg.clip_norm, cfg.weight_decay, cfg.flips,
                       cfg.band_dropout, dtype_name)


@functools.lru_cache(maxsize=32)
def _train_step(graphdef, objective, clip_norm, weight_decay, flips, band_dropout, dtype_name):
    dtype = jnp.dtype(dtype_name)
    tx = make_optimizer(TrainConfig(clip_norm=clip_norm, weight_decay=weight_decay))
    aug = functools.partial(augment, flips=flips, band_dropout=band_dropout)

    def loss_fn(params, rest, batch, key):
        model = nnx.merge(graphdef, _cast(params, dtype), rest)
        return objective.loss(model, batch, key, aug, dtype)

    # params and optimiser state are donated: XLA updates them in place instead of allocating
    # new buffers every step (callers keep a copy of any params they need later)
    @functools.partial(jax.jit, donate_argnums=(0, 2))
    def step(params, rest, opt_state, batch, key, lr):
        loss, grads = jax.value_and_grad(loss_fn)(params, rest, batch, key)
        updates, opt_state = tx.update(grads, opt_state, params)
        updates = jax.tree.map(lambda u: -lr * u, updates)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


def own_copy(tree):
    """Fresh device buffers of ``tree`` (the train step donates its params and optimiser
    state; a snapshot such as the best epoch's params must not share them).
    """
    return jax.tree.map(jnp.copy, tree)


@functools.lru_cache(maxsize=32)
def make_eval_loss(graphdef, objective: Objective, dtype_name: str = "float32"):
    """Jitted held-out loss (no augmentation for supervised heads; fixed views otherwise)."""
    dtype = jnp.dtype(dtype_name)
    aug = ((lambda k, x: x) if objective.supervised
           else functools.partial(augment, flips=True, band_dropout=0.0))

    @jax.jit
    def loss(params, rest, batch, key):
        model = nnx.merge(graphdef, _cast(params, dtype), rest)
        return objective.loss(model, batch, key, aug, dtype)

    return loss


def normalised(model: ImageModel, x: np.ndarray, mask: np.ndarray | None) -> np.ndarray:
    """Host-side per-band z-scores with invalid pixels at 0 (same rule as the model)."""
    mean = np.asarray(model.band_mean[...])
    std = np.asarray(model.band_std[...])
    z = (np.asarray(x, np.float32) - mean) / std
    valid = np.isfinite(z)
    if mask is not None:
        valid &= np.asarray(mask, bool)[..., None]
    return np.where(valid, z, np.float32(0)).astype(np.float32)


def _check_inputs(model: ImageModel, x, y, tab, mask):
    x = np.asarray(x)
    want = 5 if model.is_sequence else 4
    if x.ndim != want:
        raise DataError(f"images must have {want} axes for encoder={model.spec.encoder!r}, "
                        f"got shape {x.shape}")
    if x.shape[-1] != model.spec.in_bands:
        raise DataError(f"images have {x.shape[-1]} bands, the model expects "
                        f"{model.spec.in_bands}")
    n = x.shape[0]
    if y is not None:
        y = np.asarray(y, np.float32)
        y = y[:, None] if y.ndim == 1 else y
        if y.shape[0] != n:
            raise DataError(f"targets have {y.shape[0]} rows, images have {n}")
    if tab is not None:
        tab = np.asarray(tab, np.float32)
        if tab.shape[0] != n or tab.ndim != 2:
            raise DataError(f"tabular covariates must be ({n}, p), got {tab.shape}")
        if not np.all(np.isfinite(tab)):
            raise DataError("tabular covariates contain non-finite values; impute them first")
    if mask is not None and np.asarray(mask).shape != x.shape[:-1]:
        raise DataError(f"mask shape {np.asarray(mask).shape} must equal images shape "
                        f"without bands {x.shape[:-1]}")
    return x, y, tab



class TrainingSetup(NamedTuple):
    """What a training loop needs before its first step (:func:`training_setup`)."""

    ndev: int
    batch_size: int
    steps_per_epoch: int
    dtype: str
    tx: Any
    schedule: Any
    graphdef: Any
    params: Any
    rest: Any
    opt_state: Any
    mesh: Any
    step: Any


def training_setup(model: Any, objective: Any, cfg: TrainConfig, n_train: int,
                   what: str = "rows") -> TrainingSetup:
    """Batch size over the local devices, optimiser, schedule, split state and the jitted step.

    Shared by in-memory training (:func:`fit`) and streamed training
    (:func:`geocausal.encoders.stream.fit_streaming`). The batch is the configured size cut to
    a multiple of the devices used; fewer than 2 rows per batch is a :class:`DataError`.
    """
    devices = jax.devices()
    use_mesh = cfg.shard and len(devices) > 1
    ndev = len(devices) if use_mesh else 1
    bs = min(cfg.batch_size, n_train) // ndev * ndev
    if bs < 2:
        raise DataError(f"too few training {what} ({n_train}) for batch_size="
                        f"{cfg.batch_size} on {ndev} devices")
    steps_per_epoch = n_train // bs
    dtype = jnp.dtype(resolve_dtype(cfg.compute_dtype)).name
    tx = make_optimizer(cfg)
    sched = learning_rate_schedule(cfg, cfg.epochs * steps_per_epoch)
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    params = own_copy(params)  # the step donates them: never the caller's model's buffers
    opt_state = tx.init(params)
    mesh = sharding.data_mesh(devices) if use_mesh else None
    if mesh is not None:
        params, rest, opt_state = sharding.replicate((params, rest, opt_state), mesh)
    step = make_train_step(graphdef, objective, cfg, dtype)
    return TrainingSetup(ndev, bs, steps_per_epoch, dtype, tx, sched, graphdef, params, rest,
                         opt_state, mesh, step)


def fit(model: ImageModel, objective: Objective, x: np.ndarray, y: np.ndarray | None = None,
        *, tab: np.ndarray | None = None, mask: np.ndarray | None = None,
        config: TrainConfig | None = None, seed: int = 0,
        val_idx: np.ndarray | None = None) -> TrainResult:
    """Train a copy of ``model`` on ``objective``; return the best held-out epoch's model.

    Parameters
    ----------
    model
        An :class:`~geocausal.encoders.modules.ImageModel` (not modified).
    objective
        From :mod:`geocausal.encoders.objectives`.
    x
        Raw images ``(N, H, W, C)`` or sequences ``(N, T, H, W, C)``.
    y
        Targets ``(N,)`` or ``(N, k)`` for supervised objectives (NaN = missing).
    tab
        Tabular covariates ``(N, p)`` fed to the head.
    mask
        Valid-pixel mask, images' shape without the band axis.
    config
        :class:`TrainConfig`.
    seed
        Seeds the split, the batch order, the augmentations.
    val_idx
        Explicit held-out rows (default: a random ``config.val_frac`` of rows).
    """
    cfg = config or TrainConfig()
    enable_compile_cache()  # only when $GEOCAUSAL_JAX_CACHE names a folder
    if objective.supervised and y is None:
        raise DataError(f"objective {objective.kind!r} needs targets y")
    x, y, tab = _check_inputs(model, x, y, tab, mask)
    if objective.supervised and y.shape[1] != model.spec.n_outputs:
        raise DataError(f"targets have {y.shape[1]} columns, the head has "
                        f"{model.spec.n_outputs} outputs")
    if not objective.supervised and model.projector is None:
        raise DataError("contrastive training needs a projection head: set proj_dim > 0")
    n = x.shape[0]
    rng = np.random.default_rng(seed)
    if val_idx is None:
        n_val = int(round(cfg.val_frac * n)) if cfg.val_frac > 0 and n >= 10 else 0
        perm = rng.permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    else:
        val_idx = np.asarray(val_idx, int)
        train_idx = np.setdiff1d(np.arange(n), val_idx)
    model = nnx.clone(model)
    set_normaliser(model, x[train_idx], None if mask is None else np.asarray(mask)[train_idx])
    xn = normalised(model, x, mask)

    su = training_setup(model, objective, cfg, len(train_idx), "rows")
    ndev, bs, steps_per_epoch, dtype, sched, mesh, step = (
        su.ndev, su.batch_size, su.steps_per_epoch, su.dtype, su.schedule, su.mesh, su.step)
    graphdef, params, rest, opt_state = su.graphdef, su.params, su.rest, su.opt_state
    eval_loss = make_eval_loss(graphdef, objective, dtype)
    key = jax.random.key(seed)

    def batch_of(idx):
        b = {"x": xn[idx]}
        if y is not None:
            b["y"] = y[idx]
        if tab is not None:
            b["tab"] = tab[idx]
        if mesh is None:
            return jax.device_put(b)
        if len(idx) % ndev:  # a ragged held-out remainder: copy it to every device
            return sharding.replicate(b, mesh)
        return sharding.shard_batch(b, mesh)

    best = (np.inf, own_copy(params), -1)
    train_hist, val_hist, step_hist = [], [], []
    bad = 0
    stopped = False
    t = 0
    from geocausal._progress import progress

    bar = progress(range(cfg.epochs), desc=f"train {model.spec.encoder}",
                   enabled=bool(cfg.progress))
    for epoch in bar:
        order = train_idx[rng.permutation(len(train_idx))]
        pending = []
        nxt = batch_of(order[:bs]) if steps_per_epoch else None
        for s in range(steps_per_epoch):
            cur = nxt
            params, opt_state, loss = step(params, rest, opt_state, cur,
                                           jax.random.fold_in(key, t),
                                           jnp.float32(sched(t)))
            t += 1
            pending.append(loss)  # no host sync per step: the next batch is gathered while
            if s + 1 < steps_per_epoch:  # this step runs (asynchronous dispatch)
                nxt = batch_of(order[(s + 1) * bs:(s + 2) * bs])
        losses = [float(v) for v in jax.device_get(pending)]
        step_hist.extend(losses)
        train_hist.append(float(np.mean(losses)))
        if len(val_idx):
            tot = 0.0
            for s in range(0, len(val_idx), bs):
                idx = val_idx[s:s + bs]
                tot += float(eval_loss(params, rest, batch_of(idx),
                                       jax.random.key(seed + 1))) * len(idx)
            vl: float | None = tot / len(val_idx)
            val_hist.append(vl)
        else:
            vl = None
        best, bad, stopped = epoch_end(best, bad, vl, params, epoch, cfg.patience, bar,
                                       train_hist[-1])
        if stopped:
            break
    bar.close()
    return finish_training(graphdef, best, rest, train_hist, val_hist, step_hist, stopped)


def epoch_end(best: tuple, bad: int, val_loss: float | None, params: Any, epoch: int,
              patience: int, bar: Any, train_loss: float) -> tuple[tuple, int, bool]:
    """Early stopping after one epoch: ``(best, epochs without improvement, stop)``.

    ``best`` is ``(loss, params copy, epoch)``; without a held-out split every epoch is the
    best. Shared by in-memory and streamed training.

    Examples
    --------
    >>> class Bar:
    ...     def set_postfix(self, **kw): pass
    >>> best, bad, stop = epoch_end((1.0, None, 0), 0, 2.0, {}, 1, 1, Bar(), 0.5)
    >>> best[0], bad, stop
    (1.0, 1, True)
    """
    if val_loss is None:
        bar.set_postfix(train=f"{train_loss:.4f}")
        return (train_loss, own_copy(params), epoch), bad, False
    if val_loss < best[0] - 1e-6:
        best, bad = (val_loss, own_copy(params), epoch), 0
    else:
        bad += 1
    bar.set_postfix(train=f"{train_loss:.4f}", val=f"{val_loss:.4f}")
    return best, bad, bad >= patience


def finish_training(graphdef: Any, best: tuple, rest: Any, train_hist: list, val_hist: list,
                    step_hist: list, stopped: bool) -> TrainResult:
    """The trained model at the best epoch, or a named error when a loss was not finite."""
    if not np.all(np.isfinite(step_hist)):
        raise DataError(f"training diverged: {int((~np.isfinite(step_hist)).sum())} "
                        "non-finite losses; lower learning_rate or check the images")
    host = jax.device_get((best[1], rest))
    trained = nnx.merge(graphdef, *host)
    return TrainResult(trained, tuple(train_hist), tuple(val_hist), tuple(step_hist),
                       int(best[2]), stopped)


@functools.lru_cache(maxsize=64)
def _forward(graphdef, kind: str, dtype_name: str, with_tab: bool, with_mask: bool):
    dtype = jnp.dtype(dtype_name)

    @jax.jit
    def f(params, rest, x, mask, tab):
        m = nnx.merge(graphdef, _cast(params, dtype), rest)
        z = m.encode(m.normalise(x, mask if with_mask else None).astype(dtype))
        if kind == "embed":
            return z.astype(jnp.float32)
        if kind == "project":
            return m.projector(z).astype(jnp.float32)
        return m.predict_head(z, tab.astype(dtype) if with_tab else None).astype(jnp.float32)

    return f


def _apply(model: ImageModel, kind: str, x, tab=None, mask=None, batch_size: int = 256,
           compute_dtype: str = "float32") -> np.ndarray:
    x = np.asarray(x, np.float32)
    n = x.shape[0]
    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    dtype = resolve_dtype(compute_dtype)
    f = _forward(graphdef, kind, jnp.dtype(dtype).name, tab is not None, mask is not None)
    bs = max(1, min(batch_size, n))
    outs = []
    for s in range(0, n, bs):
        sl = slice(s, min(s + bs, n))
        xb = x[sl]
        pad = bs - xb.shape[0]
        mb = None if mask is None else np.asarray(mask, bool)[sl]
        tb = None if tab is None else np.asarray(tab, np.float32)[sl]
        if pad:
            xb = np.concatenate([xb, np.zeros((pad, *xb.shape[1:]), np.float32)])
            mb = None if mb is None else np.concatenate([mb, np.ones((pad, *mb.shape[1:]), bool)])
            tb = None if tb is None else np.concatenate([tb, np.zeros((pad, tb.shape[1]),
                                                                      np.float32)])
        outs.append(np.asarray(f(params, rest, xb, mb, tb))[: bs - pad])
    return np.concatenate(outs, axis=0)


def embed_array(model: ImageModel, x, mask=None, *, batch_size: int = 256,
                compute_dtype: str = "float32") -> np.ndarray:
    """Embeddings ``(N, embed_dim)`` of raw images, in fixed-size jitted batches."""
    return _apply(model, "embed", x, None, mask, batch_size, compute_dtype)


def predict(model: ImageModel, x, tab=None, mask=None, *, batch_size: int = 256,
            compute_dtype: str = "float32") -> np.ndarray:
    """Head outputs ``(N, n_outputs)`` (logits for binary targets)."""
    return _apply(model, "head", x, tab, mask, batch_size, compute_dtype)

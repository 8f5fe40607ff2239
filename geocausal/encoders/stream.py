"""Streaming chips in blocks of units: a memory budget, block readers and a streaming trainer.

Chips caches at paper scale (10,000 units x 4 periods x 64x64 px x 6 bands is 3.9 GB of
float32) do not fit comfortably in memory next to a model. Everything that consumes chips
(``gc.embed``, learned features, ``ImageLearner`` predictions, salience) reads them here, in
blocks of whole units, never the whole array:

- :func:`memory_budget` is the memory chips may take at once: ``memory_budget=`` or
  ``$GEOCAUSAL_MEMORY_BUDGET`` (``"2GB"``, ``"512MB"``, bytes), default 2 GB.
- :func:`plan_block_units` turns it into units per block (each block is held in a few copies:
  raw, normalised, the next block being prefetched). A ``block_units=`` that does not fit, or a
  single unit larger than the budget, is a :class:`~geocausal.errors.DataError` that says what
  to lower: never an out-of-memory kill.
- :class:`ChipSource` reads a chips cache (storage order, each zarr chunk once, the next block
  prefetched by a background thread) or in-memory arrays through one interface.
- :func:`fit_streaming` trains an encoder on more images than fit in memory: an epoch visits
  the blocks in a random order and shuffles each block's images into minibatches (a shuffle
  buffer of one block); the normalisation statistics are computed in one streaming pass.

Examples
--------
>>> import numpy as np
>>> src = ChipSource.of(np.zeros((10, 2, 4, 4, 3), "float32"), block_units=4)
>>> [len(u) for u, x, m in src.blocks()]
[4, 4, 2]
>>> plan_block_units(1_000_000, budget="100MB", copies=4)
26
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

from geocausal.errors import DataError

#: default memory chips may take at once (bytes)
DEFAULT_BUDGET = 2 * 1024**3
#: copies of a block alive at once (raw block, normalised copy, prefetched next block, masks)
BLOCK_COPIES = 4
_UNITS = {"": 1, "b": 1, "kb": 1024, "k": 1024, "mb": 1024**2, "m": 1024**2,
          "gb": 1024**3, "g": 1024**3, "tb": 1024**4, "t": 1024**4}


def format_bytes(n: float) -> str:
    """``1536 -> '1.5 KB'`` (binary units).

    Examples
    --------
    >>> format_bytes(3 * 1024**3)
    '3.0 GB'
    """
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024:
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024
    return f"{n:.1f} TB"


def memory_budget(budget: int | str | None = None) -> int:
    """Bytes chips may take in memory at once.

    ``budget`` (bytes or ``"4GB"``/``"512MB"``), else ``$GEOCAUSAL_MEMORY_BUDGET``, else 2 GB.

    Examples
    --------
    >>> memory_budget("512MB"), memory_budget(1000)
    (536870912, 1000)
    >>> memory_budget("lots")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: memory_budget='lots': give bytes or a size such as '4GB' or '512MB'
    """
    source = "memory_budget"
    if budget is None:
        env = os.environ.get("GEOCAUSAL_MEMORY_BUDGET", "").strip()
        if not env:
            return DEFAULT_BUDGET
        budget, source = env, "GEOCAUSAL_MEMORY_BUDGET"
    value: float = float("nan")
    if isinstance(budget, bool):
        pass
    elif isinstance(budget, int | float | np.integer | np.floating):
        value = float(budget)
    elif isinstance(budget, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", budget)
        if m and m.group(2).lower() in _UNITS:
            value = float(m.group(1)) * _UNITS[m.group(2).lower()]
    if not np.isfinite(value) or value < 1:
        raise DataError(f"{source}={budget!r}: give bytes or a size such as '4GB' or '512MB'")
    return int(value)


def plan_block_units(unit_bytes: int, *, block_units: int | None = None,
                     budget: int | str | None = None, copies: int = BLOCK_COPIES,
                     what: str = "chips") -> int:
    """Units per block so that ``copies`` blocks of ``unit_bytes`` each fit the budget.

    Raises
    ------
    DataError
        ``block_units`` is not a positive integer or does not fit the budget, or one unit alone
        does not fit it; the message says what to lower.

    Examples
    --------
    >>> plan_block_units(10**6, block_units=600, budget="1GB")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: block_units=600 needs 2.2 GB for chips (600 units x 976.6 KB x 4 copies), above the memory budget of 1.0 GB; lower block_units (at most 268 fit) or raise memory_budget / GEOCAUSAL_MEMORY_BUDGET
    """
    limit = memory_budget(budget)
    per = max(int(unit_bytes), 1) * copies
    fit = limit // per
    if block_units is not None:
        if (isinstance(block_units, bool) or not isinstance(block_units, int | np.integer)
                or block_units < 1):
            raise DataError(f"block_units={block_units!r}: give a positive number of units")
        need = int(block_units) * per
        if need > limit:
            raise DataError(
                f"block_units={block_units} needs {format_bytes(need)} for {what} "
                f"({block_units} units x {format_bytes(unit_bytes)} x {copies} copies), above "
                f"the memory budget of {format_bytes(limit)}; lower block_units (at most "
                f"{fit} fit) or raise memory_budget / GEOCAUSAL_MEMORY_BUDGET")
        return int(block_units)
    if fit < 1:
        raise DataError(
            f"one unit's {what} take {format_bytes(unit_bytes)} ({copies} copies: "
            f"{format_bytes(per)}), above the memory budget of {format_bytes(limit)}; lower "
            "the chip size, periods or bands, or raise memory_budget / "
            "GEOCAUSAL_MEMORY_BUDGET")
    return int(fit)


def check_fits(nbytes: int, what: str, lower: str, *, budget: int | str | None = None,
               copies: int = 3) -> None:
    """Refuse, with a named error, to load ``nbytes`` (held in ``copies``) above the budget.

    Examples
    --------
    >>> check_fits(10, "3 chips", "max_train", budget=100)
    >>> check_fits(10**9, "1000 chips", "max_train", budget="1GB")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: 1000 chips need 2.8 GB in memory (953.7 MB x 3 copies), above the memory budget of 1.0 GB; lower max_train or raise memory_budget / GEOCAUSAL_MEMORY_BUDGET
    """
    limit = memory_budget(budget)
    if nbytes * copies > limit:
        raise DataError(f"{what} need {format_bytes(nbytes * copies)} in memory "
                        f"({format_bytes(nbytes)} x {copies} copies), above the memory budget "
                        f"of {format_bytes(limit)}; lower {lower} or raise memory_budget / "
                        "GEOCAUSAL_MEMORY_BUDGET")


def is_lazy(x: Any) -> bool:
    """True for a chips cache's lazy array (it must be read in blocks, never whole)."""
    return not isinstance(x, np.ndarray) and hasattr(x, "array") and hasattr(x, "rows")


def row_blocks(n: int, unit_bytes: int, *, block_units: int | None = None,
               budget: int | str | None = None) -> Iterator[slice]:
    """Slices of ``range(n)`` in blocks that fit the memory budget.

    Examples
    --------
    >>> list(row_blocks(5, 10, block_units=2, budget=1000))
    [slice(0, 2, None), slice(2, 4, None), slice(4, 5, None)]
    """
    step = plan_block_units(unit_bytes, block_units=block_units, budget=budget)
    for a in range(0, n, step):
        yield slice(a, min(a + step, n))


class ChipSource:
    """Chips ``(N, T, H, W, C)`` and mask ``(N, T, H, W)`` read in blocks of whole units.

    Build it with :meth:`of` from a chips cache (``ChipsCache``/``ChipsResult``/its lazy
    arrays) or from in-memory arrays. :meth:`blocks` yields ``(unit_indices, chips, mask)``;
    ``unit_indices`` are positions in unit order (a cache stores units in spatial order and is
    read in that order, each chunk once).
    """

    def __init__(self, chips: Any, mask: Any, rows: np.ndarray | None, block_units: int,
                 chunk: int = 1, path: Any = None) -> None:
        self.chips = chips  # storage-order array (zarr) or unit-order numpy array
        self.mask = mask
        self.rows = rows  # rows[i]: storage row of unit i (None: storage order = unit order)
        self.chunk = max(int(chunk), 1)
        self.block_units = max(block_units // self.chunk, 1) * self.chunk
        self.path = path
        shape = tuple(chips.shape)
        self.sequence = len(shape) == 5
        self.shape = shape if self.sequence else (shape[0], 1, *shape[1:])

    @classmethod
    def of(cls, images: Any, mask: Any = None, *, block_units: int | None = None,
           budget: int | str | None = None) -> ChipSource:
        """A source over a chips cache, its lazy arrays, or numpy arrays."""
        path = None
        if hasattr(images, "chips") and hasattr(images, "unit_ids"):
            mask = getattr(images, "mask", None) if mask is None else mask
            path = getattr(images, "path", None)
            images = images.chips
        if is_lazy(images):
            chips, rows = images.array, np.asarray(images.rows)
            if len(rows) != chips.shape[0] or not np.array_equal(np.sort(rows),
                                                                  np.arange(chips.shape[0])):
                raise DataError("a chips cache view over a subset of units cannot be streamed; "
                                "pass the whole cache")
            m = None if mask is None else (mask.array if is_lazy(mask) else np.asarray(mask))
            chunk = int(chips.chunks[0])
        else:
            chips, rows, chunk = images, None, 1
            if not hasattr(chips, "shape") or len(chips.shape) not in (4, 5):
                chips = np.asarray(chips, np.float32)
            m = None if mask is None else np.asarray(mask, bool)
        shape = tuple(chips.shape)
        if len(shape) not in (4, 5):
            raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {shape}")
        if m is not None and tuple(m.shape) != shape[:-1]:
            raise DataError(f"mask shape {tuple(m.shape)} must equal chips shape without bands "
                            f"{shape[:-1]}")
        unit_bytes = int(np.prod(shape[1:])) * 4 + int(np.prod(shape[1:-1]))
        bu = plan_block_units(unit_bytes, block_units=block_units, budget=budget)
        return cls(chips, m, rows, bu, chunk, path)

    @property
    def n(self) -> int:
        return self.shape[0]

    @property
    def t(self) -> int:
        return self.shape[1]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        return tuple(self.shape[2:])

    def _read(self, a: int, b: int) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        # a block is the caller's to change (training normalises it in place): never a view of
        # an in-memory source
        x = np.array(self.chips[a:b], np.float32, copy=True)
        m = None if self.mask is None else np.asarray(self.mask[a:b], bool)
        if not self.sequence:
            x = x[:, None]
            m = None if m is None else m[:, None]
        units = np.arange(a, b) if self.rows is None else self._unit_of_row[a:b]
        return units, x, m

    @property
    def _unit_of_row(self) -> np.ndarray:
        if not hasattr(self, "_uor"):
            uor = np.empty_like(self.rows)
            uor[self.rows] = np.arange(len(self.rows))
            self._uor = uor
        return self._uor

    def spans(self) -> list[tuple[int, int]]:
        """Storage row ranges of the blocks."""
        return [(a, min(a + self.block_units, self.n)) for a in range(0, self.n, self.block_units)]

    def blocks(self, order: np.ndarray | None = None, *, prefetch: bool = True
               ) -> Iterator[tuple[np.ndarray, np.ndarray, np.ndarray | None]]:
        """Yield ``(unit_indices, chips (b, T, H, W, C), mask (b, T, H, W) or None)``.

        ``order`` permutes the blocks; with ``prefetch`` the next block is read by a
        background thread while the current one is used.
        """
        spans = self.spans()
        if order is not None:
            spans = [spans[i] for i in order]
        if not prefetch or len(spans) < 2:
            for a, b in spans:
                yield self._read(a, b)
            return
        with ThreadPoolExecutor(1) as pool:
            nxt = pool.submit(self._read, *spans[0])
            for i in range(len(spans)):
                cur = nxt.result()
                if i + 1 < len(spans):
                    nxt = pool.submit(self._read, *spans[i + 1])
                yield cur


def streaming_band_statistics(source: ChipSource, select: np.ndarray | None = None
                              ) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and SD over valid pixels, in one pass (Chan's parallel update).

    ``select`` ``(N, T)`` bool restricts to some images; agrees with
    :func:`~geocausal.encoders.modules.band_statistics` on the loaded array.

    Examples
    --------
    >>> from geocausal.encoders.modules import band_statistics
    >>> x = np.random.default_rng(0).normal(3, 2, size=(9, 2, 4, 4, 2)).astype("float32")
    >>> a = streaming_band_statistics(ChipSource.of(x, block_units=2))
    >>> b = band_statistics(x)
    >>> bool(np.allclose(a[0], b[0], atol=1e-5) and np.allclose(a[1], b[1], atol=1e-5))
    True
    """
    c = source.shape[-1]
    cnt = np.zeros(c)
    mean = np.zeros(c)
    m2 = np.zeros(c)
    for units, x, m in source.blocks():
        if select is not None:
            sel = select[units]
            x, m = x[sel], None if m is None else m[sel]
        x = x.astype(np.float64)
        valid = np.isfinite(x)
        if m is not None:
            valid &= m[..., None]
        w = valid.reshape(-1, c)
        v = np.where(valid, x, 0.0).reshape(-1, c)
        nb = w.sum(axis=0)
        if not nb.any():
            continue
        mb = v.sum(axis=0) / np.maximum(nb, 1)
        m2b = (w * (v - mb) ** 2).sum(axis=0)
        tot = cnt + nb
        delta = mb - mean
        with np.errstate(invalid="ignore", divide="ignore"):
            mean = np.where(tot > 0, mean + delta * nb / np.maximum(tot, 1), 0.0)
            m2 = m2 + m2b + delta**2 * cnt * nb / np.maximum(tot, 1)
        cnt = tot
    if np.any(cnt == 0):
        bad = np.flatnonzero(cnt == 0).tolist()
        raise DataError(f"bands {bad} have no valid pixel; check the mask and nodata values")
    std = np.sqrt(m2 / cnt)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def normalise_inplace(x: np.ndarray, mask: np.ndarray | None, mean: np.ndarray,
                      std: np.ndarray) -> np.ndarray:
    """Per-band z-scores of float32 ``x`` in place, invalid pixels at 0 (the rule of
    :func:`geocausal.encoders.train.normalised`, without its temporary copies).

    Examples
    --------
    >>> x = np.array([[[[1.0, np.nan]]]], "float32")
    >>> normalise_inplace(x, None, np.zeros(2, "float32"), np.full(2, 2, "float32")).ravel()
    array([0.5, 0. ], dtype=float32)
    """
    x -= mean
    x /= std
    bad = ~np.isfinite(x)
    if mask is not None:
        bad |= ~np.asarray(mask, bool)[..., None]
    x[bad] = 0
    return x


def choose_items(n_items: int, max_train: int | None, seed: int) -> np.ndarray:
    """Sorted item indices used for training: all, or ``max_train`` drawn with ``seed``.

    The same draw as :func:`geocausal.encoders.embed.train_self_supervised`, so streamed and
    in-memory training see the same images.

    Examples
    --------
    >>> choose_items(5, None, 0).tolist(), len(choose_items(100, 10, 0))
    ([0, 1, 2, 3, 4], 10)
    """
    idx = np.arange(n_items)
    if max_train is not None and n_items > max_train:
        idx = np.sort(np.random.default_rng(seed).choice(n_items, max_train, replace=False))
    return idx


def gather(source: ChipSource, chosen: np.ndarray, *, sequences: bool = False
           ) -> tuple[np.ndarray, np.ndarray | None]:
    """Load the chosen items (unit-order item indices: ``unit * T + period`` for frames,
    ``unit`` for sequences) in that order, reading block by block.

    Examples
    --------
    >>> x = np.arange(6 * 2 * 1 * 1 * 1, dtype="float32").reshape(6, 2, 1, 1, 1)
    >>> gather(ChipSource.of(x, block_units=4), np.array([1, 5, 10]))[0].ravel().tolist()
    [1.0, 5.0, 10.0]
    """
    t = source.t
    first = source.frame_shape if not sequences else (t, *source.frame_shape)
    out = np.empty((len(chosen), *first), np.float32)
    mout = None if source.mask is None else np.ones((len(chosen), *first[:-1]), bool)
    pos = np.full(source.n * (1 if sequences else t), -1, np.int64)
    pos[chosen] = np.arange(len(chosen))
    for units, x, m in source.blocks():
        if sequences:
            p = pos[units]
            keep = p >= 0
            out[p[keep]] = x[keep]
            if mout is not None:
                mout[p[keep]] = m[keep]
        else:
            p = pos[(units[:, None] * t + np.arange(t)[None]).ravel()]
            keep = p >= 0
            xf = x.reshape(-1, *x.shape[2:])
            out[p[keep]] = xf[keep]
            if mout is not None:
                mout[p[keep]] = m.reshape(-1, *m.shape[2:])[keep]
    return out, mout


def fit_streaming(model: Any, objective: Any, source: ChipSource, *, chosen: np.ndarray,
                  config: Any, seed: int = 0, sequences: bool = False) -> Any:
    """Train ``model`` on ``objective`` (self-supervised) streaming images from ``source``.

    ``chosen`` holds the training items (unit-order indices as in :func:`gather`). Each epoch
    visits the blocks in a random order (seeded), shuffles each block's chosen images and cuts
    them into minibatches of ``config.batch_size`` (leftovers carry into the next block); the
    next block is read while the current one trains. Returns a
    :class:`~geocausal.encoders.train.TrainResult` (no held-out split: the last epoch).
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from geocausal._progress import progress
    from geocausal.encoders import sharding
    from geocausal.encoders.train import TrainResult, training_setup

    if objective.supervised:
        raise DataError("streaming training is self-supervised only; supervised encoders "
                        "train in memory (lower max_train)")
    cfg = config
    t = source.t
    n_items = source.n * (1 if sequences else t)
    sel_flat = np.zeros(n_items, bool)
    sel_flat[np.asarray(chosen, np.int64)] = True
    select = sel_flat.reshape(source.n, -1) if not sequences else sel_flat
    model = nnx.clone(model)
    mean, std = streaming_band_statistics(
        source, select if not sequences else np.repeat(select[:, None], t, axis=1))
    model.band_mean[...] = jnp.asarray(mean)
    model.band_std[...] = jnp.asarray(std)

    n_train = int(sel_flat.sum())
    su = training_setup(model, objective, cfg, n_train, "images")
    bs, steps_per_epoch, sched, mesh, step = (su.batch_size, su.steps_per_epoch, su.schedule,
                                              su.mesh, su.step)
    graphdef, params, rest, opt_state = su.graphdef, su.params, su.rest, su.opt_state
    key = jax.random.key(seed)
    rng = np.random.default_rng(seed)
    n_blocks = len(source.spans())

    def put(xb):
        b = {"x": xb}
        return jax.device_put(b) if mesh is None else sharding.shard_batch(b, mesh)

    train_hist, step_hist = [], []
    k = 0
    bar = progress(range(cfg.epochs), desc=f"train {model.spec.encoder} (streamed)",
                   enabled=bool(cfg.progress))
    for _ in bar:
        losses: list[float] = []
        carry = np.empty((0, *((t,) if sequences else ()), *source.frame_shape), np.float32)
        for units, x, m in source.blocks(rng.permutation(n_blocks)):
            if len(losses) >= steps_per_epoch:
                break
            sel = select[units] if sequences else select[units].reshape(-1)
            xs = x if sequences else x.reshape(-1, *x.shape[2:])  # views of the fresh block
            ms = None if m is None else (m if sequences else m.reshape(-1, *m.shape[2:]))
            if not sel.all():
                xs, ms = xs[sel], None if ms is None else ms[sel]
            del x, m
            normalise_inplace(xs, ms, mean, std)
            pool = np.empty((len(carry) + len(xs), *xs.shape[1:]), np.float32)
            pool[:len(carry)] = carry
            np.take(xs, rng.permutation(len(xs)), axis=0, out=pool[len(carry):])
            del xs, ms
            s = 0
            while s + bs <= len(pool) and len(losses) < steps_per_epoch:
                params, opt_state, loss = step(params, rest, opt_state, put(pool[s:s + bs]),
                                               jax.random.fold_in(key, k),
                                               jnp.float32(sched(k)))
                k += 1
                losses.append(float(loss))
                s += bs
            carry = pool[s:].copy()
            del pool
        step_hist.extend(losses)
        train_hist.append(float(np.mean(losses)) if losses else float("nan"))
        bar.set_postfix(train=f"{train_hist[-1]:.4f}")
    bar.close()
    if not np.all(np.isfinite(step_hist)):
        raise DataError(f"training diverged: {int((~np.isfinite(step_hist)).sum())} "
                        "non-finite losses; lower learning_rate or check the images")
    trained = nnx.merge(graphdef, *jax.device_get((params, rest)))
    return TrainResult(trained, tuple(train_hist), (), tuple(step_hist),
                       len(train_hist) - 1, False)

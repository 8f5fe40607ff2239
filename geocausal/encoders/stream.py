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
                 chunk: int = 1, path: Any = None, view: np.ndarray | None = None) -> None:
        self.chips = chips  # storage-order array (zarr) or unit-order numpy array
        self.mask = mask
        self.rows = rows  # rows[i]: storage row of unit i (None: storage order = unit order)
        self.chunk = max(int(chunk), 1)
        self.block_units = max(block_units // self.chunk, 1) * self.chunk
        self.path = path
        shape = tuple(chips.shape)
        self.sequence = len(shape) == 5
        full = shape if self.sequence else (shape[0], 1, *shape[1:])
        self.n_rows = full[0]
        # view[j]: unit (position in the full unit order) of the view's j-th unit
        self.view = None if view is None else np.asarray(view, np.int64)
        self.shape = full if self.view is None else (len(self.view), *full[1:])

    def subset(self, units: np.ndarray) -> ChipSource:
        """The same chips restricted to ``units`` (positions in unit order, each at most
        once): blocks then yield positions in ``units`` and read only spans holding some.

        Examples
        --------
        >>> src = ChipSource.of(np.arange(6, dtype="float32").reshape(6, 1, 1, 1), block_units=2)
        >>> [(u.tolist(), x.ravel().tolist()) for u, x, m in src.subset([5, 0]).blocks()]
        [([1], [0.0]), ([0], [5.0])]
        """
        units = np.asarray(units)
        if units.ndim != 1 or (units.size and not np.issubdtype(units.dtype, np.integer)):
            raise DataError("a subset of a chips source takes integer unit positions")
        full = self.n_rows if self.view is None else len(self.view)
        if units.size and (units.min() < -full or units.max() >= full):
            raise DataError(f"unit positions out of range for {full} units")
        units = np.where(units < 0, units + full, units).astype(np.int64)
        if len(np.unique(units)) != len(units):
            raise DataError("a subset of a chips source cannot repeat units (bootstrap draws "
                            "must be loaded in memory)")
        base = units if self.view is None else self.view[units]
        out = ChipSource(self.chips, self.mask, self.rows, self.block_units, 1, self.path, base)
        out.chunk, out.block_units = self.chunk, self.block_units
        return out

    @property
    def _view_pos(self) -> np.ndarray:
        if not hasattr(self, "_vpos"):
            pos = np.full(self.n_rows, -1, np.int64)
            pos[self.view] = np.arange(len(self.view))
            self._vpos = pos
        return self._vpos

    @classmethod
    def of(cls, images: Any, mask: Any = None, *, block_units: int | None = None,
           budget: int | str | None = None) -> ChipSource:
        """A source over a chips cache, its lazy arrays, or numpy arrays."""
        path = None
        if hasattr(images, "chips") and hasattr(images, "unit_ids"):
            mask = getattr(images, "mask", None) if mask is None else mask
            path = getattr(images, "path", None)
            images = images.chips
        if is_lazy(images) and tuple(images.array.shape) == tuple(images.shape):
            chips, rows = images.array, np.asarray(images.rows)
            if len(rows) != chips.shape[0] or not np.array_equal(np.sort(rows),
                                                                  np.arange(chips.shape[0])):
                raise DataError("a chips cache view over a subset of units cannot be streamed; "
                                "pass the whole cache")
            m = None if mask is None else (mask.array if is_lazy(mask) else np.asarray(mask))
            chunk = int(chips.chunks[0])
        else:  # numpy, or a lazy unit-order view read by slices (chips[a:b])
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
        """Number of units (first axis)."""
        return self.shape[0]

    @property
    def t(self) -> int:
        """Number of time steps (second axis)."""
        return self.shape[1]

    @property
    def frame_shape(self) -> tuple[int, ...]:
        """Shape of one frame, ``(H, W, C)``."""
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
        if self.view is not None:  # keep the view's units, as positions in the view
            pos = self._view_pos[units]
            keep = np.flatnonzero(pos >= 0)
            units, x = pos[keep], x[keep]
            m = None if m is None else m[keep]
        return units, x, m

    @property
    def _unit_of_row(self) -> np.ndarray:
        if not hasattr(self, "_uor"):
            uor = np.empty_like(self.rows)
            uor[self.rows] = np.arange(len(self.rows))
            self._uor = uor
        return self._uor

    def spans(self) -> list[tuple[int, int]]:
        """Storage row ranges of the blocks (for a :meth:`subset`, those holding its units)."""
        spans = [(a, min(a + self.block_units, self.n_rows))
                 for a in range(0, self.n_rows, self.block_units)]
        if self.view is None:
            return spans
        units = (np.arange(self.n_rows) if self.rows is None else self._unit_of_row)
        inside = self._view_pos[units] >= 0
        return [(a, b) for a, b in spans if inside[a:b].any()]

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


def _frames(x: np.ndarray, m: np.ndarray | None, sequences: bool, period: int
            ) -> tuple[np.ndarray, np.ndarray | None]:
    """A block's model inputs: whole sequences, or the chips of one period."""
    if sequences:
        return x, m
    return x[:, period], None if m is None else m[:, period]


def check_period(source: ChipSource, sequences: bool, period: int | None, encoder: str) -> int:
    """The period a single-image encoder reads from ``source`` (a named error when ambiguous).

    Examples
    --------
    >>> check_period(ChipSource.of(np.zeros((3, 2, 4, 4, 1), "float32")), False, None, "cnn")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: the chips have 2 periods per unit but encoder='cnn' takes one image per unit; set period= (0..1) or use encoder='sequence'
    """
    if sequences:
        if period is not None:
            raise DataError(f"period={period!r} picks one image per unit; encoder='sequence' "
                            "reads every period: leave period=None")
        return 0
    if period is None:
        if source.t != 1:
            raise DataError(f"the chips have {source.t} periods per unit but encoder="
                            f"{encoder!r} takes one image per unit; set period= "
                            f"(0..{source.t - 1}) or use encoder='sequence'")
        return 0
    if (isinstance(period, bool) or not isinstance(period, int | np.integer)
            or not -source.t <= period < source.t):
        raise DataError(f"period={period!r} must be an integer position in 0..{source.t - 1}")
    return int(period) % source.t


def fit_supervised_streaming(model: Any, objective: Any, source: ChipSource, y: np.ndarray, *,
                             tab: np.ndarray | None = None, config: Any = None, seed: int = 0,
                             period: int | None = None,
                             val_idx: np.ndarray | None = None) -> Any:
    """Train a supervised head streaming chips from ``source`` in blocks of units.

    The loop of :func:`geocausal.encoders.train.fit`, reading blocks instead of one array:
    the same held-out split (``val_frac`` of the units, or ``val_idx``), per-band statistics
    of the training units in one streaming pass, each epoch's blocks in a random order
    (seeded) with each block's training units shuffled into minibatches (leftovers carry into
    the next block: a shuffle buffer of one block), held-out loss after each epoch, early
    stopping and the best epoch's parameters. When the source is one block this is exactly
    the in-memory loop (same batches, same numbers for the same seed). The held-out chips are
    kept in memory when they fit half the memory budget, else streamed every epoch.

    ``y`` ``(N,)`` or ``(N, k)`` and ``tab`` ``(N, p)`` are in the source's unit order (the
    caller aligns them by unit id). Returns a :class:`~geocausal.encoders.train.TrainResult`.

    Examples
    --------
    >>> from geocausal.encoders.modules import ModelSpec, build_model
    >>> from geocausal.encoders.objectives import binary
    >>> from geocausal.encoders.train import TrainConfig
    >>> x = np.random.default_rng(0).normal(size=(30, 1, 8, 8, 2)).astype("float32")
    >>> y = (x[:, 0, ..., 0].mean((1, 2)) > 0) * 1.0
    >>> m = build_model(ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,), n_outputs=1))
    >>> res = fit_supervised_streaming(m, binary(), ChipSource.of(x, block_units=8), y,
    ...     config=TrainConfig(epochs=2, batch_size=8, progress=False))
    >>> len(res.train_loss), len(res.val_loss)
    (2, 2)
    """
    import jax
    import jax.numpy as jnp
    from flax import nnx

    from geocausal._progress import progress
    from geocausal.encoders import sharding
    from geocausal.encoders.train import (
        TrainConfig,
        epoch_end,
        finish_training,
        make_eval_loss,
        own_copy,
        training_setup,
    )

    cfg = config or TrainConfig()
    if not objective.supervised:
        raise DataError("fit_supervised_streaming needs a supervised objective; use "
                        "fit_streaming for contrastive training")
    sequences = bool(model.is_sequence)
    period = check_period(source, sequences, period, model.spec.encoder)
    if source.shape[-1] != model.spec.in_bands:
        raise DataError(f"images have {source.shape[-1]} bands, the model expects "
                        f"{model.spec.in_bands}")
    n = source.n
    y = np.asarray(y, np.float32)
    y = y[:, None] if y.ndim == 1 else y
    if y.shape[0] != n:
        raise DataError(f"targets have {y.shape[0]} rows, the chips have {n} units")
    if y.shape[1] != model.spec.n_outputs:
        raise DataError(f"targets have {y.shape[1]} columns, the head has "
                        f"{model.spec.n_outputs} outputs")
    if tab is not None:
        tab = np.asarray(tab, np.float32)
        if tab.ndim != 2 or tab.shape[0] != n:
            raise DataError(f"tabular covariates must be ({n}, p), got {tab.shape}")
        if not np.all(np.isfinite(tab)):
            raise DataError("tabular covariates contain non-finite values; impute them first")
    rng = np.random.default_rng(seed)
    if val_idx is None:  # the draw of train.fit
        n_val = int(round(cfg.val_frac * n)) if cfg.val_frac > 0 and n >= 10 else 0
        perm = rng.permutation(n)
        val_idx, train_idx = np.sort(perm[:n_val]), np.sort(perm[n_val:])
    else:
        val_idx = np.asarray(val_idx, int)
        train_idx = np.setdiff1d(np.arange(n), val_idx)
    is_train = np.zeros(n, bool)
    is_train[train_idx] = True
    is_val = np.zeros(n, bool)
    is_val[val_idx] = True

    model = nnx.clone(model)
    sel = np.zeros((n, source.t), bool)
    sel[:, slice(None) if sequences else period] = is_train[:, None] if sequences else is_train
    mean, std = streaming_band_statistics(source, sel)
    model.band_mean[...] = jnp.asarray(mean)
    model.band_std[...] = jnp.asarray(std)

    su = training_setup(model, objective, cfg, len(train_idx), "units")
    ndev, bs, steps_per_epoch, mesh, step, sched = (su.ndev, su.batch_size, su.steps_per_epoch,
                                                    su.mesh, su.step, su.schedule)
    graphdef, params, rest, opt_state = su.graphdef, su.params, su.rest, su.opt_state
    eval_loss = make_eval_loss(graphdef, objective, su.dtype)
    key = jax.random.key(seed)
    n_blocks = len(source.spans())
    item = (source.t, *source.frame_shape) if sequences else source.frame_shape

    def batch_of(pos, xb):
        b = {"x": xb, "y": y[pos]}
        if tab is not None:
            b["tab"] = tab[pos]
        if mesh is None:
            return jax.device_put(b)
        if len(pos) % ndev:  # a ragged held-out remainder: copy it to every device
            return sharding.replicate(b, mesh)
        return sharding.shard_batch(b, mesh)

    def picked(units, x, m, want):
        """The block's units in ``want`` (sorted by unit), normalised in place."""
        xs, ms = _frames(x, m, sequences, period)
        keep = np.flatnonzero(want[units])
        keep = keep[np.argsort(units[keep], kind="stable")]
        xs = xs[keep]  # a copy
        normalise_inplace(xs, None if ms is None else ms[keep], mean, std)
        return units[keep], xs

    def held_out_chunks():
        for units, x, m in source.blocks():
            pos, xs = picked(units, x, m, is_val)
            if len(pos):
                yield pos, xs

    held = None
    item_bytes = int(np.prod(item)) * 4
    if len(val_idx) and 2 * len(val_idx) * item_bytes <= memory_budget(None) // 2:
        parts = list(held_out_chunks())
        held = [(np.concatenate([p for p, _ in parts]), np.concatenate([v for _, v in parts]))]

    best = (np.inf, own_copy(params), -1)
    train_hist, val_hist, step_hist = [], [], []
    bad, t, stopped = 0, 0, False
    bar = progress(range(cfg.epochs), desc=f"train {model.spec.encoder} (streamed)",
                   enabled=bool(cfg.progress))
    for epoch in bar:
        pending: list = []
        carry_x = np.empty((0, *item), np.float32)
        carry_p = np.empty(0, np.int64)
        order = rng.permutation(n_blocks) if n_blocks > 1 else None
        for units, x, m in source.blocks(order):
            if len(pending) >= steps_per_epoch:
                break
            pos, xs = picked(units, x, m, is_train)
            del x, m
            perm = rng.permutation(len(pos))
            pool_x = np.empty((len(carry_x) + len(xs), *item), np.float32)
            pool_x[:len(carry_x)] = carry_x
            np.take(xs, perm, axis=0, out=pool_x[len(carry_x):])
            pool_p = np.concatenate([carry_p, pos[perm]])
            del xs
            s = 0
            while s + bs <= len(pool_x) and len(pending) < steps_per_epoch:
                params, opt_state, loss = step(params, rest, opt_state,
                                               batch_of(pool_p[s:s + bs], pool_x[s:s + bs]),
                                               jax.random.fold_in(key, t),
                                               jnp.float32(sched(t)))
                t += 1
                pending.append(loss)
                s += bs
            carry_x, carry_p = pool_x[s:].copy(), pool_p[s:]
            del pool_x
        losses = [float(v) for v in jax.device_get(pending)]
        step_hist.extend(losses)
        train_hist.append(float(np.mean(losses)) if losses else float("nan"))
        if len(val_idx):
            parts, buf_p, buf_x = [], np.empty(0, np.int64), np.empty((0, *item), np.float32)
            for pos, xv in (held if held is not None else held_out_chunks()):
                buf_p, buf_x = np.concatenate([buf_p, pos]), np.concatenate([buf_x, xv])
                while len(buf_p) >= bs:
                    parts.append((eval_loss(params, rest, batch_of(buf_p[:bs], buf_x[:bs]),
                                            jax.random.key(seed + 1)), bs))
                    buf_p, buf_x = buf_p[bs:], buf_x[bs:]
            if len(buf_p):
                parts.append((eval_loss(params, rest, batch_of(buf_p, buf_x),
                                        jax.random.key(seed + 1)), len(buf_p)))
            tot = 0.0
            for v, k in parts:
                tot += float(v) * k
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


def apply_source(model: Any, source: ChipSource, *, kind: str = "head",
                 tab: np.ndarray | None = None, period: int | None = None) -> np.ndarray:
    """Head outputs (``kind="head"``) or embeddings (``"embed"``) of every unit of
    ``source``, block by block, in the source's unit order (``tab`` in that order too).

    Examples
    --------
    >>> from geocausal.encoders.modules import ModelSpec, build_model
    >>> from geocausal.encoders.train import predict
    >>> x = np.random.default_rng(0).normal(size=(7, 1, 8, 8, 2)).astype("float32")
    >>> m = build_model(ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,), n_outputs=1))
    >>> out = apply_source(m, ChipSource.of(x, block_units=3))
    >>> bool(np.allclose(out, predict(m, x[:, 0]), atol=1e-6))
    True
    """
    from geocausal.encoders.train import embed_array, predict

    if kind not in ("head", "embed"):
        raise DataError(f"kind={kind!r} must be 'head' or 'embed'")
    sequences = bool(model.is_sequence)
    period = check_period(source, sequences, period, model.spec.encoder)
    out = None
    for units, x, m in source.blocks():
        xs, ms = _frames(x, m, sequences, period)
        z = (predict(model, xs, None if tab is None else np.asarray(tab)[units], ms)
             if kind == "head" else embed_array(model, xs, ms))
        if out is None:
            out = np.zeros((source.n, z.shape[1]), np.float32)
        out[units] = z
    return out

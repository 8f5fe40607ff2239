"""Salience: which pixels move a head's output (e.g. the propensity logit).

:func:`gradient_salience` is the gradient of one head output with respect to the raw pixels
(reduced over bands by the L2 norm, as in causal salience maps); :func:`integrated_gradients`
averages gradients along the straight path from a baseline (default: every pixel at its band
mean) to the image and multiplies by the difference, so attributions add up to
``f(image) - f(baseline)`` (completeness, up to the Riemann error of ``steps``).

Images are processed in blocks of units that fit the memory budget
(:mod:`geocausal.encoders.stream`), so ``x`` may be a chips cache's lazy array (``cache.chips``
or rows of it) as well as an in-memory array; the result is the same.

Examples
--------
>>> import numpy as np
>>> from geocausal.encoders.modules import ModelSpec, build_model
>>> m = build_model(ModelSpec("cnn", in_bands=3, embed_dim=4, widths=(4,), n_outputs=1))
>>> x = np.random.default_rng(0).normal(size=(2, 8, 8, 3)).astype("float32")
>>> gradient_salience(m, x).shape, integrated_gradients(m, x, steps=4).shape
((2, 8, 8), (2, 8, 8, 3))
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from geocausal.encoders.modules import ImageModel
from geocausal.encoders.stream import ChipSource, row_blocks
from geocausal.errors import DataError


def _blocks(x, tab, copies: int = 1, period: int | None = None):
    """``(rows, x block, tab block)`` over the rows of ``x`` within the memory budget
    (``copies`` scales the per-row memory, e.g. the integration path of integrated gradients).

    ``x`` may be a :class:`~geocausal.encoders.stream.ChipSource` (a ``subset`` of a cache):
    its own blocks are used, masked pixels become NaN (the model leaves them out) and a
    single-image model gets the frames of ``period`` (required when the source has several).
    """
    if isinstance(x, ChipSource):
        for units, xb, mb in x.blocks():
            if mb is not None:
                xb = np.where(mb[..., None], xb, np.nan).astype(np.float32)
            if period is not None:
                xb = xb[:, period]
            elif xb.shape[1] == 1:
                xb = xb[:, 0]
            yield units, xb, None if tab is None else np.asarray(tab)[units]
        return
    shape = tuple(x.shape)
    for sl in row_blocks(shape[0], int(np.prod(shape[1:])) * 4 * copies):
        yield (np.arange(sl.start, sl.stop), np.asarray(x[sl], np.float32),
               None if tab is None else np.asarray(tab)[sl])


def _n(x) -> int:
    return int(x.n) if isinstance(x, ChipSource) else int(x.shape[0])


def _scatter(n: int, parts) -> np.ndarray:
    """Stack ``(rows, values)`` block results into row order."""
    out = None
    for rows, v in parts:
        if out is None:
            out = np.empty((n, *v.shape[1:]), v.dtype)
        out[rows] = v
    return np.zeros((0,)) if out is None else out


def _check_period(x, period: int | None) -> None:
    if not isinstance(x, ChipSource):
        return
    t = x.t
    if period is None and t > 1:
        raise DataError(f"the chips source has {t} periods: set period= (0..{t - 1}) for a "
                        "single-image model")
    if period is not None and (isinstance(period, bool) or not isinstance(
            period, int | np.integer) or not -t <= period < t):
        raise DataError(f"period={period!r} must be an integer position in 0..{t - 1}")


def _grad_fn(model: ImageModel, output: int):
    """One jitted ``(x, tab) -> d sum(head[output]) / d x`` for every block of a call."""
    graphdef, state = nnx.split(model)

    def total(x, tab):
        return nnx.merge(graphdef, state)(x, tab)[:, output].sum()

    return jax.jit(jax.grad(total))


def _tab(tb):
    return None if tb is None else jnp.asarray(tb, jnp.float32)


def pixel_gradients(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0,
                    period: int | None = None) -> np.ndarray:
    """D head[output] / d pixel, same shape as ``x`` (a ChipSource: its frames)."""
    _check_period(x, period)
    g = _grad_fn(model, output)
    return _scatter(_n(x), ((r, np.asarray(g(jnp.asarray(xb), _tab(tb))))
                            for r, xb, tb in _blocks(x, tab, period=period)))


def gradient_salience(model: ImageModel, x: np.ndarray, *, tab=None,
                      output: int = 0, period: int | None = None) -> np.ndarray:
    """L2 norm over bands of the pixel gradients: ``x.shape[:-1]``.

    ``x`` may be a :class:`~geocausal.encoders.stream.ChipSource` (e.g. a ``subset`` of a
    chips cache): it is read by blocks, never whole; ``period`` picks the frames a
    single-image model sees when the source has several periods.
    """
    _check_period(x, period)
    g = _grad_fn(model, output)
    return _scatter(_n(x), (
        (r, np.sqrt((np.asarray(g(jnp.asarray(xb), _tab(tb))) ** 2).sum(axis=-1)))
        for r, xb, tb in _blocks(x, tab, period=period)))


def integrated_gradients(model: ImageModel, x: np.ndarray, *, baseline: np.ndarray | None = None,
                         steps: int = 32, tab=None, output: int = 0,
                         period: int | None = None) -> np.ndarray:
    """Integrated gradients ``(x - b) * mean_k grad f(b + a_k (x - b))`` (midpoint rule)."""
    _check_period(x, period)
    g = _grad_fn(model, output)
    n = _n(x)
    dims = len(x.frame_shape) + 1 if isinstance(x, ChipSource) else len(x.shape)
    per_row = (baseline is not None and np.ndim(baseline) == dims and len(baseline) == n
               and n > 1)
    return _scatter(n, (
        (r, _integrated(model, g, xb, np.asarray(baseline)[r] if per_row else baseline, steps,
                        tb))
        for r, xb, tb in _blocks(x, tab, copies=2, period=period)))


def _integrated(model: ImageModel, g, x: np.ndarray, baseline, steps: int, tab) -> np.ndarray:
    x = jnp.asarray(x, jnp.float32)
    b = (jnp.broadcast_to(model.band_mean[...], x.shape) if baseline is None
         else jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), x.shape))
    tab = _tab(tab)
    alphas = (np.arange(steps) + 0.5) / steps
    total = jnp.zeros_like(x)
    for a in alphas:
        total = total + g(b + a * (x - b), tab)
    return np.asarray((x - b) * total / steps)


def head_output(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0,
                period: int | None = None) -> np.ndarray:
    """The head output itself (e.g. the propensity logit) per image."""
    _check_period(x, period)
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda xb, tb: nnx.merge(graphdef, state)(xb, tb)[:, output])
    return _scatter(_n(x), ((r, np.asarray(f(jnp.asarray(xb), _tab(tb))))
                            for r, xb, tb in _blocks(x, tab, period=period)))

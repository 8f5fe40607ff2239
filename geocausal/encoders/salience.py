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
from geocausal.encoders.stream import row_blocks


def _blocks(x, tab, copies: int = 1):
    """``(slice, x block, tab block)`` over the rows of ``x`` within the memory budget
    (``copies`` scales the per-row memory, e.g. the integration path of integrated gradients)."""
    shape = tuple(x.shape)
    for sl in row_blocks(shape[0], int(np.prod(shape[1:])) * 4 * copies):
        yield sl, np.asarray(x[sl], np.float32), None if tab is None else np.asarray(tab)[sl]


def _grad_fn(model: ImageModel, output: int):
    """One jitted ``(x, tab) -> d sum(head[output]) / d x`` for every block of a call."""
    graphdef, state = nnx.split(model)

    def total(x, tab):
        return nnx.merge(graphdef, state)(x, tab)[:, output].sum()

    return jax.jit(jax.grad(total))


def _tab(tb):
    return None if tb is None else jnp.asarray(tb, jnp.float32)


def pixel_gradients(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0) -> np.ndarray:
    """d head[output] / d pixel, same shape as ``x``."""
    g = _grad_fn(model, output)
    return np.concatenate([np.asarray(g(jnp.asarray(xb), _tab(tb)))
                           for _, xb, tb in _blocks(x, tab)])


def gradient_salience(model: ImageModel, x: np.ndarray, *, tab=None,
                      output: int = 0) -> np.ndarray:
    """L2 norm over bands of the pixel gradients: ``x.shape[:-1]``."""
    g = _grad_fn(model, output)
    return np.concatenate([np.sqrt((np.asarray(g(jnp.asarray(xb), _tab(tb))) ** 2).sum(axis=-1))
                           for _, xb, tb in _blocks(x, tab)])


def integrated_gradients(model: ImageModel, x: np.ndarray, *, baseline: np.ndarray | None = None,
                         steps: int = 32, tab=None, output: int = 0) -> np.ndarray:
    """Integrated gradients ``(x - b) * mean_k grad f(b + a_k (x - b))`` (midpoint rule)."""
    g = _grad_fn(model, output)
    per_row = (baseline is not None and np.ndim(baseline) == len(x.shape)
               and len(baseline) == len(x) and len(x) > 1)
    return np.concatenate([
        _integrated(model, g, xb, np.asarray(baseline)[sl] if per_row else baseline, steps, tb)
        for sl, xb, tb in _blocks(x, tab, copies=2)])


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


def head_output(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0) -> np.ndarray:
    """The head output itself (e.g. the propensity logit) per image."""
    graphdef, state = nnx.split(model)
    f = jax.jit(lambda xb, tb: nnx.merge(graphdef, state)(xb, tb)[:, output])
    return np.concatenate([np.asarray(f(jnp.asarray(xb), _tab(tb)))
                           for _, xb, tb in _blocks(x, tab)])

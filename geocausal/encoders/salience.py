"""Salience: which pixels move a head's output (e.g. the propensity logit).

:func:`gradient_salience` is the gradient of one head output with respect to the raw pixels
(reduced over bands by the L2 norm, as in causal salience maps); :func:`integrated_gradients`
averages gradients along the straight path from a baseline (default: every pixel at its band
mean) to the image and multiplies by the difference, so attributions add up to
``f(image) - f(baseline)`` (completeness, up to the Riemann error of ``steps``).

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


def _output_fn(model: ImageModel, output: int, tab):
    graphdef, state = nnx.split(model)
    tab = None if tab is None else jnp.asarray(tab, jnp.float32)

    def f(x):
        return nnx.merge(graphdef, state)(x, tab)[:, output]

    return f


def pixel_gradients(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0) -> np.ndarray:
    """d head[output] / d pixel, same shape as ``x``."""
    f = _output_fn(model, output, tab)
    return np.asarray(jax.jit(jax.grad(lambda z: f(z).sum()))(jnp.asarray(x, jnp.float32)))


def gradient_salience(model: ImageModel, x: np.ndarray, *, tab=None,
                      output: int = 0) -> np.ndarray:
    """L2 norm over bands of the pixel gradients: ``x.shape[:-1]``."""
    return np.sqrt((pixel_gradients(model, x, tab=tab, output=output) ** 2).sum(axis=-1))


def integrated_gradients(model: ImageModel, x: np.ndarray, *, baseline: np.ndarray | None = None,
                         steps: int = 32, tab=None, output: int = 0) -> np.ndarray:
    """Integrated gradients ``(x - b) * mean_k grad f(b + a_k (x - b))`` (midpoint rule)."""
    x = jnp.asarray(x, jnp.float32)
    b = (jnp.broadcast_to(model.band_mean[...], x.shape) if baseline is None
         else jnp.broadcast_to(jnp.asarray(baseline, jnp.float32), x.shape))
    f = _output_fn(model, output, tab)
    g = jax.jit(jax.grad(lambda z: f(z).sum()))
    alphas = (np.arange(steps) + 0.5) / steps
    total = jnp.zeros_like(x)
    for a in alphas:
        total = total + g(b + a * (x - b))
    return np.asarray((x - b) * total / steps)


def head_output(model: ImageModel, x: np.ndarray, *, tab=None, output: int = 0) -> np.ndarray:
    """The head output itself (e.g. the propensity logit) per image."""
    return np.asarray(_output_fn(model, output, tab)(jnp.asarray(x, jnp.float32)))

"""Augmentations for satellite chips: the eight symmetries of the square and band dropout.

Satellite images have no "up": every flip and 90-degree rotation (the dihedral group of the
square, built from an optional transpose and two optional flips) is a valid view. Band dropout
sets whole bands of a normalised image to 0 (the band mean). Each sample gets its own draw; the
frames of an image sequence share their sample's draw so change over time is preserved.

Examples
--------
>>> import jax, jax.numpy as jnp
>>> x = jnp.arange(2 * 4 * 4 * 3, dtype=jnp.float32).reshape(2, 4, 4, 3)
>>> augment(jax.random.key(0), x, band_dropout=0.0).shape
(2, 4, 4, 3)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _bcast(flag: jax.Array, x: jax.Array) -> jax.Array:
    return flag.reshape(flag.shape + (1,) * (x.ndim - 1))


def dihedral(key: jax.Array, x: jax.Array) -> jax.Array:
    """Random flip / 90-degree rotation per sample of ``x`` ``(B, ..., H, W, C)``."""
    b = x.shape[0]
    kt, kh, kv = jax.random.split(key, 3)
    h_ax, w_ax = x.ndim - 3, x.ndim - 2
    if x.shape[h_ax] == x.shape[w_ax]:
        t = jax.random.bernoulli(kt, 0.5, (b,))
        x = jnp.where(_bcast(t, x), jnp.swapaxes(x, h_ax, w_ax), x)
    fh = jax.random.bernoulli(kh, 0.5, (b,))
    x = jnp.where(_bcast(fh, x), jnp.flip(x, axis=h_ax), x)
    fv = jax.random.bernoulli(kv, 0.5, (b,))
    return jnp.where(_bcast(fv, x), jnp.flip(x, axis=w_ax), x)


def drop_bands(key: jax.Array, x: jax.Array, rate: float) -> jax.Array:
    """Zero each band of each sample with probability ``rate`` (never all bands)."""
    if rate <= 0 or x.shape[-1] < 2:
        return x
    b, c = x.shape[0], x.shape[-1]
    keep = jax.random.bernoulli(key, 1.0 - rate, (b, c))
    keep = keep | (~keep.any(axis=1, keepdims=True))
    return x * keep.reshape((b,) + (1,) * (x.ndim - 2) + (c,)).astype(x.dtype)


def augment(key: jax.Array, x: jax.Array, *, flips: bool = True,
            band_dropout: float = 0.1) -> jax.Array:
    """Dihedral transform and band dropout of a normalised batch."""
    k1, k2 = jax.random.split(key)
    if flips:
        x = dihedral(k1, x)
    return drop_bands(k2, x, band_dropout)

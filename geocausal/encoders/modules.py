"""Image and image-sequence encoders as flax NNX modules.

Every encoder maps normalised images ``(..., H, W, C)`` (any number of bands ``C``) or image
sequences ``(B, T, H, W, C)`` to vectors ``(B, D)`` and exposes ``embed_dim = D``:

- :class:`CNN`: a small ResNet (3x3 convolutions, strided residual stages, global average
  and max pooling);
- :class:`ViT`: patch embedding, 2-D sinusoidal positions, pre-norm transformer blocks and
  attention pooling (a learned query attends over the patch tokens);
- :class:`SequenceEncoder`: one frame encoder shared across dates, then either a temporal
  transformer with its own weights and learned time embeddings, or a cheap aggregator
  (``"mean"``, ``"meandiff"`` = mean and mean first difference, ``"variance"`` = mean and
  variance);
- :class:`RandomFeatures`: frozen random convolution features, a fast baseline (nothing is
  trained, the filters are not ``nnx.Param``).

:class:`ImageModel` wraps an encoder with the per-band normalisation statistics (stored as model
state, so they travel with checkpoints), an optional prediction head (tabular covariates may be
concatenated to the image embedding) and an optional projection head for contrastive learning.
:class:`ModelSpec` is the plain description from which :func:`build_model` rebuilds the model.

Examples
--------
>>> import numpy as np
>>> model = build_model(ModelSpec(encoder="cnn", in_bands=5, embed_dim=8, widths=(4, 8)), seed=0)
>>> model.embed(np.zeros((2, 16, 16, 5), "float32")).shape
(2, 8)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from geocausal.encoders.conv import fast_conv
from geocausal.errors import DataError

ENCODERS = ("cnn", "vit", "sequence", "random")
AGGREGATORS = ("transformer", "mean", "meandiff", "variance")


class BandStat(nnx.Variable):
    """Per-band normalisation statistic (state, not trained)."""


class Frozen(nnx.Variable):
    """A fixed random weight (state, not trained)."""


def _flatten_images(x: jax.Array) -> tuple[jax.Array, tuple[int, ...]]:
    lead = x.shape[:-3]
    return x.reshape((-1, *x.shape[-3:])), lead


def _strided(layer: nnx.Conv, x: jax.Array, stride: int) -> jax.Array:
    """``layer(x)`` for a ``"SAME"`` convolution with ``stride`` through :func:`fast_conv`."""
    if stride == 1:
        return layer(x)
    dtype = jnp.result_type(x.dtype, layer.kernel.dtype)
    h = fast_conv(x.astype(dtype), layer.kernel[...].astype(dtype), stride)
    return h if layer.bias is None else h + layer.bias[...].astype(dtype)


class ResBlock(nnx.Module):
    """Residual block: two 3x3 convolutions and a projected skip when the shape changes.

    No normalisation layer: inputs are per-band z-scores and the networks are shallow, which
    trains as well and compiles faster.
    """

    def __init__(self, cin: int, cout: int, stride: int, *, rngs: nnx.Rngs):
        self.stride = stride
        self.conv1 = nnx.Conv(cin, cout, (3, 3), strides=stride, padding="SAME", rngs=rngs)
        self.conv2 = nnx.Conv(cout, cout, (3, 3), padding="SAME", rngs=rngs)
        self.skip = (nnx.Conv(cin, cout, (1, 1), strides=stride, rngs=rngs)
                     if stride != 1 or cin != cout else None)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Two 3x3 convolutions plus the (projected) skip, then ReLU."""
        # the strided convolutions by the formulation whose gradient is fastest on CPU
        # (encoders.conv.fast_conv): the same numbers as nnx.Conv
        h = nnx.relu(_strided(self.conv1, x, self.stride))
        h = self.conv2(h)
        s = x if self.skip is None else _strided(self.skip, x, self.stride)
        return nnx.relu(h + s)


class CNN(nnx.Module):
    """Small ResNet-style CNN for any number of bands: ``(..., H, W, C) -> (..., embed_dim)``.

    A 3x3 stem, then one stage per entry of ``widths`` (the first block of each stage halves
    the resolution), global average and max pooling (max pooling keeps small objects such as a
    pond visible) and a linear projection.
    """

    def __init__(self, in_bands: int, *, widths: tuple[int, ...] = (16, 32),
                 blocks_per_stage: int = 1, embed_dim: int = 32, rngs: nnx.Rngs):
        self.stem = nnx.Conv(in_bands, widths[0], (3, 3), padding="SAME", rngs=rngs)
        blocks = []
        cin = widths[0]
        for w in widths:
            for b in range(blocks_per_stage):
                blocks.append(ResBlock(cin, w, 2 if b == 0 else 1, rngs=rngs))
                cin = w
        self.blocks = nnx.List(blocks)
        self.proj = nnx.Linear(2 * cin, embed_dim, rngs=rngs)
        self.embed_dim = embed_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed images ``(..., H, W, C) -> (..., embed_dim)`` (mean- and max-pooled features)."""
        x, lead = _flatten_images(x)
        h = nnx.relu(self.stem(x))
        for blk in self.blocks:
            h = blk(h)
        h = jnp.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=-1)
        return self.proj(h).reshape((*lead, self.embed_dim))


class MLP(nnx.Module):
    """Two-layer perceptron with GELU."""

    def __init__(self, din: int, hidden: int, dout: int, *, rngs: nnx.Rngs):
        self.fc1 = nnx.Linear(din, hidden, rngs=rngs)
        self.fc2 = nnx.Linear(hidden, dout, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Two dense layers with a GELU between them."""
        return self.fc2(nnx.gelu(self.fc1(x)))


def _attention(dim: int, heads: int, rngs: nnx.Rngs) -> nnx.MultiHeadAttention:
    return nnx.MultiHeadAttention(heads, dim, decode=False, keep_rngs=False, rngs=rngs)


class TransformerBlock(nnx.Module):
    """Pre-norm transformer block (self-attention and MLP, both residual)."""

    def __init__(self, dim: int, heads: int, *, mlp_ratio: int = 2, rngs: nnx.Rngs):
        self.norm1 = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = _attention(dim, heads, rngs)
        self.norm2 = nnx.LayerNorm(dim, rngs=rngs)
        self.mlp = MLP(dim, mlp_ratio * dim, dim, rngs=rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Pre-norm self-attention then pre-norm MLP, each with a residual connection."""
        h = self.norm1(x)
        x = x + self.attn(h, h, h, deterministic=True)
        return x + self.mlp(self.norm2(x))


class AttentionPool(nnx.Module):
    """Pool tokens ``(B, L, D) -> (B, D)`` with one learned query."""

    def __init__(self, dim: int, heads: int, *, rngs: nnx.Rngs):
        self.query = nnx.Param(jax.random.normal(rngs.params(), (1, 1, dim)) * 0.02)
        self.norm = nnx.LayerNorm(dim, rngs=rngs)
        self.attn = _attention(dim, heads, rngs)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Attend from the learned query to the tokens: ``(B, L, D) -> (B, D)``."""
        h = self.norm(x)
        q = jnp.broadcast_to(self.query[...].astype(h.dtype), (x.shape[0], 1, x.shape[-1]))
        return self.attn(q, h, h, deterministic=True)[:, 0]


def sincos_1d(pos: jax.Array, dim: int) -> jax.Array:
    """Sinusoidal embedding of positions ``(L,) -> (L, dim)`` (``dim`` even)."""
    half = dim // 2
    freq = jnp.exp(-math.log(10000.0) * jnp.arange(half) / max(half, 1))
    ang = jnp.asarray(pos, jnp.float32)[:, None] * freq[None]
    return jnp.concatenate([jnp.sin(ang), jnp.cos(ang)], axis=-1)


def sincos_2d(h: int, w: int, dim: int) -> jax.Array:
    """2-D sinusoidal positions for an ``h x w`` token grid: ``(h * w, dim)``."""
    yy, xx = jnp.meshgrid(jnp.arange(h), jnp.arange(w), indexing="ij")
    q = dim // 2
    return jnp.concatenate([sincos_1d(yy.ravel(), q), sincos_1d(xx.ravel(), dim - q)], axis=-1)


class ViT(nnx.Module):
    """Vision transformer: ``(..., H, W, C) -> (..., embed_dim)``.

    Non-overlapping ``patch x patch`` patches are embedded by a strided convolution, given 2-D
    sinusoidal positions (so any image size divisible by ``patch`` works), passed through
    ``depth`` transformer blocks and pooled by attention with a learned query.
    """

    def __init__(self, in_bands: int, *, patch: int = 4, dim: int = 32, depth: int = 2,
                 heads: int = 4, embed_dim: int = 32, rngs: nnx.Rngs):
        self.patch = patch
        self.dim = dim
        self.patch_embed = nnx.Conv(in_bands, dim, (patch, patch), strides=patch,
                                    padding="VALID", rngs=rngs)
        self.blocks = nnx.List([TransformerBlock(dim, heads, rngs=rngs) for _ in range(depth)])
        self.pool = AttentionPool(dim, heads, rngs=rngs)
        self.proj = nnx.Linear(dim, embed_dim, rngs=rngs)
        self.embed_dim = embed_dim

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed images ``(..., H, W, C) -> (..., embed_dim)`` through patch tokens and attention."""
        x, lead = _flatten_images(x)
        if x.shape[1] % self.patch or x.shape[2] % self.patch:
            raise DataError(f"image size {x.shape[1:3]} is not divisible by patch={self.patch}; "
                            "choose a patch size that divides the chip size")
        t = self.patch_embed(x)
        gh, gw = t.shape[1], t.shape[2]
        t = t.reshape(t.shape[0], gh * gw, self.dim)
        t = t + sincos_2d(gh, gw, self.dim).astype(t.dtype)[None]
        for blk in self.blocks:
            t = blk(t)
        return self.proj(self.pool(t)).reshape((*lead, self.embed_dim))


class SequenceEncoder(nnx.Module):
    """Image-sequence encoder: ``(B, T, H, W, C) -> (B, embed_dim)``.

    A frame encoder with shared weights embeds each date. ``aggregator="transformer"`` projects
    each frame embedding together with its first difference (the change since the previous
    date, zero for the first), adds learned time embeddings (index ``0..T-1``, at most
    ``max_len``)
    and runs a temporal transformer with its own weights followed by attention pooling; the
    cheap aggregators return ``mean``, ``[mean, mean first difference]`` or
    ``[mean, variance]`` of the frame embeddings.
    """

    def __init__(self, frame: nnx.Module, *, aggregator: str = "transformer", dim: int = 32,
                 depth: int = 1, heads: int = 4, max_len: int = 64, embed_dim: int = 32,
                 rngs: nnx.Rngs):
        if aggregator not in AGGREGATORS:
            raise DataError(f"aggregator={aggregator!r} is not one of {AGGREGATORS}")
        self.frame = frame
        self.aggregator = aggregator
        fd = frame.embed_dim
        if aggregator == "transformer":
            self.in_proj = nnx.Linear(2 * fd, dim, rngs=rngs)
            self.time_embed = nnx.Embed(max_len, dim, rngs=rngs)
            self.blocks = nnx.List([TransformerBlock(dim, heads, rngs=rngs)
                                    for _ in range(depth)])
            self.pool = AttentionPool(dim, heads, rngs=rngs)
            self.proj = nnx.Linear(dim, embed_dim, rngs=rngs)
            self.embed_dim = embed_dim
        else:
            self.embed_dim = fd if aggregator == "mean" else 2 * fd
        self.max_len = max_len

    def frames(self, x: jax.Array) -> jax.Array:
        """Per-date embeddings ``(B, T, frame.embed_dim)``."""
        return self.frame(x)

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed a sequence ``(B, T, H, W, C) -> (B, embed_dim)``: frame embeddings, then the aggregator."""
        if x.ndim != 5:
            raise DataError(f"a sequence encoder needs (B, T, H, W, C) input, got {x.shape}")
        f = self.frames(x)
        t = f.shape[1]
        if self.aggregator == "mean":
            return f.mean(axis=1)
        if self.aggregator == "meandiff":
            d = (jnp.diff(f, axis=1).mean(axis=1) if t > 1 else jnp.zeros_like(f[:, 0]))
            return jnp.concatenate([f.mean(axis=1), d], axis=-1)
        if self.aggregator == "variance":
            return jnp.concatenate([f.mean(axis=1), f.var(axis=1)], axis=-1)
        if t > self.max_len:
            raise DataError(f"sequence length {t} exceeds max_len={self.max_len}")
        # each date's token sees its embedding and its change since the previous date
        change = jnp.concatenate([jnp.zeros_like(f[:, :1]), jnp.diff(f, axis=1)], axis=1)
        h = self.in_proj(jnp.concatenate([f, change], axis=-1))
        h = h + self.time_embed(jnp.arange(t))[None].astype(f.dtype)
        for blk in self.blocks:
            h = blk(h)
        return self.proj(self.pool(h))


class RandomFeatures(nnx.Module):
    """Frozen random convolution features: mean and max of ``relu(conv(x))`` over space.

    ``features`` random ``kernel x kernel`` filters (Gaussian, fixed by the seed, never
    trained) give ``embed_dim = 2 * features``.
    """

    def __init__(self, in_bands: int, *, features: int = 32, kernel: int = 3, rngs: nnx.Rngs):
        k1, k2 = jax.random.split(rngs.params())
        fan_in = kernel * kernel * in_bands
        self.kernel = Frozen(jax.random.normal(k1, (kernel, kernel, in_bands, features))
                             / math.sqrt(fan_in))
        self.bias = Frozen(jax.random.normal(k2, (features,)) * 0.5)
        self.embed_dim = 2 * features

    def __call__(self, x: jax.Array) -> jax.Array:
        """Embed images ``(..., H, W, C) -> (..., embed_dim)`` with the fixed random convolution."""
        x, lead = _flatten_images(x)
        k = self.kernel[...].astype(x.dtype)
        h = jax.lax.conv_general_dilated(x, k, (1, 1), "SAME",
                                         dimension_numbers=("NHWC", "HWIO", "NHWC"))
        h = nnx.relu(h + self.bias[...].astype(x.dtype))
        out = jnp.concatenate([h.mean(axis=(1, 2)), h.max(axis=(1, 2))], axis=-1)
        return out.reshape((*lead, self.embed_dim))


@dataclass(frozen=True)
class ModelSpec:
    """Everything needed to rebuild an :class:`ImageModel` (stored in checkpoints).

    ``encoder`` is ``"cnn"``, ``"vit"``, ``"sequence"`` (with ``frame_encoder`` and
    ``aggregator``) or ``"random"``; ``n_outputs`` > 0 adds a linear head on the embedding
    (concatenated with ``n_tabular`` covariates); ``proj_dim`` > 0 adds a projection head for
    contrastive learning.
    """

    encoder: str = "cnn"
    in_bands: int = 3
    embed_dim: int = 32
    widths: tuple[int, ...] = (16, 32)
    blocks_per_stage: int = 1
    patch: int = 4
    dim: int = 32
    depth: int = 2
    heads: int = 4
    frame_encoder: str = "cnn"
    aggregator: str = "transformer"
    temporal_depth: int = 1
    max_len: int = 64
    n_outputs: int = 0
    n_tabular: int = 0
    proj_dim: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dictionary."""
        d = asdict(self)
        d["widths"] = list(self.widths)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> ModelSpec:
        """Inverse of :meth:`to_dict`."""
        d = dict(d)
        d["widths"] = tuple(d.get("widths", (16, 32)))
        return cls(**d)


def _frame_encoder(kind: str, spec: ModelSpec, rngs: nnx.Rngs) -> nnx.Module:
    if kind == "cnn":
        return CNN(spec.in_bands, widths=spec.widths, blocks_per_stage=spec.blocks_per_stage,
                   embed_dim=spec.embed_dim, rngs=rngs)
    if kind == "vit":
        return ViT(spec.in_bands, patch=spec.patch, dim=spec.dim, depth=spec.depth,
                   heads=spec.heads, embed_dim=spec.embed_dim, rngs=rngs)
    if kind == "random":
        return RandomFeatures(spec.in_bands, features=max(spec.embed_dim // 2, 1), rngs=rngs)
    raise DataError(f"encoder={kind!r} is not one of {ENCODERS}")


class ImageModel(nnx.Module):
    """Normalisation + encoder + optional heads.

    ``normalise`` maps raw pixels to per-band z-scores (masked or non-finite pixels become 0,
    the band mean); ``encode`` embeds normalised images; ``embed`` does both; calling the model
    returns the head output ``(B, n_outputs)``.
    """

    def __init__(self, spec: ModelSpec, *, rngs: nnx.Rngs):
        if spec.in_bands < 1:
            raise DataError(f"in_bands must be >= 1, got {spec.in_bands}")
        self.spec = spec
        self.band_mean = BandStat(jnp.zeros((spec.in_bands,), jnp.float32))
        self.band_std = BandStat(jnp.ones((spec.in_bands,), jnp.float32))
        if spec.encoder == "sequence":
            frame = _frame_encoder(spec.frame_encoder, spec, rngs)
            self.encoder = SequenceEncoder(frame, aggregator=spec.aggregator, dim=spec.dim,
                                           depth=spec.temporal_depth, heads=spec.heads,
                                           max_len=spec.max_len, embed_dim=spec.embed_dim,
                                           rngs=rngs)
        else:
            self.encoder = _frame_encoder(spec.encoder, spec, rngs)
        d = self.encoder.embed_dim
        self.embed_dim = d
        self.head = (nnx.Linear(d + spec.n_tabular, spec.n_outputs, rngs=rngs)
                     if spec.n_outputs else None)
        self.projector = MLP(d, max(d, spec.proj_dim), spec.proj_dim, rngs=rngs) \
            if spec.proj_dim else None

    @property
    def is_sequence(self) -> bool:
        """Whether the encoder takes sequences ``(B, T, H, W, C)`` rather than single images."""
        return self.spec.encoder == "sequence"

    def normalise(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Per-band z-scores; invalid pixels (mask False or non-finite) set to 0."""
        x = jnp.asarray(x, jnp.float32)
        z = (x - self.band_mean[...]) / self.band_std[...]
        valid = jnp.isfinite(z)
        if mask is not None:
            valid = valid & jnp.asarray(mask, bool)[..., None]
        return jnp.where(valid, z, 0.0)

    def encode(self, xn: jax.Array) -> jax.Array:
        """Embed normalised images."""
        return self.encoder(xn)

    def embed(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """Embed raw images (normalised with the stored per-band statistics)."""
        return self.encode(self.normalise(x, mask))

    def predict_head(self, z: jax.Array, tab: jax.Array | None = None) -> jax.Array:
        """Head output from embeddings (and tabular covariates when the head takes them)."""
        if self.head is None:
            raise DataError("this model has no prediction head (n_outputs=0)")
        if self.spec.n_tabular:
            if tab is None:
                raise DataError(f"the head expects {self.spec.n_tabular} tabular columns")
            z = jnp.concatenate([z, jnp.asarray(tab, z.dtype)], axis=-1)
        return self.head(z)

    def __call__(self, x: jax.Array, tab: jax.Array | None = None,
                 mask: jax.Array | None = None) -> jax.Array:
        """Predict the head outputs from images ``x`` (normalised and embedded) and tabular ``tab``."""
        return self.predict_head(self.embed(x, mask), tab)


def build_model(spec: ModelSpec, seed: int = 0) -> ImageModel:
    """Build an :class:`ImageModel` from its spec with ``nnx.Rngs(seed)``."""
    if spec.encoder not in ENCODERS:
        raise DataError(f"encoder={spec.encoder!r} is not one of {ENCODERS}")
    return ImageModel(spec, rngs=nnx.Rngs(int(seed)))


def band_statistics(x: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-band mean and standard deviation over valid pixels (bands on the last axis)."""
    x = np.asarray(x, np.float64)
    c = x.shape[-1]
    valid = np.isfinite(x)
    if mask is not None:
        valid &= np.asarray(mask, bool)[..., None]
    w = valid.reshape(-1, c)
    v = np.where(valid, x, 0.0).reshape(-1, c)
    cnt = w.sum(axis=0)
    if np.any(cnt == 0):
        bad = np.flatnonzero(cnt == 0).tolist()
        raise DataError(f"bands {bad} have no valid pixel; check the mask and nodata values")
    mean = v.sum(axis=0) / cnt
    var = (w * (v - mean) ** 2).sum(axis=0) / cnt
    std = np.sqrt(var)
    std[std < 1e-8] = 1.0
    return mean.astype(np.float32), std.astype(np.float32)


def set_normaliser(model: ImageModel, x: np.ndarray, mask: np.ndarray | None = None) -> None:
    """Store per-band statistics of ``x`` in the model (the only in-place step, at set-up)."""
    mean, std = band_statistics(x, mask)
    if mean.shape[0] != model.spec.in_bands:
        raise DataError(f"images have {mean.shape[0]} bands but the model expects "
                        f"{model.spec.in_bands}")
    model.band_mean[...] = jnp.asarray(mean)
    model.band_std[...] = jnp.asarray(std)

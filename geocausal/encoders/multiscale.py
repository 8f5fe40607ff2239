"""Position-aware learned features: one self-supervised CNN, pooled at the centre and the ring.

A unit sits at the centre of its chip, so what is *at* the unit and what *surrounds* it can
matter differently (a field at the village versus fields around it). A CNN with global pooling
cannot tell them apart. :func:`multiscale_features` therefore

1. trains one small CNN self-supervised (contrastive, two augmented views of each image; flips
   and 90-degree rotations keep the centre where it is) on all of a study's chips: no label,
   treatment or outcome is used. Training stops on the held-out contrastive loss with
   ``patience`` (at most ``epochs``), and the best epoch is kept;
2. embeds every image by pooling the CNN's last feature map three times, over the whole chip,
   over the central square (``centre`` of the side) and over the ring around it, each through
   the encoder's own projection: ``3 * embed_dim`` features per image. With ``sides=True`` it
   also pools over the north, south, west and east halves (``7 * embed_dim`` features), so
   that what lies on one side of the unit (upwind, upstream) shows: every other region is
   symmetric about the unit. The pretraining is the same; only the pooling changes;
3. concatenates a unit's dates in period order and, when there are several, appends the change
   from the first to the last date (the sequence's difference, for change over time).

The pretraining runs once per study; cross-fitted supervised heads (the nuisance learners of
:mod:`geocausal.nuisance.stacking`) are then fitted on these frozen features fold by fold, which
is cheap. The jitted embedding program is compiled once per model and batch size.

A chips cache is never loaded whole: given a :class:`~geocausal.encoders.stream.ChipSource`
instead of arrays, the pretraining gathers only its ``max_train`` images (the same draw as in
memory, refused with a named error when they do not fit the memory budget) and the embedding
reads the source block by block: the same features as the arrays for the same seed.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).normal(size=(24, 2, 8, 8, 3)).astype("float32")
>>> import warnings
>>> with warnings.catch_warnings():  # two epochs do not converge: a ConvergenceWarning
...     warnings.simplefilter("ignore")
...     z = multiscale_features(chips, epochs=2, embed_dim=4, widths=(4,))
...     src = ChipSource.of(chips, block_units=5)  # streamed, as from a chips cache
...     zs = multiscale_features(src, epochs=2, embed_dim=4, widths=(4,))
>>> z.shape, bool(np.allclose(z, zs, rtol=1e-5, atol=1e-5))
((24, 36), True)
"""

from __future__ import annotations

import functools
import warnings
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from geocausal.encoders.modules import CNN, ModelSpec, build_model, set_normaliser
from geocausal.encoders.objectives import contrastive
from geocausal.encoders.stream import ChipSource, check_fits, choose_items, gather
from geocausal.encoders.train import TrainConfig, fit
from geocausal.errors import ConvergenceWarning, DataError
from geocausal.vocabulary import check_bool

__all__ = ["MultiscaleResult", "embed_multiscale", "multiscale_features", "multiscale_salience",
           "pretrain_multiscale", "region_masks", "training_items"]


@dataclass(frozen=True, eq=False)
class MultiscaleResult:
    """The pretrained encoder and its training record (see :func:`pretrain_multiscale`)."""

    model: Any
    epochs_run: int
    best_epoch: int
    stopped_early: bool
    val_loss: tuple[float, ...]


def region_masks(h: int, w: int, centre: float = 0.5, sides: bool = False) -> np.ndarray:
    """Pooling weights ``(3, h, w)``: whole chip, central square (``centre`` of each side,
    at least one cell) and the ring around it, each summing to one; with ``sides`` ``(7, h,
    w)``, then the north (first rows), south, west (first columns) and east halves (a middle
    row or column of an odd map counts on neither side; a side of a map one cell across is the
    whole map).

    Examples
    --------
    >>> region_masks(4, 4)[1].round(2)[1:3, 1:3].tolist()
    [[0.25, 0.25], [0.25, 0.25]]
    >>> region_masks(3, 3, sides=True)[3].round(3).tolist()  # the north half: the first row
    [[0.333, 0.333, 0.333], [0.0, 0.0, 0.0], [0.0, 0.0, 0.0]]
    """
    if not 0.0 < centre < 1.0:
        raise DataError(f"centre={centre} must be in (0, 1): the share of the chip's side "
                        "that counts as its centre")
    ch, cw = max(1, round(h * centre)), max(1, round(w * centre))
    r0, c0 = (h - ch) // 2, (w - cw) // 2
    inner = np.zeros((h, w))
    inner[r0:r0 + ch, c0:c0 + cw] = 1.0
    ring = 1.0 - inner
    if ring.sum() == 0:  # a 1 x 1 feature map: the ring is the whole chip
        ring = np.ones((h, w))
    full = np.ones((h, w))
    regions = [full, inner, ring]
    if sides:
        rr, cc = np.mgrid[0:h, 0:w]
        rr, cc = rr - (h - 1) / 2, cc - (w - 1) / 2
        for half in (rr < 0, rr > 0, cc < 0, cc > 0):
            regions.append(half.astype(float) if half.any() else full)
    return np.stack([m / m.sum() for m in regions])


def _as_items(chips: Any, mask: Any) -> tuple[np.ndarray, np.ndarray | None, int]:
    x = np.asarray(chips, np.float32)
    if x.ndim == 4:
        x = x[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    m = None
    if mask is not None:
        m = np.asarray(mask, bool)
        if m.ndim == 3:
            m = m[:, None]
        if m.shape != x.shape[:-1]:
            raise DataError(f"mask shape {np.asarray(mask).shape} must equal chips shape "
                            f"without bands {np.asarray(chips).shape[:-1]}")
    n, t = x.shape[:2]
    items = x.reshape(n * t, *x.shape[2:])
    return items, None if m is None else m.reshape(n * t, *m.shape[2:]), t


def pretrain_multiscale(chips: Any, mask: Any = None, seed: int = 0, *, epochs: int = 100,
                        patience: int = 4, embed_dim: int = 16,
                        widths: tuple[int, ...] = (16, 32), batch_size: int = 128,
                        max_train: int | None = 4096, learning_rate: float = 3e-3,
                        progress: bool = False, budget: int | str | None = None
                        ) -> MultiscaleResult:
    """Contrastive pretraining of a CNN on (at most ``max_train`` of) the images of ``chips``.

    ``chips`` is an array or a :class:`~geocausal.encoders.stream.ChipSource` (then only the
    ``max_train`` images drawn are read; above the memory ``budget`` they are a
    :class:`~geocausal.errors.DataError` saying to lower ``max_train``).

    Stops when the held-out (20% of the images) contrastive loss has not improved for
    ``patience`` epochs, at most ``epochs``; the best epoch's weights are kept. When the
    held-out loss was still falling at the last epoch a
    :class:`~geocausal.errors.ConvergenceWarning` says so.
    """
    n_items = chips.n * chips.t if isinstance(chips, ChipSource) else None
    if n_items is None:
        items, m, _ = _as_items(chips, mask)
        n_items = items.shape[0]
    if n_items < 16:
        raise DataError(f"self-supervised pretraining needs at least 16 images, got "
                        f"{n_items}")
    if epochs < 1 or patience < 1:
        raise DataError(f"epochs={epochs} and patience={patience} must be >= 1")
    if isinstance(chips, ChipSource):  # only the training images are read, block by block
        idx = training_items(chips, max_train, seed, budget=budget)
        x_tr, m_tr = gather(chips, idx)
    else:
        idx = choose_items(n_items, max_train, seed)
        x_tr, m_tr = items[idx], None if m is None else m[idx]
    spec = ModelSpec(encoder="cnn", in_bands=x_tr.shape[-1], embed_dim=embed_dim,
                     widths=tuple(widths), proj_dim=max(embed_dim, 8))
    model = build_model(spec, seed)
    set_normaliser(model, x_tr, m_tr)
    cfg = TrainConfig(epochs=epochs, batch_size=max(2, min(batch_size, len(idx) * 4 // 5)),
                      learning_rate=learning_rate, val_frac=0.2, patience=patience,
                      band_dropout=0.2, progress=progress)
    res = fit(model, contrastive(proj_dim=spec.proj_dim), x_tr, mask=m_tr, config=cfg,
              seed=seed)
    if not res.stopped_early and len(res.val_loss) and res.best_epoch == len(res.val_loss) - 1:
        warnings.warn(f"self-supervised pretraining used all {epochs} epochs and its held-out "
                      f"loss was still falling ({res.val_loss[0]:.4f} -> {res.val_loss[-1]:.4f}"
                      f" over {len(res.val_loss)} epochs on {len(idx)} images); pass a larger "
                      "epochs= to let it converge", ConvergenceWarning, stacklevel=3)
    return MultiscaleResult(res.model, len(res.train_loss), res.best_epoch, res.stopped_early,
                            res.val_loss)


def training_items(source: ChipSource, max_train: int | None = 4096, seed: int = 0, *,
                   budget: int | str | None = None) -> np.ndarray:
    """The images of ``source`` the pretraining gathers (the draw of the in-memory path),
    refused when they do not fit the memory budget.

    Raises
    ------
    DataError
        The ``max_train`` images (with their copies) exceed the budget: lower ``max_train``
        or raise the budget.

    Examples
    --------
    >>> src = ChipSource.of(np.zeros((50, 2, 8, 8, 3), "float32"))
    >>> len(training_items(src, 40))
    40
    >>> training_items(src, 40, budget="10KB")
    Traceback (most recent call last):
    ...
    geocausal.errors.DataError: the 40 training images of the self-supervised encoder need 90.0 KB in memory (30.0 KB x 3 copies), above the memory budget of 10.0 KB; lower max_train (the learned options) or raise memory_budget / GEOCAUSAL_MEMORY_BUDGET
    """
    idx = choose_items(source.n * source.t, max_train, seed)
    check_fits(len(idx) * int(np.prod(source.frame_shape)) * 4,
               f"the {len(idx)} training images of the self-supervised encoder",
               "max_train (the learned options)", budget=budget)
    return idx


@functools.lru_cache(maxsize=16)
def _pooled_fn(graphdef, centre: float, sides: bool = False):
    @jax.jit
    def f(state, x, mask):
        m = nnx.merge(graphdef, state)
        enc = m.encoder
        if not isinstance(enc, CNN):
            raise DataError("multiscale pooling needs a CNN encoder")
        h = nnx.relu(enc.stem(m.normalise(x, mask)))
        for blk in enc.blocks:
            h = blk(h)
        w = jnp.asarray(region_masks(h.shape[1], h.shape[2], centre, sides), h.dtype)
        mean = jnp.einsum("bhwc,rhw->brc", h, w)
        big = jnp.where(w[None, :, :, :, None] > 0, h[:, None], -jnp.inf)
        mx = big.max(axis=(2, 3))
        return enc.proj(jnp.concatenate([mean, mx], axis=-1))  # (B, regions, embed_dim)
    return f


def embed_multiscale(model: Any, chips: Any, mask: Any = None, *, centre: float = 0.5,
                     sides: bool = False, batch_size: int = 256) -> np.ndarray:
    """Whole-chip, centre and ring embeddings of every image: ``(N, T, 3 * embed_dim)``; with
    ``sides`` also of the four halves, ``(N, T, 7 * embed_dim)`` (:func:`region_masks`).

    ``chips`` is an array or a :class:`~geocausal.encoders.stream.ChipSource` (embedded block
    by block, each block in the same batches as an array: the same numbers).
    """
    if isinstance(chips, ChipSource):
        z = None
        for units, xb, mb in chips.blocks():
            zb = embed_multiscale(model, xb, mb, centre=centre, sides=sides,
                                  batch_size=batch_size)
            if z is None:
                z = np.empty((chips.n, *zb.shape[1:]))
            z[units] = zb
        if z is None:
            raise DataError("a chips source without units has nothing to embed")
        return z
    items, m, t = _as_items(chips, mask)
    graphdef, state = nnx.split(model)
    f = _pooled_fn(graphdef, float(centre), check_bool("sides", sides))
    out = []
    bs = int(batch_size)
    for s in range(0, items.shape[0], bs):
        xb = items[s:s + bs]
        mb = np.ones(xb.shape[:-1], bool) if m is None else m[s:s + bs]
        k = xb.shape[0]
        if k < bs:  # pad to one shape: one compiled program
            xb = np.concatenate([xb, np.zeros((bs - k, *xb.shape[1:]), xb.dtype)])
            mb = np.concatenate([mb, np.ones((bs - k, *mb.shape[1:]), bool)])
        z = np.asarray(f(state, jnp.asarray(xb), jnp.asarray(mb)))[:k]
        out.append(z.reshape(k, -1))
    z = np.concatenate(out).astype(np.float64)
    return z.reshape(-1, t, z.shape[-1])


def multiscale_features(chips: Any, mask: Any = None, seed: int = 0, *, centre: float = 0.5,
                        sides: bool = False, epochs: int = 100, patience: int = 4,
                        embed_dim: int = 16, widths: tuple[int, ...] = (16, 32),
                        batch_size: int = 128,
                        max_train: int | None = 4096, progress: bool = False,
                        return_model: bool = False, budget: int | str | None = None) -> Any:
    """Position-aware self-supervised features of every unit.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)`` array (pixels in any unit; NaN allowed), or a
        :class:`~geocausal.encoders.stream.ChipSource` over a chips cache (streamed: only the
        training images are gathered, the embedding reads it block by block; the same
        features as its arrays for the same seed).
    mask
        Valid pixels (chips' shape without the band axis); masked and NaN pixels enter the
        network as the band mean and never as zeros of the raw scale.
    seed
        Seeds the initialisation, the training subsample, batches and augmentations.
    centre
        Share of the chip's side (of the CNN's feature map) that is the unit's centre.
    sides
        Also pool over the north, south, west and east halves (:func:`region_masks`): for
        confounders that lie on one side of the unit. Off by default.
    epochs, patience, embed_dim, widths, batch_size, max_train, progress
        Pretraining size; see :func:`pretrain_multiscale`.
    return_model
        Also return the :class:`MultiscaleResult` (the encoder and its training record).
    budget
        Memory the gathered training images of a ``ChipSource`` may take (default the
        source's memory budget, :func:`~geocausal.encoders.stream.memory_budget`).

    Returns
    -------
    numpy.ndarray
        ``(N, T * R * embed_dim)`` features (``R`` = 3 regions, 7 with ``sides``), plus
        ``R * embed_dim`` columns of last-minus-first date change when ``T > 1``; with
        ``return_model`` a tuple ``(features, result)``.
    """
    sides = check_bool("sides", sides)  # before the pretraining: a named error, no cost
    pre = pretrain_multiscale(chips, mask, seed, epochs=epochs, patience=patience,
                              embed_dim=embed_dim, widths=widths, batch_size=batch_size,
                              max_train=max_train, progress=progress, budget=budget)
    z = embed_multiscale(pre.model, chips, mask, centre=centre, sides=sides)
    n, t, _ = z.shape
    feats = z.reshape(n, -1)
    if t > 1:
        feats = np.column_stack([feats, z[:, -1] - z[:, 0]])
    if not np.all(np.isfinite(feats)):
        raise DataError(f"learned features have {int((~np.isfinite(feats)).sum())} non-finite "
                        "values; check the chips for infinite pixels")
    return (feats, pre) if return_model else feats


def multiscale_salience(model: Any, chips: Any, mask: Any, weights: np.ndarray, *,
                        centre: float = 0.5, sides: bool = False) -> np.ndarray:
    """Pixel salience of a linear head on :func:`multiscale_features`.

    The gradient of ``features(x) @ weights`` (the head's logit up to a constant) with respect
    to every pixel, L2 over bands: ``(k, H, W)`` for ``(k, H, W, C)`` chips, ``(k, T, H, W)``
    for ``(k, T, H, W, C)``. ``weights`` has one entry per feature column (dates in order, then
    the change columns when there are several dates). Masked or NaN pixels get zero salience.

    Examples
    --------
    >>> from geocausal.encoders.modules import ModelSpec, build_model
    >>> m = build_model(ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,)))
    >>> x = np.random.default_rng(0).normal(size=(3, 8, 8, 2)).astype("float32")
    >>> multiscale_salience(m, x, None, np.ones(12)).shape
    (3, 8, 8)
    """
    x = np.asarray(chips, np.float32)
    single = x.ndim == 4
    items, m, t = _as_items(x, mask)
    valid = np.all(np.isfinite(items), axis=-1)
    m = valid if m is None else (m & valid)
    items = np.nan_to_num(items, nan=0.0, posinf=0.0, neginf=0.0)
    w = jnp.asarray(np.asarray(weights, np.float32))
    k = items.shape[0] // t
    n_feat = (7 if check_bool("sides", sides) else 3) * model.encoder.embed_dim * (t + (t > 1))
    if w.shape != (n_feat,):
        raise DataError(f"weights have shape {tuple(w.shape)}, expected ({n_feat},): one per "
                        "multiscale feature column")
    graphdef, state = nnx.split(model)
    f = _pooled_fn(graphdef, 0.5 if centre is None else float(centre), bool(sides))
    mj = jnp.asarray(m)

    def score(xx):
        z = f(state, xx, mj).reshape(k, t, -1)
        feats = z.reshape(k, -1)
        if t > 1:
            feats = jnp.concatenate([feats, z[:, -1] - z[:, 0]], axis=-1)
        return (feats @ w).sum()

    g = np.asarray(jax.grad(score)(jnp.asarray(items)))
    s = np.sqrt((g ** 2).sum(-1)) * m
    s = s.reshape(k, t, *s.shape[1:])
    return s[:, 0] if single else s

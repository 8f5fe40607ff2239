"""Turn the ``images=`` argument of any design into a feature matrix aligned with the data.

``images`` may be ``None``, an embeddings DataFrame (one row per data row), a 2-D array of
features, a chips array ``(N, T, H, W, C)`` or ``(N, H, W, C)``, or a path to a chips cache.
Chips become per-band summary features (mean and standard deviation per band and period,
ignoring masked pixels) unless ``representation="learned"`` asks the encoders for
cross-fitted embeddings.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).normal(size=(4, 2, 8, 8, 3)).astype("float32")
>>> image_features(chips, 4).shape
(4, 12)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError


def summary_features(chips: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """Per-band mean and standard deviation per period: ``(N, T * C * 2)``.

    ``mask`` (same leading shape as chips without the band axis, True = valid) excludes pixels.
    """
    x = np.asarray(chips, dtype=np.float64)
    if x.ndim == 4:
        x = x[:, None]
        mask = None if mask is None else np.asarray(mask)[:, None]
    if x.ndim != 5:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    valid = np.isfinite(x)
    if mask is not None:
        valid &= np.asarray(mask, bool)[..., None]
    w = valid.astype(np.float64)
    x0 = np.where(valid, x, 0.0)
    cnt = w.sum(axis=(2, 3))
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x0.sum(axis=(2, 3)) / cnt
        var = (w * (x0 - mean[:, :, None, None, :]) ** 2).sum(axis=(2, 3)) / cnt
    feats = np.concatenate([mean, np.sqrt(var)], axis=-1).reshape(x.shape[0], -1)
    col_mean = np.nanmean(np.where(np.isfinite(feats), feats, np.nan), axis=0)
    bad = ~np.isfinite(feats)
    if bad.any():
        feats[bad] = np.take(np.nan_to_num(col_mean), np.nonzero(bad)[1])
    return feats


def image_features(images: Any, n: int, *, representation: str = "summary", seed: int = 0,
                   **kwargs: Any) -> np.ndarray | None:
    """Feature matrix ``(n, p)`` from whatever the user passed as ``images=``.

    Parameters
    ----------
    images
        See the module docstring.
    n
        Number of data rows the features must align with.
    representation
        ``"summary"`` (per-band statistics) or ``"learned"`` (self-supervised encoder embeddings,
        see :mod:`geocausal.encoders`).
    seed
        Seed for learned representations.
    """
    if images is None:
        return None
    if isinstance(images, str | Path):
        from geocausal.data.chips import open_cache

        cache = open_cache(images)
        images = (cache.chips, cache.mask)
    mask = None
    if isinstance(images, tuple):
        images, mask = images
    if isinstance(images, pd.DataFrame):
        feats = images.select_dtypes("number").to_numpy(dtype=float)
    else:
        arr = np.asarray(images)
        if arr.ndim == 2:
            feats = arr.astype(float)
        elif representation == "learned":
            from geocausal.encoders.embed import learned_features

            feats = learned_features(arr, mask=mask, seed=seed, **kwargs)
        else:
            feats = summary_features(arr, mask)
    if feats.shape[0] != n:
        raise DataError(f"images have {feats.shape[0]} rows but the data have {n}")
    if not np.all(np.isfinite(feats)):
        raise DataError(f"image features have {int((~np.isfinite(feats)).sum())} non-finite values")
    return feats

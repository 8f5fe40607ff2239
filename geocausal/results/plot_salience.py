"""Causal salience figure: image beside its salience for the most and least likely treated.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> imgs = rng.random((10, 8, 8, 4)); sal = rng.random((10, 8, 8)); p = rng.random(10)
>>> fig = salience_figure(imgs, sal, p, n=2)
>>> len(fig.axes)
8
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from geocausal.errors import DataError


def _rgb(img: np.ndarray, bands: tuple[int, ...] | None) -> np.ndarray:
    c = img.shape[-1]
    if bands is None:
        bands = (2, 1, 0) if c >= 3 else (0,)
    v = img[..., list(bands)].astype(float)
    lo, hi = np.nanpercentile(v, 2), np.nanpercentile(v, 98)
    v = np.clip((v - lo) / (hi - lo if hi > lo else 1.0), 0, 1)
    return v[..., 0] if v.shape[-1] == 1 else v


def salience_figure(images: np.ndarray, salience: np.ndarray, scores: np.ndarray, *, n: int = 3,
                    bands: tuple[int, ...] | None = None, labels: list[str] | None = None):
    """Rows: the ``n`` highest then the ``n`` lowest ``scores`` (e.g. propensities).

    Parameters
    ----------
    images
        ``(N, H, W, C)`` raw chips (for sequences pass the date of interest).
    salience
        ``(N, H, W)`` salience (e.g. :func:`geocausal.encoders.salience.gradient_salience`).
    scores
        ``(N,)`` propensity scores or logits.
    bands
        Band indices shown as red, green, blue (default ``(2, 1, 0)``).
    labels
        Optional per-unit titles (e.g. unit ids or coordinates).
    """
    images = np.asarray(images)
    salience = np.asarray(salience)
    scores = np.asarray(scores, float)
    if images.ndim != 4 or salience.shape != images.shape[:3] or scores.shape != images.shape[:1]:
        raise DataError(f"need images (N,H,W,C), salience (N,H,W), scores (N,); got "
                        f"{images.shape}, {salience.shape}, {scores.shape}")
    order = np.argsort(-scores)
    n = min(n, len(scores) // 2) or 1
    rows = list(order[:n]) + list(order[-n:])
    fig, axes = plt.subplots(len(rows), 2, figsize=(5, 2.3 * len(rows)), squeeze=False)
    for r, i in enumerate(rows):
        kind = "most likely treated" if r < n else "least likely treated"
        name = labels[i] if labels is not None else f"unit {i}"
        axes[r, 0].imshow(_rgb(images[i], bands), cmap="gray")
        axes[r, 0].set_title(f"{name}: {kind}\nscore {scores[i]:.3f}", fontsize=8)
        axes[r, 1].imshow(salience[i], cmap="magma")
        axes[r, 1].set_title("salience", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    fig.tight_layout()
    return fig

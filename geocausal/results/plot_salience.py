"""Causal salience figure: image beside its salience for the most and least likely treated.

Examples
--------
>>> import numpy as np
>>> rng = np.random.default_rng(0)
>>> imgs = rng.random((10, 8, 8, 4)); sal = rng.random((10, 8, 8)); p = rng.random(10)
>>> fig = salience_figure(imgs, sal, p, n=2)
>>> len(fig.axes)  # 4 rows x (image, salience) + the colorbar
9
"""

from __future__ import annotations

from typing import Any

import numpy as np

from geocausal.errors import DataError
from geocausal.results.plot import new_figure
from geocausal.results.plot_ipw import rgb_bands, stretch


def salience_figure(images: np.ndarray, salience: np.ndarray, scores: np.ndarray, *, n: int = 3,
                    bands: tuple[int, ...] | None = None, labels: list[str] | None = None,
                    roles: Any = None, score_name: str = "score"):
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
        Band indices shown as red, green, blue. Default: the bands with roles red, green and
        blue in ``roles``, else the first three bands in the order given.
    labels
        Optional per-unit titles (e.g. unit ids or coordinates).
    roles
        Band roles (:class:`~geocausal.features.roles.BandRoles` or role -> band index).
    score_name
        What ``scores`` are, for the titles (e.g. ``"propensity"``).

    Returns
    -------
    matplotlib.figure.Figure
        The salience maps share one colour scale (0 to the largest salience shown), with a
        colorbar.
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
    b = rgb_bands(images.shape[-1], bands, roles)
    vmin = min(0.0, float(np.nanmin(salience[rows])))  # signed maps (integrated gradients)
    vmax = float(np.nanmax(salience[rows])) or 1.0
    fig, axes = new_figure(len(rows), 2, size=(5.6, 2.3 * len(rows)), squeeze=False,
                           layout="constrained")
    im = None
    for r, i in enumerate(rows):
        kind = "most likely treated" if r < n else "least likely treated"
        name = labels[i] if labels is not None else f"unit {i}"
        rgb = stretch(images[i][..., b])
        axes[r, 0].imshow(rgb if len(b) == 3 else rgb[..., 0], cmap=None if len(b) == 3 else "gray")
        axes[r, 0].set_title(f"{name}: {kind}\n{score_name} {scores[i]:.3f}", fontsize=8)
        im = axes[r, 1].imshow(salience[i], cmap="magma", vmin=vmin, vmax=vmax)
        axes[r, 1].set_title("salience", fontsize=8)
        for ax in axes[r]:
            ax.set_xticks([])
            ax.set_yticks([])
    axes[0, 0].set_ylabel(f"bands {b} as RGB" if len(b) == 3 else f"band {b[0]}", fontsize=8)
    fig.colorbar(im, ax=axes[:, 1].tolist(), shrink=0.8, label="salience")
    return fig

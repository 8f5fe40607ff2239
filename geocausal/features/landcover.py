"""Land-cover class fractions of chips: a feature of units for interpreting CATE.

Fractions come from a land-cover band of the chips (integer class codes) or from a simple
unsupervised classifier (k-means or a Gaussian mixture) over the pixels' band values.
``gc.cate_landcover`` (:mod:`geocausal.api.landcover`) regresses predicted CATE on them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError
from geocausal.vocabulary import check_count, choice

__all__ = ["landcover_fractions"]


def _as_chips(chips: np.ndarray, period: int) -> np.ndarray:
    x = np.asarray(chips)
    if x.ndim == 5:
        x = x[:, period]
    if x.ndim != 4:
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {x.shape}")
    return x


def landcover_fractions(
    chips: np.ndarray,
    *,
    band: int | None = None,
    classes: Sequence[Any] | None = None,
    n_classes: int = 4,
    method: str = "kmeans",
    period: int = -1,
    change_from: int | None = None,
    max_pixels: int = 50_000,
    seed: int = 0,
) -> pd.DataFrame:
    """Fraction of each land-cover class in each unit's chip.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)``; non-finite pixels are ignored.
    band
        Index of a land-cover band holding class codes; when None the classes are learned.
    classes
        Class codes (or names) to report for ``band`` (default: the codes present).
    n_classes
        Number of learned classes.
    method
        ``"kmeans"`` or ``"gmm"`` (scikit-learn), fitted on up to ``max_pixels`` pixels with
        bands standardised.
    period
        Which period of a sequence to classify (default the last).
    change_from
        Also classify this earlier period with the same classifier and add ``<class>_change``
        columns (fraction at ``period`` minus fraction at ``change_from``).
    seed
        Seed of the pixel sample and the classifier.

    Returns
    -------
    pandas.DataFrame
        ``(N, classes)`` fractions; learned classes are ordered by the mean of the first band
        and their centres (original units) are in ``.attrs["centers"]``.

    Examples
    --------
    >>> rng = np.random.default_rng(0)
    >>> chips = rng.random((50, 8, 8, 2)); chips[:25, :4, :, 0] += 2   # a bright class
    >>> fr = landcover_fractions(chips, n_classes=2, seed=0)
    >>> fr.shape, bool(np.allclose(fr.sum(axis=1), 1))
    ((50, 2), True)
    """
    check_count("n_classes", n_classes, minimum=2)
    check_count("max_pixels", max_pixels, minimum=1)
    x = _as_chips(chips, period).astype(float)
    n, h, w, c = x.shape
    if change_from is not None:
        if np.asarray(chips).ndim != 5:
            raise DataError("change_from needs a chip sequence (N, T, H, W, C)")
        x = np.concatenate([x, _as_chips(chips, change_from).astype(float)])
    if band is not None:
        if not 0 <= band < c:
            raise DataError(f"band {band} is out of range for chips with {c} bands")
        codes = x[..., band].reshape(n, -1)
        uniq = np.unique(codes[np.isfinite(codes)]) if classes is None else np.asarray(classes)
        valid = np.isfinite(codes).sum(axis=1)
        frac = np.column_stack([(codes == k).sum(axis=1) for k in uniq]) / np.maximum(valid, 1)[:, None]
        return pd.DataFrame(frac, columns=[f"class_{k:g}" if isinstance(k, float | np.floating)
                                           else f"class_{k}" for k in uniq])
    method = choice("method", method, ("kmeans", "gmm"), design="landcover_fractions")
    px = x.reshape(-1, c)
    ok = np.all(np.isfinite(px), axis=1)
    if ok.sum() < n_classes:
        raise DataError(f"only {int(ok.sum())} valid pixels for {n_classes} land-cover classes")
    mu, sd = px[ok].mean(axis=0), px[ok].std(axis=0)
    sd[sd == 0] = 1.0
    z = (px - mu) / sd
    rng = np.random.default_rng(seed)
    train = rng.choice(np.flatnonzero(ok), min(max_pixels, int(ok.sum())), replace=False)
    if method == "kmeans":
        from sklearn.cluster import KMeans

        model = KMeans(n_clusters=n_classes, n_init=4, random_state=seed).fit(z[train])
        centers = model.cluster_centers_
    else:
        from sklearn.mixture import GaussianMixture

        model = GaussianMixture(n_components=n_classes, random_state=seed).fit(z[train])
        centers = model.means_
    lab = np.full(px.shape[0], -1)
    lab[ok] = model.predict(z[ok])
    order = np.argsort(centers[:, 0])
    rank = np.empty(n_classes, int)
    rank[order] = np.arange(n_classes)
    lab = np.where(lab >= 0, rank[np.clip(lab, 0, None)], -1).reshape(x.shape[0], -1)
    valid = (lab >= 0).sum(axis=1)
    frac = np.column_stack([(lab == k).sum(axis=1) for k in range(n_classes)])
    frac = frac / np.maximum(valid, 1)[:, None]
    names = [f"class_{k}" for k in range(n_classes)]
    out = pd.DataFrame(frac[:n], columns=names)
    if change_from is not None:
        out = pd.concat([out, pd.DataFrame(frac[:n] - frac[n:], columns=names).add_suffix("_change")],
                        axis=1)
    out.attrs["centers"] = (centers[order] * sd + mu).tolist()
    return out

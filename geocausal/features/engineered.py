"""The engineered representation: per-chip statistics of bands and spectral indices.

:func:`engineered_features` turns chips ``(N, [T,] H, W, C)`` (with a validity mask) into one
row of readable features per unit, computed in blocks of units so that a chips cache streams
from disk:

- for every band and every spectral index the band roles support (spyndex, see
  :mod:`geocausal.features.indices`) and every period:
- ``mean``, ``sd`` (population) and quantiles (``q10``, ``q50``, ``q90``) over the chip's valid
  pixels;
- ``centre`` and ``ring1``, ``ring2``, ...: means over the disk around the chip centre (where the
  unit is) and over the rings around it, out to the chip's corners (multi-scale: ``rings``
  gives the radii as fractions of the half side);
- texture: ``locvar`` (mean 3 x 3 local variance), ``contrast`` (GLCM-like: mean squared
  difference of horizontally and vertically adjacent pixels) and ``edges`` (share of adjacent
  pairs that differ by more than the chip's own SD).
- with ``stats`` beyond these (:data:`EXTRA_STATS`): threshold statistics at pooled quantile
  levels and, for spectral indices, at fixed values (``index_threshold_values``, e.g. NDVI 0.4,
  NDWI 0), edge density of indices at fixed contrasts (``index_contrast_values``), the valid
  share, centre-versus-ring contrasts, means over central square pixel windows (``win1``,
  ``win3``, ...: the values "at the unit" as survey-linked studies extract them) and change over
  time; see :func:`engineered_features`.

Masked pixels (mask False, NaN band values, pixels where an index formula is not finite) never
enter a statistic, as zeros or otherwise. A statistic without any valid pixel (a centre under a
cloud) is NaN, and the frame says so: the designs' ``missing_images=`` then decides.

Columns are named ``<band or index>_<statistic>``, with ``_t<period>`` appended when chips have
more than one period.

Examples
--------
>>> import numpy as np
>>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(3, 8, 8, 2))
>>> f = engineered_features(chips, roles={"red": 1, "nir": 2}, indices=["NDVI"])
>>> f.shape, list(f.columns[:3])
((3, 33), ['band1_mean', 'band1_sd', 'band1_q10'])
>>> bool(np.allclose(f["NDVI_mean"], ((chips[..., 1] - chips[..., 0])
...                                  / (chips[..., 1] + chips[..., 0])).mean(axis=(1, 2))))
True
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import pandas as pd

from geocausal.errors import DataError
from geocausal.features.indices import available_indices, spectral_indices
from geocausal.features.roles import BandRoles, resolve_band_roles

#: statistic groups :func:`engineered_features` computes by default
STATS: tuple[str, ...] = ("mean", "sd", "quantiles", "rings", "texture")
#: groups that need more than one chip (``thresholds``: levels pooled over all chips) or more
#: than one period (``change``), the valid share of the chip and its zones (``valid``), and
#: the contrasts of the zones' means (``surround``: centre versus rings), and means over central
#: square pixel windows (``windows``: the pixel of the unit, its 3 x 3 block, ...);
#: :func:`engineered_features` computes them when asked
EXTRA_STATS: tuple[str, ...] = ("thresholds", "valid", "surround", "change", "windows")
#: every group: the strong representation of the default image stack
ALL_STATS: tuple[str, ...] = STATS + EXTRA_STATS
#: default quantile levels of the pooled thresholds
THRESHOLD_LEVELS: tuple[float, ...] = (0.1, 0.25, 0.5, 0.75, 0.9)
#: a finer grid for the spectral indices: every 5% from 0.05 to 0.95
INDEX_THRESHOLD_LEVELS: tuple[float, ...] = tuple(round(0.05 * k, 2) for k in range(1, 20))
#: default sides (pixels) of the central square windows of the ``windows`` group
WINDOWS: tuple[int, ...] = (1, 3, 5)
#: fixed contrasts for the edge density of normalised-difference indices
INDEX_CONTRAST_VALUES: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3)
#: fixed cut points for normalised-difference indices: every 0.1 from -0.9 to 0.9 (the round
#: values where analysts cut them: NDVI 0.4, NDWI 0, ...)
INDEX_THRESHOLD_VALUES: tuple[float, ...] = tuple(round(0.1 * k, 1) for k in range(-9, 10))


def _as_roles(roles: Any, bands: Sequence[str] | None, preset: str | None, n_bands: int
              ) -> BandRoles:
    if hasattr(roles, "resolved_band_roles"):  # a Manifest
        r = roles.resolved_band_roles()
        if len(r.bands) != n_bands:
            raise DataError(f"the manifest lists {len(r.bands)} image bands {list(r.bands)} but "
                            f"the chips have {n_bands}")
        return r
    if isinstance(roles, BandRoles):
        if len(roles.bands) != n_bands:
            raise DataError(f"the band roles name {len(roles.bands)} bands {list(roles.bands)} "
                            f"but the chips have {n_bands}")
        return roles
    if isinstance(roles, str):  # a preset name
        preset, roles = roles, None
    if roles is not None and not isinstance(roles, Mapping):
        raise DataError(f"roles must be a mapping {{role: band}}, a preset name, BandRoles or a "
                        f"Manifest, got {type(roles).__name__}")
    names = list(bands) if bands is not None else [f"band{i + 1}" for i in range(n_bands)]
    if len(names) != n_bands:
        raise DataError(f"bands= names {len(names)} bands {names} but the chips have {n_bands}")
    return resolve_band_roles(names, roles, preset, where="roles")


def _zones(h: int, w: int, rings: Sequence[float]) -> list[tuple[str, np.ndarray]]:
    """Centre disk and rings (radii as fractions of the half side), out to the corners; a zone
    that holds no pixel of an ``h x w`` chip (a ring thinner than the pixel spacing of a small
    chip) is left out, keeping the others' names.
    """
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    half = min(h, w) / 2
    edges = [0.0, *[float(r) * half for r in rings], np.inf]
    out = []
    for k in range(len(edges) - 1):
        z = (d <= edges[1]) if k == 0 else (d > edges[k]) & (d <= edges[k + 1])
        if z.any():
            out.append(("centre" if k == 0 else f"ring{k}", z))
    return out


def _masked_quantiles(v: np.ndarray, ok: np.ndarray, qs: Sequence[float]) -> list[np.ndarray]:
    """Quantiles (linear interpolation) over the last axis of the valid entries."""
    s = np.sort(np.where(ok, v, np.inf), axis=-1)
    c = ok.sum(axis=-1)
    out = []
    for q in qs:
        pos = q * np.maximum(c - 1, 0)
        lo = np.floor(pos).astype(int)
        hi = np.minimum(lo + 1, np.maximum(c - 1, 0))
        a = np.take_along_axis(s, lo[..., None], -1)[..., 0]
        b = np.take_along_axis(s, hi[..., None], -1)[..., 0]
        with np.errstate(invalid="ignore"):
            val = a + (pos - lo) * np.where(np.isfinite(b - a), b - a, 0.0)
        out.append(np.where(c > 0, val, np.nan))
    return out


def _box3(a: np.ndarray) -> np.ndarray:
    """Sum over the 3 x 3 neighbourhood of the last two axes (zero padding)."""
    p = np.pad(a, [(0, 0)] * (a.ndim - 2) + [(1, 1), (1, 1)])
    h, w = a.shape[-2:]
    return sum(p[..., i:i + h, j:j + w] for i in range(3) for j in range(3))


def window_means(values: np.ndarray, valid: np.ndarray,
                 windows: Sequence[int] = WINDOWS) -> dict[str, np.ndarray]:
    """Means of ``values`` ``(..., H, W)`` over the valid pixels of central square windows.

    A window of side ``k`` covers rows and columns ``(H - k) // 2`` to ``(H - k) // 2 + k``
    (on an even chip an odd window sits half a pixel off the exact centre). Windows wider than
    the chip are left out: they would repeat the chip mean.

    Parameters
    ----------
    values
        Pixel values, any leading axes.
    valid
        Boolean of the same shape; False pixels enter no mean.
    windows
        Positive window sides in pixels.

    Returns
    -------
    dict
        ``win<k>`` -> array of the leading shape; NaN where the window has no valid pixel.

    Examples
    --------
    >>> v = np.arange(25.0).reshape(1, 5, 5)
    >>> s = window_means(v, np.ones_like(v, bool), windows=[1, 3, 7])
    >>> sorted(s), float(s["win1"][0]), float(s["win3"][0])
    (['win1', 'win3'], 12.0, 12.0)
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(v)
    h, w = v.shape[-2:]
    out: dict[str, np.ndarray] = {}
    for k in _windows(windows, h, w):
        r0, c0 = (h - k) // 2, (w - k) // 2
        sv = v[..., r0:r0 + k, c0:c0 + k]
        so = ok[..., r0:r0 + k, c0:c0 + k]
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"win{k}"] = (np.where(so, sv, 0.0).sum(axis=(-2, -1))
                              / so.sum(axis=(-2, -1)))
    return out


def _windows(windows: Sequence[int], h: int, w: int) -> tuple[int, ...]:
    """The checked window sides that fit an ``h x w`` chip (wider ones would repeat the chip
    mean).
    """
    if isinstance(windows, str | bytes):
        raise DataError(f"windows={windows!r} must be a list of pixel sides, e.g. (1, 3, 5)")
    try:
        ks = tuple(int(k) for k in windows)
        ok = all(float(k) == float(j) for k, j in zip(ks, windows, strict=True))
    except (TypeError, ValueError):
        ks, ok = (), False
    if not ks or not ok or any(k < 1 for k in ks) or len(set(ks)) < len(ks):
        raise DataError(f"windows {list(windows) if hasattr(windows, '__iter__') else windows}"
                        " must be distinct positive whole numbers of pixels")
    return tuple(k for k in ks if k <= min(h, w))


def chip_statistics(values: np.ndarray, valid: np.ndarray, *, stats: Sequence[str] = STATS,
                    quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                    rings: Sequence[float] = (0.25, 0.5)) -> dict[str, np.ndarray]:
    """Mask-aware statistics of ``values`` ``(..., H, W)`` over the two pixel axes.

    Parameters
    ----------
    values
        Pixel values, any leading axes (units, periods, channels).
    valid
        Boolean of the same shape; False pixels enter no statistic.
    stats
        Groups among :data:`STATS`.
    quantiles
        Levels in (0, 1) for the ``quantiles`` group (named ``q10`` for 0.1).
    rings
        Increasing radii in (0, 1] (fractions of the chip's half side) separating the centre
        disk and the rings; the last ring runs out to the corners. A zone that holds no pixel
        of the chip (a ring thinner than the pixel spacing of a small chip) is left out, so
        that no statistic is missing on every chip.

    Returns
    -------
    dict
        Statistic name -> array of the leading shape; NaN where no valid pixel counts.

    Examples
    --------
    >>> v = np.zeros((1, 4, 4)); v[0, 1:3, 1:3] = 1.0          # a bright 2 x 2 centre
    >>> s = chip_statistics(v, np.ones_like(v, bool), stats=["rings"], rings=[0.5])
    >>> float(s["centre"][0]), float(s["ring1"][0])
    (1.0, 0.0)
    """
    bad = [s for s in stats if s not in STATS]
    if bad:
        raise DataError(f"stats {bad} are not among {list(STATS)}")
    qs = [float(q) for q in quantiles]
    if any(not 0.0 < q < 1.0 for q in qs):
        raise DataError(f"quantiles {qs} must lie strictly between 0 and 1")
    rs = [float(r) for r in rings]
    if any(not 0.0 < r <= 1.0 for r in rs) or any(b <= a for a, b in zip(rs, rs[1:], strict=False)):
        raise DataError(f"rings {rs} must be increasing fractions in (0, 1] of the chip's half side")
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(v)
    w = ok.astype(np.float64)
    x0 = np.where(ok, v, 0.0)
    cnt = w.sum(axis=(-2, -1))
    out: dict[str, np.ndarray] = {}
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x0.sum(axis=(-2, -1)) / cnt
        var = (w * (x0 - np.nan_to_num(mean)[..., None, None]) ** 2).sum(axis=(-2, -1)) / cnt
    sd = np.sqrt(var)
    if "mean" in stats:
        out["mean"] = mean
    if "sd" in stats:
        out["sd"] = sd
    if "quantiles" in stats:
        flat = v.reshape(v.shape[:-2] + (-1,))
        for q, val in zip(qs, _masked_quantiles(flat, ok.reshape(flat.shape), qs), strict=True):
            out[f"q{round(q * 100):02d}" if q * 100 == round(q * 100) else f"q{q:g}"] = val
    if "rings" in stats:
        for name, z in _zones(v.shape[-2], v.shape[-1], rs):
            wz = w * z
            with np.errstate(invalid="ignore", divide="ignore"):
                out[name] = (x0 * wz).sum(axis=(-2, -1)) / wz.sum(axis=(-2, -1))
    if "texture" in stats:
        s0, s1, s2 = _box3(w), _box3(x0), _box3(x0 * x0)
        use = ok & (s0 >= 2)
        with np.errstate(invalid="ignore", divide="ignore"):
            lv = np.maximum(s2 / s0 - (s1 / s0) ** 2, 0.0)
            out["locvar"] = np.where(use, lv, 0.0).sum(axis=(-2, -1)) / use.sum(axis=(-2, -1))
        thr = np.nan_to_num(sd)[..., None, None]
        nb = _neighbour_pairs(x0, ok)
        sq = sum((d ** 2).sum(axis=(-2, -1)) for d, _ in nb)
        big = sum((both & (np.abs(d) > thr)).sum(axis=(-2, -1)) for d, both in nb)
        pairs = sum(both.sum(axis=(-2, -1)) for _, both in nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            out["contrast"] = sq / pairs
            out["edges"] = big / pairs
    return out


def _neighbour_pairs(v: np.ndarray, ok: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
    """Differences of horizontally and vertically adjacent pixels, 0 unless both are valid."""
    out = []
    for a, b, wa, wb in ((v[..., :, 1:], v[..., :, :-1], ok[..., :, 1:], ok[..., :, :-1]),
                         (v[..., 1:, :], v[..., :-1, :], ok[..., 1:, :], ok[..., :-1, :])):
        both = wa & wb
        with np.errstate(invalid="ignore"):
            out.append((np.where(both, a - b, 0.0), both))
    return out


def _contrasts(contrasts: Sequence[float]) -> tuple[float, ...]:
    cs = tuple(float(c) for c in contrasts)
    if not cs or any(not np.isfinite(c) or c <= 0 for c in cs):
        raise DataError(f"contrasts {list(cs)} must be positive finite differences")
    return cs


def _cut_values(values: Sequence[float]) -> tuple[float, ...]:
    v = tuple(float(x) for x in values)
    if not v or not np.isfinite(v).all():
        raise DataError(f"index_threshold_values: {list(v)} must be a non-empty list of finite "
                        "values")
    return v


def _per_index(option: Mapping[str, Sequence[float]] | None, name: str,
               check: Any) -> dict[str, tuple[float, ...]]:
    """``{index: checked numbers}`` of a per-index option (None: none)."""
    if option is None:
        return {}
    if not isinstance(option, Mapping):
        raise DataError(f"{name} must map index names to lists of numbers, e.g. "
                        "{'NDVI': [0.1, 0.4]}")
    return {k: check(v) for k, v in option.items()}


def contrast_shares(values: np.ndarray, valid: np.ndarray, contrasts: Sequence[float],
                    ) -> dict[str, np.ndarray]:
    """Edge density at fixed contrasts: the share of valid horizontally and vertically
    adjacent pixel pairs whose values differ by more than each contrast.

    Parameters
    ----------
    values
        ``(..., H, W)`` pixel values.
    valid
        Boolean, the same shape: True = the pixel counts.
    contrasts
        Positive differences, e.g. ``[0.05, 0.1, 0.2]`` for a normalised-difference index.

    Returns
    -------
    dict
        ``jumps_c<contrast>`` -> ``(...)`` array (NaN where no valid pair).

    Examples
    --------
    >>> v = np.array([[[0.0, 0.15, 0.15], [0.0, 0.0, 0.4]]])
    >>> s = contrast_shares(v, np.ones_like(v, bool), [0.1, 0.3])
    >>> float(s["jumps_c0.1"][0]), float(s["jumps_c0.3"][0])    # 4 and 1 of 7 pairs
    (0.5714285714285714, 0.14285714285714285)
    """
    cs = _contrasts(contrasts)
    v = np.asarray(values, dtype=np.float64)
    nb = _neighbour_pairs(v, np.asarray(valid, dtype=bool) & np.isfinite(v))
    pairs = sum(both.sum(axis=(-2, -1)) for _, both in nb)
    out: dict[str, np.ndarray] = {}
    for c in cs:
        big = sum((both & (np.abs(d) > c)).sum(axis=(-2, -1)) for d, both in nb)
        with np.errstate(invalid="ignore", divide="ignore"):
            out[f"jumps_c{c:g}"] = np.where(pairs > 0, big / np.where(pairs > 0, pairs, 1),
                                            np.nan)
    return out


def _level_name(q: float) -> str:
    return f"p{round(q * 100):02d}" if q * 100 == round(q * 100) else f"p{q * 100:g}"


def threshold_statistics(values: np.ndarray, valid: np.ndarray, thresholds: np.ndarray,
                         names: Sequence[str] | None = None) -> dict[str, np.ndarray]:
    """Composition and configuration of thresholded pixels: per threshold, the share of valid
    pixels above it, the edge density of the thresholded mask and the distances from the chip
    centre to the nearest pixel above and at-or-below it.

    Parameters
    ----------
    values, valid
        ``(..., H, W)`` pixel values and their validity (False or non-finite pixels enter no
        statistic).
    thresholds
        ``(..., L)``: the ``L`` thresholds of each leading entry (broadcast against the leading
        shape of ``values``, e.g. ``(K, L)`` for one row of thresholds per channel).
    names
        ``L`` names of the thresholds (default ``t0``, ``t1``, ...).

    Returns
    -------
    dict
        ``above_<name>`` (share of valid pixels above), ``edges_<name>`` (share of adjacent
        valid pixel pairs, horizontal and vertical, on both sides of the threshold: the
        fragmentation of the mask), ``dist_above_<name>`` and ``dist_below_<name>`` (distance
        from the chip centre to the nearest valid pixel above / at or below, as a fraction of
        the half diagonal; 1.0 when no valid pixel is on that side). NaN without valid pixels.

    Examples
    --------
    >>> v = np.zeros((1, 5, 5)); v[0, 0, 0] = 1.0                 # one bright corner pixel
    >>> s = threshold_statistics(v, np.ones_like(v, bool), np.array([[0.5]]), ["half"])
    >>> float(s["above_half"][0]), float(s["dist_above_half"][0]), float(s["dist_below_half"][0])
    (0.04, 1.0, 0.0)
    >>> float(s["edges_half"][0])                                 # 2 of the 40 adjacent pairs
    0.05
    """
    v = np.asarray(values, dtype=np.float64)
    ok = np.asarray(valid, dtype=bool) & np.isfinite(v)
    thr = np.asarray(thresholds, dtype=np.float64)
    n_lev = thr.shape[-1]
    names = [f"t{j}" for j in range(n_lev)] if names is None else list(names)
    if len(names) != n_lev:
        raise DataError(f"{len(names)} threshold names for {n_lev} thresholds")
    h, w = v.shape[-2:]
    vv = v[..., None, :, :]                         # (..., 1, H, W)
    okk = ok[..., None, :, :]
    above = (vv > thr[..., None, None]) & okk       # (..., L, H, W)
    below = (~(vv > thr[..., None, None])) & okk
    cnt = ok.sum(axis=(-2, -1))[..., None].astype(np.float64)
    yy, xx = np.mgrid[0:h, 0:w]
    dist = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    dmax = float(dist.max()) if dist.max() > 0 else 1.0
    with np.errstate(invalid="ignore", divide="ignore"):
        share = above.sum(axis=(-2, -1)) / cnt
        cross = np.zeros(share.shape)
        pairs = np.zeros(share.shape)
        for a, b, va, vb in ((above[..., :, 1:], above[..., :, :-1], okk[..., :, 1:],
                              okk[..., :, :-1]),
                             (above[..., 1:, :], above[..., :-1, :], okk[..., 1:, :],
                              okk[..., :-1, :])):
            both = va & vb
            cross = cross + ((a != b) & both).sum(axis=(-2, -1))
            pairs = pairs + np.broadcast_to(both, a.shape).sum(axis=(-2, -1))
        edges = cross / pairs
    d_above = np.where(above, dist, np.inf).min(axis=(-2, -1))
    d_below = np.where(below, dist, np.inf).min(axis=(-2, -1))
    none = cnt == 0
    out: dict[str, np.ndarray] = {}
    for j, nm in enumerate(names):
        out[f"above_{nm}"] = np.where(none[..., 0], np.nan, share[..., j])
        out[f"edges_{nm}"] = edges[..., j]
        for side, dd in (("above", d_above), ("below", d_below)):
            out[f"dist_{side}_{nm}"] = np.where(none[..., 0], np.nan,
                                                np.minimum(dd[..., j], dmax) / dmax)
    return out


def pooled_thresholds(sample: np.ndarray, levels: Sequence[float] = THRESHOLD_LEVELS
                      ) -> np.ndarray:
    """Quantiles of each channel's valid pixel values pooled over chips: ``(K, L)``.

    ``sample`` is ``(..., K, H, W)`` with NaN for invalid pixels. A channel without any valid
    pixel gets NaN thresholds (its statistics are then NaN, never zeros).

    Examples
    --------
    >>> s = np.arange(8.0).reshape(2, 1, 2, 2)
    >>> pooled_thresholds(s, [0.5]).tolist()
    [[3.5]]
    """
    lv = [float(q) for q in levels]
    if not lv or any(not 0.0 < q < 1.0 for q in lv):
        raise DataError(f"threshold levels {lv} must be quantile levels strictly between 0 "
                        "and 1")
    v = np.moveaxis(np.asarray(sample, np.float64), -3, 0).reshape(sample.shape[-3], -1)
    out = np.full((v.shape[0], len(lv)), np.nan)
    for k in range(v.shape[0]):
        x = v[k][np.isfinite(v[k])]
        if x.size:
            out[k] = np.quantile(x, lv)
    return out


def _unpack(chips: Any, masks: Any, ids: Any, bands: Any) -> tuple[Any, Any, Any, Any]:
    if hasattr(chips, "chips") and hasattr(chips, "unit_ids"):  # a chips cache or ChipsResult
        cache = chips
        chips = cache.chips
        masks = getattr(cache, "mask", None) if masks is None else masks
        ids = np.asarray(cache.unit_ids) if ids is None else ids
        bands = list(getattr(cache, "bands", None) or []) or bands if bands is None else bands
    elif isinstance(chips, tuple):
        if len(chips) != 2 or masks is not None:
            raise DataError("chips as a tuple must be (chips, mask), without masks=")
        chips, masks = chips
    return chips, masks, ids, bands


def engineered_features(chips: Any, masks: Any = None, roles: Any = None, *,
                        bands: Sequence[str] | None = None, preset: str | None = None,
                        ids: Any = None, indices: str | Sequence[str] = "default",
                        include_bands: bool = True, stats: Sequence[str] = STATS,
                        quantiles: Sequence[float] = (0.1, 0.5, 0.9),
                        rings: Sequence[float] = (0.25, 0.5),
                        threshold_levels: Sequence[float] = THRESHOLD_LEVELS,
                        threshold_channels: str = "indices",
                        index_threshold_levels: Sequence[float] | None = None,
                        index_threshold_values: Mapping[str, Sequence[float]] | None = None,
                        index_contrast_values: Mapping[str, Sequence[float]] | None = None,
                        windows: Sequence[int] = WINDOWS,
                        block: int = 256) -> pd.DataFrame:
    """Engineered image features, one row per unit: statistics of bands and spectral indices.

    Parameters
    ----------
    chips
        ``(N, T, H, W, C)`` or ``(N, H, W, C)`` array (NaN = missing), a ``(chips, mask)``
        pair, or a chips cache / ``ChipsResult`` (ids, mask and band names come with it and
        chips are read ``block`` units at a time).
    masks
        Boolean ``(N, [T,] H, W)``, True = valid pixel.
    roles
        The bands' roles: a mapping ``{role: band name or 1-based number}``, a preset name
        (``"sentinel2"``, ``"landsat8"``, ...), a :class:`~geocausal.features.roles.BandRoles`
        or a :class:`~geocausal.data.manifest.Manifest` (its ``band_roles``/``band_preset``).
        None: band names that are role names (``red``, ``nir``, ...).
    bands
        Band names in chip order (default: the cache's, else ``band1``, ``band2``, ...).
    preset
        Sensor preset for band names (with a mapping ``roles``, the mapping wins).
    ids
        Unit ids for the index (default: the cache's unit ids, else ``0..N-1``).
    indices
        ``"default"`` (:data:`~geocausal.features.indices.DEFAULT_INDICES`), ``"all"``, a list
        of spyndex names, or ``()`` for none. Indices the roles cannot support are skipped
        with an :class:`~geocausal.errors.IndicesSkippedWarning`.
    include_bands
        Statistics of the bands themselves, not only of the indices.
    stats
        Groups among :data:`ALL_STATS`: those of :func:`chip_statistics` (:data:`STATS`, the
        default) and

        - ``"thresholds"``: :func:`threshold_statistics` of each threshold channel at the
          quantiles ``threshold_levels`` of its valid pixels pooled over all chips and periods
          (:func:`pooled_thresholds`; no label is used): share of pixels above (e.g. the
          vegetated or water share), edge density of the thresholded mask (fragmentation) and
          distance from the centre to the nearest pixel above / below (e.g. to water);
          columns ``<channel>_above_p50``, ``<channel>_edges_p50``,
          ``<channel>_dist_above_p50``, ``<channel>_dist_below_p50``;
        - ``"valid"``: the share of valid pixels (mask True, band values finite) over the chip
          and over its centre and rings (cloud or no-data cover; columns ``valid_share``,
          ``valid_centre``, ``valid_ring1``, ...);
        - ``"surround"`` (with ``"rings"``): for every channel and every pair of an inner and
          an outer zone, the inner zone's mean minus the outer one's (``<channel>_centre_vs_ring1``,
          ``<channel>_ring1_vs_ring2``, ...): the unit against its surroundings at every scale,
          as columns of their own, so that a penalised learner does not have to find the
          difference of two nearly collinear zone means (the direction ridge shrinks most);
        - ``"windows"``: for every channel, the mean over the central square windows of
          ``windows`` pixels (:func:`window_means`; columns ``<channel>_win1``,
          ``<channel>_win3``, ...): the value at the unit's pixel and its 3 x 3 or 5 x 5
          block, the windows survey-linked studies extract, which the round centre disk of
          ``rings`` does not reproduce;
        - ``"change"`` (chips with several periods): every other column's mean over the later
          half of the periods minus its mean over the earlier half (periods where it has no
          valid pixel are left out of those means), named ``<column>_change``.
    quantiles, rings
        See :func:`chip_statistics`.
    threshold_levels
        Quantile levels of the pooled thresholds.
    threshold_channels
        ``"indices"`` (default: the spectral indices, or the bands when no index is computed)
        or ``"all"`` (bands and indices).
    index_threshold_levels
        Quantile levels for the spectral indices' thresholds when they differ from the bands'
        (None: ``threshold_levels`` for every channel). A finer grid on the indices (e.g.
        :data:`INDEX_THRESHOLD_LEVELS`, every 5%) lets a learner find a cover class defined
        at any index value (vegetation at NDVI 0.4, say) without thresholding every band as
        finely.
    index_threshold_values
        Fixed cut points per spectral index, ``{index: values}`` (e.g.
        ``{"NDVI": [0.2, 0.4, 0.6], "NDWI": [0.0]}``; the default stack gives every index of
        :data:`~geocausal.features.indices.NORMALISED_DIFFERENCES` the values
        :data:`INDEX_THRESHOLD_VALUES`), in addition to the pooled quantile levels: the same
        threshold statistics at these values, columns ``<index>_above_v0.4``,
        ``<index>_edges_v0.4``, ... (``v-0.2`` for -0.2). Indices not computed are ignored.
    index_contrast_values
        With ``"texture"``: edge density of spectral indices at fixed contrasts,
        ``{index: contrasts}`` (:func:`contrast_shares`; the default stack gives the
        normalised differences :data:`INDEX_CONTRAST_VALUES`), columns
        ``<index>_jumps_c0.1``, ... Indices not computed are ignored.
    windows
        Sides in pixels of the ``"windows"`` group's central windows (default
        :data:`WINDOWS`); windows wider than the chip are left out.
    block
        Units per block.

    Returns
    -------
    pandas.DataFrame
        Indexed by unit id, one float column per feature (NaN where no valid pixel counts).

    Raises
    ------
    DataError
        Chips that are not ``(N, [T,] H, W, C)``, a mask of another shape, roles that do not
        match the bands, unknown statistics or indices, repeated ids.

    Examples
    --------
    >>> chips = np.random.default_rng(0).uniform(0.05, 0.5, size=(6, 3, 8, 8, 2))
    >>> f = engineered_features(chips, roles={"red": 1, "nir": 2}, indices=["NDVI"],
    ...                         stats=["mean", "thresholds", "change"], threshold_levels=[0.5])
    >>> [c for c in f.columns if c.startswith("NDVI") and c.endswith("_t0")]
    ['NDVI_mean_t0', 'NDVI_above_p50_t0', 'NDVI_edges_p50_t0', 'NDVI_dist_above_p50_t0', 'NDVI_dist_below_p50_t0']
    >>> late = (f["NDVI_mean_t1"] + f["NDVI_mean_t2"]) / 2      # periods 1-2 against period 0
    >>> bool(np.allclose(f["NDVI_mean_change"], late - f["NDVI_mean_t0"]))
    True
    """
    chips, masks, ids, bands = _unpack(chips, masks, ids, bands)
    shape = tuple(chips.shape)
    if len(shape) not in (4, 5):
        raise DataError(f"chips must be (N, T, H, W, C) or (N, H, W, C), got shape {shape}")
    n, c = shape[0], shape[-1]
    if masks is not None and tuple(masks.shape) != shape[:-1]:
        raise DataError(f"masks have shape {tuple(masks.shape)}; they must be the chips' shape "
                        f"without the band axis, {shape[:-1]}")
    if not isinstance(block, int | np.integer) or block < 1:
        raise DataError(f"block={block!r}: give a positive number of units per block")
    stats = list(stats)
    bad = [s for s in stats if s not in ALL_STATS]
    if bad:
        raise DataError(f"stats {bad} are not among {list(ALL_STATS)}")
    if threshold_channels not in ("indices", "all"):
        raise DataError(f"threshold_channels={threshold_channels!r} must be 'indices' or 'all'")
    cut_values = _per_index(index_threshold_values, "index_threshold_values", _cut_values)
    contrasts = _per_index(index_contrast_values, "index_contrast_values", _contrasts)
    wins = _windows(windows, shape[-3], shape[-2]) if "windows" in stats else ()
    pix_stats = [s for s in stats if s in STATS]
    if "surround" in stats and "rings" not in stats:
        raise DataError("stats 'surround' contrasts the zones of 'rings': add 'rings' to stats")
    r = _as_roles(roles, bands, preset, c)
    want = [] if (not isinstance(indices, str) and len(indices) == 0) else indices
    names = available_indices(r, want)[0] if want else []
    if want:  # warn once, here, about skipped indices
        spectral_indices(np.zeros((1, c)), r, want, stacklevel=2)
    channels = (list(r.bands) if include_bands else []) + names
    if not channels:
        raise DataError("no feature channel: include_bands=False and no spectral index the "
                        "band roles support")
    if not pix_stats and "thresholds" not in stats and not wins:
        raise DataError(f"stats {stats} compute no per-period statistic on {shape[-3]} x "
                        f"{shape[-2]} px chips; add one of {list(STATS)}, 'thresholds' or "
                        "'windows' that fit the chips")
    idx = pd.Index(np.arange(n) if ids is None else np.asarray(ids), name="unit_id")
    if len(idx) != n:
        raise DataError(f"ids has {len(idx)} entries for {n} chips")
    if not idx.is_unique:
        raise DataError(f"ids repeat, e.g. {idx[idx.duplicated()][:3].tolist()}; give one id "
                        "per chip")

    def channel_values(start: int, stop: int) -> np.ndarray:
        """(b, T, K, H, W) band and index values of units start:stop, NaN where invalid."""
        x = np.asarray(chips[start:stop], dtype=np.float64)
        m = None if masks is None else np.asarray(masks[start:stop], dtype=bool)
        if x.ndim == 4:
            x = x[:, None]
            m = None if m is None else m[:, None]
        ok = np.isfinite(x)
        if m is not None:
            ok &= m[..., None]
        vals = [np.where(ok, x, np.nan)] if include_bands else []
        if names:
            vals.append(spectral_indices(x, r, names, m, warn=False)[0])
        return np.moveaxis(np.concatenate(vals, axis=-1), -1, 2)

    # threshold groups: (channel positions, level names, pooled thresholds (K, L))
    groups: list[tuple[list[int], list[str], np.ndarray]] = []
    if "thresholds" in stats:
        thr_pos = ([channels.index(nm) for nm in names]
                   if threshold_channels == "indices" and names else list(range(len(channels))))
        coarse = tuple(float(q) for q in threshold_levels)
        fine = coarse if index_threshold_levels is None else tuple(
            float(q) for q in index_threshold_levels)
        lv_of = {k: fine if channels[k] in names else coarse for k in thr_pos}
        per_unit = int(np.prod(shape[1:-1]))
        step = max(1, -(-n * per_unit // 2_000_000))  # at most ~2e6 pooled values per channel
        sample = np.concatenate([channel_values(s0, min(s0 + block, n))[(-s0) % step::step]
                                 [:, :, thr_pos] for s0 in range(0, n, int(block))], axis=0)
        for lv in dict.fromkeys(lv_of[k] for k in thr_pos):  # in channel order, bands first
            pos = [k for k in thr_pos if lv_of[k] == lv]
            sub = sample[:, :, [thr_pos.index(k) for k in pos]]
            groups.append((pos, [_level_name(q) for q in lv], pooled_thresholds(sub, lv)))
        val_of = {channels.index(k): v for k, v in cut_values.items() if k in names}
        for vals in dict.fromkeys(val_of.values()):  # fixed cut points, e.g. NDVI 0.4
            pos = [k for k in sorted(val_of) if val_of[k] == vals]
            groups.append((pos, [f"v{x:g}" for x in vals],
                           np.tile(np.asarray(vals, float), (len(pos), 1))))
    jumps: dict[tuple[float, ...], list[int]] = {}  # contrasts -> channel positions
    if "texture" in stats:
        for k, cs in contrasts.items():
            if k in names:
                jumps.setdefault(cs, []).append(channels.index(k))
    parts: list[np.ndarray] = []
    col_names: list[tuple[str, str]] = []
    for start in range(0, n, int(block)):
        v = channel_values(start, min(start + block, n))  # (b, T, K, H, W)
        feats, col_names = [], []
        if pix_stats:
            st = chip_statistics(v, np.isfinite(v), stats=pix_stats, quantiles=quantiles,
                                 rings=rings)
            a = np.stack(list(st.values()), axis=-1)  # (b, T, K, S)
            feats.append(a.reshape(a.shape[:2] + (-1,)))
            col_names += [(ch, s) for ch in channels for s in st]
        if wins:
            ws = window_means(v, np.isfinite(v), wins)
            a = np.stack(list(ws.values()), axis=-1)  # (b, T, K, S)
            feats.append(a.reshape(a.shape[:2] + (-1,)))
            col_names += [(ch, s) for ch in channels for s in ws]
        for cs, pos in jumps.items():
            vj = v[:, :, pos]
            js = contrast_shares(vj, np.isfinite(vj), cs)
            feats.append(np.stack(list(js.values()), axis=-1).reshape(vj.shape[:2] + (-1,)))
            col_names += [(channels[k], nm) for k in pos for nm in js]
        for pos, levels, thr in groups:
            vt = v[:, :, pos]
            ts = threshold_statistics(vt, np.isfinite(vt), thr, levels)
            a = np.stack(list(ts.values()), axis=-1)  # (b, T, Kt, S)
            feats.append(a.reshape(a.shape[:2] + (-1,)))
            col_names += [(channels[k], s) for k in pos for s in ts]
        if "valid" in stats:  # cloud / no-data cover of the chip, its centre and rings
            nb = len(r.bands) if include_bands else len(channels)
            ok = np.isfinite(v[:, :, :nb])
            ok = ok.all(axis=2) if include_bands else ok.any(axis=2)
            vs = chip_statistics(ok.astype(np.float64), np.ones(ok.shape, bool),
                                 stats=["mean", "rings"], rings=rings)
            feats.append(np.stack(list(vs.values()), axis=-1))  # (b, T, 1 + zones)
            col_names += [("valid", "share" if z == "mean" else z) for z in vs]
        parts.append(np.concatenate(feats, axis=-1))  # (b, T, F)
    arr = np.concatenate(parts, axis=0)
    if "surround" in stats:  # inner zone minus outer zone, every pair, every channel
        zones = [nm for nm, _ in _zones(shape[-3], shape[-2], rings)]
        pos = {cs: k for k, cs in enumerate(col_names)}
        extra, extra_names = [], []
        for ch in channels:
            for i, zi in enumerate(zones):
                for zo in zones[i + 1:]:
                    extra.append(arr[..., pos[(ch, zi)]] - arr[..., pos[(ch, zo)]])
                    extra_names.append((ch, f"{zi}_vs_{zo}"))
        if extra:
            arr = np.concatenate([arr, np.stack(extra, axis=-1)], axis=-1)
            col_names = col_names + extra_names
    t = arr.shape[1]
    cols = [f"{ch}_{s}" + (f"_t{p}" if t > 1 else "") for p in range(t) for ch, s in col_names]
    out = arr.reshape(n, -1)
    if "change" in stats and t > 1:
        import warnings

        with warnings.catch_warnings(), np.errstate(invalid="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # all periods empty: NaN, said
            change = np.nanmean(arr[:, t // 2:], axis=1) - np.nanmean(arr[:, :t // 2], axis=1)
        out = np.column_stack([out, change])
        cols += [f"{ch}_{s}_change" for ch, s in col_names]
    return pd.DataFrame(out, index=idx, columns=cols)

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
    """Centre disk and rings (radii as fractions of the half side), out to the corners."""
    yy, xx = np.mgrid[0:h, 0:w]
    d = np.hypot(yy - (h - 1) / 2, xx - (w - 1) / 2)
    half = min(h, w) / 2
    edges = [0.0, *[float(r) * half for r in rings], np.inf]
    out = []
    for k in range(len(edges) - 1):
        z = (d <= edges[1]) if k == 0 else (d > edges[k]) & (d <= edges[k + 1])
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
        disk and the rings; the last ring runs out to the corners.

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
        sq = np.zeros(v.shape[:-2])
        big = np.zeros(v.shape[:-2])
        pairs = np.zeros(v.shape[:-2])
        thr = np.nan_to_num(sd)[..., None, None]
        for a, b, wa, wb in ((x0[..., :, 1:], x0[..., :, :-1], ok[..., :, 1:], ok[..., :, :-1]),
                             (x0[..., 1:, :], x0[..., :-1, :], ok[..., 1:, :], ok[..., :-1, :])):
            both = wa & wb
            diff = np.where(both, a - b, 0.0)
            sq += (diff ** 2).sum(axis=(-2, -1))
            big += (both & (np.abs(diff) > thr)).sum(axis=(-2, -1))
            pairs += both.sum(axis=(-2, -1))
        with np.errstate(invalid="ignore", divide="ignore"):
            out["contrast"] = sq / pairs
            out["edges"] = big / pairs
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
                        rings: Sequence[float] = (0.25, 0.5), block: int = 256) -> pd.DataFrame:
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
    stats, quantiles, rings
        See :func:`chip_statistics`.
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
    r = _as_roles(roles, bands, preset, c)
    want = [] if (not isinstance(indices, str) and len(indices) == 0) else indices
    names = available_indices(r, want)[0] if want else []
    if want:  # warn once, here, about skipped indices
        spectral_indices(np.zeros((1, c)), r, want, stacklevel=2)
    channels = (list(r.bands) if include_bands else []) + names
    if not channels:
        raise DataError("no feature channel: include_bands=False and no spectral index the "
                        "band roles support")
    idx = pd.Index(np.arange(n) if ids is None else np.asarray(ids), name="unit_id")
    if len(idx) != n:
        raise DataError(f"ids has {len(idx)} entries for {n} chips")
    if not idx.is_unique:
        raise DataError(f"ids repeat, e.g. {idx[idx.duplicated()][:3].tolist()}; give one id "
                        "per chip")
    parts: list[np.ndarray] = []
    stat_names: list[str] = []
    for start in range(0, n, int(block)):
        x = np.asarray(chips[start:start + block], dtype=np.float64)
        m = None if masks is None else np.asarray(masks[start:start + block], dtype=bool)
        if x.ndim == 4:
            x = x[:, None]
            m = None if m is None else m[:, None]
        ok = np.isfinite(x)
        if m is not None:
            ok &= m[..., None]
        vals = [np.where(ok, x, np.nan)] if include_bands else []
        if names:
            vals.append(spectral_indices(x, r, names, m, warn=False)[0])
        v = np.moveaxis(np.concatenate(vals, axis=-1), -1, 2)  # (b, T, K, H, W)
        st = chip_statistics(v, np.isfinite(v), stats=stats, quantiles=quantiles, rings=rings)
        stat_names = list(st)
        parts.append(np.stack([st[s] for s in stat_names], axis=-1))  # (b, T, K, S)
    arr = np.concatenate(parts, axis=0)
    t = arr.shape[1]
    cols = [f"{ch}_{s}" + (f"_t{p}" if t > 1 else "")
            for p in range(t) for ch in channels for s in stat_names]
    return pd.DataFrame(arr.reshape(n, -1), index=idx, columns=cols)

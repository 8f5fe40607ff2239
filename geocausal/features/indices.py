"""Spectral indices of chips from their band roles, computed by ``spyndex``.

spyndex (the "Awesome Spectral Indices" catalogue) holds each index's formula and the bands it
needs, in its own band codes (``R`` red, ``N`` near-infrared, ``S1`` short-wave infrared 1, ...).
:func:`spectral_indices` maps the chip bands to those codes through their roles
(:mod:`geocausal.features.roles`), fills the index constants (``L``, ``g``, ``C1``, ...) with
spyndex's defaults, and evaluates the requested indices on every pixel.

Masked pixels (``mask`` False) and non-finite band values become NaN before any formula is
evaluated, and a pixel where a formula is not finite (a zero denominator) is NaN too: missing
pixels stay missing, they never turn into zeros. Requested indices the bands cannot support
(a band role the chips lack, a constant without default such as a sensor wavelength) are
skipped with an :class:`~geocausal.errors.IndicesSkippedWarning` that lists them.

Band values are taken as surface reflectance in 0..1 (the chips cache applies the manifest's
``scale``); normalised-difference indices do not depend on the scale, but EVI, SAVI and the
other indices with additive constants do.

Examples
--------
>>> import numpy as np
>>> from geocausal.features.roles import resolve_band_roles
>>> roles = resolve_band_roles(["red", "nir"])
>>> chips = np.array([[[[0.1, 0.5]]]])           # one chip of 1 x 1 px: red 0.1, nir 0.5
>>> vals, names = spectral_indices(chips, roles, ["NDVI"])
>>> names, round(float(vals[0, 0, 0, 0]), 4)
(['NDVI'], 0.6667)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from geocausal.errors import DataError, IndicesSkippedWarning
from geocausal.features.roles import BandRoles

#: indices computed when none are named (each only where the bands support it)
DEFAULT_INDICES: tuple[str, ...] = ("NDVI", "NDWI", "MNDWI", "NDBI", "EVI", "SAVI", "NBR",
                                    "NDMI", "BI")
#: the default indices that are normalised differences ``(a - b) / (a + b)``, bounded by -1
#: and 1, whose conventional cut points are round values (NDVI 0.2 / 0.4 / 0.6 for sparse /
#: moderate / dense vegetation, NDWI or MNDWI 0 for open water, NDBI 0 for built-up land)
NORMALISED_DIFFERENCES: tuple[str, ...] = ("NDVI", "NDWI", "MNDWI", "NDBI", "NBR", "NDMI")


def _catalogue() -> Any:
    import spyndex

    return spyndex


def _constants() -> dict[str, float]:
    sp = _catalogue()
    return {k: float(c.default) for k, c in sp.constants.items()
            if isinstance(c.default, int | float) and not isinstance(c.default, bool)}


def available_indices(roles: BandRoles, indices: str | Sequence[str] = "default"
                      ) -> tuple[list[str], dict[str, list[str]]]:
    """Which of ``indices`` the bands support, and what each of the others lacks.

    ``indices`` is ``"default"`` (:data:`DEFAULT_INDICES`), ``"all"`` (every spyndex index) or
    a list of spyndex index names. Returns ``(supported, {skipped index: missing inputs})``.

    Raises
    ------
    DataError
        A name that is not a spyndex index.

    Examples
    --------
    >>> from geocausal.features.roles import resolve_band_roles
    >>> ok, skipped = available_indices(resolve_band_roles(["red", "nir", "swir1"]),
    ...                                 ["NDVI", "NDBI", "EVI"])
    >>> ok, skipped
    (['NDVI', 'NDBI'], {'EVI': ['B']})
    """
    sp = _catalogue()
    if isinstance(indices, str):
        if indices == "default":
            names = list(DEFAULT_INDICES)
        elif indices == "all":
            names = sorted(sp.indices)
        else:
            names = [indices]
    else:
        names = [str(i) for i in indices]
    unknown = [i for i in names if i not in sp.indices]
    if unknown:
        raise DataError(f"indices {unknown} are not spyndex indices; give names from "
                        "spyndex.indices (e.g. 'NDVI', 'NDWI', 'NBR'), 'default' or 'all'")
    if len(set(names)) != len(names):
        raise DataError(f"indices repeat: {names}")
    have = set(roles.spyndex_bands()) | set(_constants())
    ok, skipped = [], {}
    for name in names:
        missing = [b for b in sp.indices[name].bands if b not in have]
        if missing:
            skipped[name] = missing
        else:
            ok.append(name)
    return ok, skipped


def spectral_indices(chips: np.ndarray, roles: BandRoles, indices: str | Sequence[str] = "default",
                     mask: np.ndarray | None = None, *, warn: bool = True,
                     stacklevel: int = 2) -> tuple[np.ndarray, list[str]]:
    """Per-pixel spectral indices: ``(..., K)`` for chips ``(..., C)`` with band roles.

    Parameters
    ----------
    chips
        Array whose last axis holds the bands named in ``roles.bands``.
    roles
        The bands' roles (:func:`~geocausal.features.roles.resolve_band_roles`).
    indices
        ``"default"``, ``"all"`` or a list of spyndex index names.
    mask
        Boolean, the shape of ``chips`` without the band axis, True = valid pixel.
    warn
        Warn (:class:`~geocausal.errors.IndicesSkippedWarning`) about indices skipped.
    stacklevel
        Of the warning.

    Returns
    -------
    values, names
        ``values[..., k]`` is index ``names[k]``; NaN where a pixel is masked, a band value is
        not finite or the formula is not finite there.

    Raises
    ------
    DataError
        Chips whose band axis does not match ``roles.bands``, a mask of the wrong shape, an
        unknown index name.
    """
    x = np.asarray(chips, dtype=np.float64)
    if x.ndim < 1 or x.shape[-1] != len(roles.bands):
        raise DataError(f"chips have {x.shape[-1] if x.ndim else 0} bands on the last axis but "
                        f"the band roles name {len(roles.bands)} bands {list(roles.bands)}")
    if mask is not None:
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != x.shape[:-1]:
            raise DataError(f"mask has shape {mask.shape}; it must be the chips' shape without "
                            f"the band axis, {x.shape[:-1]}")
    ok, skipped = available_indices(roles, indices)
    if skipped and warn:
        detail = ", ".join(f"{k} (needs {'/'.join(v)})" for k, v in skipped.items())
        warnings.warn(f"{len(skipped)} spectral indices skipped: the bands' roles "
                      f"{sorted(roles.roles)} cannot support {detail}; give the missing bands "
                      "roles (band_roles / band_preset) to compute them",
                      IndicesSkippedWarning, stacklevel=stacklevel + 1)
    sp = _catalogue()
    consts = _constants()
    bands = roles.spyndex_bands()
    out = np.full(x.shape[:-1] + (len(ok),), np.nan)
    if not ok:
        return out, ok
    params: dict[str, Any] = {}
    for code, pos in bands.items():
        b = x[..., pos]
        bad = ~np.isfinite(b)
        if mask is not None:
            bad |= ~mask
        params[code] = np.where(bad, np.nan, b)
    for k, name in enumerate(ok):
        need = {b: params[b] if b in params else consts[b] for b in sp.indices[name].bands}
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            v = np.asarray(sp.computeIndex(name, params=need), dtype=np.float64)
        out[..., k] = np.where(np.isfinite(v), v, np.nan)
    return out, ok

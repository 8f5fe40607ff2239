r"""Data manifests: a study's units, rasters, periods, chip size and tabular column roles.

A manifest is a YAML file validated by the pydantic :class:`Manifest` schema; paths are
relative to the manifest's folder. Every validation error names the field and the file.

Examples
--------
>>> import tempfile, pathlib
>>> d = pathlib.Path(tempfile.mkdtemp())
>>> _ = (d / "units.csv").write_text("id,lon,lat\n1,0.5,0.5\n")
>>> _ = (d / "m.yaml").write_text('''
... name: tiny
... units: {path: units.csv, id: id, lon: lon, lat: lat}
... rasters: []
... periods: []
... chip: {size_px: 8}
... ''')
>>> load_manifest(d / "m.yaml").name
'tiny'
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, model_validator

from geocausal.data.joins import SIDE_LABELS
from geocausal.errors import ManifestError

ROLES = ("outcome", "treatment", "covariates", "groups", "cluster", "time", "running",
         "weight", "instrument", "id")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class UnitsSpec(_Strict):
    """Where the units are: a GeoPackage, GeoParquet or CSV with lon/lat columns."""

    path: str = Field(description="GeoPackage (.gpkg), GeoParquet (.parquet) or CSV, relative to the manifest")
    id: str = Field(description="column with the unit id (unique)")
    layer: str | None = Field(None, description="layer of a GeoPackage")
    lon: str | None = Field(None, description="longitude (or x) column, for CSV")
    lat: str | None = Field(None, description="latitude (or y) column, for CSV")
    crs: str = Field("EPSG:4326", description="CRS of the lon/lat columns (CSV) when the file has none")

    @model_validator(mode="after")
    def _csv_needs_coords(self) -> UnitsSpec:
        if self.path.lower().endswith(".csv") and not (self.lon and self.lat):
            raise ValueError("a CSV units file needs both 'lon' and 'lat' column names")
        return self


#: clear values of the cloud-mask presets: Fmask (0 clear land, 1 clear water; 2 shadow, 3 snow,
#: 4 cloud, 255 fill) and Sentinel-2's scene classification SCL (4 vegetation, 5 not vegetated,
#: 6 water; 0 no data, 1 saturated, 2 dark, 3 shadow, 7 unclassified, 8-10 cloud/cirrus, 11 snow)
CLOUD_MASK_PRESETS: dict[str, tuple[int, ...]] = {"fmask": (0, 1), "scl": (4, 5, 6)}


class CloudMask(_Strict):
    """A band that flags clouds: pixels whose value is not in ``clear_values`` are masked.

    Give ``clear_values`` or a ``preset`` (``fmask``: 0, 1; ``scl``: 4, 5, 6), not both.
    """

    band: str = Field(description="name of the mask band (one of the raster's bands)")
    clear_values: list[int] | None = Field(None, description="mask values that mean a clear pixel")
    preset: Literal["fmask", "scl"] | None = Field(
        None, description="sensor mask whose clear values to use: fmask (Landsat Fmask: 0 clear "
        "land, 1 clear water) or scl (Sentinel-2 SCL: 4 vegetation, 5 bare, 6 water)")

    @model_validator(mode="after")
    def _one_source(self) -> CloudMask:
        if (self.clear_values is None) == (self.preset is None):
            raise ValueError("give exactly one of 'clear_values' and 'preset' (fmask, scl)")
        return self

    @property
    def clear(self) -> tuple[int, ...]:
        """The mask values that mean a clear pixel."""
        if self.preset is not None:
            return CLOUD_MASK_PRESETS[self.preset]
        return tuple(self.clear_values or ())


class CompositeSpec(_Strict):
    """Reduce a period's many scenes to one image per pixel over the clear observations."""

    reducer: Literal["median", "mean", "min", "max", "quantile"] = Field(
        "median", description="per-pixel reducer over the clear observations of the period")
    quantile: float | None = Field(None, gt=0, lt=1, description="the quantile, for reducer "
                                   "'quantile' (numpy's default linear interpolation)")
    count_band: str = Field("n_clear", description="name of the band holding the number of "
                            "clear observations per pixel")

    @model_validator(mode="after")
    def _quantile_given(self) -> CompositeSpec:
        if (self.reducer == "quantile") != (self.quantile is not None):
            raise ValueError("give 'quantile' exactly when reducer is 'quantile'")
        return self


class StacSpec(_Strict):
    """A local STAC catalog, collection or item whose items are the period's scenes."""

    path: str = Field(description="STAC catalog/collection/item JSON file, relative to the manifest")
    datetime: list[str] | str | None = Field(
        None, description="window 'start/end' (ISO dates, '..' open) or [start, end]: only items "
        "dated inside it (inclusive) belong to the period")
    collection: str | None = Field(None, description="only items of this collection id")


class RasterSpec(_Strict):
    """One period's imagery: one or more GeoTIFF/COG/VRT files (tiles) with the same bands.

    ``paths`` are files, glob patterns or http(s) URLs of COGs (read by range requests). With
    ``band_files`` each path is a scene folder holding one file per band. With ``stac`` the
    period's scenes are the items of a local STAC catalog. With ``composite`` the scenes are
    reduced per pixel over their clear observations instead of mosaicked.
    """

    period: int | str = Field(description="the period this imagery belongs to (e.g. a year)")
    paths: list[str] | None = Field(None, min_length=1, description="raster files, glob "
                                    "patterns or http(s) URLs (COGs), relative to the manifest")
    bands: list[str] = Field(min_length=1, description="band names, in file order (with 'stac': "
                             "asset keys, eo:bands names or common names)")
    band_files: dict[str, str] | None = Field(
        None, description="band -> file name pattern (glob) inside each scene folder of 'paths', "
        "for scenes stored as one file per band")
    stac: StacSpec | None = Field(None, description="a local STAC catalog as the source")
    composite: CompositeSpec | None = Field(None, description="reduce the scenes of the period "
                                            "per pixel (median, ...) over clear observations")
    nodata: float | None = Field(None, description="nodata value (overrides the file's)")
    scale: float = Field(1.0, description="physical value = raw * scale + offset")
    offset: float = 0.0
    cloud_mask: CloudMask | None = None

    @model_validator(mode="after")
    def _mask_band_known(self) -> RasterSpec:
        if self.cloud_mask is not None and self.cloud_mask.band not in self.bands:
            raise ValueError(f"cloud_mask band '{self.cloud_mask.band}' is not in bands {self.bands}")
        if len(set(self.bands)) != len(self.bands):
            raise ValueError(f"band names repeat: {self.bands}")
        if (self.paths is None) == (self.stac is None):
            raise ValueError("give exactly one of 'paths' and 'stac'")
        if self.band_files is not None:
            if self.stac is not None:
                raise ValueError("'band_files' is for scene folders in 'paths', not for 'stac'")
            if sorted(self.band_files) != sorted(self.bands):
                raise ValueError(f"'band_files' must give a file pattern for every band of "
                                 f"{self.bands}, got {sorted(self.band_files)}")
        if self.composite is not None and self.composite.count_band in self.bands:
            raise ValueError(f"composite count_band '{self.composite.count_band}' is also a "
                             "band name; choose another name")
        return self

    @property
    def image_bands(self) -> list[str]:
        """The bands that are imagery (not the cloud-mask band)."""
        mask = self.cloud_mask.band if self.cloud_mask else None
        return [b for b in self.bands if b != mask]


class ChipSpec(_Strict):
    """Chip size around each unit, in pixels or in metres (exactly one)."""

    size_px: int | None = Field(None, gt=0, description="chip side in pixels")
    size_m: float | None = Field(None, gt=0, description="chip side in metres")

    @model_validator(mode="after")
    def _one_of(self) -> ChipSpec:
        if (self.size_px is None) == (self.size_m is None):
            raise ValueError("give exactly one of size_px and size_m")
        return self


ZONAL_STATS = ("mean", "sum", "sd", "min", "max", "count", "majority")
_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class ZonalSpec(_Strict):
    """Zonal statistics per unit: columns ``<name>_<variable>_<stat>`` of the study table.

    Pixels are weighted by the exact fraction of them the zone covers (exactextract); see
    :mod:`geocausal.data.zonal` for the definitions. With several periods and no per-row period
    (a ``time`` column or ``align_time``), columns get the suffix ``_<period>``.
    """

    name: str = Field(pattern=_NAME, description="prefix of the columns (e.g. 'b500')")
    zone: Literal["buffer", "polygon", "chip"] = Field(
        "buffer", description="buffer (radius_m around each unit), polygon (the unit's polygon, "
        "grown by radius_m when given) or chip (the chip footprint)")
    radius_m: float | None = Field(None, ge=0, description="buffer radius in metres")
    bands: list[str] = Field(default_factory=list, description="bands summarised by 'stats' "
                             "and 'quantiles'")
    indices: list[str] = Field(default_factory=list, description="spectral indices (spyndex "
                               "names, e.g. NDVI) computed from the band roles")
    categorical: list[str] = Field(default_factory=list, description="categorical bands (land "
                                   "cover): majority and class fractions <band>_frac_<class>")
    classes: list[float] | None = Field(None, description="classes whose fractions are reported "
                                        "(default: every class seen)")
    stats: list[Literal[ZONAL_STATS]] = Field(  # type: ignore[valid-type]
        default_factory=lambda: ["mean"], description="mean, sum, sd, min, max, count, majority")
    quantiles: list[float] = Field(default_factory=list, description="quantile levels in [0, 1] "
                                   "(coverage-weighted, inverted CDF): columns <variable>_q<100q>")
    period: int | str | None = Field(None, description="only this period")

    @model_validator(mode="after")
    def _complete(self) -> ZonalSpec:
        if self.zone == "buffer" and self.radius_m is None:
            raise ValueError("zone 'buffer' needs 'radius_m'")
        if not (self.bands or self.indices or self.categorical):
            raise ValueError("give at least one of 'bands', 'indices' and 'categorical'")
        if any(not 0 <= q <= 1 for q in self.quantiles):
            raise ValueError(f"quantiles must lie in [0, 1], got {self.quantiles}")
        return self


class JoinSpec(_Strict):
    """A join of the units to another layer or table (see :mod:`geocausal.data.joins`)."""

    kind: Literal["within", "nearest", "count", "distance", "table"] = Field(
        description="within (attributes of the containing polygon), nearest (of the nearest "
        "feature within max_distance_m, and the distance), count (features within radius_m), "
        "distance (signed distance to a line or polygon boundary), table (by key column 'on')")
    path: str = Field(description="layer (GeoPackage, GeoParquet, GeoJSON, shapefile) or, for "
                      "'table', a CSV or Parquet file; relative to the manifest")
    layer: str | None = Field(None, description="layer of a multi-layer file")
    crs: str | None = Field(None, description="CRS of a layer file that has none")
    columns: list[str] = Field(default_factory=list, description="attributes to bring")
    prefix: str = Field("", description="prefix of the joined attribute columns")
    name: str | None = Field(None, pattern=_NAME, description="column for the distance "
                             "(nearest, distance) or the count (count)")
    max_distance_m: float | None = Field(None, gt=0, description="nearest: search radius (m)")
    radius_m: float | None = Field(None, gt=0, description="count: radius (m)")
    on: str | None = Field(None, description="table: key column in both tables")
    treated_side: list[float] | None = Field(None, min_length=2, max_length=2, description=""
                                             "distance to a line: a point (x, y, in the layer's "
                                             "CRS) on the positive side")
    signed: bool = Field(True, description="distance: signed (positive inside a polygon or on "
                         "the treated side of a line)")
    treated: str | None = Field(None, description="distance: the treated (positive) side: "
                                "'inside' or 'outside' of a polygon layer; 'left' or 'right' of "
                                "a line's direction, or 'north', 'south', 'east', 'west'; with "
                                "'side_column', the label of the treated polygons")
    side_column: str | None = Field(None, description="distance: column of a polygon layer "
                                    "labelling the regions on each side; the boundary is the "
                                    "border the 'treated' regions share with the others")

    @model_validator(mode="after")
    def _complete(self) -> JoinSpec:
        need = {"nearest": ("max_distance_m", "name"), "count": ("radius_m", "name"),
                "distance": ("name",), "table": ("on",), "within": ()}[self.kind]
        missing = [f for f in need if getattr(self, f) is None]
        if missing:
            raise ValueError(f"a '{self.kind}' join needs {missing}")
        if self.kind in ("within", "nearest", "table") and not self.columns:
            raise ValueError(f"a '{self.kind}' join needs 'columns' (the attributes to bring)")
        if self.kind != "distance" and (self.treated is not None or self.side_column is not None):
            raise ValueError("'treated' and 'side_column' are for 'distance' joins")
        if self.treated is not None and self.treated_side is not None:
            raise ValueError("give the treated side as a label ('treated') or as a point "
                             "('treated_side'), not both")
        if self.side_column is not None and self.treated is None:
            raise ValueError("'side_column' needs 'treated' (the label of the treated regions)")
        if self.side_column is None and self.treated is not None \
                and self.treated not in SIDE_LABELS:
            raise ValueError(f"unknown side label 'treated: {self.treated}'; use one of "
                             f"{list(SIDE_LABELS)}, or 'side_column' naming the layer's column "
                             "whose value it is")
        return self


class DistributionSpec(_Strict):
    """Per-unit pixel distributions of a band or spectral index, as a column of the study table.

    The column ``name`` holds, per row, the valid pixel values of the unit's zone and
    ``<name>_weight`` their exact coverage fractions (exactextract): the distribution-valued
    outcome of ``gc.rdd`` (``weights="<name>_weight"``; the command line passes it). With a
    boundary (a ``distance`` join), zones that cross it are clipped to their unit's own side.
    """

    name: str = Field(pattern=_NAME, description="column of the study table (e.g. 'ndvi')")
    band: str | None = Field(None, description="band whose pixel values are collected")
    index: str | None = Field(None, description="spectral index (spyndex name, e.g. NDVI) "
                              "computed from the band roles")
    zone: Literal["buffer", "polygon", "chip"] = Field(
        "buffer", description="buffer (radius_m around each unit), polygon (the unit's polygon, "
        "grown by radius_m when given) or chip (the chip footprint)")
    radius_m: float | None = Field(None, ge=0, description="buffer radius in metres")
    period: int | str | None = Field(None, description="only this period (default: every "
                                     "period, matched to rows like 'zonal')")
    clip_to_side: bool = Field(True, description="clip zones that cross the boundary to their "
                               "unit's own side (mixing sides biases a regression discontinuity)")
    boundary: str | None = Field(None, pattern=_NAME, description="'name' of the 'distance' "
                                 "join whose boundary clips the zones (default: the only one)")

    @model_validator(mode="after")
    def _complete(self) -> DistributionSpec:
        if (self.band is None) == (self.index is None):
            raise ValueError("give exactly one of 'band' and 'index'")
        if self.zone == "buffer" and self.radius_m is None:
            raise ValueError("zone 'buffer' needs 'radius_m'")
        return self

    @property
    def weight_column(self) -> str:
        """The column holding the pixels' coverage weights."""
        return f"{self.name}_weight"


class TimeAlignSpec(_Strict):
    """Match each row's survey year to an imagery period: nearest, or exactly year + lag."""

    column: str = Field(description="column of the units table with the survey year")
    how: Literal["nearest", "exact"] = Field("nearest", description="nearest period, or the "
                                             "period equal to year + lag")
    lag: int = Field(0, description="years added before matching (-1: imagery of the year "
                     "before the survey; +1: a lead)")
    max_gap: float | None = Field(None, ge=0, description="nearest: no match beyond this gap")
    name: str = Field("image_period", pattern=_NAME, description="column that receives the "
                      "matched period (zonal columns use it per row)")


class Manifest(_Strict):
    """A study: units, rasters per period, periods, chip size and column roles."""

    name: str
    description: str = ""
    units: UnitsSpec
    rasters: list[RasterSpec] = Field(default_factory=list)
    periods: list[int | str] = Field(default_factory=list)
    chip: ChipSpec
    columns: dict[Literal[ROLES], list[str]] = Field(default_factory=dict)  # type: ignore[valid-type]
    truth: dict[str, float] = Field(default_factory=dict, description="known true effects (simulated studies)")
    band_preset: Literal["sentinel2", "landsat5", "landsat7", "landsat8", "landsat9"] | None = Field(
        None, description="sensor whose band names give the bands' roles (B02 blue, SR_B4 red, ...)")
    band_roles: dict[str, str | int] = Field(
        default_factory=dict, description="role (blue, green, red, nir, swir1, swir2, rededge1..3, "
        "coastal, pan, thermal, ...) -> image band name or 1-based band number; overrides the preset")
    zonal: list[ZonalSpec] = Field(default_factory=list, description="zonal statistics per unit")
    joins: list[JoinSpec] = Field(default_factory=list, description="joins to other layers and "
                                  "tables, applied in order")
    align_time: TimeAlignSpec | None = Field(None, description="survey year -> imagery period")
    distributions: list[DistributionSpec] = Field(
        default_factory=list, description="per-unit pixel distributions (distribution-valued "
        "outcomes): columns <name> (values) and <name>_weight (coverage fractions)")

    _base: Path = PrivateAttr(default=Path("."))
    _file: Path | None = PrivateAttr(default=None)
    _stac_roles: dict = PrivateAttr(default_factory=dict)

    @model_validator(mode="after")
    def _periods_match(self) -> Manifest:
        rp = {r.period for r in self.rasters}
        missing = [p for p in self.periods if p not in rp]
        if missing:
            raise ValueError(f"periods {missing} have no raster entry")
        extra = sorted(map(str, rp - set(self.periods)))
        if self.periods and extra:
            raise ValueError(f"rasters for periods {extra} not listed in 'periods'")
        bands = {tuple(r.image_bands) for r in self.rasters}
        if len(bands) > 1:
            raise ValueError(f"every period must have the same image bands, got {sorted(bands)}")
        comp = {None if r.composite is None else r.composite.count_band for r in self.rasters}
        if len(comp) > 1:
            raise ValueError("either every raster entry is a 'composite' (with the same "
                             "count_band) or none is: the chips of all periods need the same bands")
        return self

    @model_validator(mode="after")
    def _distributions_complete(self) -> Manifest:
        dist = [j.name for j in self.joins if j.kind == "distance"]
        names = [d.name for d in self.distributions]
        if len(set(names)) != len(names):
            raise ValueError(f"distributions: names repeat: {names}")
        for i, d in enumerate(self.distributions):
            if d.boundary is not None and d.boundary not in dist:
                raise ValueError(f"distributions.{i}.boundary: '{d.boundary}' is not the name "
                                 f"of a 'distance' join; those are {dist}")
            if d.clip_to_side and d.boundary is None and len(dist) > 1:
                raise ValueError(f"distributions.{i}: several 'distance' joins {dist}; name the "
                                 "one whose boundary clips the zones in 'boundary' (or set "
                                 "'clip_to_side: false')")
            if not self.rasters:
                raise ValueError(f"distributions.{i}: the manifest has no rasters")
            if d.band is not None and d.band not in self.band_names:
                raise ValueError(f"distributions.{i}.band: '{d.band}' is not one of the bands "
                                 f"{self.band_names}")
            if d.period is not None and d.period not in self.ordered_periods:
                raise ValueError(f"distributions.{i}.period: {d.period!r} is not one of the "
                                 f"periods {self.ordered_periods}")
        return self

    def distribution_boundary(self, spec: DistributionSpec) -> int | None:
        """Position in ``joins`` of the ``distance`` join that clips ``spec``'s zones (None:
        no clipping).
        """
        if not spec.clip_to_side:
            return None
        for i, j in enumerate(self.joins):
            if j.kind == "distance" and (spec.boundary is None or j.name == spec.boundary):
                return i
        return None

    @model_validator(mode="after")
    def _band_roles_known(self) -> Manifest:
        from geocausal.errors import DataError

        if (self.band_roles or self.band_preset) and self.rasters:
            try:
                self._roles()
            except DataError as exc:
                raise ValueError(str(exc)) from None
        return self

    def _roles(self) -> Any:
        from geocausal.features.roles import resolve_band_roles

        return resolve_band_roles(self.band_names, {**self._stac_roles, **self.band_roles},
                                  self.band_preset, where="field 'band_roles'")

    def resolved_band_roles(self) -> Any:
        """The image bands' roles (:class:`~geocausal.features.roles.BandRoles`) from
        ``band_preset`` and ``band_roles``, or from band names that are role names.

        Raises
        ------
        ManifestError
            A role naming a band the rasters lack, an unknown role (names field and file).
        """
        from geocausal.errors import DataError

        try:
            return self._roles()
        except DataError as exc:
            raise ManifestError(f"{self._file or '<manifest>'}: {exc}") from None

    def check_band_roles(self, path: str | Path, count: int,
                         descriptions: tuple | list | None = None,
                         spec: RasterSpec | None = None) -> None:
        """Check the band roles against an opened raster file.

        ``count`` is the file's band count and ``descriptions`` its band descriptions (rasterio's
        ``src.descriptions``). A role whose band is beyond the file's bands, or whose band name
        the file describes at another position (or not at all, when every band is described),
        is a :class:`~geocausal.errors.ManifestError` naming the field and the file.

        Examples
        --------
        >>> m = manifest_from_dict({"name": "s", "units": {"path": "u.gpkg", "id": "id"},
        ...     "rasters": [{"period": 1, "paths": ["a.tif"], "bands": ["B04", "B08"]}],
        ...     "chip": {"size_px": 8}, "band_preset": "sentinel2"}, check_files=False)
        >>> m.resolved_band_roles().roles
        {'red': 0, 'nir': 1}
        >>> m.check_band_roles("a.tif", 2, ("B08", "B04"))
        Traceback (most recent call last):
        ...
        geocausal.errors.ManifestError: <manifest>: field 'band_roles'.red: band 'B04' is band 1 of the manifest's list, but raster 'a.tif' describes it as band 2; list the file's bands in order in 'bands'
        """
        if not (self.band_roles or self.band_preset):
            return
        from geocausal.features.roles import normalise_band_name

        roles = self.resolved_band_roles()
        spec = spec or next((r for r in self.rasters if any(
            self.resolve(p) == Path(path) for p in r.paths)), self.rasters[0])
        image = spec.image_bands
        where = f"{self._file or '<manifest>'}: field 'band_roles'"
        desc = [normalise_band_name(d) if d else "" for d in (descriptions or ())]
        for role, pos in roles.roles.items():
            band = image[pos]
            number = spec.bands.index(band) + 1  # 1-based band of the file
            if number > count:
                raise ManifestError(f"{where}.{role}: band '{band}' is band {number} of the "
                                    f"manifest's list, but raster '{path}' has only {count} "
                                    "bands; fix 'bands' or 'band_roles'")
            nb = normalise_band_name(band)
            if len(desc) == count and desc[number - 1] != nb and nb in desc:
                raise ManifestError(f"{where}.{role}: band '{band}' is band {number} of the "
                                    f"manifest's list, but raster '{path}' describes it as band "
                                    f"{desc.index(nb) + 1}; list the file's bands in order "
                                    "in 'bands'")

    @property
    def base_dir(self) -> Path:
        """Folder the relative paths are resolved against."""
        return self._base

    @property
    def file(self) -> Path | None:
        """The manifest file, when loaded from disk."""
        return self._file

    def resolve(self, rel: str) -> Path:
        """Absolute path of a path written in the manifest (an http(s) URL is returned as a
        string, unchanged).
        """
        if is_url(rel):
            return rel  # type: ignore[return-value]
        p = Path(rel)
        return p if p.is_absolute() else (self._base / p).resolve()

    def expand(self, rel: str) -> list[str]:
        """The files (or folders) a path of ``paths`` names: itself, a URL, or a glob's matches
        (sorted).
        """
        if is_url(rel) or not _is_glob(rel):
            return [str(self.resolve(rel))]
        p = Path(rel)
        base = p.anchor if p.is_absolute() else str(self._base)
        pattern = str(p.relative_to(p.anchor)) if p.is_absolute() else rel
        return sorted(str(q.resolve()) for q in Path(base).glob(pattern))

    def source_files(self) -> list[str]:
        """Every file the rasters read (globs expanded, STAC catalogs and their assets)."""
        out: list[str] = []
        for r in self.rasters:
            if r.stac is not None:
                from geocausal.data.stac import stac_files

                out += stac_files(self, r)
                continue
            for rel in r.paths or []:
                for f in self.expand(rel):
                    if r.band_files and Path(f).is_dir():
                        for pat in r.band_files.values():
                            out += sorted(str(q) for q in Path(f).glob(pat))
                    else:
                        out.append(f)
        return out

    def rasters_for(self, period: int | str) -> list[RasterSpec]:
        """Raster entries of one period."""
        return [r for r in self.rasters if r.period == period]

    @property
    def ordered_periods(self) -> list[int | str]:
        """Periods in manifest order (or raster order when ``periods`` is empty)."""
        if self.periods:
            return list(self.periods)
        seen: list[int | str] = []
        for r in self.rasters:
            if r.period not in seen:
                seen.append(r.period)
        return seen

    @property
    def band_names(self) -> list[str]:
        """Image band names (cloud-mask bands excluded; a composite's count band last)."""
        if not self.rasters:
            return []
        comp = self.rasters[0].composite
        return list(self.rasters[0].image_bands) + ([comp.count_band] if comp else [])

    def role(self, name: str) -> list[str]:
        """Columns holding a role (empty list if none)."""
        return list(self.columns.get(name, []))  # type: ignore[call-overload]

    def content_hash(self) -> str:
        """Hash of the manifest and of the size and mtime of every file it names."""
        h = hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode())
        try:
            sources = self.source_files()
        except Exception:  # noqa: BLE001 - an unreadable source is reported when it is read
            sources = [p for r in self.rasters for p in r.paths or []]
        for rel in [self.units.path, *sources]:
            if is_url(rel):  # a remote file: its URL (its content is not checked)
                h.update(f"{rel}:url".encode())
                continue
            p = self.resolve(rel)
            st = p.stat() if p.exists() else None
            h.update(f"{rel}:{st.st_size if st else -1}:{st.st_mtime_ns if st else -1}".encode())
        return h.hexdigest()[:16]


def is_url(path: Any) -> bool:
    """True for an http(s) URL (a remote file read by GDAL range requests)."""
    return isinstance(path, str) and path.lower().startswith(("http://", "https://"))


def _is_glob(path: str) -> bool:
    return any(ch in path for ch in "*?[")


def _format_error(exc: ValidationError, where: str) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        parts.append(f"{where}: field '{loc}': {err['msg']}")
    return "; ".join(parts)


def manifest_from_dict(data: Any, base_dir: str | Path = ".", file: str | Path | None = None,
                       check_files: bool = True) -> Manifest:
    """Validate a manifest given as a dict; paths resolve against ``base_dir``."""
    where = str(file) if file else "<manifest>"
    if not isinstance(data, dict):
        raise ManifestError(f"{where}: a manifest must be a mapping, got {type(data).__name__}")
    try:
        m = Manifest.model_validate(data)
    except ValidationError as exc:
        raise ManifestError(_format_error(exc, where)) from None
    m._base = Path(base_dir).resolve()
    m._file = Path(file).resolve() if file else None
    if check_files:
        _check_files(m, where)
        if any(r.stac is not None for r in m.rasters):
            from geocausal.data.stac import stac_band_roles
            from geocausal.errors import DataError

            try:
                m._stac_roles = stac_band_roles(m)
                if m._stac_roles and m.rasters:
                    m._roles()
            except DataError as exc:
                raise ManifestError(f"{where}: {exc}") from None
    return m


def _check_files(m: Manifest, where: str) -> None:
    if not m.resolve(m.units.path).exists():
        raise ManifestError(f"{where}: field 'units.path': file '{m.units.path}' not found "
                            f"(relative to {m.base_dir})")
    for i, r in enumerate(m.rasters):
        for j, p in enumerate(r.paths or []):
            if is_url(p):
                continue  # checked when opened (a named DataError within a timeout)
            if _is_glob(p):
                if not m.expand(p):
                    raise ManifestError(f"{where}: field 'rasters.{i}.paths.{j}': pattern '{p}' "
                                        f"matches no file (relative to {m.base_dir})")
                continue
            if not m.resolve(p).exists():
                raise ManifestError(f"{where}: field 'rasters.{i}.paths.{j}': file '{p}' not found "
                                    f"(relative to {m.base_dir})")
        if r.stac is not None and not m.resolve(r.stac.path).exists():
            raise ManifestError(f"{where}: field 'rasters.{i}.stac.path': file '{r.stac.path}' "
                                f"not found (relative to {m.base_dir})")


def load_manifest(path: str | Path, check_files: bool = True) -> Manifest:
    """Read and validate a manifest YAML file.

    Raises
    ------
    ManifestError
        Unreadable YAML, schema violations (with field and file), missing files.
    """
    path = Path(path)
    if not path.exists():
        raise ManifestError(f"manifest file '{path}' not found")
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        raise ManifestError(f"{path}: not valid YAML: {exc}") from None
    return manifest_from_dict(data, base_dir=path.parent, file=path, check_files=check_files)


def write_manifest(manifest: Manifest | dict, path: str | Path) -> Path:
    """Write a manifest to YAML (refuses to overwrite a different existing file)."""
    path = Path(path)
    data = manifest.model_dump(mode="json", exclude_defaults=True) if isinstance(manifest, Manifest) else manifest
    text = yaml.safe_dump(data, sort_keys=False)
    if path.exists() and path.read_text() != text:
        raise ManifestError(f"refusing to overwrite existing manifest '{path}'")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def json_schema() -> dict[str, Any]:
    """The manifest's JSON schema (also committed as ``data_manifests/schema.json``)."""
    return Manifest.model_json_schema()

"""Load a study from its manifest: the units table, and image features from the chips cache.

``load_study`` is what ``geocausal estimate`` runs before calling a design: it reads the units
(one row per unit, or per unit and period for a long panel), checks that every column the
manifest gives a role exists, extracts chips (reusing the cache) and turns them into image
features aligned with the table's rows. When the table has a time column whose values are the
manifest's periods, each row gets the features of its own period; otherwise each row gets
features of all periods of its unit.

Examples
--------
>>> import tempfile
>>> from geocausal.data.rasters import write_example_study
>>> m = write_example_study(tempfile.mkdtemp())
>>> s = load_study(m)
>>> s.table.shape, s.features.shape
((6, 5), (6, 8))
>>> list(s.features.columns[:3])
['mean_red_2020', 'mean_nir_2020', 'std_red_2020']
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from geocausal.data.manifest import Manifest
from geocausal.data.units import as_manifest, load_units, lonlat
from geocausal.errors import DataError

FEATURES = ("summary", "learned", "none")
#: units per batch when summarising chips (bounds memory for large caches)
BATCH_UNITS = 512


@dataclass(frozen=True)
class Study:
    """A loaded study.

    Attributes
    ----------
    manifest
        The validated manifest.
    table
        One row per row of the units file: its tabular columns (geometry dropped, ``lon`` and
        ``lat`` in EPSG:4326 kept or added), then the columns of the manifest's ``joins``,
        ``align_time`` and ``zonal`` entries (:mod:`geocausal.data.joins`,
        :mod:`geocausal.data.zonal`), ready for formulas; then, per ``distributions`` entry,
        the column ``<name>`` of per-row pixel value arrays and ``<name>_weight`` of their
        coverage weights (the distribution-valued outcome of :func:`geocausal.rdd`:
        ``gc.rdd("<name> ~ 1", study.table, running=..., weights="<name>_weight")``). Rows
        whose zone has no valid pixel are dropped (counted in an
        :class:`~geocausal.errors.EmptyZoneWarning`); the index keeps the units file's rows.
    features
        Image features aligned with ``table``'s rows (same index), or None.
    chips
        The opened chips cache, or None.
    manifest_hash
        ``manifest.content_hash()``, for provenance.
    """

    manifest: Manifest
    table: pd.DataFrame
    features: pd.DataFrame | None
    chips: Any
    manifest_hash: str


def _table(m: Manifest) -> pd.DataFrame:
    units = load_units(m)
    lon, lat = lonlat(units)
    table = pd.DataFrame(units.drop(columns=units.geometry.name))
    lon_col = m.units.lon or "lon"
    lat_col = m.units.lat or "lat"
    if lon_col not in table.columns:
        table[lon_col] = lon
    if lat_col not in table.columns:
        table[lat_col] = lat
    if m.joins or m.align_time is not None:
        from geocausal.data.joins import apply_joins

        table = apply_joins(m, units, table)
    if m.zonal:
        from geocausal.data.zonal import zonal_columns

        table = pd.concat([table, zonal_columns(m, units, table)], axis=1)
    if m.distributions:
        from geocausal.data.distributions import distribution_columns

        dist, keep = distribution_columns(m, units, table)
        table = pd.concat([table, dist], axis=1)[keep]  # empty zones: counted and dropped
    where = m.file or m.name
    for role, cols in m.columns.items():
        for col in cols:
            if col not in table.columns:
                raise DataError(f"{where}: field 'columns.{role}' names column '{col}', which the "
                                f"units file '{m.units.path}' does not have (nor a join or zonal "
                                f"entry); columns are {list(table.columns)}")
    return table


def _summary(cache: Any, rows: np.ndarray, periods: np.ndarray | None) -> tuple[np.ndarray, list]:
    """Per-band mean and sd per (unit, period), in batches; fully masked cells imputed."""
    from geocausal.features.images import summary_features

    n, t = cache.chips.shape[:2]
    bands = list(cache.bands)
    parts, empty, where = [], [], []
    for units, chips, mask in cache.iter_blocks(BATCH_UNITS):
        where.append(units)
        if periods is None:
            parts.append(summary_features(chips, mask))
            empty.append(np.repeat(~mask.any(axis=(2, 3)), 2 * len(bands), axis=1))
        else:
            k = len(units)
            flat = chips.reshape(k * t, *chips.shape[2:])
            fmask = mask.reshape(k * t, *mask.shape[2:])
            parts.append(summary_features(flat, fmask))
            empty.append(np.repeat(~fmask.any(axis=(1, 2))[:, None], 2 * len(bands), axis=1))
    # blocks come in storage order: put unit i's rows (one, or one per period) at i
    order = np.concatenate(where) if where else np.empty(0, dtype=np.int64)
    per = 1 if periods is None else t
    dest = (order[:, None] * per + np.arange(per)[None, :]).reshape(-1)
    stacked = np.vstack(parts)
    feats = np.empty_like(stacked)
    feats[dest] = stacked
    bad_stacked = np.vstack(empty)
    bad = np.empty_like(bad_stacked)
    bad[dest] = bad_stacked
    feats[bad] = np.nan
    col_mean = np.nanmean(feats, axis=0) if feats.size else np.zeros(feats.shape[1])
    feats = np.where(np.isnan(feats), np.nan_to_num(col_mean)[None, :], feats)
    stats = [f"{s}_{b}" for s in ("mean", "std") for b in bands]
    if periods is None:
        names = [f"{s}_{p}" for p in cache.periods for s in stats]
        return feats[rows], names
    return feats[rows * t + periods], stats


def _features(m: Manifest, table: pd.DataFrame, cache: Any, kind: str, seed: int
              ) -> pd.DataFrame:
    from geocausal.features.images import image_features

    pos = {uid: i for i, uid in enumerate(cache.unit_ids.tolist())}
    ids = table[m.units.id].tolist()
    try:
        rows = np.array([pos[u] for u in ids], dtype=np.int64)
    except KeyError as exc:
        raise DataError(f"unit {exc.args[0]!r} of the units file is not in the chips cache "
                        f"'{cache.path}'; delete the cache and extract again") from None
    periods = None
    time_cols = [c for c in m.role("time") if c in table.columns]
    if time_cols:
        labels = {str(p): i for i, p in enumerate(cache.periods)}
        vals = table[time_cols[0]].astype(str).tolist()
        if all(v in labels for v in vals):
            periods = np.array([labels[v] for v in vals], dtype=np.int64)
    if kind == "summary":
        feats, names = _summary(cache, rows, periods)
    else:  # trained on the frames and applied streaming from the cache, never loaded whole
        n, t = cache.chips.shape[:2]
        learned = image_features(cache, n, representation="learned", seed=seed)
        per = learned.reshape(n, t, -1)  # (unit, period, embedding) in the cache's unit order
        feats = learned[rows] if periods is None else per[rows, periods]
        names = [f"emb_{k}" for k in range(feats.shape[1])]
    return pd.DataFrame(feats, index=table.index, columns=names)


def load_study(manifest_or_path: Manifest | str | Path, *, features: str = "summary",
               seed: int = 0, workers: int | None = None, cache_dir: str | Path | None = None,
               scheduler: str | None = None, progress: bool = False) -> Study:
    """Load a study: units table and (when the manifest has rasters) image features.

    Parameters
    ----------
    manifest_or_path
        A manifest or the path of its YAML file.
    features
        ``"summary"`` (per-band mean and sd of valid pixels per period), ``"learned"`` (encoder
        embeddings, see :mod:`geocausal.encoders`) or ``"none"``.
    seed
        Seed for learned features.
    workers, scheduler, cache_dir, progress
        Passed to :func:`geocausal.data.chips.extract`.

    Returns
    -------
    Study

    Raises
    ------
    DataError
        A column named in the manifest is missing, or ``features`` is unknown.
    """
    if features not in FEATURES:
        raise DataError(f"features={features!r} is not one of {FEATURES}")
    m = as_manifest(manifest_or_path)
    table = _table(m)
    cache = None
    feats = None
    if m.rasters and features != "none":
        from geocausal.data.chips import extract

        cache = extract(m, cache_dir=cache_dir, workers=workers, scheduler=scheduler,
                        progress=progress)
        feats = _features(m, table, cache, features, seed)
    return Study(manifest=m, table=table, features=feats, chips=cache,
                 manifest_hash=m.content_hash())

"""Chip extraction: an image chip around every unit for every period, cached in zarr.

Unit locations (points, or polygon centroids) are reprojected to each raster's CRS; the pixel
that holds the unit lands at chip position ``(H // 2, W // 2)``. Chips are ``(N, T, H, W, C)``
float32 (physical values ``raw * scale + offset``) with a validity mask ``(N, T, H, W)``:
pixels off the raster edge, at nodata, or flagged by the cloud-mask band are masked (and hold
0). A unit may fall in any of several tiles of a period; aligned neighbouring tiles fill the
part of a chip that crosses a tile edge. Units outside every raster of a period stay in the
array, fully masked, and are listed in ``outside_ids`` with a warning. Units inside a raster
whose chip holds no valid pixel in some period (all nodata or clouds) are listed in
``empty_ids`` with a warning, the same way.

Reads are batched. A local run sorts units by their pixel row (north to south) and cuts them
into tasks of consecutive units, i.e. bands of rows; tasks are read in that order from
block-aligned strips of each tile that move down the raster, so every raster block is decoded
and converted once (:class:`_StripSource`; a strip over :data:`MAX_STRIP_BYTES` falls back to
windows), while other threads compress and write finished tasks. On Dask, units follow a
Z-order curve and each task reads every tile in a few windows, each covering a cluster of
nearby chips (a recursive split keeps windows dense and bounded). Both give the same chips to
the bit. Each file is opened once per thread. The zarr store keeps units in that task order,
so a task writes whole chunks of several units; :class:`ChipsCache` shows them in unit order.
A local run checks first that ``threads + 1`` tasks' chips and the kept strips fit in the
available memory (a :class:`~geocausal.errors.DataError` says to lower ``task_mb`` or
``threads`` otherwise). Results stream into the cache, written in
a temporary folder with one completion marker per task, then renamed: an interrupted run
resumes where it stopped, and a finished cache is never half written. Finalisation is
crash-safe: the cache is declared finished (its ``format`` attribute) only after every array
and attribute is written, and a rerun completes whatever step a crash interrupted.

Every folder extract creates holds a marker file (``.geocausal-cache``); extract deletes or
rebuilds only such folders. A folder without the marker that sits at the cache path is left
alone with a :class:`~geocausal.errors.DataError` unless ``overwrite=True``.
``workers=N`` (a local Dask cluster) or ``scheduler=ADDRESS`` runs the tasks on Dask; the
workers must see the cache folder.

Examples
--------
>>> import tempfile
>>> from geocausal.data.rasters import write_example_study
>>> m = write_example_study(tempfile.mkdtemp())
>>> res = extract(m, progress=False)
>>> res.chips.shape, res.mask.shape
((6, 2, 8, 8, 2), (6, 2, 8, 8))
>>> print(res.report())  # doctest: +ELLIPSIS
chips for 6 units x 2 periods x 2 bands (red, nir), chip 8x8 px
shape (6, 2, 8, 8, 2), valid pixels 100.0%, outside every raster: 0, all-nodata chips: 0
cache .../chips-...-8px.zarr
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.data.manifest import Manifest
from geocausal.data.rasters import (
    TileInfo,
    chip_size_px,
    close_rasters,
    read_window,
    tile_infos,
    valid_pixels,
)
from geocausal.errors import DataError, GeocausalWarning, NoClearObservationWarning

FORMAT = "geocausal-chips-2"
#: GDAL block cache (MB) while extracting, unless GDAL_CACHEMAX is set in the environment
GDAL_CACHE_MB = 256
#: file extract writes in every folder it creates; only such folders are ever deleted
OWNER_MARKER = ".geocausal-cache"
#: most pixels one window read may cover (per band)
MAX_WINDOW_PX = 2048 * 2048
#: a window may cover at most this many times the pixels of the chips it serves
MAX_WINDOW_SPARSITY = 4.0
#: most bytes (raw, values and validity) of the block-aligned strip the streaming reader keeps
#: per tile; a task whose strip would be larger reads that tile in windows instead
MAX_STRIP_BYTES = 256 * 2**20
#: most bytes of strips the streaming reader keeps over all tiles (least recently used dropped)
MAX_KEPT_BYTES = 512 * 2**20
#: chips-store chunks are encoded (blosc) and written by :func:`_write_chunks` rather than by
#: zarr's asynchronous pipeline (same bytes; False: zarr writes them, kept for tests)
DIRECT_CHUNKS = True
#: local runs stream block-aligned strips (each raster block decoded once); False: the windowed
#: reader of the Dask path everywhere (kept for comparison in tests)
STREAM_READS = True


# ----------------------------------------------------------------------------- results
class UnitOrderArray:
    """A lazy view, in unit order, of a zarr array stored in spatial order.

    Indexing the first axis with an int, slice or integer array reads only the chunks needed;
    ``numpy.asarray`` loads the whole array block by block.
    """

    def __init__(self, array: Any, rows: np.ndarray) -> None:
        self.array = array
        self.rows = np.asarray(rows, dtype=np.int64)  # rows[i]: storage row of unit i

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the array (units first)."""
        return tuple(self.array.shape)

    @property
    def dtype(self) -> np.dtype:
        """Data type of the array."""
        return np.dtype(self.array.dtype)

    @property
    def ndim(self) -> int:
        """Number of dimensions."""
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __repr__(self) -> str:
        return f"UnitOrderArray(shape={self.shape}, dtype={self.dtype})"

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self._all()
        return out if dtype is None else out.astype(dtype)

    def _all(self) -> np.ndarray:
        out = np.empty(self.shape, dtype=self.dtype)
        unit_of_row = np.empty_like(self.rows)
        unit_of_row[self.rows] = np.arange(len(self.rows))
        step = max(1, self.array.chunks[0]) * max(1, 2**28 // max(
            1, int(np.prod(self.array.chunks)) * self.dtype.itemsize))
        for a in range(0, len(self.rows), step):
            b = min(a + step, len(self.rows))
            out[unit_of_row[a:b]] = self.array[a:b]
        return out

    def __getitem__(self, key: Any) -> np.ndarray:
        key = key if isinstance(key, tuple) else (key,)
        if not key or key[0] is Ellipsis:
            return self._all()[key] if key else self._all()
        first, rest = key[0], key[1:]
        if isinstance(first, int | np.integer):
            return np.asarray(self.array[(int(self.rows[first]), *rest)])
        units = np.arange(len(self.rows))[first]
        wanted = self.rows[units]
        uniq, inv = np.unique(wanted, return_inverse=True)
        data = np.asarray(self.array.oindex[uniq])[inv.reshape(-1)]
        return data[(slice(None), *rest)] if rest else data


@dataclass(frozen=True)
class ChipsCache:
    """An opened chips cache.

    Attributes
    ----------
    path
        The ``.zarr`` folder.
    chips
        ``(N, T, H, W, C)`` float32 in unit order, a lazy :class:`UnitOrderArray` over the zarr
        array (``np.asarray`` loads it; the store keeps units in spatial order).
    mask
        ``(N, T, H, W)`` bool, True where a pixel is valid (lazy, unit order).
    unit_ids
        Unit ids in row order (the units file's order).
    periods, bands
        Period labels and image band names.
    outside_ids
        Units outside every raster of at least one period (their chips there are fully masked).
    coverage
        ``(N, T)`` bool: the unit lies on a raster of that period.
    chip_size
        Chip side in pixels.
    manifest_hash
        ``Manifest.content_hash()`` of the study the chips came from.
    empty_ids
        Units inside a raster of some period whose chip there has no valid pixel (all nodata,
        clouds or masked): image features cannot be computed for them.
    """

    path: Path
    chips: Any
    mask: Any
    unit_ids: np.ndarray
    periods: list
    bands: list
    outside_ids: list
    coverage: np.ndarray
    chip_size: int
    manifest_hash: str
    empty_ids: list = field(default_factory=list)

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the chips array."""
        return tuple(self.chips.shape)

    def load(self) -> tuple[np.ndarray, np.ndarray]:
        """Chips and mask as numpy arrays (in memory)."""
        return np.asarray(self.chips), np.asarray(self.mask)

    def iter_blocks(self, units: int = 512) -> Any:
        """Yield ``(unit_indices, chips, mask)`` blocks in storage order (reads each chunk once)."""
        raw_c, raw_m = self.chips.array, self.mask.array
        unit_of_row = np.empty_like(self.chips.rows)
        unit_of_row[self.chips.rows] = np.arange(len(unit_of_row))
        step = max(raw_c.chunks[0], units // raw_c.chunks[0] * raw_c.chunks[0])
        for a in range(0, len(unit_of_row), step):
            b = min(a + step, len(unit_of_row))
            yield unit_of_row[a:b], np.asarray(raw_c[a:b]), np.asarray(raw_m[a:b])


@dataclass(frozen=True)
class ChipsResult(ChipsCache):
    """What :func:`extract` returns: the opened cache plus how it was made."""

    elapsed_s: float = 0.0
    reused: bool = False
    tasks_run: int = 0

    def report(self) -> str:
        """A short human-readable account of the extraction."""
        n, t, h, w, c = self.shape
        mask = np.asarray(self.mask.array[...]) if n * t * h * w <= 50_000_000 else None
        valid = f"{100 * mask.mean():.1f}%" if mask is not None and mask.size else "n/a"
        lines = [f"chips for {n} units x {t} periods x {c} bands ({', '.join(map(str, self.bands))}),"
                 f" chip {h}x{w} px",
                 f"shape {self.shape}, valid pixels {valid}, outside every raster: "
                 f"{len(self.outside_ids)}" + _few(self.outside_ids)
                 + f", all-nodata chips: {len(self.empty_ids)}" + _few(self.empty_ids),
                 f"cache {self.path}" + (" (reused)" if self.reused else "")]
        return "\n".join(lines)


def _few(ids: Sequence) -> str:
    return f" (ids {list(ids)[:5]}{'...' if len(ids) > 5 else ''})" if len(ids) else ""


def open_cache(path: str | Path) -> ChipsCache:
    """Open a finished chips cache (a ``chips-*.zarr`` folder, or a folder holding exactly one).

    Raises
    ------
    DataError
        The folder is not a finished chips cache.
    """
    import zarr

    path = Path(path)
    if path.is_dir() and not (path / "zarr.json").exists():
        found = sorted(path.glob("chips-*.zarr"))
        if len(found) == 1:
            path = found[0]
        elif len(found) > 1:
            raise DataError(f"'{path}' holds {len(found)} chips caches; pass one of "
                            f"{[p.name for p in found]}")
    if not (path / "zarr.json").exists():
        raise DataError(f"'{path}' is not a chips cache (run 'geocausal extract' first)")
    group = zarr.open_group(str(path), mode="r")
    attrs = dict(group.attrs)
    if attrs.get("format") != FORMAT or "rows" not in group:
        raise DataError(f"'{path}' is not a finished chips cache (format "
                        f"{attrs.get('format')!r}, expected {FORMAT!r})")
    rows = np.asarray(group["rows"][...], dtype=np.int64)
    coverage = np.asarray(group["coverage"][...], dtype=bool)
    unit_ids = np.asarray(attrs["unit_ids"])
    mask = UnitOrderArray(group["mask"], rows)
    if "empty_ids" in attrs:
        empty = list(attrs["empty_ids"])
    else:  # a cache written before empty chips were recorded: find them in the mask
        has = np.zeros_like(coverage)
        for a in range(0, len(rows), 4096):
            has[a:a + 4096] = np.asarray(mask[a:min(a + 4096, len(rows))]).any(axis=(2, 3))
        empty = _jsonable(unit_ids[(coverage & ~has).any(axis=1)])
    return ChipsCache(path=path, chips=UnitOrderArray(group["chips"], rows), mask=mask,
                      unit_ids=unit_ids, periods=list(attrs["periods"]),
                      bands=list(attrs["bands"]), outside_ids=list(attrs["outside_ids"]),
                      coverage=coverage, chip_size=int(attrs["chip_size"]),
                      manifest_hash=attrs["manifest_hash"], empty_ids=empty)


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class _Task:
    """One unit of work: units (global indices, sorted) and where their chips sit per tile."""

    index: int
    start: int  # storage rows start:stop (whole chunks)
    stop: int
    home: np.ndarray  # (n, T) int: home tile per period, -1 outside
    row0: np.ndarray  # (n, T) int: chip top row in the home tile
    col0: np.ndarray  # (n, T) int
    tiles: tuple[TileInfo, ...] = field(repr=False)
    chip: int = 0
    n_bands: int = 0


def _project(points: Any, crs_wkt: str) -> tuple[np.ndarray, np.ndarray]:
    """Coordinates of ``points`` in the CRS given as WKT."""
    from pyproj import CRS, Transformer

    src_crs = CRS.from_user_input(points.crs) if points.crs is not None else CRS("EPSG:4326")
    dst_crs = CRS.from_wkt(crs_wkt)
    x, y = np.asarray(points.x, float), np.asarray(points.y, float)
    if not src_crs.equals(dst_crs):
        x, y = Transformer.from_crs(src_crs, dst_crs, always_xy=True).transform(x, y)
        x, y = np.asarray(x, float), np.asarray(y, float)
    return x, y


def _pixel_positions(xy: tuple[np.ndarray, np.ndarray], tile: TileInfo
                     ) -> tuple[np.ndarray, np.ndarray]:
    """Integer (row, col) of the pixel holding each point (given in the tile's CRS)."""
    from affine import Affine

    x, y = xy
    inv = ~Affine(*tile.transform)
    col = inv.a * x + inv.b * y + inv.c
    row = inv.d * x + inv.e * y + inv.f
    bad = ~(np.isfinite(col) & np.isfinite(row))
    col = np.where(bad, -1e9, col)
    row = np.where(bad, -1e9, row)
    return np.floor(row).astype(np.int64), np.floor(col).astype(np.int64)


def _plan(points: Any, tiles: Sequence[TileInfo], n_periods: int, chip: int
          ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Home tile and chip origin of every unit in every period."""
    n = len(points)
    home = np.full((n, n_periods), -1, dtype=np.int64)
    row0 = np.zeros((n, n_periods), dtype=np.int64)
    col0 = np.zeros((n, n_periods), dtype=np.int64)
    projected: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for k, tile in enumerate(tiles):
        if tile.crs not in projected:
            projected[tile.crs] = _project(points, tile.crs)
        r, c = _pixel_positions(projected[tile.crs], tile)
        inside = (r >= 0) & (r < tile.height) & (c >= 0) & (c < tile.width)
        t = tile.period_index
        new = inside & (home[:, t] < 0)
        home[new, t] = k
        row0[new, t] = r[new] - chip // 2
        col0[new, t] = c[new] - chip // 2
    return home, row0, col0


def _spatial_order(points: Any) -> np.ndarray:
    """Order of units along a Morton (Z-order) curve of their coordinates."""
    x, y = np.asarray(points.x, float), np.asarray(points.y, float)

    def q(v: np.ndarray) -> np.ndarray:
        lo, hi = np.nanmin(v), np.nanmax(v)
        span = hi - lo if hi > lo else 1.0
        return np.clip(((v - lo) / span * 65535), 0, 65535).astype(np.uint64)

    qx, qy = q(x), q(y)
    code = np.zeros(len(x), dtype=np.uint64)
    for b in range(16):
        code |= ((qx >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b)
        code |= ((qy >> np.uint64(b)) & np.uint64(1)) << np.uint64(2 * b + 1)
    return np.argsort(code, kind="stable")


def _row_order(points: Any, tile: TileInfo) -> np.ndarray:
    """Order of units by (row, column) of their pixel in ``tile``'s grid: north to south.

    Tasks of consecutive units are then bands of rows, which the streaming reader serves from
    block-aligned strips that move down each raster (every block decoded once).
    """
    r, c = _pixel_positions(_project(points, tile.crs), tile)
    return np.lexsort((c, r))


def _chunking(n_periods: int, chip: int, n_bands: int, task_mb: float) -> tuple[int, int]:
    """Units per zarr chunk (about 8 MiB, at most 64) and per task (whole chunks)."""
    per_unit = n_periods * chip * chip * (n_bands * 4 + 1)
    per_chunk = int(min(64, max(1, 8 * 2**20 // per_unit)))
    per_task = max(1, int(task_mb * 2**20 // per_unit))
    per_chunk = min(per_chunk, per_task)
    return per_chunk, max(per_chunk, per_task // per_chunk * per_chunk)


# ----------------------------------------------------------------------------- reading
def _alignment(a: TileInfo, b: TileInfo) -> tuple[int, int] | None:
    """Integer (row, col) offset from tile ``a``'s grid to tile ``b``'s, or None if not aligned."""
    if a is b:
        return 0, 0
    if a.crs != b.crs or not (a.north_up and b.north_up):
        return None
    if not (np.isclose(a.transform[0], b.transform[0]) and np.isclose(a.transform[4], b.transform[4])):
        return None
    dc = (a.transform[2] - b.transform[2]) / b.transform[0]
    dr = (a.transform[5] - b.transform[5]) / b.transform[4]
    if abs(dc - round(dc)) > 1e-6 or abs(dr - round(dr)) > 1e-6:
        return None
    return int(round(dr)), int(round(dc))


def _clusters(r0: np.ndarray, c0: np.ndarray, chip: int, height: int, width: int
              ) -> list[np.ndarray]:
    """Split chips (origins in a tile) into groups whose bounding window is dense and bounded."""
    out = []
    stack = [np.arange(len(r0))]
    while stack:
        ids = stack.pop()
        rlo = max(int(r0[ids].min()), 0)
        rhi = min(int(r0[ids].max()) + chip, height)
        clo = max(int(c0[ids].min()), 0)
        chi = min(int(c0[ids].max()) + chip, width)
        area = max(rhi - rlo, 0) * max(chi - clo, 0)
        if len(ids) == 1 or (area <= MAX_WINDOW_PX
                             and area <= MAX_WINDOW_SPARSITY * len(ids) * chip * chip):
            out.append(ids)
            continue
        key = r0[ids] if (rhi - rlo) >= (chi - clo) else c0[ids]
        order = np.argsort(key, kind="stable")
        half = len(ids) // 2
        stack.append(ids[order[:half]])
        stack.append(ids[order[half:]])
    return out


class _StripSource:
    """Block-aligned strips of each tile, decoded once and kept while tasks move down the rows.

    A request for rows ``[a, b)`` and columns ``[ca, cb)`` of a tile is served from the kept
    strip when it covers them; when the request reaches below the strip, only the new block
    rows are read (the rows still needed are kept), so that tasks in row order decode every
    raster block once. Values and validity are those of :func:`valid_pixels` (invalid pixels
    hold 0), computed once per pixel. One source serves one thread.
    """

    def __init__(self, max_bytes: int | None = None, max_kept: int | None = None) -> None:
        self.max_bytes = MAX_STRIP_BYTES if max_bytes is None else max_bytes
        self.max_kept = MAX_KEPT_BYTES if max_kept is None else max_kept
        self._strips: dict[int, tuple[int, int, int, int, np.ndarray, np.ndarray]] = {}

    def _keep(self, key: int, strip: tuple[int, int, int, int, np.ndarray, np.ndarray]) -> None:
        """Keep ``strip`` as the most recent; drop the least recently used beyond ``max_kept``."""
        self._strips.pop(key, None)
        self._strips[key] = strip
        total = sum(v[4].nbytes + v[5].nbytes for v in self._strips.values())
        for old in list(self._strips):
            if total <= self.max_kept or old == key:
                break
            dropped = self._strips.pop(old)
            total -= dropped[4].nbytes + dropped[5].nbytes

    @staticmethod
    def _block(tile: TileInfo) -> tuple[int, int]:
        from geocausal.data.rasters import open_raster

        path = tile.sources[0][0] if tile.sources else tile.path
        bh, bw = open_raster(path).block_shapes[0]
        return max(int(bh), 1), max(int(bw), 1)

    def _decode(self, tile: TileInfo, r0: int, r1: int, c0: int, c1: int, image_pos: list[int],
                mask_pos: int | None) -> tuple[np.ndarray, np.ndarray]:
        from rasterio.windows import Window

        raw = read_window(tile, Window(c0, r0, c1 - c0, r1 - r0))
        vals, valid = valid_pixels(raw, tile, image_pos, mask_pos)
        if not valid.all():
            vals[~valid] = 0.0
        return vals, valid

    def window(self, tile: TileInfo, a: int, b: int, ca: int, cb: int, image_pos: list[int],
               mask_pos: int | None) -> tuple[int, int, np.ndarray, np.ndarray] | None:
        """``(row0, col0, values, validity)`` of a strip covering the request, or ``None`` when
        that strip would exceed ``max_bytes`` (the caller then reads windows).
        """
        bh, bw = self._block(tile)
        A, B = a // bh * bh, min(-(-b // bh) * bh, tile.height)
        key = id(tile)
        kept = self._strips.get(key)
        if kept is not None:
            r0, r1, c0, c1, vals, valid = kept
            if c0 <= ca and cb <= c1 and r0 <= A and B <= r1:
                return r0, c0, vals, valid
            if c0 <= ca and cb <= c1 and r0 <= A < r1:       # extend down: read the new rows
                if not self._fits(tile, B - A, c1 - c0, len(image_pos)):
                    return None
                nv, nm = self._decode(tile, r1, B, c0, c1, image_pos, mask_pos)
                vals = np.concatenate([vals[A - r0:], nv])
                valid = np.concatenate([valid[A - r0:], nm])
                self._keep(key, (A, B, c0, c1, vals, valid))
                return A, c0, vals, valid
        self._strips.pop(key, None)                            # free it before reading anew
        # a fresh strip spans the tile's width when it fits (the next tasks' units lie anywhere
        # along the rows), else the requested columns, aligned to blocks
        c0, c1 = 0, tile.width
        if not self._fits(tile, B - A, c1 - c0, len(image_pos)):
            c0, c1 = ca // bw * bw, min(-(-cb // bw) * bw, tile.width)
            if not self._fits(tile, B - A, c1 - c0, len(image_pos)):
                return None
        vals, valid = self._decode(tile, A, B, c0, c1, image_pos, mask_pos)
        self._keep(key, (A, B, c0, c1, vals, valid))
        return A, c0, vals, valid

    def _fits(self, tile: TileInfo, rows: int, cols: int, n_bands: int) -> bool:
        # raw (at most 8 bytes a band) + float32 values + validity, for the kept and new rows
        return rows * cols * (n_bands * 12 + 1) <= self.max_bytes


def _cut(chips: np.ndarray, mask: np.ndarray, t: int, idx: np.ndarray, r0: np.ndarray,
         c0: np.ndarray, group: Any, vals: np.ndarray, valid: np.ndarray, wr0: int, wc0: int,
         h: int) -> None:
    """Copy the chips of ``group`` (positions in ``idx``/``r0``/``c0``) from a decoded window
    whose top-left pixel is ``(wr0, wc0)``; a chip another tile already filled only gets its
    gaps filled.
    """
    wr1, wc1 = wr0 + vals.shape[0], wc0 + vals.shape[1]
    for g in group:
        i = idx[g]
        ra, rb = max(r0[g], wr0), min(r0[g] + h, wr1)
        ca, cb = max(c0[g], wc0), min(c0[g] + h, wc1)
        if ra >= rb or ca >= cb:
            continue
        src_r, src_c = slice(ra - wr0, rb - wr0), slice(ca - wc0, cb - wc0)
        dst_r, dst_c = slice(ra - r0[g], rb - r0[g]), slice(ca - c0[g], cb - c0[g])
        have = mask[i, t, dst_r, dst_c]
        if not have.any():  # first tile to serve this chip: plain copies
            chips[i, t, dst_r, dst_c] = vals[src_r, src_c]
            mask[i, t, dst_r, dst_c] = valid[src_r, src_c]
            continue
        take = valid[src_r, src_c] & ~have
        if take.any():  # another tile already filled part of it: fill the gaps
            chip_view = chips[i, t, dst_r, dst_c]
            chip_view[take] = vals[src_r, src_c][take]
            have |= take


def _read_task(task: _Task, source: _StripSource | None = None,
               out: tuple[np.ndarray, np.ndarray] | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """Chips ``(n, T, H, W, C)`` and mask ``(n, T, H, W)`` of one task's units.

    With a ``source`` each tile is served from its block-aligned strip (tasks in row order:
    every block decoded once); without, in windows over clusters of nearby chips. ``out``:
    arrays of those shapes to fill (zeroed here) instead of new ones.
    """
    from rasterio.windows import Window

    n, n_periods = task.home.shape
    h = task.chip
    if out is None:
        chips = np.zeros((n, n_periods, h, h, task.n_bands), dtype=np.float32)
        mask = np.zeros((n, n_periods, h, h), dtype=bool)
    else:
        chips, mask = out
        chips.fill(0.0)
        mask.fill(False)
    tiles = task.tiles
    for tile in tiles:
        if tile.composite is not None:
            continue  # composites: reduced over all the period's scenes below
        t = tile.period_index
        sel, rows, cols = [], [], []
        for home_k in np.unique(task.home[:, t]):
            if home_k < 0:
                continue
            off = _alignment(tiles[home_k], tile)
            if off is None:
                continue
            idx = np.nonzero(task.home[:, t] == home_k)[0]
            sel.append(idx)
            rows.append(task.row0[idx, t] + off[0])
            cols.append(task.col0[idx, t] + off[1])
        if not sel:
            continue
        idx = np.concatenate(sel)
        r0 = np.concatenate(rows)
        c0 = np.concatenate(cols)
        hit = (r0 < tile.height) & (r0 + h > 0) & (c0 < tile.width) & (c0 + h > 0)
        idx, r0, c0 = idx[hit], r0[hit], c0[hit]
        if not len(idx):
            continue
        image_pos = list(range(len(tile.image_bands)))
        mask_pos = len(tile.image_bands) if tile.mask_band else None
        if source is not None:
            win = source.window(tile, max(int(r0.min()), 0), min(int(r0.max()) + h, tile.height),
                                max(int(c0.min()), 0), min(int(c0.max()) + h, tile.width),
                                image_pos, mask_pos)
            if win is not None:
                wr0, wc0, vals, valid = win
                _cut(chips, mask, t, idx, r0, c0, range(len(idx)), vals, valid, wr0, wc0, h)
                continue
        for group in _clusters(r0, c0, h, tile.height, tile.width):
            wr0 = max(int(r0[group].min()), 0)
            wr1 = min(int(r0[group].max()) + h, tile.height)
            wc0 = max(int(c0[group].min()), 0)
            wc1 = min(int(c0[group].max()) + h, tile.width)
            raw = read_window(tile, Window(wc0, wr0, wc1 - wc0, wr1 - wr0))
            vals, valid = valid_pixels(raw, tile, image_pos, mask_pos)
            if not valid.all():
                vals[~valid] = 0.0
            _cut(chips, mask, t, idx, r0, c0, group, vals, valid, wr0, wc0, h)
    comp_periods = sorted({tile.period_index for tile in tiles if tile.composite is not None})
    if comp_periods:
        from geocausal.data.composite import composite_chips

        for t in comp_periods:
            chips[:, t], mask[:, t] = composite_chips(tiles, t, task.home[:, t], task.row0[:, t],
                                                      task.col0[:, t], h)
    return chips, mask


def _run_task(task: _Task, tmp: str) -> int:
    """Read one task's chips, write them into the cache at ``tmp`` and mark the task done.

    In a local run the chips come from the run's ordered strip reader (:data:`_READERS`).
    """
    reader = _READERS.get(tmp)
    chips, mask = _read_task(task) if reader is None else reader.read(task)
    done = _write_task(task, tmp, chips, mask)
    if reader is not None:
        reader.release(chips, mask)
    return done


def _write_task(task: _Task, tmp: str, chips: np.ndarray, mask: np.ndarray) -> int:
    """Write one task's chips and mask into the cache at ``tmp`` and mark the task done."""
    import zarr

    group = zarr.open_group(tmp, mode="r+")
    for name, data in (("chips", chips), ("mask", mask)):
        arr = group[name]
        codec = _direct_codec(arr, task.start) if DIRECT_CHUNKS else None
        if codec is None:
            arr[task.start:task.stop] = data
        else:
            _write_chunks(Path(tmp) / name, data, task.start, arr.chunks[0], codec)
    done = Path(tmp) / "_done"
    part = done / f".{task.index}.tmp.npy"
    # (2, n, T): on a raster, and at least one valid pixel in the chip
    np.save(part, np.stack([task.home >= 0, mask.any(axis=(2, 3))]))
    os.replace(part, done / f"{task.index}.npy")  # the marker appears only once data are written
    return task.index


def _direct_codec(arr: Any, start: int) -> Any:
    """The blosc compressor of a chips-store array whose chunks :func:`_write_chunks` may
    write itself, or None (then zarr writes them).

    Only the layout :func:`_create_store` makes qualifies: zarr v3, default ``c/`` chunk keys
    with ``/``, chunks spanning every axis but the first, codecs ``bytes`` (little endian or
    single bytes) then ``blosc``, and a task starting on a chunk boundary.
    """
    from zarr.codecs import BloscCodec, BytesCodec

    try:
        meta = arr.metadata
        enc = meta.chunk_key_encoding
        codecs = tuple(meta.codecs)
        ok = (meta.zarr_format == 3 and type(enc).__name__ == "DefaultChunkKeyEncoding"
              and getattr(enc, "separator", None) == "/"
              and tuple(arr.chunks[1:]) == tuple(arr.shape[1:]) and start % arr.chunks[0] == 0
              and len(codecs) == 2 and isinstance(codecs[0], BytesCodec)
              and isinstance(codecs[1], BloscCodec) and np.dtype(arr.dtype).byteorder in "=<|"
              and getattr(codecs[0].endian, "value", "little") == "little")
    except (AttributeError, TypeError):
        return None
    if not ok:
        return None
    from numcodecs import Blosc

    b = codecs[1]
    shuffle = {"noshuffle": Blosc.NOSHUFFLE, "shuffle": Blosc.SHUFFLE,
               "bitshuffle": Blosc.BITSHUFFLE}[str(getattr(b.shuffle, "value", b.shuffle))]
    return Blosc(cname=str(getattr(b.cname, "value", b.cname)), clevel=int(b.clevel),
                 shuffle=shuffle, blocksize=int(b.blocksize or 0))


def _write_chunks(folder: Path, data: np.ndarray, start: int, per_chunk: int, codec: Any) -> None:
    """Encode rows ``start:start + len(data)`` of a zarr v3 array as whole chunks and write
    each chunk file (``c/<i>/0/...``) atomically; the array's last chunk is padded with zeros
    (the fill value), as zarr stores edge chunks.

    The same bytes zarr's ``bytes`` + ``blosc`` codecs make, without its per-chunk asyncio
    machinery (which costs more CPU than the compression here); blosc and the file writes
    release the GIL, so writer threads overlap.
    """
    tail = "/".join(["0"] * (data.ndim - 1))
    for a in range(0, len(data), per_chunk):
        block = data[a:a + per_chunk]
        if block.shape[0] < per_chunk:
            full = np.zeros((per_chunk, *block.shape[1:]), dtype=block.dtype)
            full[:block.shape[0]] = block
            block = full
        encoded = codec.encode(np.ascontiguousarray(block))
        path = folder / "c" / str((start + a) // per_chunk) / tail
        path.parent.mkdir(parents=True, exist_ok=True)
        part = path.with_name(f".{path.name}.{threading.get_ident()}.part")
        with open(part, "wb") as fh:
            fh.write(encoded)
        os.replace(part, path)


# ----------------------------------------------------------------------------- extract
def cache_name(manifest: Manifest, chip: int) -> str:
    """Folder name of a study's chips cache: content hash plus chip size."""
    return f"chips-{manifest.content_hash()}-{chip}px.zarr"


def _create_store(tmp: Path, n: int, n_periods: int, chip: int, n_bands: int,
                  per_chunk: int, order: np.ndarray, per_task: int) -> None:
    import zarr
    from zarr.codecs import BloscCodec

    tmp.mkdir(parents=True)
    _mark_owned(tmp)  # first, so that any trace of this run can be cleaned up later
    group = zarr.open_group(str(tmp), mode="a")
    comp = BloscCodec(cname="lz4", clevel=5, shuffle="shuffle")
    group.create_array("chips", shape=(n, n_periods, chip, chip, n_bands),
                       chunks=(per_chunk, n_periods, chip, chip, n_bands), dtype="float32",
                       fill_value=0.0, compressors=comp)
    group.create_array("mask", shape=(n, n_periods, chip, chip),
                       chunks=(per_chunk, n_periods, chip, chip), dtype="bool", fill_value=False,
                       compressors=comp)
    (tmp / "_done").mkdir()
    np.save(tmp / "_order.npy", order)
    (tmp / "_per_task.txt").write_text(str(per_task))
    group.attrs["format"] = "partial"


# ----------------------------------------------------------------------------- ownership
def _mark_owned(folder: Path) -> None:
    (folder / OWNER_MARKER).write_text("made by geocausal.data.chips.extract; safe to delete\n")


def _made_by_geocausal(folder: Path) -> bool:
    """The folder holds the marker extract writes, or is a chips store of an older version."""
    if (folder / OWNER_MARKER).is_file():
        return True
    try:  # caches written before the marker existed
        fmt = json.loads((folder / "zarr.json").read_text()).get("attributes", {}).get("format")
    except (OSError, ValueError, AttributeError):
        return False
    return isinstance(fmt, str) and (fmt.startswith("geocausal-chips")
                                     or (fmt == "partial" and (folder / "_done").is_dir()))


def _remove(path: Path, overwrite: bool) -> None:
    """Delete ``path`` if geocausal made it (or ``overwrite``); otherwise refuse."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir() and not path.is_symlink() and (overwrite or _made_by_geocausal(path)):
        shutil.rmtree(path)
        return
    if overwrite and (path.is_file() or path.is_symlink()):
        path.unlink()
        return
    raise DataError(f"'{path}' already exists and was not made by geocausal (it has no "
                    f"'{OWNER_MARKER}' file); extract will not delete it. Move it away, choose "
                    "another cache_dir, or pass overwrite=True (CLI: --overwrite) to replace it")


# ----------------------------------------------------------------------------- extract
def extract(manifest_or_path: Manifest | str | Path, *, cache_dir: str | Path | None = None,
            workers: int | None = None, scheduler: str | None = None, progress: bool = True,
            task_mb: float = 64.0, overwrite: bool = False, rasters: Any = None,
            threads: int | None = None) -> ChipsResult:
    """Extract a chip around every unit for every period into a zarr cache.

    Parameters
    ----------
    manifest_or_path
        A manifest or the path of its YAML file.
    cache_dir
        Folder that holds caches (default: ``.cache`` next to the manifest). The cache itself is
        ``cache_dir / chips-<content hash>-<chip>px.zarr``; an existing one is reused.
    workers
        Start a local Dask cluster with this many worker processes.
    scheduler
        Address of a running Dask scheduler (its workers must see ``cache_dir``).
    progress
        Show a tqdm progress bar (units done).
    task_mb
        Memory, in MiB, of one task's chips (tasks are the unit of work and of resumption).
    overwrite
        Delete whatever sits at the cache path (and its ``.partial`` work folder) and extract
        afresh. Without it, a finished cache is reused, an interrupted one resumed, and a
        folder geocausal did not make (no ``.geocausal-cache`` marker) is never deleted.
    rasters
        Imagery held as xarray: a ``DataArray`` (``(band, y, x)``, optionally with a ``time`` or
        ``period`` dimension), a ``Dataset`` (one variable per band), or a mapping ``{period:
        DataArray or Dataset}``; it replaces the manifest's rasters (see
        :mod:`geocausal.data.xarray_source`; written once as GeoTIFFs under ``cache_dir``).
    threads
        Without ``workers`` or ``scheduler``: tasks run on this many threads of this process,
        so that raster decoding, conversion and cache writes overlap (default: the CPUs
        available, at most 4; 1 runs them one after another). Each thread holds one task's
        chips (``task_mb``) at a time.

    Returns
    -------
    ChipsResult
        The opened cache with ``report()``.

    Raises
    ------
    DataError
        A folder geocausal did not make sits at the cache path (and ``overwrite`` is False).

    Warns
    -----
    GeocausalWarning
        With the count of units outside every raster of some period, and of units whose chip
        holds no valid pixel in some period.
    """
    from geocausal.data.units import as_manifest, load_units, unique_units, unit_points

    start = time.perf_counter()
    threads = _check_threads(threads)
    m = as_manifest(manifest_or_path)
    if rasters is not None:
        from geocausal.data.xarray_source import manifest_with_xarray

        m = manifest_with_xarray(m, rasters, Path(cache_dir) if cache_dir is not None
                                 else m.base_dir / ".cache")
    if not m.rasters:
        raise DataError(f"{m.file or m.name}: field 'rasters' is empty; there is nothing to extract")
    chip = chip_size_px(m)
    base = Path(cache_dir) if cache_dir is not None else m.base_dir / ".cache"
    final = base / cache_name(m, chip)
    tmp = base / (final.name + ".partial")
    if overwrite:
        _remove(final, True)
        _remove(tmp, True)
    if final.exists() or final.is_symlink():
        try:
            cache = open_cache(final)
        except (DataError, KeyError, OSError, ValueError):  # an older layout or not a cache
            _remove(final, False)
        else:
            return _finish(cache, start, reused=True, tasks_run=0)
    if _finalised(tmp):  # a crash came after the cache was declared finished: publish it
        _finalize(tmp, final, None)
        return _finish(open_cache(final), start, reused=True, tasks_run=0)

    units = unique_units(load_units(m), m.units.id)
    ids = units[m.units.id].tolist()
    points = unit_points(units)
    periods = m.ordered_periods
    tiles = tuple(tile_infos(m, scenes=True))
    n_bands = len(m.band_names)
    home, row0, col0 = _plan(points, tiles, len(periods), chip)

    per_chunk, per_task = _chunking(len(periods), chip, n_bands, task_mb)
    order = _resumable(tmp, len(ids))
    if order is not None:  # resume with the plan of the interrupted run
        per_task = int((tmp / "_per_task.txt").read_text())
    else:
        _remove(tmp, False)
        base.mkdir(parents=True, exist_ok=True)
        # storage row -> unit index: row bands for the local streaming reader, compact
        # Z-order blocks for Dask workers (each task read on its own)
        local = STREAM_READS and workers is None and scheduler is None
        order = _row_order(points, tiles[0]) if local else _spatial_order(points)
        _create_store(tmp, len(ids), len(periods), chip, n_bands, per_chunk, order, per_task)

    starts = list(range(0, len(ids), per_task))
    done = {int(p.stem) for p in (tmp / "_done").glob("*.npy") if not p.name.startswith(".")}
    todo = []
    for k, a in enumerate(starts):
        if k in done:
            continue
        b = min(a + per_task, len(ids))
        u = order[a:b]
        todo.append(_Task(index=k, start=a, stop=b, home=home[u], row0=row0[u], col0=col0[u],
                          tiles=tiles, chip=chip, n_bands=n_bands))
    sizes = {task.index: task.stop - task.start for task in todo}
    if workers is None and scheduler is None and todo:
        per_unit = len(periods) * chip * chip * (n_bands * 4 + 1)
        strips = sum(t.height * t.width * ((len(t.image_bands) + 1) * 12 + 1) for t in tiles)
        _check_memory(max(sizes.values()) * per_unit, threads, task_mb, strips)
    import rasterio

    # GDAL's block cache defaults to 5% of the machine's memory and, over a large study, fills
    # it (over 1 GB on a 24 GB machine); tasks run in spatial order, so a few hundred MB keep
    # every block decoded once. An explicit GDAL_CACHEMAX in the environment wins.
    cache_env = {} if "GDAL_CACHEMAX" in os.environ else {"GDAL_CACHEMAX": GDAL_CACHE_MB}
    try:
        with rasterio.Env(**cache_env):
            _run_all(todo, str(tmp), sizes, len(ids), len(ids) - sum(sizes.values()), workers,
                     scheduler, progress, threads)
    finally:
        close_rasters()
    _finalize(tmp, final, _FinalPlan(m, ids, periods, chip, starts, per_task, order))
    return _finish(open_cache(final), start, reused=False, tasks_run=len(todo))


def _check_threads(threads: int | None) -> int:
    """The number of extraction threads: ``threads``, or the CPUs available (at most 4).

    Examples
    --------
    >>> _check_threads(2)
    2
    """
    if threads is None:
        cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
        return max(1, min(4, cpus or 1))
    if isinstance(threads, bool) or not isinstance(threads, int | np.integer) or threads < 1:
        raise DataError(f"threads must be a positive integer, got {threads!r}; use 1 to read "
                        "the tasks one after another")
    return int(threads)


def _resumable(tmp: Path, n_units: int) -> np.ndarray | None:
    """The storage order of an interrupted run at ``tmp`` that can be resumed, else None."""
    need = ("_order.npy", "_per_task.txt", "zarr.json", "_done", OWNER_MARKER)
    if not all((tmp / f).exists() for f in need):
        return None
    try:
        order = np.load(tmp / "_order.npy")
        int((tmp / "_per_task.txt").read_text())
        attrs = json.loads((tmp / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return None
    if order.shape != (n_units,) or attrs.get("format") != "partial":
        return None
    if not ((tmp / "chips" / "zarr.json").exists() and (tmp / "mask" / "zarr.json").exists()):
        return None
    return order


def _finalised(tmp: Path) -> bool:
    """``tmp`` was declared a finished cache but not yet renamed (a crash in between)."""
    try:
        attrs = json.loads((tmp / "zarr.json").read_text()).get("attributes", {})
    except (OSError, ValueError):
        return False
    return attrs.get("format") == FORMAT and (tmp / OWNER_MARKER).is_file()


def _run_threads(todo: list[_Task], tmp: str, threads: int, done: Any) -> None:
    """Run tasks on ``threads`` threads of this process: GDAL decoding, the float conversion
    and blosc compression release the GIL, so one task's reads overlap another's writes
    (reads take turns in task order when the run streams strips, see :class:`_OrderedReader`).

    Each thread opens its own raster handles (:func:`open_raster` keeps them per thread) and
    closes them when its last task is done; tasks write disjoint zarr chunks.
    """
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    queue = list(reversed(todo))
    lock = threading.Lock()

    def worker() -> None:
        try:
            while True:
                with lock:
                    if not queue:
                        return
                    task = queue.pop()
                k = _run_task(task, tmp)
                with lock:
                    done(k)
        finally:
            close_rasters()

    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="gc-extract") as pool:
        futures = [pool.submit(worker) for _ in range(min(threads, len(todo)))]
        finished, _ = wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in finished if f.exception() is not None]
        if failed:
            with lock:
                queue.clear()  # the other threads stop after their current task
            reader = _READERS.get(tmp)
            if reader is not None:  # threads waiting for a turn that will not come
                reader.abort()
            wait(futures)
            raise failed[0].exception()


class _OrderedReader:
    """Reads tasks one at a time, in the order given, from one :class:`_StripSource`.

    Threads running :func:`_run_task` take turns: a task is read when every task before it
    has been read (the strips move down the rows, every block decoded once), and its
    compression and writing then overlap the next task's read on another thread.
    """

    def __init__(self, order: Sequence[int]) -> None:
        self.source = _StripSource()
        # chips arrays of written tasks, reused (zeroed) by later tasks of the same size: a
        # fresh array of a task's chips costs more in page faults than filling it with zeros
        self._free: list[tuple[np.ndarray, np.ndarray]] = []
        self._turn = list(order)
        self._next = 0
        self._aborted = False
        self._cond = threading.Condition()

    def read(self, task: _Task) -> tuple[np.ndarray, np.ndarray]:
        with self._cond:
            self._cond.wait_for(lambda: self._aborted or self._next >= len(self._turn)
                                or self._turn[self._next] == task.index)
            if self._aborted:
                raise DataError("extraction stopped: another task failed")
            n = task.stop - task.start
            out = next((b for b in self._free if b[0].shape[0] == n), None)
            if out is not None:
                self._free = [b for b in self._free if b is not out]
            try:
                return _read_task(task, self.source, out)
            finally:
                if self._next < len(self._turn) and self._turn[self._next] == task.index:
                    self._next += 1
                self._cond.notify_all()

    def release(self, chips: np.ndarray, mask: np.ndarray) -> None:
        """Hand a written task's arrays back for reuse."""
        with self._cond:
            self._free.append((chips, mask))

    def abort(self) -> None:
        with self._cond:
            self._aborted = True
            self._cond.notify_all()


#: the ordered reader of each running local extraction, by its work folder
_READERS: dict[str, _OrderedReader] = {}


def _available_memory() -> int | None:
    """Bytes of memory available to new allocations (``MemAvailable``), or None if unknown."""
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return int(os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"))
    except (ValueError, OSError, AttributeError):
        return None


def _check_memory(task_bytes: int, threads: int, task_mb: float, strip_bytes: int,
                  available: int | None = None) -> int:
    """Peak bytes a local extraction holds at once; a named error when it cannot fit.

    ``threads + 1`` tasks' chips (one being read, the others waiting for their writer) and the
    strips the reader keeps (``strip_bytes``, at most :data:`MAX_KEPT_BYTES`) must fit in the
    available memory.

    Examples
    --------
    >>> _check_memory(64 * 2**20, 2, 64.0, 2**20, available=8 * 2**30) // 2**20
    193
    >>> _check_memory(64 * 2**20, 2, 64.0, 2**20, available=2**27)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    geocausal.errors.DataError: extraction needs about 0.19 GB at once (3 tasks ... lower task_mb or threads
    """
    strips = min(int(strip_bytes), MAX_KEPT_BYTES)
    need = (threads + 1) * int(task_bytes) + strips
    available = _available_memory() if available is None else available
    if available is not None and need > available:
        raise DataError(f"extraction needs about {need / 2**30:.2f} GB at once ({threads + 1} "
                        f"tasks of {task_bytes / 2**20:.1f} MB of chips with threads={threads} "
                        f"and task_mb={task_mb:g}, plus {strips / 2**20:.1f} MB of raster "
                        f"strips) but only {available / 2**30:.2f} GB are available: "
                        "lower task_mb or threads")
    return need


def _run_all(todo: list[_Task], tmp: str, sizes: dict[int, int], total: int, initial: int,
             workers: int | None, scheduler: str | None, progress: bool,
             threads: int = 1) -> None:
    from geocausal._progress import progress as _progress
    from geocausal.parallel import dask_client

    bar = _progress(total=total, initial=initial, enabled=bool(progress), desc="extract",
                    unit="unit", leave=False)
    try:
        with dask_client(address=scheduler, workers=workers) as client:
            if client is None and STREAM_READS:
                _READERS[tmp] = _OrderedReader([task.index for task in todo])
            if client is None and (threads <= 1 or len(todo) <= 1):
                for task in todo:
                    _run_task(task, tmp)
                    bar.update(sizes[task.index])
            elif client is None:
                _run_threads(todo, tmp, threads, lambda k: bar.update(sizes[k]))
            else:
                from dask.distributed import as_completed

                futures = client.map(_run_task, todo, tmp=tmp, pure=False)
                for fut in as_completed(futures):
                    bar.update(sizes[fut.result()])
    finally:
        _READERS.pop(tmp, None)
        bar.close()


# ----------------------------------------------------------------------------- finalisation
@dataclass(frozen=True)
class _FinalPlan:
    manifest: Manifest
    ids: list
    periods: list
    chip: int
    starts: list
    per_task: int
    order: np.ndarray


def _final_arrays(tmp: Path, plan: _FinalPlan) -> dict[str, Any]:
    """Coverage, row index and empty chips from the task markers (reads only)."""
    import zarr

    n, n_periods = len(plan.ids), len(plan.periods)
    coverage = np.zeros((n, n_periods), dtype=bool)
    has_pixels = np.zeros((n, n_periods), dtype=bool)
    mask = None
    for k, a in enumerate(plan.starts):
        marker = tmp / "_done" / f"{k}.npy"
        if not marker.exists():
            raise DataError(f"chips cache '{tmp}': task {k} did not finish; run extract again")
        units = plan.order[a:a + plan.per_task]
        flags = np.load(marker)
        if flags.ndim == 2:  # a marker of an older version: only coverage; read the mask
            if mask is None:
                mask = zarr.open_group(str(tmp), mode="r")["mask"]
            flags = np.stack([flags, np.asarray(mask[a:a + len(units)]).any(axis=(2, 3))])
        coverage[units], has_pixels[units] = flags[0], flags[1]
    rows = np.empty_like(plan.order)
    rows[plan.order] = np.arange(len(plan.order))
    return {"coverage": coverage, "rows": rows, "empty": coverage & ~has_pixels}


def _step_write_coverage(tmp: Path, plan: _FinalPlan, arrays: dict) -> None:
    import zarr

    group = zarr.open_group(str(tmp), mode="r+")
    cov = arrays["coverage"]
    group.create_array("coverage", data=cov, chunks=cov.shape or (1,), overwrite=True)


def _step_write_rows(tmp: Path, plan: _FinalPlan, arrays: dict) -> None:
    import zarr

    group = zarr.open_group(str(tmp), mode="r+")
    group.create_array("rows", data=arrays["rows"], chunks=arrays["rows"].shape or (1,),
                       overwrite=True)


def _step_write_attrs(tmp: Path, plan: _FinalPlan, arrays: dict) -> None:
    import zarr

    m, ids, cov, empty = plan.manifest, plan.ids, arrays["coverage"], arrays["empty"]
    outside = [ids[i] for i in np.nonzero(~cov.all(axis=1))[0]]
    empty_ids = [ids[i] for i in np.nonzero(empty.any(axis=1))[0]]
    group = zarr.open_group(str(tmp), mode="r+")
    group.attrs.update({"unit_ids": _jsonable(ids), "periods": _jsonable(plan.periods),
                        "bands": m.band_names, "outside_ids": _jsonable(outside),
                        "empty_ids": _jsonable(empty_ids), "chip_size": plan.chip,
                        "composite": any(r.composite is not None for r in m.rasters),
                        "manifest_hash": m.content_hash(),
                        "manifest_file": str(m.file) if m.file else None,
                        "outside_per_period": (~cov).sum(axis=0).tolist(),
                        "empty_per_period": empty.sum(axis=0).tolist()})


def _step_declare_finished(tmp: Path, plan: _FinalPlan, arrays: dict) -> None:
    """The commit point: from here on a rerun only tidies up and publishes."""
    import zarr

    zarr.open_group(str(tmp), mode="r+").attrs["format"] = FORMAT


def _step_remove_work_files(tmp: Path) -> None:
    if (tmp / "_done").exists():
        shutil.rmtree(tmp / "_done")
    (tmp / "_order.npy").unlink(missing_ok=True)
    (tmp / "_per_task.txt").unlink(missing_ok=True)


def _step_publish(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)  # atomic; ``final`` is absent or an empty folder here


#: finalisation, in order; each step may be interrupted and the whole sequence rerun
_WRITE_STEPS = (_step_write_coverage, _step_write_rows, _step_write_attrs, _step_declare_finished)


def _finalize(tmp: Path, final: Path, plan: _FinalPlan | None) -> None:
    """Turn the finished work folder ``tmp`` into the cache ``final``, crash-safely.

    Every write step overwrites what a crashed earlier attempt left; the cache is declared
    finished only after all arrays and attributes are written, and renamed into place last.
    ``plan=None`` resumes after the declaration (only tidying and the rename are left).
    """
    if plan is not None:
        arrays = _final_arrays(tmp, plan)
        for step in _WRITE_STEPS:
            step(tmp, plan, arrays)
    _step_remove_work_files(tmp)
    _step_publish(tmp, final)


def _jsonable(values: Sequence) -> list:
    return json.loads(json.dumps(list(values), default=lambda v: v.item() if hasattr(v, "item")
                                 else str(v)))


def _is_composite(cache: ChipsCache) -> bool:
    import zarr

    try:
        return bool(zarr.open_group(str(cache.path), mode="r").attrs.get("composite", False))
    except Exception:  # noqa: BLE001 - an older cache: not a composite
        return False


def _finish(cache: ChipsCache, start: float, *, reused: bool, tasks_run: int) -> ChipsResult:
    if cache.outside_ids:
        per = (~cache.coverage).sum(axis=0)
        detail = ", ".join(f"{p}: {int(k)}" for p, k in zip(cache.periods, per) if k)
        warnings.warn(f"{len(cache.outside_ids)} units lie outside every raster of at least one "
                      f"period ({detail}); their chips there are fully masked (ids "
                      f"{cache.outside_ids[:5]}{'...' if len(cache.outside_ids) > 5 else ''})",
                      GeocausalWarning, stacklevel=3)
    if cache.empty_ids and _is_composite(cache):
        import zarr

        per = zarr.open_group(str(cache.path), mode="r").attrs.get("empty_per_period", [])
        detail = ", ".join(f"{p}: {int(k)}" for p, k in zip(cache.periods, per) if k)
        warnings.warn(f"{len(cache.empty_ids)} units have no clear observation in at least one "
                      f"composite period ({detail}): every scene is cloudy, shadowed or nodata "
                      f"over their chip (ids {cache.empty_ids[:5]}"
                      f"{'...' if len(cache.empty_ids) > 5 else ''}); their chips there are fully "
                      "masked, reported in empty_ids, and designs drop them by default "
                      "(missing_images='drop')", NoClearObservationWarning, stacklevel=3)
    elif cache.empty_ids:
        warnings.warn(f"{len(cache.empty_ids)} units lie on a raster but their chip holds no valid "
                      "pixel (all nodata, clouds or masked) in at least one period (ids "
                      f"{cache.empty_ids[:5]}{'...' if len(cache.empty_ids) > 5 else ''}); image "
                      "features cannot be computed for them: designs drop them by default "
                      "(missing_images='drop')", GeocausalWarning, stacklevel=3)
    fields = {f: getattr(cache, f) for f in cache.__dataclass_fields__}
    return ChipsResult(**fields, elapsed_s=time.perf_counter() - start, reused=reused,
                       tasks_run=tasks_run)

"""Sliding windows over a stack of co-registered rasters (one GeoTIFF per period).

:class:`WindowStack` opens the periods' rasters, checks they share one grid (size, bands,
transform), and reads rows of ``chip_size`` windows at a ``stride`` as chips
``(N, T, H, W, C)`` (masked and nodata pixels as NaN). ``gc.transport_cate`` uses it to map a
fitted CATE model over a mosaic; the result is written with
:func:`geocausal.data.rasters.write_geotiff` at the stride's pixel size (:meth:`WindowStack.grid_transform`).

Examples
--------
>>> import tempfile, numpy as np
>>> from pathlib import Path
>>> from rasterio.transform import from_origin
>>> from geocausal.data.rasters import write_geotiff
>>> tmp = Path(tempfile.mkdtemp())
>>> p = write_geotiff(tmp / "t0.tif", np.ones((2, 16, 16), "float32"), "EPSG:32633",
...                   from_origin(0, 160, 10, 10))
>>> with WindowStack([p], chip_size=8) as ws:
...     ws.shape, ws.read_rows(range(0, 1)).shape
((2, 2), (2, 1, 8, 8, 2))
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.errors import DataError

__all__ = ["WindowStack"]


class WindowStack:
    """Windows of ``chip_size`` pixels every ``stride`` pixels over one raster per period.

    Parameters
    ----------
    rasters
        One GeoTIFF per period (in the order of the model's periods), all on one grid.
    chip_size
        Window side in pixels.
    stride
        Step between windows (default ``chip_size``).
    bands
        1-based band indexes to read (default: all), in the model's band order.

    Use as a context manager (or call :meth:`close`): the files stay open while reading.
    """

    def __init__(self, rasters: Sequence[str | Path], *, chip_size: int,
                 stride: int | None = None, bands: Sequence[int] | None = None) -> None:
        import rasterio

        rasters = list(rasters)
        if not rasters:
            raise DataError("give at least one raster (one per period)")
        stride = chip_size if stride is None else stride
        for name, v in (("chip_size", chip_size), ("stride", stride)):
            if isinstance(v, bool) or not isinstance(v, int | np.integer) or v < 1:
                raise DataError(f"{name} must be a positive integer, got {v!r}")
        self.chip_size, self.stride = int(chip_size), int(stride)
        self.sources: list[Any] = []
        try:
            for p in rasters:
                try:
                    self.sources.append(rasterio.open(p))
                except Exception as exc:  # rasterio raises several types
                    raise DataError(f"cannot open raster '{p}': {exc}") from None
            first = self.sources[0]
            for p, s in zip(rasters, self.sources):
                if (s.width, s.height, s.count, s.transform) != (
                        first.width, first.height, first.count, first.transform):
                    raise DataError(f"raster '{p}' is not on the grid of '{rasters[0]}' (size, "
                                    "bands and transform must match); resample the periods to "
                                    "one grid")
            if self.chip_size > min(first.width, first.height):
                raise DataError(f"chip_size {self.chip_size} exceeds the raster size "
                                f"{first.width}x{first.height}")
            self.bands = list(bands) if bands is not None else list(range(1, first.count + 1))
            bad = [b for b in self.bands if not 1 <= int(b) <= first.count]
            if bad:
                raise DataError(f"bands {bad} are not among the rasters' bands 1..{first.count}")
        except BaseException:
            self.close()
            raise

    @property
    def shape(self) -> tuple[int, int]:
        """Rows and columns of windows."""
        s = self.sources[0]
        return ((s.height - self.chip_size) // self.stride + 1,
                (s.width - self.chip_size) // self.stride + 1)

    @property
    def crs(self) -> Any:
        """The rasters' coordinate reference system."""
        return self.sources[0].crs

    def grid_transform(self) -> Any:
        """Affine transform of the window grid (pixel size = the stride)."""
        from rasterio.transform import Affine

        return self.sources[0].transform @ Affine.scale(self.stride)

    def read_rows(self, rows: Iterable[int]) -> np.ndarray:
        """Chips ``(len(rows) * n_cols, T, chip, chip, C)`` of the windows in ``rows``, row-major."""
        from rasterio.windows import Window

        rows = list(rows)
        n_cols = self.shape[1]
        c = self.chip_size
        chips = np.empty((len(rows) * n_cols, len(self.sources), c, c, len(self.bands)))
        k = 0
        for i in rows:
            for j in range(n_cols):
                win = Window(j * self.stride, i * self.stride, c, c)
                for t, s in enumerate(self.sources):
                    a = s.read(self.bands, window=win, masked=True).astype(float).filled(np.nan)
                    chips[k, t] = np.moveaxis(a, 0, -1)
                k += 1
        return chips

    def close(self) -> None:
        """Close every raster."""
        for s in self.sources:
            s.close()
        self.sources = []

    def __enter__(self) -> WindowStack:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

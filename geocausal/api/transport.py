"""Transport CATE predictions to a raster grid outside the trial sites.

:func:`transport_cate` slides a window of the chip size over a mosaic (one GeoTIFF per
period, all on the same grid), turns each window's image sequence into the same features the
``gc.cate`` model was trained on (through :meth:`geocausal.designs.cate_model.CateModel.effect`, the path
new chips of new places take), predicts the CATE and writes one value per window as a
GeoTIFF (pixel size = the window stride); :func:`geocausal.results.plot_cate.cate_map` draws it.
Raster reading is :class:`geocausal.data.windows.WindowStack`; this face checks the model,
predicts batch by batch and writes the map.
Windows with no valid pixel in some period get no prediction (NaN, counted in one
:class:`~geocausal.errors.MissingImagesWarning`).

Examples
--------
>>> import tempfile, numpy as np, pandas as pd
>>> from pathlib import Path
>>> from geocausal.data.rasters import write_geotiff
>>> from rasterio.transform import from_origin
>>> rng = np.random.default_rng(0); tmp = Path(tempfile.mkdtemp())
>>> mosaic = rng.random((1, 2, 32, 32)).astype("float32")  # (T, C, H, W)
>>> p = write_geotiff(tmp / "t0.tif", mosaic[0], "EPSG:32633", from_origin(0, 320, 10, 10))
>>> chips = rng.random((300, 1, 8, 8, 2)); n = 300
>>> df = pd.DataFrame({"d": rng.integers(0, 2, n)})
>>> df["y"] = df.d * (1 + chips[:, 0, :, :, 0].mean(axis=(1, 2))) + rng.normal(size=n)
>>> import geocausal.api.cate as C
>>> est = C.cate("y ~ d", df, images=chips, propensity=.5, options={"evaluate": False})
>>> res = transport_cate(est, [p], tmp / "cate.tif", chip_size=8)
>>> res.values.shape
(4, 4)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from geocausal.api.cate import cate_model
from geocausal.data.rasters import write_geotiff
from geocausal.data.windows import WindowStack
from geocausal.designs.cate_model import CateModel
from geocausal.errors import DataError, MissingImagesWarning
from geocausal.results.estimate import Estimate
from geocausal.vocabulary import check_count


@dataclass(frozen=True)
class TransportResult:
    """The written GeoTIFF and the predicted grid (rows x cols of windows)."""

    path: Path
    values: np.ndarray
    transform: Any
    crs: Any

    def plot(self, ax=None, **kwargs):
        """Map of the predicted CATE."""
        from geocausal.results.plot_cate import cate_map

        kwargs.setdefault("crs", self.crs)
        return cate_map(self.values, ax=ax, transform=self.transform, **kwargs)


def transport_cate(
    estimate: Estimate | CateModel,
    rasters: Sequence[str | Path],
    out: str | Path,
    *,
    chip_size: int,
    stride: int | None = None,
    bands: Sequence[int] | None = None,
    rows_per_batch: int = 16,
) -> TransportResult:
    """Predict the CATE on every window of a raster mosaic and write a GeoTIFF.

    Parameters
    ----------
    estimate
        A ``gc.cate`` result fitted on image features only (no tabular controls, which are
        unknown off the trial sites), or its :class:`~geocausal.designs.cate_model.CateModel` (e.g.
        ``CateModel.load(path)``).
    rasters
        One GeoTIFF per period, in the order of the training chips' periods, on one grid.
    out
        Output GeoTIFF path.
    chip_size
        Window size in pixels (the training chip size).
    stride
        Step between windows (default: ``chip_size``); the output pixel size is the stride.
    bands
        1-based band indexes to read (default: all), in the training chips' band order.
    rows_per_batch
        Window rows predicted at once (bounds memory).

    Returns
    -------
    TransportResult
    """
    model = cate_model(estimate)
    if not model.images:
        raise DataError("transport_cate needs a gc.cate result fitted with images=")
    if model.multiscale:
        raise DataError("transport_cate reads one chip size; this model uses several (images= "
                        "was a mapping of scales); refit on one scale to transport")
    if model.controls:
        raise DataError(f"the CATE model also uses tabular controls {list(model.controls)}, "
                        "unknown outside the trial sites; refit with images only")
    check_count("rows_per_batch", rows_per_batch, minimum=1)
    with WindowStack(rasters, chip_size=chip_size, stride=stride, bands=bands) as ws:
        n_rows, n_cols = ws.shape
        values = np.full((n_rows, n_cols), np.nan, dtype=np.float32)
        n_missing = 0
        for r0 in range(0, n_rows, rows_per_batch):
            rows = range(r0, min(n_rows, r0 + rows_per_batch))
            chips = ws.read_rows(rows)
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always", MissingImagesWarning)
                tau = model.effect(images=chips, missing_images="drop")
            for w in caught:
                if not issubclass(w.category, MissingImagesWarning):
                    warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
            n_missing += chips.shape[0] - len(tau)
            flat = np.full(chips.shape[0], np.nan)
            flat[tau.index.to_numpy()] = tau.to_numpy()
            values[rows.start:rows.stop] = flat.reshape(len(rows), n_cols)
        transform, crs = ws.grid_transform(), ws.crs
    if n_missing:
        warnings.warn(f"{n_missing} of {n_rows * n_cols} windows have no valid pixel in some "
                      "period: their CATE is NaN in the map", MissingImagesWarning, stacklevel=2)
    path = write_geotiff(out, values[None], crs, transform, nodata=float("nan"))
    return TransportResult(path=Path(path), values=values, transform=transform, crs=crs)

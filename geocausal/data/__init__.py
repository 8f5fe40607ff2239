"""The data layer: manifests, units, chips, pixel distributions and studies.

Names load on first use, so a Dask worker that only reads chips does not import geopandas.

Examples
--------
>>> from geocausal.data import load_manifest, extract, pixel_distributions, load_study
>>> callable(extract) and callable(load_study)
True
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY: dict[str, str] = {
    "ChipsCache": "geocausal.data.chips",
    "ChipsResult": "geocausal.data.chips",
    "extract": "geocausal.data.chips",
    "open_cache": "geocausal.data.chips",
    "PixelDistributions": "geocausal.data.distributions",
    "pixel_distributions": "geocausal.data.distributions",
    "Manifest": "geocausal.data.manifest",
    "json_schema": "geocausal.data.manifest",
    "load_manifest": "geocausal.data.manifest",
    "manifest_from_dict": "geocausal.data.manifest",
    "Study": "geocausal.data.study",
    "load_study": "geocausal.data.study",
    "load_units": "geocausal.data.units",
    "zonal_stats": "geocausal.data.zonal",
    "zone_geometries": "geocausal.data.zonal",
    "weighted_quantiles": "geocausal.data.zonal",
    "apply_joins": "geocausal.data.joins",
    "align_periods": "geocausal.data.joins",
}

__all__ = sorted(_LAZY)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geocausal.data' has no attribute '{name}'")

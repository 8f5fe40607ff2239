"""The data layer: manifests, units, chips, pixel distributions and studies.

Examples
--------
>>> from geocausal.data import load_manifest, extract, pixel_distributions, load_study
>>> callable(extract) and callable(load_study)
True
"""

from __future__ import annotations

from geocausal.data.chips import ChipsCache, ChipsResult, extract, open_cache
from geocausal.data.distributions import PixelDistributions, pixel_distributions
from geocausal.data.manifest import Manifest, json_schema, load_manifest, manifest_from_dict
from geocausal.data.study import Study, load_study
from geocausal.data.units import load_units

__all__ = [
    "ChipsCache",
    "ChipsResult",
    "Manifest",
    "PixelDistributions",
    "Study",
    "extract",
    "json_schema",
    "load_manifest",
    "load_study",
    "load_units",
    "manifest_from_dict",
    "open_cache",
    "pixel_distributions",
]

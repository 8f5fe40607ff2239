"""geocausal: causal inference when outcomes, treatments or confounders are seen from space.

The flat public API; heavy modules (JAX, rasterio) load on first use.

Examples
--------
>>> import geocausal as gc
>>> callable(gc.aipw)
True
"""

from __future__ import annotations

import importlib
from typing import Any

from geocausal.errors import (
    ConvergenceWarning,
    DataError,
    DesignError,
    FormulaError,
    GeocausalError,
    GeocausalWarning,
    ManifestError,
)
from geocausal.results.estimate import Estimate, EstimateSet

__version__ = "0.1.0"

_LAZY: dict[str, str] = {
    # average effects with image confounding
    "ipw": "geocausal.api.ipw",
    "aipw": "geocausal.api.ipw",
    "placement": "geocausal.api.ipw",
    "balance": "geocausal.api.ipw",
    # sensitivity to omitted confounders (est.sensitivity(...) on the estimate itself)
    "sensitivity_benchmark": "geocausal.api.sensitivity",
    "fe": "geocausal.api.fe",
    # heterogeneity
    "cate": "geocausal.api.cate",
    "effect": "geocausal.api.cate",
    # panels
    "dml_panel": "geocausal.api.dml_panel",
    # predicted outcomes
    "debias": "geocausal.api.debias",
    "compare_debiasers": "geocausal.api.debias",
    "ppi": "geocausal.api.debias",
    # regression discontinuity
    "rdd": "geocausal.api.rdd",
    # data and representations
    "extract": "geocausal.data.chips",
    "load_manifest": "geocausal.data.manifest",
    "pixel_distributions": "geocausal.data.distributions",
    "zonal_stats": "geocausal.data.zonal",
    "embed": "geocausal.encoders.embed",
    "engineered_features": "geocausal.features.engineered",
    "spectral_indices": "geocausal.features.indices",
    "resolve_band_roles": "geocausal.features.roles",
    "datasets": "geocausal.datasets",
    "data": "geocausal.data",
    "load_study": "geocausal.data.study",
    "encoders": "geocausal.encoders",
    # specification curves
    "spec_curve": "geocausal.speccurve",
    # results
    "etable": "geocausal.results.table",
    "load": "geocausal.results.io",
}

__all__ = [
    "ConvergenceWarning",
    "DataError",
    "DesignError",
    "Estimate",
    "EstimateSet",
    "FormulaError",
    "GeocausalError",
    "GeocausalWarning",
    "ManifestError",
    *sorted(_LAZY),
]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        module = importlib.import_module(_LAZY[name])
        value = getattr(module, name) if hasattr(module, name) else module
        globals()[name] = value
        return value
    raise AttributeError(f"module 'geocausal' has no attribute '{name}'")

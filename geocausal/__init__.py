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

from geocausal import registry as _registry
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

#: ``gc.<name>`` -> module, imported on first use. Designs, their helpers and option objects
#: come from the one registry (:mod:`geocausal.registry`, which imports no estimator); the rest are data,
#: representation and result tools.
_LAZY: dict[str, str] = {
    **_registry.lazy_names(),
    # data and representations
    "extract": "geocausal.data.chips",
    "load_manifest": "geocausal.data.manifest",
    "pixel_distributions": "geocausal.data.distributions",
    "zonal_stats": "geocausal.data.zonal",
    "embed": "geocausal.encoders.embed",
    "engineered_features": "geocausal.features.engineered",
    "multiscale_features": "geocausal.encoders.multiscale",
    "stack_nuisances": "geocausal.nuisance.stacking",
    "PooledArms": "geocausal.nuisance.stacking",
    "nuisance_quality": "geocausal.nuisance.stacking",
    "spectral_indices": "geocausal.features.indices",
    "resolve_band_roles": "geocausal.features.roles",
    "datasets": "geocausal.datasets",
    "data": "geocausal.data",
    "load_study": "geocausal.data.study",
    "encoders": "geocausal.encoders",
    # the CATE design's fitted model and evaluation
    "CateModel": "geocausal.designs.cate_model",
    "chip_features": "geocausal.designs.cate_model",
    "CateEvaluation": "geocausal.designs.cate_eval",
    "evaluate_cate": "geocausal.designs.cate_eval",
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

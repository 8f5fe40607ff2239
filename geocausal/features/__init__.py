"""Image features without learning, and the alignment of image inputs with the data.

- :mod:`geocausal.features.roles`: which band is blue, red, near-infrared, ... (sensor presets
  for Sentinel-2 and Landsat 5-9 band names, or an explicit mapping);
- :mod:`geocausal.features.indices`: spectral indices from the roles, by spyndex;
- :mod:`geocausal.features.engineered`: per-chip statistics of bands and indices (mean, SD,
  quantiles, centre versus rings, central pixel windows, texture, thresholds), the engineered
  representation;
- :mod:`geocausal.features.align` turns any ``images=`` argument (chips, a chips cache, a
  ``ChipsResult``, an embeddings frame, the long Parquet of ``geocausal embed``) into arrays
  whose rows line up with the data rows, by unit id, never silently by position.
"""

from geocausal.features.align import MISSING_IMAGES, AlignedImages, align_images
from geocausal.features.engineered import chip_statistics, engineered_features, window_means
from geocausal.features.indices import DEFAULT_INDICES, available_indices, spectral_indices
from geocausal.features.roles import PRESETS, ROLES, BandRoles, resolve_band_roles

__all__ = ["DEFAULT_INDICES", "MISSING_IMAGES", "PRESETS", "ROLES", "AlignedImages", "BandRoles",
           "align_images", "available_indices", "chip_statistics", "engineered_features",
           "resolve_band_roles", "spectral_indices", "window_means"]

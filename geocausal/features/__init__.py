"""Image features without learning, and the alignment of image inputs with the data.

:mod:`geocausal.features.align` turns any ``images=`` argument (chips, a chips cache, a
``ChipsResult``, an embeddings frame, the long Parquet of ``geocausal embed``) into arrays whose
rows line up with the data rows, by unit id, never silently by position.
"""

from geocausal.features.align import MISSING_IMAGES, AlignedImages, align_images

__all__ = ["MISSING_IMAGES", "AlignedImages", "align_images"]

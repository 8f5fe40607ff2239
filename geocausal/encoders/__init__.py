"""Image and image-sequence encoders (flax NNX): learn, embed, explain, scale.

- :mod:`~geocausal.encoders.modules`: CNN, ViT, sequence encoder, random features, ImageModel
- :mod:`~geocausal.encoders.train`: pure jitted train step, fit loop, batched inference,
  the opt-in compilation cache (``enable_compile_cache`` or ``GEOCAUSAL_JAX_CACHE=DIR``)
- :mod:`~geocausal.encoders.objectives`: supervised heads and contrastive self-supervision
- :mod:`~geocausal.encoders.augment`: flips, 90-degree rotations, band dropout
- :mod:`~geocausal.encoders.crossfit`: one model per fold, out-of-fold outputs
- :mod:`~geocausal.encoders.embed`: learned features and ``gc.embed`` to Parquet
- :mod:`~geocausal.encoders.salience`: gradients and integrated gradients
- :mod:`~geocausal.encoders.checkpoint`: orbax save/load
- :mod:`~geocausal.encoders.sharding`: data parallelism over devices (and hosts)

Examples
--------
>>> from geocausal.encoders import ModelSpec, build_model
>>> build_model(ModelSpec("vit", in_bands=4, embed_dim=8, dim=8, heads=2)).embed_dim
8
"""

from geocausal.encoders.checkpoint import load_model, save_model
from geocausal.encoders.crossfit import CrossfitResult, crossfit
from geocausal.encoders.embed import embed, learned_features
from geocausal.encoders.modules import (
    CNN,
    ImageModel,
    ModelSpec,
    RandomFeatures,
    SequenceEncoder,
    ViT,
    build_model,
)
from geocausal.encoders.objectives import binary, contrastive, multitask, regression
from geocausal.encoders.salience import gradient_salience, integrated_gradients
from geocausal.encoders.train import (
    TrainConfig,
    TrainResult,
    embed_array,
    enable_compile_cache,
    fit,
    predict,
)

__all__ = [
    "CNN",
    "CrossfitResult",
    "ImageModel",
    "ModelSpec",
    "RandomFeatures",
    "SequenceEncoder",
    "TrainConfig",
    "TrainResult",
    "ViT",
    "binary",
    "build_model",
    "contrastive",
    "crossfit",
    "embed",
    "embed_array",
    "enable_compile_cache",
    "fit",
    "gradient_salience",
    "integrated_gradients",
    "learned_features",
    "load_model",
    "multitask",
    "predict",
    "regression",
    "save_model",
]

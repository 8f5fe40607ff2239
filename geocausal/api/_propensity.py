"""Face helpers shared by ``gc.debias`` and ``gc.ppi``: resolve the propensity role (a column,
an array, or cross-fitted on the controls and image features, or on the chips themselves for
an image learner) and align images to the rows. A chips cache is never loaded whole: its
summary features are computed by blocks of units and an ``ImageLearner`` streams it.

Examples
--------
>>> import numpy as np, pandas as pd
>>> from geocausal.formula import parse_formula
>>> df = pd.DataFrame({"y": np.arange(6.0), "d": [0, 1] * 3, "e": [0.5] * 6})
>>> e, diag = propensity_role(parse_formula("y ~ d", df), df, df.d.to_numpy(), "e", "debias",
...                           None, 2, 0, None)
>>> diag
{'propensity': 'given'}
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from geocausal.designs.debias import check_vector, propensity_scores
from geocausal.errors import DataError
from geocausal.folds import Folds, resolve_folds
from geocausal.vocabulary import DEFAULTS, is_image_learner, resolve_learners


def propensity_role(parsed, data: pd.DataFrame, treat: np.ndarray, propensity: Any,
                    design: str, learners: Any, folds: Any, seed: int, images: Any
                    ) -> tuple[np.ndarray, dict]:
    """Given propensities (a column or array), or cross-fitted ones on controls and images
    (:func:`~geocausal.designs.debias.propensity_scores`, learner slot ``propensity``).
    """
    lrn = resolve_learners(design, learners).get("propensity")
    if propensity is not None:
        if isinstance(propensity, str):
            if propensity not in data.columns:
                raise DataError(f"propensity column '{propensity}' is not in the data")
            propensity = data[propensity].to_numpy(dtype=float)
        return check_vector(propensity, "propensity"), {"propensity": "given"}
    feats = [parsed.control_matrix(data).to_numpy(dtype=float)] if parsed.controls else []
    if lrn is not None and is_image_learner(lrn):  # fed the chips (a cache: by blocks)
        from geocausal.designs.ipw import chips_of, learner_chips, prepare_learner

        chips, mask = chips_of(images)
        if chips is None:
            raise DataError(f"the propensity learner {type(lrn).__name__} is an image learner: "
                            "pass images= as chips or a chips cache (not features)")
        tab = feats[0] if feats else np.zeros((treat.size, 0))
        lrn, x = prepare_learner(lrn, tab, learner_chips(chips, mask), tab)
    else:
        if images is not None:
            from geocausal.features.images import image_features

            feats.append(image_features(images, treat.size, seed=seed))
        x = np.column_stack(feats) if feats else None
    fold_ids = None if x is None else resolve_folds(folds, data, seed=seed, stratify=treat)
    return propensity_scores(treat, x, learner=lrn, fold_ids=fold_ids, clip=DEFAULTS.clip)


def align_rows(images: Any, data: pd.DataFrame, missing_images: str, propensity: Any,
               folds: Any) -> tuple[pd.DataFrame, Any, Any, Any]:
    """Align images to the data and subset the per-row propensity and fold arguments."""
    from geocausal.features.images import align_images

    al = align_images(images, data, missing_images=missing_images, lazy=True)  # by blocks
    if isinstance(folds, Folds) and not isinstance(folds.by, str | tuple | type(None)):
        folds = Folds(folds.k, folds.kind, al.rows(folds.by), folds.block_size, folds.gap)
    return al.data, al.images, al.rows(propensity), al.rows(folds)

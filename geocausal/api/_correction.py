"""Apply an ``outcome_correction=`` (a fitted debiasing corrector) to an outcome vector.

Every design accepts ``outcome_correction=``: a fitted object with ``transform(yhat)`` that
maps ML-predicted outcomes to corrected ones (see :mod:`geocausal.api.debias`). Estimators that
are linear in the outcome (IPW, AIPW with fixed nuisances, DML, FE, BLP) then give the corrected
contrast.

Examples
--------
>>> import numpy as np
>>> apply_correction(None, np.array([1.0, 2.0])).tolist()
[1.0, 2.0]
"""

from __future__ import annotations

import numpy as np

from geocausal.errors import DataError


def apply_correction(correction, y: np.ndarray) -> np.ndarray:
    """Return ``correction.transform(y)`` (or ``y`` when ``correction`` is None)."""
    if correction is None:
        return np.asarray(y, dtype=float)
    if not hasattr(correction, "transform"):
        raise DataError("outcome_correction must be a fitted corrector with a transform() method, "
                        f"got {type(correction).__name__}")
    out = np.asarray(correction.transform(np.asarray(y, dtype=float)), dtype=float)
    if out.shape != np.shape(y):
        raise DataError(f"outcome_correction returned shape {out.shape}, expected {np.shape(y)}")
    return out

"""Small simulated studies shared by several test modules."""

from __future__ import annotations

import numpy as np


def confounded(rng: np.random.Generator, n: int, tau: float = 1.0):
    """``C ~ N(0, 1)``, ``A ~ Bern(sigmoid(C))``, ``Y = tau A + C + N(0, 1)``: ``c, e, a, y``."""
    c = rng.normal(size=n)
    e = 1 / (1 + np.exp(-c))
    a = (rng.random(n) < e).astype(float)
    return c, e, a, tau * a + c + rng.normal(size=n)

"""Monte Carlo designs for distributional RD (Van Dijcke 2025).

DGP1: ``X ~ U(-1, 1)``, unit draws ``Y_ij ~ N(5 + 5X + delta 1{X >= 0}, |1 + X|)``.
DGP2: ``Y_ij ~ N(2X + delta 1{X >= 0}, 1) + 2 Exp(rate clip(1 + X/2, 1/2, 3/2))``.
In both the two side limits at 0 differ by a location shift, so ``tau(q) = delta`` at every q.

Examples
--------
>>> x, Y = simulate("dgp1", n=5, m=3, delta=1.0, seed=0)
>>> x.shape, Y.shape
((5,), (5, 3))
"""

from __future__ import annotations

import numpy as np

from geocausal.errors import DataError


def simulate(dgp: str, n: int, m: int = 50, delta: float = 0.0,
             seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Running variable ``(n,)`` and ``m`` draws per unit ``(n, m)`` from DGP1 or DGP2."""
    rng = np.random.default_rng(seed)
    x = rng.uniform(-1, 1, n)
    d = delta * (x >= 0)
    if dgp == "dgp1":
        Y = rng.normal(5 + 5 * x + d, np.abs(1 + x), size=(m, n)).T
    elif dgp == "dgp2":
        rate = np.clip(1 + 0.5 * x, 0.5, 1.5)
        Y = (rng.normal(2 * x + d, 1.0, size=(m, n)) + 2 * rng.exponential(1 / rate, size=(m, n))).T
    else:
        raise DataError(f"dgp '{dgp}' is not 'dgp1' or 'dgp2'")
    return x, Y

"""RATE half-sample bootstrap (issue 18): the batched path equals the draw-by-draw loop, and
``rates`` equals one ``rate`` call per target."""

from __future__ import annotations

import numpy as np
import pytest

from geocausal.designs.cate_eval import rate, rates
from geocausal.errors import DataError


@pytest.mark.parametrize("n", [5, 101, 4000])
@pytest.mark.parametrize("target", ["AUTOC", "QINI"])
def test_batched_equals_loop(n, target):
    rng = np.random.default_rng(n)
    phi = rng.normal(size=n) + 1.0
    priority = phi + rng.normal(size=n)
    fast = rate(phi, priority, target=target, n_boot=60, seed=4, progress=False)
    # singleton clusters take the draw-by-draw loop with the same half-samples
    loop = rate(phi, priority, target=target, clusters=np.arange(n), n_boot=60, seed=4,
                progress=False)
    assert fast.estimate == loop.estimate
    assert fast.std_error == pytest.approx(loop.std_error, rel=1e-12, abs=0)
    np.testing.assert_allclose(fast.curve["std_error"], loop.curve["std_error"], rtol=1e-12)
    assert np.isfinite(fast.std_error) and fast.std_error > 0


def test_rates_share_half_samples():
    rng = np.random.default_rng(0)
    phi = rng.normal(size=500)
    pr = np.round(phi + rng.normal(size=500), 1)        # ties: the loop path
    both = rates(phi, pr, n_boot=40, seed=2, progress=False)
    for t in ("AUTOC", "QINI"):
        one = rate(phi, pr, target=t, n_boot=40, seed=2, progress=False)
        assert both[t].estimate == one.estimate and both[t].std_error == one.std_error
    with pytest.raises(DataError, match="target must be 'AUTOC' or 'QINI'"):
        rates(phi, pr, targets=("AUTOC", "toc"), n_boot=0)

"""A short end-to-end AIPW estimate with CNN nuisances trained on the chips (GPU or CPU).

A water patch of random size confounds treatment and outcome: units with more water are more
likely treated and have higher outcomes; a tabular covariate ``x`` does too. The true ATE is 2.
The propensity and outcome models are ``ImageLearner`` CNNs fed the chips and ``x``, cross-fitted
over 5 folds inside ``gc.aipw``. Prints the device, the naive and AIPW estimates with their 95%
intervals, the tabular-only AIPW (which cannot see the water) and the wall time of each fit.

    python benchmarks/gpu_end_to_end.py            # 8,000 units, 32 x 32 x 4 chips
    python benchmarks/gpu_end_to_end.py --small    # 2,000 units (a CPU check)
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import pandas as pd

TRUE_ATE = 2.0


def water_world(n: int, size: int = 32, bands: int = 4, seed: int = 0):
    """Chips with a water patch of random side (0 to size/3) and the unit table."""
    rng = np.random.default_rng(seed)
    side = rng.integers(0, size // 3 + 1, n)
    chips = rng.normal(0.3, 0.1, size=(n, size, size, bands)).astype("float32")
    for i in np.flatnonzero(side):
        r, c = rng.integers(0, size - side[i] + 1, 2)
        chips[i, r:r + side[i], c:c + side[i], 0] += 0.4
        chips[i, r:r + side[i], c:c + side[i], -1] -= 0.4
    area = side ** 2 / size ** 2
    conf = (area - area.mean()) / area.std()
    x = rng.normal(size=n)
    e = 1 / (1 + np.exp(-(1.2 * conf + 0.5 * x)))
    d = (rng.random(n) < e).astype(int)
    mu0 = 2.0 * conf + x
    y = TRUE_ATE * d + mu0 + rng.normal(size=n)
    return chips, pd.DataFrame({"y": y, "d": d, "x": x, "true_e": e, "true_mu0": mu0})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--small", action="store_true")
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    import jax

    import geocausal as gc
    from geocausal.nuisance.image_learner import ImageLearner

    n, epochs = (2000, 15) if a.small else (8000, 15)
    chips, df = water_world(n, seed=a.seed)
    dev = jax.devices()[0]
    print(f"device: {dev.device_kind} ({jax.default_backend()}); {n} units, chips "
          f"{chips.shape[1:]}, 5 folds, {epochs} epochs per nuisance model")
    naive = df.y[df.d == 1].mean() - df.y[df.d == 0].mean()
    print(f"truth {TRUE_ATE:.3f}; naive difference in means {naive:.3f}")
    kw = dict(epochs=epochs, batch_size=128, learning_rate=3e-3, widths=(16, 32),
              embed_dim=16, patience=10, seed=a.seed)
    learners = {"propensity": ImageLearner(**kw), "outcome": ImageLearner(**kw)}
    t0 = time.perf_counter()
    tab = gc.aipw("y ~ d + x", df, seed=a.seed, clip=0.01)
    t1 = time.perf_counter()
    est = gc.aipw("y ~ d + x", df, images=chips, learners=learners, seed=a.seed, clip=0.01)
    t2 = time.perf_counter()
    for name, e, dt in (("AIPW, tabular only", tab, t1 - t0),
                        ("AIPW, CNN nuisances on chips", est, t2 - t1)):
        lo, hi = e.conf_int().loc["d"]
        cover = "covers" if lo <= TRUE_ATE <= hi else "misses"
        print(f"{name:30s} {e.params['d']:.3f} (se {e.std_errors['d']:.3f}) "
              f"95% CI [{lo:.3f}, {hi:.3f}] {cover} truth; {dt:.1f} s")


if __name__ == "__main__":
    main()

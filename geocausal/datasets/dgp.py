"""Small building blocks shared by the simulated studies: random fields, chip shares, logits.

Examples
--------
>>> import numpy as np
>>> f = gaussian_field(np.random.default_rng(0), (32, 32), sigma=4.0)
>>> f.shape, abs(float(f.mean())) < 1e-9, round(float(f.std()), 6)
((32, 32), True, 1.0)
>>> window_means(np.ones((10, 10)), np.array([5]), np.array([5]), 4)
array([1.])
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage
from scipy.special import expit


def gaussian_field(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> np.ndarray:
    """A spatially correlated standard-normal field: white noise smoothed by a Gaussian filter.

    The filter wraps around the edges (computed by FFT, so any ``sigma`` costs the same).
    The result is rescaled to mean 0 and standard deviation 1 over the grid.
    """
    spec = np.fft.rfft2(rng.standard_normal(shape))
    z = np.fft.irfft2(ndimage.fourier_gaussian(spec, sigma=max(float(sigma), 0.5), n=shape[1]),
                      s=shape)
    return (z - z.mean()) / z.std()


def window_means(field: np.ndarray, rows: np.ndarray, cols: np.ndarray, size: int) -> np.ndarray:
    """Mean of ``field`` over the ``size`` x ``size`` window centred on each (row, col).

    The window of a unit at pixel (r, c) covers rows ``r - size // 2`` to ``r - size // 2 + size``
    (exclusive), the same convention as a chip centred on the unit's pixel. Windows are clipped
    at the edges of the grid. Uses a summed-area table, so any number of units is cheap.
    """
    f = np.asarray(field, dtype=np.float64)
    sat = np.zeros((f.shape[0] + 1, f.shape[1] + 1))
    sat[1:, 1:] = f.cumsum(0).cumsum(1)
    r0 = np.clip(np.asarray(rows) - size // 2, 0, f.shape[0])
    c0 = np.clip(np.asarray(cols) - size // 2, 0, f.shape[1])
    r1 = np.clip(r0 + size, 0, f.shape[0])
    c1 = np.clip(c0 + size, 0, f.shape[1])
    tot = sat[r1, c1] - sat[r0, c1] - sat[r1, c0] + sat[r0, c0]
    return tot / np.maximum((r1 - r0) * (c1 - c0), 1)


def standardize(v: np.ndarray) -> np.ndarray:
    """(v - mean) / sd, with a zero-variance vector mapped to zeros.

    Examples
    --------
    >>> standardize(np.array([1.0, 3.0]))
    array([-1.,  1.])
    """
    v = np.asarray(v, dtype=np.float64)
    sd = v.std()
    return (v - v.mean()) / sd if sd > 0 else np.zeros_like(v)


def bounded_propensity(logit: np.ndarray, low: float = 0.03, high: float = 0.97) -> np.ndarray:
    """Logistic propensity clipped to ``[low, high]`` so every unit has overlap.

    Examples
    --------
    >>> bounded_propensity(np.array([-10.0, 0.0, 10.0]))
    array([0.03, 0.5 , 0.97])
    """
    return np.clip(expit(np.asarray(logit, dtype=np.float64)), low, high)


def road_mask(rng: np.random.Generator, shape: tuple[int, int], n_roads: int,
              width: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Straight roads across the grid: a boolean mask and each pixel's road index (-1 off-road).

    Each road passes through a uniform random point at a uniform random angle; a pixel is road
    when its distance to the line is below ``width``.
    """
    h, w = shape
    rr, cc = np.mgrid[0:h, 0:w].astype(np.float64)
    idx = np.full(shape, -1, dtype=np.int32)
    for k in range(n_roads):
        r0, c0 = rng.uniform(0, h), rng.uniform(0, w)
        ang = rng.uniform(0, np.pi)
        dist = np.abs((rr - r0) * np.cos(ang) - (cc - c0) * np.sin(ang))
        idx[(dist < width) & (idx < 0)] = k
    return idx >= 0, idx

"""Training objectives: supervised heads and a self-supervised contrastive loss.

An :class:`Objective` turns a model, a batch of normalised images (with targets and tabular
covariates when supervised) and a random key into a scalar loss. Supervised kinds:
``"binary"`` (logistic loss; a propensity head), ``"regression"`` (squared error) and
``"multitask"`` (one output per target column, each binary or continuous, missing targets
skipped). The self-supervised kind ``"contrastive"`` (SimCLR's NT-Xent) embeds two augmented
views of every image and pulls matching views together, so a representation can be learned
from a mosaic without any label and reused by many studies.

Examples
--------
>>> import numpy as np, jax
>>> y = np.array([0.0, 1.0, 1.0])
>>> objective_for(y).kind
'binary'
>>> float(nt_xent(jax.numpy.eye(2), jax.numpy.eye(2), 0.5)) < 1.0
True
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import jax
import jax.numpy as jnp
import numpy as np
import optax

from geocausal.errors import DataError

KINDS = ("binary", "regression", "multitask", "contrastive")


def nt_xent(z1: jax.Array, z2: jax.Array, temperature: float) -> jax.Array:
    """Normalised-temperature cross entropy between two views ``(B, D)`` each."""
    z = jnp.concatenate([z1, z2], axis=0).astype(jnp.float32)
    # optax.safe_norm: a view embedded to exactly 0 (e.g. an image whose valid bands were all
    # dropped) has a finite gradient; jnp.linalg.norm's is 0/0 there
    z = z / optax.safe_norm(z, 1e-8, axis=-1, keepdims=True)
    b = z1.shape[0]
    sim = z @ z.T / temperature
    sim = jnp.where(jnp.eye(2 * b, dtype=bool), -1e9, sim)
    target = jnp.concatenate([jnp.arange(b, 2 * b), jnp.arange(b)])
    return optax.softmax_cross_entropy_with_integer_labels(sim, target).mean()


def _column_losses(out: jax.Array, y: jax.Array, binary: jax.Array) -> jax.Array:
    out = out.astype(jnp.float32)
    present = jnp.isfinite(y)
    y0 = jnp.where(present, y, 0.0)
    bce = optax.sigmoid_binary_cross_entropy(out, y0)
    se = (out - y0) ** 2
    per = jnp.where(binary[None, :], bce, se) * present
    return per.sum(axis=0) / jnp.maximum(present.sum(axis=0), 1)


@dataclass(frozen=True)
class Objective:
    """A loss for :func:`geocausal.encoders.train.fit`.

    ``binary`` holds, per output column, whether the target is binary (logistic loss) or
    continuous (squared error). ``proj_dim`` and ``temperature`` apply to ``"contrastive"``.
    """

    kind: str
    binary: tuple[bool, ...] = ()
    temperature: float = 0.2
    proj_dim: int = 32

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise DataError(f"objective kind={self.kind!r} is not one of {KINDS}")

    @property
    def n_outputs(self) -> int:
        """Number of head outputs: 0 for the contrastive objective, else one per target column."""
        return 0 if self.kind == "contrastive" else len(self.binary)

    @property
    def supervised(self) -> bool:
        """Whether the objective fits targets (every kind but ``"contrastive"``)."""
        return self.kind != "contrastive"

    def loss(self, model, batch: dict, key: jax.Array,
             aug: Callable[[jax.Array, jax.Array], jax.Array], dtype=jnp.float32) -> jax.Array:
        """Scalar loss of ``model`` on ``batch`` (``x`` normalised, ``y``, ``tab``)."""
        x = batch["x"].astype(dtype)
        if self.kind == "contrastive":
            k1, k2 = jax.random.split(key)
            views = jnp.concatenate([aug(k1, x), aug(k2, x)], axis=0)  # one encoder pass
            z = model.projector(model.encode(views))
            return nt_xent(z[: x.shape[0]], z[x.shape[0]:], self.temperature)
        tab = batch.get("tab")
        out = model.predict_head(model.encode(aug(key, x)),
                                 None if tab is None else tab.astype(dtype))
        per = _column_losses(out, batch["y"], jnp.asarray(self.binary))
        return per.mean()


def binary() -> Objective:
    """Logistic loss on one binary target (e.g. treatment: a propensity head)."""
    return Objective("binary", (True,))


def regression(n_outputs: int = 1) -> Objective:
    """Squared error on ``n_outputs`` continuous targets."""
    return Objective("regression", (False,) * n_outputs)


def multitask(binary_columns) -> Objective:
    """One head output per target column; ``binary_columns[j]`` picks its loss."""
    return Objective("multitask", tuple(bool(b) for b in binary_columns))


def contrastive(temperature: float = 0.2, proj_dim: int = 32) -> Objective:
    """Self-supervised NT-Xent on two augmented views of each image."""
    return Objective("contrastive", (), temperature=temperature, proj_dim=proj_dim)


def is_binary(col: np.ndarray) -> bool:
    """True when the finite values of ``col`` are all 0 or 1."""
    v = np.asarray(col, float)
    v = v[np.isfinite(v)]
    return v.size > 0 and bool(np.all((v == 0) | (v == 1)))


def objective_for(y: np.ndarray) -> Objective:
    """Binary, regression or multi-task objective matching the target array."""
    y = np.asarray(y, float)
    if y.ndim == 1:
        return binary() if is_binary(y) else regression()
    if y.ndim != 2:
        raise DataError(f"targets must be 1-D or 2-D, got shape {y.shape}")
    return multitask([is_binary(y[:, j]) for j in range(y.shape[1])])

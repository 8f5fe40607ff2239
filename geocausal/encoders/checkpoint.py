"""Save and restore models with orbax.

A checkpoint is a folder holding ``spec.json`` (the :class:`~geocausal.encoders.modules.ModelSpec`)
and ``state/`` (every variable of the model: parameters, normalisation statistics, frozen
weights) written by ``orbax.checkpoint.StandardCheckpointer``. Loading rebuilds the model
abstractly from the spec and restores the state into it, so a reloaded model gives identical
embeddings.

Examples
--------
>>> import tempfile, numpy as np
>>> from geocausal.encoders.modules import ModelSpec, build_model
>>> m = build_model(ModelSpec("cnn", in_bands=2, embed_dim=4, widths=(4,)), seed=1)
>>> d = tempfile.mkdtemp()
>>> m2 = load_model(save_model(m, d + "/ckpt"))
>>> x = np.ones((1, 8, 8, 2), "float32")
>>> bool(np.array_equal(m.embed(x), m2.embed(x)))
True
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import orbax.checkpoint as ocp
from flax import nnx

from geocausal.encoders.modules import ImageModel, ModelSpec, build_model
from geocausal.errors import DataError


def save_model(model: ImageModel, path: str | Path) -> Path:
    """Write ``model`` to the folder ``path`` (replaced if it exists); return the path."""
    path = Path(path).absolute()
    path.mkdir(parents=True, exist_ok=True)
    (path / "spec.json").write_text(json.dumps(model.spec.to_dict(), indent=2))
    state = nnx.to_pure_dict(nnx.state(model))
    with ocp.StandardCheckpointer() as ckpt:
        ckpt.save(path / "state", state, force=True)
        ckpt.wait_until_finished()
    return path


def load_model(path: str | Path) -> ImageModel:
    """Rebuild the model saved by :func:`save_model`."""
    path = Path(path).absolute()
    if not (path / "spec.json").exists():
        raise DataError(f"{path} is not a model checkpoint (no spec.json); "
                        "write one with save_model")
    spec = ModelSpec.from_dict(json.loads((path / "spec.json").read_text()))
    abstract = nnx.eval_shape(lambda: build_model(spec))
    graphdef, state = nnx.split(abstract)
    target = jax.tree.map(lambda a: jax.ShapeDtypeStruct(a.shape, a.dtype),
                          nnx.to_pure_dict(state))
    with ocp.StandardCheckpointer() as ckpt:
        restored = ckpt.restore(path / "state", target)
    nnx.replace_by_pure_dict(state, restored)
    return nnx.merge(graphdef, state)

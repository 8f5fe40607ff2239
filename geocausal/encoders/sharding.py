"""Data-parallel training over devices with ``jax.sharding``.

A one-axis mesh named ``"data"`` spans the devices; every batch is split along its first axis
across the mesh, while parameters and optimiser state are replicated. The jitted train step is
unchanged: XLA inserts the gradient all-reduce. Batch sizes are rounded down to a multiple of
the device count by :func:`geocausal.encoders.train.fit`.

On one machine nothing is needed: ``fit`` uses every local device (GPUs, or CPU "devices"
created with ``XLA_FLAGS=--xla_force_host_platform_device_count=N`` for testing).

Several machines (multi-host)
-----------------------------
Start the same script on every host and call, before any other JAX work::

    import jax
    jax.distributed.initialize(coordinator_address="host0:1234",
                               num_processes=N, process_id=i)   # auto-detected on SLURM/TPU

``jax.devices()`` then lists the devices of all hosts, :func:`data_mesh` builds the global mesh
and :func:`shard_batch` assembles the global batch from each host's local slice with
``jax.make_array_from_process_local_data`` (each host passes the rows it loaded itself, e.g.
its share of the chips cache). Checkpoints written with orbax from every process are
coordinated by orbax itself.

Examples
--------
>>> import numpy as np
>>> mesh = data_mesh()
>>> batch = shard_batch({"x": np.zeros((len(mesh.devices.ravel()) * 2, 3), "float32")}, mesh)
>>> batch["x"].shape[1]
3
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

AXIS = "data"


def data_mesh(devices: list | None = None) -> Mesh:
    """A one-axis mesh ``("data",)`` over ``devices`` (default: all devices)."""
    devs = jax.devices() if devices is None else list(devices)
    return Mesh(np.asarray(devs), (AXIS,))


def batch_sharding(mesh: Mesh) -> NamedSharding:
    """Split the leading (batch) axis across the mesh."""
    return NamedSharding(mesh, PartitionSpec(AXIS))


def replicated(mesh: Mesh) -> NamedSharding:
    """Full copy on every device."""
    return NamedSharding(mesh, PartitionSpec())


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Place a pytree of host arrays with their batch axis sharded over ``mesh``.

    With several processes each passes its local rows and gets the global array.
    """
    sh = batch_sharding(mesh)
    if jax.process_count() > 1:
        return jax.tree.map(lambda a: jax.make_array_from_process_local_data(sh, a), batch)
    return jax.device_put(batch, sh)


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place a pytree (parameters, optimiser state) fully on every device of ``mesh``."""
    return jax.device_put(tree, replicated(mesh))

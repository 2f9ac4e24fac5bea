"""Kept so that ``from jaxrl.distributed.mesh import ...`` still works: the mesh
helpers and the axis name live in :mod:`jaxrl.mesh`, below ``agents/``,
``run/`` and ``distributed/`` alike, so none of them imports another for them."""

from jaxrl.mesh import (
    DATA_AXIS,
    PyTree,
    batch_sharded,
    check_divisible,
    make_mesh,
    replicate,
    replicated,
    shard_batch,
)

__all__ = [
    "DATA_AXIS",
    "PyTree",
    "batch_sharded",
    "check_divisible",
    "make_mesh",
    "replicate",
    "replicated",
    "shard_batch",
]

"""Scaling out: device meshes, data-parallel learner steps, multi-host start-up
and the asynchronous actor/learner runtime (IMPALA)."""

from jaxrl.distributed.mesh import (
    DATA_AXIS,
    batch_sharded,
    check_divisible,
    make_mesh,
    replicate,
    replicated,
    shard_batch,
)

__all__ = [
    "DATA_AXIS",
    "batch_sharded",
    "check_divisible",
    "make_mesh",
    "replicate",
    "replicated",
    "shard_batch",
]

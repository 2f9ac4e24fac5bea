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
from jaxrl.distributed.data_parallel import data_parallel

__all__ = [
    "DATA_AXIS",
    "batch_sharded",
    "check_divisible",
    "data_parallel",
    "make_mesh",
    "replicate",
    "replicated",
    "shard_batch",
]

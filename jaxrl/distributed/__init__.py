"""Scaling out: data-parallel learner steps, multi-host start-up and the
asynchronous actor/learner runtime (IMPALA). The mesh helpers re-exported here
live in :mod:`jaxrl.mesh`."""

from jaxrl.mesh import (
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

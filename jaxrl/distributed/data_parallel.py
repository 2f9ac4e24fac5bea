"""Data-parallel learners: any on-policy agent over a device mesh (DPPO for PPO).

API: one wrapper, ``data_parallel(agent, mesh) -> agent``::

    agent = data_parallel(ppo.make(env, env_params, ppo.Config(num_envs=64)), make_mesh(4))
    state = jax.jit(agent.init)(key)                 # env batch split over 4 devices
    state, metrics = jax.jit(agent.step)(state)      # one data-parallel PPO iteration

Why a wrapper and not ``ppo.Config(devices=N)``: the number of devices is a
fact about where a run executes, not about the algorithm, so it stays out of
the config (a run's config.json means the same on a laptop and on a pod), and
one wrapper serves every agent whose state keeps its environments in
``env_state`` / ``obs`` (PPO, IMPALA, A2C-style learners). The wrapped agent
is still an :class:`~jaxrl.agents.base.Agent`: ``jaxrl.run.train`` vmaps,
chunks, checkpoints and evaluates it unchanged.

How it works. There is no second implementation of the update: the wrapped
``init`` and ``step`` pin shardings onto the single-device code with
``jax.lax.with_sharding_constraint`` and XLA's SPMD partitioner does the rest.

- Per-environment leaves (every leaf under ``env_state`` and ``obs`` whose
  axis 0 (1 under a seeds vmap) is ``num_envs``) are split over the data
  axis (``jaxrl.mesh.DATA_AXIS``): each device steps its share of the
  environments, so the rollout ``[T, B, ...]`` is born sharded along ``B``.
- Everything else (parameters, optimiser state, rng, counters, metrics) is
  replicated.
- ``step`` traces the agent's step under ``jax.sharding.use_abstract_mesh``,
  which lets the agent pin its minibatches to the data axis too (PPO does
  this with ``jaxrl.mesh.split_over_data_axis``; without a mesh that pin is a
  no-op). Every loss is a mean over the global minibatch, so the gradient of
  the sharded computation is a per-device partial sum followed by one
  all-reduce that XLA inserts: each device applies the same averaged update
  and the parameters stay identical.

Because the partitioned program computes the same global function, DPPO on
N devices gives the parameters of single-device PPO with the same global
batch and seed, up to float rounding of the reductions' order (the tests check
this). The price of that exactness is the minibatch shuffle: it permutes the
global batch, so each epoch moves the batch between devices once (an
all-gather of a few hundred kB for typical PPO batches). Gradients are the only
other communication.

Multi-host: the same wrapper over ``make_mesh()`` (every device of every
process) after :func:`jaxrl.distributed.multihost.initialize`.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
from jax.sharding import Mesh

from jaxrl.agents.base import Agent
from jaxrl.mesh import (
    ENV_FIELDS,
    PyTree,
    check_divisible,
    make_mesh,
    replicated,
    state_shardings,
)

__all__ = ["ENV_FIELDS", "data_parallel", "state_shardings", "validate"]


def validate(agent: Agent, mesh: Mesh) -> None:
    """Raise ValueError (naming the config field) when ``agent`` cannot split over ``mesh``.

    The environment batch, and each minibatch where the agent has them, must
    divide evenly over the devices so that every device does the same work.
    """
    config = agent.config
    prefix = f"{agent.name}.Config."
    num_envs = getattr(config, "num_envs", None)
    if num_envs is None:
        raise ValueError(
            f"{agent.name} has no num_envs in its config: data_parallel splits the "
            "environment batch, so it needs an agent with vmapped environments"
        )
    check_divisible(prefix + "num_envs", num_envs, mesh)
    num_minibatches = getattr(config, "num_minibatches", None)
    rollout_len = getattr(config, "rollout_len", None)
    if num_minibatches and getattr(config, "core", "none") != "none":
        # A recurrent policy's minibatches are whole environments' rollouts.
        envs_per_minibatch = num_envs // num_minibatches
        n = mesh.devices.size
        if envs_per_minibatch % n:
            raise ValueError(
                f"{prefix}num_minibatches={num_minibatches} is invalid: with core="
                f"{config.core!r} each minibatch holds num_envs / num_minibatches = "
                f"{envs_per_minibatch} environments, expected a multiple of the number of "
                f"devices ({n}); use fewer minibatches or more envs")
    elif num_minibatches and rollout_len:
        minibatch = num_envs * rollout_len // num_minibatches
        n = mesh.devices.size
        if minibatch % n:
            raise ValueError(
                f"{prefix}num_minibatches={num_minibatches} is invalid: each minibatch holds "
                f"num_envs * rollout_len / num_minibatches = {minibatch} samples, expected a "
                f"multiple of the number of devices ({n}); use fewer minibatches or more envs"
            )


def _constrain(state: PyTree, mesh: Mesh, num_envs: int) -> PyTree:
    # Inside jaxrl.run.train the state is vmapped over seeds: the batching rule
    # of with_sharding_constraint adds that axis unsharded, so batch_axis is 0
    # for the per-seed values seen here.
    return jax.lax.with_sharding_constraint(state, state_shardings(state, mesh, num_envs))


def data_parallel(agent: Agent, mesh: Mesh | int | None = None) -> Agent:
    """``agent`` with its environments split over ``mesh`` and its update all-reduced.

    Args:
      agent: an agent whose state has ``env_state``/``obs`` per environment
        (``ppo``, ``impala``).
      mesh: a one-axis (``DATA_AXIS``) mesh from :func:`make_mesh`, or what
        ``make_mesh`` takes: an int (the first N local devices) or None (all devices of all
        processes).

    Raises ValueError, naming the field, when ``num_envs`` (or PPO's minibatch)
    does not divide over the devices.
    """
    if not isinstance(mesh, Mesh):
        mesh = make_mesh(mesh)
    validate(agent, mesh)
    num_envs = agent.config.num_envs
    whole = replicated(mesh)

    def init(key: jax.Array, hparams: Any = None):
        return _constrain(agent.init(key, hparams), mesh, num_envs)

    def step(state):
        with jax.sharding.use_abstract_mesh(mesh.abstract_mesh):
            state, metrics = agent.step(_constrain(state, mesh, num_envs))
            metrics = jax.lax.with_sharding_constraint(
                metrics, jax.tree.map(lambda _: whole, metrics)
            )
            return _constrain(state, mesh, num_envs), metrics

    return dataclasses.replace(agent, init=init, step=step, mesh=mesh)

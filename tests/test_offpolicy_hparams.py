"""Prioritised replay's hyperparameters in the off-policy agents' state: α
changed mid-run (as population-based training changes it) takes effect at the
next update, and β follows its schedule. That every agent's learning rates are
read at every step is the contract's (test_agent_contract.py)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.agents import ddpg
from jaxrl.replay import prioritized



def tiny_prioritized_ddpg():
    """A tiny DDPG that updates on its first step (no warm-up, batch = one step's data)."""
    return ddpg.make(*envs.make("Probe-ContinuousAction-v0"), ddpg.Config(
        num_envs=8, batch_size=8, buffer_size=64, warmup_steps=0, total_steps=64,
        actor_learning_rate=1e-2, critic_learning_rate=1e-2, prioritized=True, hidden_sizes=(8,)))


# --------------------------------------------------------------------------- prioritised replay


@pytest.fixture(scope="module")
def ddpg_prioritized():
    """The tiny prioritised DDPG, and a jitted ``steps(state, n)``."""
    agent = tiny_prioritized_ddpg()
    steps = jax.jit(lambda s, n: jax.lax.scan(lambda s, _: agent.step(s), s, length=n), static_argnums=1)
    return agent, steps


def test_priority_alpha_changed_mid_run_rebuilds_the_trees(ddpg_prioritized):
    agent, steps = ddpg_prioritized
    state, _ = steps(agent.init(jax.random.PRNGKey(1)), 4)
    assert float(state.buffer.alpha) == pytest.approx(0.6)
    state, _ = steps(state.replace(hparams=state.hparams.replace(priority_alpha=jnp.float32(1.0))), 1)
    buffer = state.buffer
    assert float(buffer.alpha) == 1.0
    size = int(buffer.size)
    leaves = np.asarray(prioritized.leaf_priorities(buffer))[:size]
    # α = 1: sampling probabilities proportional to the raw priorities themselves.
    np.testing.assert_allclose(leaves, np.asarray(buffer.priorities)[:size], rtol=1e-6)
    np.testing.assert_allclose(float(prioritized.total_priority(buffer)), leaves.sum(), rtol=1e-5)
    assert np.unique(leaves).size > 1  # learned priorities, not the initial ones


def test_priority_beta_rises_linearly_to_one_over_total_steps(ddpg_prioritized):
    agent, steps = ddpg_prioritized
    _, metrics = steps(agent.init(jax.random.PRNGKey(2)), 12)
    beta0, total = agent.config.priority_beta, agent.config.total_steps
    env_steps = agent.config.num_envs * np.arange(1, 13)  # after each step's collection
    expected = beta0 + (1 - beta0) * np.minimum(env_steps / total, 1.0)
    np.testing.assert_allclose(np.asarray(metrics["priority_beta"]), expected, rtol=1e-6)
    assert float(metrics["priority_beta"][-1]) == 1.0  # and stays there past total_steps


def test_priority_beta_stays_constant_when_annealing_is_off():
    import dataclasses

    agent = tiny_prioritized_ddpg()
    agent = ddpg.make(agent.env, agent.env_params,
                      dataclasses.replace(agent.config, priority_beta_anneal=False))
    _, metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: agent.step(s), agent.init(k), length=10))(jax.random.PRNGKey(3))
    np.testing.assert_allclose(np.asarray(metrics["priority_beta"]), agent.config.priority_beta)

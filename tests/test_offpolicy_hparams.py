"""Hyperparameters of the off-policy agents that change in the state mid-run
(as population-based training changes them) take effect at the next update:
learning rates (DQN, h-DQN, DDPG) and prioritised replay's α; and
prioritised replay's β schedule."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.flatten_util import ravel_pytree

from jaxrl import envs
from jaxrl.agents import ddpg, dqn, hdqn
from jaxrl.replay import prioritized

# Tiny agents that update on their first step (no warm-up, batch = one step's data).
AGENTS = {
    "dqn": lambda: dqn.make(*envs.make("Probe-ActionDependentReward-v0"), dqn.Config(
        num_envs=4, rollout_len=2, batch_size=8, buffer_size=64, learning_starts=0,
        learning_rate=1e-2, hidden_sizes=(8,))),
    "hdqn": lambda: hdqn.make(*envs.make("DecisionProcess-v0"), hdqn.Config(
        num_envs=8, batch_size=8, controller_buffer_size=64, meta_buffer_size=64,
        learning_starts=0, max_option_steps=1, learning_rate=1e-2, hidden_sizes=(8,))),
    "ddpg": lambda: ddpg.make(*envs.make("Probe-ContinuousAction-v0"), ddpg.Config(
        num_envs=8, batch_size=8, buffer_size=64, warmup_steps=0, total_steps=64,
        actor_learning_rate=1e-2, critic_learning_rate=1e-2, prioritized=True, hidden_sizes=(8,))),
}

# Which learning-rate field moves which parameters.
LEARNING_RATES = {
    "dqn": {"learning_rate": [lambda s: s.params]},
    "hdqn": {"learning_rate": [lambda s: s.meta.params, lambda s: s.controller.params]},
    "ddpg": {"actor_learning_rate": [lambda s: s.actor_params],
             "critic_learning_rate": [lambda s: s.critic_params]},
}


@pytest.fixture(scope="module", params=list(AGENTS))
def second_steps(request):
    """One step from init, then a second step once per lane of learning rates:
    all as configured, all 0, and each field in turn doubled."""
    name = request.param
    agent = AGENTS[name]()
    fields = list(LEARNING_RATES[name])
    base = agent.default_hparams()
    factors = [{f: 1.0 for f in fields}, {f: 0.0 for f in fields}]
    factors += [{**factors[0], f: 2.0} for f in fields]
    lanes = jax.tree.map(lambda *x: jnp.stack(x), *[
        base.replace(**{f: getattr(base, f) * m for f, m in lane.items()}) for lane in factors
    ])

    def run(key, lanes):
        first, _ = agent.step(agent.init(key))
        second = jax.vmap(lambda hp: agent.step(first.replace(hparams=hp))[0])(lanes)
        return first, second

    first, second = jax.jit(run)(jax.random.PRNGKey(0), lanes)
    return name, fields, first, second


def param_change(getter, first, second, lane):
    before = ravel_pytree(getter(first))[0]
    after = ravel_pytree(getter(jax.tree.map(lambda x: x[lane], second)))[0]
    return np.asarray(after, np.float64) - np.asarray(before, np.float64)


def test_a_learning_rate_changed_mid_run_scales_the_next_update(second_steps):
    name, fields, first, second = second_steps
    for field in fields:
        for getter in LEARNING_RATES[name][field]:
            as_configured = param_change(getter, first, second, 0)
            assert np.abs(as_configured).max() > 0, (name, field)
            # Adam's step is independent of the rate's scale: 0 freezes, 2× doubles.
            np.testing.assert_array_equal(param_change(getter, first, second, 1), 0.0)
            doubled = param_change(getter, first, second, 2 + fields.index(field))
            np.testing.assert_allclose(doubled, 2 * as_configured, rtol=1e-3, atol=1e-7)


# --------------------------------------------------------------------------- prioritised replay


@pytest.fixture(scope="module")
def ddpg_prioritized():
    """The tiny prioritised DDPG, and a jitted ``steps(state, n)``."""
    agent = AGENTS["ddpg"]()
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

    agent = AGENTS["ddpg"]()
    agent = ddpg.make(agent.env, agent.env_params,
                      dataclasses.replace(agent.config, priority_beta_anneal=False))
    _, metrics = jax.jit(lambda k: jax.lax.scan(
        lambda s, _: agent.step(s), agent.init(k), length=10))(jax.random.PRNGKey(3))
    np.testing.assert_allclose(np.asarray(metrics["priority_beta"]), agent.config.priority_beta)

"""The agent contract on the host side, for every agent in the registry:
``act`` returns one action of the env's shape, ``evaluate`` returns finite
episode returns, and a run stopped at a chunk boundary (as SIGTERM does)
resumes to exactly the state of an uninterrupted one. The training-program
half of the contract is test_agent_contract.py."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import tiny_agents

from jaxrl import envs, run
from jaxrl.run import preemption


@pytest.fixture(scope="module", params=tiny_agents.CONTRACT)
def agent(request):
    return tiny_agents.make(request.param)


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_act_returns_one_action_of_the_env_shape(agent):
    state = agent.init(jax.random.PRNGKey(0))
    obs_shape = envs.observation_shape(agent.env, agent.env_params)
    obs = jnp.zeros(obs_shape, jnp.float32)
    expected = envs.action_shape(agent.env, agent.env_params)
    params = agent.policy_params(state)
    act = jax.jit(agent.act, static_argnames="deterministic")
    # A recurrent policy takes its state and returns it beside the action.
    recurrent = agent.initial_carry is not None
    carry = dict(carry=agent.initial_carry()) if recurrent else {}
    for deterministic in (False, True):
        action = act(params, obs, jax.random.PRNGKey(1), deterministic=deterministic, **carry)
        if recurrent:
            action, after = action
            assert jax.tree.map(jnp.shape, after) == jax.tree.map(jnp.shape, carry["carry"])
        assert action.shape == expected, (deterministic, action.shape)
    carries = dict(carry=agent.initial_carry((3,))) if recurrent else {}
    batch = jax.vmap(lambda o, k, c: agent.act(params, o, k, **c))(
        jnp.zeros((3, *obs_shape)), jax.random.split(jax.random.PRNGKey(2), 3), carries)
    batch = batch[0] if recurrent else batch
    assert batch.shape == (3, *expected)


def test_a_stopped_run_resumes_to_the_uninterrupted_state(agent, tmp_path):
    """Stopped at its first chunk boundary (as SIGTERM does) and resumed, a run
    ends bit-identical to one that was never interrupted, metrics rows included."""
    key = jax.random.PRNGKey(3)
    total = 2 * agent.env_steps_per_step
    common = dict(chunk_iterations=1, eval_episodes=0, progress=False, checkpoint_every_seconds=0)
    whole = run.train(agent, key, total, out_dir=tmp_path / "whole", **common)
    preemption.request_stop("a test")
    with pytest.raises(preemption.Preempted):
        run.train(agent, key, total, out_dir=tmp_path / "stopped", **common)
    resumed = run.train(agent, key, total, out_dir=tmp_path / "stopped", resume=True, **common)
    assert resumed.summary["resumed_from_iteration"] == 1
    assert not _differs(whole.state, resumed.state)
    assert (tmp_path / "whole" / "metrics.csv").read_bytes() == (
        tmp_path / "stopped" / "metrics.csv"
    ).read_bytes()


def test_evaluate_returns_finite_episode_returns(agent):
    state = agent.init(jax.random.PRNGKey(0))
    returns = jax.jit(agent.evaluate, static_argnums=2)(state, jax.random.PRNGKey(1), 2)
    assert returns.shape == (2,) and np.all(np.isfinite(returns))

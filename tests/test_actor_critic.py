"""What PPO and IMPALA share through :mod:`jaxrl.agents.actor_critic`,
checked on both: the best action of a bandit, the optimum of a continuous
action, and the shared network built from a config (the learning rate as a
swept leaf is checked for every agent in test_agent_contract.py). The helpers
here (``train``, ``probe_agent``, ``value_of``) serve test_ppo.py and
test_impala.py."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs
from jaxrl.agents import actor_critic, impala, ppo

MODULES = {"ppo": ppo, "impala": impala}

PROBE_CONFIGS = {
    "ppo": ppo.Config(num_envs=8, rollout_len=8, num_epochs=4, num_minibatches=2,
                      learning_rate=3e-3, anneal_lr=False, ent_coef=0.0, hidden_sizes=(32,),
                      gamma=0.9),
    "impala": impala.Config(num_envs=16, rollout_len=4, policy_lag=2, learning_rate=3e-3,
                            anneal_lr=False, entropy_cost=0.0, hidden_sizes=(32,), gamma=0.9),
}


def train(agent, key, iterations, hparams=None):
    """A whole run as one XLA program."""

    def run(key, hparams):
        state = agent.init(key, hparams)
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=iterations)

    return jax.jit(run)(key, hparams)


def probe_agent(algo, env_id, **overrides):
    """``algo`` ("ppo" or "impala") on a probe env with its probe config."""
    env, env_params = envs.make(env_id)
    config = dataclasses.replace(PROBE_CONFIGS[algo], **overrides)
    return MODULES[algo].make(env, env_params, config)


def value_of(agent, state, observations):
    """V(observations) of the agent's current network."""
    ac = actor_critic.build(agent.env, agent.env_params, agent.config)
    params = agent.policy_params(state)["network"]
    return actor_critic.values(ac, params, jnp.asarray(observations, jnp.float32))


# ---------------------------------------------------------------- probes

@pytest.mark.parametrize("algo, overrides, iterations",
                         [("ppo", {}, 60), ("impala", {"policy_lag": 4}, 300)])
def test_action_dependent_reward_probe_learns_best_action(algo, overrides, iterations):
    agent = probe_agent(algo, "Probe-ActionDependentReward-v0", **overrides)
    state, _ = train(agent, jax.random.PRNGKey(1), iterations)
    params = agent.policy_params(state)
    greedy = agent.act(params, jnp.zeros((1,)), jax.random.PRNGKey(0), deterministic=True)
    assert int(greedy) == 1
    samples = jax.vmap(lambda k: agent.act(params, jnp.zeros((1,)), k))(
        jax.random.split(jax.random.PRNGKey(2), 200)
    )
    assert float(jnp.mean(samples == 1)) > 0.9


@pytest.mark.parametrize("algo, iterations", [("ppo", 150), ("impala", 800)])
def test_continuous_action_probe_finds_optimum(algo, iterations):
    agent = probe_agent(algo, "Probe-ContinuousAction-v0")
    state, _ = train(agent, jax.random.PRNGKey(3), iterations)
    mean_action = agent.act(
        agent.policy_params(state), jnp.zeros((1,)), jax.random.PRNGKey(0), deterministic=True
    )
    np.testing.assert_allclose(mean_action, [0.5], atol=0.1)


# ---------------------------------------------------------------- the builder

def test_builder_picks_the_torso_and_the_distribution():
    cartpole, pendulum = envs.make("CartPole-v1"), envs.make("Pendulum-v1")
    discrete = actor_critic.build(*cartpole, PROBE_CONFIGS["ppo"])
    continuous = actor_critic.build(*pendulum, PROBE_CONFIGS["impala"])
    assert discrete.discrete and discrete.action_dim == 2 and discrete.network.torso == "mlp"
    assert not continuous.discrete and continuous.action_dim == 1
    assert isinstance(continuous.act_env, envs.RescaleAction)
    assert actor_critic.resolve_torso("auto", (10, 10, 4)) == "minatar_cnn"
    params = actor_critic.init_params(discrete, jax.random.PRNGKey(0))
    obs = jnp.zeros((5, 4))
    dist = actor_critic.policy_distribution(discrete, params, obs)
    assert dist.mode().shape == (5,) and actor_critic.values(discrete, params, obs).shape == (5,)
    action = actor_critic.network_action(discrete, params, obs, jax.random.PRNGKey(1))
    assert action.shape == (5,)

"""What PPO and IMPALA share through :mod:`jaxrl.agents.actor_critic`,
checked on both: the best action of a bandit, the optimum of a continuous
action, a learning-rate sweep as one vmap, and the shared network built from
a config. The helpers here (``train``, ``probe_agent``, ``value_of``) serve
test_ppo.py and test_impala.py."""

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


# ---------------------------------------------------------------- sweeps

SWEEPS = {
    # config, iterations, other values of other hyperparameters
    "ppo": (ppo.Config(num_envs=4, rollout_len=16, num_minibatches=2), 3,
            dict(learning_rate=[3e-4, 3e-3, 3e-2], clip_eps=[0.1, 0.2, 0.3],
                 gamma=[0.9, 0.95, 0.99], ent_coef=[0.0, 0.01, 0.1])),
    "impala": (impala.Config(num_envs=4, rollout_len=8, policy_lag=2, hidden_sizes=(16,)), 4,
               dict(clip_rho_threshold=[0.5, 1.0, 2.0], gamma=[0.9, 0.95, 0.99],
                    entropy_cost=[0.0, 0.01, 0.1])),
}


@pytest.mark.parametrize("algo", sorted(SWEEPS))
def test_learning_rate_sweep_is_one_vmap(algo):
    config, iterations, other_values = SWEEPS[algo]
    env, env_params = envs.make("CartPole-v1")
    agent = MODULES[algo].make(env, env_params, config)

    @jax.jit
    def run(keys, hparams):
        def one(key, hp):
            return jax.lax.scan(lambda s, _: agent.step(s), agent.init(key, hp), length=iterations)

        return jax.vmap(one)(keys, hparams)

    base = agent.default_hparams()
    hp = jax.tree.map(lambda x: jnp.full((3,), x), base)
    hp = hp.replace(learning_rate=jnp.array([0.0, 1e-3, 1e-2]))
    keys = jnp.stack([jax.random.PRNGKey(7)] * 3)
    state, _ = run(keys, hp)
    init_params = jax.vmap(agent.init)(keys, hp).params
    moved = [
        max(float(jnp.max(jnp.abs(a[i] - b[i])))
            for a, b in zip(jax.tree.leaves(state.params), jax.tree.leaves(init_params)))
        for i in range(3)
    ]
    assert moved[0] == 0.0, "learning_rate=0 must leave the parameters unchanged"
    assert 0.0 < moved[1] < moved[2]
    # Other values of the same hyperparameters reuse the compiled program.
    compiled_before = run._cache_size()
    run(keys, hp.replace(**{k: jnp.array(v) for k, v in other_values.items()}))
    assert run._cache_size() == compiled_before


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

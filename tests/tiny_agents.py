"""Every registered agent in its smallest useful configuration, for the
contract tests (test_agent_contract*.py). A new agent adds its line here;
:data:`VARIANTS` adds configurations whose state or acting differ (recurrent
cores), which the contract covers too."""

from __future__ import annotations

from jaxrl import agents, envs

SMALL_NET = dict(hidden_sizes=(8,))
REPLAY = dict(num_envs=2, batch_size=8, **SMALL_NET)

# name -> (env id, tiny Config values).
TINY = {
    "ppo": ("CartPole-v1", dict(num_envs=2, rollout_len=8, num_minibatches=2, num_epochs=1,
                                total_steps=64, **SMALL_NET)),
    "a2c": ("CartPole-v1", dict(num_envs=2, rollout_len=4, total_steps=64, **SMALL_NET)),
    "impala": ("CartPole-v1", dict(num_envs=2, rollout_len=4, policy_lag=1, total_steps=64,
                                   **SMALL_NET)),
    "dqn": ("CartPole-v1", dict(REPLAY, rollout_len=2, buffer_size=64, learning_starts=8,
                                total_steps=64)),
    "hdqn": ("DecisionProcess-v0", dict(REPLAY, rollout_len=2, controller_buffer_size=64,
                                        meta_buffer_size=64, learning_starts=8, total_steps=64)),
    "ddpg": ("Pendulum-v1", dict(REPLAY, buffer_size=64, warmup_steps=8, total_steps=64)),
    # N = 2 and a batch of 4, so that the critic and actor update within the
    # contract's few iterations.
    "d4pg": ("Pendulum-v1", dict(REPLAY, batch_size=4, buffer_size=64, warmup_steps=8,
                                 total_steps=64, n_step=2, num_atoms=11)),
    "rm-ppo": ("CartPole-v1", dict(num_envs=2, rollout_len=8, num_minibatches=2, num_epochs=1,
                                   total_steps=64, segment_len=4, label_budget=8,
                                   queries_per_iteration=2, num_candidates=4,
                                   reward_batch_size=4, reward_hidden_sizes=(8,),
                                   ensemble_size=2, **SMALL_NET)),
}


# variant name -> (agent name, what it changes in the agent's tiny config).
# (IMPALA's recurrent state is the same kind of leaf in the same place; its
# replay is checked in test_recurrent.py, which is cheaper than a second
# contract run.)
VARIANTS = {
    "ppo-gru": ("ppo", dict(core="gru", core_size=8)),
}

# What the contract tests run: every agent, then every variant.
CONTRACT = sorted(TINY) + sorted(VARIANTS)


def make(name: str) -> agents.Agent:
    """Agent (or variant) ``name`` on its env with its tiny config."""
    name, changes = VARIANTS.get(name, (name, {}))
    env_id, values = TINY[name]
    values = {**values, **changes}
    module = agents.get(name)
    env, env_params = envs.make(env_id)
    return module.make(env, env_params, module.Config(**values))

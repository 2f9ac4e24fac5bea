"""The agent contract, checked once for every algorithm in the registry.

Every agent is ``init``/``step``/``act``/``evaluate`` over one pytree state:
seeds and numeric hyperparameters vmap together in one compiled program,
the same seed repeats bit for bit and different seeds differ, metrics are
flat float32 scalars, ``act`` returns one action of the env's shape, step
counters do not wrap at 2^31, and a run stopped at a chunk boundary resumes
to exactly the state of an uninterrupted one. Agent-specific behaviour
(probes with known values, the algorithms' own rules) lives in each agent's
test module; the time-limit probe runs every agent in test_time_limit_probe.py.

Each agent compiles one small training program, shared by the tests below.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import agents, envs, run
from jaxrl.ops.counters import StepCounter
from jaxrl.run import preemption

SMALL_NET = dict(hidden_sizes=(8,))
REPLAY = dict(num_envs=2, batch_size=8, **SMALL_NET)

# name -> (env id, tiny Config values). The registry test below makes a new
# agent add its line here.
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
    "d4pg": ("Pendulum-v1", dict(REPLAY, buffer_size=64, warmup_steps=8, total_steps=64,
                                 num_atoms=11)),
    "rm-ppo": ("CartPole-v1", dict(num_envs=2, rollout_len=8, num_minibatches=2, num_epochs=1,
                                   total_steps=64, segment_len=4, label_budget=8,
                                   queries_per_iteration=2, num_candidates=4,
                                   reward_batch_size=4, reward_hidden_sizes=(8,),
                                   ensemble_size=2, **SMALL_NET)),
}
ITERATIONS = 4


def test_every_registered_agent_has_a_tiny_config():
    assert set(TINY) == set(agents.REGISTRY)


@dataclasses.dataclass(frozen=True)
class Contract:
    name: str
    agent: agents.Agent
    train: object  # jitted (keys [n], hparams [n]) -> (states, metrics [n, ITERATIONS])


def _train_fn(agent):
    def one(key, hparams):
        state = agent.init(key, hparams)
        return jax.lax.scan(lambda s, _: agent.step(s), state, length=ITERATIONS)

    return jax.jit(jax.vmap(one))


@pytest.fixture(scope="module", params=sorted(TINY))
def contract(request):
    name = request.param
    env_id, values = TINY[name]
    module = agents.get(name)
    env, env_params = envs.make(env_id)
    agent = module.make(env, env_params, module.Config(**values))
    return Contract(name, agent, _train_fn(agent))


def _lanes(agent, keys, scale):
    """Per-lane hyperparameters: the config's, every float leaf times ``scale[i]``
    for lane ``i`` (a sweep over every numeric hyperparameter at once)."""
    base = agent.default_hparams()
    scale = jnp.asarray(scale, jnp.float32)
    return jax.tree.map(
        lambda x: jnp.asarray(x)[None] * (scale if jnp.issubdtype(jnp.asarray(x).dtype, jnp.floating)
                                         else jnp.ones_like(scale, jnp.asarray(x).dtype)),
        base,
    )


def _differs(a, b) -> bool:
    return any(not np.array_equal(x, y) for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def _lane(tree, i):
    return jax.tree.map(lambda x: x[i], tree)


def test_seeds_and_hyperparameters_vmap_in_one_program(contract):
    k0, k1 = jax.random.PRNGKey(0), jax.random.PRNGKey(1)
    keys = jnp.stack([k0, k1, k0])
    states, metrics = contract.train(keys, _lanes(contract.agent, keys, [1.0, 1.0, 1.0]))
    again, metrics_again = contract.train(keys, _lanes(contract.agent, keys, [1.0, 1.0, 1.0]))
    # The same seed repeats bit for bit, across lanes and across calls.
    assert not _differs(_lane(states, 0), _lane(states, 2))
    assert not _differs((states, metrics), (again, metrics_again))
    # Different seeds give different parameters and different trajectories.
    params = contract.agent.policy_params(states)
    assert _differs(_lane(params, 0), _lane(params, 1)), "seeds 0 and 1 gave equal parameters"
    assert _differs(_lane(states, 0), _lane(states, 1)), "seeds 0 and 1 gave equal states"
    # Other hyperparameter values reuse the compiled program.
    compiled = contract.train._cache_size()
    contract.train(keys, _lanes(contract.agent, keys, [0.5, 0.9, 1.0]))
    assert contract.train._cache_size() == compiled


def test_metrics_are_flat_float32(contract):
    state = jax.eval_shape(contract.agent.init, jax.random.PRNGKey(0))
    metrics = jax.eval_shape(contract.agent.step, state)[1]
    assert "episode_return" in metrics
    for name, shape in metrics.items():
        assert shape.dtype == jnp.float32 and shape.ndim <= 1, (name, shape)


def test_act_returns_one_action_of_the_env_shape(contract):
    agent = contract.agent
    state = agent.init(jax.random.PRNGKey(0))
    obs_shape = envs.observation_shape(agent.env, agent.env_params)
    obs = jnp.zeros(obs_shape, jnp.float32)
    expected = envs.action_shape(agent.env, agent.env_params)
    params = agent.policy_params(state)
    act = jax.jit(agent.act, static_argnames="deterministic")
    for deterministic in (False, True):
        action = act(params, obs, jax.random.PRNGKey(1), deterministic=deterministic)
        assert action.shape == expected, (deterministic, action.shape)
    batch = jax.vmap(lambda o, k: agent.act(params, o, k))(
        jnp.zeros((3, *obs_shape)), jax.random.split(jax.random.PRNGKey(2), 3))
    assert batch.shape == (3, *expected)


def _with_env_steps(state, count):
    """``state`` with every step counter in it set to ``count``."""
    return jax.tree.map(
        lambda leaf: StepCounter.of(count) if isinstance(leaf, StepCounter) else leaf,
        state, is_leaf=lambda x: isinstance(x, StepCounter),
    )


def _env_steps(state) -> int:
    counters = [x for x in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, StepCounter))
                if isinstance(x, StepCounter)]
    assert len(counters) == 1, counters
    return int(counters[0])


def test_env_steps_count_past_two_to_the_31(contract):
    """An int32 counter wraps to a negative count here."""
    agent = contract.agent
    start = 2**31 - agent.env_steps_per_step
    state = _with_env_steps(agent.init(jax.random.PRNGKey(0)), start)
    step = jax.jit(agent.step)
    for _ in range(3):
        state, _ = step(state)
    assert _env_steps(state) == start + 3 * agent.env_steps_per_step


def test_a_stopped_run_resumes_to_the_uninterrupted_state(contract, tmp_path):
    """Stopped at its first chunk boundary (as SIGTERM does) and resumed, a run
    ends bit-identical to one that was never interrupted, metrics rows included."""
    agent, key = contract.agent, jax.random.PRNGKey(3)
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


def test_evaluate_returns_finite_episode_returns(contract):
    agent = contract.agent
    state = agent.init(jax.random.PRNGKey(0))
    returns = jax.jit(agent.evaluate, static_argnums=2)(state, jax.random.PRNGKey(1), 2)
    assert returns.shape == (2,) and np.all(np.isfinite(returns))

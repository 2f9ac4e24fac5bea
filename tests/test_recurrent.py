"""Recurrent cores (``core`` = lstm | gru) in PPO, IMPALA and A2C.

Known answers on Probe-RememberCue-v0 (a cue, then 3 blank observations; the
last action earns 1 if it names the cue, so episodes are 4 steps):

- the core's state is zero again at the first step of every episode, and
  nowhere else;
- the learner's replay of a rollout from its stored start state reproduces
  the behaviour policy exactly (PPO's first ratio is 1 in every minibatch of
  whole environments; A2C's importance weights are 1), which fails if
  minibatches cut through time or the start state is not the actors';
- recurrent PPO solves the probe, where feed-forward PPO stays at chance ½;
- asynchronous IMPALA's actor threads (gymnax and host) keep each env's core
  state across rollouts, reset it where the env ends an episode, and hand the
  learner trajectories it replays exactly from their stored start state.

The contract (seeds x hyperparameters in one program, resume, act, evaluate)
runs on a recurrent PPO in test_agent_contract*.py (``tiny_agents.VARIANTS``).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import textwrap

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from xla_env import run_on_two_devices

from jaxrl import envs
from jaxrl.agents import a2c, actor_critic, impala, ppo, reward_model
from jaxrl.distributed import async_impala
from jaxrl.envs import gymnasium_env
from jaxrl.run.policy import deterministic_policy

ENV_ID = "Probe-RememberCue-v0"
SMALL = dict(hidden_sizes=(8,), core_size=8)


def _episode_starts(rollout) -> np.ndarray:
    """``[T, B]``: the step is the first of an episode (t = 0 is: the run's first rollout)."""
    ends = np.asarray(jnp.logical_or(rollout.terminated, rollout.truncated))
    return np.concatenate([np.ones_like(ends[:1]), ends[:-1]], axis=0)


@pytest.fixture(scope="module")
def ppo_rollout():
    """One rollout of recurrent PPO's first policy: 10 steps, so episodes start at t = 0, 4, 8."""
    env, env_params = envs.make(ENV_ID)
    config = ppo.Config(num_envs=4, rollout_len=10, num_minibatches=2, core="gru", **SMALL)
    spec = ppo.make_spec(env, env_params, config)
    state = ppo.init(spec, jax.random.PRNGKey(0))
    state, rollout = jax.jit(functools.partial(ppo.collect, spec))(state)
    return spec, state, rollout


def test_the_core_state_is_zero_at_every_episode_start_and_only_there(ppo_rollout):
    spec, state, rollout = ppo_rollout
    ac, params = spec.ac, state.params
    # What each step's value would be from a fresh (zero) state.
    fresh = actor_critic.heads(ac, params, actor_critic.core_step(
        ac, params, actor_critic.initial_carry(ac, rollout.value.shape),
        actor_critic.embed(ac, params, rollout.obs))[1])[1]
    from_zero = np.isclose(fresh, rollout.value, rtol=0, atol=1e-6)
    starts = _episode_starts(rollout)
    assert starts.any() and not starts.all()
    np.testing.assert_array_equal(from_zero, starts)


def test_ppo_minibatches_are_whole_environments_replayed_to_the_rollouts_policy(ppo_rollout):
    """At the first epoch the update's own forward pass (the replay of each
    minibatch's sequences from their start state) gives the rollout's
    log-probs and values: the ratio is 1."""
    spec, state, rollout = ppo_rollout
    advantages, returns = ppo.advantages_and_returns(spec, state.params, rollout, state.hparams)
    data = ppo.training_sequences(rollout, advantages, returns)
    minibatches = ppo.sequence_minibatches(spec, data, jax.random.PRNGKey(1))
    assert minibatches.obs.shape[:3] == (2, 10, 2)  # [minibatch, T, B / num_minibatches]

    @jax.jit
    def replay(batch):
        policy_out, value, flat = ppo.network_outputs(spec, state.params, batch)
        log_prob = actor_critic.distribution(spec.ac, policy_out).log_prob(flat.action)
        return log_prob - flat.log_prob, value - flat.value

    for i in range(2):
        log_ratio, value_error = replay(jax.tree.map(lambda x: x[i], minibatches))
        np.testing.assert_allclose(log_ratio, 0.0, atol=1e-6)
        np.testing.assert_allclose(value_error, 0.0, atol=1e-5)
    # Between them, the minibatches hold every environment's sequence once.
    seen = np.sort(np.asarray(minibatches.action).transpose(1, 0, 2).reshape(10, 4), axis=1)
    np.testing.assert_array_equal(seen, np.sort(np.asarray(rollout.action), axis=1))


def test_impala_learner_replays_the_actors_sequence_from_their_stored_state():
    """A2C (IMPALA without lag) with an LSTM: after a first trajectory of 6
    steps every episode is half-way, so the second starts from a non-zero
    state; the learner's replay from it gives the actors' log-probs (every ρ
    is 1), and a replay from a zero state would not."""
    env, env_params = envs.make(ENV_ID)
    config = a2c.Config(num_envs=2, rollout_len=6, core="lstm", **SMALL)
    spec = impala.make_spec(env, env_params, config)
    state = impala.init(spec, jax.random.PRNGKey(0))

    @jax.jit
    def second_trajectory(state):
        env_state, obs, core_carry = state.env_state, state.obs, state.core_carry
        for key in jax.random.split(jax.random.PRNGKey(2)):
            env_state, obs, core_carry, traj = impala.rollout_recurrent(
                spec, spec.train_env, env_params, state.params, env_state, obs, core_carry, key,
                config.rollout_len)
        log_prob = impala.learner_outputs(spec, state.params, traj, state.hparams)[1]
        from_zero = traj.replace(core_carry=jax.tree.map(jnp.zeros_like, traj.core_carry))
        zero_log_prob = impala.learner_outputs(spec, state.params, from_zero, state.hparams)[1]
        return traj, log_prob, zero_log_prob

    traj, log_prob, zero_log_prob = second_trajectory(state)
    assert all(np.abs(c).max() > 0 for c in jax.tree.leaves(traj.core_carry))
    np.testing.assert_allclose(log_prob, traj.behaviour_log_prob, atol=1e-6)
    assert np.abs(zero_log_prob - traj.behaviour_log_prob).max() > 1e-6


# env id -> (a perfect memory's return, the bound a memoryless policy stays under).
# Probe-RememberCue-v0 pays 1 for recalling the cue and 0 otherwise, so chance
# is ½; gymnax's MemoryChain-bsuite (memory length 5) pays +1 or -1, so chance is 0.
MEMORY_TASKS = {"Probe-RememberCue-v0": (1.0, 0.75), "MemoryChain-bsuite": (1.0, 0.5)}


@pytest.mark.parametrize("env_id", sorted(MEMORY_TASKS))
def test_recurrent_ppo_remembers_the_cue_where_feed_forward_ppo_cannot(env_id):
    """Two seeds each, 30 iterations of 8 envs x 16 steps: the GRU policy
    earns a perfect memory's return, the feed-forward one chance's. (On
    MemoryChain-bsuite, four seeds split from PRNGKey(0): GRU 1, 1, 1, 1;
    feed-forward -0.06, 0.06, 0.06, -0.06.)"""
    env, env_params = envs.make(env_id)
    perfect, memoryless_bound = MEMORY_TASKS[env_id]
    iterations = 30

    def final_eval_return(core):
        config = ppo.Config(num_envs=8, rollout_len=16, num_minibatches=2, num_epochs=4,
                            hidden_sizes=(16,), core=core, core_size=16, learning_rate=3e-3,
                            total_steps=8 * 16 * iterations)
        agent = ppo.make(env, env_params, config)

        def train(key):
            state = jax.lax.scan(lambda s, _: agent.step(s), agent.init(key), length=iterations)[0]
            return agent.evaluate(state, jax.random.PRNGKey(9), 64).mean()

        return np.asarray(jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 2)))

    recurrent, feed_forward = final_eval_return("gru"), final_eval_return("none")
    assert np.all(recurrent >= 0.95 * perfect), recurrent
    assert np.all(feed_forward <= memoryless_bound), feed_forward


@pytest.mark.slow
def test_recurrent_ppo_balances_cartpole_without_velocities_where_feed_forward_cannot():
    """CartPole-v1-no-velocity (cart position and pole angle only), 2·10^5
    steps, four seeds in one program: a GRU policy, which can estimate the
    velocities from what it saw, beats a memoryless one of the same width on
    at least 3 of 4 seeds by a factor of 3. Measured: GRU 232, 157, 157, 170;
    feed-forward 41, 44, 45, 45. Solving it (>= 475) takes about 10^6 steps
    and a 128-unit GRU: benchmarks/recurrent_ppo.py, in benchmarks/README.md."""
    env, env_params = envs.make("CartPole-v1-no-velocity")

    def final_eval_returns(core):
        config = ppo.Config(num_envs=8, rollout_len=64, num_minibatches=4, num_epochs=4,
                            hidden_sizes=(64,), core=core, core_size=64, learning_rate=3e-3,
                            activation="relu", total_steps=200_000)
        agent = ppo.make(env, env_params, config)
        iterations = config.total_steps // agent.env_steps_per_step

        def train(key):
            state = jax.lax.scan(lambda s, _: agent.step(s), agent.init(key), length=iterations)[0]
            return agent.evaluate(state, jax.random.PRNGKey(9), 16).mean()

        return np.asarray(jax.jit(jax.vmap(train))(jax.random.split(jax.random.PRNGKey(0), 4)))

    recurrent, feed_forward = final_eval_returns("gru"), final_eval_returns("none")
    assert np.all(feed_forward <= 60.0), feed_forward
    assert np.sum(recurrent >= 3 * feed_forward.max()) >= 3, (recurrent, feed_forward)


def test_what_a_recurrent_policy_cannot_do_is_refused_with_the_field_named():
    env, env_params = envs.make(ENV_ID)
    with pytest.raises(ValueError, match=r"ppo.Config.num_minibatches=8 is invalid.*num_envs = 4"):
        ppo.make(env, env_params, ppo.Config(num_envs=4, num_minibatches=8, core="gru"))
    with pytest.raises(ValueError, match=r"ppo.Config.core='rnn' is invalid"):
        ppo.make(env, env_params, ppo.Config(core="rnn"))
    with pytest.raises(ValueError, match=r"rm-ppo.Config.core='gru' is invalid"):
        reward_model.Config(core="gru").validate()
    agent = ppo.make(env, env_params, ppo.Config(num_envs=2, num_minibatches=2, core="gru",
                                                 **SMALL))
    with pytest.raises(ValueError, match=r"ppo.Config.core='gru' is a recurrent policy.*deterministic_recurrent_policy"):
        deterministic_policy(agent)
    params = agent.policy_params(agent.init(jax.random.PRNGKey(0)))
    obs = jnp.zeros((1,))
    with pytest.raises(ValueError, match=r"core='gru' policies carry a state"):
        agent.act(params, obs, jax.random.PRNGKey(1))


ASYNC = impala.Config(num_envs=4, rollout_len=5, anneal_lr=False, **SMALL)
"""Async IMPALA's actors here: 4 envs x 5 steps, a start state that is mid-episode."""


def _assert_replayed_exactly(learner: impala.Learner, params, trajectories) -> None:
    """The learner's log-probs of the actors' ``trajectories``, as one batch
    replayed from their stored start states, are the actors' (every ρ is 1)."""
    batch = async_impala.concatenate(trajectories)
    outputs = jax.jit(functools.partial(impala.learner_outputs, learner.spec))
    log_prob = outputs(params, batch, learner.spec.config.hparams())[1]
    np.testing.assert_allclose(log_prob, batch.behaviour_log_prob, atol=1e-6)


def _two_trajectories(body, params):
    """Actor 0 of ``body`` runs two rollouts with ``params``."""
    step, close = body(0, jax.devices()[0], jax.random.PRNGKey(3))
    try:
        return step(params), step(params)
    finally:
        close()


def _zero_then_mid_episode(first, second) -> None:
    """The first trajectory starts from zeros, the second (mid-episode) from
    the non-zero state the first left, in every env and every carry leaf."""
    for leaf in jax.tree.leaves(first.core_carry):
        np.testing.assert_array_equal(leaf, 0.0)
    for leaf in jax.tree.leaves(second.core_carry):
        assert leaf.shape == (4, 8) and np.all(np.abs(leaf).max(axis=-1) > 0), leaf


def test_async_gymnax_actor_keeps_the_core_state_across_its_rollouts():
    """An actor thread's body on the probe (4-step episodes): the second
    5-step rollout starts from the GRU state the first left, and the learner
    replays both from their stored states to the actor's log-probs."""
    env, env_params = envs.make(ENV_ID)
    learner = impala.make_learner(env, env_params, dataclasses.replace(ASYNC, core="gru"))
    params = learner.init_params(jax.random.PRNGKey(1))
    first, second = _two_trajectories(
        async_impala.gymnax_actor(learner, env, env_params, 4, 5), params)
    _zero_then_mid_episode(first, second)
    _assert_replayed_exactly(learner, params, [first, second])


def test_async_host_actor_resets_the_core_state_where_the_host_env_ends_an_episode():
    """A host actor (Gymnasium CartPole cut at 3 steps, an LSTM): the second
    trajectory starts mid-episode from a non-zero state, and the learner's
    replay, which resets after every terminated or truncated step, gives the
    actor's log-probs: it would not if the actor reset anywhere else."""
    make_env = lambda n, seed: gymnasium_env.GymnasiumBatchEnv(
        "gymnasium:CartPole-v1", n, seed=seed, max_episode_steps=3)
    spec_env = make_env(1, 0)
    learner = impala.make_learner(spec_env, None, dataclasses.replace(ASYNC, core="lstm"))
    spec_env.close()
    params = learner.init_params(jax.random.PRNGKey(1))
    first, second = _two_trajectories(async_impala.host_actor(learner, make_env, 4, 5), params)
    assert first.truncated[2].all() and second.truncated[0].all()  # ends inside both
    _zero_then_mid_episode(first, second)
    _assert_replayed_exactly(learner, params, [first, second])


@pytest.mark.parametrize("env_id, core", [(ENV_ID, "gru"), ("gymnasium:CartPole-v1", "lstm")])
def test_synchronous_async_impala_with_a_core_replays_every_trajectory_exactly(env_id, core):
    """Two actor threads (gymnax, host), synchronous (lag 0: the learner's
    parameters are those that acted): every update's two trajectories,
    concatenated with their start states, have importance weights of 1; the
    greedy evaluation carries the state too."""
    result = async_impala.train(
        env_id, dataclasses.replace(ASYNC, core=core),
        async_impala.AsyncConfig(num_actors=2, trajectories_per_update=2, synchronous=True),
        jax.random.PRNGKey(0), 400, eval_episodes=4)
    assert result.version == 10 and result.lag_histogram == {0: 20}
    np.testing.assert_allclose(result.metrics["mean_rho"], 1.0, atol=1e-5)
    assert np.isfinite(result.summary["eval_return_mean"])


DATA_PARALLEL_SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from jaxrl import envs
    from jaxrl.agents import ppo
    from jaxrl.distributed import data_parallel, make_mesh

    env, env_params = envs.make("Probe-RememberCue-v0")
    single = ppo.make(env, env_params, ppo.Config(num_envs=4, rollout_len=6, num_minibatches=2,
                                                  num_epochs=1, hidden_sizes=(8,), core="gru",
                                                  core_size=8))
    def train(agent):
        run = jax.jit(lambda k: jax.lax.scan(lambda s, _: agent.step(s), agent.init(k), length=2))
        return run(jax.random.PRNGKey(0))[0]
    one, two = train(single), train(data_parallel(single, make_mesh(2)))
    diff = lambda a, b: max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
                            for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))
    print(json.dumps({
        "param_diff": diff(one.params, two.params),
        "carry_diff": diff(one.core_carry, two.core_carry),
        "carry_shard_rows": [s.data.shape[0] for s in two.core_carry.addressable_shards],
    }))
    """
)


def test_data_parallel_recurrent_ppo_equals_single_device_ppo():
    """Over 2 devices each holds 2 environments and their core states, and a
    minibatch of 2 whole environments splits one per device."""
    out = json.loads(run_on_two_devices(DATA_PARALLEL_SCRIPT).strip().splitlines()[-1])
    assert out["carry_shard_rows"] == [2, 2]
    assert out["param_diff"] < 1e-5 and out["carry_diff"] < 1e-5, out

"""Action masks, MultiDiscrete actions and Dict observations on the agent side.

Probe environments with known answers, defined here:

- ``MaskedBandit``: one step, three actions paying 0, 1 and 0.5 whatever the
  mask says, and a mask that forbids the best-paying legal-looking action on
  one side of a coin. An agent that ignores the mask takes action 1 on both.
- ``MultiDiscreteBandit``: one step, MultiDiscrete((3, 4)) actions, best
  (2, 1); optionally a per-dimension or a joint mask that forbids it.

The factorised categorical is checked against explicit enumeration of the
joint distribution.
"""

from __future__ import annotations

import itertools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import struct
from gymnax.environments import environment, spaces

from jaxrl import envs, ops
from jaxrl.agents import a2c, dqn, impala, ppo, q_learning

@struct.dataclass
class SideState(environment.EnvState):
    side: jax.Array  # 0 or 1, drawn at reset
    time: jax.Array


@struct.dataclass
class OneStepParams(environment.EnvParams):
    max_steps_in_episode: int = 10  # never reached: every episode is one step


class MaskedBandit(environment.Environment):
    """One step, obs ``{"observation": [side], "action_mask": legal}``, three
    actions paying 0, 1, 0.5 whatever the mask says. Side 0 forbids action 1
    (the best-paying one), side 1 forbids action 2. The best legal play is
    2 on side 0 and 1 on side 1; an agent that ignores the mask takes 1."""

    REWARDS = (0.0, 1.0, 0.5)
    LEGAL = ((True, False, True), (True, True, False))

    @property
    def default_params(self):
        return OneStepParams()

    def observation_space(self, params=None):
        return spaces.Dict({"observation": spaces.Box(0.0, 1.0, (1,), jnp.float32),
                            envs.ACTION_MASK: spaces.Box(0, 1, (3,), jnp.bool_)})

    def action_space(self, params=None):
        return spaces.Discrete(3)

    def get_obs(self, state, params=None, key=None):
        return {"observation": state.side[None].astype(jnp.float32),
                envs.ACTION_MASK: jnp.asarray(self.LEGAL)[state.side]}

    def reset_env(self, key, params):
        state = SideState(side=jax.random.bernoulli(key).astype(jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = jnp.asarray(self.REWARDS)[action]
        next_state = state.replace(time=state.time + 1)
        return self.get_obs(next_state), next_state, reward, jnp.asarray(True), {}

    def is_terminal(self, state, params):
        return state.time >= 1


class MultiDiscreteBandit(environment.Environment):
    """One step, obs [0.], MultiDiscrete((3, 4)) actions: reward
    0.5·[a₀ = 2] + 0.5·[a₁ = 1], best (2, 1). ``mask="per_dimension"``
    forbids choice 2 of dimension 0 (then the best legal is (a₀, 1), 0.5);
    ``mask="joint"`` forbids only the combination (2, 1)."""

    NVEC = (3, 4)

    def __init__(self, mask: str | None = None):
        super().__init__()
        self.mask = mask

    @property
    def default_params(self):
        return OneStepParams()

    def _mask(self):
        if self.mask == "per_dimension":
            return jnp.asarray([[True, True, False, False], [True, True, True, True]])
        return jnp.ones(self.NVEC, bool).at[2, 1].set(False)

    def observation_space(self, params=None):
        box = spaces.Box(0.0, 1.0, (1,), jnp.float32)
        if self.mask is None:
            return box
        return spaces.Dict({"observation": box,
                            envs.ACTION_MASK: spaces.Box(0, 1, self._mask().shape, jnp.bool_)})

    def action_space(self, params=None):
        return envs.MultiDiscrete(self.NVEC)

    def get_obs(self, state, params=None, key=None):
        obs = jnp.zeros((1,), jnp.float32)
        return obs if self.mask is None else {"observation": obs, envs.ACTION_MASK: self._mask()}

    def reset_env(self, key, params):
        state = SideState(side=jnp.zeros((), jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        reward = 0.5 * (action[0] == 2) + 0.5 * (action[1] == 1)
        next_state = state.replace(time=state.time + 1)
        return self.get_obs(next_state), next_state, reward.astype(jnp.float32), jnp.asarray(True), {}

    def is_terminal(self, state, params):
        return state.time >= 1


def masked_bandit_obs(sides, legal_of_side=MaskedBandit.LEGAL):
    """A batch of MaskedBandit observations on ``sides`` under the masks ``legal_of_side``."""
    sides = jnp.asarray(sides)
    return {"observation": sides[:, None].astype(jnp.float32),
            envs.ACTION_MASK: jnp.asarray(legal_of_side)[sides]}


def illegal(side, action):
    """Whether MaskedBandit forbids ``action`` on ``side`` (from the env's rule,
    not from any stored mask)."""
    side, action = np.asarray(side), np.asarray(action)
    return ((side == 0) & (action == 1)) | ((side == 1) & (action == 2))


class ForbiddenPreference(MaskedBandit):
    """MaskedBandit always on side 1, where a trained agent takes action 1,
    but with action 1 forbidden: a policy that obeys the mask earns 0.5 at
    most, one that does not earns 1."""

    def get_obs(self, state, params=None, key=None):
        return {"observation": jnp.ones((1,), jnp.float32),
                envs.ACTION_MASK: jnp.asarray(self.LEGAL[0])}

    def reset_env(self, key, params):
        state = SideState(side=jnp.ones((), jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        obs, state, reward, terminated, info = super().step_env(key, state, action, params)
        return self.get_obs(state), state, reward, terminated, info


# --------------------------------------------------------------------------- the factorised categorical


NVEC = (2, 3, 2)


def enumerated_joint(logits, nvec):
    """log p of every combination (row-major) of independent categoricals, by enumeration."""
    logits = np.float64(logits)
    blocks = np.split(logits, np.cumsum(nvec)[:-1])
    log_ps = [b - np.log(np.exp(b - b.max()).sum()) - b.max() for b in blocks]
    combos = list(itertools.product(*[range(n) for n in nvec]))
    return np.array(combos), np.array([sum(lp[a] for lp, a in zip(log_ps, c)) for c in combos])


def test_factorised_categorical_matches_joint_enumeration():
    rng = np.random.default_rng(0)
    logits_p, logits_q = (rng.normal(scale=2.0, size=sum(NVEC)).astype(np.float32) for _ in range(2))
    combos, log_p = enumerated_joint(logits_p, NVEC)
    _, log_q = enumerated_joint(logits_q, NVEC)
    p, q = ops.FactorisedCategorical(jnp.asarray(logits_p), NVEC), ops.FactorisedCategorical(jnp.asarray(logits_q), NVEC)

    np.testing.assert_allclose(p.log_prob(jnp.asarray(combos)), log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(p.entropy(), -(np.exp(log_p) * log_p).sum(), rtol=1e-5)
    np.testing.assert_allclose(p.kl(q), (np.exp(log_p) * (log_p - log_q)).sum(), rtol=1e-4, atol=1e-6)
    assert tuple(p.mode()) == tuple(combos[np.argmax(log_p)])
    # The joint form of the same logits is the same distribution.
    joint = ops.JointCategorical(ops.joint_logits(jnp.asarray(logits_p), NVEC), NVEC)
    np.testing.assert_allclose(joint.log_prob(jnp.asarray(combos)), log_p, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(joint.entropy(), p.entropy(), rtol=1e-5)


def test_factorised_samples_follow_the_joint_distribution():
    logits = jnp.asarray(np.random.default_rng(1).normal(size=sum(NVEC)), jnp.float32)
    combos, log_p = enumerated_joint(logits, NVEC)
    dist = ops.FactorisedCategorical(jnp.broadcast_to(logits, (20_000, sum(NVEC))), NVEC)
    samples = np.asarray(dist.sample(jax.random.PRNGKey(0)))
    index = np.ravel_multi_index(samples.T, NVEC)
    frequencies = np.bincount(index, minlength=len(combos)) / len(index)
    np.testing.assert_allclose(frequencies, np.exp(log_p), atol=0.015)


def test_joint_mask_renormalises_over_legal_combinations():
    logits = jnp.asarray(np.random.default_rng(2).normal(size=sum(NVEC)), jnp.float32)
    combos, log_p = enumerated_joint(logits, NVEC)
    legal = np.random.default_rng(3).random(len(combos)) < 0.5
    legal[0] = True
    dist = ops.JointCategorical(ops.masked_logits(ops.joint_logits(logits, NVEC), jnp.asarray(legal)), NVEC)
    restricted = np.where(legal, np.exp(log_p), 0.0)
    expected = restricted / restricted.sum()
    np.testing.assert_allclose(np.exp(dist.log_prob(jnp.asarray(combos))), expected, atol=1e-6)
    many = ops.JointCategorical(jnp.broadcast_to(dist.logits, (2000, len(combos))), NVEC)
    samples = np.asarray(many.sample(jax.random.PRNGKey(4)))
    assert legal[np.ravel_multi_index(samples.T, NVEC)].all()


def test_masked_losses_stay_finite_with_finite_gradients():
    """Entropy, KL and log-prob of legal actions under masks (one row with no
    legal action at all) give finite values and gradients."""
    logits = jnp.asarray(np.random.default_rng(5).normal(size=(3, 4)), jnp.float32)
    mask = jnp.asarray([[True, False, True, False], [False, False, False, True],
                        [False, False, False, False]])

    def total(logits, other):
        p = ops.Categorical(ops.masked_logits(logits, mask))
        q = ops.Categorical(ops.masked_logits(other, mask))
        return (p.entropy() + p.kl(q) + q.kl(p) + p.log_prob(jnp.asarray([2, 3, 0]))).sum()

    value, grads = jax.value_and_grad(total, argnums=(0, 1))(logits, 2.0 * logits)
    assert np.isfinite(value) and all(np.isfinite(g).all() for g in grads)
    assert np.all(np.asarray(grads[0])[~np.asarray(mask)] == 0.0)  # no gradient to a masked logit
    # A row with one legal action is certain: entropy 0.
    assert float(ops.Categorical(ops.masked_logits(logits, mask)).entropy()[1]) == 0.0


def test_masked_q_targets_bootstrap_from_legal_actions_only():
    next_q = jnp.asarray([[1.0, 5.0, 2.0], [1.0, 5.0, 2.0]])
    mask = jnp.asarray([[True, False, True], [False, False, False]])  # row 2: none legal
    reward, discount = jnp.zeros(2), jnp.ones(2)
    for double in (False, True):
        y = q_learning.q_learning_targets(reward, discount, next_q, next_q, double, mask)
        np.testing.assert_allclose(y, [2.0, 5.0])


def test_masked_epsilon_greedy_is_uniform_over_legal_actions():
    q = jnp.broadcast_to(jnp.asarray([0.0, 9.0, 1.0, 2.0]), (4000, 4))
    mask = jnp.broadcast_to(jnp.asarray([True, False, True, True]), (4000, 4))
    actions = np.asarray(q_learning.epsilon_greedy(jax.random.PRNGKey(0), q, 1.0, mask))
    np.testing.assert_allclose(np.bincount(actions, minlength=4) / len(actions), [1 / 3, 0, 1 / 3, 1 / 3], atol=0.03)
    greedy = q_learning.epsilon_greedy(jax.random.PRNGKey(0), q, 0.0, mask)
    assert np.all(np.asarray(greedy) == 3)


# --------------------------------------------------------------------------- agents under action masks

MASKED = MaskedBandit()
PARAMS = MASKED.default_params
SMALL = dict(hidden_sizes=(16,), learning_rate=3e-3)
AGENTS = {  # module, config, iterations that learn MaskedBandit's best legal play
    "ppo": (ppo, ppo.Config(num_envs=8, rollout_len=8, num_minibatches=2, num_epochs=2, **SMALL), 30),
    "a2c": (a2c, a2c.Config(num_envs=8, rollout_len=4, **SMALL), 100),
    "impala": (impala, impala.Config(num_envs=8, rollout_len=4, policy_lag=2, **SMALL), 100),
    "dqn": (dqn, dqn.Config(num_envs=8, rollout_len=1, batch_size=32, learning_starts=64, buffer_size=512,
                            total_steps=4000, target_update_period=10, **SMALL), 400),
}


def train(agent, iterations, seed=0):
    """``iterations`` steps of ``agent`` from ``init(seed)`` in one jitted scan."""
    run = jax.jit(lambda s: jax.lax.scan(lambda s, _: agent.step(s), s, length=iterations))
    return run(agent.init(jax.random.PRNGKey(seed)))


@pytest.fixture(scope="module", params=list(AGENTS))
def trained(request):
    """``(name, module, config, state, metrics)`` of an agent trained on MaskedBandit."""
    module, config, iterations = AGENTS[request.param]
    state, metrics = train(module.make(MASKED, PARAMS, config), iterations)
    return request.param, module, config, state, metrics


def collected_sides_and_actions(name, module, config, state):
    """(side, action) of every step a fresh collection (or DQN's buffer) holds."""
    if name == "dqn":
        size = int(state.buffer.size)
        storage = state.buffer.storage
        return storage.obs[:size, 0], storage.action[:size]
    if name == "ppo":
        spec = ppo.make_spec(MASKED, PARAMS, config)
        _, rollout = jax.jit(lambda s: ppo.collect(spec, s))(state)
        return rollout.obs[..., 0], rollout.action
    spec = impala.make_spec(MASKED, PARAMS, config)  # a2c's and impala's actors
    learner = impala.bind_learner(spec)
    _, _, traj = jax.jit(lambda s: impala.rollout(learner, spec.train_env, PARAMS, s.params, s.env_state,
                                                  s.obs, jax.random.PRNGKey(1), 32))(state)
    return traj.obs[..., 0], traj.action


def test_collection_never_takes_a_masked_action(trained):
    name, module, config, state, metrics = trained
    sides, actions = collected_sides_and_actions(name, module, config, state)
    assert np.size(actions) >= 64
    assert not illegal(np.asarray(sides).astype(int), actions).any()
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())  # no NaN from masked logits


def test_agent_learns_the_best_legal_action(trained):
    name, module, config, state, _ = trained
    agent = module.make(MASKED, PARAMS, config)
    greedy = agent.act(agent.policy_params(state), masked_bandit_obs([0, 1]), jax.random.PRNGKey(2),
                       deterministic=True)
    np.testing.assert_array_equal(greedy, [2, 1])


def test_act_and_evaluate_obey_a_mask_against_the_policys_preference(trained):
    """On side 1 the trained policy takes action 1; forbid it there and
    neither ``act`` (sampled or greedy) nor ``evaluate`` may take it."""
    name, module, config, state, _ = trained
    agent = module.make(ForbiddenPreference(), PARAMS, config)
    obs = masked_bandit_obs(np.ones(512, int), legal_of_side=(MaskedBandit.LEGAL[0],) * 2)
    params = agent.policy_params(state)
    for deterministic in (False, True):
        actions = agent.act(params, obs, jax.random.PRNGKey(3), deterministic=deterministic)
        assert not np.any(np.asarray(actions) == 1)
    returns = agent.evaluate(state, jax.random.PRNGKey(4), 16)
    assert np.all(np.asarray(returns) <= 0.5)


# --------------------------------------------------------------------------- MultiDiscrete actions

MD_CONFIG = dict(num_envs=8, rollout_len=8, num_minibatches=2, num_epochs=2, **SMALL)


def test_ppo_learns_a_multi_discrete_probe():
    env = MultiDiscreteBandit()
    agent = ppo.make(env, env.default_params, ppo.Config(**MD_CONFIG))
    state, metrics = train(agent, 40)
    greedy = agent.act(agent.policy_params(state), jnp.zeros((1,)), jax.random.PRNGKey(1), deterministic=True)
    np.testing.assert_array_equal(greedy, [2, 1])
    assert float(metrics["episode_return"][-1]) > 0.9
    np.testing.assert_allclose(agent.evaluate(state, jax.random.PRNGKey(2), 4), 1.0)


@pytest.mark.parametrize("mask_kind, algorithm", [("per_dimension", "impala"), ("joint", "ppo")])
def test_multi_discrete_masks_hold_from_a_fresh_policy(mask_kind, algorithm):
    """A fresh (near-uniform) policy would take the forbidden choice often:
    under the mask, collection, ``act`` and ``evaluate`` never do."""
    env = MultiDiscreteBandit(mask_kind)
    env_params = env.default_params
    if mask_kind == "per_dimension":
        forbidden = lambda a: np.asarray(a)[..., 0] == 2
    else:
        forbidden = lambda a: (np.asarray(a)[..., 0] == 2) & (np.asarray(a)[..., 1] == 1)
    if algorithm == "ppo":
        spec = ppo.make_spec(env, env_params, ppo.Config(**MD_CONFIG))
        agent = ppo.make(env, env_params, ppo.Config(**MD_CONFIG))
        state = agent.init(jax.random.PRNGKey(0))
        _, rollout = jax.jit(lambda s: ppo.collect(spec, s))(state)
        actions = rollout.action
    else:
        config = impala.Config(num_envs=8, rollout_len=4, **SMALL)
        spec = impala.make_spec(env, env_params, config)
        agent = impala.make(env, env_params, config)
        state = agent.init(jax.random.PRNGKey(0))
        learner = impala.bind_learner(spec)
        _, _, traj = jax.jit(lambda s: impala.rollout(learner, spec.train_env, env_params, s.params,
                                                      s.env_state, s.obs, jax.random.PRNGKey(1), 16))(state)
        actions = traj.action
        assert traj.action_mask.shape == (16, 8, sum(env.NVEC))  # per-dimension rows, padding dropped
        _, stats = jax.jit(lambda p, t, h: impala.loss(spec, p, t, h))(state.params, traj, state.hparams)
        assert all(np.isfinite(np.asarray(v)) for v in stats.values())
    assert actions.shape[-1] == 2 and not forbidden(actions).any()
    obs = jax.tree.map(lambda x: jnp.broadcast_to(x, (512,) + x.shape), env.get_obs(None))
    sampled = agent.act(agent.policy_params(state), obs, jax.random.PRNGKey(2))
    assert sampled.shape == (512, 2) and not forbidden(sampled).any()
    assert np.all(np.asarray(agent.evaluate(state, jax.random.PRNGKey(3), 32)) <= 0.5)


def test_multi_discrete_without_mask_is_not_confused_with_continuous():
    env = MultiDiscreteBandit()
    agent = a2c.make(env, env.default_params, a2c.Config(num_envs=4, rollout_len=2, **SMALL))
    state = agent.init(jax.random.PRNGKey(0))
    actions = agent.act(agent.policy_params(state), jnp.zeros((256, 1)), jax.random.PRNGKey(1))
    assert actions.dtype == jnp.int32 and actions.shape == (256, 2)
    assert set(np.unique(actions[:, 0])) == {0, 1, 2} and set(np.unique(actions[:, 1])) == {0, 1, 2, 3}


# --------------------------------------------------------------------------- Dict observations


class ImageAndVector(environment.Environment):
    """One step; obs ``{"image": 5x5x2, "vector": [3], "action_mask": [2]}``
    (both actions legal); reward = the action. Only the shapes matter here."""

    @property
    def default_params(self):
        return OneStepParams()

    def observation_space(self, params=None):
        return spaces.Dict({"image": spaces.Box(0.0, 1.0, (5, 5, 2), jnp.float32),
                            "vector": spaces.Box(-1.0, 1.0, (3,), jnp.float32),
                            envs.ACTION_MASK: spaces.Box(0, 1, (2,), jnp.bool_)})

    def action_space(self, params=None):
        return spaces.Discrete(2)

    def get_obs(self, state, params=None, key=None):
        return {"image": jnp.ones((5, 5, 2)), "vector": jnp.ones((3,)),
                envs.ACTION_MASK: jnp.ones((2,), bool)}

    def reset_env(self, key, params):
        state = SideState(side=jnp.zeros((), jnp.int32), time=jnp.zeros((), jnp.int32))
        return self.get_obs(state), state

    def step_env(self, key, state, action, params):
        next_state = state.replace(time=state.time + 1)
        return self.get_obs(next_state), next_state, action.astype(jnp.float32), jnp.asarray(True), {}

    def is_terminal(self, state, params):
        return state.time >= 1


@pytest.mark.parametrize("torso, convolved", [("auto", True), ("mlp", False)])
def test_dict_observation_encodes_each_key_by_its_shape(torso, convolved):
    """Image keys get a convolution (unless torso="mlp"), vector keys are
    flattened, and time-major batches pass through the encoder."""
    env = ImageAndVector()
    spec = ppo.make_spec(env, env.default_params, ppo.Config(num_envs=2, rollout_len=2, num_minibatches=1,
                                                             torso=torso, **SMALL))
    params = ppo.actor_critic.init_params(spec.ac, jax.random.PRNGKey(0))
    paths = [tuple(k.key for k in path) for path, _ in jax.tree_util.tree_leaves_with_path(params)]
    torsos_with_a_convolution = {path[1] for path in paths if any("Conv" in k for k in path)}
    assert len(torsos_with_a_convolution) == (2 if convolved else 0)  # the actor's and the critic's
    obs = jax.tree.map(lambda shape: jnp.zeros((4, 3) + shape), spec.ac.obs_shape,
                       is_leaf=lambda x: isinstance(x, tuple))
    logits, value = spec.ac.network.apply(params, obs)
    assert logits.shape == (4, 3, 2) and value.shape == (4, 3)
    if convolved:
        return  # one training step (compiled once, without the convolution) shows the Dict path trains
    state, metrics = jax.jit(lambda s: ppo.step(spec, s))(ppo.init(spec, jax.random.PRNGKey(1)))
    assert all(np.isfinite(np.asarray(v)).all() for v in metrics.values())


@pytest.mark.parametrize("make, message", [
    (lambda: dqn.make(ImageAndVector(), OneStepParams(), dqn.Config()), "FlattenObservation"),
    (lambda: ppo.make(MASKED, PARAMS, ppo.Config(normalize_obs=True)), "normalize_obs"),
])
def test_unsupported_observations_are_rejected_when_the_agent_is_made(make, message):
    with pytest.raises(ValueError, match=message):
        make()

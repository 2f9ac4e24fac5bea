"""Reward modelling from pairwise preferences (Christiano et al. 2017,
arXiv:1706.03741), with PPO as the policy learner.

What to do (a reward model r̂(s, a) trained on preferences between trajectory
segments) is learned apart from how to do it (PPO maximising r̂). One
``step`` of the ``rm-ppo`` agent is one iteration of the paper's loop, on
PPO's own steps:

1. :func:`jaxrl.agents.ppo.collect` runs the current policy in the
   environment (its true rewards kept for the metrics and the oracle);
   :func:`relabel` replaces the rollout's rewards by the model's normalised
   r̂(s, a) in one batched pass, and :func:`jaxrl.agents.ppo.update` learns
   from them;
2. candidate segment pairs are cut from that rollout, and queries are picked
   at random or by ensemble disagreement (variance of P[σ¹ ≻ σ²] across
   members), as many as the label schedule allows this iteration;
3. a labeller answers left / right / equal (the synthetic oracle, which
   prefers the higher true return, or people);
4. the ensemble takes gradient steps on the Bradley–Terry loss
   (:func:`jaxrl.ops.bradley_terry_loss`), each member on its own bootstrap
   minibatch, and the reward's normalisation is refreshed on the rollout.

Segments end at the first episode end they contain: the steps after it
(auto-reset has started a new episode) are masked out of both the true and
the predicted segment return. So on CartPole, whose reward is +1 on every
step, a segment that falls over early has the lower return, and the model
learns a reward whose sign matters; that is why the default normalisation
("rms") rescales without centring. Every ``holdout_every``-th label is kept
out of training and gives ``label_accuracy``. The reward model sees the
observations and actions the environment saw (before PPO's observation
normalisation and action rescaling), which :class:`RecordEnvInput` reports.

Labels from people (``labels="human"``) keep the step one jitted program:
step 3 becomes a host call (``jax.experimental.io_callback``) to the labeller
the agent was made with, ``make(env, env_params, config,
labeller=jaxrl.feedback.HumanLabeller(run_dir))``, which writes the queries
to the run directory and waits until they are answered in its label store.
Everything else stays on the device, so ``jaxrl.run.train`` chunks,
checkpoints and resumes a human run like any other. A resumed run replays
from its checkpoint bit for bit, asks the same queries (same segment ids)
again, and finds their answers in the store without waiting.

The preference pieces that know nothing of PPO (segments, the oracle, the
reward-net ensemble and its fit) are :mod:`jaxrl.agents.preferences`.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

from jaxrl import ops
from jaxrl.agents import actor_critic, fields, ppo
from jaxrl.agents.base import Agent, HostNeeds, config_requirer
from jaxrl.agents.preferences import (  # noqa: F401  (rm-ppo's public names)
    EQUAL, LEFT, RIGHT, LabelBuffer, RewardModel, RewardNet, RewardNorm, Segments, Trajectory,
    add_labels, ask_labeller, bradley_terry_per_pair, correlation,
    empty_label_buffer, empty_segments, episode_mask, fit_ensemble, label_accuracy, label_weights,
    no_labeller, normalisation, oracle_preferences, preference_probabilities, sample_segments,
    select_by_disagreement)
from jaxrl.config import Check, field, non_negative, one_of, positive, swept_fields
from jaxrl.envs.wrappers import StepResult, Wrapper

ACTION_SPACES = ("discrete", "continuous")
LABELLERS = ("synthetic", "human")
QUERY_SELECTIONS = ("disagreement", "random")
REWARD_NORMS = ("rms", "standard", "none")
LABEL_SCHEDULES = ("uniform", "decreasing")

_fraction = Check(lambda v: 0 < v <= 1, "a number in (0, 1]")
_noise = Check(lambda v: 0 <= v < 1, "a number in [0, 1)")
_holdout = Check(lambda v: v == 0 or v >= 2, "0 (no held-out labels) or an integer >= 2")
_seconds = Check(lambda v: v > 0, "a positive number of seconds")


@dataclasses.dataclass(frozen=True)
class Config(ppo.Config):
    """rm-ppo settings: every PPO field, plus the reward model's and the
    preference loop's. Defaults fit CartPole-v1 with 1,000 synthetic labels."""

    learning_rate: float = fields.learning_rate(2.5e-4)
    """Adam step size of the policy (annealed linearly to 0 over total_steps if
    anneal_lr); rm-ppo's learned rewards were tuned at this rate."""
    labels: str = field("synthetic", check=one_of(*LABELLERS))
    """Labeller: synthetic (oracle preferring the higher true return) | human."""
    label_budget: int = field(1000, check=positive)
    """Total labels a run may ask for."""
    queries_per_iteration: int = field(16, check=positive)
    """Most queries labelled in one iteration (the schedule may ask fewer)."""
    label_schedule: str = field("decreasing", check=one_of(*LABEL_SCHEDULES))
    """uniform: budget spread evenly over the first label_fraction of the run;
    decreasing: cumulative labels ∝ sqrt(progress), more early (the paper
    lowers its label rate over time)."""
    label_fraction: float = field(1.0, check=_fraction)
    """Share of the run over which the label budget is spent (labels that keep
    coming late in the run keep the model right about the states a good
    policy visits: with 0.5, one CartPole seed in three fell back)."""
    num_candidates: int = field(64, check=positive)
    """Candidate pairs drawn per iteration for query selection."""
    query_selection: str = field("disagreement", check=one_of(*QUERY_SELECTIONS))
    """disagreement (highest ensemble variance of P[σ¹ ≻ σ²]) | random."""
    segment_len: int = field(25, check=positive)
    """Steps per segment (≤ rollout_len)."""
    ensemble_size: int = field(3, check=positive)
    """Reward networks in the ensemble."""
    reward_hidden_sizes: tuple[int, ...] = fields.hidden_sizes((64, 64))
    """Hidden layers of each reward network."""
    reward_learning_rate: float = fields.learning_rate(1e-3)
    """Adam step size of the reward model."""
    reward_updates_per_iteration: int = field(16, check=positive)
    """Bradley–Terry gradient steps per iteration."""
    reward_batch_size: int = field(32, check=positive)
    """Labelled pairs per member per gradient step (bootstrap-sampled)."""
    preference_noise: float = field(0.0, check=_noise, swept=True)
    """ε of the loss: assumed chance that a label is a random answer."""
    reward_norm: str = field("rms", check=one_of(*REWARD_NORMS))
    """rms (unit scale, sign kept) | standard (zero mean, unit std) | none."""
    holdout_every: int = field(5, check=_holdout)
    """Every k-th label is held out for label_accuracy (0: none)."""
    oracle_temperature: float = field(0.0, check=non_negative, swept=True)
    """Boltzmann temperature β of the synthetic oracle (0: always right)."""
    oracle_tie_margin: float = field(0.0, check=non_negative, swept=True)
    """Returns closer than this are labelled equal by the oracle."""
    label_timeout: float = field(3600.0, check=_seconds)
    """labels=human: seconds to wait for one iteration's queries to be
    answered before the run stops (resume it once they are labelled)."""

    def validate(self) -> None:
        super().validate()
        req = config_requirer(self)
        req(self.segment_len <= self.rollout_len, "segment_len", f"at most rollout_len = {self.rollout_len}")
        req(self.queries_per_iteration <= self.num_candidates, "queries_per_iteration",
            f"at most num_candidates = {self.num_candidates}")
        # Segments are cut from rollouts and relabelled step by step; a
        # recurrent policy's replay of them is not implemented.
        req(self.core == "none", "core", "'none' (rm-ppo's policy is feed-forward)")

    def ppo_config(self) -> ppo.Config:
        return ppo.Config(**{f.name: getattr(self, f.name) for f in dataclasses.fields(ppo.Config)})

    def hparams(self) -> "HParams":
        """PPO's hyperparameters nested under ``ppo`` (what the policy learner
        reads), then rm-ppo's own swept fields, as float32 arrays."""
        return HParams(ppo=self.ppo_config().hparams(),
                       **{n: jnp.float32(getattr(self, n)) for n in OWN_SWEPT_FIELDS})


OWN_SWEPT_FIELDS = tuple(n for n in swept_fields(Config) if n not in swept_fields(ppo.Config))
"""The swept fields rm-ppo declares beyond PPO's, in declaration order."""

# Numeric hyperparameters carried in the state (leaves may be batched), nested
# so that PPO's part passes to the policy learner as a whole.
HParams = struct.dataclass(type("HParams", (), {
    "__annotations__": {"ppo": "ppo.HParams", **dict.fromkeys(OWN_SWEPT_FIELDS, "jax.Array")},
    "__module__": __name__,
}))


# --------------------------------------------------------------------------- #
# What the environment saw
# --------------------------------------------------------------------------- #


class EnvInput(struct.PyTreeNode):
    """The observation an action was taken in, and the action, as the env saw them."""

    obs: jax.Array
    action: jax.Array


@struct.dataclass
class RecordEnvInputState:
    env_state: Any
    obs: jax.Array
    """The last observation returned (s_t of the next step)."""


class RecordEnvInput(Wrapper):
    """Reports in ``info["env_input"]`` the :class:`EnvInput` of each step.
    Placed innermost, it sees observations before PPO normalises them and
    actions after PPO rescales them, as the reward model must."""

    def reset(self, key: jax.Array, params: Any = None):
        obs, env_state = self._env.reset(key, self._params(params))
        return obs, RecordEnvInputState(env_state=env_state, obs=obs)

    def step(self, key: jax.Array, state: RecordEnvInputState, action: Any, params: Any = None) -> StepResult:
        next_obs, env_state, reward, terminated, truncated, info = self._env.step(
            key, state.env_state, action, self._params(params))
        info = {**info, "env_input": EnvInput(obs=state.obs, action=action)}
        return next_obs, RecordEnvInputState(env_state, next_obs), reward, terminated, truncated, info


# --------------------------------------------------------------------------- #
# The rm-ppo agent: module-level steps over a static spec
# --------------------------------------------------------------------------- #


@struct.dataclass
class State:
    ppo: ppo.State
    ensemble: Any
    reward_opt_state: optax.OptState
    norm: RewardNorm
    labels: LabelBuffer
    rng: jax.Array
    hparams: HParams
    iteration: jax.Array
    learned_return: jax.Array
    """Learned-reward return of each environment's episode in progress ``[B]``."""


class Spec(struct.PyTreeNode):
    """What an rm-ppo run holds fixed: its config, PPO's spec (on the env
    wrapped in :class:`RecordEnvInput`), the reward model, its optimiser, and
    the labeller of ``labels="human"``."""

    config: Config = actor_critic.static_field()
    ppo: ppo.Spec = actor_critic.static_field()
    model: RewardModel = actor_critic.static_field()
    optimizer: optax.GradientTransformation = actor_critic.static_field()
    labeller: Callable | None = actor_critic.static_field()


def make_spec(env, env_params, config: Config = Config(), labeller: Callable | None = None) -> Spec:
    """Validates ``config`` (and that a human-labelled run has a labeller) and
    builds the static parts of rm-ppo on ``env`` (see :func:`make`)."""
    config.validate()
    if config.labels == "human" and labeller is None:
        raise ValueError(
            "rm-ppo with labels='human' needs a labeller: pass reward_model.make(env, env_params, "
            "config, labeller=jaxrl.feedback.HumanLabeller(run_dir)) (`jaxrl train rm-ppo --labels "
            "human` does), or labeller=reward_model.no_labeller to build it only to evaluate")
    ppo_spec = ppo.make_spec(RecordEnvInput(env), env_params, config.ppo_config())
    ppo_spec = ppo_spec.replace(record_info=lambda info: info["env_input"])
    discrete = ppo_spec.ac.discrete
    action_space = env.action_space(env_params)
    model = RewardModel(
        net=RewardNet(num_actions=action_space.n if discrete else 0,
                      hidden_sizes=tuple(config.reward_hidden_sizes), activation="tanh"),
        size=config.ensemble_size, obs_dim=int(np.prod(ppo_spec.ac.obs_shape)),
        action_shape=() if discrete else tuple(action_space.shape))
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0)
    return Spec(config=config, ppo=ppo_spec, model=model, optimizer=optimizer, labeller=labeller)


def init(spec: Spec, key: jax.Array, hparams: HParams | None = None) -> State:
    """A fresh run: PPO's state, an untrained ensemble, no labels."""
    config, model = spec.config, spec.model
    hparams = config.hparams() if hparams is None else hparams
    k_ppo, k_rm, key = jax.random.split(key, 3)
    ensemble = model.init(k_rm)
    opt_state = ops.with_learning_rate(spec.optimizer.init(ensemble), hparams.reward_learning_rate)
    empty = empty_segments(config.label_budget, config.segment_len, model.obs_dim,
                           model.action_shape, model.action_dtype)
    return State(ppo=ppo.init(spec.ppo, k_ppo, hparams.ppo), ensemble=ensemble,
                 reward_opt_state=opt_state, norm=normalisation("none", jnp.zeros(())),
                 labels=empty_label_buffer(config.label_budget, empty), rng=key, hparams=hparams,
                 iteration=jnp.zeros((), jnp.int32),
                 learned_return=jnp.zeros((config.num_envs,), jnp.float32))


def labels_due(config: Config, iteration: jax.Array, total_iterations: int) -> jax.Array:
    """Cumulative labels the schedule allows after ``iteration`` (0-based)."""
    span = max(1.0, config.label_fraction * total_iterations)
    progress = jnp.minimum((iteration.astype(jnp.float32) + 1.0) / span, 1.0)
    if config.label_schedule == "decreasing":
        progress = jnp.sqrt(progress)
    return jnp.ceil(progress * config.label_budget).astype(jnp.int32)


def trajectory(rollout: ppo.Rollout) -> Trajectory:
    """The rollout as the environment saw it, with its true rewards ``[T, B]``."""
    return Trajectory(obs=rollout.extras.obs, action=rollout.extras.action, true_reward=rollout.reward,
                      done=jnp.logical_or(rollout.terminated, rollout.truncated))


def relabel(spec: Spec, ensemble, norm: RewardNorm, rollout: ppo.Rollout) -> ppo.Rollout:
    """``rollout`` with its rewards replaced by the model's normalised r̂(s, a),
    all ``[T, B]`` steps in one batched pass."""
    env_input = rollout.extras
    return rollout.replace(reward=spec.model.reward(ensemble, norm, env_input.obs, env_input.action))


def learned_episode_returns(running: jax.Array, reward: jax.Array, done: jax.Array):
    """The learned-reward returns ``[T, B]`` of the episodes that end at each
    step (0 elsewhere), carrying each env's ``running`` return ``[B]`` across rollouts."""

    def one_step(total, step):
        reward, done = step
        total = total + reward
        return jnp.where(done, 0.0, total), jnp.where(done, total, 0.0)

    return jax.lax.scan(one_step, running, (reward, done))


def pick_queries(spec: Spec, ensemble, segs: Segments, key: jax.Array) -> tuple[Segments, Segments]:
    """The ``queries_per_iteration`` pairs to label among the candidate pairs
    (first half of ``segs`` against the second)."""
    config = spec.config
    C, K = config.num_candidates, config.queries_per_iteration
    left, right = jax.tree.map(lambda x: x[:C], segs), jax.tree.map(lambda x: x[C:], segs)
    if config.query_selection == "disagreement":
        pick = select_by_disagreement(spec.model, ensemble, left, right, K)
    else:
        pick = jax.random.permutation(key, C)[:K]
    return jax.tree.map(lambda x: x[pick], left), jax.tree.map(lambda x: x[pick], right)


def label(spec: Spec, state: State, left: Segments, right: Segments, key: jax.Array) -> LabelBuffer:
    """``state.labels`` with the queries the schedule allows this iteration
    answered (by the oracle, or by people: skipped queries teach nothing)."""
    config, hp = spec.config, state.hparams
    K = config.queries_per_iteration
    due = labels_due(config, state.iteration, spec.ppo.total_iterations)
    valid = jnp.arange(K) < jnp.clip(due - state.labels.count, 0, K)
    preference = oracle_preferences(key, left.true_return(), right.true_return(),
                                    hp.oracle_temperature, hp.oracle_tie_margin)
    if config.labels == "human":
        preference, answered = ask_labeller(spec.labeller, state.iteration, left, right, valid)
        valid = valid & answered
    return add_labels(state.labels, left, right, preference, valid)


def step(spec: Spec, state: State) -> tuple[State, dict[str, jax.Array]]:
    """One iteration: PPO on the learned reward, then queries, labels, and the
    reward model's fit and normalisation."""
    config, model, hp = spec.config, spec.model, state.hparams
    T, B = config.rollout_len, config.num_envs
    # state.hparams is the run's one set of hyperparameters: PPO's state keeps
    # its own copy (PPO's steps read it), refreshed here so that a change to
    # state.hparams.ppo mid-run (population-based training) reaches the learner.
    ppo_state = state.ppo.replace(hparams=hp.ppo)
    ppo_state, rollout = ppo.collect(spec.ppo, ppo_state)
    traj = trajectory(rollout)
    learned = relabel(spec, state.ensemble, state.norm, rollout)
    ppo_state, ppo_metrics = ppo.update(spec.ppo, ppo_state, learned)
    learned_return, ended = learned_episode_returns(state.learned_return, learned.reward, traj.done)
    rng, k_seg, k_pick, k_label, k_fit = jax.random.split(state.rng, 5)

    # Candidate pairs from this iteration's rollout, then the queries and their labels.
    segs = sample_segments(k_seg, traj, 2 * config.num_candidates, config.segment_len,
                           id_offset=state.iteration * T * B)
    segs = segs.replace(obs=segs.obs.reshape(segs.obs.shape[:2] + (model.obs_dim,)).astype(jnp.float32))
    pred_returns = model.segment_returns(state.ensemble, segs).mean(0)
    labels = label(spec, state, *pick_queries(spec, state.ensemble, segs, k_pick), k_label)

    # Fit the ensemble, refresh the normalisation on this rollout's (s, a).
    train_w, held_w = label_weights(labels, config.holdout_every)
    ensemble, opt_state, bt_loss = fit_ensemble(
        model, spec.optimizer, state.ensemble, state.reward_opt_state, labels.left, labels.right,
        labels.preference, train_w, k_fit, config.reward_updates_per_iteration,
        config.reward_batch_size, hp.preference_noise)
    norm = normalisation(config.reward_norm, model.members(ensemble, traj.obs, traj.action).mean(0))

    held_acc, held_n = label_accuracy(model, ensemble, labels.left, labels.right, labels.preference, held_w)
    train_acc, _ = label_accuracy(model, ensemble, labels.left, labels.right, labels.preference, train_w)
    metrics = {
        **ppo_metrics,  # its episode_return is the true reward's: PPO ran on the plain env
        "learned_episode_return": actor_critic.episode_metrics(ended, traj.done)["episode_return"],
        "labels": labels.count.astype(jnp.float32),
        "label_accuracy": held_acc,
        "heldout_labels": held_n,
        "train_label_accuracy": train_acc,
        "bt_loss": bt_loss,
        # Candidates were not trained on when these returns were predicted.
        "reward_correlation": correlation(pred_returns, segs.true_return()),
        "reward_scale": norm.scale,
    }
    state = State(ppo=ppo_state, ensemble=ensemble, reward_opt_state=opt_state, norm=norm,
                  labels=labels, rng=rng, hparams=hp, iteration=state.iteration + 1,
                  learned_return=learned_return)
    return state, jax.tree.map(lambda x: jnp.asarray(x, jnp.float32), metrics)


def policy_params(state: State):
    """What ``act`` needs: PPO's network and observation statistics."""
    return actor_critic.policy_params(state.ppo)


def evaluate(spec: Spec, state: State, key: jax.Array, num_episodes: int) -> jax.Array:
    """Returns under the env's TRUE reward (deterministic policy)."""
    return actor_critic.evaluate(spec.ppo, state.ppo, key, num_episodes)


# --------------------------------------------------------------------------- #
# Labels from people: the labeller the step asks is passed to make
# --------------------------------------------------------------------------- #


def with_labeller(agent: Agent, labeller: Callable) -> Agent:
    """``agent`` made again to ask ``labeller`` for its labels."""
    return make(agent.env, agent.env_params, agent.config, labeller=labeller)


def host_needs(config: Config | None = None) -> HostNeeds:
    """Human-labelled runs need people: one seed, and the run directory's labeller."""
    if config is None or config.labels != "human":
        return HostNeeds()
    return HostNeeds(human_labels=True, label_timeout=config.label_timeout,
                     with_labeller=with_labeller, make_kwargs={"labeller": no_labeller})


def make(env, env_params, config: Config = Config(), labeller: Callable | None = None) -> Agent:
    """Binds rm-ppo to an environment (validates ``config`` first).

    ``labeller``: with ``labels="human"``, the host function the step asks
    for labels (see :func:`ask_labeller`), usually
    ``jaxrl.feedback.HumanLabeller(run_dir)``; a ValueError without one.
    """
    spec = make_spec(env, env_params, config, labeller)
    bind = lambda fn: functools.partial(fn, spec)
    return Agent(name="rm-ppo", config=config, env=env, env_params=env_params, init=bind(init),
                 step=bind(step), act=functools.partial(actor_critic.act, spec.ppo),
                 policy_params=policy_params, evaluate=bind(evaluate),
                 default_hparams=config.hparams, env_steps_per_step=spec.ppo.batch_size)

"""Proximal Policy Optimization (Schulman et al. 2017, arXiv:1707.06347).

One ``step`` is one PPO iteration: ``num_envs`` environments run for
``rollout_len`` steps with the current policy, GAE(λ) turns the rollout into
advantages, and ``num_epochs`` passes of ``num_minibatches`` minibatch updates
optimise one of the paper's objectives:

- ``"clip"``: L^CLIP = E[min(r Â, clip(r, 1-ε, 1+ε) Â)]                (§3)
- ``"kl_adaptive"``: L^KLPEN = E[r Â − β KL[π_old, π]], and after the
  update β ← β/2 if d < d_targ/1.5, β ← 2β if d > 1.5 d_targ          (§4)
- ``"kl_fixed"``: the same penalty with a constant β.

Time limits are not terminal states: on truncation the advantage bootstraps
from the value of ``info["final_observation"]``; on termination it does not.

Numeric hyperparameters (learning rate, γ, λ, ε, coefficients, KL target,
base β, gradient-norm bound) live in the state as :class:`HParams` arrays,
so seeds and hyperparameter sweeps vmap together without recompiling; only
shapes (``num_envs``, ``rollout_len``, layer sizes, ...) are static. Every
step reads them, so changing ``state.hparams`` mid-run (population-based
training) takes effect at the next step.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct
from jax.flatten_util import ravel_pytree

from jaxrl import envs, ops
from jaxrl.agents.base import Agent, AgentConfig, config_requirer
from jaxrl.config import field, hparams_class, non_negative, one_of, positive, sizes, unit_interval
from jaxrl.mesh import split_over_data_axis
from jaxrl.networks import ACTIVATIONS, ActorCritic
from jaxrl.ops.counters import StepCounter

ACTION_SPACES = ("discrete", "continuous")
OBJECTIVES = ("clip", "kl_adaptive", "kl_fixed")
TORSOS = ("auto", "mlp", "minatar_cnn")


@dataclasses.dataclass(frozen=True)
class Config(AgentConfig):
    """PPO settings. Defaults are the classic CartPole configuration
    (4 envs x 128 steps, 4 epochs, 4 minibatches, ε = 0.2, λ = 0.95), which
    the paper's Atari settings scale down to, with Adam at 1e-3 annealed: with
    it both objectives solve CartPole-v1 in 5·10^5 steps."""

    num_envs: int = field(4, check=positive)
    """Parallel environments (vmapped)."""
    rollout_len: int = field(128, check=positive)
    """Environment steps per environment per iteration (T)."""
    num_epochs: int = field(4, check=positive)
    """Passes over each rollout."""
    num_minibatches: int = field(4, check=positive)
    """Minibatches per epoch; must divide num_envs * rollout_len."""
    learning_rate: float = field(1e-3, check=positive, swept=True)
    """Adam step size (annealed linearly to 0 over total_steps if anneal_lr). At
    CleanRL's 2.5e-4 a KL per update far below kl_target halves the adaptive β
    to nothing, and both objectives leave some CartPole seeds unsolved."""
    anneal_lr: bool = True
    """Decay the learning rate linearly to zero over total_steps."""
    total_steps: int = field(500_000, check=positive)
    """Environment steps the annealing schedule spans (the run's length)."""
    gamma: float = field(0.99, check=unit_interval, swept=True)
    """Discount factor γ."""
    gae_lambda: float = field(0.95, check=unit_interval, swept=True)
    """GAE λ."""
    clip_eps: float = field(0.2, check=positive, swept=True)
    """Clipping range ε of the clipped surrogate (and of the value clip)."""
    ent_coef: float = field(0.01, check=non_negative, swept=True)
    """Entropy bonus coefficient."""
    vf_coef: float = field(0.5, check=non_negative, swept=True)
    """Value-loss coefficient."""
    max_grad_norm: float = field(0.5, check=positive, swept=True)
    """Global gradient-norm bound."""
    objective: str = field("clip", check=one_of(*OBJECTIVES))
    """Policy objective: clip | kl_adaptive | kl_fixed."""
    kl_target: float = field(0.01, check=positive, swept=True)
    """d_targ of the adaptive KL penalty."""
    kl_beta: float = field(1.0, check=non_negative, swept=True)
    """KL coefficient β: constant (kl_fixed), or the base that kl_adaptive
    doubles and halves (β = kl_beta · 2^k); read every step, like every HParams field."""
    normalize_advantages: bool = True
    """Normalise advantages per minibatch to zero mean and unit std."""
    clip_value_loss: bool = False
    """Clip value updates to ±clip_eps around the rollout's values."""
    normalize_obs: bool = False
    """Normalise observations with running statistics held in the env state."""
    hidden_sizes: tuple[int, ...] = field((64, 64), check=sizes)
    """Hidden layer sizes of the actor and critic torsos."""
    activation: str = field("tanh", check=one_of(*ACTIVATIONS))
    """Hidden activation: tanh | relu | elu | gelu | silu | leaky_relu."""
    torso: str = field("auto", check=one_of(*TORSOS))
    """Network torso: auto (CNN for image observations) | mlp | minatar_cnn."""
    adam_eps: float = field(1e-5, check=positive)
    """Adam ε."""

    def validate(self) -> None:
        """Raises ValueError naming the first field whose value is not allowed."""
        super().validate()
        batch = self.num_envs * self.rollout_len
        config_requirer(self)(
            batch % self.num_minibatches == 0,
            "num_minibatches",
            f"a divisor of num_envs * rollout_len = {batch}",
        )


# Numeric hyperparameters carried in the state (leaves may be batched): the
# swept fields of Config, in declaration order.
HParams = hparams_class(Config)


@struct.dataclass
class State:
    """Everything a PPO run needs, as one pytree."""

    params: Any
    opt_state: optax.OptState
    env_state: Any
    obs: jax.Array
    rng: jax.Array
    hparams: HParams
    kl_beta_exponent: jax.Array
    """k of the current KL coefficient β = hparams.kl_beta · 2^k. The paper's
    rule only ever doubles or halves β, so kl_adaptive adapts k (state) while
    the base β stays a hyperparameter read every step: a population-based
    change of ``hparams.kl_beta`` takes effect at once (scaled by the
    adaptation so far). kl_fixed keeps k = 0, so β is ``hparams.kl_beta``."""
    iteration: jax.Array
    env_steps: StepCounter
    """Environment steps taken, exact past 2^31 (``int(state.env_steps)``)."""


class PolicyLossInputs(struct.PyTreeNode):
    """What a policy loss sees for one minibatch (flat ``[N]`` arrays).

    Attributes:
      log_prob: log π_θ(a|s) under the parameters being optimised.
      old_log_prob: log π_old(a|s) of the policy that collected the data.
      advantages: GAE advantages (normalised when ``normalize_advantages``).
      kl: KL[π_old(·|s) ‖ π_θ(·|s)] per sample.
      entropy: entropy of π_θ(·|s) per sample.
      hparams: the numeric hyperparameters (``clip_eps``, ...).
      kl_beta: the current KL-penalty coefficient β.
    """

    log_prob: jax.Array
    old_log_prob: jax.Array
    advantages: jax.Array
    kl: jax.Array
    entropy: jax.Array
    hparams: "HParams"
    kl_beta: jax.Array


def clip_objective(x: PolicyLossInputs) -> jax.Array:
    """L^CLIP of the paper's §3, as a loss to minimise."""
    return ops.ppo_clip_loss(x.log_prob, x.old_log_prob, x.advantages, x.hparams.clip_eps)


def kl_penalty_objective(x: PolicyLossInputs) -> jax.Array:
    """L^KLPEN of the paper's §4, as a loss to minimise."""
    return ops.kl_penalty_loss(x.log_prob, x.old_log_prob, x.advantages, x.kl, x.kl_beta)


class Rollout(struct.PyTreeNode):
    """Time-major ``[T, B, ...]`` experience from one iteration."""

    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    final_obs: jax.Array
    dist_params: Any
    episode_return: jax.Array
    episode_done: jax.Array


def make(env, env_params, config: Config = Config(), policy_loss=None) -> Agent:
    """Binds PPO to an environment. Validates ``config`` and the action space
    before anything is traced, so bad input fails fast with a clear message.

    ``policy_loss``: optional ``fn(PolicyLossInputs) -> scalar`` replacing the
    objective that ``config.objective`` selects (the value loss, entropy bonus
    and, for ``"kl_adaptive"``, the β rule stay). Build it from ``jaxrl.ops``.
    """
    config.validate()
    if policy_loss is not None and not callable(policy_loss):
        raise TypeError(f"ppo.make: policy_loss must be callable, got {type(policy_loss).__name__}")
    kind = envs.action_space_kind(env, env_params)
    obs_shape = envs.observation_shape(env, env_params)
    discrete = kind == "discrete"
    action_space = env.action_space(env_params)
    action_dim = action_space.n if discrete else int(jnp.prod(jnp.array(action_space.shape)))
    torso = config.torso
    if torso == "auto":
        torso = "minatar_cnn" if len(obs_shape) == 3 else "mlp"

    network = ActorCritic(
        action_dim=action_dim,
        discrete=discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        torso=torso,
        obs_ndim=len(obs_shape),
    )
    dist_cls = ops.Categorical if discrete else ops.DiagGaussian

    def distribution(policy_out):
        return dist_cls(policy_out) if discrete else dist_cls(*policy_out)

    # The agent acts in [-1, 1] on continuous spaces; the wrapper rescales and
    # clips to the env's bounds, so log-probs stay those of the sampled action.
    act_env = env if discrete else envs.RescaleAction(env)
    train_env = envs.BatchEnv(envs.EpisodeStats(act_env), config.num_envs)
    if config.normalize_obs:
        train_env = envs.NormalizeObservation(train_env)

    batch_size = config.num_envs * config.rollout_len
    minibatch_size = batch_size // config.num_minibatches
    total_iterations = max(1, -(-config.total_steps // batch_size))
    optimizer = optax.inject_hyperparams(optax.adam)(learning_rate=1.0, eps=config.adam_eps)
    is_kl = config.objective != "clip"
    objective = policy_loss or (kl_penalty_objective if is_kl else clip_objective)

    def init(key: jax.Array, hparams: HParams | None = None) -> State:
        hparams = config.hparams() if hparams is None else hparams
        key, k_params, k_env = jax.random.split(key, 3)
        dummy_obs = jnp.zeros(obs_shape, jnp.float32)
        params = network.init(k_params, dummy_obs)
        opt_state = optimizer.init(ravel_pytree(params)[0])
        opt_state = ops.with_learning_rate(opt_state, hparams.learning_rate)
        obs, env_state = train_env.reset(k_env, env_params)
        return State(
            params=params,
            opt_state=opt_state,
            env_state=env_state,
            obs=obs,
            rng=key,
            hparams=hparams,
            kl_beta_exponent=jnp.zeros((), jnp.float32),
            iteration=jnp.zeros((), jnp.int32),
            env_steps=StepCounter.zeros(),
        )

    def collect(state: State) -> tuple[State, Rollout]:
        # The rollout's randomness is drawn in two calls before the loop: on a
        # CPU each PRNG call inside the step is a small loop of its own and
        # cost more than the policy's forward pass.
        rng, k_noise, k_env = jax.random.split(state.rng, 3)
        noise = dist_cls.noise(k_noise, (config.rollout_len, config.num_envs, action_dim))
        env_keys = jax.random.split(k_env, (config.rollout_len, config.num_envs))

        def one_step(carry, step_randomness):
            params, env_state, obs = carry
            action_noise, step_keys = step_randomness
            policy_out, _ = network.apply(params, obs)  # the value head is dead code here
            dist = distribution(policy_out)
            action = dist.sample_from_noise(action_noise)
            log_prob = dist.log_prob(action)
            next_obs, env_state, reward, terminated, truncated, info = train_env.step(
                step_keys, env_state, action, env_params
            )
            transition = dict(
                obs=obs,
                action=action,
                log_prob=log_prob,
                reward=reward.astype(jnp.float32),
                terminated=terminated,
                truncated=truncated,
                final_obs=info["final_observation"],
                dist_params=policy_out,
                episode_return=info["episode_return"],
                episode_done=info["episode_done"],
            )
            return (params, env_state, next_obs), transition

        (_, env_state, obs), steps = jax.lax.scan(
            one_step, (state.params, state.env_state, state.obs), (noise, env_keys)
        )
        # V(s_t) for the whole rollout in one batched forward pass rather than
        # T small ones inside the loop (where the value head is dead code):
        # the same parameters give the same values, and on a CPU one large dot
        # beats many tiny ones.
        rollout = Rollout(value=network.apply(state.params, steps["obs"])[1], **steps)
        state = state.replace(env_state=env_state, obs=obs, rng=rng)
        return state, rollout

    def advantages_and_returns(params, rollout: Rollout, hp: HParams):
        # V(s_{t+1}) from the true next observation: equals V(obs_{t+1}) except
        # at episode ends, where auto-reset has replaced it. Only truncated
        # steps use it (termination zeroes the discount).
        next_values = network.apply(params, rollout.final_obs)[1]
        discounts = hp.gamma * (1.0 - rollout.terminated.astype(jnp.float32))
        episode_ends = jnp.logical_or(rollout.terminated, rollout.truncated)
        return ops.gae(
            rollout.reward,
            rollout.value,
            discounts,
            next_values[-1],
            hp.gae_lambda,
            next_values=next_values,
            episode_ends=episode_ends,
        )

    def loss_fn(params, batch, hp: HParams, kl_beta):
        policy_out, value = network.apply(params, batch["obs"])
        dist = distribution(policy_out)
        old_dist = distribution(batch["dist_params"])
        log_prob = dist.log_prob(batch["action"])
        adv = batch["advantages"]
        if config.normalize_advantages:
            adv = (adv - adv.mean()) / (adv.std() + 1e-8)
        kl = old_dist.kl(dist)
        entropy_per_sample = dist.entropy()
        inputs = PolicyLossInputs(log_prob=log_prob, old_log_prob=batch["log_prob"], advantages=adv,
                                  kl=kl, entropy=entropy_per_sample, hparams=hp, kl_beta=kl_beta)
        policy_loss = objective(inputs)
        if config.clip_value_loss:
            value_loss = ops.clipped_value_loss(value, batch["value"], batch["returns"], hp.clip_eps)
        else:
            value_loss = ops.squared_loss(value, batch["returns"])
        entropy = entropy_per_sample.mean()
        total = policy_loss + hp.vf_coef * value_loss - hp.ent_coef * entropy
        stats = {
            "policy_loss": policy_loss,
            "value_loss": value_loss,
            "entropy": entropy,
            "approx_kl": kl.mean(),
            "clip_fraction": ops.clip_fraction(log_prob, batch["log_prob"], hp.clip_eps),
        }
        return total, stats

    def update_minibatch(carry, batch):
        params, opt_state, hp, kl_beta = carry
        grads, stats = jax.grad(loss_fn, has_aux=True)(params, batch, hp, kl_beta)
        # Clipping and Adam run on one flat vector: a few large operations
        # instead of a few per parameter array, which on a CPU cuts about a
        # sixth of a small minibatch update's time.
        flat_grads, unravel = ravel_pytree(grads)
        grad_norm = ops.global_norm(flat_grads)  # logged before clipping: shows when clipping bites
        flat_grads = ops.clip_by_global_norm(flat_grads, hp.max_grad_norm)
        updates, opt_state = optimizer.update(flat_grads, opt_state)
        params = optax.apply_updates(params, unravel(updates))
        return (params, opt_state, hp, kl_beta), {**stats, "grad_norm": grad_norm}

    def update_epoch(carry, key):
        params, opt_state, hp, kl_beta, data = carry
        permutation = jax.random.permutation(key, batch_size)
        minibatches = jax.tree.map(
            lambda x: x[permutation].reshape((config.num_minibatches, minibatch_size) + x.shape[1:]),
            data,
        )
        minibatches = split_over_data_axis(minibatches, batch_axis=1)
        (params, opt_state, _, _), stats = jax.lax.scan(
            update_minibatch, (params, opt_state, hp, kl_beta), minibatches
        )
        return (params, opt_state, hp, kl_beta, data), stats

    def step(state: State) -> tuple[State, dict[str, jax.Array]]:
        hp = state.hparams
        state, rollout = collect(state)
        advantages, returns = advantages_and_returns(state.params, rollout, hp)
        flat = lambda x: x.reshape((batch_size,) + x.shape[2:])
        data = {
            "obs": flat(rollout.obs),
            "action": flat(rollout.action),
            "log_prob": flat(rollout.log_prob),
            "value": flat(rollout.value),
            "dist_params": jax.tree.map(flat, rollout.dist_params),
            "advantages": flat(advantages),
            "returns": flat(returns),
        }
        learning_rate = hp.learning_rate
        if config.anneal_lr:
            progress = state.iteration.astype(jnp.float32) / total_iterations
            learning_rate = learning_rate * jnp.maximum(1.0 - progress, 0.0)
        opt_state = ops.with_learning_rate(state.opt_state, learning_rate)

        kl_beta = current_kl_beta(hp, state.kl_beta_exponent)
        rng, *epoch_keys = jax.random.split(state.rng, config.num_epochs + 1)
        (params, opt_state, _, _, _), stats = jax.lax.scan(
            update_epoch,
            (state.params, opt_state, hp, kl_beta, data),
            jnp.stack(epoch_keys),
        )

        kl_beta_exponent = state.kl_beta_exponent
        if config.objective == "kl_adaptive":
            # d = E[KL[π_old, π_new]] over the whole batch, after the update.
            new_out = network.apply(params, data["obs"])[0]
            d = distribution(data["dist_params"]).kl(distribution(new_out)).mean()
            kl_beta_exponent += jnp.log2(ops.adaptive_kl_beta(1.0, d, hp.kl_target))
        next_kl_beta = current_kl_beta(hp, kl_beta_exponent)

        done = rollout.episode_done.astype(jnp.float32)
        episodes = done.sum()
        metrics = {k: v.mean() for k, v in stats.items()}
        metrics.update(
            episode_return=jnp.where(
                episodes > 0, (rollout.episode_return * done).sum() / jnp.maximum(episodes, 1.0), 0.0
            ),
            episodes_completed=episodes,
            kl_beta=next_kl_beta,
            learning_rate=learning_rate,
            explained_variance=_explained_variance(rollout.value, returns),
        )
        state = state.replace(
            params=params,
            opt_state=opt_state,
            rng=rng,
            kl_beta_exponent=kl_beta_exponent,
            iteration=state.iteration + 1,
            env_steps=state.env_steps.add(batch_size),
        )
        return state, jax.tree.map(lambda x: x.astype(jnp.float32), metrics)

    def policy_params(state: State):
        return {"network": state.params, "obs_norm": envs.obs_norm_stats(state.env_state)}

    def act(params, obs: jax.Array, key: jax.Array, deterministic: bool = False) -> jax.Array:
        """Action for ``agent.env``-shaped observations (continuous actions
        are in [-1, 1], which :class:`jaxrl.envs.RescaleAction` maps to the
        env's bounds). Works for one observation or a batch."""
        if params["obs_norm"] is not None:
            obs = envs.normalize_obs(params["obs_norm"], obs)
        dist = distribution(network.apply(params["network"], obs)[0])
        return dist.mode() if deterministic else dist.sample(key)

    def evaluate(state: State, key: jax.Array, num_episodes: int) -> jax.Array:
        params = policy_params(state)
        policy = lambda obs, k: act(params, obs, k, deterministic=True)
        return envs.episode_returns(act_env, env_params, policy, key, num_episodes).returns

    return Agent(
        name="ppo",
        config=config,
        env=env,
        env_params=env_params,
        init=init,
        step=step,
        act=act,
        policy_params=policy_params,
        evaluate=evaluate,
        default_hparams=config.hparams,
        env_steps_per_step=batch_size,
    )



def current_kl_beta(hparams: HParams, exponent: jax.Array) -> jax.Array:
    """β = hparams.kl_beta · 2^exponent (see ``State.kl_beta_exponent``)."""
    return hparams.kl_beta * jnp.exp2(exponent)


def _explained_variance(values: jax.Array, returns: jax.Array) -> jax.Array:
    return 1.0 - jnp.var(returns - values) / (jnp.var(returns) + 1e-8)

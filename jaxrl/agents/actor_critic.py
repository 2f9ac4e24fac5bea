"""The actor-critic pieces PPO and IMPALA (and so A2C) share: the network
built from a config's ``hidden_sizes``/``activation``/``torso``, the action
distribution of its policy output, acting, deterministic evaluation, the
linearly annealed learning rate, the per-iteration episode metrics, and the
static spec an on-policy agent's functions are bound to.

Everything here is a module-level pure function over static specs: a
:class:`Spec` (the flax module, the action space, the env actions are taken
in) and an agent's :class:`OnPolicySpec` around it::

    ac = actor_critic.build(env, env_params, config)
    params = actor_critic.init_params(ac, key)
    action = actor_critic.network_action(ac, params, obs, key)

Action spaces: ``Discrete`` (a categorical), ``Box`` (a diagonal Gaussian)
and ``MultiDiscrete`` (a factorised categorical: the head outputs
``sum(nvec)`` logits, one block per dimension). An env's action mask
(:mod:`jaxrl.agents.masks`) is split from each observation where it enters
(:func:`split_observation`) and masks the logits of every distribution built
from it (:func:`distribution`): in sampling, log-probs, entropies and KLs.

Recurrent cores (``config.core`` of ``lstm`` or ``gru``): the network is a
:class:`jaxrl.networks.RecurrentActorCritic`, whose state (the *carry*,
``[B, ...]``) the agents keep in their state and reset to zeros where an
episode ends, after the step that ended it, so that the first observation of
the next episode meets a fresh state. :func:`unroll` replays a rollout
``[T, B, ...]`` from its start carry with the same resets (truncated BPTT over
the rollout). ``act`` then takes and returns the carry (:func:`act`).
"""

from __future__ import annotations

from typing import Any, Callable

import jax
import jax.numpy as jnp
from flax import struct

from jaxrl import envs, networks, ops
from jaxrl.agents import base, fields, masks
from jaxrl.agents.base import Agent
from jaxrl.networks import (
    ActorCritic,
    RecurrentActorCritic,
    initial_core_carry,
    leaf_shapes,
    reset_core_carry,
)

ACTION_SPACES = ("discrete", "continuous", envs.MULTI_DISCRETE)


def static_field() -> Any:
    """A spec's field: part of the pytree's static structure, never a leaf."""
    return struct.field(pytree_node=False)


class Spec(struct.PyTreeNode):
    """Static description of an actor-critic for one environment.

    Attributes:
      network: the flax module; ``apply(params, obs) -> (policy_out, value)``.
      discrete: categorical policy, factorised for a MultiDiscrete (else a
        diagonal Gaussian in [-1, 1]).
      action_dim: the policy head's width: number of actions (``sum(nvec)``
        for a MultiDiscrete), or the size of a continuous action.
      obs_shape: one observation's shape as the network sees it (less any
        action mask); a dict of shapes for a Dict observation.
      act_env: the env actions are taken in (:class:`jaxrl.envs.RescaleAction`
        around a continuous one, so log-probs stay those of the sampled action).
      env_params: the env's parameters (for evaluation).
      nvec: a MultiDiscrete's choices per dimension (None otherwise).
      mask: how observations carry an action mask (kind None: they don't).
      core: the recurrent core (``"none"``: feed-forward, ``network`` is an
        :class:`ActorCritic`; else a :class:`RecurrentActorCritic`).
      core_size: the core's units (0 without a core).
    """

    network: ActorCritic = static_field()
    discrete: bool = static_field()
    action_dim: int = static_field()
    obs_shape: tuple[int, ...] = static_field()
    act_env: Any = static_field()
    env_params: Any = static_field()
    nvec: tuple[int, ...] | None = struct.field(pytree_node=False, default=None)
    mask: masks.MaskLayout = struct.field(pytree_node=False, default=masks.NO_MASK)
    core: str = struct.field(pytree_node=False, default="none")
    core_size: int = struct.field(pytree_node=False, default=0)

    @property
    def recurrent(self) -> bool:
        return self.core != "none"

    @property
    def joint(self) -> bool:
        """A MultiDiscrete under a joint mask: the policy is a categorical over
        every combination of choices."""
        return self.nvec is not None and self.mask.kind == masks.JOINT

    @property
    def noise_width(self) -> int:
        """Entries of one action's sampling noise: one per logit of the
        distribution the policy samples from."""
        return self.mask.flat_size if self.joint else self.action_dim


def resolve_torso(torso: str, obs_shape: tuple[int, ...]) -> str:
    """``"auto"`` picks the MinAtar CNN for image (H, W, C) observations, else an MLP."""
    return networks.resolve_torso(torso, obs_shape)


def build(env, env_params, config) -> Spec:
    """The actor-critic for ``env`` from ``config.hidden_sizes``,
    ``config.activation`` and ``config.torso``."""
    kind = envs.action_space_kind(env, env_params)
    discrete = kind != "continuous"
    nvec = tuple(envs.action_dims(env, env_params)) if kind == envs.MULTI_DISCRETE else None
    obs_shape = masks.network_observation_shapes(env, env_params)
    dict_shapes = leaf_shapes(obs_shape) if isinstance(obs_shape, dict) else None
    action_space = env.action_space(env_params)
    if nvec is not None:
        action_dim = sum(nvec)
    elif discrete:
        action_dim = action_space.n
    else:
        action_dim = int(jnp.prod(jnp.array(action_space.shape)))
    core = getattr(config, "core", "none")
    core_size = config.core_size if core != "none" else 0
    network_kwargs = dict(
        action_dim=action_dim,
        discrete=discrete,
        hidden_sizes=tuple(config.hidden_sizes),
        activation=config.activation,
        # A Dict observation's encoder convolves its image keys unless torso is "mlp".
        torso=fields.torso_for(config, obs_shape),
        obs_ndim=len(obs_shape) if dict_shapes is None else 1,
        dict_shapes=dict_shapes,
    )
    if core == "none":
        network = ActorCritic(**network_kwargs)
    else:
        network = RecurrentActorCritic(core=core, core_size=core_size, **network_kwargs)
    act_env = env if discrete else envs.RescaleAction(env)
    return Spec(network=network, discrete=discrete, action_dim=action_dim, obs_shape=obs_shape,
                act_env=act_env, env_params=env_params, nvec=nvec,
                mask=masks.mask_layout(env, env_params), core=core, core_size=core_size)


def init_params(ac: Spec, key: jax.Array) -> Any:
    """Fresh network parameters."""
    example = jax.tree.map(lambda shape: jnp.zeros(shape, jnp.float32), ac.obs_shape,
                           is_leaf=lambda x: isinstance(x, tuple))
    if ac.recurrent:
        return ac.network.init(key, initial_carry(ac), example)
    return ac.network.init(key, example)


# ---------------------------------------------------------------- recurrent cores


def initial_carry(ac: Spec, batch_shape: tuple[int, ...] = ()) -> Any:
    """The core's zero state for ``batch_shape`` sequences (what every episode starts from)."""
    return initial_core_carry(ac.core, ac.core_size, batch_shape)


def reset_carry(carry: Any, episode_end: jax.Array) -> Any:
    """``carry`` set back to the initial state where ``episode_end`` ``[B]``."""
    return reset_core_carry(carry, episode_end)


def embed(ac: Spec, params: Any, obs: Any) -> jax.Array:
    """The core's inputs for network observations with any leading axes: the
    embedding projected onto the core's gates, the part of the core that does
    not depend on its state (so a rollout's is one batched product)."""
    return ac.network.apply(params, obs, method="embed")


def core_step(ac: Spec, params: Any, carry: Any, features: jax.Array) -> tuple[Any, jax.Array]:
    """One step of the core: ``(carry after, core output)``."""
    return ac.network.apply(params, carry, features, method="core_step")


def heads(ac: Spec, params: Any, hidden: jax.Array) -> tuple[Any, jax.Array]:
    """``(policy_out, value)`` of core outputs with any leading axes."""
    return ac.network.apply(params, hidden, method="heads")


def unroll(ac: Spec, params: Any, carry: Any, obs: Any, episode_end: jax.Array):
    """The core run over network observations ``[T, B, ...]`` from ``carry``
    ``[B, ...]``, reset after every step where ``episode_end`` ``[T, B]`` (as
    the collection did). Returns ``(carry after the last step (reset where it
    ended an episode), core outputs [T, B, core_size], the carry after each
    step before its reset [T, B, ...])``; the last two are what the value of
    a step's true next observation needs (:func:`next_step_values`).

    The embedding (with the core's input projection) and the heads run
    batched over all ``T * B`` steps; only the core's recurrent half is
    sequential."""
    features = embed(ac, params, obs)

    def one_step(carry, inputs):
        x, end = inputs
        carry, hidden = core_step(ac, params, carry, x)
        return reset_carry(carry, end), (hidden, carry)

    carry, (hidden, carries) = jax.lax.scan(one_step, carry, (features, episode_end))
    return carry, hidden, carries


def sequence_outputs(ac: Spec, params: Any, carry: Any, obs: Any, episode_end: jax.Array):
    """``(policy_out, value)`` ``[T, B, ...]`` of the network replaying a rollout
    from its start ``carry`` (see :func:`unroll`)."""
    return heads(ac, params, unroll(ac, params, carry, obs, episode_end)[1])


def next_step_values(ac: Spec, params: Any, carries: Any, next_obs: Any) -> jax.Array:
    """V of each step's next observation ``[..., obs]`` seen from the core state
    the step left (``carries``, before any reset): the bootstrap value of a
    truncated episode, whose next observation auto-reset has replaced. One
    batched core step over all steps."""
    hidden = core_step(ac, params, carries, embed(ac, params, next_obs))[1]
    return heads(ac, params, hidden)[1]


def recurrent_action(ac: Spec, params: Any, carry: Any, obs: Any, key: jax.Array,
                     deterministic: bool = False) -> tuple[jax.Array, Any]:
    """``(action, carry after)`` of a recurrent network for env observations
    (an action mask in them is obeyed)."""
    network_obs, mask = split_observation(ac, obs)
    carry, (policy_out, _) = ac.network.apply(params, carry, network_obs)
    dist = distribution(ac, policy_out, mask)
    return (dist.mode() if deterministic else dist.sample(key)), carry


def split_observation(ac: Spec, obs: Any) -> tuple[jax.Array, jax.Array | None]:
    """``(network input, flat action mask or None)`` of env observations."""
    return masks.split_observation(ac.mask, obs)


def distribution(ac: Spec, policy_out: Any, mask: jax.Array | None = None):
    """The action distribution of a policy output (logits, or ``(mean,
    log_std)``) under the flat action ``mask`` (None: every action legal)."""
    if not ac.discrete:
        return ops.DiagGaussian(*policy_out)
    if ac.joint:
        return ops.JointCategorical(ops.masked_logits(ops.joint_logits(policy_out, ac.nvec), mask),
                                    ac.nvec)
    logits = policy_out if mask is None else ops.masked_logits(policy_out, mask)
    if ac.nvec is not None:
        return ops.FactorisedCategorical(logits, ac.nvec)
    return ops.Categorical(logits)


def sampling_noise(ac: Spec, key: jax.Array, batch_shape: tuple[int, ...]) -> jax.Array:
    """Noise for ``sample_from_noise`` of a ``batch_shape`` of actions, drawn in one call."""
    noise = ops.DiagGaussian.noise if not ac.discrete else ops.Categorical.noise
    return noise(key, tuple(batch_shape) + (ac.noise_width,))


def policy_distribution(ac: Spec, params: Any, obs: jax.Array, mask: jax.Array | None = None):
    """π(·|obs) under network ``params`` (``obs`` as the network sees it, and
    the flat action ``mask``)."""
    return distribution(ac, ac.network.apply(params, obs)[0], mask)


def values(ac: Spec, params: Any, obs: jax.Array) -> jax.Array:
    """V(obs) under network ``params``."""
    return ac.network.apply(params, obs)[1]


def network_action(ac: Spec, params: Any, obs: jax.Array, key: jax.Array,
                   deterministic: bool = False) -> jax.Array:
    """The policy's mode (``deterministic``) or a sample, from network
    ``params``, for env observations (an action mask in them is obeyed)."""
    dist = policy_distribution(ac, params, *split_observation(ac, obs))
    return dist.mode() if deterministic else dist.sample(key)


def policy_params(state: Any) -> dict[str, Any]:
    """What :func:`act` needs from an agent state with ``params`` and
    ``env_state``: the network and the observation-normalisation statistics
    (None without :class:`jaxrl.envs.NormalizeObservation`)."""
    return {"network": state.params, "obs_norm": envs.obs_norm_stats(state.env_state)}


class OnPolicySpec(struct.PyTreeNode):
    """What an on-policy agent's run holds fixed: its config, the
    actor-critic, the batched training env and the optimiser."""

    config: Any = static_field()
    ac: Spec = static_field()
    train_env: Any = static_field()
    optimizer: Any = static_field()

    @property
    def batch_size(self) -> int:
        """Environment steps per iteration."""
        return self.config.num_envs * self.config.rollout_len

    @property
    def total_iterations(self) -> int:
        """Iterations the learning-rate schedule spans."""
        return max(1, -(-self.config.total_steps // self.batch_size))


def act(spec: OnPolicySpec, params: dict[str, Any], obs: jax.Array, key: jax.Array,
        deterministic: bool = False, carry: Any = None):
    """Action for ``agent.env``-shaped observations (continuous actions are
    in [-1, 1], which :class:`jaxrl.envs.RescaleAction` maps to the env's
    bounds), from :func:`policy_params`. One observation or a batch.

    A recurrent policy (``config.core`` not ``none``) needs its state:
    ``act(..., carry=carry)`` returns ``(action, carry after)``. Start from
    ``agent.initial_carry(batch_shape)`` and set it back to that where an
    episode ends (:func:`reset_carry`); a feed-forward policy takes no carry."""
    if spec.ac.recurrent != (carry is not None):
        core = spec.ac.core
        raise ValueError(
            f"act: core={core!r} " + (
                "policies carry a state: pass carry=agent.initial_carry(batch_shape) and "
                "take (action, carry) back" if spec.ac.recurrent else
                "policies are feed-forward: allowed carry: None"))
    if params["obs_norm"] is not None:
        obs = envs.normalize_obs(params["obs_norm"], obs)
    if carry is not None:
        return recurrent_action(spec.ac, params["network"], carry, obs, key, deterministic)
    return network_action(spec.ac, params["network"], obs, key, deterministic)


def evaluate(spec: OnPolicySpec, state: Any, key: jax.Array, num_episodes: int) -> jax.Array:
    """Undiscounted returns of ``num_episodes`` episodes of the deterministic
    policy (a recurrent one starting each episode from the initial carry)."""
    params = policy_params(state)
    if spec.ac.recurrent:
        policy = lambda obs, k, carry: act(spec, params, obs, k, deterministic=True, carry=carry)
        return envs.episode_returns(spec.ac.act_env, spec.ac.env_params, policy, key,
                                    num_episodes,
                                    policy_state=initial_carry(spec.ac, (num_episodes,))).returns
    policy = lambda obs, k: act(spec, params, obs, k, deterministic=True)
    return envs.episode_returns(spec.ac.act_env, spec.ac.env_params, policy, key,
                                num_episodes).returns


def annealed_learning_rate(learning_rate: jax.Array, iteration: jax.Array,
                           total_iterations: int, anneal: bool) -> jax.Array:
    """``learning_rate`` decayed linearly to zero over ``total_iterations``
    (unchanged when not ``anneal``)."""
    if not anneal:
        return learning_rate
    progress = jnp.asarray(iteration, jnp.float32) / total_iterations
    return learning_rate * jnp.maximum(1.0 - progress, 0.0)


def episode_metrics(episode_return: jax.Array, episode_done: jax.Array) -> dict[str, jax.Array]:
    """Mean return of the episodes that ended in a rollout (0 if none) and their count."""
    done = episode_done.astype(jnp.float32)
    episodes = done.sum()
    mean_return = jnp.where(
        episodes > 0, (episode_return * done).sum() / jnp.maximum(episodes, 1.0), 0.0
    )
    return {"episode_return": mean_return, "episodes_completed": episodes}


def explained_variance(values: jax.Array, targets: jax.Array) -> jax.Array:
    """1 − Var[targets − values] / Var[targets]: 1 for a perfect critic, 0 for
    a constant one."""
    return 1.0 - jnp.var(targets - values) / (jnp.var(targets) + 1e-8)


def bind_agent(name: str, spec: OnPolicySpec, env, env_params, *, init: Callable,
               step: Callable) -> Agent:
    """The :class:`Agent` of an on-policy module's ``init(spec, ...)`` and
    ``step(spec, ...)``, with this module's acting and evaluation, bound to ``spec``."""
    return base.bind(name, spec, env, env_params, init=init, step=step, act=act,
                     evaluate=evaluate, policy_params=policy_params,
                     env_steps_per_step=spec.batch_size,
                     initial_carry=(lambda batch_shape=(): initial_carry(spec.ac, batch_shape))
                     if spec.ac.recurrent else None)

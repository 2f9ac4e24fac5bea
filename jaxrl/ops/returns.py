"""Return and advantage estimators: time-major, one reverse ``lax.scan`` each.

Conventions shared by every function in this module:

* Arrays are time-major: ``[T]`` or ``[T, *batch]`` (usually ``[T, B]``).
  ``values[t]`` is V(s_t) for t in [0, T); ``bootstrap_value`` is V(s_T) and
  has the batch shape (``values.shape[1:]``).
* ``discounts[t]`` is γ·(1 − terminated_t), built once by the caller. A zero
  discount ends the episode at step t: nothing after t leaks into step t.
* ``rewards[t]`` is the reward received for the action taken at s_t.
* Every output is a *target* and is wrapped in ``lax.stop_gradient``: the
  kernels never let gradients flow into the values, rewards or importance
  ratios they were computed from. Differentiate the loss that consumes them.
* The output dtype is the dtype of ``values`` (``rewards`` for
  ``discounted_returns``).

Truncation (time limits). gymnax 1.0 auto-resets, so at a truncated step
``values[t + 1]`` belongs to a *new* episode, and the correct bootstrap is
V(final_observation). The kernels only see discounts, so the caller either
uses ``gae(..., next_values=..., episode_ends=...)``, or, for any kernel here,
folds the bootstrap into the reward and cuts the trace:
``rewards[t] += γ·V(final_obs_t)`` on steps that are truncated *and not
terminated*, and ``discounts[t] = 0`` on every truncated or terminated step.
Both give the same targets. A terminated step is never bootstrapped, even when
``truncated`` is also set: gymnax sets both flags when an episode terminates
at its last allowed step (e.g. every DeepSea episode), so bootstrapping on
``truncated`` alone adds γ·V of a terminal state to the return.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import chex
import jax
import jax.numpy as jnp
import numpy as np

Array = jax.Array
Numeric = chex.Numeric


class VTraceOutput(NamedTuple):
    """V-trace targets.

    Attributes:
      vs: value targets v_s, ``[T, *batch]``.
      pg_advantages: ρ̄_pg-clipped advantages for the policy gradient,
        ``[T, *batch]``.
    """

    vs: Array
    pg_advantages: Array


def _check_time_major(*arrays: Array) -> None:
    if arrays[0].ndim < 1:
        raise ValueError(f"expected time-major arrays [T, *batch], got shape {arrays[0].shape}")
    if arrays[0].shape[0] == 0:
        raise ValueError(f"expected at least one time step (T >= 1), got shape {arrays[0].shape}")
    chex.assert_equal_shape(arrays)
    chex.assert_type(arrays, float)


def check_in_range(name: str, value: Any, low: float, high: float = float("inf")) -> None:
    """ValueError unless every element of ``value`` lies in [low, high]. Traced
    values cannot be read while tracing and are left to the caller."""
    if value is None or isinstance(value, jax.core.Tracer):
        return
    array = np.asarray(value, dtype=np.float64)
    if not np.all((array >= low) & (array <= high)):
        bad = float(array[~((array >= low) & (array <= high))].flat[0])
        allowed = f"in [{low:g}, {high:g}]" if high < float("inf") else f">= {low:g}"
        raise ValueError(f"{name}={bad!r} is invalid: expected a number {allowed}")


def _check_bootstrap(bootstrap_value: Array, values: Array) -> None:
    chex.assert_shape(bootstrap_value, values.shape[1:])


def _next_values(values: Array, bootstrap_value: Array) -> Array:
    """V(s_{t+1}) for t in [0, T): values shifted left, bootstrap at the end."""
    return jnp.concatenate([values[1:], bootstrap_value[None].astype(values.dtype)], axis=0)


def _as_coefficient(x: Numeric, like: Array) -> Array:
    """A scalar or broadcastable hyperparameter as an array shaped like ``like``."""
    return jnp.broadcast_to(jnp.asarray(x, like.dtype), like.shape)


def _reverse_linear_recurrence(xs: Array, coefficients: Array, final: Array) -> Array:
    """y_t = x_t + c_t·y_{t+1} for t = T−1 … 0, with y_T = ``final``.

    Every estimator here except n-step is this recurrence with different
    inputs, so it lives in one place.
    """

    def step(next_y, x_and_c):
        x, c = x_and_c
        y = x + c * next_y
        return y, y

    _, ys = jax.lax.scan(step, final.astype(xs.dtype), (xs, coefficients), reverse=True)
    return ys


def discounted_returns(
    rewards: Array, discounts: Array, bootstrap_value: Array | None = None
) -> Array:
    """Discounted returns of a trajectory.

        G_t = r_t + γ_t·G_{t+1},   G_T = bootstrap_value (0 when omitted).

    Args:
      rewards: r_t, ``[T, *batch]``.
      discounts: γ_t = γ·(1 − terminated_t), ``[T, *batch]``.
      bootstrap_value: G_T, e.g. V(s_T), ``[*batch]``; zeros when ``None``.

    Returns:
      G_t, ``[T, *batch]``, stop-gradient'ed.
    """
    rewards, discounts = jnp.asarray(rewards), jnp.asarray(discounts)
    _check_time_major(rewards, discounts)
    if bootstrap_value is None:
        bootstrap_value = jnp.zeros(rewards.shape[1:], rewards.dtype)
    bootstrap_value = jnp.asarray(bootstrap_value)
    _check_bootstrap(bootstrap_value, rewards)
    returns = _reverse_linear_recurrence(rewards, discounts, bootstrap_value)
    return jax.lax.stop_gradient(returns)


def gae(
    rewards: Array,
    values: Array,
    discounts: Array,
    bootstrap_value: Array | None,
    lambda_: Numeric,
    *,
    next_values: Array | None = None,
    episode_ends: Array | None = None,
) -> tuple[Array, Array]:
    """Generalized advantage estimation (Schulman et al. 2016; PPO eq. 11–12).

        δ_t = r_t + γ_t·V'_t − V(s_t)
        Â_t = δ_t + γ_t·λ·(1 − end_t)·Â_{t+1},   Â_T = 0
        returns_t = Â_t + V(s_t)                 (the TD(λ) value target)

    where V'_t = V(s_{t+1}). By default V'_t is ``values[t + 1]`` (and
    ``bootstrap_value`` at t = T−1) and ``end_t = 0``, so the trace is cut by
    the discounts alone. Pass ``next_values`` when the true next state's value
    differs from ``values[t + 1]`` (auto-reset: at a truncated step it is
    V(final_observation)), together with ``episode_ends`` so the trace does
    not run into the next episode.

    Args:
      rewards: r_t, ``[T, *batch]``.
      values: V(s_t), ``[T, *batch]``.
      discounts: γ_t = γ·(1 − terminated_t), ``[T, *batch]``.
      bootstrap_value: V(s_T), ``[*batch]``. Unused (may be ``None``) when
        ``next_values`` is given.
      lambda_: λ, a scalar or an array broadcastable to ``[T, *batch]``;
        may be traced.
      next_values: optional V(s_{t+1}) per step, ``[T, *batch]``.
      episode_ends: optional ``[T, *batch]`` bool/float, 1 where the episode
        ended at step t by termination *or* truncation. Pass it together with
        ``next_values``: alone, a truncated step would still bootstrap from
        ``values[t + 1]``, the first state of the next episode.

    Returns:
      ``(advantages, returns)``, each ``[T, *batch]``, both stop-gradient'ed.
    """
    check_in_range("lambda_", lambda_, 0.0, 1.0)
    rewards, values, discounts = map(jnp.asarray, (rewards, values, discounts))
    _check_time_major(rewards, values, discounts)
    if next_values is None:
        if bootstrap_value is None:
            raise ValueError("gae needs bootstrap_value when next_values is not given")
        bootstrap_value = jnp.asarray(bootstrap_value)
        _check_bootstrap(bootstrap_value, values)
        next_values = _next_values(values, bootstrap_value)
    else:
        next_values = jnp.asarray(next_values)
        _check_time_major(values, next_values)

    trace = discounts * _as_coefficient(lambda_, values)
    if episode_ends is not None:
        episode_ends = jnp.asarray(episode_ends)
        chex.assert_equal_shape([episode_ends, values])
        trace = trace * (1 - episode_ends.astype(values.dtype))

    deltas = rewards + discounts * next_values - values
    advantages = _reverse_linear_recurrence(deltas, trace, jnp.zeros_like(values[0]))
    advantages = jax.lax.stop_gradient(advantages)
    returns = jax.lax.stop_gradient(advantages + values)
    return advantages, returns


def td_lambda(
    rewards: Array,
    values: Array,
    discounts: Array,
    bootstrap_value: Array,
    lambda_: Numeric,
) -> Array:
    """λ-returns (Sutton & Barto 2018, eq. 12.18 in recursive form).

        G^λ_t = r_t + γ_t·[(1 − λ)·V(s_{t+1}) + λ·G^λ_{t+1}],   G^λ_T = V(s_T)

    λ = 0 gives one-step TD targets, λ = 1 the bootstrapped Monte-Carlo return.
    Equal to ``gae(...)[1]`` for the same inputs.

    Args:
      rewards: r_t, ``[T, *batch]``.
      values: V(s_t), ``[T, *batch]``.
      discounts: γ_t = γ·(1 − terminated_t), ``[T, *batch]``.
      bootstrap_value: V(s_T), ``[*batch]``.
      lambda_: λ, scalar or broadcastable to ``[T, *batch]``; may be traced.

    Returns:
      G^λ_t, ``[T, *batch]``, stop-gradient'ed.
    """
    rewards, values, discounts = map(jnp.asarray, (rewards, values, discounts))
    bootstrap_value = jnp.asarray(bootstrap_value)
    _check_time_major(rewards, values, discounts)
    _check_bootstrap(bootstrap_value, values)
    check_in_range("lambda_", lambda_, 0.0, 1.0)
    lambda_ = _as_coefficient(lambda_, values)
    next_values = _next_values(values, bootstrap_value)
    xs = rewards + discounts * (1 - lambda_) * next_values
    returns = _reverse_linear_recurrence(xs, discounts * lambda_, bootstrap_value)
    return jax.lax.stop_gradient(returns)


def n_step_returns(
    rewards: Array,
    values: Array,
    discounts: Array,
    bootstrap_value: Array,
    n: int,
) -> Array:
    """n-step bootstrapped returns, truncated at the end of the sequence.

        G^(n)_t = Σ_{k=0}^{m−1} (Π_{i<k} γ_{t+i})·r_{t+k} + (Π_{i<m} γ_{t+i})·V(s_{t+m}),
        m = min(n, T − t)

    so windows that run past the sequence bootstrap from V(s_T). Computed by
    one reverse scan whose carry holds G^(k)_{t+1} for k = 0 … n−1 (with
    G^(0)_t = V(s_t)), using G^(k)_t = r_t + γ_t·G^(k−1)_{t+1}.

    Args:
      rewards: r_t, ``[T, *batch]``.
      values: V(s_t) (or the bootstrap Q), ``[T, *batch]``.
      discounts: γ_t = γ·(1 − terminated_t), ``[T, *batch]``.
      bootstrap_value: V(s_T), ``[*batch]``.
      n: number of rewards summed before bootstrapping; a static int ≥ 1.

    Returns:
      G^(n)_t, ``[T, *batch]``, stop-gradient'ed.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a static int >= 1, got {n!r}")
    rewards, values, discounts = map(jnp.asarray, (rewards, values, discounts))
    bootstrap_value = jnp.asarray(bootstrap_value)
    _check_time_major(rewards, values, discounts)
    _check_bootstrap(bootstrap_value, values)

    def step(shorter_returns_next, inputs):
        # shorter_returns_next[k] = G^(k)_{t+1}, k = 0 … n−1.
        reward, discount, value = inputs
        longer_returns = reward + discount * shorter_returns_next  # G^(k+1)_t
        carry = jnp.concatenate([value[None], longer_returns[:-1]], axis=0)
        return carry, longer_returns[-1]

    # Past the end of the sequence every G^(k)_T is V(s_T).
    init = jnp.broadcast_to(bootstrap_value.astype(values.dtype), (n, *values.shape[1:]))
    _, returns = jax.lax.scan(step, init, (rewards, discounts, values), reverse=True)
    return jax.lax.stop_gradient(returns)


def vtrace(
    log_rhos: Array,
    discounts: Array,
    rewards: Array,
    values: Array,
    bootstrap_value: Array,
    clip_rho_threshold: Numeric | None = 1.0,
    clip_c_threshold: Numeric | None = 1.0,
    clip_pg_rho_threshold: Numeric | None = 1.0,
    lambda_: Numeric = 1.0,
) -> VTraceOutput:
    """V-trace targets and policy-gradient advantages (IMPALA, eq. 1 and §4.2).

        v_s = V(x_s) + Σ_{t≥s} γ^{t−s}·(Π_{i=s}^{t−1} c_i)·δ_tV
        δ_tV = ρ_t·(r_t + γ_t·V(x_{t+1}) − V(x_t))
        ρ_t = min(ρ̄, π(a_t|x_t)/μ(a_t|x_t)),   c_i = λ·min(c̄, π(a_i|x_i)/μ(a_i|x_i))

    computed by the recursion of Remark 1,
    v_s − V(x_s) = δ_sV + γ_s·c_s·(v_{s+1} − V(x_{s+1})), with v_T = V(x_T).
    The policy-gradient advantage of §4.2 is

        A_s = min(ρ̄_pg, π/μ)·(r_s + γ_s·v_{s+1} − V(x_s)).

    Args:
      log_rhos: log π(a_t|x_t) − log μ(a_t|x_t), ``[T, *batch]``.
      discounts: γ_t = γ·(1 − terminated_t), ``[T, *batch]``.
      rewards: r_t, ``[T, *batch]``.
      values: V(x_t) under the learner's parameters, ``[T, *batch]``.
      bootstrap_value: V(x_T), ``[*batch]``.
      clip_rho_threshold: ρ̄; ``None`` for no clipping. May be traced.
      clip_c_threshold: c̄; ``None`` for no clipping. The paper assumes ρ̄ ≥ c̄.
      clip_pg_rho_threshold: ρ̄_pg for the advantages; ``None`` for no clipping.
      lambda_: λ of Remark 2, scalar or broadcastable; may be traced.

    Returns:
      ``VTraceOutput(vs, pg_advantages)``, both ``[T, *batch]`` and
      stop-gradient'ed.
    """
    check_in_range("lambda_", lambda_, 0.0, 1.0)
    for name, threshold in (
        ("clip_rho_threshold", clip_rho_threshold),
        ("clip_c_threshold", clip_c_threshold),
        ("clip_pg_rho_threshold", clip_pg_rho_threshold),
    ):
        check_in_range(name, threshold, 0.0)
    log_rhos, discounts, rewards, values = map(
        jnp.asarray, (log_rhos, discounts, rewards, values)
    )
    bootstrap_value = jnp.asarray(bootstrap_value)
    _check_time_major(log_rhos, discounts, rewards, values)
    _check_bootstrap(bootstrap_value, values)

    rhos = jnp.exp(log_rhos).astype(values.dtype)

    def clip(threshold):
        return rhos if threshold is None else jnp.minimum(jnp.asarray(threshold, rhos.dtype), rhos)

    cs = _as_coefficient(lambda_, values) * clip(clip_c_threshold)
    next_values = _next_values(values, bootstrap_value)
    deltas = clip(clip_rho_threshold) * (rewards + discounts * next_values - values)
    vs_minus_values = _reverse_linear_recurrence(
        deltas, discounts * cs, jnp.zeros_like(bootstrap_value)
    )
    vs = values + vs_minus_values

    next_vs = _next_values(vs, bootstrap_value)
    pg_advantages = clip(clip_pg_rho_threshold) * (rewards + discounts * next_vs - values)
    return VTraceOutput(
        vs=jax.lax.stop_gradient(vs),
        pg_advantages=jax.lax.stop_gradient(pg_advantages),
    )

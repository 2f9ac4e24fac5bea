"""Loss kernels: plain arrays in, arrays out.

Every loss is to be *minimised* and comes in two forms (one naming rule):

- ``<name>_per_element`` returns one value per sample, with the inputs' shape
  (rlax's convention), so the caller chooses the reduction: an
  importance-weighted mean, a masked mean, a replay priority, a per-member
  loss of an ensemble.
- ``<name>`` is ``jnp.mean(<name>_per_element(...))``, the mean over all
  elements (IMPALA's sum over time and batch is ``mean × T·B``).

The maths lives only in the per-element form. Arguments that are targets or
fixed data (advantages, old log-probs, value targets, target distributions)
are wrapped in ``lax.stop_gradient`` so gradients only reach the quantity
being learned; each docstring says which. Hyperparameters (``clip_eps``,
``beta``, ``delta``, ``noise``) may be traced arrays, so they can live in an
agent's state and be vmapped over.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp

Array = jax.Array
Numeric = chex.Numeric

_sg = jax.lax.stop_gradient


# --------------------------------------------------------------------------
# Policy losses


def ppo_clip_loss_per_element(
    log_probs: Array, old_log_probs: Array, advantages: Array, clip_eps: Numeric
) -> Array:
    """Negative clipped surrogate objective per sample (PPO, eq. 7).

        r_t = exp(log π(a_t|s_t) − log π_old(a_t|s_t))
        L^CLIP_t = min(r_t·Â_t, clip(r_t, 1 − ε, 1 + ε)·Â_t)
        loss_t = −L^CLIP_t

    ``old_log_probs`` and ``advantages`` are stop-gradient'ed. Where the
    clipped term is the minimum, the gradient is zero.
    """
    chex.assert_equal_shape([log_probs, old_log_probs, advantages])
    advantages = _sg(advantages)
    ratio = jnp.exp(log_probs - _sg(old_log_probs))
    clipped_ratio = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    return -jnp.minimum(ratio * advantages, clipped_ratio * advantages)


def ppo_clip_loss(
    log_probs: Array, old_log_probs: Array, advantages: Array, clip_eps: Numeric
) -> Array:
    """−L^CLIP = mean of :func:`ppo_clip_loss_per_element`."""
    return jnp.mean(ppo_clip_loss_per_element(log_probs, old_log_probs, advantages, clip_eps))


def clip_fraction(log_probs: Array, old_log_probs: Array, clip_eps: Numeric) -> Array:
    """Fraction of samples whose ratio lies outside [1 − ε, 1 + ε] (a diagnostic)."""
    chex.assert_equal_shape([log_probs, old_log_probs])
    ratio = jnp.exp(_sg(log_probs) - _sg(old_log_probs))
    return jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(ratio.dtype))


def approx_kl(log_probs: Array, old_log_probs: Array) -> Array:
    """Sample estimate of KL[π_old ‖ π] from actions drawn by π_old.

        KL ≈ Ê[(r − 1) − log r],   r = π/π_old

    Unbiased and non-negative per sample. Differentiable in ``log_probs``;
    wrap it in ``stop_gradient`` when used only as a diagnostic.
    """
    chex.assert_equal_shape([log_probs, old_log_probs])
    log_ratio = log_probs - _sg(old_log_probs)
    return jnp.mean(jnp.expm1(log_ratio) - log_ratio)


def kl_penalty_loss_per_element(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    kl: Array,
    beta: Numeric,
) -> Array:
    """Negative KL-penalised surrogate objective per sample (PPO, eq. 8).

        L^KLPEN_t = r_t·Â_t − β·KL[π_old(·|s_t), π(·|s_t)]
        loss_t = −L^KLPEN_t

    Args:
      log_probs, old_log_probs: log π(a_t|s_t), log π_old(a_t|s_t).
      advantages: Â_t (stop-gradient'ed).
      kl: per-sample KL[π_old ‖ π], computed by the caller from the two
        distributions (e.g. ``old_dist.kl(new_dist)``); gradients flow through
        it.
      beta: β (stop-gradient'ed), e.g. from ``adaptive_kl_beta``.
    """
    chex.assert_equal_shape([log_probs, old_log_probs, advantages, kl])
    ratio = jnp.exp(log_probs - _sg(old_log_probs))
    return -(ratio * _sg(advantages) - _sg(beta) * kl)


def kl_penalty_loss(
    log_probs: Array,
    old_log_probs: Array,
    advantages: Array,
    kl: Array,
    beta: Numeric,
) -> Array:
    """−L^KLPEN = mean of :func:`kl_penalty_loss_per_element`."""
    return jnp.mean(kl_penalty_loss_per_element(log_probs, old_log_probs, advantages, kl, beta))


def adaptive_kl_beta(beta: Numeric, kl: Numeric, kl_target: Numeric) -> Array:
    """PPO's adaptive penalty coefficient rule (§4), for the next update.

        d < d_targ / 1.5  →  β / 2
        d > d_targ · 1.5  →  β · 2
        otherwise         →  β

    Jittable and vmappable: all three arguments may be traced scalars.
    """
    beta = jnp.asarray(beta)
    return jnp.where(
        kl < kl_target / 1.5,
        beta / 2.0,
        jnp.where(kl > kl_target * 1.5, beta * 2.0, beta),
    )


def policy_gradient_loss_per_element(log_probs: Array, advantages: Array) -> Array:
    """REINFORCE / actor-critic loss per sample: −log π(a_t|s_t)·Â_t.

    ``advantages`` are stop-gradient'ed (for IMPALA pass V-trace's
    ``pg_advantages``, which already include the clipped ρ).
    """
    chex.assert_equal_shape([log_probs, advantages])
    return -(log_probs * _sg(advantages))


def policy_gradient_loss(log_probs: Array, advantages: Array) -> Array:
    """−Ê[log π(a_t|s_t)·Â_t] = mean of :func:`policy_gradient_loss_per_element`."""
    return jnp.mean(policy_gradient_loss_per_element(log_probs, advantages))


def entropy_loss_per_element(entropies: Array) -> Array:
    """−H[π(·|s_t)] per sample.

    The sign makes minimising this loss *maximise* entropy, so an entropy
    bonus is ``total = ... + entropy_coef * entropy_loss(h)`` with a positive
    coefficient.
    """
    return -jnp.asarray(entropies)


def entropy_loss(entropies: Array) -> Array:
    """−Ê[H[π(·|s_t)]] = mean of :func:`entropy_loss_per_element`."""
    return jnp.mean(entropy_loss_per_element(entropies))


# --------------------------------------------------------------------------
# Value losses


def squared_loss_per_element(pred: Array, target: Array) -> Array:
    """½·(pred − target)² per element; ``target`` is stop-gradient'ed."""
    chex.assert_equal_shape([pred, target])
    return 0.5 * jnp.square(pred - _sg(target))


def squared_loss(pred: Array, target: Array) -> Array:
    """Ê[½·(pred − target)²] = mean of :func:`squared_loss_per_element`."""
    return jnp.mean(squared_loss_per_element(pred, target))


def huber_loss_per_element(pred: Array, target: Array, delta: Numeric = 1.0) -> Array:
    """Huber_δ(pred − target) per element; ``target`` is stop-gradient'ed.

        Huber_δ(x) = ½x²             if |x| ≤ δ
                     δ·(|x| − ½δ)    otherwise

    Quadratic near zero and linear beyond δ, so the gradient is bounded by δ
    (DQN's "error clipping").
    """
    chex.assert_equal_shape([pred, target])
    abs_error = jnp.abs(pred - _sg(target))
    quadratic = jnp.minimum(abs_error, delta)
    linear = abs_error - quadratic
    return 0.5 * jnp.square(quadratic) + delta * linear


def huber_loss(pred: Array, target: Array, delta: Numeric = 1.0) -> Array:
    """Ê[Huber_δ(pred − target)] = mean of :func:`huber_loss_per_element`."""
    return jnp.mean(huber_loss_per_element(pred, target, delta))


def clipped_value_loss_per_element(
    values: Array, old_values: Array, returns: Array, clip_eps: Numeric
) -> Array:
    """PPO2-style clipped value loss per sample (OpenAI baselines).

        V_clip = V_old + clip(V − V_old, −ε, ε)
        loss_t = ½·max((V − R)², (V_clip − R)²)

    ``old_values`` and ``returns`` are stop-gradient'ed.
    """
    chex.assert_equal_shape([values, old_values, returns])
    old_values, returns = _sg(old_values), _sg(returns)
    clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    return 0.5 * jnp.maximum(jnp.square(values - returns), jnp.square(clipped - returns))


def clipped_value_loss(
    values: Array, old_values: Array, returns: Array, clip_eps: Numeric
) -> Array:
    """Ê[½·max((V − R)², (V_clip − R)²)] = mean of :func:`clipped_value_loss_per_element`."""
    return jnp.mean(clipped_value_loss_per_element(values, old_values, returns, clip_eps))


# --------------------------------------------------------------------------
# Distributional value learning


def categorical_l2_project(z_p: Array, probs: Array, z_q: Array) -> Array:
    """Project the distribution (atoms ``z_p``, weights ``probs``) onto ``z_q``.

    C51's projection (Bellemare et al. 2017, Algorithm 1): each source atom is
    clipped to [z_q[0], z_q[−1]] and its mass split between the two
    neighbouring target atoms in proportion to proximity. In hat-function form
    (which also handles atoms that land exactly on a target atom, and
    non-uniform supports):

        (Φp)_i = Σ_j p_j·[1 − |ẑ_j − z_i| / Δ_i(ẑ_j)]₊,   ẑ_j = clip(z_p_j, z_min, z_max)

    with Δ_i the gap to the next atom above (ẑ_j ≥ z_i) or below. This is the
    Cramér (L2 of CDFs) projection onto the support.

    Args:
      z_p: source atoms, e.g. r + γ·z, ``[..., N_p]``.
      probs: their probabilities, broadcastable with ``z_p``.
      z_q: target support, strictly increasing, ``[N_q]``.

    Returns:
      Probabilities on ``z_q``, ``[..., N_q]``. Mass is preserved.
    """
    z_q = jnp.asarray(z_q)
    chex.assert_rank(z_q, 1)
    z_p, probs = jnp.broadcast_arrays(jnp.asarray(z_p), jnp.asarray(probs))
    dtype = jnp.result_type(z_p, probs, z_q)

    gaps = jnp.diff(z_q).astype(dtype)
    one = jnp.ones((1,), dtype)
    # The last atom's upper gap and first atom's lower gap are never used with
    # a non-zero offset after clipping; 1 avoids a division by zero.
    gap_above = jnp.concatenate([gaps, one])
    gap_below = jnp.concatenate([one, gaps])

    clipped = jnp.clip(z_p, z_q[0], z_q[-1])
    offset = clipped[..., None, :] - z_q[:, None]  # [..., N_q, N_p]
    gap = jnp.where(offset >= 0, gap_above[:, None], gap_below[:, None])
    weights = jnp.clip(1.0 - jnp.abs(offset) / gap, 0.0, 1.0)
    return jnp.sum(weights * probs[..., None, :], axis=-1).astype(dtype)


def categorical_cross_entropy(logits: Array, target_probs: Array) -> Array:
    """Per-sample −Σ_i p_i·log softmax(logits)_i over the last axis.

    ``target_probs`` is stop-gradient'ed. Returned unreduced (``[...]``) so
    it can serve as a replay priority.
    """
    chex.assert_equal_shape([logits, target_probs])
    return -jnp.sum(_sg(target_probs) * jax.nn.log_softmax(logits, axis=-1), axis=-1)


def categorical_td_loss_per_element(logits: Array, target_probs: Array) -> Array:
    """The C51 / D4PG critic loss per sample, ``[...]`` for logits ``[..., N]``.

    The cross-entropy between ``target_probs`` (usually
    ``categorical_l2_project(r + γ·z, p_target, z)``, stop-gradient'ed here)
    and the predicted distribution: :func:`categorical_cross_entropy`, under
    the name that follows the ``<loss>_per_element`` rule.
    """
    return categorical_cross_entropy(logits, target_probs)


def categorical_td_loss(logits: Array, target_probs: Array) -> Array:
    """Mean cross-entropy between a projected target and the predicted distribution.

    The mean of :func:`categorical_td_loss_per_element`.
    """
    return jnp.mean(categorical_td_loss_per_element(logits, target_probs))


# --------------------------------------------------------------------------
# Reward modelling


def bradley_terry_loss_per_element(
    returns_left: Array,
    returns_right: Array,
    preference: Array,
    noise: Numeric = 0.0,
) -> Array:
    """Preference loss of a reward model per pair (Christiano et al. 2017, eq. 1 and §2.2.3).

        P[σ¹ ≻ σ²] = exp Σr̂(σ¹) / (exp Σr̂(σ¹) + exp Σr̂(σ²)) = sigmoid(R¹ − R²)
        P'         = (1 − ε)·P + ε/2          (ε: chance of a uniformly random answer)
        loss       = −(μ·log P'[σ¹ ≻ σ²] + (1 − μ)·log P'[σ² ≻ σ¹])

    Evaluated in log space (``log_sigmoid``, ``logaddexp``), so it stays
    finite for return differences of any size.

    Args:
      returns_left, returns_right: summed predicted rewards of the two
        segments, R¹ and R², any shape (e.g. ``[B]``, or ``[members, B]`` for
        an ensemble).
      preference: μ, probability mass on "left preferred": 1 left, 0 right,
        0.5 tie; the returns' shape. Stop-gradient'ed.
      noise: ε in [0, 1); may be traced.

    Returns:
      One loss per pair, the returns' shape.
    """
    chex.assert_equal_shape([returns_left, returns_right, preference])
    margin = returns_left - returns_right
    log_p_left = jax.nn.log_sigmoid(margin)
    log_p_right = jax.nn.log_sigmoid(-margin)

    if not (isinstance(noise, (int, float)) and noise == 0):
        noise = jnp.asarray(noise, margin.dtype)
        log_keep = jnp.log1p(-noise)
        # ε = 0 gives log(0) = −inf, which logaddexp treats as "no mixing".
        log_random = jnp.log(noise / 2)
        log_p_left = jnp.logaddexp(log_keep + log_p_left, log_random)
        log_p_right = jnp.logaddexp(log_keep + log_p_right, log_random)

    preference = _sg(preference).astype(margin.dtype)
    return -(preference * log_p_left + (1.0 - preference) * log_p_right)


def bradley_terry_loss(
    returns_left: Array,
    returns_right: Array,
    preference: Array,
    noise: Numeric = 0.0,
) -> Array:
    """Mean Bradley–Terry preference loss over pairs, ``[B]`` → scalar.

    The mean of :func:`bradley_terry_loss_per_element`, which has the maths.
    """
    return jnp.mean(bradley_terry_loss_per_element(returns_left, returns_right, preference, noise))

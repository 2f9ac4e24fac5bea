"""Loss kernels against NumPy formulas, and their gradient behaviour."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxrl import ops

TOL = dict(rtol=1e-5, atol=1e-6)
seeds = st.integers(0, 2**31 - 1)


def normal(seed, shape, scale=1.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def policy_batch(seed, n=32):
    rng = np.random.default_rng(seed)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    old = f32(rng.normal(-1.0, 0.5, n))
    return dict(
        log_probs=f32(old + rng.normal(0.0, 0.3, n)),
        old_log_probs=old,
        advantages=f32(rng.normal(size=n)),
        kl=f32(rng.random(n) * 0.1),
    )


@pytest.fixture(scope="module")
def jitted():
    return dict(
        ppo=jax.jit(ops.ppo_clip_loss),
        ppo_grad=jax.jit(jax.grad(ops.ppo_clip_loss)),
        clip_fraction=jax.jit(ops.clip_fraction),
        kl_penalty=jax.jit(ops.kl_penalty_loss),
        project=jax.jit(ops.categorical_l2_project),
        bt=jax.jit(ops.bradley_terry_loss),
        bt_grad=jax.jit(jax.grad(ops.bradley_terry_loss, argnums=(0, 1))),
    )


# --------------------------------------------------------------------------
# Policy losses


@given(seeds, st.sampled_from([0.1, 0.2, 0.3]))
def test_ppo_clip_loss_matches_numpy(jitted, seed, eps):
    b = policy_batch(seed)
    ratio = np.exp(np.float64(b["log_probs"]) - b["old_log_probs"])
    adv = np.float64(b["advantages"])
    expected = -np.mean(np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv))
    got = jitted["ppo"](b["log_probs"], b["old_log_probs"], b["advantages"], eps)
    np.testing.assert_allclose(got, expected, **TOL)
    np.testing.assert_allclose(
        jitted["clip_fraction"](b["log_probs"], b["old_log_probs"], eps),
        np.mean(np.abs(ratio - 1) > eps),
        **TOL,
    )


def test_ppo_clip_gradient_vanishes_only_where_the_clipped_term_is_selected(jitted):
    eps = 0.2
    ratios = np.array([1.5, 0.5, 1.5, 0.5, 1.1, 0.9], np.float32)
    adv = np.array([1.0, -1.0, -1.0, 1.0, 1.0, -1.0], np.float32)
    old = np.zeros(6, np.float32)
    grad = np.asarray(jitted["ppo_grad"](np.log(ratios), old, adv, eps))
    n = len(ratios)
    # A > 0 with r > 1 + ε, and A < 0 with r < 1 − ε: the min picks the
    # clipped (constant) term, so no gradient.
    np.testing.assert_array_equal(grad[:2], 0.0)
    # The pessimistic side (A < 0, r > 1 + ε; A > 0, r < 1 − ε) and the
    # unclipped interior keep the gradient −r·A/n with respect to log r.
    np.testing.assert_allclose(grad[2:], -ratios[2:] * adv[2:] / n, **TOL)


def test_ppo_clip_loss_stops_gradients_to_old_log_probs_and_advantages():
    b = policy_batch(0)
    g_old, g_adv = jax.grad(ops.ppo_clip_loss, argnums=(1, 2))(
        b["log_probs"], b["old_log_probs"], b["advantages"], 0.2
    )
    np.testing.assert_array_equal(g_old, 0.0)
    np.testing.assert_array_equal(g_adv, 0.0)


def test_approx_kl_is_nonnegative_and_zero_on_policy():
    b = policy_batch(1)
    assert ops.approx_kl(b["log_probs"], b["old_log_probs"]) > 0
    np.testing.assert_allclose(ops.approx_kl(b["old_log_probs"], b["old_log_probs"]), 0.0)
    log_r = np.float64(b["log_probs"]) - b["old_log_probs"]
    np.testing.assert_allclose(
        ops.approx_kl(b["log_probs"], b["old_log_probs"]), np.mean(np.exp(log_r) - 1 - log_r), **TOL
    )


@given(seeds, st.sampled_from([0.0, 0.3, 3.0]))
def test_kl_penalty_loss_matches_numpy(jitted, seed, beta):
    b = policy_batch(seed)
    ratio = np.exp(np.float64(b["log_probs"]) - b["old_log_probs"])
    expected = -np.mean(ratio * b["advantages"] - beta * b["kl"])
    got = jitted["kl_penalty"](
        b["log_probs"], b["old_log_probs"], b["advantages"], b["kl"], beta
    )
    np.testing.assert_allclose(got, expected, **TOL)


def test_kl_penalty_gradient_flows_through_kl_only_scaled_by_beta():
    b = policy_batch(2)
    g_kl, g_beta = jax.grad(ops.kl_penalty_loss, argnums=(3, 4))(
        b["log_probs"], b["old_log_probs"], b["advantages"], b["kl"], 0.5
    )
    np.testing.assert_allclose(g_kl, np.full(32, 0.5 / 32), **TOL)
    assert g_beta == 0.0


def test_adaptive_kl_beta_rule_regions_and_boundaries():
    target = 0.01
    cases = [
        (0.001, 0.5),  # well below: halve
        (target / 1.5 * 0.999, 0.5),
        (target / 1.5, 1.0),  # boundary: unchanged
        (target, 1.0),
        (target * 1.5, 1.0),  # boundary: unchanged
        (target * 1.5 * 1.001, 2.0),
        (1.0, 2.0),  # well above: double
    ]
    for kl, factor in cases:
        got = ops.adaptive_kl_beta(1.0, kl, target)
        np.testing.assert_allclose(got, factor, err_msg=f"kl={kl}")
    # Jittable and vmappable over traced β, d and d_targ.
    kls = jnp.array([c[0] for c in cases], jnp.float32)
    betas = jnp.full(len(cases), 3.0)
    got = jax.jit(jax.vmap(ops.adaptive_kl_beta, in_axes=(0, 0, None)))(betas, kls, target)
    np.testing.assert_allclose(got, 3.0 * np.array([c[1] for c in cases]), **TOL)


def test_policy_gradient_and_entropy_losses():
    b = policy_batch(3)
    loss, (g_logp, g_adv) = jax.value_and_grad(ops.policy_gradient_loss, argnums=(0, 1))(
        b["log_probs"], b["advantages"]
    )
    np.testing.assert_allclose(loss, -np.mean(b["log_probs"] * b["advantages"]), **TOL)
    np.testing.assert_allclose(g_logp, -b["advantages"] / 32, **TOL)
    np.testing.assert_array_equal(g_adv, 0.0)

    entropies = np.array([0.1, 0.5, 1.2], np.float32)
    np.testing.assert_allclose(ops.entropy_loss(entropies), -np.mean(entropies), **TOL)
    # Gradient descent on the loss raises every entropy.
    assert np.all(np.asarray(jax.grad(ops.entropy_loss)(entropies)) < 0)


# --------------------------------------------------------------------------
# Value losses


@given(seeds, st.sampled_from([0.5, 1.0, 2.0]))
def test_value_losses_match_numpy(seed, delta):
    pred, target = normal(seed, (4, 5), 2.0), normal(seed + 1, (4, 5), 2.0)
    err = np.float64(pred) - target
    np.testing.assert_allclose(ops.squared_loss(pred, target), np.mean(0.5 * err**2), **TOL)
    huber = np.where(np.abs(err) <= delta, 0.5 * err**2, delta * (np.abs(err) - 0.5 * delta))
    np.testing.assert_allclose(ops.huber_loss(pred, target, delta), np.mean(huber), **TOL)


def test_huber_gradient_is_bounded_by_delta_and_targets_are_constant():
    pred = np.array([-10.0, -0.5, 0.0, 0.3, 10.0], np.float32)
    target = np.zeros(5, np.float32)
    g_pred, g_target = jax.grad(ops.huber_loss, argnums=(0, 1))(pred, target, 2.0)
    np.testing.assert_allclose(g_pred, np.clip(pred, -2.0, 2.0) / 5, **TOL)
    np.testing.assert_array_equal(g_target, 0.0)
    np.testing.assert_array_equal(jax.grad(ops.squared_loss, argnums=1)(pred, target), 0.0)


@given(seeds, st.sampled_from([0.1, 0.2, 1.0]))
def test_clipped_value_loss_matches_numpy(seed, eps):
    values, old, returns = (normal(seed + i, (16,), 0.5) for i in range(3))
    clipped = old + np.clip(np.float64(values) - old, -eps, eps)
    expected = np.mean(0.5 * np.maximum((values - returns) ** 2, (clipped - returns) ** 2))
    np.testing.assert_allclose(ops.clipped_value_loss(values, old, returns, eps), expected, **TOL)


def test_clipped_value_loss_gradient():
    old, eps = np.zeros(2, np.float32), 0.2
    values = np.array([0.5, -0.5], np.float32)
    # Moving toward the return: the unclipped error is the larger one, and
    # its gradient (V − R)/n is kept.
    toward = np.array([-1.0, 1.0], np.float32)
    g = jax.grad(ops.clipped_value_loss)(values, old, toward, eps)
    np.testing.assert_allclose(g, (values - toward) / 2, **TOL)
    # Moving away from the return past old ± ε: the clipped (constant) error
    # is larger, the max picks it, and the gradient vanishes.
    away = np.array([2.0, -2.0], np.float32)
    g = jax.grad(ops.clipped_value_loss)(values, old, away, eps)
    np.testing.assert_array_equal(g, 0.0)


# --------------------------------------------------------------------------
# Categorical projection (C51 / D4PG)


def np_project_algorithm1(z_p, probs, z_q):
    """Bellemare et al. 2017, Algorithm 1 (uniform support), with the l = u case."""
    v_min, v_max = z_q[0], z_q[-1]
    dz = (v_max - v_min) / (len(z_q) - 1)
    m = np.zeros(len(z_q))
    for z, p in zip(np.float64(z_p), np.float64(probs)):
        b = (np.clip(z, v_min, v_max) - v_min) / dz
        lo, hi = int(np.floor(b)), int(np.ceil(b))
        if lo == hi:
            m[lo] += p
        else:
            m[lo] += p * (hi - b)
            m[hi] += p * (b - lo)
    return m


SUPPORT = np.linspace(-10.0, 10.0, 11).astype(np.float32)


def random_target_distribution(seed, batch=4, atoms=11):
    rng = np.random.default_rng(seed)
    probs = rng.dirichlet(np.ones(atoms), size=batch).astype(np.float32)
    reward = rng.normal(scale=4.0, size=(batch, 1))
    gamma = rng.choice([0.0, 0.9, 0.99, 1.0], size=(batch, 1))
    return (reward + gamma * SUPPORT).astype(np.float32), probs


@given(seeds)
def test_categorical_projection_matches_algorithm_1(jitted, seed):
    z_p, probs = random_target_distribution(seed)
    got = np.asarray(jitted["project"](z_p, probs, SUPPORT))
    assert got.shape == (4, 11)
    np.testing.assert_allclose(got.sum(-1), 1.0, rtol=1e-5)
    assert np.all(got >= 0)
    for i in range(4):
        expected = np_project_algorithm1(z_p[i], probs[i], SUPPORT)
        np.testing.assert_allclose(got[i], expected, atol=1e-5)


def test_categorical_projection_identity_on_support_and_batched_dims(jitted):
    rng = np.random.default_rng(0)
    probs = rng.dirichlet(np.ones(11), size=(2, 3)).astype(np.float32)
    project = jitted["project"]
    got = project(np.broadcast_to(SUPPORT, probs.shape), probs, SUPPORT)
    np.testing.assert_allclose(got, probs, atol=1e-6)
    # Broadcasting z_p of shape [N] against probs [2, 3, N].
    np.testing.assert_allclose(project(SUPPORT, probs, SUPPORT), probs, atol=1e-6)
    # Onto a coarser support: mass preserved.
    coarse = np.linspace(-5.0, 5.0, 5).astype(np.float32)
    np.testing.assert_allclose(project(SUPPORT, probs, coarse).sum(-1), 1.0, rtol=1e-5)


@pytest.fixture(scope="module")
def rlax_project():
    rlax = pytest.importorskip("rlax")
    return jax.jit(jax.vmap(rlax.categorical_l2_project, in_axes=(0, 0, None)))


@given(seeds)
def test_categorical_projection_matches_rlax_on_uneven_support(jitted, rlax_project, seed):
    rng = np.random.default_rng(seed)
    z_q = np.sort(rng.uniform(-5, 5, 7)).astype(np.float32)
    z_p = rng.uniform(-7, 7, (3, 9)).astype(np.float32)
    probs = rng.dirichlet(np.ones(9), size=3).astype(np.float32)
    np.testing.assert_allclose(
        jitted["project"](z_p, probs, z_q), rlax_project(z_p, probs, z_q), atol=1e-5
    )


def test_categorical_td_loss_is_cross_entropy():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(3, 11)).astype(np.float32)
    target = rng.dirichlet(np.ones(11), size=3).astype(np.float32)
    log_q = logits - np.log(np.sum(np.exp(np.float64(logits)), -1, keepdims=True))
    per_sample = -np.sum(target * log_q, -1)
    np.testing.assert_allclose(ops.categorical_cross_entropy(logits, target), per_sample, **TOL)
    np.testing.assert_allclose(ops.categorical_td_loss(logits, target), per_sample.mean(), **TOL)
    g_logits, g_target = jax.grad(ops.categorical_td_loss, argnums=(0, 1))(logits, target)
    np.testing.assert_allclose(g_logits, (np.exp(log_q) - target) / 3, atol=1e-6)
    np.testing.assert_array_equal(g_target, 0.0)


# --------------------------------------------------------------------------
# Bradley-Terry preference loss


@given(seeds, st.sampled_from([0.0, 0.1, 0.5]))
def test_bradley_terry_matches_log_softmax(jitted, seed, noise):
    rng = np.random.default_rng(seed)
    left, right = (rng.normal(scale=3.0, size=8).astype(np.float32) for _ in range(2))
    pref = rng.choice([0.0, 0.5, 1.0], size=8).astype(np.float32)
    sums = np.stack([left, right], -1).astype(np.float64)
    p = np.exp(sums - np.log(np.sum(np.exp(sums), -1, keepdims=True)))  # softmax
    p = (1 - noise) * p + noise / 2
    expected = -np.mean(pref * np.log(p[:, 0]) + (1 - pref) * np.log(p[:, 1]))
    np.testing.assert_allclose(jitted["bt"](left, right, pref, noise), expected, rtol=1e-5)


def test_bradley_terry_ties_and_symmetry():
    left = np.array([2.0, -1.0, 0.0], np.float32)
    right = np.array([-1.0, 3.0, 0.0], np.float32)
    tie = np.full(3, 0.5, np.float32)
    # A tie is symmetric in the two segments, and minimised by equal returns.
    np.testing.assert_allclose(
        ops.bradley_terry_loss(left, right, tie), ops.bradley_terry_loss(right, left, tie), **TOL
    )
    equal_returns = ops.bradley_terry_loss(left[2:], right[2:], tie[2:])
    np.testing.assert_allclose(equal_returns, np.log(2.0), **TOL)
    np.testing.assert_array_equal(jax.grad(ops.bradley_terry_loss)(left[2:], right[2:], tie[2:]), 0.0)
    ones = np.ones(3, np.float32)
    np.testing.assert_allclose(
        ops.bradley_terry_loss(left, right, ones),
        ops.bradley_terry_loss(right, left, 0 * ones),
        **TOL,
    )


def test_bradley_terry_is_stable_for_large_returns(jitted):
    left = np.array([1e4, -1e4, 1e4, -1e4], np.float32)
    right = np.zeros(4, np.float32)
    pref = np.array([1.0, 0.0, 0.0, 1.0], np.float32)  # two right, two badly wrong
    for noise in (0.0, 0.1):
        loss = jitted["bt"](left, right, pref, noise)
        g_left, g_right = jitted["bt_grad"](left, right, pref, noise)
        assert np.isfinite(loss) and np.all(np.isfinite(g_left)) and np.all(np.isfinite(g_right))
    # Without noise a wrong answer at margin 1e4 costs ≈ 1e4; correct ones cost 0.
    np.testing.assert_allclose(jitted["bt"](left, right, pref, 0.0), 0.5 * 1e4, rtol=1e-5)
    g_left, _ = jitted["bt_grad"](left, right, pref, 0.0)
    np.testing.assert_allclose(g_left, [0.0, 0.0, 0.25, -0.25], atol=1e-6)
    # With noise P' ∈ [ε/2, 1 − ε/2]: a wrong answer costs at most −log(ε/2).
    expected = -0.5 * (np.log(0.05) + np.log(0.95))
    np.testing.assert_allclose(jitted["bt"](left, right, pref, 0.1), expected, rtol=1e-5)


def test_bradley_terry_noise_may_be_traced():
    left, right = np.array([1.0, 2.0], np.float32), np.array([0.0, 3.0], np.float32)
    pref = np.array([1.0, 0.0], np.float32)
    noises = jnp.array([0.0, 0.1, 0.2])
    swept = jax.vmap(lambda e: ops.bradley_terry_loss(left, right, pref, e))(noises)
    for i, e in enumerate([0.0, 0.1, 0.2]):
        np.testing.assert_allclose(swept[i], ops.bradley_terry_loss(left, right, pref, e), **TOL)


# --------------------------------------------------------------------------
# Per-element forms: <loss>_per_element keeps the inputs' shape, <loss> is its mean


def np_log_softmax(x):
    x = np.float64(x) - np.max(x, -1, keepdims=True)
    return x - np.log(np.sum(np.exp(x), -1, keepdims=True))


def np_bradley_terry(left, right, pref, noise):
    """Christiano et al. eq. 1 with the ε-random answer, one value per pair."""
    p = 1.0 / (1.0 + np.exp(np.float64(right) - left))  # P[σ¹ ≻ σ²]
    p_left, p_right = (1 - noise) * p + noise / 2, (1 - noise) * (1 - p) + noise / 2
    return -(pref * np.log(p_left) + (1 - pref) * np.log(p_right))


def per_element_cases(seed, shape=(5, 4)):
    """(per-element kernel, mean kernel, args, NumPy reference per element), on [T, B]."""
    rng = np.random.default_rng(seed)
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    old = f32(rng.normal(-1.0, 0.5, shape))
    logp, adv = f32(old + rng.normal(0.0, 0.3, shape)), f32(rng.normal(size=shape))
    kl, ent = f32(rng.random(shape) * 0.1), f32(rng.random(shape))
    pred, target, old_v = (f32(rng.normal(scale=2.0, size=shape)) for _ in range(3))
    pref = f32(rng.choice([0.0, 0.5, 1.0], size=shape))
    logits, probs = f32(rng.normal(size=shape + (7,))), f32(rng.dirichlet(np.ones(7), size=shape))
    eps, beta, delta, noise = 0.2, 0.7, 1.0, 0.1
    ratio = np.exp(np.float64(logp) - old)
    err = np.float64(pred) - target
    v_clip = old_v + np.clip(np.float64(pred) - old_v, -eps, eps)
    return {
        "ppo_clip_loss": (
            (logp, old, adv, eps),
            -np.minimum(ratio * adv, np.clip(ratio, 1 - eps, 1 + eps) * adv),
        ),
        "kl_penalty_loss": ((logp, old, adv, kl, beta), -(ratio * adv - beta * kl)),
        "policy_gradient_loss": ((logp, adv), -np.float64(logp) * adv),
        "entropy_loss": ((ent,), -np.float64(ent)),
        "squared_loss": ((pred, target), 0.5 * err**2),
        "huber_loss": (
            (pred, target, delta),
            np.where(np.abs(err) <= delta, 0.5 * err**2, delta * (np.abs(err) - 0.5 * delta)),
        ),
        "clipped_value_loss": (
            (pred, old_v, target, eps),
            0.5 * np.maximum(err**2, (v_clip - target) ** 2),
        ),
        "categorical_td_loss": ((logits, probs), -np.sum(probs * np_log_softmax(logits), -1)),
        "bradley_terry_loss": (
            (pred, target, pref, noise),
            np_bradley_terry(pred, target, pref, noise),
        ),
    }


PER_ELEMENT_LOSSES = sorted(per_element_cases(0))


@pytest.mark.parametrize("name", PER_ELEMENT_LOSSES)
@given(seed=seeds)
def test_per_element_losses_match_numpy_and_their_mean_is_the_old_loss(name, seed):
    args, expected = per_element_cases(seed)[name]
    per_element = getattr(ops, f"{name}_per_element")(*args)
    assert per_element.shape == (5, 4)  # time-major [T, B] kept, nothing reduced
    np.testing.assert_allclose(per_element, expected, rtol=1e-5, atol=1e-5)
    # The public mean-reducing name is exactly the mean of the per-element values.
    np.testing.assert_array_equal(getattr(ops, name)(*args), jnp.mean(per_element))


@pytest.mark.parametrize("name", PER_ELEMENT_LOSSES)
def test_per_element_losses_only_couple_each_element_to_its_own_inputs(name):
    """Element i depends on input element i alone, so a weighted reduction
    (importance weights, masks, ensemble members) weights each gradient."""
    args, _ = per_element_cases(7, shape=(6,))[name]
    fn = getattr(ops, f"{name}_per_element")
    jac = np.asarray(jax.jacobian(fn)(*args))
    if jac.ndim == 3:  # categorical: [B, B, atoms]
        jac = np.abs(jac).sum(-1)
    np.testing.assert_array_equal(jac[~np.eye(6, dtype=bool)], 0.0)
    assert np.any(np.diag(jac) != 0.0)


@pytest.fixture(scope="module")
def rlax():
    return pytest.importorskip("rlax")


@given(seeds, st.sampled_from([0.5, 1.0, 2.0]))
def test_value_losses_per_element_match_rlax(rlax, seed, delta):
    pred, target = normal(seed, (5, 4), 2.0), normal(seed + 1, (5, 4), 2.0)
    np.testing.assert_allclose(
        ops.huber_loss_per_element(pred, target, delta),
        rlax.huber_loss(pred - target, delta),
        **TOL,
    )
    np.testing.assert_allclose(
        ops.squared_loss_per_element(pred, target), rlax.l2_loss(pred, target), **TOL
    )


@pytest.mark.filterwarnings("ignore:Rlax categorical_cross_entropy will be deprecated")
@given(seeds)
def test_ppo_clip_and_categorical_td_per_element_match_rlax(rlax, seed):
    b = policy_batch(seed)
    ratio = jnp.exp(b["log_probs"] - b["old_log_probs"])
    # rlax reduces over its batch, so a batch of one gives its per-sample value.
    one = lambda r, a: rlax.clipped_surrogate_pg_loss(r[None], a[None], 0.2)  # noqa: E731
    np.testing.assert_allclose(
        ops.ppo_clip_loss_per_element(b["log_probs"], b["old_log_probs"], b["advantages"], 0.2),
        jax.vmap(one)(ratio, b["advantages"]),
        **TOL,
    )
    _, target = random_target_distribution(seed)
    logits = normal(seed, target.shape)
    np.testing.assert_allclose(
        ops.categorical_td_loss_per_element(logits, target),
        jax.vmap(rlax.categorical_cross_entropy)(target, logits),
        **TOL,
    )


def test_per_element_targets_are_stop_gradiented():
    b = policy_batch(4)
    lp, old, adv = b["log_probs"], b["old_log_probs"], b["advantages"]
    total = lambda fn: lambda *a: jnp.sum(fn(*a))  # noqa: E731
    for fn, args, frozen in [
        (ops.ppo_clip_loss_per_element, (lp, old, adv, 0.2), (1, 2)),
        (ops.kl_penalty_loss_per_element, (lp, old, adv, b["kl"], 0.5), (1, 2, 4)),
        (ops.policy_gradient_loss_per_element, (lp, adv), (1,)),
        (ops.squared_loss_per_element, (lp, adv), (1,)),
        (ops.huber_loss_per_element, (lp, adv, 1.0), (1,)),
        (ops.clipped_value_loss_per_element, (lp, old, adv, 0.2), (1, 2)),
        (ops.bradley_terry_loss_per_element, (lp, adv, np.full(32, 0.5, np.float32)), (2,)),
    ]:
        grads = jax.grad(total(fn), argnums=frozen)(*args)
        for g in grads:
            np.testing.assert_array_equal(g, 0.0, err_msg=fn.__name__)


def test_bradley_terry_per_element_over_an_ensemble_with_traced_noise():
    """[members, pairs] returns, one loss per member and pair, ε swept in a vmap."""
    rng = np.random.default_rng(3)
    left, right = (rng.normal(scale=3.0, size=(3, 8)).astype(np.float32) for _ in range(2))
    pref = np.broadcast_to(rng.choice([0.0, 0.5, 1.0], size=8).astype(np.float32), (3, 8))
    noises = jnp.array([0.0, 0.1, 0.3])
    per_noise = lambda e: ops.bradley_terry_loss_per_element(left, right, pref, e)  # noqa: E731
    swept = jax.jit(jax.vmap(per_noise))(noises)
    assert swept.shape == (3, 3, 8)
    for i, e in enumerate([0.0, 0.1, 0.3]):
        np.testing.assert_allclose(swept[i], np_bradley_terry(left, right, pref, e), rtol=1e-5)


# --------------------------------------------------------------------------
# Gradient clipping with a traced threshold


def test_clip_by_global_norm_under_vmap_over_max_norm():
    grads = {"w": jnp.array([[3.0, 0.0], [0.0, 0.0]]), "b": jnp.array([4.0])}  # norm 5
    max_norms = jnp.array([1.0, 2.5, 5.0, 10.0])
    clipped = jax.jit(jax.vmap(ops.clip_by_global_norm, in_axes=(None, 0)))(grads, max_norms)
    norms = jax.vmap(ops.global_norm)(clipped)
    np.testing.assert_allclose(norms, [1.0, 2.5, 5.0, 5.0], rtol=1e-6)
    # Direction unchanged; below the threshold the gradient is untouched.
    np.testing.assert_allclose(clipped["w"][1], grads["w"] / 2, rtol=1e-6)
    np.testing.assert_allclose(clipped["b"][3], grads["b"], rtol=1e-6)


def test_clip_by_global_norm_keeps_zero_and_dtypes():
    zeros = {"a": jnp.zeros(3), "b": jnp.zeros((), jnp.bfloat16)}
    out = ops.clip_by_global_norm(zeros, 1.0)
    assert out["b"].dtype == jnp.bfloat16
    np.testing.assert_array_equal(out["a"], 0.0)
    assert ops.global_norm({}) == 0.0

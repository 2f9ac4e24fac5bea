"""Distribution helpers against NumPy formulas and Monte-Carlo estimates."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxrl import ops

TOL = dict(rtol=1e-5, atol=1e-5)
seeds = st.integers(0, 2**31 - 1)
NUM_SAMPLES = 20_000


def np_log_softmax(logits):
    logits = np.float64(logits)
    shifted = logits - logits.max(-1, keepdims=True)
    return shifted - np.log(np.exp(shifted).sum(-1, keepdims=True))


def np_gaussian_log_prob(mean, log_std, x):
    mean, log_std, x = map(np.float64, (mean, log_std, x))
    var = np.exp(2 * log_std)
    return np.sum(-0.5 * (x - mean) ** 2 / var - 0.5 * np.log(2 * np.pi * var), -1)


def random_logits(seed, shape=(4, 5), scale=2.0):
    return np.random.default_rng(seed).normal(scale=scale, size=shape).astype(np.float32)


def random_gaussian(seed, shape=(4, 3)):
    rng = np.random.default_rng(seed)
    mean = rng.normal(size=shape).astype(np.float32)
    log_std = rng.uniform(-1.5, 1.0, size=shape).astype(np.float32)
    return mean, log_std


@pytest.fixture(scope="module")
def jitted():
    return dict(
        cat=jax.jit(
            lambda logits, a, other: (
                ops.categorical_log_prob(logits, a),
                ops.categorical_entropy(logits),
                ops.categorical_kl(logits, other),
                ops.categorical_kl(logits, logits),
            )
        ),
        gauss=jax.jit(
            lambda m, s, x, m2, s2: (
                ops.gaussian_log_prob(m, s, x),
                ops.gaussian_entropy(m, s),
                ops.gaussian_kl(m, s, m2, s2),
                ops.gaussian_kl(m, s, m, s),
            )
        ),
    )


# --------------------------------------------------------------------------
# Categorical


@given(seeds)
def test_categorical_matches_numpy(jitted, seed):
    logits, other = random_logits(seed), random_logits(seed + 1)
    actions = np.random.default_rng(seed).integers(0, 5, size=4)
    log_prob, entropy, kl, self_kl = jitted["cat"](logits, actions, other)
    log_p, log_q = np_log_softmax(logits), np_log_softmax(other)
    np.testing.assert_allclose(log_prob, log_p[np.arange(4), actions], **TOL)
    np.testing.assert_allclose(entropy, -np.sum(np.exp(log_p) * log_p, -1), **TOL)
    np.testing.assert_allclose(kl, np.sum(np.exp(log_p) * (log_p - log_q), -1), **TOL)
    assert np.all(np.asarray(kl) >= 0)
    np.testing.assert_allclose(self_kl, 0.0, atol=1e-6)


def test_categorical_sample_frequencies_and_entropy_monte_carlo():
    logits = np.array([1.0, 0.0, -1.0, 2.0], np.float32)
    probs = np.exp(np_log_softmax(logits))

    @jax.jit
    def draw(logits):
        keys = jax.random.split(jax.random.PRNGKey(0), NUM_SAMPLES)
        samples = jax.vmap(ops.categorical_sample, in_axes=(0, None))(keys, logits)
        log_probs = ops.categorical_log_prob(logits, samples)
        return samples, log_probs, ops.categorical_entropy(logits), ops.categorical_mode(logits)

    samples, log_probs, entropy, mode = draw(logits)
    freqs = np.bincount(np.asarray(samples), minlength=4) / NUM_SAMPLES
    np.testing.assert_allclose(freqs, probs, atol=4 * np.sqrt(0.25 / NUM_SAMPLES))
    # H = E[−log p(a)] estimated from the samples.
    np.testing.assert_allclose(entropy, -np.mean(np.asarray(log_probs)), atol=0.03)
    assert mode == 3


def test_sampling_from_presampled_noise_has_the_distributions_law():
    """Rollouts draw their noise ahead of the loop (``noise`` then
    ``sample_from_noise``); those draws must follow the same law as ``sample``."""
    logits = np.array([1.0, 0.0, -1.0, 2.0], np.float32)
    mean = np.array([0.5, -2.0], np.float32)
    log_std = np.array([0.0, -1.0], np.float32)

    @jax.jit
    def draw():
        k_cat, k_gauss = jax.random.split(jax.random.PRNGKey(1))
        actions = ops.Categorical(logits).sample_from_noise(
            ops.Categorical.noise(k_cat, (NUM_SAMPLES, 4)))
        x = ops.DiagGaussian(mean, log_std).sample_from_noise(
            ops.DiagGaussian.noise(k_gauss, (NUM_SAMPLES, 2)))
        return actions, x

    actions, x = map(np.asarray, draw())
    assert actions.shape == (NUM_SAMPLES,) and x.shape == (NUM_SAMPLES, 2)
    freqs = np.bincount(actions, minlength=4) / NUM_SAMPLES
    np.testing.assert_allclose(freqs, np.exp(np_log_softmax(logits)),
                               atol=4 * np.sqrt(0.25 / NUM_SAMPLES))
    std = np.exp(np.float64(log_std))
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * std.max() / np.sqrt(NUM_SAMPLES))
    np.testing.assert_allclose(x.std(0), std, rtol=0.03)


def test_categorical_masked_logits_are_finite_with_finite_gradients():
    logits = jnp.array([0.5, -jnp.inf, 1.0, -jnp.inf])
    other = jnp.array([0.0, -jnp.inf, 0.0, 0.0])

    @jax.jit
    def evaluate(logits, other):
        keys = jax.random.split(jax.random.PRNGKey(1), 200)
        return (
            jax.value_and_grad(ops.categorical_entropy)(logits),
            jax.value_and_grad(ops.categorical_kl)(logits, other),
            jax.vmap(ops.categorical_sample, in_axes=(0, None))(keys, logits),
        )

    (entropy, g_entropy), (kl, g_kl), samples = evaluate(logits, other)
    p = np.exp(np_log_softmax([0.5, 1.0]))
    np.testing.assert_allclose(entropy, -np.sum(p * np.log(p)), **TOL)
    assert np.isfinite(kl) and kl >= 0
    for g in (g_entropy, g_kl):
        assert np.all(np.isfinite(np.asarray(g)))
    assert set(np.unique(np.asarray(samples))) <= {0, 2}


# --------------------------------------------------------------------------
# Diagonal Gaussian


def np_gaussian_kl(m1, s1, m2, s2):
    m1, s1, m2, s2 = map(np.float64, (m1, s1, m2, s2))
    v1, v2 = np.exp(2 * s1), np.exp(2 * s2)
    return np.sum(s2 - s1 + (v1 + (m1 - m2) ** 2) / (2 * v2) - 0.5, -1)


@given(seeds)
def test_gaussian_matches_numpy(jitted, seed):
    mean, log_std = random_gaussian(seed)
    mean2, log_std2 = random_gaussian(seed + 1)
    x = np.random.default_rng(seed + 2).normal(size=mean.shape).astype(np.float32)
    log_prob, entropy, kl, self_kl = jitted["gauss"](mean, log_std, x, mean2, log_std2)
    np.testing.assert_allclose(log_prob, np_gaussian_log_prob(mean, log_std, x), **TOL)
    np.testing.assert_allclose(
        entropy, np.sum(0.5 * np.log(2 * np.pi * np.e) + np.float64(log_std), -1), **TOL
    )
    expected_kl = np_gaussian_kl(mean, log_std, mean2, log_std2)
    np.testing.assert_allclose(kl, expected_kl, rtol=1e-4, atol=1e-5)
    assert np.all(np.asarray(kl) >= 0)
    np.testing.assert_allclose(self_kl, 0.0, atol=1e-6)


def test_gaussian_sample_statistics_entropy_and_kl_monte_carlo():
    mean = np.array([0.5, -2.0, 3.0], np.float32)
    log_std = np.array([0.0, -1.0, 0.7], np.float32)
    std = np.exp(np.float64(log_std))
    mean_q, log_std_q = mean + 0.5, log_std + 0.3

    @jax.jit
    def draw(mean, log_std):
        keys = jax.random.split(jax.random.PRNGKey(0), NUM_SAMPLES)
        x = jax.vmap(ops.gaussian_sample, in_axes=(0, None, None))(keys, mean, log_std)
        return (
            x,
            ops.gaussian_log_prob(mean, log_std, x),
            ops.gaussian_log_prob(mean_q, log_std_q, x),
            ops.gaussian_entropy(mean, log_std),
            ops.gaussian_kl(mean, log_std, mean_q, log_std_q),
        )

    x, log_p, log_q, entropy, kl = map(np.asarray, draw(mean, log_std))
    x = np.float64(x)
    np.testing.assert_allclose(x.mean(0), mean, atol=5 * std.max() / np.sqrt(NUM_SAMPLES))
    np.testing.assert_allclose(x.std(0), std, rtol=0.03)
    np.testing.assert_allclose(entropy, -log_p.mean(), atol=0.05)
    # KL[p‖q] = E_p[log p − log q].
    np.testing.assert_allclose(kl, np.mean(log_p - log_q), atol=0.03)


def test_gaussian_state_independent_log_std_broadcasts():
    mean, _ = random_gaussian(0, (4, 3))
    log_std = np.array([-0.5, 0.0, 0.5], np.float32)
    full = np.broadcast_to(log_std, mean.shape)
    assert ops.gaussian_sample(jax.random.PRNGKey(0), mean, log_std).shape == (4, 3)
    np.testing.assert_allclose(
        ops.gaussian_entropy(mean, log_std), ops.gaussian_entropy(mean, full), **TOL
    )
    np.testing.assert_allclose(ops.gaussian_mode(mean, log_std), mean)


# --------------------------------------------------------------------------
# tanh-Gaussian


def test_tanh_gaussian_log_prob_is_the_change_of_variables():
    mean, log_std = random_gaussian(3, (6, 2))
    u = np.random.default_rng(4).normal(scale=2.0, size=(6, 2))
    h = 1e-5
    # |da/du| by central differences in float64, independent of the identity used.
    log_jacobian = np.sum(np.log((np.tanh(u + h) - np.tanh(u - h)) / (2 * h)), -1)
    expected = np_gaussian_log_prob(mean, log_std, u) - log_jacobian
    got = ops.tanh_gaussian_log_prob(mean, log_std, u.astype(np.float32))
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4)


def test_tanh_gaussian_density_integrates_to_one():
    a = np.linspace(-1.0, 1.0, 200_001)[1:-1]
    u = np.arctanh(a)
    log_density = ops.tanh_gaussian_log_prob(
        np.float32([0.3]), np.float32([-0.2]), u[:, None].astype(np.float32)
    )
    np.testing.assert_allclose(np.trapezoid(np.exp(np.float64(log_density)), a), 1.0, atol=2e-3)


def test_tanh_gaussian_is_stable_for_saturated_actions():
    u = np.array([[-30.0], [-12.0], [12.0], [30.0]], np.float32)
    zeros = np.zeros((4, 1), np.float32)
    log_prob, grad = jax.value_and_grad(
        lambda m: jnp.sum(ops.tanh_gaussian_log_prob(m, zeros, u))
    )(zeros)
    assert np.all(np.isfinite(np.asarray(log_prob))) and np.all(np.isfinite(np.asarray(grad)))
    # For large |u|: log(1 − tanh²u) → log 4 − 2|u|.
    expected = np_gaussian_log_prob(zeros, zeros, u) - (math.log(4.0) - 2 * np.abs(u[:, 0]))
    np.testing.assert_allclose(
        ops.tanh_gaussian_log_prob(zeros, zeros, u), expected, rtol=1e-5
    )


def test_tanh_gaussian_sample_is_bounded_reparameterised_and_consistent():
    mean, log_std = random_gaussian(5, (8, 2))
    key = jax.random.PRNGKey(7)

    @jax.jit
    def sample_and_reference(mean):
        pre_tanh = ops.gaussian_sample(key, mean, log_std)
        reference = ops.tanh_gaussian_log_prob(mean, log_std, pre_tanh)
        grad = jax.grad(lambda m: jnp.sum(ops.tanh_gaussian_sample(key, m, log_std)[0]))(mean)
        return ops.tanh_gaussian_sample(key, mean, log_std), pre_tanh, reference, grad

    (action, log_prob), pre_tanh, reference, grad = sample_and_reference(mean)
    assert np.all(np.abs(np.asarray(action)) <= 1.0)
    np.testing.assert_allclose(action, np.tanh(pre_tanh), **TOL)
    np.testing.assert_allclose(log_prob, reference, **TOL)
    assert np.all(np.asarray(grad) > 0)  # tanh is increasing in the mean


# --------------------------------------------------------------------------
# Pytree classes


def test_classes_are_pytrees_with_the_function_semantics():
    logits, other_logits = random_logits(0), random_logits(1)
    mean, log_std = random_gaussian(0)
    mean2, log_std2 = random_gaussian(1)
    cat, cat2 = ops.Categorical(logits), ops.Categorical(other_logits)
    gauss, gauss2 = ops.DiagGaussian(mean, log_std), ops.DiagGaussian(mean2, log_std2)
    assert len(jax.tree_util.tree_leaves(cat)) == 1
    assert len(jax.tree_util.tree_leaves(gauss)) == 2

    key = jax.random.PRNGKey(3)

    @jax.jit
    def summary(dist, other):
        action, log_prob = dist.sample_and_log_prob(key)
        return action, log_prob, dist.log_prob(dist.mode()), dist.entropy(), dist.kl(other)

    @jax.jit
    def categorical_reference(logits, other_logits):
        a = ops.categorical_sample(key, logits)
        return (
            a,
            ops.categorical_log_prob(logits, a),
            ops.categorical_entropy(logits),
            ops.categorical_kl(logits, other_logits),
        )

    @jax.jit
    def gaussian_reference(mean, log_std, mean2, log_std2):
        x = ops.gaussian_sample(key, mean, log_std)
        return (
            x,
            ops.gaussian_log_prob(mean, log_std, x),
            ops.gaussian_entropy(mean, log_std),
            ops.gaussian_kl(mean, log_std, mean2, log_std2),
        )

    a, lp, lp_mode, h, kl = summary(cat, cat2)
    ref_a, ref_lp, ref_h, ref_kl = categorical_reference(logits, other_logits)
    np.testing.assert_array_equal(a, ref_a)
    np.testing.assert_allclose(lp, ref_lp, **TOL)
    np.testing.assert_allclose(lp_mode, np.max(np_log_softmax(logits), -1), **TOL)
    np.testing.assert_allclose(h, ref_h, **TOL)
    np.testing.assert_allclose(kl, ref_kl, **TOL)

    x, lp, lp_mode, h, kl = summary(gauss, gauss2)
    ref_x, ref_lp, ref_h, ref_kl = gaussian_reference(mean, log_std, mean2, log_std2)
    np.testing.assert_allclose(x, ref_x, **TOL)
    np.testing.assert_allclose(lp, ref_lp, **TOL)
    peak_density = np.sum(-np.float64(log_std) - 0.5 * np.log(2 * np.pi), -1)
    np.testing.assert_allclose(lp_mode, peak_density, **TOL)
    np.testing.assert_allclose(h, ref_h, **TOL)
    np.testing.assert_allclose(kl, ref_kl, **TOL)

    # vmapping over a batch of distributions is vmapping over their leaves.
    per_row = jax.jit(jax.vmap(lambda d: d.entropy()))(gauss)
    np.testing.assert_allclose(per_row, ref_h, **TOL)

"""Return kernels against NumPy loops written from the papers' equations.

Values are drawn by hypothesis for a few fixed shapes, so each jitted kernel
compiles at most once per shape.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from jaxrl import ops

SHAPES = [(1,), (6,), (5, 1), (7, 3), (8, 4)]
TOL = dict(rtol=1e-5, atol=1e-5)


# --------------------------------------------------------------------------
# Random trajectories


def make_trajectory(seed, shape, gamma=0.9, p_terminal=0.2, p_truncated=0.15):
    """Float32 arrays for a time-major batch, with episode boundaries."""
    rng = np.random.default_rng(seed)
    batch = shape[1:]
    terminated = rng.random(shape) < p_terminal
    truncated = (rng.random(shape) < p_truncated) & ~terminated
    f32 = lambda x: np.asarray(x, np.float32)  # noqa: E731
    return dict(
        rewards=f32(rng.normal(size=shape)),
        values=f32(rng.normal(size=shape)),
        discounts=f32(gamma * (1.0 - terminated)),
        bootstrap_value=f32(rng.normal(size=batch)),
        log_rhos=f32(rng.normal(scale=0.7, size=shape)),
        terminated=terminated,
        truncated=truncated,
        final_values=f32(rng.normal(size=shape)),  # V(final_observation)
    )


trajectories = st.builds(
    make_trajectory,
    seed=st.integers(0, 2**31 - 1),
    shape=st.sampled_from(SHAPES),
    gamma=st.sampled_from([0.0, 0.5, 0.99, 1.0]),
)
lambdas = st.sampled_from([0.0, 0.3, 0.95, 1.0])


def next_values_of(values, bootstrap_value):
    return np.concatenate([values[1:], bootstrap_value[None]], axis=0)


# --------------------------------------------------------------------------
# NumPy oracles: explicit loops over time (float64), one per equation.


def np_discounted_returns(r, d, bootstrap):
    r, d = np.float64(r), np.float64(d)
    out = np.zeros_like(r)
    g = np.float64(bootstrap)
    for t in reversed(range(len(r))):
        g = r[t] + d[t] * g
        out[t] = g
    return out


def np_gae(r, v, d, bootstrap, lam, next_values=None, ends=None):
    r, v, d = np.float64(r), np.float64(v), np.float64(d)
    if next_values is None:
        next_values = next_values_of(v, np.float64(bootstrap))
    if ends is None:
        ends = np.zeros_like(r)
    adv = np.zeros_like(r)
    a = np.zeros_like(r[0])
    for t in reversed(range(len(r))):
        delta = r[t] + d[t] * next_values[t] - v[t]
        a = delta + d[t] * lam * (1.0 - ends[t]) * a
        adv[t] = a
    return adv, adv + v


def np_td_lambda(r, v, d, bootstrap, lam):
    r, v, d = np.float64(r), np.float64(v), np.float64(d)
    nv = next_values_of(v, np.float64(bootstrap))
    out = np.zeros_like(r)
    g = np.float64(bootstrap)
    for t in reversed(range(len(r))):
        g = r[t] + d[t] * ((1 - lam) * nv[t] + lam * g)
        out[t] = g
    return out


def np_n_step(r, v, d, bootstrap, n):
    """Direct sum: Σ_{k<m} (Π_{i<k} γ_{t+i}) r_{t+k} + (Π_{i<m} γ_{t+i}) V(s_{t+m})."""
    r, v, d = np.float64(r), np.float64(v), np.float64(d)
    T = len(r)
    v_ext = np.concatenate([v, np.float64(bootstrap)[None]], axis=0)
    out = np.zeros_like(r)
    for t in range(T):
        m = min(n, T - t)
        g, scale = np.zeros_like(r[0]), np.ones_like(r[0])
        for k in range(m):
            g = g + scale * r[t + k]
            scale = scale * d[t + k]
        out[t] = g + scale * v_ext[t + m]
    return out


def np_vtrace(log_rhos, d, r, v, bootstrap, rho_bar, c_bar, pg_rho_bar, lam):
    """IMPALA eq. 1 as the explicit sum over t ≥ s (not the recursion)."""
    log_rhos, d, r, v = map(np.float64, (log_rhos, d, r, v))
    T = len(r)
    rhos = np.exp(log_rhos)
    clip = lambda x, bar: x if bar is None else np.minimum(bar, x)  # noqa: E731
    rho, c = clip(rhos, rho_bar), lam * clip(rhos, c_bar)
    v_next = next_values_of(v, np.float64(bootstrap))
    delta = rho * (r + d * v_next - v)
    vs = np.zeros_like(v)
    for s in range(T):
        total, weight = np.zeros_like(v[0]), np.ones_like(v[0])
        for t in range(s, T):
            total = total + weight * delta[t]
            weight = weight * d[t] * c[t]
        vs[s] = v[s] + total
    vs_next = next_values_of(vs, np.float64(bootstrap))
    pg = clip(rhos, pg_rho_bar) * (r + d * vs_next - v)
    return vs, pg


# --------------------------------------------------------------------------
# Jitted kernels, shared across tests (compiled once per shape).


@pytest.fixture(scope="module")
def jitted():
    return dict(
        gae=jax.jit(ops.gae),
        gae_next=jax.jit(
            lambda r, v, d, lam, nv, ends: ops.gae(
                r, v, d, None, lam, next_values=nv, episode_ends=ends
            )
        ),
        td_lambda=jax.jit(ops.td_lambda),
        n_step=jax.jit(ops.n_step_returns, static_argnums=4),
        discounted=jax.jit(ops.discounted_returns),
        vtrace=jax.jit(ops.vtrace),
    )


def args(tr, *names):
    return [tr[n] for n in names]


RVDB = ("rewards", "values", "discounts", "bootstrap_value")


# --------------------------------------------------------------------------
# Against the NumPy loops


@given(trajectories)
def test_discounted_returns_matches_loop(jitted, tr):
    r, d, b = args(tr, "rewards", "discounts", "bootstrap_value")
    np.testing.assert_allclose(jitted["discounted"](r, d, b), np_discounted_returns(r, d, b), **TOL)


def test_discounted_returns_without_bootstrap_starts_from_zero():
    r = np.arange(1.0, 5.0, dtype=np.float32)
    d = np.full(4, 0.5, np.float32)
    expected = np_discounted_returns(r, d, 0.0)
    np.testing.assert_allclose(ops.discounted_returns(r, d), expected, **TOL)


@given(trajectories, lambdas)
def test_gae_matches_loop(jitted, tr, lam):
    adv, ret = jitted["gae"](*args(tr, *RVDB), lam)
    np_adv, np_ret = np_gae(*args(tr, *RVDB), lam)
    np.testing.assert_allclose(adv, np_adv, **TOL)
    np.testing.assert_allclose(ret, np_ret, **TOL)


@given(trajectories, lambdas)
def test_gae_with_next_values_and_episode_ends_matches_loop(jitted, tr, lam):
    r, v, d, b = args(tr, *RVDB)
    # What an auto-resetting env gives: at a truncated step the next state's
    # value is V(final_observation), not values[t + 1] (a new episode).
    next_values = np.where(tr["truncated"], tr["final_values"], next_values_of(v, b))
    ends = tr["terminated"] | tr["truncated"]
    adv, ret = jitted["gae_next"](r, v, d, lam, next_values, ends)
    np_adv, np_ret = np_gae(r, v, d, b, lam, next_values=next_values, ends=np.float64(ends))
    np.testing.assert_allclose(adv, np_adv, **TOL)
    np.testing.assert_allclose(ret, np_ret, **TOL)

    # Same targets from the reward-folding recipe in the module docstring.
    gamma_trunc = np.where(tr["truncated"], d, 0.0)  # d = γ on a non-terminal step
    folded_r = (r + gamma_trunc * tr["final_values"]).astype(np.float32)
    folded_d = np.where(tr["truncated"], 0.0, d).astype(np.float32)
    fold_adv, _ = jitted["gae"](folded_r, v, folded_d, b, lam)
    np.testing.assert_allclose(adv, fold_adv, **TOL)


@given(trajectories, lambdas)
def test_gae_next_values_default_is_shifted_values(jitted, tr, lam):
    r, v, d, b = args(tr, *RVDB)
    nv = next_values_of(v, b)
    no_ends = np.zeros(v.shape, bool)
    np.testing.assert_allclose(
        jitted["gae_next"](r, v, d, lam, nv, no_ends)[0], jitted["gae"](r, v, d, b, lam)[0], **TOL
    )


@given(trajectories, lambdas)
def test_td_lambda_matches_loop_and_gae_returns(jitted, tr, lam):
    got = jitted["td_lambda"](*args(tr, *RVDB), lam)
    np.testing.assert_allclose(got, np_td_lambda(*args(tr, *RVDB), lam), **TOL)
    np.testing.assert_allclose(got, jitted["gae"](*args(tr, *RVDB), lam)[1], **TOL)


@given(trajectories, st.sampled_from([1, 2, 3, 10]))
def test_n_step_returns_matches_direct_sum(jitted, tr, n):
    got = jitted["n_step"](*args(tr, *RVDB), n)
    np.testing.assert_allclose(got, np_n_step(*args(tr, *RVDB), n), **TOL)


def test_n_step_limits():
    tr = make_trajectory(0, (6, 2))
    r, v, d, b = args(tr, *RVDB)
    one_step = r + d * next_values_of(v, b)
    np.testing.assert_allclose(ops.n_step_returns(r, v, d, b, 1), one_step, **TOL)
    np.testing.assert_allclose(
        ops.n_step_returns(r, v, d, b, 6), ops.discounted_returns(r, d, b), **TOL
    )
    with pytest.raises(ValueError):
        ops.n_step_returns(r, v, d, b, 0)


VTRACE_CLIPS = st.sampled_from(
    [(1.0, 1.0, 1.0), (2.0, 1.0, 1.0), (1.0, 0.5, 2.0), (None, None, None), (None, 1.0, None)]
)


@given(trajectories, VTRACE_CLIPS, lambdas)
def test_vtrace_matches_explicit_sum(jitted, tr, clips, lam):
    rho_bar, c_bar, pg_bar = clips
    inputs = args(tr, "log_rhos", "discounts", "rewards", "values", "bootstrap_value")
    out = jitted["vtrace"](*inputs, rho_bar, c_bar, pg_bar, lam)
    vs, pg = np_vtrace(*inputs, rho_bar, c_bar, pg_bar, lam)
    np.testing.assert_allclose(out.vs, vs, rtol=1e-4, atol=1e-4)
    np.testing.assert_allclose(out.pg_advantages, pg, rtol=1e-4, atol=1e-4)


@given(trajectories, lambdas)
def test_vtrace_on_policy_is_td_lambda(jitted, tr, lam):
    """IMPALA Remark 2: with π = μ and c̄ ≥ 1, v_s is the λ-return."""
    r, v, d, b = args(tr, *RVDB)
    out = jitted["vtrace"](np.zeros_like(r), d, r, v, b, 1.0, 1.0, 1.0, lam)
    np.testing.assert_allclose(out.vs, jitted["td_lambda"](r, v, d, b, lam), **TOL)


def test_zero_discount_isolates_the_episode(kernels):
    """Nothing after a terminal step reaches the targets at or before it."""
    tr = make_trajectory(3, (5, 2))
    tr["discounts"][2] = 0.0
    changed = dict(tr, bootstrap_value=tr["bootstrap_value"] + 100.0)
    changed["values"] = tr["values"].copy()
    changed["rewards"] = tr["rewards"].copy()
    changed["log_rhos"] = tr["log_rhos"].copy()
    changed["values"][3:] += 100.0
    changed["rewards"][3:] -= 50.0
    changed["log_rhos"][3:] += 1.0
    for out, out_changed in zip(kernels(tr), kernels(changed)):
        np.testing.assert_allclose(out[:3], out_changed[:3], **TOL)


# --------------------------------------------------------------------------
# rlax as a second oracle (per-sequence functions vmapped over the batch axis)


@pytest.fixture(scope="module")
def rlax_batched():
    rlax = pytest.importorskip("rlax")

    def over_batch(fn, in_axes):
        return jax.vmap(fn, in_axes=in_axes, out_axes=1)

    seq, scalar = 1, None
    return dict(
        gae=jax.jit(
            over_batch(
                rlax.truncated_generalized_advantage_estimation, (seq, seq, scalar, seq)
            )
        ),
        lambda_returns=jax.jit(over_batch(rlax.lambda_returns, (seq, seq, seq, scalar))),
        n_step=jax.jit(
            over_batch(rlax.n_step_bootstrapped_returns, (seq, seq, seq, scalar)),
            static_argnums=3,
        ),
        vtrace=jax.jit(
            over_batch(
                rlax.vtrace_td_error_and_advantage, (seq,) * 5 + (scalar,) * 3
            )
        ),
    )


rlax_trajectories = st.builds(
    make_trajectory,
    seed=st.integers(0, 2**31 - 1),
    shape=st.just((7, 3)),
    gamma=st.sampled_from([0.5, 0.99]),
)


@given(rlax_trajectories, lambdas, st.sampled_from([1, 3, 5]))
def test_matches_rlax(jitted, rlax_batched, tr, lam, n):
    r, v, d, b = args(tr, *RVDB)
    lam = np.float32(lam)
    nv = next_values_of(v, b)
    v_full = np.concatenate([v, b[None]], axis=0)

    np.testing.assert_allclose(
        jitted["gae"](r, v, d, b, lam)[0], rlax_batched["gae"](r, d, lam, v_full), **TOL
    )
    np.testing.assert_allclose(
        jitted["td_lambda"](r, v, d, b, lam), rlax_batched["lambda_returns"](r, d, nv, lam), **TOL
    )
    np.testing.assert_allclose(
        jitted["n_step"](r, v, d, b, n), rlax_batched["n_step"](r, d, nv, n), **TOL
    )
    # rlax fixes c̄ = 1 and mixes λ into its pg advantage, so compare vs for
    # any λ and the advantages at λ = 1, where IMPALA and rlax agree.
    rhos = np.exp(tr["log_rhos"])
    for rho_bar, pg_bar in [(1.0, 1.0), (3.0, 2.0)]:
        ours = jitted["vtrace"](tr["log_rhos"], d, r, v, b, rho_bar, 1.0, pg_bar, lam)
        theirs = rlax_batched["vtrace"](v, nv, r, d, rhos, lam, rho_bar, pg_bar)
        np.testing.assert_allclose(ours.vs, theirs.errors + v, rtol=1e-4, atol=1e-4)
        ours1 = jitted["vtrace"](tr["log_rhos"], d, r, v, b, rho_bar, 1.0, pg_bar, 1.0)
        theirs1 = rlax_batched["vtrace"](v, nv, r, d, rhos, np.float32(1.0), rho_bar, pg_bar)
        np.testing.assert_allclose(ours1.pg_advantages, theirs1.pg_advantage, rtol=1e-4, atol=1e-4)


# --------------------------------------------------------------------------
# Transformations: jit, vmap, grad; shapes and dtypes


def all_kernels(tr, lam=0.9):
    """Every kernel's outputs on one trajectory, as a flat tuple."""
    r, v, d, b = args(tr, *RVDB)
    adv, ret = ops.gae(r, v, d, b, lam)
    vt = ops.vtrace(tr["log_rhos"], d, r, v, b, lambda_=lam)
    return (
        adv,
        ret,
        ops.td_lambda(r, v, d, b, lam),
        ops.n_step_returns(r, v, d, b, 3),
        ops.discounted_returns(r, d, b),
        vt.vs,
        vt.pg_advantages,
    )


@pytest.fixture(scope="module")
def kernels():
    return jax.jit(all_kernels)


def test_jit_equals_eager_and_dtype_is_float32(kernels):
    tr = make_trajectory(1, (5, 2))
    for e, j in zip(all_kernels(tr), kernels(tr)):
        assert e.dtype == jnp.float32 and e.shape == (5, 2)
        np.testing.assert_allclose(e, j, **TOL)


def test_unbatched_sequence_equals_batch_slice(kernels):
    tr = make_trajectory(2, (5, 2))
    batched = kernels(tr)
    for i in range(2):
        single = {k: np.asarray(x)[:, i] if np.ndim(x) == 2 else x[i] for k, x in tr.items()}
        for full, one in zip(batched, kernels(single)):
            assert one.shape == (5,)
            np.testing.assert_allclose(full[:, i], one, **TOL)


def test_vmap_over_extra_axis_equals_per_slice(kernels):
    trs = [make_trajectory(s, (5, 2)) for s in range(3)]
    stacked = jax.tree_util.tree_map(lambda *x: np.stack(x), *trs)
    vmapped = jax.jit(jax.vmap(all_kernels))(stacked)
    for i, tr in enumerate(trs):
        for full, one in zip(vmapped, kernels(tr)):
            np.testing.assert_allclose(full[i], one, **TOL)


def test_vmap_over_traced_lambda(kernels):
    tr = make_trajectory(4, (5, 2))
    lams = [0.0, 0.5, 1.0]
    swept = jax.jit(jax.vmap(all_kernels, in_axes=(None, 0)))(tr, jnp.array(lams))
    for i, lam in enumerate(lams):
        for full, one in zip(swept, kernels(tr, lam)):
            np.testing.assert_allclose(full[i], one, **TOL)


def test_vmap_over_traced_vtrace_thresholds(jitted):
    tr = make_trajectory(7, (5, 2))
    inputs = args(tr, "log_rhos", "discounts", "rewards", "values", "bootstrap_value")
    bars = [0.5, 1.0, 2.0]
    swept = jax.jit(
        jax.vmap(lambda bar: ops.vtrace(*inputs, bar, bar, bar))
    )(jnp.array(bars))
    for i, bar in enumerate(bars):
        one = jitted["vtrace"](*inputs, bar, bar, bar)
        np.testing.assert_allclose(swept.vs[i], one.vs, **TOL)
        np.testing.assert_allclose(swept.pg_advantages[i], one.pg_advantages, **TOL)


def test_no_gradient_flows_through_targets():
    tr = make_trajectory(5, (5, 2))
    r, v, d, b = args(tr, *RVDB)

    def target_sum(values, bootstrap, rewards, log_rhos):
        tr2 = dict(tr, values=values, bootstrap_value=bootstrap, rewards=rewards, log_rhos=log_rhos)
        return sum(jnp.sum(x) for x in all_kernels(tr2))

    grads = jax.jit(jax.grad(target_sum, argnums=(0, 1, 2, 3)))(v, b, r, tr["log_rhos"])
    for g in grads:
        np.testing.assert_array_equal(g, np.zeros_like(g))

    # A value loss regressing onto its own V-trace target: only the direct path.
    def value_loss(values):
        vs = ops.vtrace(tr["log_rhos"], d, r, values, b).vs
        return 0.5 * jnp.sum(jnp.square(values - vs))

    vs = ops.vtrace(tr["log_rhos"], d, r, v, b).vs
    np.testing.assert_allclose(jax.jit(jax.grad(value_loss))(v), v - vs, **TOL)


def test_shape_mismatch_is_rejected():
    tr = make_trajectory(6, (5, 2))
    r, v, d, b = args(tr, *RVDB)
    with pytest.raises(AssertionError):
        ops.gae(r, v[:4], d, b, 0.9)
    with pytest.raises(AssertionError):
        ops.td_lambda(r, v, d, b[:1], 0.9)
    with pytest.raises(ValueError):
        ops.gae(r, v, d, None, 0.9)
    with pytest.raises(ValueError):
        ops.discounted_returns(np.float32(1.0), np.float32(1.0))
    chex.assert_type(ops.gae(r, v, d, b, 0.9), jnp.float32)

"""Replay buffers: ring semantics, sampling distributions, n-step targets."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from jaxrl import replay
from jaxrl.replay import prioritized, uniform


def _items(values, obs_dim=2):
    """A batch of transitions whose every leaf encodes the item's id."""
    v = jnp.asarray(values, jnp.float32)
    return replay.Transition(
        obs=jnp.repeat(v[:, None], obs_dim, axis=1),
        action=v[:, None],
        reward=v,
        discount=jnp.ones_like(v),
        next_obs=jnp.repeat(v[:, None] + 0.5, obs_dim, axis=1),
    )


def _example(obs_dim=2):
    return jax.tree.map(lambda x: x[0], _items([0.0], obs_dim))


# --------------------------------------------------------------------------- uniform


def test_uniform_add_wraps_around_overwriting_oldest():
    buf = uniform.init(_example(), capacity=5)
    add = jax.jit(uniform.add)
    for start in (1, 3, 5):  # items 1..6 in batches of two
        buf = add(buf, _items([start, start + 1]))
    # 6 items in 5 slots: item 6 overwrote item 1 in slot 0.
    np.testing.assert_array_equal(buf.storage.reward, [6, 2, 3, 4, 5])
    assert int(buf.size) == 5 and int(buf.position) == 1
    np.testing.assert_array_equal(buf.storage.next_obs[:, 0], np.array([6, 2, 3, 4, 5]) + 0.5)


def test_uniform_never_samples_empty_slots_and_is_uniform():
    buf = uniform.add(uniform.init(_example(), capacity=100), _items([1, 2, 3, 4]))
    batch = jax.jit(uniform.sample, static_argnums=2)(buf, jax.random.PRNGKey(0), 8000)
    values = np.asarray(batch.reward)
    assert set(np.unique(values)) == {1.0, 2.0, 3.0, 4.0}
    counts = np.array([(values == v).sum() for v in (1, 2, 3, 4)])
    assert stats.chisquare(counts).pvalue > 1e-3
    # Leaves of one item stay together.
    np.testing.assert_array_equal(batch.obs[:, 0], values)
    np.testing.assert_array_equal(batch.next_obs[:, 1], values + 0.5)


def test_uniform_can_sample_and_mask():
    buf = uniform.init(_example(), capacity=8)
    assert not bool(uniform.can_sample(buf, 1))
    buf = uniform.add(buf, _items([1, 2, 3]), mask=jnp.array([True, False, True]))
    assert int(buf.size) == 2 and int(buf.position) == 2
    np.testing.assert_array_equal(buf.storage.reward[:3], [1, 3, 0])
    assert bool(uniform.can_sample(buf, 2)) and not bool(uniform.can_sample(buf, 3))
    buf = uniform.add(buf, _items([4, 5]), mask=jnp.array([False, False]))
    assert int(buf.size) == 2


def test_uniform_rejects_bad_batches():
    buf = uniform.init(_example(), capacity=2)
    with pytest.raises(ValueError, match="exceeds capacity"):
        uniform.add(buf, _items([1, 2, 3]))
    with pytest.raises(ValueError, match="does not match"):
        uniform.add(buf, _items([1], obs_dim=3))
    with pytest.raises(ValueError, match="capacity"):
        uniform.init(_example(), capacity=0)


def test_uniform_vmaps_over_buffers_and_runs_in_scan():
    """One buffer per seed, filled and sampled inside one jitted scan."""

    def run(key):
        def body(buf, t):
            values = t * 3.0 + jnp.arange(3.0)
            return uniform.add(buf, _items(values)), None

        buf, _ = jax.lax.scan(body, uniform.init(_example(), 16), jnp.arange(10.0))
        return buf, uniform.sample(buf, key, 32)

    bufs, batches = jax.jit(jax.vmap(run))(jax.random.split(jax.random.PRNGKey(1), 3))
    assert batches.obs.shape == (3, 32, 2)
    np.testing.assert_array_equal(bufs.size, [16, 16, 16])
    # 30 items through 16 slots: only the last 16 (ids 14..29) remain.
    assert np.all(np.asarray(batches.reward) >= 14)
    assert not np.array_equal(batches.reward[0], batches.reward[1])


def test_pendulum_sized_buffer_fits():
    buf = uniform.init(_example(obs_dim=3), capacity=1_000_000)
    nbytes = sum(x.nbytes for x in jax.tree.leaves(buf.storage))
    assert nbytes == 36 * 1_000_000
    buf = jax.jit(uniform.add)(buf, _items(np.arange(64), obs_dim=3))
    assert int(buf.size) == 64


# --------------------------------------------------------------------------- prioritized


@pytest.mark.parametrize("stratified", [True, False])
def test_prioritized_sampling_matches_priorities(stratified):
    alpha = 0.7
    priorities = np.array([0.5, 1.0, 2.0, 4.0, 0.1, 3.0, 1.5], np.float32)
    buf = prioritized.init(_example(), capacity=10, alpha=alpha)  # 3 empty slots
    buf = prioritized.add(buf, _items(np.arange(7)), priorities=jnp.asarray(priorities))
    sample = jax.jit(prioritized.sample, static_argnums=(2, 4))
    keys = jax.random.split(jax.random.PRNGKey(2), 50)
    idx = np.concatenate([np.asarray(sample(buf, k, 256, 0.5, stratified)[1]) for k in keys])
    counts = np.bincount(idx, minlength=10)
    assert counts[7:].sum() == 0  # empty slots never sampled
    weights = priorities.astype(np.float64) ** alpha
    expected = weights / weights.sum() * idx.size
    assert stats.chisquare(counts[:7], expected).pvalue > 1e-3


def test_prioritized_tree_is_consistent_after_updates_and_wraparound():
    alpha = 0.6
    rng = np.random.default_rng(0)
    buf = prioritized.init(_example(), capacity=6, alpha=alpha)
    add = jax.jit(prioritized.add)
    update = jax.jit(prioritized.update_priorities)
    reference = np.zeros(6)
    for step in range(5):
        p = rng.uniform(0.1, 3.0, size=4).astype(np.float32)
        buf = add(buf, _items(np.arange(4) + 4 * step), jnp.asarray(p))
        slots = (np.arange(4) + 4 * step) % 6
        reference[slots] = p
        idx = rng.choice(min(6, 4 * (step + 1)), size=2, replace=False)
        idx = np.append(idx, idx[1])  # a duplicate: one of the two writes wins
        newp = rng.uniform(0.1, 3.0, size=3).astype(np.float32)
        buf = update(buf, jnp.asarray(idx), jnp.asarray(newp))
        reference[idx[0]] = newp[0]
        leaves = np.asarray(prioritized.leaf_priorities(buf))
        assert np.isclose(leaves[idx[1]], newp[1] ** alpha) or np.isclose(leaves[idx[1]], newp[2] ** alpha)
        reference[idx[1]] = leaves[idx[1]] ** (1 / alpha)
        np.testing.assert_allclose(leaves, reference**alpha, rtol=1e-5)
        np.testing.assert_allclose(prioritized.total_priority(buf), leaves.sum(), rtol=1e-5)
        np.testing.assert_allclose(buf.min_tree[1], leaves[: int(buf.size)].min(), rtol=1e-6)
    # Wrap-around: slot 0 holds the 19th item written (ids 0..19 through 6 slots).
    np.testing.assert_array_equal(buf.storage.reward, [18, 19, 14, 15, 16, 17])
    assert int(buf.size) == 6


def test_prioritized_new_items_get_max_priority_and_weights_match_formula():
    alpha, beta = 0.5, 0.4
    buf = prioritized.init(_example(), capacity=8, alpha=alpha)
    buf = prioritized.add(buf, _items([0, 1, 2]), priorities=jnp.array([1.0, 4.0, 9.0]))
    buf = prioritized.add(buf, _items([3]))  # default priority: max seen = 9
    leaves = np.asarray(prioritized.leaf_priorities(buf))
    np.testing.assert_allclose(leaves[:4], np.array([1.0, 4.0, 9.0, 9.0]) ** alpha)
    _, idx, w = prioritized.sample(buf, jax.random.PRNGKey(3), 64, beta)
    probs = leaves[:4] / leaves[:4].sum()
    raw = (4 * probs) ** -beta
    np.testing.assert_allclose(w, raw[np.asarray(idx)] / raw.max(), rtol=1e-5)
    assert float(np.max(w)) <= 1.0


def test_prioritized_never_samples_empty_slots_at_the_mass_edge():
    """Points at the very top of the total mass must still land on an item."""
    buf = prioritized.init(_example(), capacity=1000, alpha=1.0)
    buf = prioritized.add(buf, _items(np.arange(3)), priorities=jnp.array([1e-3, 1.0, 1e3]))
    total = prioritized.total_priority(buf)
    targets = jnp.array([0.0, total * (1 - 1e-7), total, total * 1.01])
    idx = prioritized._descend(buf.sum_tree, targets, buf.num_leaves)
    assert np.all(np.asarray(idx) < 3)
    _, idx, _ = prioritized.sample(buf, jax.random.PRNGKey(4), 4096, 1.0)
    assert np.asarray(idx).max() < 3


def test_prioritized_vmaps_over_seeds_and_alpha():
    def run(key, alpha):
        buf = prioritized.init(_example(), capacity=32, alpha=alpha)
        buf = prioritized.add(buf, _items(np.arange(20)), priorities=jnp.arange(1.0, 21.0))
        batch, idx, w = prioritized.sample(buf, key, 16, 0.4)
        buf = prioritized.update_priorities(buf, idx, jnp.full((16,), 0.5))
        return buf, batch, w

    keys = jax.random.split(jax.random.PRNGKey(5), 2)
    bufs, batches, w = jax.jit(jax.vmap(run))(keys, jnp.array([0.0, 1.0]))
    assert batches.obs.shape == (2, 16, 2) and w.shape == (2, 16)
    # alpha = 0 is uniform: every weight is 1.
    np.testing.assert_allclose(w[0], 1.0, rtol=1e-6)
    assert float(w[1].min()) < 1.0


def _filled_buffer(alpha):
    """6 of 10 slots filled; raw priorities set by add, then by update_priorities."""
    buf = prioritized.init(_example(), capacity=10, alpha=alpha)
    buf = prioritized.add(buf, _items(np.arange(6)), priorities=jnp.array([0.5, 1.0, 2.0, 4.0, 0.1, 3.0]))
    return prioritized.update_priorities(buf, jnp.array([1, 4]), jnp.array([6.0, 0.2]))


RAW = np.array([0.5, 6.0, 2.0, 4.0, 0.2, 3.0])


@pytest.mark.parametrize("old_alpha, new_alpha", [(0.6, 1.0), (0.0, 0.7), (1.0, 0.0), (0.5, 0.5)])
def test_prioritized_set_alpha_rebuilds_trees_from_raw_priorities(old_alpha, new_alpha):
    buf = jax.jit(prioritized.set_alpha)(_filled_buffer(old_alpha), new_alpha)
    np.testing.assert_allclose(buf.priorities[:6], RAW)
    assert float(buf.alpha) == pytest.approx(new_alpha)
    # The same trees as a buffer given new_alpha from the start.
    fresh = _filled_buffer(new_alpha)
    np.testing.assert_allclose(buf.sum_tree, fresh.sum_tree, rtol=1e-6)
    np.testing.assert_array_equal(buf.min_tree, fresh.min_tree)
    np.testing.assert_allclose(prioritized.leaf_priorities(buf)[:6], RAW**new_alpha, rtol=1e-6)
    np.testing.assert_array_equal(prioritized.leaf_priorities(buf)[6:], 0.0)  # empty stays empty


def test_prioritized_set_alpha_under_vmap_rebuilds_only_the_changed_buffers():
    bufs = jax.vmap(_filled_buffer)(jnp.array([0.6, 0.6]))
    out = jax.jit(jax.vmap(prioritized.set_alpha))(bufs, jnp.array([0.6, 1.0]))
    np.testing.assert_array_equal(out.sum_tree[0], bufs.sum_tree[0])
    np.testing.assert_allclose(out.sum_tree[1], _filled_buffer(1.0).sum_tree, rtol=1e-6)
    np.testing.assert_allclose(out.alpha, [0.6, 1.0])
    # One α for all buffers (unbatched) goes through the same rule.
    out = jax.jit(jax.vmap(prioritized.set_alpha, in_axes=(0, None)))(bufs, 1.0)
    np.testing.assert_allclose(out.sum_tree, jnp.stack([_filled_buffer(1.0).sum_tree] * 2), rtol=1e-6)


@pytest.mark.parametrize(
    "initial, progress, expected",
    [(0.4, 0.0, 0.4), (0.4, 0.5, 0.7), (0.4, 1.0, 1.0), (0.4, 3.0, 1.0), (1.0, 0.3, 1.0), (0.0, 0.25, 0.25)],
)
def test_annealed_beta_is_linear_from_its_initial_value_to_one(initial, progress, expected):
    assert float(prioritized.annealed_beta(initial, progress)) == pytest.approx(expected)


# --------------------------------------------------------------------------- n-step


def _numpy_n_step(obs, action, reward, discount, next_obs, end, n):
    """Written from the definition: sum rewards until n steps or an episode end."""
    T, B = reward.shape
    out = {k: [] for k in ("obs", "action", "reward", "discount", "next_obs")}
    for t in range(T - n + 1):
        rows = {k: [] for k in out}
        for b in range(B):
            total, gamma_prod = 0.0, 1.0
            for k in range(n):
                total += gamma_prod * reward[t + k, b]
                gamma_prod *= discount[t + k, b]
                last = t + k
                if end[t + k, b]:
                    break
            rows["obs"].append(obs[t, b])
            rows["action"].append(action[t, b])
            rows["reward"].append(total)
            rows["discount"].append(gamma_prod)
            rows["next_obs"].append(next_obs[last, b])
        for k in out:
            out[k].append(np.stack(rows[k]))
    return {k: np.stack(v) for k, v in out.items()}


@pytest.mark.parametrize("n", [1, 3, 5])
def test_n_step_transitions_match_numpy_reference(n):
    rng = np.random.default_rng(n)
    T, B, gamma = 12, 4, 0.9
    terminated = rng.random((T, B)) < 0.15
    truncated = (~terminated) & (rng.random((T, B)) < 0.15)
    steps = replay.Transition(
        obs=rng.normal(size=(T, B, 3)).astype(np.float32),
        action=rng.normal(size=(T, B, 1)).astype(np.float32),
        reward=rng.normal(size=(T, B)).astype(np.float32),
        discount=(gamma * (1 - terminated)).astype(np.float32),
        next_obs=rng.normal(size=(T, B, 3)).astype(np.float32),
    )
    end = terminated | truncated
    got = jax.jit(replay.n_step_transitions, static_argnums=2)(steps, end, n)
    want = _numpy_n_step(
        steps.obs, steps.action, steps.reward, steps.discount, steps.next_obs, end=end, n=n
    )
    for field in want:
        np.testing.assert_allclose(getattr(got, field), want[field], rtol=1e-5, atol=1e-6, err_msg=field)


def test_n_step_truncation_bootstraps_termination_does_not():
    # One env, constant reward 1, gamma 0.5: truncated at t=1, terminated at t=3.
    reward = np.ones((5, 1), np.float32)
    terminated = np.array([[0], [0], [0], [1], [0]], bool)
    truncated = np.array([[0], [1], [0], [0], [0]], bool)
    steps = replay.Transition(
        obs=np.arange(5.0, dtype=np.float32).reshape(5, 1, 1),
        action=np.zeros((5, 1, 1), np.float32),
        reward=reward,
        discount=(0.5 * (1 - terminated)).astype(np.float32),
        next_obs=np.arange(1.0, 6.0, dtype=np.float32).reshape(5, 1, 1) + 100,
    )
    got = replay.n_step_transitions(steps, terminated | truncated, 3)
    # t=0: stops at the truncation after 2 steps: 1 + .5, bootstrap with .25 from next_obs[1].
    np.testing.assert_allclose(got.reward[:, 0], [1.5, 1.0, 1.5])
    np.testing.assert_allclose(got.discount[:, 0], [0.25, 0.5, 0.0])
    np.testing.assert_allclose(got.next_obs[:, 0, 0], [102.0, 102.0, 104.0])


def test_n_step_rejects_bad_n():
    steps = replay.Transition(*(np.zeros((3, 1)),) * 5)
    with pytest.raises(ValueError, match="n must be"):
        replay.n_step_transitions(steps, np.zeros((3, 1), bool), 4)

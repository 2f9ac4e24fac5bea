"""Image torsos (jaxrl.networks: nature_cnn, impala_resnet beside minatar_cnn):
the papers' layer shapes, uint8 scaling, and the torso in every agent that
has one (the actor-critic's network, DQN, h-DQN) on the pixel probe.

Shapes are read with ``jax.eval_shape`` (nothing runs); the agents take one
step each on a 36x36 image, the smallest the Nature CNN takes."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxrl import envs, networks
from jaxrl.agents import actor_critic, dqn, hdqn, ppo

KEY = jax.random.PRNGKey(0)


def param_shapes(module, obs_shape, dtype=jnp.float32):
    """{path: shape} of ``module``'s parameters for one observation of ``obs_shape``."""
    params = jax.eval_shape(module.init, KEY, jax.ShapeDtypeStruct(obs_shape, dtype))
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    return {"/".join(str(k.key) for k in path): leaf.shape for path, leaf in flat}


def test_nature_cnn_has_the_papers_layers():
    # Mnih et al. 2015 on 84x84x4 frames: 20x20x32, 9x9x64, 7x7x64, then 512 units.
    shapes = param_shapes(networks.make_torso("nature_cnn", (512,), "relu"), (84, 84, 4))
    kernels = [s for path, s in shapes.items() if path.endswith("kernel")]
    assert kernels == [(8, 8, 4, 32), (4, 4, 32, 64), (3, 3, 64, 64), (7 * 7 * 64, 512)]


def test_impala_resnet_has_the_papers_layers():
    # Espeholt et al. 2018: 3 sections x (1 conv + 2 residual blocks of 2 convs)
    # = 15 convs; 64x64 (Procgen) frames pool to 32, 16, 8; then 256 units.
    shapes = param_shapes(networks.make_torso("impala_resnet", (256,), "relu"), (64, 64, 3))
    kernels = [s for path, s in shapes.items() if path.endswith("kernel")]
    convs = [s for s in kernels if len(s) == 4]
    assert len(convs) == 15
    assert sorted(s[-1] for s in convs) == [16] * 5 + [32] * 10
    assert all(s[:2] == (3, 3) for s in convs)
    assert [s for s in kernels if len(s) == 2] == [(8 * 8 * 32, 256)]


@pytest.mark.parametrize("kind, image, features", [
    ("nature_cnn", (36, 36, 1), 16),       # VALID: 36 -> 8 -> 3 -> 1
    ("impala_resnet", (12, 10, 3), 16),    # SAME: any size
    ("minatar_cnn", (10, 10, 4), 16),
])
def test_image_torsos_keep_batch_axes_and_scale_uint8(kind, image, features):
    torso = networks.make_torso(kind, (8, features), "relu")
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (2, 3) + image).astype(np.uint8)
    # Random parameters drawn in NumPy: the torso's orthogonal init would
    # compile a QR decomposition per layer.
    params = jax.tree.map(lambda p: 0.1 * rng.standard_normal(p.shape, np.float32),
                          jax.eval_shape(torso.init, KEY, jax.ShapeDtypeStruct(image, jnp.float32)))

    @jax.jit
    def outputs(pixels):
        as_float = pixels.astype(jnp.float32)
        return torso.apply(params, pixels), torso.apply(params, jnp.stack([as_float / 255.0, as_float]))

    out, (scaled, unscaled) = outputs(pixels)
    assert out.shape == (2, 3, features)
    # uint8 is divided by 255; a float image is taken as it is.
    np.testing.assert_allclose(out, scaled, rtol=1e-5, atol=1e-6)
    assert not np.allclose(out, unscaled, atol=1e-3)


def test_auto_still_picks_the_minatar_cnn_for_images():
    assert networks.resolve_torso("auto", (10, 10, 4)) == "minatar_cnn"
    assert networks.resolve_torso("auto", (4,)) == "mlp"


# --------------------------------------------------------------------------- agents on pixels


@pytest.fixture(scope="module")
def pixel_env():
    return envs.make("Probe-PixelCue-v0")


def cue_images(env, env_params, n=8):
    """``n`` first frames and their cues (True: the right half is lit)."""
    obs, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(KEY, n), env_params)
    return obs, np.asarray(state.cue) > 0


def test_actor_critic_network_takes_images(pixel_env):
    env, env_params = pixel_env
    ac = actor_critic.build(env, env_params, ppo.Config(torso="nature_cnn", hidden_sizes=(16,)))
    assert ac.network.torso == "nature_cnn"
    obs, _ = cue_images(env, env_params)
    params = jax.eval_shape(actor_critic.init_params, ac, KEY)
    params = jax.tree.map(lambda p: 0.1 * np.random.default_rng(0).standard_normal(p.shape, np.float32), params)
    logits, value = jax.jit(ac.network.apply)(params, obs)
    assert logits.shape == (8, 2) and value.shape == (8,)
    assert float(jnp.ptp(value)) > 0  # the frames' cues differ, and so do their values


TINY_DQN = dict(num_envs=2, rollout_len=2, batch_size=4, buffer_size=16, learning_starts=0,
                hidden_sizes=(8,))


# One program per agent, each with the Nature CNN, the cheaper to compile
# (DQN and h-DQN build every image torso through the same make_torso call;
# the IMPALA ResNet's step compiles in about twice the time).


def test_dqn_with_the_nature_cnn_steps(pixel_env):
    env, env_params = pixel_env
    agent = dqn.make(env, env_params, dqn.Config(torso="nature_cnn", **TINY_DQN))
    images = cue_images(env, env_params)[0]

    @jax.jit
    def first_step(key):
        state, metrics = agent.step(agent.init(key))
        return state, metrics, dqn.q_function(agent)(state.params, images)

    state, metrics, q = first_step(KEY)
    assert float(metrics["learning"]) == 1.0 and np.isfinite(float(metrics["loss"]))
    # The buffer keeps whole frames, 0..255.
    assert state.buffer.storage.obs.shape == (16, 36, 36, 1)
    assert float(state.buffer.storage.obs.max()) == 255.0
    # Q reads the pixels: the two cues' frames get different values.
    assert q.shape == (8, 2) and float(jnp.ptp(q[:, 0])) > 0


def test_hdqn_with_the_nature_cnn_steps(pixel_env):
    env, env_params = pixel_env
    # Two goals on flat observations: a blank frame, and a lit one.
    goals = hdqn.GoalSpec(("blank", "lit"), lambda obs, g: (obs.max() > 0) == (g == 1))
    config = hdqn.Config(torso="nature_cnn", num_envs=2, batch_size=4, controller_buffer_size=16,
                         meta_buffer_size=16, learning_starts=0, hidden_sizes=(8,))
    agent = hdqn.make(env, env_params, config, goals=goals)
    state, metrics = jax.jit(lambda key: agent.step(agent.init(key)))(KEY)
    assert np.isfinite(float(metrics["controller_loss"])) and np.isfinite(float(metrics["meta_loss"]))
    # The controller sees the frame and the goal's one-hot (36·36 + 2), not
    # the frame once per goal as the MLP's gated input would be.
    assert state.controller_buffer.storage.obs.shape == (16, 36 * 36 + 2)

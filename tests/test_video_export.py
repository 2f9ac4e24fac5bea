"""``jaxrl eval --video`` and ``jaxrl export`` / ``jaxrl.load_policy``, on
tiny trained runs: frames drawn from env states, and exported policies that
act bit for bit like the training process in a fresh process with JAX alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import jax
import numpy as np
import pytest
from PIL import Image

from cli_helpers import assert_usage_error, run_cli
from jaxrl import envs, export, run
from jaxrl.envs import render
from jaxrl.run import rundir, video
from jaxrl.run.config_io import key_from_json
from jaxrl.run.evaluation import evaluation_keys
from jaxrl.run.policy import deterministic_policy, deterministic_recurrent_policy, load_saved_policy
from tiny_agents import TINY


def _train_tiny(out_dir, algo, **overrides):
    env_id, values = TINY[algo]
    agent = run.build_agent(algo, env_id, {}, {**values, **overrides})
    run.train(agent, jax.random.PRNGKey(0), 64, seeds=2, out_dir=out_dir, eval_episodes=2,
              progress=False, env_id=env_id)
    return out_dir


@pytest.fixture(scope="module")
def ppo_run(tmp_path_factory):
    """Discrete actions, with observation normalisation."""
    return _train_tiny(tmp_path_factory.mktemp("ppo") / "run", "ppo", normalize_obs=True)


@pytest.fixture(scope="module")
def gru_run(tmp_path_factory):
    """A recurrent policy (its core's state carried through each episode)."""
    return _train_tiny(tmp_path_factory.mktemp("gru") / "run", "ppo", core="gru", core_size=8)


@pytest.fixture(scope="module")
def ddpg_run(tmp_path_factory):
    """Continuous actions on Pendulum."""
    return _train_tiny(tmp_path_factory.mktemp("ddpg") / "run", "ddpg")


# ------------------------------------------------------------------ frames


def _reset_step(env_id):
    env, env_params = envs.make(env_id)
    obs, state = env.reset(jax.random.PRNGKey(1), env_params)
    action = np.zeros(env.action_space(env_params).shape, np.float32)
    return env, env_params, render.Step(jax.device_get(state), np.asarray(obs), action)


@pytest.mark.parametrize("env_id", sorted(render.RENDERERS))
def test_every_renderable_env_draws_its_reset_state(env_id):
    env, env_params, step = _reset_step(env_id)
    image = render.frame(env_id, env, env_params, step)
    pixels = np.asarray(image)
    assert image.mode == "RGB" and min(image.size) >= 200
    assert len(np.unique(pixels.reshape(-1, 3), axis=0)) > 2  # something is drawn on the background


def test_frames_follow_the_state():
    env, env_params, step = _reset_step("CartPole-v1")
    left = render.frame("CartPole-v1", env, env_params, step._replace(state=step.state.replace(x=-1.0)))
    right = render.frame("CartPole-v1", env, env_params, step._replace(state=step.state.replace(x=1.0)))
    assert not np.array_equal(np.asarray(left), np.asarray(right))


def test_an_env_without_a_drawing_is_refused_with_the_list():
    with pytest.raises(ValueError, match=r"'Catch-bsuite' cannot be rendered; these can: CartPole-v1"):
        render.check_can_render("Catch-bsuite")


def test_recorded_episodes_end_where_evaluation_says(ppo_run):
    """The recording's returns and lengths are those of jaxrl.envs.episode_returns
    under the same key (CartPole steps deterministically), and each episode's
    final state is a frame of its own."""
    policy = load_saved_policy(ppo_run, seed=1)
    agent = policy.agent
    key = evaluation_keys(key_from_json(policy.saved["key"]), policy.saved["seeds"])[1]
    act = deterministic_policy(agent)
    recording = video.record_episodes(agent.env, agent.env_params, act, policy.params, key, 2)
    expected = envs.episode_returns(agent.env, agent.env_params, lambda obs, k: act(policy.params, obs), key, 2)
    np.testing.assert_array_equal(recording.lengths(), expected.lengths)
    np.testing.assert_array_equal(recording.returns(), expected.returns)
    images = list(video.episode_frames("CartPole-v1", agent.env, agent.env_params, recording))
    assert len(images) == int(np.sum(recording.lengths() + 1))


def test_a_recurrent_policy_is_recorded_with_its_state_carried_as_evaluation_carries_it(gru_run, tmp_path,
                                                                                       capsys):
    policy = load_saved_policy(gru_run, seed=0)
    agent = policy.agent
    key = evaluation_keys(key_from_json(policy.saved["key"]), policy.saved["seeds"])[0]
    act, initial_carry = deterministic_recurrent_policy(agent)
    recording = video.record_episodes(agent.env, agent.env_params, act, policy.params, key, 2,
                                      policy_state=initial_carry(2))
    expected = envs.episode_returns(agent.env, agent.env_params,
                                    lambda obs, k, carry: act(policy.params, obs, carry), key, 2,
                                    policy_state=initial_carry(2))
    np.testing.assert_array_equal(recording.lengths(), expected.lengths)
    np.testing.assert_array_equal(recording.returns(), expected.returns)
    # The state matters: the same policy restarted from its initial state at
    # every step acts differently on some step of these episodes.
    forgetful = video.record_episodes(agent.env, agent.env_params,
                                      lambda p, obs: act(p, obs, initial_carry(2))[0],
                                      policy.params, key, 2)
    assert not np.array_equal(forgetful.actions, recording.actions)
    # The clip's episodes are the ones `jaxrl eval` scored with the state carried.
    _eval_with_video(gru_run, tmp_path / "gru.gif", capsys)


# ------------------------------------------------------------------ jaxrl eval --video


def _eval_with_video(run_dir, out, capsys) -> str:
    """`jaxrl eval` with a 2-episode clip of seed 0; checks that the clip's
    episodes are the evaluation's (the same keys) and returns the report line."""
    status, stdout, err, _ = run_cli(capsys, "eval", run_dir, "--episodes", 2, "--video", out,
                                     "--video-episodes", 2)
    assert status == 0, err
    line = stdout.strip().splitlines()[-1]
    assert line.startswith(f"wrote {out}: seed 0, 2 episodes")
    returns = json.loads((run_dir / rundir.EVAL).read_text())["episode_returns"][0]
    assert f"returns {', '.join(f'{r:.6g}' for r in returns)};" in line
    return line


def test_eval_records_a_gif_of_the_evaluation_episodes(ppo_run, tmp_path, capsys):
    out = tmp_path / "clip.gif"
    line = _eval_with_video(ppo_run, out, capsys)
    with Image.open(out) as gif:
        frames = gif.n_frames
    assert f"{frames} frames" in line

    status, _, err, seconds = run_cli(capsys, "eval", ppo_run, "--video", out)
    assert_usage_error(status, err, seconds, f"--video {out} exists", "--force")


def test_mp4_is_written_where_imageio_ffmpeg_is_installed(ppo_run, tmp_path):
    pytest.importorskip("imageio_ffmpeg")
    out = tmp_path / "clip.mp4"
    result = video.record_video(ppo_run, out, episodes=1)
    assert out.read_bytes()[4:8] == b"ftyp" and result.frames == result.lengths[0] + 1
    assert not list(tmp_path.glob(".*partial*"))


def test_mp4_without_a_writer_names_what_to_install(monkeypatch, tmp_path):
    monkeypatch.setattr(video.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ValueError, match="pip install imageio-ffmpeg"):
        video.check_output(tmp_path / "clip.mp4")


@pytest.mark.parametrize("argv, fragments", [
    (["--video", "{tmp}/clip.avi"], ["expected a file ending in .gif or .mp4"]),
    (["--video", "{tmp}/clip.gif", "--video-seed", "2"], ["--video-seed", "0..1"]),
    (["--video", "{tmp}/clip.gif", "--video-episodes", "0"], ["--video-episodes"]),
    (["--video", "{tmp}/missing/clip.gif"], ["does not exist"]),
    (["--video-episodes", "2"], ["need --video FILE"]),
])
def test_video_input_errors_come_before_anything_compiles(ppo_run, tmp_path, capsys, no_training,
                                                           argv, fragments):
    argv = [a.format(tmp=tmp_path) for a in argv]
    status, _, err, seconds = run_cli(capsys, "eval", ppo_run, *argv)
    assert_usage_error(status, err, seconds, *fragments)


def test_an_env_that_cannot_be_drawn_is_refused_before_anything_compiles(ppo_run, tmp_path, capsys,
                                                                          no_training):
    config = json.loads((ppo_run / rundir.CONFIG).read_text())
    (tmp_path / "catch").mkdir()
    (tmp_path / "catch" / rundir.CONFIG).write_text(json.dumps({**config, "env_id": "Catch-bsuite"}))
    status, _, err, seconds = run_cli(capsys, "eval", tmp_path / "catch", "--video", tmp_path / "c.gif")
    assert_usage_error(status, err, seconds, "'Catch-bsuite' cannot be rendered", "CartPole-v1", "MinAtar")


# ------------------------------------------------------------------ export


def _reference_actions(run_dir, obs):
    """The training process's deterministic actions, as the agent's own
    evaluation takes them (continuous ones through RescaleAction). A
    recurrent policy's ``obs`` is a sequence ``[T, B, ...]`` and its carry
    runs through it from the initial state."""
    policy = load_saved_policy(run_dir, seed=1)
    agent = policy.agent
    key = jax.random.PRNGKey(7)
    if agent.initial_carry is not None:
        def sequence(params, obs):
            step = lambda carry, o: agent.act(params, o, key, deterministic=True, carry=carry)[::-1]
            return jax.lax.scan(step, agent.initial_carry((obs.shape[1],)), obs)[1]

        return np.asarray(jax.jit(sequence)(policy.params, obs))
    act = jax.jit(lambda p, o: agent.act(p, o, key, deterministic=True))
    actions = act(policy.params, obs)
    if envs.action_space_kind(agent.env, agent.env_params) == "continuous":
        actions = envs.RescaleAction(agent.env).env_action(actions, agent.env_params)
    return np.asarray(actions)


def test_exported_policies_act_bit_for_bit_in_a_fresh_process_with_jax_alone(
        ppo_run, ddpg_run, gru_run, tmp_path, capsys):
    cases = {}
    for name, run_dir in (("ppo", ppo_run), ("ddpg", ddpg_run), ("gru", gru_run)):
        out = tmp_path / name
        status, stdout, err, _ = run_cli(capsys, "export", run_dir, "--out", out, "--seed", 1)
        assert status == 0, err
        assert f"jaxrl.load_policy('{out}')" in stdout
        shape = json.loads((out / export.POLICY_JSON).read_text())["observation"]["shape"]
        # The recurrent policy sees a sequence of 6 batches of 16.
        lead = (6, 16) if name == "gru" else (16,)
        obs = np.random.default_rng(0).normal(0, 2, size=(*lead, *shape)).astype(np.float32)
        np.save(out / "obs.npy", obs)
        cases[name] = (out, _reference_actions(run_dir, obs))
        assert len(np.unique(cases[name][1])) > 1  # the comparison below is not a vacuous one

    script = textwrap.dedent(f"""
        import sys
        import numpy as np
        import jaxrl

        for name in {sorted(cases)!r}:
            out = {str(tmp_path)!r} + "/" + name
            act = jaxrl.load_policy(out)
            obs = np.load(out + "/obs.npy")
            if act.recurrent:  # a batch, then its first lane alone, each with its carry
                carry, single, actions, first = act.initial_carry(obs.shape[1]), act.initial_carry(), [], []
                for o in obs:
                    a, carry = act(o, carry)
                    b, single = act(o[0], single)
                    actions.append(np.asarray(a)); first.append(np.asarray(b))
                np.save(out + "/actions.npy", np.stack(actions))
                np.save(out + "/first.npy", np.stack(first))
            else:
                np.save(out + "/actions.npy", np.asarray(act(obs)))
                np.save(out + "/first.npy", np.asarray(act(obs[0])))
        loaded = sorted(m for m in sys.modules
                        if m.split(".")[0] in ("gymnax", "optax", "flax") or m.startswith("jaxrl.agents"))
        assert not loaded, loaded
    """)
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    for name, (out, expected) in cases.items():
        actions = np.load(out / "actions.npy")
        assert actions.dtype == expected.dtype and actions.shape == expected.shape, name
        np.testing.assert_array_equal(actions, expected)
        first = expected[:, 0] if name == "gru" else expected[0]
        np.testing.assert_array_equal(np.load(out / "first.npy"), first)


def test_a_recurrent_export_describes_its_carry_and_refuses_a_call_without_it(gru_run, tmp_path):
    description = export.export_run(gru_run, tmp_path / "gru")
    assert description["format_version"] == export.RECURRENT_FORMAT_VERSION
    assert description["recurrent"]["core"] == "gru"
    assert description["recurrent"]["carry"] == [{"shape": [8], "dtype": "float32"}]
    act = export.load_policy(tmp_path / "gru")
    assert act.recurrent and "recurrent" in repr(act)
    obs = np.zeros(description["observation"]["shape"], np.float32)
    with pytest.raises(ValueError, match="recurrent: pass carry"):
        act(obs)
    action, carry = act(obs, act.initial_carry())
    assert np.shape(action) == () and [np.shape(c) for c in carry] == [(8,)]


def test_the_description_says_what_the_policy_needs(ppo_run, ddpg_run, tmp_path):
    ppo = export.export_run(ppo_run, tmp_path / "ppo")
    assert ppo["action_space"] == {"kind": "discrete", "n": 2, "dtype": "int32"}
    assert ppo["observation"] == {"shape": [4], "dtype": "float32"}
    assert ppo["network"] == {"hidden_sizes": [8], "activation": "tanh", "torso": "auto"}
    assert ppo["algorithm"] == "ppo" and ppo["env_id"] == "CartPole-v1" and ppo["versions"]["jaxrl"]
    stats = load_saved_policy(ppo_run).params["obs_norm"]
    np.testing.assert_array_equal(ppo["observation_normalization"]["mean"], np.asarray(stats.mean))
    np.testing.assert_array_equal(ppo["observation_normalization"]["var"], np.asarray(stats.var))
    assert json.loads((tmp_path / "ppo" / export.POLICY_JSON).read_text()) == ppo

    ddpg = export.export_run(ddpg_run, tmp_path / "ddpg")
    assert ddpg["action_space"] == {"kind": "box", "shape": [1], "dtype": "float32",
                                    "low": [-2.0], "high": [2.0]}
    assert ddpg["observation_normalization"] is None


def test_export_writes_only_into_a_new_empty_or_earlier_export_directory(ppo_run, tmp_path, capsys,
                                                                        no_training):
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    status, _, err, seconds = run_cli(capsys, "export", ppo_run, "--out", tmp_path / "mine", "--force")
    assert_usage_error(status, err, seconds, "not empty and holds no jaxrl policy")
    status, _, err, seconds = run_cli(capsys, "export", ppo_run, "--out", tmp_path / "x", "--seed", 5)
    assert_usage_error(status, err, seconds, "--seed must be one of the run's seeds 0..1")
    status, _, err, seconds = run_cli(capsys, "export", tmp_path / "mine", "--out", tmp_path / "x")
    assert_usage_error(status, err, seconds, "not a run directory")
    assert not (tmp_path / "x").exists()


def test_an_earlier_export_is_replaced_only_with_force(ppo_run, tmp_path):
    out = tmp_path / "policy"
    export.export_run(ppo_run, out, seed=0)
    (out / "README").write_text("mine")
    with pytest.raises(export.ExportDirError, match="pass --force"):
        export.check_export_dir(out)
    assert export.export_run(ppo_run, out, seed=1, force=True)["source"]["seed"] == 1
    assert (out / "README").read_text() == "mine"
    assert sorted(p.name for p in out.iterdir()) == ["README", "act.jaxexport", "params.npz", "policy.json"]


def test_load_policy_refuses_what_is_not_an_export(tmp_path):
    with pytest.raises(export.ExportDirError, match="holds no exported jaxrl policy"):
        export.load_policy(tmp_path)


def test_import_jaxrl_stays_light():
    # jaxrl asks for its CPU devices through JAX_NUM_CPU_DEVICES (jaxrl.cpu),
    # so importing it imports no jax at all: `jaxrl --help` stays fast.
    script = "import sys, jaxrl; assert 'jax' not in sys.modules; assert callable(jaxrl.load_policy)"
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr

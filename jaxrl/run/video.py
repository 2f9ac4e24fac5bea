"""Videos of a saved policy: ``jaxrl eval RUN --video out.gif``.

:func:`record_episodes` plays ``K`` deterministic episodes side by side in
one jitted ``lax.scan`` and returns every step's env state; the frames are
drawn from those states on the host (:mod:`jaxrl.envs.render`), one episode
after another, and written as a GIF (Pillow) or an MP4 (imageio-ffmpeg).
Every check (the environment can be drawn, the output path is free, an MP4
writer is installed) happens before anything is compiled.
"""

from __future__ import annotations

import importlib.util
import itertools
import os
import warnings
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from jaxrl.compilation import compiler_options
from jaxrl.envs import render

SUFFIXES = (".gif", ".mp4")
MP4_WRITER = "imageio-ffmpeg"
MAX_EPISODES = 100  # each episode is hundreds of frames held in memory


class Recording(NamedTuple):
    """Time-major ``[T, K, ...]`` host arrays of ``K`` episodes played side by
    side: at step ``t`` episode ``k`` was in ``states[t, k]``, saw ``obs[t, k]``,
    took ``actions[t, k]`` (env units), got ``rewards[t, k]`` and ended
    (terminated or truncated) where ``done[t, k]``. Steps after an episode's
    first end carry on from its final state and are not part of it."""

    states: Any
    obs: np.ndarray
    actions: np.ndarray
    rewards: np.ndarray
    done: np.ndarray

    def lengths(self) -> np.ndarray:
        """Steps of each episode ``[K]``; ``T`` where one did not end."""
        ended = self.done.any(axis=0)
        return np.where(ended, self.done.argmax(axis=0) + 1, self.done.shape[0])

    def returns(self) -> np.ndarray:
        """Undiscounted return of each episode ``[K]``."""
        steps = np.arange(self.rewards.shape[0])[:, None]
        return np.where(steps < self.lengths()[None], self.rewards, 0.0).sum(axis=0)


def record_episodes(
    env: Any,
    env_params: Any,
    policy: Callable[..., Any],
    params: Any,
    key: jax.Array,
    num_episodes: int,
    max_steps: int | None = None,
    policy_state: Any = None,
) -> Recording:
    """Plays ``num_episodes`` episodes of ``policy(params, obs [K, ...]) ->
    env actions [K, ...]`` in ``env`` side by side, in one jitted scan of
    ``max_steps`` steps (default ``env_params.max_steps_in_episode + 1``, so
    every episode ends and its final state is kept).

    A policy with memory (a recurrent core) is ``policy(params, obs, state)
    -> (actions, state)`` with ``policy_state`` its state at the episodes'
    start (leading axis K), as in :func:`jaxrl.envs.episode_returns`. Each
    lane plays one episode, so the state is never reset.

    The env is stepped without its auto-reset (``step_env``), so the state
    after an episode's last step (the pole down, the flag reached) is the
    next row. ``reset_key, run_key = jax.random.split(key)`` as in
    :func:`jaxrl.envs.episode_returns`.
    """
    if max_steps is None:
        max_steps = int(env_params.max_steps_in_episode) + 1

    def play(params, key):
        reset_key, run_key = jax.random.split(key)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(
            jax.random.split(reset_key, num_episodes), env_params
        )

        def one_step(carry, _):
            state, obs, key, memory = carry
            key, step_key = jax.random.split(key)
            if policy_state is None:
                action = policy(params, obs)
            else:
                action, memory = policy(params, obs, memory)
            next_obs, next_state, reward, terminated, _ = jax.vmap(env.step_env, in_axes=(0, 0, 0, None))(
                jax.random.split(step_key, num_episodes), state, action, env_params
            )
            truncated = jax.vmap(env.is_truncated, in_axes=(0, None))(next_state, env_params)
            row = (state, obs, action, reward.astype(jnp.float32), terminated | truncated)
            return (next_state, next_obs, key, memory), row

        _, rows = jax.lax.scan(one_step, (state, obs, run_key, policy_state), length=max_steps)
        return rows

    # Compiled as evaluation is, so that a clip shows the episodes it scored.
    rows = jax.device_get(jax.jit(play, compiler_options=compiler_options("evaluate"))(params, key))
    return Recording(*rows)


def episode_frames(env_id: str, env: Any, env_params: Any, recording: Recording) -> Iterator[Any]:
    """The frames of every episode, one after another: each episode's states
    up to and including its final one, captioned with the episode, the step
    and the return so far. Drawn as they are consumed, so a long video is
    never held in memory whole."""
    renderer = render.check_can_render(env_id)
    lengths = recording.lengths()
    steps = recording.obs.shape[0]
    episodes = len(lengths)
    for k, length in enumerate(lengths):
        cumulative = np.concatenate([[0.0], np.cumsum(recording.rewards[:length, k])])
        for t in range(min(length + 1, steps)):
            step = render.Step(
                state=jax.tree.map(lambda leaf: leaf[t, k], recording.states),
                obs=recording.obs[t, k],
                # The final state was reached by the last action: draw it with that one.
                action=recording.actions[min(t, length - 1), k],
            )
            image = renderer.draw(env, env_params, step)
            caption = f"episode {k + 1}/{episodes}   step {t}   return {cumulative[t]:.4g}"
            yield render.with_caption(image, caption)


def check_output(path: str | os.PathLike, *, force: bool = False) -> Path:
    """``path`` as a video file to write: a ``.gif`` or ``.mp4`` (with its
    writer installed) in an existing, writable directory, and not an existing
    file unless ``force``. ValueError otherwise, naming what to do."""
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise ValueError(f"--video {path}: expected a file ending in {' or '.join(SUFFIXES)}")
    if suffix == ".mp4":
        check_mp4_writer()
    if path.is_dir():
        raise ValueError(f"--video {path} is a directory; name a file")
    if path.exists() and not force:
        raise ValueError(f"--video {path} exists; pass --force to overwrite it")
    folder = path.absolute().parent
    if not folder.is_dir():
        raise ValueError(f"--video {path}: directory {folder} does not exist")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise ValueError(f"--video {path}: directory {folder} is not writable")
    return path


def check_mp4_writer() -> None:
    """ValueError naming what to install unless MP4 files can be written."""
    hint = f"writing .mp4 needs {MP4_WRITER}: pip install {MP4_WRITER} (or pip install 'jaxrl[video]'), or write a .gif"
    if importlib.util.find_spec("imageio_ffmpeg") is None:
        raise ValueError(hint)
    import imageio_ffmpeg

    try:
        imageio_ffmpeg.get_ffmpeg_exe()
    except RuntimeError as e:
        raise ValueError(f"{hint} ({e})") from None


def write_video(path: str | os.PathLike, images: Iterable[Any], fps: float) -> int:
    """Writes ``images`` (Pillow images, at least one) as a GIF or MP4 (by
    ``path``'s suffix) at ``fps``, atomically: a reader sees the old file or
    the whole new one. Returns the number of frames written."""
    path = Path(path)
    partial = path.with_name(f".{path.stem}.partial{path.suffix}")
    counted = _Counted(images)
    try:
        first = next(counted)
        if path.suffix.lower() == ".gif":
            render.save_gif(partial, itertools.chain([first], counted), fps)
        else:
            _write_mp4(partial, first, counted, fps)
        os.replace(partial, path)
    finally:
        partial.unlink(missing_ok=True)
    return counted.count


class _Counted:
    """An iterator over ``items`` that counts what it gave."""

    def __init__(self, items: Iterable[Any]):
        self._items, self.count = iter(items), 0

    def __iter__(self):
        return self

    def __next__(self):
        item = next(self._items)
        self.count += 1
        return item


def _write_mp4(path: Path, first: Any, rest: Iterable[Any], fps: float) -> None:
    import imageio_ffmpeg

    width, height = first.size
    # H.264 in yuv420p (what players accept) needs even sides.
    padded = (width + width % 2, height + height % 2)
    writer = imageio_ffmpeg.write_frames(
        str(path), padded, fps=fps, codec="libx264", pix_fmt_out="yuv420p",
        macro_block_size=1, output_params=["-movflags", "+faststart"],
    )
    with warnings.catch_warnings():
        # JAX warns of any fork; this one only starts ffmpeg (fork, then exec at once).
        warnings.filterwarnings("ignore", message="os.fork", category=RuntimeWarning)
        writer.send(None)
    try:
        for image in itertools.chain([first], rest):
            frame = np.zeros((padded[1], padded[0], 3), np.uint8)
            frame[:height, :width] = np.asarray(image.convert("RGB"))
            writer.send(frame)
    finally:
        writer.close()


class VideoResult(NamedTuple):
    """What :func:`record_video` wrote."""

    path: Path
    returns: list[float]
    lengths: list[int]
    frames: int
    env_steps: int
    """Env steps of training at the recorded checkpoint."""


def check_request(out_dir: str | os.PathLike, path: str | os.PathLike, *, episodes: int = 1,
                  seed: int = 0, force: bool = False) -> None:
    """Every check :func:`record_video` makes before it compiles anything:
    ValueError (RunDirError for the run) naming the problem."""
    from jaxrl.run import rundir
    from jaxrl.run.policy import check_seed

    if not isinstance(episodes, int) or not 1 <= episodes <= MAX_EPISODES:
        raise ValueError(f"--video-episodes (episodes) must be an integer in [1, {MAX_EPISODES}], got {episodes!r}")
    saved = rundir.load_config(out_dir)
    render.check_can_render(saved["env_id"])
    check_seed(saved, seed, "--video-seed (seed)")
    check_output(path, force=force)


def record_video(
    out_dir: str | os.PathLike,
    path: str | os.PathLike,
    *,
    episodes: int = 1,
    seed: int = 0,
    force: bool = False,
    fps: float | None = None,
) -> VideoResult:
    """Records ``episodes`` deterministic episodes of seed ``seed``'s policy at
    the latest checkpoint of the run in ``out_dir`` into ``path`` (``.gif`` or
    ``.mp4``; an existing file only with ``force``). ``fps`` defaults to the
    environment's own pace. The episodes start from the run's evaluation key
    of that seed."""
    from jaxrl.run.config_io import key_from_json
    from jaxrl.run.evaluation import evaluation_keys
    from jaxrl.run.policy import deterministic_policy, deterministic_recurrent_policy, load_saved_policy

    check_request(out_dir, path, episodes=episodes, seed=seed, force=force)
    policy = load_saved_policy(out_dir, seed)
    agent, saved = policy.agent, policy.saved
    key = evaluation_keys(key_from_json(saved["key"]), saved["seeds"])[seed]
    if agent.initial_carry is None:
        act, start = deterministic_policy(agent), None
    else:
        act, initial_carry = deterministic_recurrent_policy(agent)
        start = initial_carry(episodes)
    recording = record_episodes(
        agent.env, agent.env_params, act, policy.params, key, episodes, policy_state=start
    )
    images = episode_frames(saved["env_id"], agent.env, agent.env_params, recording)
    frames = write_video(path, images, fps or render.check_can_render(saved["env_id"]).fps)
    return VideoResult(
        path=Path(path),
        returns=[float(r) for r in recording.returns()],
        lengths=[int(n) for n in recording.lengths()],
        frames=frames,
        env_steps=policy.env_steps,
    )

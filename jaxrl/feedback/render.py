"""Frames of a segment, drawn from its observations with Pillow; sprite
sheets for the labelling page, GIF clips for the notebook; how a segment
ended; and what a person needs to judge each environment.

Segments are stored as observations, not env states, so frames are drawn
from what an observation says: CartPole's cart position and pole angle,
Pendulum's angle and the applied torque, Acrobot's two link angles,
MountainCar's position on its hill. Any other env gets a bar chart of the
observation vector per step (scaled by the segment's largest magnitude), which
still shows a person how the state moves. The drawings are
:mod:`jaxrl.envs.render`'s, which ``jaxrl eval --video`` draws env states with.
"""

from __future__ import annotations

import dataclasses
import io
import math

import numpy as np
from PIL import Image, ImageDraw

from jaxrl.envs import render as drawing
from jaxrl.envs.render import (  # noqa: F401  (names this module has always offered)
    ACCENT, BACKGROUND, HEIGHT, INK, LIMIT, SUPERSAMPLE, TRACK, U, WIDTH, gif,
)

SPRITE_COLUMNS = 10

CARTPOLE = dict(gravity=9.8, masscart=1.0, masspole=0.1, length=0.5, force_mag=10.0, tau=0.02,
                theta_threshold=drawing.CARTPOLE_THETA_THRESHOLD,
                x_threshold=drawing.CARTPOLE_X_THRESHOLD, max_steps=500)


def cartpole_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (x, ẋ, θ, θ̇): :func:`jaxrl.envs.render.cartpole`."""
    return drawing.cartpole(float(obs[0]), float(obs[2]), int(np.asarray(action).reshape(-1)[0]))


def pendulum_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (cos θ, sin θ, θ̇) with θ = 0 upright; the arc shows the torque."""
    return drawing.pendulum(float(obs[0]), float(obs[1]), float(np.asarray(action, np.float32).reshape(-1)[0]))


def acrobot_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂), θ₁ = 0 hanging down."""
    return drawing.acrobot(math.atan2(float(obs[1]), float(obs[0])), math.atan2(float(obs[3]), float(obs[2])))


def mountain_car_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (position ∈ [-1.2, 0.6], velocity); the hill is sin(3x), the flag at 0.5."""
    return drawing.mountain_car(float(obs[0]))


def bars_frame(obs: np.ndarray, action, scale: float = 1.0) -> Image.Image:
    """Any env: one bar per observation component, zero in the middle."""
    return drawing.bars(obs, scale)


_DRAWERS = {
    "CartPole-v1": cartpole_frame,
    "Pendulum-v1": pendulum_frame,
    "Acrobot-v1": acrobot_frame,
    "MountainCar-v0": mountain_car_frame,
    "MountainCarContinuous-v0": mountain_car_frame,
}


def frames(env_id: str | None, obs: np.ndarray, action: np.ndarray) -> list[Image.Image]:
    """One frame per step of a segment (``obs [n, obs_dim]``, ``action [n, ...]``)."""
    obs = np.asarray(obs, np.float32)
    draw = _DRAWERS.get(env_id or "")
    if draw is None:
        scale = float(np.abs(obs).max()) if obs.size else 1.0
        return [bars_frame(o, a, scale or 1.0) for o, a in zip(obs, action)]
    return [draw(o, a) for o, a in zip(obs, action)]


def segment_clip(env_id: str | None, segment, fps: float = 15.0) -> bytes:
    """The GIF of a :class:`jaxrl.feedback.queries.Segment`, its end marked."""
    images = frames(env_id, segment.obs, segment.action)
    end = segment_end(env_id, segment)
    if images and end is not None:
        images[-1] = with_banner(images[-1], end.text, end.kind)
    return gif(images, fps)


def sprite(images: list[Image.Image]) -> bytes:
    """The frames as one JPEG, :data:`SPRITE_COLUMNS` to a row (frame ``i``
    at column ``i % SPRITE_COLUMNS``, row ``i // SPRITE_COLUMNS``): one
    request for a clip the page plays at any speed. JPEG (full colour
    resolution, so thin red lines keep their colour) encodes several times
    faster than PNG, which the next query's wait would feel."""
    images = images or [drawing.blank()]
    columns = min(len(images), SPRITE_COLUMNS)
    rows = -(-len(images) // columns)
    sheet = Image.new("RGB", (columns * WIDTH, rows * HEIGHT), BACKGROUND)
    for i, image in enumerate(images):
        sheet.paste(image, ((i % columns) * WIDTH, (i // columns) * HEIGHT))
    buffer = io.BytesIO()
    sheet.save(buffer, format="JPEG", quality=90, subsampling=0)
    return buffer.getvalue()


def segment_sprite(env_id: str | None, segment) -> bytes:
    """The sprite sheet (:func:`sprite`) of a segment's frames."""
    return sprite(frames(env_id, segment.obs, segment.action))


# ------------------------------------------------------------ how a segment ends


@dataclasses.dataclass(frozen=True)
class SegmentEnd:
    """How a segment's episode ended after its last step: ``kind`` is
    ``"termination"`` (the task failed or succeeded), ``"time limit"``, or
    ``"episode end"`` (one of the two, not known which); ``text`` says it
    in words for the marker; ``good`` whether ending this way is good."""

    kind: str
    text: str
    good: bool | None = None


def cartpole_next(obs: np.ndarray, action) -> np.ndarray:
    """One step of CartPole's dynamics (Euler, as gymnax and Gymnasium)."""
    c = CARTPOLE
    x, x_dot, theta, theta_dot = (float(v) for v in obs[:4])
    force = c["force_mag"] if int(np.asarray(action).reshape(-1)[0]) == 1 else -c["force_mag"]
    total, pml = c["masscart"] + c["masspole"], c["masspole"] * c["length"]
    cos, sin = math.cos(theta), math.sin(theta)
    temp = (force + pml * theta_dot**2 * sin) / total
    theta_acc = (c["gravity"] * sin - cos * temp) / (c["length"] * (4 / 3 - c["masspole"] * cos**2 / total))
    x_acc = temp - pml * theta_acc * cos / total
    return np.array([x + c["tau"] * x_dot, x_dot + c["tau"] * x_acc,
                     theta + c["tau"] * theta_dot, theta_dot + c["tau"] * theta_acc])


def _cartpole_end(segment) -> SegmentEnd | None:
    if len(segment.obs) == 0:
        return None
    x, _, theta, _ = cartpole_next(segment.obs[-1], segment.action[-1])
    if abs(theta) > CARTPOLE["theta_threshold"]:
        return SegmentEnd("termination", "The pole fell: episode over", good=False)
    if abs(x) > CARTPOLE["x_threshold"]:
        return SegmentEnd("termination", "The cart left the track: episode over", good=False)
    if segment.episode_ended:
        return SegmentEnd("time limit", f"Time limit ({CARTPOLE['max_steps']} steps) reached", good=True)
    return None


def _reached_flag(segment) -> SegmentEnd | None:
    if not segment.episode_ended:
        return None
    if float(segment.obs[-1][0]) > 0.4:
        return SegmentEnd("termination", "Reached the flag", good=True)
    return SegmentEnd("time limit", "Time limit reached", good=None)


def _time_limit_only(segment) -> SegmentEnd | None:
    return SegmentEnd("time limit", "Time limit reached", good=None) if segment.episode_ended else None


def _any_end(segment) -> SegmentEnd | None:
    if not segment.episode_ended:
        return None
    return SegmentEnd("episode end", "Episode ended (the task ended or hit its time limit)")


def segment_end(env_id: str | None, segment) -> SegmentEnd | None:
    """How the segment's episode ended, if it ended at or after its last
    step (None: the segment just stops there). A :class:`Segment` knows
    only that its episode ended early; which end it was is read from the
    last observation with the environment's rules where jaxrl knows them."""
    return GUIDES.get(env_id or "", DEFAULT_GUIDE).end_of(segment)


# ------------------------------------------------------------ what a person is told


@dataclasses.dataclass(frozen=True)
class EnvGuide:
    """What a labeller reads for one environment: which segment is
    ``better``, the ``legend`` of the drawing, and how segments end."""

    better: str
    legend: tuple[str, ...]
    end_of: object = _any_end


DEFAULT_GUIDE = EnvGuide(
    better="Pick the segment that seems to do the task better. Each bar is one number of the "
           "observation (zero is the middle line); no drawing is known for this environment.",
    legend=("bars: the observation, one bar per number, scaled to the segment's largest value",))

GUIDES = {
    "CartPole-v1": EnvGuide(
        better="Better keeps the pole upright and the cart near the middle of the track. A segment "
               "that ends with the pole falling or the cart leaving the track is a failure; one that "
               "balances all its steps beats one that falls.",
        legend=("dark box: the cart; orange bar: the pole",
                "arrow: the way the agent pushes the cart this step",
                "red marks at the track's ends: the cart must stay between them",
                "faint red lines: how far (12°) the pole may lean before the episode ends"),
        end_of=_cartpole_end),
    "Pendulum-v1": EnvGuide(
        better="Better swings the pendulum up and holds it upright (the grey dot above the pivot), "
               "with little torque. There is no failure: only the time limit ends an episode.",
        legend=("orange rod: the pendulum; grey dot: upright", "black arc: the torque applied, its size "
                "and direction"),
        end_of=_time_limit_only),
    "Acrobot-v1": EnvGuide(
        better="Better swings the free end of the two links up above the red line; reaching it "
               "ends the episode early, which is a success.",
        legend=("black: the first link from the fixed pivot; orange: the second link",
                "red line: the height the free end must reach"),
        end_of=_any_end),
    "MountainCar-v0": EnvGuide(
        better="Better gets the car to the flag on the right hill, sooner; rocking back and forth "
               "to build speed is good. Reaching the flag ends the episode early, a success.",
        legend=("orange: the car; grey curve: the hills; red flag: the goal",),
        end_of=_reached_flag),
}
GUIDES["MountainCarContinuous-v0"] = GUIDES["MountainCar-v0"]


def guide(env_id: str | None) -> EnvGuide:
    """What a labeller reads for ``env_id`` (a generic guide for an unknown env)."""
    return GUIDES.get(env_id or "", DEFAULT_GUIDE)


def with_banner(image: Image.Image, text: str, kind: str = "termination") -> Image.Image:
    """``image`` with a banner across its top saying how the segment ended."""
    image = image.copy()
    draw = ImageDraw.Draw(image)
    colour = LIMIT if kind == "termination" else (60, 110, 190)
    draw.rectangle([0, 0, image.width, 34], fill=colour)
    draw.text((10, 7), text, fill=BACKGROUND, font=drawing.font(20))
    return image


def pair_gif(env_id: str | None, left, right, fps: float = 15.0, hold_seconds: float = 1.2) -> bytes:
    """One GIF of the two segments side by side, playing in sync: both start
    together, the shorter holds its last frame (with its end marked) until
    the longer ends, and both hold ``hold_seconds`` before the loop starts
    again."""
    columns = []
    for segment in (left, right):
        images = frames(env_id, segment.obs, segment.action) or [drawing.blank()]
        end = segment_end(env_id, segment)
        if end is not None:
            images[-1] = with_banner(images[-1], end.text, end.kind)
        columns.append(images)
    steps = max(len(c) for c in columns)
    gap = 12
    combined = []
    for t in range(steps):
        sheet = Image.new("RGB", (2 * WIDTH + gap, HEIGHT), (230, 230, 230))
        for i, images in enumerate(columns):
            sheet.paste(images[min(t, len(images) - 1)], (i * (WIDTH + gap), 0))
        combined.append(sheet)
    frame_ms = max(20, int(1000 / fps))
    durations = [frame_ms] * (steps - 1) + [frame_ms + int(1000 * hold_seconds)]
    return gif(combined, durations=durations)

"""Frames of a segment, drawn from its observations with Pillow, and clips (GIF).

Segments are stored as observations, not env states, so frames are drawn
from what an observation says: CartPole's cart position and pole angle,
Pendulum's angle and the applied torque, Acrobot's two link angles,
MountainCar's position on its hill. Any other env gets a bar chart of the
observation vector per step (scaled by the segment's largest magnitude), which
still shows a person how the state moves.
"""

from __future__ import annotations

import io
import math

import numpy as np
from PIL import Image, ImageDraw

WIDTH, HEIGHT = 240, 160
BACKGROUND, INK, ACCENT, TRACK = (255, 255, 255), (40, 40, 40), (200, 80, 40), (150, 150, 150)


def _canvas():
    image = Image.new("RGB", (WIDTH, HEIGHT), BACKGROUND)
    return image, ImageDraw.Draw(image)


def cartpole_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (x, ẋ, θ, θ̇); the track spans x ∈ [-2.4, 2.4] (the failure bounds)."""
    image, draw = _canvas()
    x, theta = float(obs[0]), float(obs[2])
    ground = HEIGHT - 40
    draw.line([(10, ground), (WIDTH - 10, ground)], fill=TRACK, width=2)
    cx = WIDTH / 2 + x / 2.4 * (WIDTH / 2 - 20)
    draw.rectangle([cx - 18, ground - 12, cx + 18, ground], fill=INK)
    pole = 80
    top = (cx + pole * math.sin(theta), ground - 12 - pole * math.cos(theta))
    draw.line([(cx, ground - 12), top], fill=ACCENT, width=6)
    push = 1 if int(np.asarray(action).reshape(-1)[0]) == 1 else -1
    draw.polygon([(cx + push * 30, ground - 6), (cx + push * 22, ground - 11), (cx + push * 22, ground - 1)],
                 fill=TRACK)
    return image


def pendulum_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (cos θ, sin θ, θ̇) with θ = 0 upright; the arc shows the torque."""
    image, draw = _canvas()
    cos, sin = float(obs[0]), float(obs[1])
    centre, rod = (WIDTH / 2, HEIGHT / 2), 60
    tip = (centre[0] + rod * sin, centre[1] - rod * cos)
    draw.line([centre, tip], fill=ACCENT, width=8)
    draw.ellipse([centre[0] - 4, centre[1] - 4, centre[0] + 4, centre[1] + 4], fill=INK)
    torque = float(np.clip(np.asarray(action, np.float32).reshape(-1)[0], -2.0, 2.0))
    if abs(torque) > 1e-3:
        span = 90 * abs(torque) / 2.0
        start = -90 if torque > 0 else -90 - span
        draw.arc([centre[0] - 25, centre[1] - 25, centre[0] + 25, centre[1] + 25],
                 start, start + span, fill=INK, width=3)
    return image


def acrobot_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (cos θ₁, sin θ₁, cos θ₂, sin θ₂, θ̇₁, θ̇₂), θ₁ = 0 hanging down."""
    image, draw = _canvas()
    t1 = math.atan2(float(obs[1]), float(obs[0]))
    t2 = math.atan2(float(obs[3]), float(obs[2]))
    base, link = (WIDTH / 2, HEIGHT / 2 - 10), 35
    p1 = (base[0] + link * math.sin(t1), base[1] + link * math.cos(t1))
    p2 = (p1[0] + link * math.sin(t1 + t2), p1[1] + link * math.cos(t1 + t2))
    draw.line([(20, base[1] - link), (WIDTH - 20, base[1] - link)], fill=TRACK, width=1)  # the goal height
    draw.line([base, p1], fill=INK, width=5)
    draw.line([p1, p2], fill=ACCENT, width=5)
    return image


def mountain_car_frame(obs: np.ndarray, action) -> Image.Image:
    """obs = (position ∈ [-1.2, 0.6], velocity); the hill is sin(3x), the flag at 0.5."""
    image, draw = _canvas()
    to_px = lambda p, h: (20 + (p + 1.2) / 1.8 * (WIDTH - 40), HEIGHT - 30 - (h + 1) / 2 * (HEIGHT - 70))
    xs = np.linspace(-1.2, 0.6, 60)
    draw.line([to_px(x, math.sin(3 * x)) for x in xs], fill=TRACK, width=2)
    fx, fy = to_px(0.5, math.sin(1.5))
    draw.line([(fx, fy), (fx, fy - 25)], fill=INK, width=2)
    cx, cy = to_px(float(obs[0]), math.sin(3 * float(obs[0])))
    draw.ellipse([cx - 7, cy - 14, cx + 7, cy], fill=ACCENT)
    return image


def bars_frame(obs: np.ndarray, action, scale: float = 1.0) -> Image.Image:
    """Any env: one bar per observation component, zero in the middle."""
    image, draw = _canvas()
    obs = np.asarray(obs, np.float32).reshape(-1)
    n = max(1, obs.size)
    mid, width = HEIGHT / 2, (WIDTH - 20) / n
    draw.line([(10, mid), (WIDTH - 10, mid)], fill=TRACK)
    for i, value in enumerate(obs):
        height = float(np.clip(value / scale, -1, 1)) * (HEIGHT / 2 - 10)
        left = 10 + i * width + 1
        draw.rectangle([left, min(mid, mid - height), left + max(1, width - 2), max(mid, mid - height)],
                       fill=ACCENT)
    return image


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


def gif(images: list[Image.Image], fps: float = 15.0) -> bytes:
    """An endlessly looping GIF of ``images`` (a blank frame if there are none)."""
    images = images or [_canvas()[0]]
    buffer = io.BytesIO()
    images[0].save(buffer, format="GIF", save_all=True, append_images=images[1:],
                   duration=max(20, int(1000 / fps)), loop=0)
    return buffer.getvalue()


def segment_clip(env_id: str | None, segment, fps: float = 15.0) -> bytes:
    """The GIF of a :class:`jaxrl.feedback.queries.Segment`."""
    return gif(frames(env_id, segment.obs, segment.action), fps)

"""Frames of environments, drawn on the host with Pillow.

Two layers:

- Drawings of what a frame shows, from plain numbers: :func:`cartpole`
  (cart position, pole angle, push), :func:`pendulum`, :func:`acrobot`,
  :func:`mountain_car`, :func:`bars` (any vector), :func:`cells` (a grid of
  coloured cells), :func:`chain`. The labelling page
  (:mod:`jaxrl.feedback.render`) draws its segments' observations with them.
- :func:`frame`: one frame of an environment from its state (and the
  observation and action of that step), for the environments in
  :data:`RENDERERS`: gymnax classic control from the state's physical
  quantities, MinAtar from its observation channels, and ``KeyDoor-v0`` and
  ``DecisionProcess-v0`` from their states. :func:`check_can_render` refuses
  any other with a message listing these.

Frames are drawn at :data:`SUPERSAMPLE` times their size and scaled down, so
lines are smooth. Everything here is NumPy and Pillow: states come in as
host arrays (``jax.device_get`` of one step), nothing is traced.
"""

from __future__ import annotations

import io
import math
from typing import Any, Callable, Iterable, NamedTuple

import numpy as np
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 480, 320
SUPERSAMPLE = 2
U = WIDTH / 240 * SUPERSAMPLE  # drawing unit: the frames were designed on a 240 x 160 grid
BACKGROUND, INK, ACCENT, TRACK, LIMIT = (255, 255, 255), (40, 40, 40), (200, 80, 40), (150, 150, 150), (215, 60, 60)

# CartPole's failure bounds (gymnax's and Gymnasium's defaults), which its frames mark.
CARTPOLE_X_THRESHOLD = 2.4
CARTPOLE_THETA_THRESHOLD = 12 * 2 * math.pi / 360


def canvas() -> tuple[Image.Image, ImageDraw.ImageDraw]:
    """A blank supersampled frame and a pen on it (draw in :func:`px` units)."""
    image = Image.new("RGB", (WIDTH * SUPERSAMPLE, HEIGHT * SUPERSAMPLE), BACKGROUND)
    return image, ImageDraw.Draw(image)


def finished(image: Image.Image) -> Image.Image:
    """The supersampled ``image`` at its final size."""
    return image.reduce(SUPERSAMPLE)  # a box filter: smooth edges, and fast


def blank() -> Image.Image:
    """An empty frame."""
    return finished(canvas()[0])


def px(*values: float) -> list[float]:
    """Coordinates on the 240 x 160 design grid as supersampled pixels."""
    return [v * U for v in values]


def font(size: int):
    """Pillow's default font at ``size`` pixels (its one bitmap size on Pillow < 10.1)."""
    try:
        return ImageFont.load_default(size=size)
    except TypeError:
        return ImageFont.load_default()


# ------------------------------------------------------------ drawings


def cartpole(x: float, theta: float, push: int) -> Image.Image:
    """The cart at ``x`` with its pole at ``theta`` (0 upright), pushed right
    when ``push == 1``, else left. The track spans x ∈ [-2.4, 2.4] (the
    failure bounds, marked red), the faint lines at the pivot the ±12° the
    pole may lean."""
    image, draw = canvas()
    ground = 120
    w = 240
    draw.line(px(10, ground, w - 10, ground), fill=TRACK, width=round(2 * U))
    for end in (10, w - 10):
        draw.line(px(end, ground - 14, end, ground + 6), fill=LIMIT, width=round(2 * U))
    cx = w / 2 + x / CARTPOLE_X_THRESHOLD * (w / 2 - 20)
    pivot = (cx, ground - 12)
    pole = 80
    for sign in (-1, 1):  # how far the pole may lean before the episode ends
        lean = sign * CARTPOLE_THETA_THRESHOLD
        draw.line(px(*pivot, pivot[0] + pole * math.sin(lean), pivot[1] - pole * math.cos(lean)),
                  fill=(235, 200, 200), width=round(U))
    draw.rectangle(px(cx - 18, ground - 12, cx + 18, ground), fill=INK)
    top = (cx + pole * math.sin(theta), pivot[1] - pole * math.cos(theta))
    draw.line(px(*pivot, *top), fill=ACCENT, width=round(6 * U))
    draw.ellipse(px(top[0] - 3, top[1] - 3, top[0] + 3, top[1] + 3), fill=ACCENT)
    direction = 1 if push == 1 else -1
    tail, tip = cx + direction * 22, cx + direction * 36
    draw.line(px(cx + direction * 18, ground - 6, tail, ground - 6), fill=INK, width=round(2 * U))
    draw.polygon(px(tip, ground - 6, tail, ground - 12, tail, ground), fill=INK)
    return finished(image)


def pendulum(cos: float, sin: float, torque: float) -> Image.Image:
    """The pendulum at the angle θ of ``(cos θ, sin θ)`` (θ = 0 upright); an
    arc shows ``torque`` (clipped to Pendulum's ±2), its size and direction."""
    image, draw = canvas()
    centre, rod = (120, 80), 60
    draw.ellipse(px(centre[0] - 2, centre[1] - rod - 6, centre[0] + 2, centre[1] - rod - 2), fill=TRACK)
    tip = (centre[0] + rod * sin, centre[1] - rod * cos)
    draw.line(px(*centre, *tip), fill=ACCENT, width=round(8 * U))
    draw.ellipse(px(centre[0] - 4, centre[1] - 4, centre[0] + 4, centre[1] + 4), fill=INK)
    torque = float(np.clip(torque, -2.0, 2.0))
    if abs(torque) > 1e-3:
        span = 90 * abs(torque) / 2.0
        start = -90 if torque > 0 else -90 - span
        draw.arc(px(centre[0] - 25, centre[1] - 25, centre[0] + 25, centre[1] + 25),
                 start, start + span, fill=INK, width=round(3 * U))
    return finished(image)


def acrobot(theta1: float, theta2: float) -> Image.Image:
    """Two links at joint angles ``theta1`` (0 hanging down) and ``theta2``
    (relative to the first); the red line is the height the free end must reach."""
    image, draw = canvas()
    base, link = (120, 70), 35
    p1 = (base[0] + link * math.sin(theta1), base[1] + link * math.cos(theta1))
    p2 = (p1[0] + link * math.sin(theta1 + theta2), p1[1] + link * math.cos(theta1 + theta2))
    draw.line(px(20, base[1] - link, 220, base[1] - link), fill=LIMIT, width=round(U))  # the goal height
    draw.line(px(*base, *p1), fill=INK, width=round(5 * U))
    draw.line(px(*p1, *p2), fill=ACCENT, width=round(5 * U))
    return finished(image)


def mountain_car(position: float) -> Image.Image:
    """The car at ``position`` ∈ [-1.2, 0.6] on the hill sin(3x), the flag at 0.5."""
    image, draw = canvas()
    to_px = lambda p, h: (20 + (p + 1.2) / 1.8 * 200, 130 - (h + 1) / 2 * 90)
    xs = np.linspace(-1.2, 0.6, 90)
    draw.line(px(*[c for x in xs for c in to_px(x, math.sin(3 * x))]), fill=TRACK, width=round(2 * U))
    fx, fy = to_px(0.5, math.sin(1.5))
    draw.line(px(fx, fy, fx, fy - 25), fill=INK, width=round(2 * U))
    draw.polygon(px(fx, fy - 25, fx + 12, fy - 21, fx, fy - 17), fill=LIMIT)
    cx, cy = to_px(position, math.sin(3 * position))
    draw.ellipse(px(cx - 7, cy - 14, cx + 7, cy), fill=ACCENT)
    return finished(image)


def bars(values: np.ndarray, scale: float = 1.0) -> Image.Image:
    """One bar per component of ``values`` (divided by ``scale``), zero in the middle."""
    image, draw = canvas()
    values = np.asarray(values, np.float32).reshape(-1)
    n = max(1, values.size)
    mid, width = 80, 220 / n
    draw.line(px(10, mid, 230, mid), fill=TRACK, width=round(U))
    for i, value in enumerate(values):
        height = float(np.clip(value / scale, -1, 1)) * 70
        left = 10 + i * width + 1
        draw.rectangle(px(left, min(mid, mid - height), left + max(1, width - 2), max(mid, mid - height)),
                       fill=ACCENT)
    return finished(image)


# Distinct colours for grid cells (matplotlib's tab10); cell value 0 is the background.
PALETTE = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
           (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))


def cells(grid: np.ndarray, colours: dict[int, tuple[int, int, int]] | None = None,
          cell: int = 32) -> Image.Image:
    """A ``[rows, columns]`` grid of integer cell values as squares of ``cell``
    pixels: 0 the background, ``v`` the colour ``colours[v]`` (default
    :data:`PALETTE` in order), with thin lines between cells."""
    grid = np.asarray(grid)
    rows, columns = grid.shape
    colours = colours or {v + 1: c for v, c in enumerate(PALETTE)}
    pixels = np.empty((rows, columns, 3), np.uint8)
    pixels[:] = BACKGROUND
    for value, colour in colours.items():
        pixels[grid == value] = colour
    image = Image.fromarray(pixels).resize((columns * cell, rows * cell), Image.NEAREST)
    draw = ImageDraw.Draw(image)
    for r in range(1, rows):
        draw.line([0, r * cell, columns * cell, r * cell], fill=(225, 225, 225))
    for c in range(1, columns):
        draw.line([c * cell, 0, c * cell, rows * cell], fill=(225, 225, 225))
    return image


def chain(position: int, length: int, marked: int | None = None) -> Image.Image:
    """States ``s1..s<length>`` in a row, ``position`` (0-based) filled and
    ``marked`` (if any) ringed red."""
    image, draw = canvas()
    gap = 220 / length
    for i in range(length):
        cx, cy, r = 10 + gap * (i + 0.5), 80, min(14, gap / 2 - 2)
        fill = ACCENT if i == position else BACKGROUND
        outline = LIMIT if i == marked else INK
        draw.ellipse(px(cx - r, cy - r, cx + r, cy + r), fill=fill, outline=outline, width=round(2 * U))
        draw.text(px(cx - 5, cy + r + 4), f"s{i + 1}", fill=INK, font=font(round(10 * U)))
    return finished(image)


# ------------------------------------------------------------ frames of env states


class Step(NamedTuple):
    """One step on the host: the env state, the observation the agent saw in
    it, and the action it took there (in the env's units)."""

    state: Any
    obs: np.ndarray
    action: np.ndarray


class Renderer(NamedTuple):
    """How frames of one environment are drawn: ``draw(env, env_params,
    step) -> Image``; ``fps`` plays them at about the env's own pace."""

    draw: Callable[[Any, Any, Step], Image.Image]
    fps: float


def _first(value: Any) -> float:
    return float(np.asarray(value).reshape(-1)[0])


def _cartpole(env: Any, env_params: Any, step: Step) -> Image.Image:
    return cartpole(_first(step.state.x), _first(step.state.theta), int(_first(step.action)))


def _pendulum(env: Any, env_params: Any, step: Step) -> Image.Image:
    theta = _first(step.state.theta)
    return pendulum(math.cos(theta), math.sin(theta), _first(step.action))


def _acrobot(env: Any, env_params: Any, step: Step) -> Image.Image:
    return acrobot(_first(step.state.joint_angle1), _first(step.state.joint_angle2))


def _mountain_car(env: Any, env_params: Any, step: Step) -> Image.Image:
    return mountain_car(_first(step.state.position))


def minatar_cells(obs: np.ndarray) -> np.ndarray:
    """The ``[10, 10]`` cell values of a MinAtar observation ``[10, 10,
    channels]``: 1 + the highest channel set in a cell, 0 where none is (as
    MinAtar's own display shows them)."""
    obs = np.asarray(obs) > 0.5
    channel = np.arange(1, obs.shape[-1] + 1)
    return (obs * channel).max(axis=-1)


def _minatar(env: Any, env_params: Any, step: Step) -> Image.Image:
    return cells(minatar_cells(step.obs))


_KEY_DOOR_COLOURS = {1: INK, 2: (150, 90, 40), 3: (235, 190, 30), 4: ACCENT}


def _key_door(env: Any, env_params: Any, step: Step) -> Image.Image:
    grid = np.where(np.asarray(env.walls), 1, 0)
    grid[env.door_cell] = 2
    if not bool(_first(step.state.has_key)):
        grid[env.key_cell] = 3
    grid[int(_first(step.state.row)), int(_first(step.state.col))] = 4
    return cells(grid, _KEY_DOOR_COLOURS)


def _decision_process(env: Any, env_params: Any, step: Step) -> Image.Image:
    visited = bool(_first(step.state.visited_s6))
    length = len(env.goal_names)
    return chain(int(_first(step.state.position)), length, marked=length - 1 if visited else None)


RENDERERS: dict[str, Renderer] = {
    "CartPole-v1": Renderer(_cartpole, fps=50),
    "Pendulum-v1": Renderer(_pendulum, fps=20),
    "Acrobot-v1": Renderer(_acrobot, fps=15),
    "MountainCar-v0": Renderer(_mountain_car, fps=30),
    "MountainCarContinuous-v0": Renderer(_mountain_car, fps=30),
    **{f"{game}-MinAtar": Renderer(_minatar, fps=10)
       for game in ("Asterix", "Breakout", "Freeway", "Seaquest", "SpaceInvaders")},
    "KeyDoor-v0": Renderer(_key_door, fps=5),
    "DecisionProcess-v0": Renderer(_decision_process, fps=2),
}
"""Environments :func:`frame` draws, by id."""


def check_can_render(env_id: str) -> Renderer:
    """The :class:`Renderer` of ``env_id``; ValueError listing the renderable ids otherwise."""
    renderer = RENDERERS.get(env_id)
    if renderer is None:
        raise ValueError(
            f"environment {env_id!r} cannot be rendered; these can: {', '.join(RENDERERS)}"
        )
    return renderer


def frame(env_id: str, env: Any, env_params: Any, step: Step) -> Image.Image:
    """The frame of one step of ``env_id`` (ValueError if it cannot be rendered)."""
    return check_can_render(env_id).draw(env, env_params, step)


def with_caption(image: Image.Image, text: str, height: int = 28) -> Image.Image:
    """``image`` under a strip of ``height`` pixels that reads ``text``."""
    framed = Image.new("RGB", (image.width, image.height + height), (245, 245, 245))
    framed.paste(image, (0, height))
    ImageDraw.Draw(framed).text((8, (height - 16) // 2), text, fill=INK, font=font(16))
    return framed


def save_gif(target: Any, images: Iterable[Image.Image], fps: float = 15.0,
             durations: list[int] | None = None) -> None:
    """Writes an endlessly looping GIF of ``images`` (a blank frame if there
    are none) to ``target`` (a path or a binary file), each frame shown
    ``1/fps`` s or for its entry of ``durations`` (ms). ``images`` may be a
    generator: Pillow draws on it frame by frame, keeping only each frame's
    changed box, so a long clip is never held whole."""
    images = iter(images)
    first = next(images, None) or blank()
    duration = durations or max(20, int(1000 / fps))
    first.save(target, format="GIF", save_all=True, append_images=images, duration=duration, loop=0)


def gif(images: list[Image.Image], fps: float = 15.0, durations: list[int] | None = None) -> bytes:
    """:func:`save_gif` into bytes."""
    buffer = io.BytesIO()
    save_gif(buffer, images, fps, durations)
    return buffer.getvalue()

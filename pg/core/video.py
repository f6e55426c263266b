"""A clip of the policy acting: one greedy episode rendered as a GIF.

Rendered with the env's ``rgb_array`` mode (no display server), after training and never
inside the training loop; a sweep renders only its best trial.
"""

from __future__ import annotations

import io
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

if TYPE_CHECKING:
    from collections.abc import Callable

    import gymnasium as gym
    from torch import nn

    from pg.core.config import EnvConfig

MAX_STEPS = 1_000  # a longer episode is cut: a clip, not a recording
MAX_WIDTH = 320  # frames are shrunk to at most this width: CartPole's 600 px GIF is 4x larger
MAX_FPS = 25  # faster envs show every k-th step, each frame held k times as long


@dataclass
class Clip:
    gif: bytes
    steps: int  # env steps of the episode shown (the GIF lasts steps + 1 env frames)
    episode_return: float
    frame_ms: int  # display time of one env frame
    seconds: float  # rendering and encoding, for the record


def render_env(cfg: EnvConfig) -> gym.Env[Any, Any]:
    """One env of ``cfg`` drawing ``rgb_array`` frames (Atari: the full-colour screen)."""
    import os

    import gymnasium as gym

    from pg.core.envs import _atari_env, _is_atari, _register_atari

    # pygame draws off-screen either way; without this it complains about a missing display.
    os.environ.setdefault("SDL_VIDEODRIVER", "dummy")

    kwargs: dict[str, Any] = {"render_mode": "rgb_array"}
    if cfg.max_episode_steps is not None:
        kwargs["max_episode_steps"] = cfg.max_episode_steps
    if cfg.atari or _is_atari(cfg.id):
        _register_atari()
        return _atari_env(cfg.id, cfg.frame_stack, **kwargs)
    env = gym.make(cfg.id, **kwargs)
    _draw_small(env.unwrapped)
    return env


def _draw_small(base: Any) -> None:
    """Have an env that draws at ``screen_width`` x ``screen_height`` (CartPole) draw at
    the clip's size: drawing 600 px frames and keeping every other pixel cost ~4x more
    (the 500 frames of a solved CartPole episode: ~1.2 s instead of ~0.3 s)."""
    width, height = getattr(base, "screen_width", None), getattr(base, "screen_height", None)
    if isinstance(width, int) and isinstance(height, int) and width > MAX_WIDTH:
        k = -(-width // MAX_WIDTH)  # the same factor GifFrames.add shrinks by
        base.screen_width, base.screen_height = width // k, height // k


def greedy_clip(cfg: EnvConfig, policy: nn.Module, seed: int, max_steps: int = MAX_STEPS) -> Clip:
    """Play one episode with the greedy action (argmax of the logits) and encode it.

    At most :data:`MAX_FPS` frames a second are drawn (CartPole's 50: every other step,
    each shown twice as long), the last state always: the clip lasts as long and costs
    half as much to draw and encode, which a run's end waits for."""
    start = time.perf_counter()
    env = render_env(cfg)
    try:
        fps = int(env.metadata.get("render_fps") or 30)
        every = -(-fps // MAX_FPS)
        obs, _ = env.reset(seed=seed)
        frames = GifFrames()
        draw = _drawer(env)
        frames.add(draw())
        shown = [0]
        total, steps, done = 0.0, 0, False
        while not done and steps < max_steps:
            with torch.inference_mode():
                action = int(policy(torch.as_tensor(np.asarray(obs)[None])).argmax(dim=-1)[0])
            obs, reward, terminated, truncated, _ = env.step(action)
            total += float(reward)
            steps += 1
            done = bool(terminated or truncated)
            if steps % every == 0 or done or steps == max_steps:
                frames.add(draw())
                shown.append(steps)
    finally:
        env.close()
    frame_ms = max(20, round(1000 / fps / 10) * 10)  # GIF delays count hundredths
    # Each frame stays until the next one's step; the last for one step.
    durations = [frame_ms * (b - a) for a, b in zip(shown, [*shown[1:], steps + 1], strict=True)]
    gif = frames.encode(durations)
    return Clip(gif, steps, total, frame_ms, time.perf_counter() - start)


def _drawer(env: gym.Env[Any, Any]) -> Callable[[], Any]:
    """The env's frames: RGB arrays from its ``render``, or for CartPole palette images
    drawn at once (:mod:`pg.core.cartpole_frames`, ~4x cheaper)."""
    from pg.core.cartpole_frames import CartPoleFrames

    if not CartPoleFrames.fits(env):

        def render() -> np.ndarray:
            frame = env.render()
            assert isinstance(frame, np.ndarray), "render_mode rgb_array returns an array"
            return frame

        return render

    from PIL import Image

    base: Any = env.unwrapped  # gymnasium's CartPoleEnv (fits): its state is drawn
    frames = CartPoleFrames(base)
    size, colours = (frames.width, frames.height), frames.palette_bytes()

    def draw() -> Any:
        image = Image.frombytes("P", size, frames.draw(base.state))
        image.putpalette(colours)
        return image.transpose(Image.Transpose.FLIP_TOP_BOTTOM)  # gymnasium flips too

    return draw


class GifFrames:
    """Frames turned into palette images as they are drawn, then encoded as one GIF.

    Each frame is shrunk and mapped to the first frame's palette at once, so only its
    palette image (a third of the size) is kept: holding every RGB frame of a 500-step
    episode until the end touched ~50 MB of fresh memory, which cost more than the
    conversion itself."""

    def __init__(self) -> None:
        self.images: list[Any] = []

    def add(self, frame: Any) -> None:
        """An RGB array, shrunk and put on the palette, or a palette image kept as is."""
        from PIL import Image

        if isinstance(frame, Image.Image):
            self.images.append(frame)
            return

        # Every k-th pixel: ~50x cheaper than PIL's resampling, and fine for line drawings.
        k = -(-frame.shape[1] // MAX_WIDTH)
        frame = frame[::k, ::k]
        # pygame's envs return the transpose of a contiguous array: mapped to the palette
        # as it lies and the small palette image turned, it needs no strided copy (~3x
        # cheaper per frame; the same pixels).
        turned = frame.transpose(1, 0, 2)
        lying = turned.flags.c_contiguous and not frame.flags.c_contiguous
        image = Image.fromarray(turned if lying else np.ascontiguousarray(frame))
        plain = Image.Dither.NONE  # dithering noise defeats the GIF compression
        if not self.images:
            # One shared palette: per-frame palettes make a 500-frame clip several times larger.
            small = image.quantize(colors=64, dither=plain)
        else:
            small = image.quantize(palette=self.images[0], dither=plain)
        self.images.append(small.transpose(Image.Transpose.TRANSPOSE) if lying else small)

    def encode(self, frame_ms: int | list[int]) -> bytes:
        """An endlessly looping GIF (``frame_ms``: each frame's display time, or one for all)."""
        out = io.BytesIO()
        self.images[0].save(
            out,
            format="GIF",
            save_all=True,
            append_images=self.images[1:],
            duration=frame_ms,
            loop=0,
            optimize=False,  # PIL's optimizer took 5x longer here and made larger files
        )
        return out.getvalue()

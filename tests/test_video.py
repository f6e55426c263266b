"""The clip's frames: what pygame's envs return (the transpose of a contiguous array) is
turned into the same GIF as a contiguous copy, upright and with its exact colours; and
CartPole's frames, which pg draws itself (pg.core.cartpole_frames), are gymnasium's."""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import torch
from numpy.typing import NDArray
from PIL import Image

from pg.core.cartpole_frames import CartPoleFrames
from pg.core.config import EnvConfig
from pg.core.video import GifFrames, _drawer, greedy_clip, render_env


def test_transposed_frames_give_the_gif_of_their_contiguous_copies() -> None:
    rng = np.random.default_rng(0)
    # (width, height, 3) as pygame holds a surface; 8 colours, so the palette is exact.
    surface = rng.integers(0, 2, (30, 20, 3), dtype=np.uint8) * 255
    frames = [np.transpose(np.roll(surface, 3 * i, axis=0), (1, 0, 2)) for i in range(3)]
    assert not frames[0].flags.c_contiguous  # what env.render() returns
    lying, copied = GifFrames(), GifFrames()
    for frame in frames:
        lying.add(frame)
        copied.add(np.ascontiguousarray(frame))
    gif = lying.encode(40)
    assert gif == copied.encode(40)

    decoded = Image.open(io.BytesIO(gif))
    for i, frame in enumerate(frames):
        decoded.seek(i)
        pixels = np.asarray(decoded.convert("RGB"))
        assert pixels.shape == (20, 30, 3)  # height x width: upright
        assert np.array_equal(pixels, frame)


class Balancer(torch.nn.Module):
    """A fixed policy that keeps the pole up for a while: logits favour pushing toward
    the side the pole leans to."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        lean = obs[:, 2] + 0.5 * obs[:, 3]
        return torch.stack([-lean, lean], dim=1)


def gymnasium_frame(env: Any) -> NDArray[np.int64]:
    frame = env.render()
    assert isinstance(frame, np.ndarray)
    return frame.astype(np.int64)


def test_cartpole_frames_are_gymnasiums_picture() -> None:
    """The frames drawn into palette indices are gymnasium's own picture, upright: only
    antialiased edge pixels differ, by a few shades (their blend's nearest palette entry)."""
    env = render_env(EnvConfig())
    env.reset(seed=0)
    draw = _drawer(env)
    base: Any = env.unwrapped
    rng = np.random.default_rng(1)
    for _ in range(100):
        base.state = np.array([rng.uniform(-2.4, 2.4), 0.0, rng.uniform(-0.21, 0.21), 0.0])
        ours = np.asarray(draw().convert("RGB")).astype(np.int64)
        theirs = gymnasium_frame(env)
        assert ours.shape == theirs.shape == (200, 300, 3)
        diff = np.abs(ours - theirs).max(axis=2)
        assert diff.max() <= 40, diff.max()
        assert np.count_nonzero(diff) <= 0.005 * diff.size, np.count_nonzero(diff)
    env.close()


def test_cartpole_clip_shows_the_episode_gymnasium_renders() -> None:
    """The whole clip, decoded: each frame is gymnasium's frame of the same step of the
    same greedy episode (every other step at CartPole's 50 fps, and the last, odd one)."""
    clip = greedy_clip(EnvConfig(), Balancer(), seed=3, max_steps=121)
    assert clip.steps == 121  # cut: the balancer keeps the pole up
    env = render_env(EnvConfig())
    obs, _ = env.reset(seed=3)
    expected, steps = [gymnasium_frame(env)], [0]
    policy = Balancer()
    for step in range(1, clip.steps + 1):
        action = int(policy(torch.as_tensor(np.asarray(obs)[None])).argmax(dim=-1)[0])
        obs, _, terminated, truncated, _ = env.step(action)
        if step % 2 == 0 or step == clip.steps:
            expected.append(gymnasium_frame(env))
            steps.append(step)
    assert not (terminated or truncated)
    env.close()
    # Each frame lasts until the next one's step, the last one step; the GIF merges a
    # frame equal to the one before into it, so a GIF frame stands for as many drawn
    # frames as its duration covers.
    ends = [*steps[1:], clip.steps + 1]
    durations = [clip.frame_ms * (b - a) for a, b in zip(steps, ends, strict=True)]
    shown = 0
    with Image.open(io.BytesIO(clip.gif)) as decoded:
        for i in range(decoded.n_frames):  # type: ignore[attr-defined]
            decoded.seek(i)
            ours = np.asarray(decoded.convert("RGB")).astype(np.int64)
            lasts = int(decoded.info["duration"])
            while lasts > 0:
                diff = np.abs(ours - expected[shown]).max(axis=2)
                assert diff.max() <= 40 and np.count_nonzero(diff) <= 0.005 * diff.size, shown
                lasts -= durations[shown]
                shown += 1
            assert lasts == 0
    assert shown == len(expected)


def test_other_envs_keep_their_own_render() -> None:
    """Only gymnasium's CartPole is drawn by pg; Acrobot's clip comes from its render."""
    acrobot = EnvConfig(id="Acrobot-v1", target_return=None)
    env = render_env(acrobot)
    assert not CartPoleFrames.fits(env)
    env.close()
    clip = greedy_clip(acrobot, Idle(), seed=0, max_steps=6)
    with Image.open(io.BytesIO(clip.gif)) as decoded:
        assert decoded.n_frames == 7  # type: ignore[attr-defined]  # 15 fps: each step
        assert decoded.size == (250, 250)  # Acrobot's 500 px, every other pixel


class Idle(torch.nn.Module):
    """Acrobot's "no torque" action, always."""

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        return torch.tensor([[0.0, 1.0, 0.0]]).expand(obs.shape[0], 3)

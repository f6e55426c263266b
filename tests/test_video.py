"""The clip's frames: what pygame's envs return (the transpose of a contiguous array) is
turned into the same GIF as a contiguous copy, upright and with its exact colours."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from pg.core.video import GifFrames


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

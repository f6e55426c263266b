"""CartPole's clip frames, drawn straight into palette indices.

A clip of a solved CartPole episode draws ~250 frames, and gymnasium's ``render`` made
each one the expensive way for a GIF: a fresh 32-bit surface, a flipped copy, a blit, a
strided NumPy copy of the pixels, then PIL's nearest-colour search over every pixel to
put it on the GIF's palette (~0.75 ms a frame; ~0.19 s a clip, which a run's end waits
for).  :class:`CartPoleFrames` makes the same pygame drawing calls on the same
coordinates onto one 8-bit surface whose palette holds the scene's four colours and 60
blends between them, so the frame is already palette indices: ~4x cheaper a frame, and
the same picture (``tests/test_video.py`` compares it with gymnasium's, pixel by pixel).

Only the antialiased edges differ: their blends land on the nearest palette entry, not
on the exact blend, as PIL's quantization also did.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

WHITE, BLACK = (255, 255, 255), (0, 0, 0)
POLE, AXLE = (202, 152, 101), (129, 132, 203)
COLOURS = (WHITE, BLACK, POLE, AXLE)  # gymnasium 1.4's CartPole scene
GIF_COLOURS = 64  # as many as the quantized clips had: 256 made the GIF twice as large


def palette() -> list[tuple[int, int, int]]:
    """The scene's colours first, then evenly spaced blends of each pair of them."""
    pairs = list(itertools.combinations(COLOURS, 2))
    steps = (GIF_COLOURS - len(COLOURS)) // len(pairs) + 1
    colours = list(COLOURS)
    for a, b in pairs:
        for k in range(1, steps):
            t = k / steps
            r, g, bl = (round(a[c] + (b[c] - a[c]) * t) for c in range(3))
            colours.append((r, g, bl))
    return colours


class CartPoleFrames:
    """Draws gymnasium's CartPole scene for a state, as a flipped palette image.

    Built for one env (its screen size, track and pole length); :meth:`fits` says
    whether an env is the CartPole these drawing calls copy.
    """

    def __init__(self, base: Any) -> None:
        os.environ.setdefault("SDL_VIDEODRIVER", "dummy")
        import pygame
        from pygame import gfxdraw

        self.pygame, self.gfxdraw = pygame, gfxdraw
        self.width, self.height = int(base.screen_width), int(base.screen_height)
        self.scale = self.width / (base.x_threshold * 2)
        self.pole_length = self.scale * (2 * base.length)
        self.colours = palette()
        # An 8-bit surface has 256 entries; the rest repeat white, which the nearest-colour
        # search never picks over entry 0, so every pixel is one of ``self.colours``.
        padded = self.colours + [WHITE] * (256 - len(self.colours))
        self.surface = pygame.Surface((self.width, self.height), depth=8)
        self.surface.set_palette(padded)
        # Filling an 8-bit surface maps the colour per pixel (~0.1 ms); a blit copies.
        self.background = pygame.Surface((self.width, self.height), depth=8)
        self.background.set_palette(padded)
        self.background.fill(WHITE)

    @staticmethod
    def fits(env: Any) -> bool:
        """Whether ``env`` is gymnasium's CartPole, drawing ``rgb_array`` frames."""
        from gymnasium.envs.classic_control.cartpole import CartPoleEnv

        base = env.unwrapped
        return type(base) is CartPoleEnv and base.render_mode == "rgb_array"

    def palette_bytes(self) -> bytes:
        return bytes(c for colour in self.colours for c in colour)

    def draw(self, state: Any) -> bytes:
        """The frame of ``state`` as row-major palette indices, top row first.

        The calls and coordinates of gymnasium's ``CartPoleEnv.render``; the flip it
        does after drawing is left to the caller (PIL turns the small image)."""
        pygame, gfxdraw, surf = self.pygame, self.gfxdraw, self.surface
        surf.blit(self.background, (0, 0))
        x, theta = float(state[0]), float(state[2])
        polewidth, cartwidth, cartheight = 10.0, 50.0, 30.0
        left, right, top, bottom = -cartwidth / 2, cartwidth / 2, cartheight / 2, -cartheight / 2
        axleoffset = cartheight / 4.0
        cartx = x * self.scale + self.width / 2.0
        carty = 100
        corners = ((left, bottom), (left, top), (right, top), (right, bottom))
        cart = [(cx + cartx, cy + carty) for cx, cy in corners]
        gfxdraw.aapolygon(surf, cart, BLACK)
        gfxdraw.filled_polygon(surf, cart, BLACK)
        left, right = -polewidth / 2, polewidth / 2
        top, bottom = self.pole_length - polewidth / 2, -polewidth / 2
        pole = []
        for corner in ((left, bottom), (left, top), (right, top), (right, bottom)):
            turned = pygame.math.Vector2(corner).rotate_rad(-theta)
            pole.append((turned[0] + cartx, turned[1] + carty + axleoffset))
        gfxdraw.aapolygon(surf, pole, POLE)
        gfxdraw.filled_polygon(surf, pole, POLE)
        axle_x, axle_y, radius = int(cartx), int(carty + axleoffset), int(polewidth / 2)
        gfxdraw.aacircle(surf, axle_x, axle_y, radius, AXLE)
        gfxdraw.filled_circle(surf, axle_x, axle_y, radius, AXLE)
        gfxdraw.hline(surf, 0, self.width, carty, BLACK)
        data: bytes = pygame.image.tobytes(surf, "P")
        return data

"""Every run's learning curve (``plots/learning_curve.png``), drawn with Pillow.

The record process draws one per run, on the critical path of a tracked command: with
matplotlib its import and first figure cost ~0.7 s and each curve ~0.1 s; these few lines,
boxes and labels cost ~15 ms here with Pillow (imported in ~20 ms).  The picture keeps
what the matplotlib version showed: episode returns, their running mean over 100, the
greedy evaluations, the target, a grid with round tick values, a title and a legend.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import cache
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT = 700, 400  # pixels of the PNG (the matplotlib version's 7 x 4 in at 100 dpi)
SCALE = 2  # drawn at twice the size and reduced: smooth lines without an antialiasing API
LEFT, RIGHT, TOP, BOTTOM = 64, 14, 30, 44  # plot margins, in output pixels

GREY = (191, 191, 191)  # episode return
BLUE = (31, 119, 180)  # mean of last 100 (matplotlib's C0)
ORANGE = (255, 127, 14)  # greedy eval (C1)
GREEN = (44, 160, 44)  # target (C2)
GRID = (230, 230, 230)
INK = (38, 38, 38)


@dataclass
class Curve:
    """What a learning curve is drawn from: a training result's episodes and evaluations,
    without its policy (so the record process can draw it without importing torch)."""

    episode_steps: Sequence[int] = field(default_factory=list)
    episode_returns: Sequence[float] = field(default_factory=list)
    eval_steps: Sequence[int] = field(default_factory=list)
    eval_returns: Sequence[float] = field(default_factory=list)


def running_mean(values: np.ndarray, window: int = 100) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start)."""
    csum = np.concatenate([[0.0], np.cumsum(values, dtype=np.float64)])
    idx = np.arange(1, values.size + 1)
    lo = np.maximum(idx - window, 0)
    mean: np.ndarray = (csum[idx] - csum[lo]) / (idx - lo)
    return mean


def nice_ticks(lo: float, hi: float, most: int = 7) -> list[float]:
    """Round tick values covering ``[lo, hi]``: steps of 1, 2, 2.5 or 5 times a power of
    ten, the smallest giving at most ``most`` ticks."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        return [lo]
    raw = (hi - lo) / max(most - 1, 1)
    power = 10.0 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1.0, 2.0, 2.5, 5.0, 10.0) if m * power >= raw * (1 - 1e-9))
    first = math.ceil(lo / step - 1e-9) * step
    ticks = []
    value = first
    while value <= hi + step * 1e-9:
        ticks.append(0.0 if abs(value) < step * 1e-9 else value)
        value = first + len(ticks) * step
    return ticks


def tick_label(value: float) -> str:
    """``1.5M``, ``250k``, ``-95``, ``0.5``: short enough for any tick."""
    size = abs(value)
    if size >= 1e6:
        return f"{value / 1e6:g}M"
    if size >= 1e4:
        return f"{value / 1e3:g}k"
    return f"{value:g}"


def _finite(xs: Sequence[float], ys: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    x = np.asarray(xs, dtype=np.float64)
    y = np.asarray(ys, dtype=np.float64)
    keep = np.isfinite(x) & np.isfinite(y)
    return x[keep], y[keep]


def learning_curve_png(result: Curve, title: str, target: float | None) -> bytes:
    """Episode returns, their running mean over 100 and the greedy evaluations, as PNG."""
    from PIL import Image, ImageDraw

    ep_x, ep_y = _finite(result.episode_steps, result.episode_returns)
    mean_y = running_mean(ep_y) if ep_y.size else ep_y
    ev_x, ev_y = _finite(result.eval_steps, result.eval_returns)
    show_target = target is not None and math.isfinite(target)

    xs = np.concatenate([ep_x, ev_x])
    ys = np.concatenate([ep_y, ev_y, [target] if show_target else []])  # type: ignore[list-item]
    x_lo, x_hi = (float(xs.min()), float(xs.max())) if xs.size else (0.0, 1.0)
    y_lo, y_hi = (float(ys.min()), float(ys.max())) if ys.size else (0.0, 1.0)
    x_lo, x_hi = _padded(x_lo, x_hi)
    y_lo, y_hi = _padded(y_lo, y_hi)

    s = SCALE
    image = Image.new("RGB", (WIDTH * s, HEIGHT * s), "white")
    draw = ImageDraw.Draw(image)
    font = _font(11 * s)
    box = (LEFT * s, TOP * s, (WIDTH - RIGHT) * s, (HEIGHT - BOTTOM) * s)

    def px(x: Any) -> Any:
        return box[0] + (x - x_lo) / (x_hi - x_lo) * (box[2] - box[0])

    def py(y: Any) -> Any:
        return box[3] - (y - y_lo) / (y_hi - y_lo) * (box[3] - box[1])

    for t in nice_ticks(x_lo, x_hi):
        x = float(px(np.float64(t)))
        draw.line([(x, box[1]), (x, box[3])], fill=GRID, width=s)
        draw.text((x, box[3] + 4 * s), tick_label(t), fill=INK, font=font, anchor="ma")
    for t in nice_ticks(y_lo, y_hi):
        y = float(py(np.float64(t)))
        draw.line([(box[0], y), (box[2], y)], fill=GRID, width=s)
        draw.text((box[0] - 4 * s, y), tick_label(t), fill=INK, font=font, anchor="rm")

    legend: list[tuple[str, tuple[int, int, int], str]] = []
    if ep_y.size:
        _polyline(draw, px(ep_x), py(ep_y), GREY, s)
        _polyline(draw, px(ep_x), py(mean_y), BLUE, 2 * s)
        legend += [("episode return", GREY, "line"), ("mean of last 100", BLUE, "line")]
    if ev_y.size:
        _polyline(draw, px(ev_x), py(ev_y), ORANGE, s)
        for x, y in zip(px(ev_x), py(ev_y), strict=True):
            r = 3 * s
            draw.ellipse((x - r, y - r, x + r, y + r), fill=ORANGE)
        legend.append(("greedy eval", ORANGE, "dot"))
    if show_target:
        y = float(py(np.float64(target)))
        _dashed(draw, box[0], box[2], y, GREEN, s)
        legend.append((f"target {target:g}", GREEN, "dash"))

    draw.rectangle(box, outline=INK, width=s)
    draw.text(((box[0] + box[2]) / 2, 8 * s), title, fill=INK, font=_font(13 * s), anchor="ma")
    draw.text(
        ((box[0] + box[2]) / 2, (HEIGHT - 16) * s),
        "environment steps",
        fill=INK,
        font=font,
        anchor="ma",
    )
    _vertical_label(image, "return", font, (12 * s, (box[1] + box[3]) // 2))
    _legend(draw, legend, font, box, s)

    out = image.reduce(SCALE)  # a box filter: averages each 2 x 2 block
    buf = io.BytesIO()
    out.save(buf, format="PNG", compress_level=3)
    return buf.getvalue()


def _padded(lo: float, hi: float) -> tuple[float, float]:
    """Room of 5 % on each side (one unit around a single value)."""
    if hi <= lo:
        return lo - 1.0, hi + 1.0
    pad = 0.05 * (hi - lo)
    return lo - pad, hi + pad


def _polyline(
    draw: ImageDraw.ImageDraw,
    xs: np.ndarray,
    ys: np.ndarray,
    color: tuple[int, int, int],
    width: int,
) -> None:
    points = list(zip(xs.tolist(), ys.tolist(), strict=True))
    if len(points) == 1:
        points.append(points[0])
    draw.line(points, fill=color, width=width, joint="curve" if width > 2 else None)


def _dashed(
    draw: ImageDraw.ImageDraw, x0: float, x1: float, y: float, color: tuple[int, int, int], s: int
) -> None:
    dash, gap = 8 * s, 5 * s
    x = x0
    while x < x1:
        draw.line([(x, y), (min(x + dash, x1), y)], fill=color, width=s)
        x += dash + gap


def _legend(
    draw: ImageDraw.ImageDraw,
    entries: list[tuple[str, tuple[int, int, int], str]],
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    box: tuple[int, int, int, int],
    s: int,
) -> None:
    """Lower right, inside the axes, as the matplotlib version placed it."""
    if not entries:
        return
    row, sample, pad = 15 * s, 22 * s, 6 * s
    text_w = max(draw.textlength(label, font=font) for label, _, _ in entries)
    width = pad * 3 + sample + text_w
    height = pad * 2 + row * len(entries)
    x0, y1 = box[2] - 8 * s - width, box[3] - 8 * s
    y0 = y1 - height
    draw.rectangle((x0, y0, x0 + width, y1), fill="white", outline=GRID, width=s)
    for i, (label, color, kind) in enumerate(entries):
        y = y0 + pad + row * i + row / 2
        a, b = x0 + pad, x0 + pad + sample
        if kind == "dash":
            _dashed(draw, a, b, y, color, s)
        else:
            draw.line([(a, y), (b, y)], fill=color, width=2 * s if color == BLUE else s)
        if kind == "dot":
            r = 3 * s
            draw.ellipse(((a + b) / 2 - r, y - r, (a + b) / 2 + r, y + r), fill=color)
        draw.text((b + pad, y), label, fill=INK, font=font, anchor="lm")


def _vertical_label(
    image: Image.Image,
    text: str,
    font: ImageFont.FreeTypeFont | ImageFont.ImageFont,
    center: tuple[int, int],
) -> None:
    from PIL import Image, ImageDraw

    probe = ImageDraw.Draw(image)
    left, top, right, bottom = probe.textbbox((0, 0), text, font=font)
    label = Image.new("RGB", (int(right - left) + 2, int(bottom - top) + 2), "white")
    ImageDraw.Draw(label).text((-left + 1, -top + 1), text, fill=INK, font=font)
    label = label.rotate(90, expand=True)
    image.paste(label, (center[0] - label.width // 2, center[1] - label.height // 2))


@cache
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    from PIL import ImageFont

    try:  # Pillow's own scalable font (needs FreeType, which its wheels include)
        return ImageFont.load_default(size=size)
    except (TypeError, OSError):
        return ImageFont.load_default()

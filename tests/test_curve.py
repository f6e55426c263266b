"""Every run's learning curve (``plots/learning_curve.png``), drawn with Pillow."""

from __future__ import annotations

import io
import math

import numpy as np
import pytest
from PIL import Image

from pg.curve import (
    BLUE,
    HEIGHT,
    ORANGE,
    WIDTH,
    Curve,
    learning_curve_png,
    nice_ticks,
    running_mean,
    tick_label,
)


@pytest.mark.parametrize(
    ("lo", "hi", "ticks"),
    [
        # raw step 175535/6 = 29256 -> 5 x 10^4 is the first of 1, 2, 2.5, 5 x 10^4 above it
        (0.0, 175_535.0, [0.0, 50_000.0, 100_000.0, 150_000.0]),
        # raw step 400/6 = 66.7 -> 100
        (-500.0, -100.0, [-500.0, -400.0, -300.0, -200.0, -100.0]),
        # raw step 1/6 = 0.167 -> 0.2, starting at the first multiple above -0.05
        (-0.05, 1.05, [0.0, 0.2, 0.4, 0.6, 0.8, 1.0]),
        # raw step 30/6 = 5 -> 5 exactly
        (10.0, 40.0, [10.0, 15.0, 20.0, 25.0, 30.0, 35.0, 40.0]),
    ],
)
def test_ticks_are_round_values_covering_the_range(
    lo: float, hi: float, ticks: list[float]
) -> None:
    assert nice_ticks(lo, hi) == pytest.approx(ticks)


def test_ticks_of_an_empty_range_are_one_value() -> None:
    assert nice_ticks(3.0, 3.0) == [3.0]
    assert nice_ticks(math.nan, 1.0) != []


@pytest.mark.parametrize(
    ("value", "label"),
    [(1_500_000.0, "1.5M"), (250_000.0, "250k"), (50_000.0, "50k"), (-95.0, "-95"), (0.5, "0.5")],
)
def test_tick_labels_are_short(value: float, label: str) -> None:
    assert tick_label(value) == label


def test_running_mean_by_hand() -> None:
    # windows of 2: [1], [1, 2], [2, 3], [3, 6]
    got = running_mean(np.array([1.0, 2.0, 3.0, 6.0]), window=2)
    assert got.tolist() == [1.0, 1.5, 2.5, 4.5]


def _pixels(png: bytes) -> np.ndarray:
    image = Image.open(io.BytesIO(png))
    assert image.format == "PNG"
    assert image.size == (WIDTH, HEIGHT)
    return np.asarray(image.convert("RGB")).astype(int)


def _count(pixels: np.ndarray, color: tuple[int, int, int], tol: int = 12) -> int:
    return int((np.abs(pixels - np.array(color)).max(axis=2) <= tol).sum())


def _green_rows(pixels: np.ndarray) -> np.ndarray:
    """Rows with a long run of green (a line may be blended with white across two rows)."""
    r, g, b = pixels[..., 0], pixels[..., 1], pixels[..., 2]
    greenish = (g - r > 40) & (g - b > 40)
    return np.flatnonzero(greenish.sum(axis=1) > 150)


def test_the_curve_shows_mean_evaluations_and_the_target_where_they_are() -> None:
    steps = list(range(1000, 201_000, 1000))
    returns = [min(500.0, s / 400) for s in steps]  # a ramp from 2.5 to 500
    curve = Curve(steps, returns, [100_000, 200_000], [250.0, 500.0])
    pixels = _pixels(learning_curve_png(curve, "ramp", 475.0))
    assert _count(pixels, BLUE) > 500  # the mean of last 100
    assert _count(pixels, ORANGE) > 50  # evaluation dots and their line
    # The target is one dashed horizontal line (plus its legend sample): its rows lie
    # where 475 falls between the range's ends (2.5 and 500, padded by 5 %).
    rows = _green_rows(pixels)
    assert rows.size > 0
    top, bottom = 30, HEIGHT - 44
    lo, hi = 2.5 - 0.05 * 497.5, 500 + 0.05 * 497.5
    expected = bottom - (475 - lo) / (hi - lo) * (bottom - top)
    assert np.abs(rows - expected).min() <= 2


def test_no_target_draws_no_target_line() -> None:
    curve = Curve([1, 2, 3], [1.0, 2.0, 3.0])
    pixels = _pixels(learning_curve_png(curve, "no target", None))
    assert _green_rows(pixels).size == 0
    assert _count(pixels, BLUE) > 0


def test_empty_and_non_finite_curves_still_draw() -> None:
    _pixels(learning_curve_png(Curve(), "nothing yet", None))
    _pixels(learning_curve_png(Curve([5], [7.0]), "one episode", math.inf))
    nan = Curve([1, 2, 3], [1.0, math.nan, math.inf], [2], [math.nan])
    assert _count(_pixels(learning_curve_png(nan, "nan", 1.0)), BLUE) > 0

"""The confidence interval every summary over seeds uses (sweep validation, analysis).

With the 3-10 seeds an RL experiment affords, the normal approximation would claim
intervals far too narrow; Student's t is the honest one.
"""

from __future__ import annotations

import math
from collections.abc import Iterable


def t_interval(values: Iterable[float], confidence: float = 0.95) -> tuple[float, float, float]:
    """``(mean, sample std, half-width)`` of the Student-t interval of the mean,
    ``t((1 + confidence) / 2, n - 1) * std / sqrt(n)``.

    NaN values are left out; the std and half-width are NaN for n < 2, all three for n = 0.
    """
    kept = [float(v) for v in values if not math.isnan(v)]
    n = len(kept)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = sum(kept) / n
    if n < 2:
        return mean, math.nan, math.nan
    # scipy.stats.t.ppf's own function: scipy.stats's import (~1 s) at a sweep's end
    # would cost more than its validation table.
    from scipy.special import stdtrit

    std = math.sqrt(sum((v - mean) ** 2 for v in kept) / (n - 1))
    return mean, std, float(stdtrit(n - 1, 0.5 + confidence / 2) * std / math.sqrt(n))

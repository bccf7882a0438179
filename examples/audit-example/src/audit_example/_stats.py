"""Small statistics for the example analyses (standard library only)."""

from __future__ import annotations

import math
from statistics import NormalDist


def wilson_interval(successes: int, trials: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (Wilson 1927).

    Unlike the normal approximation p +/- z*sqrt(p(1-p)/n), it stays inside
    [0, 1] and keeps its coverage when p is near 0 or 1, which is where an
    accuracy floor is usually set.
    """
    if trials <= 0:
        raise ValueError("the interval needs at least one trial")
    z = NormalDist().inv_cdf(0.5 + confidence / 2)
    p = successes / trials
    denominator = 1 + z * z / trials
    centre = (p + z * z / (2 * trials)) / denominator
    half_width = z * math.sqrt(p * (1 - p) / trials + z * z / (4 * trials * trials)) / denominator
    return max(0.0, centre - half_width), min(1.0, centre + half_width)

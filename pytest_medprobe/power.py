"""Power (metrics.md §3, "Power"): whether a verdict's interval can tell a pass from a fail.

A verdict's 95% interval has a half-width; the check has a distance to resolve (its
threshold's distance from a faultless module). These functions compare the two, say how
many test images would resolve the distance, and word the sentence a message gains.
"""

from __future__ import annotations

import math

# Scores are ratios of counts: the same tolerance as the decision rule (failure_modes).
_TOLERANCE = 1e-9


def _num(value: float) -> str:
    return f"{value:.3f}"


# The distance a check must resolve. A loss, drop or gap
# must tell "nothing lost" (0) from its limit; health must tell 1 from min_health. The
# vision checks' thresholds have no lossless reference (the default gain threshold is 0
# itself), so they must resolve a fixed VISION_RESOLUTION: the default layer drop, the
# smallest difference between two stages the defaults treat as a real loss.
VISION_RESOLUTION = 0.05


def resolution(threshold: float, ideal: float | None) -> float:
    """The distance a check's 95% interval must resolve: |threshold − ideal|, or
    ``VISION_RESOLUTION`` where the check has no ideal value (``ideal is None``)."""
    return VISION_RESOLUTION if ideal is None else abs(threshold - ideal)


def needed_test_images(half_width: float, distance: float, n_test: int) -> int | None:
    """About how many test images would bring ``half_width`` (measured on ``n_test``) down to
    ``distance``: a bootstrap half-width shrinks as 1/√n. None when it cannot be said."""
    if n_test < 1 or half_width <= 0:
        return None
    if distance <= 0:
        return None  # a zero-width band is never resolved
    return max(1, math.ceil(round(n_test * (half_width / distance) ** 2, 6)))  # 10.000000001 is 10


def is_underpowered(low: float, high: float, threshold: float, distance: float) -> bool:
    """Half-width > ``distance`` while the interval holds the threshold: the verdict is not decided
    at 95%, and even a faultless module's interval would be this wide. An interval wholly on
    one side has decided, however wide (as a subgroup gap is judged, metrics.md §7)."""
    low, high = min(low, high), max(low, high)
    holds = low - _TOLERANCE <= threshold <= high + _TOLERANCE
    return holds and (high - low) / 2 > distance + _TOLERANCE


def power_statement(low: float, high: float, threshold: float, distance: float, n_test: int) -> str:
    """The sentence a message gains when its interval cannot tell a pass from a fail; else ""."""
    if not is_underpowered(low, high, threshold, distance):
        return ""
    half_width = (high - low) / 2
    needed = needed_test_images(half_width, distance, n_test)
    more = (
        f"; about {needed} test images would resolve it (this run has {n_test})"
        if needed is not None
        else "; no test size resolves a zero distance"
        if distance <= 0
        else ""
    )
    return (
        f" UNDERPOWERED: the interval's half-width {_num(half_width)} exceeds the {_num(distance)} "
        f"this check must resolve, so it cannot tell a pass from a fail{more}."
    )

"""Statistics the benchmarks share."""

from __future__ import annotations


def percentile(xs: list[float], q: float) -> float:
    """The q-th percentile (nearest rank), NaN for no samples."""
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, round(q / 100 * (len(xs) - 1)))]

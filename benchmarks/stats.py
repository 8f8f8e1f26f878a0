"""Latency percentiles and medians (nearest-rank, no interpolation: every figure is a latency that happened)."""

from __future__ import annotations

import math
import statistics
from collections.abc import Sequence
from typing import Any


def percentile(ordered: Sequence[float], p: float) -> float:
    if not ordered:
        return math.nan
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summarize(latencies: list[float], elapsed: float) -> dict[str, Any]:
    """Requests/s over the measured window, and latency percentiles in milliseconds."""
    ordered = sorted(latencies)
    ms = [x * 1000 for x in ordered]
    return {
        "requests": len(ms),
        "seconds": round(elapsed, 3),
        "rps": round(len(ms) / elapsed, 1) if ms else 0.0,
        "p50_ms": round(percentile(ms, 50), 2),
        "p95_ms": round(percentile(ms, 95), 2),
        "p99_ms": round(percentile(ms, 99), 2),
        "max_ms": round(ms[-1], 2) if ms else math.nan,
        "mean_ms": round(statistics.fmean(ms), 2) if ms else math.nan,
    }


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return float(statistics.median(r[key] for r in runs))

"""Summaries shared by the benchmarks (``bench latency``, ``bench calls``): per-stage percentiles and shares
over per-turn rows. Each benchmark keeps its own percentile rule and passes it in."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

Percentile = Callable[[list[float], float], float | None]


def stage_percentiles(rows: list[Mapping[str, Any]], stages: Iterable[str], percentile: Percentile) -> dict[str, dict]:
    """``{stage: {"p50_ms", "p95_ms"}}`` over the rows that timed that stage (``None``: not timed)."""
    out = {}
    for stage in stages:
        values = [row[stage] for row in rows if row[stage] is not None]
        out[stage] = {"p50_ms": percentile(values, 0.5), "p95_ms": percentile(values, 0.95)}
    return out


def share(rows: list[Mapping[str, Any]], key: str) -> float | None:
    """Share of the rows where ``key`` is true, to 2 decimals (``None`` without rows)."""
    return round(sum(bool(row[key]) for row in rows) / len(rows), 2) if rows else None

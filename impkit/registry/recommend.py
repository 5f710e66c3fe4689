"""Which GGUF level to ship: for each device profile, the fastest level (then the smallest) whose
every benchmark headline stays within a tolerance of F16's.

Headlines are compared on a 0-100 scale (MME's perception score, out of 2000, is divided by 20) so
one tolerance in points fits every benchmark. Timings are medians over the latency protocol's runs;
levels whose run ranges overlap the fastest one's are taken as equally fast (the difference is
within the noise), and the smallest of them is named.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

HEADLINE_MAX = {"mme": 2000.0}  # every other headline is out of 100
REFERENCE = "F16"


def headline_points(benchmark: str, value: float) -> float:
    return value * 100.0 / HEADLINE_MAX.get(benchmark, 100.0)


def worst_drop(reference: Mapping[str, Any], level: Mapping[str, Any]) -> tuple[str | None, float]:
    """The benchmark whose headline fell most from ``reference`` to ``level``, in points (0-100)."""
    drops = [
        (headline_points(b, reference[b]) - headline_points(b, level[b]), b)
        for b in reference
        if isinstance(reference.get(b), int | float) and isinstance(level.get(b), int | float)
    ]
    if not drops:
        return None, 0.0
    drop, benchmark = max(drops)
    return (benchmark if drop > 0 else None), round(drop, 2)


def _band(figures: Mapping[str, Any]) -> tuple[float, float, float]:
    total = figures["t_total_s"]
    return total["median"], total.get("min", total["median"]), total.get("max", total["median"])


def recommend(record: Mapping[str, Any], tolerance_points: float) -> dict[str, Any]:
    """Per device profile that ran GGUF levels: the level to ship and the figures that decided it."""
    levels = record["benchmarks"].get("gguf") or {}
    if not isinstance(levels.get(REFERENCE), Mapping):
        return {}
    sizes = record.get("sizes") or {}
    considered = {}
    for level, headlines in levels.items():
        benchmark, drop = worst_drop(levels[REFERENCE], headlines or {})
        considered[level] = {
            "worst_drop": drop,
            "worst_benchmark": benchmark,
            "within_tolerance": drop <= tolerance_points,
        }
    by_profile: dict[str, dict[str, tuple[float, float, float]]] = {}
    for name, figures in (record.get("latency") or {}).items():
        profile, _, level = name.partition("/")
        if level in levels and "t_total_s" in figures:
            by_profile.setdefault(profile, {})[level] = _band(figures)
    choice = {}
    for profile, timings in sorted(by_profile.items()):
        eligible = {lv: band for lv, band in timings.items() if considered[lv]["within_tolerance"]}
        if not eligible:
            continue
        fastest = min(eligible, key=lambda lv: eligible[lv][0])
        _, lo, hi = eligible[fastest]
        tied = [lv for lv, (_, l2, h2) in eligible.items() if l2 <= hi and lo <= h2]
        level = min(tied, key=lambda lv: (sizes.get(lv, {}).get("total", float("inf")), eligible[lv][0]))
        choice[profile] = {
            "level": level,
            "t_total_s": eligible[level][0],
            "size_mb": round(sizes[level]["total"] / 1e6, 2) if level in sizes else None,
            "fastest": fastest,
            "tied_with_fastest": sorted(tied),
            "tolerance_points": tolerance_points,
            "levels": {
                lv: {**considered[lv], "t_total_s": timings[lv][0], "t_total_range_s": list(timings[lv][1:])}
                for lv in sorted(timings)
            },
        }
    return choice

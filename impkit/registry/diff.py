"""Every figure two release records share, side by side: benchmarks per backend and level, held-out
check, parity, sizes, latency. A timing carries its noise band (the min and max over the latency
protocol's runs); a change whose bands overlap is marked as within noise. A share of questions
asked of a different number of questions (``n``) in the two records, e.g. a held-out check over
200 questions against one over all 1,266, is not comparable: it gets no change."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

Figure = tuple[float, tuple[float, float] | None]  # value, (min, max) for timings


def _numbers(prefix: str, tree: Any, out: dict[str, Figure]) -> None:
    if isinstance(tree, bool):
        out[prefix] = (float(tree), None)
    elif isinstance(tree, int | float):
        out[prefix] = (float(tree), None)
    elif isinstance(tree, Mapping):
        if {"median", "min", "max"} <= set(tree):
            out[prefix] = (float(tree["median"]), (float(tree["min"]), float(tree["max"])))
            return
        for key, value in tree.items():
            if key in ("n", "per_prompt", "thresholds", "reasons"):
                continue
            _numbers(f"{prefix}.{key}" if prefix else str(key), value, out)


def _question_counts(prefix: str, tree: Any, out: dict[str, int]) -> None:
    """The number of questions (``n``) behind the figures under each prefix that records one."""
    if not isinstance(tree, Mapping):
        return
    n = tree.get("n")
    if isinstance(n, int) and not isinstance(n, bool):
        out[prefix] = n
    for key, value in tree.items():
        _question_counts(f"{prefix}.{key}" if prefix else str(key), value, out)


def question_counts(record: Mapping[str, Any]) -> dict[str, int]:
    """The record's question counts by dotted prefix, e.g. ``heldout.release.with_image``: 1266."""
    out: dict[str, int] = {}
    for section in ("heldout", "benchmarks"):
        _question_counts(section, record.get(section), out)
    return out


def _counts_differ(name: str, na: Mapping[str, int], nb: Mapping[str, int]) -> tuple[int, int] | None:
    """(n in a, n in b) when the figure ``name`` rests on different numbers of questions."""
    owners = [p for p in set(na) | set(nb) if name == p or name.startswith(p + ".")]
    if not owners:
        return None
    owner = max(owners, key=len)
    if owner in na and owner in nb and na[owner] != nb[owner]:
        return na[owner], nb[owner]
    return None


def figures(record: Mapping[str, Any]) -> dict[str, Figure]:
    """The record's comparable figures, flattened to dotted names."""
    out: dict[str, Figure] = {}
    for section in ("heldout", "benchmarks", "parity", "sizes", "latency", "paper_size"):
        _numbers(section, record.get(section), out)
    _numbers("training", {k: v for k, v in (record.get("training") or {}).items() if k != "parameters"}, out)
    return out


def diff(a: Mapping[str, Any], b: Mapping[str, Any], *, changed_only: bool = False) -> list[dict[str, Any]]:
    """One row per figure either record has: both values, the change and, for timings, whether the
    runs' ranges overlap (``within_noise``); a share of different numbers of questions gets no change
    and ``questions`` = (n in a, n in b)."""
    fa, fb = figures(a), figures(b)
    na, nb = question_counts(a), question_counts(b)
    rows = []
    for name in sorted(set(fa) | set(fb)):
        va, vb = fa.get(name), fb.get(name)
        row: dict[str, Any] = {"figure": name, "a": va[0] if va else None, "b": vb[0] if vb else None}
        row["change"] = None if va is None or vb is None else vb[0] - va[0]
        counts = _counts_differ(name, na, nb)
        if counts is not None:
            row["change"], row["questions"] = None, counts
        bands = (va[1] if va else None, vb[1] if vb else None)
        if bands[0] and bands[1]:
            row["band_a"], row["band_b"] = bands
            row["within_noise"] = bands[0][0] <= bands[1][1] and bands[1][0] <= bands[0][1]
        if changed_only and row["change"] == 0:
            continue
        rows.append(row)
    return rows


def _fmt(value: float | None) -> str:
    return "–" if value is None else f"{value:.4g}"


def diff_table(a: Mapping[str, Any], b: Mapping[str, Any], *, changed_only: bool = False) -> str:
    lines = [
        f"| figure | {a['id']} | {b['id']} | change | noise |",
        "|---|---|---|---|---|",
    ]
    for row in diff(a, b, changed_only=changed_only):
        noise = ""
        if "questions" in row:
            noise = "not comparable: {} vs {} questions".format(*row["questions"])
        if "within_noise" in row:
            (lo_a, hi_a), (lo_b, hi_b) = row["band_a"], row["band_b"]
            verdict = "within noise" if row["within_noise"] else "outside noise"
            noise = f"{verdict} ([{lo_a:.4g}, {hi_a:.4g}] vs [{lo_b:.4g}, {hi_b:.4g}])"
        change = "–" if row["change"] is None else f"{row['change']:+.4g}"
        lines.append(f"| {row['figure']} | {_fmt(row['a'])} | {_fmt(row['b'])} | {change} | {noise} |")
    return "\n".join(lines) + "\n"

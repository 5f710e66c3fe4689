"""The static release dashboard: one self-contained HTML file (plotly.js inline; it opens from disk
with no network) with what time-series panels cannot show:

- accuracy against file size and against latency, per release, level and device profile (the
  trade-off of the paper's Table 4), one benchmark at a time, with the paper's own points where it
  reports them (Imp-3B@384 and @196 on SQA-IMG and MMBench, RTX 3090 and two phones), labelled as
  the paper's; hovering a point names the release and level;
- the level to ship per release and device profile (impkit.registry.recommend) and what decided it;
- each release's Table 3 and Table 4 layouts, with the paper's reported Imp-2B/3B/4B rows;
- each release's data: the mixtures' quality gates, and per source what was kept and quarantined why.
"""

from __future__ import annotations

import html
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import plotly.graph_objects as go
from plotly.offline import get_plotlyjs

from impkit import paper
from impkit.headline import headline_value
from impkit.registry.card import table3

LEVEL_SYMBOLS = {"F16": "circle", "Q8_0": "square", "Q4_K_M": "diamond"}
PAPER_COLOUR = "#7f7f7f"


def _headline(result: Any) -> float | None:
    if isinstance(result, int | float) and not isinstance(result, bool):
        return float(result)
    return None


def _level_points(record: Mapping[str, Any], benchmark: str) -> list[tuple[str, float, float | None]]:
    """(level, headline, size in MB) of every GGUF level of a release."""
    points = []
    sizes = record.get("sizes") or {}
    for level, headlines in (record["benchmarks"].get("gguf") or {}).items():
        value = _headline((headlines or {}).get(benchmark))
        if value is not None:
            total = sizes.get(level, {}).get("total")
            points.append((level, value, total / 1e6 if total else None))
    return points


def _scatter(records: Sequence[Mapping[str, Any]], x_of, x_title: str, paper_x) -> go.Figure:
    """One trace per release and benchmark (shown one benchmark at a time through a menu), plus the
    paper's points where it reports them."""
    fig = go.Figure()
    visible_sets = []
    for b_index, (benchmark, label) in enumerate(table3()):
        names = []
        for record in records:
            points = sorted(
                (x, value, level, f"{record['id']}<br>{level}{where}<br>{label} {value:.1f}")
                for level, value, size in _level_points(record, benchmark)
                for x, where in x_of(record, level, size)
            )
            if not points:
                continue
            xs, ys, levels, texts = zip(*points, strict=True)
            fig.add_trace(
                go.Scatter(
                    x=xs,
                    y=ys,
                    mode="markers+lines",  # a release's levels, joined in order of size or speed
                    name=record["id"],
                    marker={"symbol": [LEVEL_SYMBOLS.get(lv, "circle") for lv in levels], "size": 9},
                    text=texts,
                    hoverinfo="text",
                    visible=b_index == 0,
                )
            )
            names.append(len(fig.data) - 1)
        for model, levels in paper.TABLE4.items():
            xs, ys, texts = [], [], []
            for bits, figures in levels.items():
                if benchmark not in figures:
                    continue
                for x, where in paper_x(figures):
                    xs.append(x)
                    ys.append(figures[benchmark])
                    texts.append(f"paper, {model}<br>{bits}{where}<br>{label} {figures[benchmark]:.1f}")
            if xs:
                fig.add_trace(
                    go.Scatter(
                        x=xs,
                        y=ys,
                        mode="markers",
                        name=f"paper: {model} (reported)",
                        marker={"color": PAPER_COLOUR, "symbol": "x", "size": 10},
                        text=texts,
                        hoverinfo="text",
                        visible=b_index == 0,
                    )
                )
                names.append(len(fig.data) - 1)
        visible_sets.append((label, names))
    buttons = [
        {
            "label": label,
            "method": "update",
            "args": [{"visible": [i in names for i in range(len(fig.data))]}, {"yaxis": {"title": label}}],
        }
        for label, names in visible_sets
        if names
    ]
    fig.update_layout(
        updatemenus=[{"buttons": buttons, "x": 0, "y": 1.15, "xanchor": "left"}],
        xaxis={"title": x_title, "type": "log"},
        yaxis={"title": buttons[0]["label"] if buttons else ""},
        height=480,
        margin={"t": 60},
        legend={"font": {"size": 10}},
    )
    return fig


def _size_x(record, level, size):
    return [(size, f", {size:.1f} MB")] if size else []


def _paper_size_x(figures):
    return [(figures["size_gb"] * 1000, f", {figures['size_gb']} GB")]


def _latency_x(record, level, size):
    found = []
    for name, figures in (record.get("latency") or {}).items():
        profile, _, measured = name.partition("/")
        if measured == level and "t_total_s" in figures:
            found.append(
                (figures["t_total_s"]["median"], f" on {profile}, T_total {figures['t_total_s']['median']:.3g} s")
            )
    return found


def _paper_latency_x(figures):
    return [(f["t_total_s"], f" on {hw}, T_total {f['t_total_s']} s") for hw, f in figures["latency"].items()]


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(str(h))}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(str(c))}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _fmt(value: Any) -> str:
    return "–" if not isinstance(value, int | float) or isinstance(value, bool) else f"{value:.1f}"


def _table3(record: Mapping[str, Any]) -> str:
    torch = record["benchmarks"].get("torch") or {}
    rows = [[record["id"], "PyTorch", *(_fmt(headline_value(torch.get(b))) for b, _ in table3())]]
    for level, headlines in (record["benchmarks"].get("gguf") or {}).items():
        rows.append([record["id"], f"GGUF {level}", *(_fmt((headlines or {}).get(b)) for b, _ in table3())])
    majority = record["benchmarks"].get("majority") or {}
    rows.append(["baseline", "majority answer per type", *(_fmt(headline_value(majority.get(b))) for b, _ in table3())])
    return _table(["Model", "Run", *(label for _, label in table3())], rows)


def _paper_table3() -> str:
    rows = [[model, *(_fmt(headlines.get(b)) for b, _ in table3())] for model, headlines in paper.TABLE3.items()]
    return _table(["Model", *(label for _, label in table3())], rows)


def _table4(record: Mapping[str, Any]) -> str:
    rows = []
    sizes = record.get("sizes") or {}
    for name, figures in (record.get("latency") or {}).items():
        profile, _, level = name.partition("/")
        total = sizes.get(level, {}).get("total")
        rows.append(
            [
                record["id"],
                profile,
                level,
                f"{total / 1e6:.1f} MB" if total else "–",
                *(
                    f"{figures[k]['median']:.4g}" if k in figures else "–"
                    for k in ("t_ve_s", "s_prompt_tps", "s_gen_tps", "t_total_s")
                ),
            ]
        )
    return _table(
        ["Model", "Device", "Level", "Size", "T_VE (s)", "S_prompt (tok/s)", "S_gen (tok/s)", "T_total (s)"], rows
    )


def _paper_table4() -> str:
    rows = [
        [
            model,
            hardware,
            bits,
            f"{f['size_gb']} GB",
            lat["t_ve_s"],
            lat["s_prompt_tps"],
            lat["s_gen_tps"],
            lat["t_total_s"],
            f["sqa"],
            f["mmbench"],
        ]
        for model, levels in paper.TABLE4.items()
        for bits, f in levels.items()
        for hardware, lat in f["latency"].items()
    ]
    header = ["Model", "Hardware", "Precision", "Size", "T_VE (s)", "S_prompt (tok/s)", "S_gen (tok/s)", "T_total (s)"]
    return _table([*header, "SQA-IMG", "MMB"], rows)


def _recommendations(records: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for record in records:
        for profile, choice in (record.get("recommendation") or {}).items():
            considered = "; ".join(
                f"{lv}: worst drop {f['worst_drop']:.1f} ({f['worst_benchmark'] or '-'}), {f['t_total_s']:.3g} s"
                for lv, f in choice["levels"].items()
            )
            rows.append(
                [
                    record["id"],
                    profile,
                    choice["level"],
                    f"{choice['size_mb']} MB",
                    f"{choice['t_total_s']:.4g} s",
                    considered,
                ]
            )
    return _table(
        ["Release", "Device profile", "Ship", "Size", "T_total", "Levels considered (drop vs F16 in points)"], rows
    )


def _data(record: Mapping[str, Any]) -> str:
    rows = []
    for mixture, figures in (record.get("data") or {}).items():
        for source, counts in figures["sources"].items():
            reasons = ", ".join(f"{k}: {v}" for k, v in (counts.get("reasons") or {}).items()) or "–"
            share = figures.get("kept_share", {}).get(source)
            rows.append(
                [
                    mixture,
                    figures["gate"],
                    source,
                    counts["in"],
                    counts["kept"],
                    counts["quarantined"],
                    reasons,
                    "–" if share is None else f"{share:.3f}",
                ]
            )
    return _table(["Mixture", "Gate", "Source", "In", "Kept", "Quarantined", "Reasons", "Kept share"], rows)


STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.2rem 0.5rem; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
h2 { margin-top: 2rem; } .note { color: #555; font-size: 0.9rem; max-width: 60rem; }
"""


def render(
    records: Sequence[Mapping[str, Any]], *, generated: datetime | None = None, drift: Mapping[str, str] | None = None
) -> str:
    """The dashboard over ``records`` (oldest first), as one HTML document; ``drift`` maps a release id
    to its data-drift report (a path relative to the page)."""
    drift = drift or {}
    when = (generated or datetime.now(UTC)).isoformat(timespec="seconds")
    size_fig = _scatter(records, _size_x, "GGUF files' size (MB, log scale)", _paper_size_x)
    latency_fig = _scatter(records, _latency_x, "T_total (s, log scale)", _paper_latency_x)
    plots = [
        size_fig.to_html(full_html=False, include_plotlyjs=False, div_id="accuracy-vs-size"),
        latency_fig.to_html(full_html=False, include_plotlyjs=False, div_id="accuracy-vs-latency"),
    ]
    sections = []
    for record in reversed(records):
        sections.append(
            f"<h3 id='{html.escape(record['id'])}'>{html.escape(record['id'])}</h3>"
            f"<p class='note'>{html.escape(record['preset'])}, built {html.escape(record['created'])}"
            + (
                f" · <a href='{html.escape(drift[record['id']])}'>its training data against the previous release's</a>"
                if record["id"] in drift
                else ""
            )
            + "</p>"
            "<h4>Table 3 layout (on the synthetic twins of the benchmarks)</h4>"
            + _table3(record)
            + "<h4>Table 4 layout (on this build's machine)</h4>"
            + _table4(record)
            + "<h4>Data: quality gates and what each source gave</h4>"
            + _data(record)
        )
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>impkit releases</title>
<style>{STYLE}</style>
<script type="text/javascript">{get_plotlyjs()}</script>
</head><body>
<h1>impkit releases</h1>
<p class="note">{len(records)} release(s) in the registry; page generated {when}. Points are this workflow's
releases at each GGUF level; grey crosses are the paper's reported figures (Imp-3B@384 and @196,
Table 4), on real benchmarks and other hardware: compare shapes, not values. Markers: circle F16,
square Q8_0, diamond Q4_K_M; the menu above each plot picks the benchmark.</p>
<h2>Accuracy against size</h2>{plots[0]}
<h2>Accuracy against latency</h2>{plots[1]}
<h2>Level to ship</h2>
<p class="note">Per release and device profile: the fastest GGUF level (the smallest among levels whose timings are
within each other's noise) whose every benchmark headline stays within the tolerance of F16.</p>
{_recommendations(list(reversed(records)))}
<h2>Releases</h2>
{"".join(sections)}
<h2>The paper's reported figures</h2>
<p class="note">For comparison only: the real Imp models on the real benchmarks (Table 3) and llama.cpp on the
paper's hardware (Table 4).</p>
<h4>Table 3 (reported)</h4>{_paper_table3()}
<h4>Table 4 (reported)</h4>{_paper_table4()}
</body></html>
"""

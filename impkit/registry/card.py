"""The model card of a release, after Hugging Face's conventions: YAML front matter (license,
library, pipeline tag, tags, model-index with the evaluation results), then intended use, training
data, evaluation in the paper's Table 3 layout, quantization and latency in the paper's Table 4
layout, and limitations."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import yaml

from impkit.headline import NOT_HEADLINES, headline_value


def table3() -> list[tuple[str, str]]:
    """(benchmark, column heading) in the paper's Table 3 order (impkit.eval.benchmarks)."""
    from impkit.eval.benchmarks import table3_columns

    return table3_columns()


def _cell(value: float | None) -> str:
    return "–" if value is None else f"{value:.1f}"


def _front_matter(record: Mapping[str, Any]) -> str:
    results = []
    torch = record["benchmarks"].get("torch") or {}
    for benchmark, label in table3():
        value = headline_value(torch.get(benchmark))
        if value is None:
            continue
        metric = next(k for k in torch[benchmark] if k not in NOT_HEADLINES)
        results.append(
            {
                "task": {"type": "visual-question-answering"},
                "dataset": {"name": f"{label} (synthetic twin)", "type": benchmark},
                "metrics": [{"type": metric, "value": value}],
            }
        )
    meta = {
        "license": "apache-2.0",
        "library_name": "transformers",
        "pipeline_tag": "image-text-to-text",
        "tags": ["llava", "imp", "impkit", "gguf", record["preset"]],
        "model-index": [{"name": record["id"], "results": results}],
    }
    return "---\n" + yaml.safe_dump(meta, sort_keys=False, allow_unicode=True) + "---\n"


def _table3(record: Mapping[str, Any]) -> list[str]:
    columns = table3()
    header = ["Run", *(label for _, label in columns)]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    torch = record["benchmarks"].get("torch") or {}
    rows = [("PyTorch", {b: headline_value(torch.get(b)) for b, _ in columns})]
    rows.append(
        (
            "PyTorch, blank images",
            {b: (torch.get(b) or {}).get("blind") if isinstance(torch.get(b), Mapping) else None for b, _ in columns},
        )
    )
    majority = record["benchmarks"].get("majority") or {}
    rows.append(("majority answer per type", {b: headline_value(majority.get(b)) for b, _ in columns}))
    for level, figures in (record["benchmarks"].get("gguf") or {}).items():
        rows.append((f"GGUF {level} (llama.cpp)", {b: (figures or {}).get(b) for b, _ in columns}))
    for name, cells in rows:
        lines.append("| " + " | ".join([name, *(_cell(cells[b]) for b, _ in columns)]) + " |")
    return lines


def _table4(record: Mapping[str, Any]) -> list[str]:
    lines = [
        "| Device / level | Size (MB) | T_VE (s) | S_prompt (tok/s) | S_gen (tok/s) | T_total (s) |",
        "|---|---|---|---|---|---|",
    ]
    sizes = record.get("sizes") or {}
    for name, figures in record.get("latency", {}).items():
        level = name.split("/", 1)[1]
        size = sizes.get(level, {}).get("total")
        cells = [
            name,
            f"{size / 1e6:.1f}" if size else "–",
            *(
                f"{figures[k]['median']:.4g}" if k in figures else "–"
                for k in ("t_ve_s", "s_prompt_tps", "s_gen_tps", "t_total_s")
            ),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def _recommendation(record: Mapping[str, Any]) -> list[str]:
    lines = []
    for profile, choice in (record.get("recommendation") or {}).items():
        levels = ", ".join(
            f"{lv}: worst drop {f['worst_drop']:.1f} points ({f['worst_benchmark'] or '-'}), T_total {f['t_total_s']:.4g} s"
            for lv, f in choice["levels"].items()
        )
        lines.append(
            f"- **{profile}: ship {choice['level']}** ({choice['size_mb']} MB, T_total {choice['t_total_s']:.4g} s); "
            f"the fastest within {choice['tolerance_points']:g} points of F16 on every benchmark"
            + (
                f", tied within the timing noise with {', '.join(choice['tied_with_fastest'])}"
                if len(choice["tied_with_fastest"]) > 1
                else ""
            )
            + f". Considered: {levels}."
        )
    return lines or ["(no GGUF level was measured on a device profile)"]


def _trained_data(mix: str, sources: list[str], training: Mapping[str, Any], heldout) -> list[str]:
    check = (
        f"Held-out check: {heldout['with_image']:.1f} % with the question's image, "
        f"{heldout['lead']:+.1f} points over a blank or another image."
        if heldout
        else "No held-out check."
    )
    return [
        mix or "(no data manifest)",
        "",
        *(sources + [""] if len(sources) > 2 else []),
        f"Training: {training.get('steps', '?')} stage-2 steps in {training.get('precision', '?')}, final loss "
        f"{training.get('train_loss', '?')}. {check}",
    ]


def _imported_provenance(imported: Mapping[str, Any]) -> list[str]:
    return [
        f"Not trained by this workflow: imported from `{imported.get('folder', '?')}` "
        f"(config `{imported.get('model_type', '?')}`, layout `{imported.get('layout', '?')}`, vision tower "
        f"`{imported.get('mm_vision_tower', '?')}`). Its training data is the published model's (paper Table 2); "
        "no held-out check of this workflow's synthetic world applies.",
    ]


def model_card(record: Mapping[str, Any]) -> str:
    """The card as Markdown, from the release record alone."""
    model = record.get("model") or {}
    heldout = record["headline"]["heldout"]
    data = record.get("data", {})
    mix = ", ".join(f"{name}: {m['kept']} records kept of {m['in']} (gate {m['gate']})" for name, m in data.items())
    sources = ["| mixture | gate | source | in | kept | quarantined | reasons |", "|---|---|---|---|---|---|---|"]
    for name, m in data.items():
        for source, counts in m.get("sources", {}).items():
            reasons = ", ".join(f"{k}: {v}" for k, v in (counts.get("reasons") or {}).items()) or "–"
            sources.append(
                f"| {name} | {m['gate']} | {source} | {counts['in']} | {counts['kept']} | {counts['quarantined']} | {reasons} |"
            )
    training = record.get("training") or {}
    imported = training.get("imported")
    git = record.get("git") or {}
    body = [
        f"# {record['id']}",
        "",
        f"A {record['family']} release of impkit's `{record['preset']}` "
        + ("release, imported from a published Imp checkpoint: " if imported else "preset: ")
        + f"a SigLIP-style vision tower ({model.get('vision', '?')}), a two-layer MLP projector and a small LLM "
        f"({model.get('llm', '?')}), trained LLaVA-style in two stages as the Imp models are. Built "
        f"{record['created']}" + (f" from git revision {git['revision'][:12]}" if git.get("revision") else "") + ".",
        "",
        "## Intended use",
        "",
        "Reproducing and measuring the Imp training, evaluation, quantization and latency workflow. "
        + (
            "The published model's own card states its uses and licence; the figures below are this workflow's "
            "measurements of it."
            if imported
            else "The nano presets are trained on a synthetic world and answer questions about its images only; "
            "they are not general-purpose assistants."
        ),
        "",
        "## Training data",
        "",
        *(_imported_provenance(imported) if imported else _trained_data(mix, sources, training, heldout)),
        "",
        "## Evaluation (the paper's Table 3 layout, on the synthetic twins)",
        "",
        *_table3(record),
        "",
        "## Quantization and latency (the paper's Table 4 layout, on the build machine)",
        "",
        *_table4(record),
        "",
        "Recommended level per device profile:",
        "",
        *_recommendation(record),
        "",
        "## Limitations",
        "",
        "- Scores are on synthetic twins of the benchmarks (their official formats and scorers), not on "
        "the real benchmark images; they compare releases of this workflow, not published models.",
        "- Latency is the median of a few runs on the build machine; compare releases measured on the "
        "same machine only.",
        "- MM-Vet needs an LLM judge and is left unscored without one.",
        "",
    ]
    return _front_matter(record) + "\n" + "\n".join(body)

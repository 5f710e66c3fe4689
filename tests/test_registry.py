"""The release registry: records keyed by content, that accumulate, promotions, diffs and model cards."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
import yaml

from impkit.cli import main
from impkit.registry import Registry, RegistryError, build_record
from impkit.registry.card import model_card
from impkit.registry.diff import diff, diff_table
from tests.test_headline import REPORTS

LATENCY = {
    "metrics": REPORTS["latency"]["metrics"],
    "results": [
        {
            "device": {"name": "cpu-llamacpp"},
            "model": {"format": "gguf", "level": "F16"},
            "summary": {
                "t_ve_s": {"median": 0.0027, "min": 0.0025, "max": 0.0028},
                "s_prompt_tps": {"median": 5371.5, "min": 5367.4, "max": 5759.9},
                "s_gen_tps": {"median": 1474.1, "min": 1267.9, "max": 1484.7},
                "t_total_s": {"median": 0.0565, "min": 0.0558, "max": 0.0638},
            },
        }
    ],
}
MANIFEST = {
    "mixtures": {
        "finetune": {
            "in": 12,
            "kept": 10,
            "quarantined": 1,
            "dropped": 1,
            "gate": "passed",
            "sources": [
                {"source": "syn_vqa", "in": 12, "kept": 10, "quarantined": 1, "quarantine_reasons": {"bad": 1}}
            ],
            "shares": [{"source": "syn_vqa", "kept_share": 1.0}],
        }
    }
}


def _release(folder: Path, weights: bytes = b"weights") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "model.safetensors").write_bytes(weights)
    meta = {"preset": "p", "family": "phi2", "model": {"vision": "SigLIP", "llm": "phi2"}}
    (folder / "impkit.json").write_text(json.dumps(meta))
    return folder


def _record(tmp_path: Path, weights: bytes = b"weights", created=None, latency=LATENCY) -> dict:
    reports = {**copy.deepcopy(REPORTS), "latency": latency}
    return build_record(
        "p",
        release_dir=_release(tmp_path / "releases" / "p", weights),
        gguf_dir=tmp_path / "models" / "gguf" / "p",
        reports=reports,
        params={"train": {"seed": 0}, "model": {"presets": {"p": {"family": "phi2"}}}},
        data_manifest=MANIFEST,
        backbones_manifest={"vision": {"steps": 500}},
        paper_size={},
        tolerance_points=2.0,
        created=created,
    )


def test_the_content_id_follows_the_model_not_the_build(tmp_path):
    first, again = _record(tmp_path), _record(tmp_path)
    assert first["id"] == again["id"] and first["id"].startswith("p-") and len(first["id"]) == len("p-") + 12
    assert _record(tmp_path, weights=b"other weights")["id"] != first["id"]
    assert first["data"]["finetune"]["sources"]["syn_vqa"]["reasons"] == {"bad": 1}
    assert first["latency"]["cpu-llamacpp/F16"]["t_total_s"]["median"] == 0.0565
    assert first["headline"]["heldout"] == {"with_image": 49.0, "lead": 14.0}


def test_the_registry_accumulates_and_a_rebuild_adds_nothing(tmp_path):
    registry = Registry(tmp_path / "registry")
    first = _record(tmp_path, created=datetime(2026, 1, 1, tzinfo=UTC))
    assert registry.add(first, card=model_card(first)) is True
    assert registry.add(_record(tmp_path)) is False  # the same model again
    second = _record(tmp_path, weights=b"retrained", created=datetime(2026, 1, 2, tzinfo=UTC))
    assert registry.add(second) is True
    assert [r["id"] for r in registry.records()] == [first["id"], second["id"]]
    assert registry.current() == {"p": second["id"]}
    assert registry.record_path(first).with_suffix(".md").is_file()
    # ids shorten to an unambiguous prefix; unknown and ambiguous ones are named
    assert first["id"][:5] != second["id"][:5]
    assert registry.get(first["id"][:5])["id"] == first["id"]
    with pytest.raises(RegistryError, match="no release 'q-1'"):
        registry.get("q-1")
    with pytest.raises(RegistryError, match="matches 2 releases"):
        registry.get("p-")
    registry.promote(first["id"], "prod")
    registry.promote(second["id"], "staging")
    assert registry.stages() == {first["id"]: ["prod"], second["id"]: ["staging"]}
    registry.promote(second["id"], "prod")  # a stage holds one release of a preset
    assert registry.stages() == {second["id"]: ["prod", "staging"]}
    with pytest.raises(RegistryError, match="unknown stage 'live'"):
        registry.promote(second["id"], "live")


def test_diff_gives_every_change_and_the_noise_band_of_timings(tmp_path):
    a = _record(tmp_path)
    slower = copy.deepcopy(LATENCY)
    slower["results"][0]["summary"]["t_total_s"] = {"median": 0.0600, "min": 0.0590, "max": 0.0700}
    slower["results"][0]["summary"]["s_gen_tps"] = {"median": 900.0, "min": 880.0, "max": 910.0}
    b = _record(tmp_path, weights=b"b", latency=slower)
    rows = {row["figure"]: row for row in diff(a, b)}
    total = rows["latency.cpu-llamacpp/F16.t_total_s"]
    assert total["change"] == pytest.approx(0.0035) and total["within_noise"] is True
    assert rows["latency.cpu-llamacpp/F16.s_gen_tps"]["within_noise"] is False
    assert rows["benchmarks.torch.vqav2.soft_accuracy"]["change"] == 0
    changed = {row["figure"] for row in diff(a, b, changed_only=True)}
    assert "benchmarks.torch.vqav2.soft_accuracy" not in changed and "latency.cpu-llamacpp/F16.t_total_s" in changed
    assert "outside noise" in diff_table(a, b)


def test_diff_refuses_to_compare_shares_of_different_question_sets(tmp_path):
    """A release checked on the first 200 held-out questions and one checked on all 1,266: the
    accuracies are side by side, but no change is claimed between them."""
    a = _record(tmp_path)
    b = copy.deepcopy(_record(tmp_path, weights=b"b"))
    for run in b["heldout"]["release"].values():
        run["n"] = 1266
    rows = {row["figure"]: row for row in diff(a, b)}
    held = rows["heldout.release.with_image.accuracy"]
    assert held["a"] == 0.49 and held["change"] is None and held["questions"] == (200, 1266)
    assert rows["benchmarks.torch.vqav2.soft_accuracy"]["change"] == 0  # same questions: compared
    assert "questions" not in rows["benchmarks.torch.vqav2.soft_accuracy"]
    assert "not comparable: 200 vs 1266 questions" in diff_table(a, b)
    assert "heldout.release.with_image.accuracy" in {r["figure"] for r in diff(a, b, changed_only=True)}


def test_the_model_card_follows_hugging_face_conventions(tmp_path):
    record = _record(tmp_path)
    card = model_card(record)
    front, body = card.split("---\n")[1], card.split("---\n", 2)[2]
    meta = yaml.safe_load(front)
    assert meta["pipeline_tag"] == "image-text-to-text" and meta["library_name"] == "transformers"
    results = meta["model-index"][0]["results"]
    assert {r["dataset"]["type"]: r["metrics"][0]["value"] for r in results} == {"vqav2": 53.25, "mme": 435.71}
    for section in (
        "## Intended use",
        "## Training data",
        "## Evaluation",
        "## Quantization and latency",
        "## Limitations",
    ):
        assert section in body
    assert "| PyTorch | 53.2 |" in body and "| cpu-llamacpp/F16 | 13.7 | 0.0027 |" in body
    assert "| finetune | passed | syn_vqa | 12 | 10 | 1 | bad: 1 |" in body  # the gate per source, with reasons


def test_impkit_releases_lists_shows_diffs_and_promotes(tmp_path, capsys):
    registry = Registry(tmp_path / "registry")
    a, b = _record(tmp_path), _record(tmp_path, weights=b"b")
    registry.add(a, card=model_card(a))
    registry.add(b, card=model_card(b))
    root = ["--registry", str(registry.root)]
    main(["releases", "list", *root])
    listed = capsys.readouterr().out
    assert a["id"] in listed and b["id"] in listed
    main(["releases", "show", a["id"], *root])
    assert capsys.readouterr().out.startswith("---\nlicense")
    main(["releases", "diff", a["id"], b["id"], "--changed", *root])
    assert "| figure |" in capsys.readouterr().out
    main(["releases", "promote", a["id"], "--stage", "prod", *root])
    main(["releases", "list", *root])
    assert f"| {a['id']} | p |" in capsys.readouterr().out.split("\n", 3)[-1]
    assert registry.stages() == {a["id"]: ["prod"]}


def test_every_built_preset_is_a_dvc_artifact_of_type_model():
    repo = Path(__file__).resolve().parents[1]
    params = yaml.safe_load((repo / "params.yaml").read_text())
    artifacts = yaml.safe_load((repo / "dvc.yaml").read_text())["artifacts"]
    assert set(artifacts) == set(params["train"]["presets"])
    for name, artifact in artifacts.items():
        assert artifact["type"] == "model" and artifact["path"] == f"releases/{name}"
        assert params["model"]["presets"][name]["family"] in artifact["labels"]


def _levels_record(drops: dict, totals: dict) -> dict:
    """A record with F16/Q8_0/Q4_K_M headlines (F16 minus ``drops`` points) and T_total (median, min, max)."""
    f16 = {"vqav2": 50.0, "mme": 1000.0}
    gguf = {lv: {"vqav2": 50.0 - d, "mme": 1000.0 - 20 * d} for lv, d in drops.items()}
    latency = {f"cpu/{lv}": {"t_total_s": {"median": m, "min": lo, "max": hi}} for lv, (m, lo, hi) in totals.items()}
    sizes = {"F16": {"total": 14e6}, "Q8_0": {"total": 10e6}, "Q4_K_M": {"total": 8e6}}
    return {"benchmarks": {"gguf": {"F16": f16, **gguf}}, "latency": latency, "sizes": sizes}


def test_the_recommended_level_is_the_fastest_within_tolerance_then_the_smallest():
    from impkit.registry.recommend import recommend

    apart = {"F16": (1.0, 0.99, 1.01), "Q8_0": (0.8, 0.79, 0.81), "Q4_K_M": (0.6, 0.59, 0.61)}
    # Q4_K_M is fastest but loses 3 points (MME's 60 of 2000 count as 3 too): Q8_0 ships
    choice = recommend(_levels_record({"Q8_0": 1.0, "Q4_K_M": 3.0}, apart), 2.0)["cpu"]
    assert choice["level"] == "Q8_0" and choice["levels"]["Q4_K_M"]["within_tolerance"] is False
    assert choice["levels"]["Q4_K_M"]["worst_drop"] == 3.0 and choice["size_mb"] == 10.0
    # within tolerance, the fastest ships
    assert recommend(_levels_record({"Q8_0": 1.0, "Q4_K_M": 1.5}, apart), 2.0)["cpu"]["level"] == "Q4_K_M"
    # timings within each other's noise: the smallest of the tied levels ships
    noisy = {"F16": (0.60, 0.55, 0.70), "Q8_0": (0.58, 0.56, 0.66), "Q4_K_M": (0.61, 0.57, 0.65)}
    choice = recommend(_levels_record({"Q8_0": 0.0, "Q4_K_M": 0.5}, noisy), 2.0)["cpu"]
    assert choice["fastest"] == "Q8_0" and choice["level"] == "Q4_K_M"
    assert choice["tied_with_fastest"] == ["F16", "Q4_K_M", "Q8_0"]


def test_a_release_built_from_committed_sources_is_not_dirty_whatever_the_build_wrote(tmp_path):
    """The build writes dvc.lock, reports/, registry/ and dashboards/ as it runs; only a change to the
    sources (code, params, the pipeline) marks the record's revision dirty."""
    import subprocess

    from impkit.registry.record import git_revision

    def git(*args: str) -> None:
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True)

    for name in ("params.yaml", "dvc.lock", "reports/eval.json", "registry/nano/a.json", "dashboards/index.html"):
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_text("first\n")
    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "sources and a build")
    assert git_revision(tmp_path)["dirty"] is False
    for name in ("dvc.lock", "reports/eval.json", "registry/nano/a.json", "dashboards/index.html"):
        (tmp_path / name).write_text("rebuilt\n")
    (tmp_path / "registry" / "nano" / "b.json").write_text("a new release\n")
    assert git_revision(tmp_path)["dirty"] is False
    (tmp_path / "params.yaml").write_text("changed\n")
    assert git_revision(tmp_path)["dirty"] is True


def test_an_imported_release_is_recorded_with_where_it_came_from(tmp_path, capsys):
    """`impkit import` writes a release this workflow did not train: no train report, no data
    manifest. Its record keeps the import's provenance, its card says so, and the list marks it."""
    folder = _release(tmp_path / "releases" / "imp-v1.5-3b")
    meta = json.loads((folder / "impkit.json").read_text())
    meta["imported"] = {"folder": "/models/imp-v1.5-3b", "model_type": "imp", "layout": "imp-v1.5-phi2"}
    (folder / "impkit.json").write_text(json.dumps(meta))
    reports = {k: v for k, v in copy.deepcopy(REPORTS).items() if k != "train"}
    record = build_record(
        "imp-v1.5-3b",
        release_dir=folder,
        gguf_dir=tmp_path / "models" / "gguf" / "imp-v1.5-3b",
        reports={**reports, "latency": LATENCY},
        params={},
        data_manifest=None,
        backbones_manifest=None,
        paper_size={},
        tolerance_points=2.0,
    )
    assert record["heldout"] is None and record["headline"]["heldout"] is None and record["data"] == {}
    assert record["training"]["imported"]["folder"] == "/models/imp-v1.5-3b"
    assert record["headline"]["benchmarks"] == _record(tmp_path)["headline"]["benchmarks"]
    card = model_card(record)
    assert "imported from `/models/imp-v1.5-3b`" in card and "Held-out check" not in card
    registry = Registry(tmp_path / "registry")
    assert registry.add(record, card=card)
    main(["releases", "list", "--registry", str(tmp_path / "registry")])
    listed = capsys.readouterr().out
    assert f"| {record['id']} | imp-v1.5-3b | {record['created']} | imported |" in listed

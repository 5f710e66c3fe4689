"""End to end: `dvc repro` of the default pipeline on the micro profile, in a copy of the repository.

Later stages extend MICRO (and the assertions) as they join the pipeline, so a broken stage cannot land.
It runs as on the most common CPU, an AVX2-only one, whatever machine runs the tests: the libraries are
capped at AVX2 (AVX2_ONLY), so `precision: auto` must pick fp32 and that path cannot silently break.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from impkit.registry import Registry
from impkit.train.launch import usable_cores

REPO = Path(__file__).resolve().parents[1]
DVC = str(Path(sys.executable).with_name("dvc"))
# How an AVX2-only machine is approximated on one with AVX-512 or AMX (impkit/hardware.py reads the first)
AVX2_ONLY = {"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2", "MKL_ENABLE_INSTRUCTIONS": "AVX2"}

# The micro profile: every stage, tiny sizes.
MICRO = {
    "world.sizes": {
        "captions": 40,
        "vqa": 40,
        "existence": 16,
        "multiple_choice": 16,
        "text_reading": 16,
        "textcaps": 8,
        "charts": 16,
        "conversations": 12,
        "detailed": 10,
        "allava": 20,
        "text_only": 8,
        "lm_corpus": 100,
        "vision_pairs": 30,
        "heldout_scenes": 10,
        "heldout_charts": 4,
        "heldout_text": 4,
    },
    "data.mixtures.finetune.entries[-1].sample": 10,  # the ALLaVA-analog subsample
    "data.workers": 1,
    "backbones.vocab_size": 400,
    "backbones.vision.steps": 4,
    "backbones.vision.batch_size": 8,
    "backbones.llm.steps": 4,
    "backbones.llm.batch_size": 4,
    "train.presets": ["nano-2b", "nano-3b", "nano-4b", "nano-3b-196"],  # every family and both resolutions
    "train.heldout_questions": 8,
    "train.recipes.nano.stage1.global_batch_size": 8,
    "train.recipes.nano.stage1.per_device_batch_size": 4,
    "train.recipes.nano.stage2.global_batch_size": 8,
    "train.recipes.nano.stage2.per_device_batch_size": 4,
    "train.recipes.nano.stage2.epochs": 1,
    "train.recipes.nano-long.stage1.global_batch_size": 8,  # nano-3b's recipe: the same micro sizes
    "train.recipes.nano-long.stage1.per_device_batch_size": 4,
    "train.recipes.nano-long.stage2.global_batch_size": 8,
    "train.recipes.nano-long.stage2.per_device_batch_size": 4,
    "train.recipes.nano-long.stage2.epochs": 1,
    "eval.twins": {
        "vqav2": 10,
        "gqa": 10,
        "vizwiz": 8,
        "textvqa": 5,
        "sqa": 8,
        "pope_images": 2,
        "mme_images": 1,
        "mmbench": 4,
        "mmvet": 3,
    },
    "eval.batch_size": 8,
    "eval.max_new_tokens": 4,
    "parity.prompts": 6,
    "latency.runs": 1,
    "latency.warmup": 0,
    "latency.gen_tokens": 8,
    "latency.paper.profiles": {},  # multi-GB files; tests/test_paper_size.py covers them at reduced depth
}


def apply_overrides(params: dict, overrides: dict) -> dict:
    """Set dotted keys; ``name[i]`` indexes a list (``dvc exp run -S`` syntax)."""

    def step(node, part):
        if part.endswith("]"):
            key, index = part[:-1].split("[")
            return node[key], int(index)
        return node, part

    for dotted, value in overrides.items():
        node = params
        *parents, last = dotted.split(".")
        for part in parents:
            container, key = step(node, part)
            node = container[key]
        container, key = step(node, last)
        container[key] = value
    return params


def run(cmd: list[str], cwd: Path) -> subprocess.CompletedProcess:
    # stages run `python`: the interpreter running the tests, as `make` arranges for users
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"
    env = {**os.environ, "IMPKIT_PROGRESS": "0", "PATH": path, **AVX2_ONLY}
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, f"{' '.join(cmd)} failed:\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    return proc


@pytest.fixture(scope="module")
def micro_repo(tmp_path_factory) -> Path:
    """A git copy of the tracked files (and new, not ignored ones) with the micro params applied."""
    dst = tmp_path_factory.mktemp("repo")

    def git_files(*args: str) -> list[str]:
        out = subprocess.run(["git", "ls-files", *args], cwd=REPO, capture_output=True, text=True, check=True).stdout
        return [line for line in out.split("\n") if line]

    # tracked files plus new source files; never pipeline outputs a local run left in the work tree, nor
    # the releases the registry holds (the micro build records its own)
    outputs = ("data/", "models/", "releases/", "reports/", "registry/")
    listed = [f for f in git_files("--cached") if not f.startswith("registry/")] + [
        f for f in git_files("--others", "--exclude-standard") if not f.startswith(outputs)
    ]
    for rel in filter(None, listed):
        src = REPO / rel
        if src.is_file():
            (dst / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dst / rel)
    params = apply_overrides(yaml.safe_load((dst / "params.yaml").read_text()), MICRO)
    (dst / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    (dst / "dvc.lock").unlink(missing_ok=True)
    (dst / "reports" / "timings.json").unlink(missing_ok=True)  # the last build's record, not a source
    for cmd in (
        ["git", "init", "-q"],
        ["git", "add", "-A"],
        ["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "micro"],
    ):
        run(cmd, dst)
    return dst


@pytest.mark.e2e
def test_dvc_repro_builds_the_default_pipeline_and_reruns_as_a_no_op(micro_repo, tmp_path):
    run([DVC, "repro"], micro_repo)
    assembled = micro_repo / "data" / "assembled"
    manifest = json.loads((assembled / "manifest.json").read_text())
    finetune = manifest["mixtures"]["finetune"]
    assert finetune["gate"] == "passed" and manifest["mixtures"]["pretrain"]["gate"] == "passed"
    assert finetune["in"] == finetune["kept"] + finetune["quarantined"] + finetune["dropped"]
    by_source = {s["source"]: s for s in finetune["sources"]}
    assert by_source["syn_textcaps"]["kept"] == 0  # the paper's TextCaps removal
    assert by_source["syn_allava"]["kept"] == 10  # the seeded subsample
    records = [json.loads(line) for line in (assembled / "finetune.jsonl").read_text().splitlines()]
    assert len(records) == finetune["kept"] > 0
    assert all((assembled / "images" / r["image"]).is_file() for r in records if "image" in r)
    assert (micro_repo / "reports" / "data_quality" / "index.html").is_file()
    assert json.loads((micro_repo / "reports" / "data_metrics.json").read_text())["finetune"]["records"] == len(records)

    # the tower and each family's LM trained side by side, one process per core (train.cpu_processes)
    backbones = json.loads((micro_repo / "models" / "backbones" / "backbones.json").read_text())
    assert backbones["processes"] == min(2, usable_cores())
    assert {"vision", "llm-phi2"} <= set(backbones)
    assert backbones["precision"] == {"vision": "fp32", "llm": "fp32"}  # auto on an AVX2-only CPU
    # the folder holds what the inputs decide; its timings are a report of their own
    assert "wall_s" not in backbones["vision"] and "seconds" not in backbones
    timings = json.loads((micro_repo / "reports" / "backbones_timings.json").read_text())
    assert timings["vision"]["wall_s"] > 0 and timings["llm-phi2"]["tokens_per_s"] > 0

    for preset in MICRO["train.presets"]:
        release = micro_repo / "releases" / preset
        meta = json.loads((release / "impkit.json").read_text())
        assert meta["stage"] == "tune" and meta["parameters"]["lora"]["trainable"] > 0
        assert meta["parameters"]["vision_tower"]["trainable"] == 0
        report = json.loads((micro_repo / "reports" / "train" / f"{preset}.json").read_text())
        assert report["heldout"]["release"]["with_image"]["n"] == 8
        # trained as train.cpu_processes (2) data-parallel processes, one per core when fewer
        assert report["train"]["processes"] == min(2, usable_cores())
        assert report["train"]["precision"] == meta["train"]["precision"] == "fp32"
        assert (micro_repo / "reports" / "train" / f"tune-{preset}" / "plots" / "metrics").is_dir()

        # every release on the ten twins: nine scored beside their blind baseline, MM-Vet without a judge
        evaluated = micro_repo / "reports" / "eval" / preset
        metrics = json.loads((evaluated / "metrics.json").read_text())
        assert metrics["torch"].pop("mmvet") == "not scored: no judge"
        assert len(metrics["torch"]) == 9 and all(
            isinstance(row["blind"], float) and row["n"] > 0 for row in metrics["torch"].values()
        )
        assert (evaluated / "torch" / "pope" / "answers" / "random.jsonl").is_file()
        assert f"| {preset} |" in (evaluated / "table3.md").read_text()

        # and as GGUF files for llama.cpp, quantized: smaller at every step down
        sizes = json.loads((micro_repo / "reports" / "export" / f"{preset}.json").read_text())["bytes"]
        assert sizes["Q4_K_M"]["llm"] < sizes["Q8_0"]["llm"] < sizes["F16"]["llm"]
        assert {p.name for p in (micro_repo / "models" / "gguf" / preset).iterdir()} == {
            "llm-F16.gguf",
            "llm-Q8_0.gguf",
            "llm-Q4_K_M.gguf",
            "mmproj-F16.gguf",
        }

        # the F16 file computes what PyTorch computes, every level is scored, latency is measured
        parity = json.loads((micro_repo / "reports" / "parity" / f"{preset}.json").read_text())
        assert parity["passed"] and parity["prompts"] == 6 and parity["top1_agreement"] >= 0.99
        levels = json.loads((micro_repo / "reports" / "eval-gguf" / f"{preset}.json").read_text())["levels"]
        assert sorted(levels) == ["F16", "Q4_K_M", "Q8_0"]
        assert levels["F16"]["answer_agreement"]["all"] >= 0.9 and "vs_f16" in levels["Q8_0"]
        latency = json.loads((micro_repo / "reports" / "latency" / f"{preset}.json").read_text())
        measured = json.dumps(latency["metrics"])
        assert all(name in measured for name in ("cpu-llamacpp", "cpu-torch-fp32", "Q4_K_M"))

    # every stage recorded its time, machine and precision; `impkit timings` prints the table
    stages = json.loads((micro_repo / "reports" / "timings.json").read_text())["stages"]
    listed = run([DVC, "stage", "list", "--name-only"], micro_repo).stdout.split()
    assert sorted(stages) == sorted(listed)
    assert all(entry["wall_s"] > 0 and entry["machine"]["native_bf16"] is False for entry in stages.values())
    assert stages["backbones"]["precision"] == stages["tune@nano-3b"]["precision"] == "fp32"
    table = run([str(Path(sys.executable).with_name("impkit")), "timings"], micro_repo).stdout
    assert "| tune@nano-3b |" in table and "**whole build**" in table and "ONEDNN_MAX_CPU_ISA=AVX2" in table
    # `dvc metrics show` prints the data's record counts and one small headline file per release
    shown = json.loads(run([DVC, "metrics", "show", "--json"], micro_repo).stdout)
    files = {path for revision in shown.values() for path in revision["data"]}
    assert files == {"reports/data_metrics.json"} | {f"reports/headline/{p}.json" for p in MICRO["train.presets"]}
    (workspace,) = shown.values()
    headline = workspace["data"][f"reports/headline/{MICRO['train.presets'][0]}.json"]["data"]
    assert headline["parity"]["passed"] and set(headline["gguf"]["size_mb"]) == {"F16", "Q8_0", "Q4_K_M"}

    status = run([DVC, "status"], micro_repo)
    assert "up to date" in status.stdout.lower(), status.stdout
    again = run([DVC, "repro"], micro_repo)
    assert "didn't change, skipping" in again.stdout + again.stderr
    assert "Running stage" not in again.stdout + again.stderr

    # the team shares the build through its DVC remote: a fresh clone of the commit pulls it and its
    # `dvc repro` runs nothing (no per-machine folder, no timing, is a pipeline output)
    remote = tmp_path / "team-remote"
    run([DVC, "remote", "modify", "--local", "team", "url", str(remote)], micro_repo)
    run([DVC, "push"], micro_repo)
    run(["git", "add", "-A"], micro_repo)
    run(["git", "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "micro build"], micro_repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(micro_repo), str(clone)], tmp_path)
    run([DVC, "remote", "modify", "--local", "team", "url", str(remote)], clone)
    run([DVC, "pull"], clone)
    assert "up to date" in run([DVC, "status"], clone).stdout.lower()
    pulled = run([DVC, "repro"], clone)
    assert "Running stage" not in pulled.stdout + pulled.stderr, pulled.stdout[-3000:]
    assert (clone / "models" / "gguf" / MICRO["train.presets"][0] / "llm-Q4_K_M.gguf").is_file()

    # every built preset is a release in the registry, with its model card; the no-op rebuild added none
    registry = Registry(micro_repo / "registry")
    first = {r["preset"]: r["id"] for r in registry.records()}
    assert sorted(first) == sorted(MICRO["train.presets"]) and len(registry.records()) == len(first)
    assert all(registry.record_path(r).with_suffix(".md").is_file() for r in registry.records())

    # a changed param adds a release for the models it changes and keeps the earlier ones
    params = yaml.safe_load((micro_repo / "params.yaml").read_text())
    params["train"]["recipes"]["nano-long"]["stage2"]["epochs"] = 2  # nano-3b and nano-3b-196's recipe
    (micro_repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run([DVC, "repro"], micro_repo)
    by_preset = {p: [r["id"] for r in registry.records(p)] for p in MICRO["train.presets"]}
    assert by_preset["nano-3b"][0] == first["nano-3b"] and len(by_preset["nano-3b"]) == 2
    assert by_preset["nano-2b"] == [first["nano-2b"]]  # its model did not change: no new release
    assert registry.current()["nano-3b"] == by_preset["nano-3b"][1]

"""The per-release headline: the few figures `dvc metrics show` prints, drawn from the detailed reports."""

from __future__ import annotations

import copy
import json
import subprocess
import sys
from pathlib import Path

import pytest

from impkit.headline import ReportError, headline

REPORTS = {
    "train": {
        "heldout": {
            "release": {
                "with_image": {"accuracy": 0.49, "n": 200},
                "blank_image": {"accuracy": 0.28, "n": 200},
                "shuffled_image": {"accuracy": 0.35, "n": 200},
            }
        }
    },
    "eval": {
        "torch": {
            "vqav2": {"soft_accuracy": 53.25, "n": 200, "blind": 42.1},
            "mme": {"perception": 435.71, "n": 196, "blind": 464.29},
            "mmvet": "not scored: no judge",
        },
        "majority": {"vqav2": {"soft_accuracy": 51.15, "n": 200}},
    },
    "eval_gguf": {
        "levels": {
            "F16": {"answer_agreement": {"all": 1.0, "vqav2": 1.0}},
            "Q4_K_M": {"answer_agreement": {"all": 0.9487, "vqav2": 0.96}},
        }
    },
    "export": {
        "bytes": {
            "F16": {"llm": 8236064, "mmproj": 5437120, "total": 13673184},
            "Q4_K_M": {"llm": 2682464, "mmproj": 5437120, "total": 8119584},
        }
    },
    "parity": {"passed": True, "top1_agreement": 1.0, "max_rel_error": 0.0015},
    "latency": {
        "metrics": {
            "cpu-llamacpp/F16": {"t_ve_s": 0.0027, "t_total_s": 0.0567},
            "cpu-torch-fp32/torch": {"t_ve_s": 0.0069, "t_total_s": 0.2815},
        }
    },
}


def test_the_headline_keeps_one_figure_per_benchmark_level_and_profile():
    figures = headline(REPORTS)
    # the image's lead is over the better of the two image-less controls (another image here)
    assert figures["heldout"] == {"with_image": 49.0, "lead": 14.0}
    # the benchmark's one headline metric, not its blind baseline or count; MM-Vet without a judge is left out
    assert figures["benchmarks"] == {"vqav2": 53.25, "mme": 435.71}
    assert figures["gguf"] == {
        "answer_agreement": {"F16": 1.0, "Q4_K_M": 0.9487},
        "size_mb": {"F16": 13.67, "Q4_K_M": 8.12},
    }
    assert figures["parity"] == {"passed": True, "top1_agreement": 1.0}
    assert figures["t_total_s"] == {"cpu-llamacpp/F16": 0.0567, "cpu-torch-fp32/torch": 0.2815}


def test_a_report_without_a_figure_is_named_in_one_line():
    reports = copy.deepcopy(REPORTS)
    del reports["parity"]["top1_agreement"]
    with pytest.raises(ReportError, match=r"reports/parity/x.json: no 'top1_agreement'"):
        headline(reports, names={"parity": "reports/parity/x.json"})
    reports = copy.deepcopy(REPORTS)
    reports["eval"]["torch"]["gqa"] = {"accuracy": 38.0, "other": 1.0, "n": 155}
    with pytest.raises(ReportError, match="'gqa' has no single headline"):
        headline(reports)


def test_the_stage_writes_the_file_dvc_metrics_show_prints(tmp_path: Path):
    paths = {
        "train": "reports/train/p.json",
        "eval": "reports/eval/p/metrics.json",
        "eval_gguf": "reports/eval-gguf/p.json",
        "export": "reports/export/p.json",
        "parity": "reports/parity/p.json",
        "latency": "reports/latency/p.json",
    }
    for key, rel in paths.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(json.dumps(REPORTS[key]))
    root = Path(__file__).resolve().parents[1]
    env = {"PYTHONPATH": str(root), "PATH": str(Path(sys.executable).parent)}
    done = subprocess.run(
        [sys.executable, "-m", "stages.headline", "p"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    assert json.loads((tmp_path / "reports/headline/p.json").read_text()) == headline(REPORTS)
    # a missing report ends in one line naming it, not a traceback
    (tmp_path / paths["parity"]).unlink()
    done = subprocess.run(
        [sys.executable, "-m", "stages.headline", "p"], cwd=tmp_path, env=env, capture_output=True, text=True
    )
    assert done.returncode == 1 and "reports/parity/p.json" in done.stderr and "Traceback" not in done.stderr

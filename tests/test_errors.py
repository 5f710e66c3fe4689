"""Errors the project raises on purpose share one base and end, at every entry point, in one line naming
what is wrong, before any model loads."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import yaml

from impkit.config import ConfigError, PresetConfig, from_dict
from impkit.data.llava_format import SourceError
from impkit.data.quality import QualityGateError
from impkit.data.templates import TemplateError
from impkit.errors import ImpkitError
from impkit.eval.evaluate import EvaluationError
from impkit.eval.scoring.inputs import ScoringError
from impkit.export.names import ExportError
from impkit.llamacpp import GGUFRunError
from impkit.release import ReleaseError
from impkit.train.starting_model import WeightsNotFound, starting_model

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "error",
    [
        ConfigError,
        SourceError,
        QualityGateError,
        TemplateError,
        ScoringError,
        ExportError,
        GGUFRunError,
        ReleaseError,
        EvaluationError,
        WeightsNotFound,
    ],
)
def test_every_deliberate_error_is_an_impkit_error(error):
    assert issubclass(error, ImpkitError)


def _one_line_exit(caplog, entry, *args) -> str:
    """Run an entry point; it must exit 1 after logging exactly one error line, with no traceback."""
    caplog.clear()
    with caplog.at_level(logging.ERROR), pytest.raises(SystemExit) as exit_info:
        entry(*args)
    assert exit_info.value.code == 1
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert len(errors) == 1 and errors[0].exc_info is None
    message = errors[0].getMessage()
    assert "\n" not in message and "Traceback" not in message
    return message


def test_evaluate_names_an_unknown_benchmark_before_loading_anything(caplog, tmp_path):
    from impkit.cli import main

    # the folder is no release either: the benchmark names are checked first, so no model is loaded
    message = _one_line_exit(
        caplog,
        main,
        [
            "evaluate",
            str(tmp_path),
            "--benchmarks",
            "vqav2",
            "foo",
            "--params",
            str(REPO / "params.yaml"),
            "--out",
            str(tmp_path / "out"),
        ],
    )
    assert message.startswith("unknown benchmark(s) ['foo']; known: ['vqav2'")
    message = _one_line_exit(
        caplog, main, ["evaluate", str(tmp_path), "--params", str(REPO / "params.yaml"), "--out", str(tmp_path / "out")]
    )
    assert message == f"{tmp_path}/impkit.json not found: {tmp_path} is not a release folder"


@pytest.fixture
def workspace(tmp_path, monkeypatch):
    """An empty workspace with the project's params.yaml, as a fresh clone before `dvc repro`."""
    (tmp_path / "params.yaml").write_text((REPO / "params.yaml").read_text())
    monkeypatch.chdir(tmp_path)
    return tmp_path


def _train(monkeypatch, *argv: str) -> None:
    """`impkit train ...`, the same step `python -m stages.train ...` runs for dvc repro."""
    from impkit.cli import main

    main(["train", *argv])


def test_training_names_its_missing_input_before_starting_a_process(workspace, monkeypatch, caplog):
    monkeypatch.syspath_prepend(str(REPO))
    message = _one_line_exit(caplog, _train, monkeypatch, "align", "nano-2b")
    assert message == "data/assembled/pretrain.jsonl not found: run the assemble stage first (dvc repro assemble)"
    (workspace / "data" / "assembled").mkdir(parents=True)
    for name in ("pretrain.jsonl", "finetune.jsonl"):
        (workspace / "data" / "assembled" / name).write_text("")
    message = _one_line_exit(caplog, _train, monkeypatch, "align", "nano-2b")
    assert message.startswith("models/backbones/tokenizer.json not found: ") and "dvc repro backbones" in message
    message = _one_line_exit(caplog, _train, monkeypatch, "tune", "nano-2b")
    assert message.startswith("models/aligned/nano-2b not found: ") and "align@nano-2b" in message
    message = _one_line_exit(caplog, _train, monkeypatch, "tune", "nano-9b")
    assert message.startswith("unknown preset 'nano-9b'; known presets: [")


def test_a_real_preset_whose_weights_are_missing_names_its_source(tmp_path, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    params = yaml.safe_load((REPO / "params.yaml").read_text())
    spec = params["model"]["presets"]["imp-3b"]
    missing = str(tmp_path / "phi-2")
    preset = from_dict(PresetConfig, {**spec, "llm": {**spec["llm"], "source": missing}})
    pattern = rf"preset imp-3b: model\.presets\.imp-3b\.llm\.source '{missing}'( at revision \w+)? cannot be loaded: "
    with pytest.raises(WeightsNotFound, match=pattern) as info:
        starting_model(preset, name="imp-3b")
    assert "\n" not in str(info.value)

"""Training as several data-parallel CPU processes (``train.cpu_processes``, impkit.train.launch)."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from impkit.config import ConfigError
from impkit.train.launch import cpu_processes_to_start, deepspeed_config, launch_data_parallel, processes_to_start

TESTS = Path(__file__).parent
WORKER = "cpu_data_parallel_worker"

pytestmark = pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU path; GPU machines use accelerate launch")


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    from test_train_dataset import write_records

    return write_records(tmp_path_factory.mktemp("train_data"))


@pytest.fixture
def in_tests_folder(monkeypatch):
    """The launched processes run ``python -m`` the worker from the current folder, one thread each."""
    monkeypatch.chdir(TESTS)
    monkeypatch.setenv("OMP_NUM_THREADS", "1")
    monkeypatch.setenv("IMPKIT_PROGRESS", "0")
    for name in ("WORLD_SIZE", "RANK", "LOCAL_RANK"):
        monkeypatch.delenv(name, raising=False)


def _single_process(data: Path, out: Path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "IMPKIT_PROGRESS": "0"}
    done = subprocess.run(
        [sys.executable, "-m", WORKER, str(data), str(out)],
        cwd=TESTS,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr[-3000:]


def test_two_processes_train_what_one_process_trains(data, tmp_path, in_tests_folder):
    """Same global batches, losses averaged over all processes' tokens: the same run up to float order."""
    one, two = tmp_path / "one", tmp_path / "two"
    _single_process(data, one)
    assert launch_data_parallel(2, WORKER, [str(data), str(two)]) == 0
    run_one, run_two = (json.loads((d / "run.json").read_text()) for d in (one, two))
    assert (run_one["world_size"], run_two["world_size"]) == (1, 2)
    assert run_one["steps"] == run_two["steps"] == 2 * -(-run_one["records"] // 4)  # global batch 4, 2 epochs
    assert run_one["losses"][-1] < run_one["losses"][0]  # it trained
    assert run_two["losses"] == pytest.approx(run_one["losses"], rel=1e-4)
    weights_one, weights_two = (torch.load(d / "trained.pt") for d in (one, two))
    assert weights_one.keys() == weights_two.keys() and weights_one
    for name, weight in weights_one.items():
        assert torch.allclose(weights_two[name], weight, rtol=1e-4, atol=1e-6), name


def test_zero3_weights_are_gathered_before_the_merged_model_is_written(data, tmp_path, in_tests_folder, monkeypatch):
    """DeepSpeed ZeRO-3 (Imp's stage 2) on two CPU processes over gloo: after training every process
    holds only shards, so the merge and save happen inside ``gathered_weights``; the run trains what
    one process without DeepSpeed trains and the written model is whole."""
    pytest.importorskip("deepspeed", reason="DeepSpeed is in the dev and gpu extras")
    from transformers import AutoModelForImageTextToText

    monkeypatch.setenv("DS_ACCELERATOR", "cpu")  # DeepSpeed's CPU accelerator: gloo between processes
    one, zero3 = tmp_path / "one", tmp_path / "zero3"
    _single_process(data, one)
    assert launch_data_parallel(2, WORKER, [str(data), str(zero3), "zero3"]) == 0
    run_one, run_zero3 = (json.loads((d / "run.json").read_text()) for d in (one, zero3))
    assert run_one["empty_after_training"] == [] and run_zero3["world_size"] == 2
    assert run_zero3["empty_after_training"]  # sharded: unsaved, these would be written empty
    assert run_zero3["steps"] == run_one["steps"]
    assert run_zero3["losses"] == pytest.approx(run_one["losses"], rel=1e-3)
    # DeepSpeed runs its own optimizer step (its own gradient reduction and clipping): the weights agree
    # to within 1e-3 (measured: 3e-4), a quarter of what the projector moves in the run's 4 steps at its
    # learning rate of 1e-3 and a tenth of one LoRA step (1e-2); untrained or unsaved weights are far off
    close = {"rtol": 0, "atol": 1e-3}
    weights_one, weights_zero3 = (torch.load(d / "trained.pt") for d in (one, zero3))
    assert weights_one.keys() == weights_zero3.keys() and weights_one
    for name, weight in weights_one.items():
        assert torch.allclose(weights_zero3[name], weight, **close), name
    merged_one, merged_zero3 = (AutoModelForImageTextToText.from_pretrained(d / "merged") for d in (one, zero3))
    state_one = merged_one.state_dict()
    for name, weight in merged_zero3.state_dict().items():
        assert weight.shape == state_one[name].shape and weight.numel() > 0, name
        assert torch.allclose(weight, state_one[name], **close), name


def test_a_failing_process_gives_its_exit_code_and_a_plain_message(data, tmp_path, in_tests_folder, capfd):
    assert launch_data_parallel(2, WORKER, [str(data), str(tmp_path), "fail"]) == 1
    err = capfd.readouterr().err
    assert "a bad setting, said in one line" in err
    assert "Traceback" not in err


def test_the_number_of_processes_follows_the_machine(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("impkit.train.launch.usable_cores", lambda: 2)
    assert cpu_processes_to_start(2) == 2
    assert cpu_processes_to_start(4) == 2  # at most one per core
    assert cpu_processes_to_start(1) == 1
    monkeypatch.setenv("WORLD_SIZE", "2")  # already a launched process: train here
    assert cpu_processes_to_start(2) == 1
    assert processes_to_start("auto", 2) == 1


def test_the_launcher_starts_one_process_per_gpu_with_the_recipes_deepspeed_config(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr("impkit.train.launch.usable_cores", lambda: 2)
    assert processes_to_start("auto", 2) == 2 and deepspeed_config("configs/deepspeed/zero3.json") is None
    assert processes_to_start("none", 2) == 1
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert processes_to_start("auto", 2) == 4 and processes_to_start("none", 2) == 1
    monkeypatch.chdir(TESTS.parent)
    if importlib.util.find_spec("deepspeed"):
        assert deepspeed_config("configs/deepspeed/zero3.json") == "configs/deepspeed/zero3.json"
        with pytest.raises(ConfigError, match="not found"):
            deepspeed_config("configs/deepspeed/zero9.json")
    assert deepspeed_config(None) is None


def test_a_global_batch_the_processes_cannot_share_is_a_config_error(tmp_path):
    from sections import section_with

    from impkit.config import ConfigError, StageTraining
    from impkit.train.trainer import training_arguments

    cfg = section_with(
        StageTraining,
        "train.recipes.nano.stage1",
        learning_rate=1e-3,
        projector_lr=None,
        lr_scheduler="cosine",
        warmup_ratio=0.0,
        weight_decay=0.0,
        global_batch_size=8,
        per_device_batch_size=8,
        epochs=1,
        max_length=64,
        checkpoint_steps=10,
        gradient_checkpointing=False,
        precision="fp32",
        logging_steps=1,
    )
    with pytest.raises(ConfigError, match="train.cpu_processes"):
        training_arguments(cfg, tmp_path, seed=0, world_size=2)

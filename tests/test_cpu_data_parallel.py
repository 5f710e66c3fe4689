"""Training as several data-parallel CPU processes (``train.cpu_processes``, impkit.train.launch)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from impkit.train.launch import cpu_processes_to_start, launch_data_parallel

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

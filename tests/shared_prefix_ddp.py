"""Run by tests/test_train_dataset.py under `accelerate launch` with two processes: one stage-2 run
of a tiny model with and one without the shared prompt prefix; prints each run's logged losses as
JSON from the main process."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_train_dataset as fixtures  # noqa: E402  (the tiny tokenizer, records and model of the tests)
from sections import section_with  # noqa: E402

from impkit.config import StageTraining  # noqa: E402
from impkit.train.dataset import DataCollator  # noqa: E402
from impkit.train.trainer import fit_stage  # noqa: E402


def main(data: Path, out: Path) -> None:
    tokenizer = fixtures.family_tokenizer(fixtures.train_bpe(fixtures.CORPUS * 20, vocab_size=300), "qwen2")
    dataset = torch.utils.data.Subset(fixtures._dataset(data, tokenizer), [0, 2, 4, 1, 3, 5, 6, 7])
    losses = {}
    for share_prefix in (False, True):
        cfg = section_with(
            StageTraining,
            "train.recipes.nano.stage1",
            learning_rate=1e-2,
            projector_lr=None,
            lr_scheduler="constant",
            warmup_ratio=0.0,
            weight_decay=0.0,
            global_batch_size=4,
            per_device_batch_size=2,
            epochs=2,
            max_length=512,
            checkpoint_steps=100,
            gradient_checkpointing=False,
            precision="fp32",
            logging_steps=1,
            share_prefix=share_prefix,
        )
        result = fit_stage(
            fixtures._lora_llava(tokenizer),
            dataset,
            DataCollator(tokenizer.pad_token_id),
            cfg,
            checkpoint_dir=out / f"checkpoints-{share_prefix}",
            fingerprint={"share": share_prefix},
            seed=0,
            label=f"share_prefix={share_prefix}",
        )
        losses[str(share_prefix)] = [entry["loss"] for entry in result.log_history if "loss" in entry]
    if int(os.environ.get("RANK", "0")) == 0:
        (out / "losses.json").write_text(json.dumps({"world_size": int(os.environ["WORLD_SIZE"]), **losses}))


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))

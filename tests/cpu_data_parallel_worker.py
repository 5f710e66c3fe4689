"""Run by tests/test_cpu_data_parallel.py, alone or as several processes through
``impkit.train.launch.launch_data_parallel``: one stage-2 run of a tiny LoRA model on the grouped
batches the stages use; the first process writes the logged losses and the trained weights.

    python -m cpu_data_parallel_worker <data folder> <out folder> [ok | fail | zero3]

``zero3`` trains under DeepSpeed ZeRO-3 (every weight sharded across the processes) and gathers the
weights as the training stages do before the first process writes them and the merged model.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
import test_train_dataset as fixtures  # noqa: E402  (the tiny tokenizer, records and model of the tests)
from sections import section_with  # noqa: E402

from impkit.config import ConfigError, StageTraining  # noqa: E402
from impkit.stage import run_stage as run_entry_point  # noqa: E402
from impkit.train.dataset import DataCollator  # noqa: E402
from impkit.train.launch import is_main_process  # noqa: E402
from impkit.train.parts import gathered_weights, merged  # noqa: E402
from impkit.train.sampler import ModalityLengthGroupedSampler  # noqa: E402
from impkit.train.trainer import fit_stage  # noqa: E402

# ZeRO-3 as configs/deepspeed/zero3.json shards it, with every weight of the tiny model sharded (the
# default keeps weights under 100k elements whole in every process)
ZERO3 = {
    "zero_optimization": {"stage": 3, "stage3_param_persistence_threshold": 0},
    "train_micro_batch_size_per_gpu": "auto",
    "train_batch_size": "auto",
    "gradient_accumulation_steps": "auto",
    "gradient_clipping": "auto",
}


def main() -> None:
    data, out, mode = Path(sys.argv[1]), Path(sys.argv[2]), sys.argv[3] if len(sys.argv) > 3 else "ok"
    if mode == "fail":
        raise ConfigError("a bad setting, said in one line")
    torch.manual_seed(0)
    tokenizer = fixtures.family_tokenizer(fixtures.train_bpe(fixtures.CORPUS * 20, vocab_size=300), "qwen2")
    dataset = fixtures._dataset(data, tokenizer)
    cfg = section_with(
        StageTraining,
        "train.recipes.nano.stage1",
        learning_rate=1e-2,
        projector_lr=1e-3,
        lr_scheduler="cosine",
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
        share_prefix=mode != "zero3",  # the same loss and gradients either way
    )
    model = fixtures._lora_llava(tokenizer)
    result = fit_stage(
        model,
        dataset,
        DataCollator(tokenizer.pad_token_id),
        cfg,
        checkpoint_dir=out / "checkpoints",
        fingerprint={"test": 1},
        seed=0,
        label="worker",
        sampler_factory=lambda b, s: ModalityLengthGroupedSampler.for_dataset(dataset, b, seed=s),
        deepspeed=ZERO3 if mode == "zero3" else None,
    )
    # under ZeRO-3 each process now holds a shard of every weight: an empty tensor
    empty = sorted(name for name, p in model.named_parameters() if p.numel() == 0)
    with gathered_weights(model):
        if is_main_process():
            trained = {name: p.detach().clone() for name, p in model.named_parameters() if p.requires_grad}
            torch.save(trained, out / "trained.pt")
            merged(model).save_pretrained(out / "merged")
            losses = [entry["loss"] for entry in result.log_history if "loss" in entry]
            (out / "run.json").write_text(
                json.dumps(
                    {
                        "world_size": int(os.environ.get("WORLD_SIZE", "1")),
                        "losses": losses,
                        "steps": result.steps,
                        "records": len(dataset),
                        "empty_after_training": empty,
                    }
                )
            )


if __name__ == "__main__":
    run_entry_point(main)

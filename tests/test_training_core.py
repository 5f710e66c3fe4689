"""Which parameters train in each stage, Imp's two learning rates, resume after a kill, and the
release round trip (save -> from_pretrained gives identical logits)."""

from __future__ import annotations

import pytest
import torch
from sections import section_with
from transformers import AutoProcessor, LlavaForConditionalGeneration, TrainerCallback

from impkit.config import LoraTraining, PresetConfig, StageTraining, from_dict
from impkit.model.presets import build_model, llava_config, num_image_tokens
from impkit.model.tokenizer import IMAGE_TOKEN, family_tokenizer, train_bpe
from impkit.release import write_release
from impkit.train.parts import count_parameters, merged, prepare_stage1, prepare_stage2
from impkit.train.trainer import ImpTrainer, StopAfter, fit_stage, training_arguments

TINY = {
    "family": "phi2",
    "template": "phi2",
    "image_aspect": "pad",
    "offline": True,
    "train": "nano",
    "vision": {
        "arch": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "image_size": 32,
            "patch_size": 8,
        }
    },
    "llm": {
        "arch": {
            "hidden_size": 64,
            "intermediate_size": 128,
            "num_hidden_layers": 2,
            "num_attention_heads": 2,
            "max_position_embeddings": 128,
            "partial_rotary_factor": 0.5,
        }
    },
}


def stage(**overrides) -> StageTraining:
    base = dict(
        learning_rate=1e-2,
        projector_lr=None,
        lr_scheduler="cosine",
        warmup_ratio=0.0,
        weight_decay=0.0,
        global_batch_size=4,
        per_device_batch_size=2,
        epochs=1,
        max_length=64,
        checkpoint_steps=2,
        gradient_checkpointing=False,
        precision="fp32",
        logging_steps=1,
    )
    return section_with(StageTraining, "train.recipes.nano.stage1", **{**base, **overrides})


@pytest.fixture(scope="module")
def setup():
    preset = from_dict(PresetConfig, TINY)
    tok = family_tokenizer(train_bpe(["a red circle", "two blue squares", "the word lamp"] * 10, 300), "phi2")
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = llava_config(
        preset, image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN), vocab_size=len(tok), special_ids=ids
    )
    return preset, tok, config


class ToyData(torch.utils.data.Dataset):
    """Image + a few text tokens; the answer token depends on the image's brightness."""

    def __init__(self, config, n=24, seed=0):
        g = torch.Generator().manual_seed(seed)
        self.items = []
        n_img = (32 // 8) ** 2
        for i in range(n):
            bright = i % 2
            pixels = torch.full((3, 32, 32), 0.8 if bright else -0.8) + 0.05 * torch.randn(3, 32, 32, generator=g)
            ids = [config.image_token_index] * n_img + [200, 201, 210 + bright]  # ids clear of the specials
            labels = [-100] * (n_img + 2) + [210 + bright]
            self.items.append((torch.tensor(ids), torch.tensor(labels), pixels))

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]


def collate(batch):
    ids, labels, pixels = zip(*batch, strict=True)
    return {
        "input_ids": torch.stack(ids),
        "labels": torch.stack(labels),
        "attention_mask": torch.ones(len(ids), len(ids[0]), dtype=torch.long),
        "pixel_values": torch.stack(pixels),
    }


def test_stage1_trains_only_the_projector(setup):
    _, _, config = setup
    counts = count_parameters(prepare_stage1(build_model(config)))
    assert counts["projector"]["frozen"] == 0 and counts["projector"]["trainable"] > 0
    assert counts["vision_tower"]["trainable"] == 0 and counts["llm"]["trainable"] == 0
    proj = 64 * 64 + 64 + 64 * 64 + 64  # Linear(1152->d)+Linear(d->d) at the tiny widths
    assert counts["projector"]["trainable"] == proj


def test_stage2_lora_targets_every_llm_linear_and_lm_head_but_not_the_vision_tower(setup):
    preset, _, config = setup
    model = prepare_stage2(build_model(config), preset.family, LoraTraining(True, r=4, alpha=8, dropout=0.0))
    lora_modules = {name.rsplit(".lora_A", 1)[0] for name, _ in model.named_parameters() if ".lora_A" in name}
    assert not any("vision_tower" in name for name in lora_modules)
    suffixes = {name.rsplit(".", 1)[-1] for name in lora_modules}
    assert suffixes == {"q_proj", "k_proj", "v_proj", "dense", "fc1", "fc2", "lm_head"}
    assert len(lora_modules) == 6 * 2 + 1  # six linears per layer x 2 layers + lm_head
    counts = count_parameters(model)
    assert counts["vision_tower"]["trainable"] == 0 and counts["llm"]["trainable"] == 0
    assert counts["lora"]["trainable"] > 0 and counts["projector"]["trainable"] > 0  # projector keeps training

    full = count_parameters(prepare_stage2(build_model(config), preset.family, LoraTraining(False, 4, 8, 0.0)))
    assert full["llm"]["frozen"] == 0 and full["vision_tower"]["trainable"] == 0 and "lora" not in full


def test_projector_gets_its_own_learning_rate(setup, tmp_path):
    preset, _, config = setup
    model = prepare_stage2(build_model(config), preset.family, LoraTraining(True, 4, 8, 0.0))
    args = training_arguments(stage(learning_rate=2e-4, projector_lr=2e-5), tmp_path, seed=0)
    trainer = ImpTrainer(
        model=model, args=args, train_dataset=ToyData(config), data_collator=collate, projector_lr=2e-5
    )
    optimizer = trainer.create_optimizer()
    by_lr = {}
    names = {id(p): n for n, p in model.named_parameters()}
    for group in optimizer.param_groups:
        for p in group["params"]:
            by_lr.setdefault(group["lr"], set()).add("projector" if "multi_modal_projector" in names[id(p)] else "lora")
    assert by_lr == {2e-5: {"projector"}, 2e-4: {"lora"}}


class CurveLogger(TrainerCallback):
    """Records what a curve logger (dvclive) is handed, as the stage's plots would show it."""

    def __init__(self):
        self.logged: list[dict] = []

    def on_log(self, args, state, control, logs=None, **kwargs):
        self.logged.append(dict(logs))


def losses(logger: CurveLogger) -> list[float]:
    return [entry["loss"] for entry in logger.logged if "loss" in entry]


def test_a_killed_stage_resumes_from_its_last_checkpoint_and_ends_where_an_unbroken_run_ends(setup, tmp_path):
    _, _, config = setup
    data, cfg, fp = ToyData(config), stage(epochs=1), {"run": "toy"}  # 24 samples / 4 = 6 steps, checkpoint every 2

    straight, unbroken = prepare_stage1(build_model(config)), CurveLogger()
    result = fit_stage(
        straight,
        data,
        collate,
        cfg,
        checkpoint_dir=tmp_path / "a",
        fingerprint=fp,
        seed=0,
        label="toy",
        callbacks=[unbroken],
    )
    assert result.steps == 6 and result.resumed_from is None and result.train_loss > 0
    assert len(losses(unbroken)) == 6 and unbroken.logged[-1]["train_samples_per_second"] > 0

    # Restarting a finished run (DVC reruns a stage when any dependency changes) trains nothing and
    # reports the run itself: its loss, timing and whole curves, not an empty session's 0 samples/s.
    again_logger = CurveLogger()
    finished = fit_stage(
        prepare_stage1(build_model(config)),
        data,
        collate,
        cfg,
        checkpoint_dir=tmp_path / "a",
        fingerprint=fp,
        seed=0,
        label="toy",
        callbacks=[again_logger],
    )
    assert finished.resumed_from.endswith("checkpoint-6") and finished.steps == 6
    assert finished.train_loss == pytest.approx(result.train_loss)
    assert (finished.seconds, finished.samples_per_second) == pytest.approx((result.seconds, result.samples_per_second))
    assert losses(again_logger) == pytest.approx(losses(unbroken))
    assert again_logger.logged[-1] == pytest.approx(unbroken.logged[-1])

    killed = prepare_stage1(build_model(config))
    with pytest.raises(KeyboardInterrupt):
        fit_stage(
            killed,
            data,
            collate,
            cfg,
            checkpoint_dir=tmp_path / "b",
            fingerprint=fp,
            seed=0,
            label="toy",
            callbacks=[StopAfter(3)],
        )
    resumed, resumed_logger = prepare_stage1(build_model(config)), CurveLogger()
    again = fit_stage(
        resumed,
        data,
        collate,
        cfg,
        checkpoint_dir=tmp_path / "b",
        fingerprint=fp,
        seed=0,
        label="toy",
        callbacks=[resumed_logger],
    )
    assert again.resumed_from.endswith("checkpoint-2") and again.steps == 6  # lost at most one interval
    assert losses(resumed_logger) == pytest.approx(losses(unbroken), rel=1e-4)  # the curve is whole
    for (name, a), b in zip(straight.named_parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6), name

    other = fit_stage(
        prepare_stage1(build_model(config)),
        data,
        collate,
        cfg,
        checkpoint_dir=tmp_path / "b",
        fingerprint={"run": "changed"},
        seed=0,
        label="toy",
    )
    assert other.resumed_from is None  # checkpoints of other inputs are never resumed


def test_release_round_trip_gives_identical_logits(setup, tmp_path):
    preset, tok, config = setup
    model = prepare_stage2(build_model(config), preset.family, LoraTraining(True, 4, 8, 0.0))
    with torch.no_grad():  # make the adapter non-zero so merging matters
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.02)
    batch = collate([ToyData(config)[0]])
    model.eval()
    with torch.no_grad():
        before = model(**batch).logits
    out = write_release(merged(model), tok, preset, tmp_path / "release", {"stage": "finetune"}).folder
    loaded = LlavaForConditionalGeneration.from_pretrained(out).eval()
    with torch.no_grad():
        after = loaded(**batch).logits
    assert torch.allclose(before, after, atol=1e-5)
    assert not any("lora" in n for n, _ in loaded.named_parameters())
    processor = AutoProcessor.from_pretrained(out)
    from PIL import Image

    enc = processor(images=[Image.new("RGB", (40, 30))], text=["<image>\nWhat is it?"], return_tensors="pt")
    assert int((enc["input_ids"] == config.image_token_index).sum()) == num_image_tokens(preset)


@pytest.mark.parametrize(
    ("stage", "gpus", "accumulation", "zero"),
    [("stage1", 8, 1, 2), ("stage1", 4, 2, 2), ("stage2", 8, 4, 3), ("stage2", 4, 8, 3)],
)
def test_the_real_recipe_trains_as_imps_scripts_on_any_number_of_gpus(stage, gpus, accumulation, zero, tmp_path):
    """Imp's scripts: ZeRO-2 in stage 1 (32 per device on 8 GPUs), ZeRO-3 in stage 2 with 4 per device
    x 4 accumulation steps on 8 GPUs; on 4 GPUs the accumulation doubles and the global batch (256,
    then 128) stays."""
    import json
    from pathlib import Path

    from impkit.config import TrainRecipe, load_params

    repo = Path(__file__).resolve().parents[1]
    real = from_dict(TrainRecipe, load_params(repo / "params.yaml")["train"]["recipes"]["real"])
    ds = json.loads((repo / getattr(real.deepspeed, stage)).read_text())
    assert ds["zero_optimization"]["stage"] == zero
    stage_cfg = getattr(real, stage)
    args = training_arguments(stage_cfg, tmp_path, seed=0, world_size=gpus)
    assert args.gradient_accumulation_steps == accumulation
    assert args.per_device_train_batch_size * gpus * args.gradient_accumulation_steps == stage_cfg.global_batch_size

"""The training step's speed-ups keep its computation: frozen weights in bf16 once give the same loss
and gradients bit for bit, eager attention what SDPA computes, packed LoRA dropout nn.Dropout's
distribution; each is undone when training ends, and a stage trains with all of them on."""

from __future__ import annotations

import copy

import pytest
import torch
from test_training_core import ToyData, collate, stage

from impkit.config import ConfigError, LoraTraining
from impkit.model.presets import build_model
from impkit.train.parts import prepare_stage2
from impkit.train.step_speedups import PackedDropout, step_speedups
from impkit.train.trainer import fit_stage

ALL_ON = dict(precision="bf16", attention="eager", bf16_frozen_weights=True, packed_dropout=True)


@pytest.fixture(scope="module")
def config(tiny):
    """The tiny phi2-family LLaVA config (32 px images, 16 image tokens, as ToyData makes them)."""
    return tiny[2].config


def lora_model(config, dropout: float = 0.0) -> torch.nn.Module:
    return prepare_stage2(build_model(config, seed=0), "phi2", LoraTraining(True, 4, 8, dropout))


def loss_and_grads(model, batch) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    model.zero_grad(set_to_none=True)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model(**batch).loss
    loss.backward()
    return loss.detach(), {n: p.grad.clone() for n, p in model.named_parameters() if p.requires_grad}


def lora_dropouts(model) -> list[torch.nn.Module]:
    return [
        d
        for m in model.modules()
        if isinstance(getattr(m, "lora_dropout", None), torch.nn.ModuleDict)
        for d in m.lora_dropout.values()
    ]


def patched_linears(model) -> int:
    return sum("forward" in vars(m) for m in model.modules() if type(m) is torch.nn.Linear)


def test_packed_dropout_keeps_each_element_with_probability_one_minus_p_and_scales_it():
    torch.manual_seed(0)
    x = torch.ones(1_000_000)
    dropout = PackedDropout(0.05).train()
    y = dropout(x)
    kept = y != 0
    assert kept.float().mean().item() == pytest.approx(0.95, abs=0.002)  # 9 standard deviations
    assert torch.all(y[kept] == 1 / 0.95)
    assert not torch.equal(dropout(x), y)  # fresh draws every call
    # each of the four 16-bit slices of a word drops alike (element i uses slice i % 4)
    for slice_kept in kept.view(-1, 4).float().mean(dim=0).tolist():
        assert slice_kept == pytest.approx(0.95, abs=0.003)
    assert dropout.eval()(x) is x


def test_frozen_weights_in_bf16_give_the_same_loss_and_gradients_bit_for_bit(config):
    model = lora_model(config)
    batch = collate([ToyData(config)[i] for i in range(4)])
    reference_loss, reference_grads = loss_and_grads(model, batch)
    with step_speedups(model, stage(precision="bf16", bf16_frozen_weights=True)):
        assert patched_linears(model) > 0
        loss, grads = loss_and_grads(model, batch)
    assert torch.equal(loss, reference_loss)
    for name, grad in grads.items():
        assert torch.equal(grad, reference_grads[name]), name
    assert patched_linears(model) == 0  # undone: merging and saving see the model as built


def test_eager_attention_computes_what_sdpa_computes_and_is_undone(config):
    model = lora_model(config).eval()
    batch = collate([ToyData(config)[i] for i in range(4)])
    base = model.get_base_model()
    before = (base.config.text_config._attn_implementation, base.config.vision_config._attn_implementation)
    assert before == ("sdpa", "sdpa")
    with torch.no_grad():
        reference = model(**batch).logits
        with step_speedups(model, stage(attention="eager")):
            assert base.config.text_config._attn_implementation == "eager"
            assert base.config.vision_config._attn_implementation == "eager"
            eager = model(**batch).logits
    assert torch.allclose(eager, reference, atol=1e-5)
    assert (base.config.text_config._attn_implementation, base.config.vision_config._attn_implementation) == before


def test_packed_dropout_replaces_every_lora_dropout_and_is_undone(config):
    model = lora_model(config, dropout=0.05)
    originals = lora_dropouts(model)
    assert originals and all(type(m) is torch.nn.Dropout for m in originals)
    others = [m for m in model.modules() if isinstance(m, torch.nn.Dropout) and m not in originals]
    with step_speedups(model, stage(packed_dropout=True)):
        packed = lora_dropouts(model)
        assert len(packed) == len(originals) and all(type(m) is PackedDropout and m.p == 0.05 for m in packed)
        assert [m for m in model.modules() if isinstance(m, torch.nn.Dropout)] == others  # the model's own stay
    assert lora_dropouts(model) == originals


def test_a_stage_trains_with_every_speed_up_and_ends_with_the_model_as_built(config, tmp_path):
    model = lora_model(config, dropout=0.05)
    untouched = copy.deepcopy(model)
    result = fit_stage(
        model,
        ToyData(config),
        collate,
        stage(**ALL_ON),
        checkpoint_dir=tmp_path,
        fingerprint={"run": 1},
        seed=0,
        label="toy",
    )
    assert result.steps == 6 and result.train_loss > 0
    assert patched_linears(model) == 0 and not [m for m in model.modules() if isinstance(m, PackedDropout)]
    assert model.get_base_model().config.text_config._attn_implementation == "sdpa"
    trained = [
        n for (n, a), b in zip(model.named_parameters(), untouched.parameters(), strict=True) if not torch.equal(a, b)
    ]
    assert trained and all("lora_" in n or "multi_modal_projector" in n for n in trained)


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (dict(precision="fp32", bf16_frozen_weights=True), "needs precision bf16"),
        (dict(attention="flash"), "attention must be"),
    ],
)
def test_speed_up_settings_that_cannot_hold_are_config_errors(overrides, message):
    with pytest.raises(ConfigError, match=message):
        stage(**overrides)


def test_bf16_frozen_weights_refuse_deepspeed_zero3_shards(config):
    model = lora_model(config)
    frozen = [m for m in model.modules() if type(m) is torch.nn.Linear and not m.weight.requires_grad]
    frozen[-1].weight.ds_id = 0  # how DeepSpeed ZeRO-3 marks a partitioned parameter
    with pytest.raises(ConfigError, match="ZeRO-3"):
        with step_speedups(model, stage(precision="bf16", bf16_frozen_weights=True)):
            pass
    assert patched_linears(model) == 0  # nothing left half-patched

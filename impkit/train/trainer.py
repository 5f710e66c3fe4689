"""Running one training stage on the HF Trainer: Imp's two learning rates, modality-length grouped
batches, checkpoint/resume, progress in plain words, curves for dvclive.

The Trainer brings multi-GPU, DeepSpeed (the recipe's configs/deepspeed files; impkit.train.launch),
bf16/fp16 and gradient checkpointing; this module adds only what Imp's recipe needs on top.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import os
import shutil
import time
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from peft import PeftModel
from transformers import PrinterCallback, Trainer, TrainerCallback, TrainingArguments
from transformers.trainer_utils import get_last_checkpoint

from impkit.config import ConfigError, StageTraining
from impkit.hardware import Machine, resolve_precision
from impkit.io import write_json
from impkit.model.shared_prefix import with_shared_prefix
from impkit.progress import bars as progress_bars
from impkit.progress import interval as progress_interval
from impkit.train.step_speedups import step_speedups

log = logging.getLogger(__name__)

FINGERPRINT = "impkit-fingerprint.json"
# Written beside the checkpoints when a run completes: its timing and closing summary, so a restart of
# a finished run (DVC reruns a stage when any dependency changes) reports the run, not an empty session.
RUN_RECORD = "impkit-run.json"


class ImpTrainer(Trainer):
    """Trainer with a separate projector learning rate, LLaVA's modality-length grouping and, with
    ``share_prefix``, each batch's shared prompt prefix run once (``impkit.model.shared_prefix``)."""

    def __init__(
        self,
        *args: Any,
        projector_lr: float | None = None,
        sampler_factory=None,
        share_prefix: bool = False,
        **kwargs: Any,
    ):
        super().__init__(*args, **kwargs)
        self.projector_lr = projector_lr
        self.sampler_factory = sampler_factory
        self.share_prefix = share_prefix

    def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
        if self.share_prefix and model.training:
            inputs = with_shared_prefix(model, inputs, self.model.config.image_token_id)
        return super().compute_loss(model, inputs, return_outputs=return_outputs, num_items_in_batch=num_items_in_batch)

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model=None) -> None:
        """Full-model checkpoints are saved under LLaVA's original key names (transformers converts
        them on save) but the stock resume path loads them without the reverse mapping, so nothing
        would load. Reload through ``from_pretrained``, which applies it. Adapters (PEFT) and
        DeepSpeed checkpoints take the stock path."""
        model = model or self.model
        has_full_weights = (Path(resume_from_checkpoint) / "model.safetensors").is_file() or (
            Path(resume_from_checkpoint) / "model.safetensors.index.json"
        ).is_file()
        if self.is_deepspeed_enabled or isinstance(model, PeftModel) or not has_full_weights:
            return super()._load_from_checkpoint(resume_from_checkpoint, model)
        loaded = type(model).from_pretrained(resume_from_checkpoint, dtype=next(model.parameters()).dtype)
        model.load_state_dict(loaded.state_dict())

    def _get_train_sampler(self, train_dataset=None):
        if self.sampler_factory is None:
            return super()._get_train_sampler(train_dataset)
        # grouped by the global batch, as LLaVA groups: the same batches however the global batch is
        # split into processes and accumulation steps
        args = self.args
        global_batch = args.per_device_train_batch_size * args.world_size * args.gradient_accumulation_steps
        return self.sampler_factory(global_batch, args.seed)

    def create_optimizer(self, model=None) -> torch.optim.Optimizer:
        """Four groups: (projector | rest) x (decay | no decay); the projector may have its own lr
        (Imp stage 2: LoRA at 2e-4, projector at 2e-5)."""
        if self.optimizer is not None:
            return self.optimizer
        opt_model = self.model if model is None else model
        decay = set(self.get_decay_parameter_names(opt_model))
        groups: dict[tuple[bool, bool], list[torch.nn.Parameter]] = {}
        for name, param in opt_model.named_parameters():
            if param.requires_grad:
                groups.setdefault(("multi_modal_projector" in name, name in decay), []).append(param)
        param_groups = []
        for (is_projector, decays), params in sorted(groups.items()):
            group: dict[str, Any] = {"params": params, "weight_decay": self.args.weight_decay if decays else 0.0}
            if is_projector and self.projector_lr is not None:
                group["lr"] = self.projector_lr
            param_groups.append(group)
        optimizer_cls, optimizer_kwargs = self.get_optimizer_cls_and_kwargs(self.args, opt_model)
        self.optimizer = optimizer_cls(param_groups, **optimizer_kwargs)
        return self.optimizer


class PlainProgress(TrainerCallback):
    """A log line at every logging step (with the loss) and, between them, at least every
    ``impkit.progress.interval()`` seconds: step, samples/s and ETA (readable in DVC and CI logs)."""

    def __init__(self, label: str, samples_per_step: int, every: float | None = None):
        self.label, self.samples_per_step = label, samples_per_step
        self.every = progress_interval() if every is None else every
        self.start = self.last = time.perf_counter()
        self.start_step = 0

    def on_train_begin(self, args, state, control, **kwargs):
        self.start = self.last = time.perf_counter()
        self.start_step = state.global_step

    def _line(self, state, loss: float | None) -> None:
        now = time.perf_counter()
        self.last = now
        done = state.global_step - self.start_step
        elapsed = now - self.start
        rate = done * self.samples_per_step / max(elapsed, 1e-9)
        eta = (state.max_steps - state.global_step) * elapsed / max(done, 1)
        loss_text = f"  loss {loss:.4f}" if loss is not None else ""
        log.info(
            "%s step %d/%d%s  %.1f samples/s  ETA %.0f s",
            self.label,
            state.global_step,
            state.max_steps,
            loss_text,
            rate,
            eta,
        )

    def on_step_end(self, args, state, control, **kwargs):
        if state.is_world_process_zero and time.perf_counter() - self.last >= self.every:
            self._line(state, None)

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not logs or "loss" not in logs or not state.is_world_process_zero:
            return
        self._line(state, logs["loss"])


class ResumedHistory(TrainerCallback):
    """Keep the curve loggers' history whole across a restart.

    DVC deletes a stage's outputs before it runs, so after a resume the dvclive curves would start at
    the restart step. The Trainer restores the logged history from the checkpoint only after
    ``on_train_begin``, so the first ``on_log`` of the session hands everything logged before it to
    the loggers. When the run had already finished, the session's closing summary (a runtime of a few
    milliseconds, 0 samples/s) is replaced in place by the recorded one before the loggers see it —
    callbacks share the ``logs`` dict, which is why this callback must come before them.
    """

    def __init__(self, loggers: list[TrainerCallback], finished_summary: dict[str, Any] | None):
        self.loggers, self.finished_summary = loggers, finished_summary
        self.replayed = False

    def on_log(self, args, state, control, logs=None, **kwargs):
        if not self.replayed:
            self.replayed = True
            for entry in state.log_history[:-1]:
                for logger in self.loggers:
                    logger.on_log(args, state, control, logs={k: v for k, v in entry.items() if k != "step"}, **kwargs)
        if self.finished_summary and logs is not None and "train_runtime" in logs:
            logs.clear()
            logs.update(self.finished_summary)


class StopAfter(TrainerCallback):
    """Stop training after a step (used to simulate a killed run in tests)."""

    def __init__(self, step: int):
        self.step = step

    def on_step_end(self, args, state, control, **kwargs):
        if state.global_step >= self.step:
            raise KeyboardInterrupt(f"stopped after step {self.step}")


@dataclass
class StageResult:
    steps: int
    resumed_from: str | None
    train_loss: float
    samples_per_second: float
    seconds: float
    log_history: list[dict[str, Any]]


def resolve_stage(cfg: StageTraining, machine: Machine, *, where: str) -> StageTraining:
    """``cfg`` with its precision decided for ``machine`` (``auto``: bf16 where native, else fp32;
    ``impkit.hardware``). ``bf16_frozen_weights`` keeps bf16 copies of frozen weights, so it applies
    only when the stage trains in bf16."""
    precision = resolve_precision(cfg.precision, machine, where=where)
    frozen_bf16 = cfg.bf16_frozen_weights and precision == "bf16"
    if cfg.bf16_frozen_weights and not frozen_bf16:
        log.info("%s: bf16_frozen_weights off (the stage trains in %s)", where, precision)
    return dataclasses.replace(cfg, precision=precision, bf16_frozen_weights=frozen_bf16)


def training_arguments(
    cfg: StageTraining, checkpoint_dir: Path, seed: int, world_size: int = 1, deepspeed: str | dict | None = None
) -> TrainingArguments:
    """The Trainer's arguments for a stage: per-device batch as the recipe, gradient accumulation
    derived so that processes x per-device batch x accumulation = the recipe's global batch (Imp's
    stage 2: 4 x 4 x 8 GPUs = 128); ``deepspeed`` a DeepSpeed config (file or dict) or None."""
    accumulation = cfg.global_batch_size // (cfg.per_device_batch_size * world_size)
    if cfg.precision == "auto":
        raise ConfigError("training_arguments needs a resolved precision (resolve_stage)")
    if accumulation < 1 or accumulation * cfg.per_device_batch_size * world_size != cfg.global_batch_size:
        raise ConfigError(
            f"global batch {cfg.global_batch_size} cannot be split into {world_size} process(es) x "
            f"{cfg.per_device_batch_size} per device x an integer number of accumulation steps "
            "(lower per_device_batch_size, or the number of GPUs or train.cpu_processes)"
        )
    return TrainingArguments(
        output_dir=str(checkpoint_dir),
        per_device_train_batch_size=cfg.per_device_batch_size,
        gradient_accumulation_steps=accumulation,
        num_train_epochs=cfg.epochs,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,  # a float below 1 is a ratio of the total steps
        weight_decay=cfg.weight_decay,
        logging_steps=cfg.logging_steps,
        save_strategy="steps",
        save_steps=cfg.checkpoint_steps,
        save_total_limit=1,
        bf16=cfg.precision == "bf16",
        fp16=cfg.precision == "fp16",
        activation_checkpointing=cfg.gradient_checkpointing,
        seed=seed,
        data_seed=seed,
        report_to=[],
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not progress_bars(),  # PlainProgress writes the log lines
        use_cpu=not torch.cuda.is_available(),
        # DDP re-sends the buffers of the first process before every forward (two per step with the shared
        # prefix); these models' buffers (rotary frequencies, position ids) never change, so nothing is lost.
        # (PyTorch 2.13 renames the switch `forward_sync_buffers`; transformers passes the old name.)
        ddp_broadcast_buffers=False,
        deepspeed=deepspeed,
    )


def _matching_checkpoint(checkpoint_dir: Path, fingerprint: dict[str, Any]) -> str | None:
    """The last checkpoint of a run with the same inputs, or None (stale checkpoints are removed)."""
    marker = checkpoint_dir / FINGERPRINT
    if checkpoint_dir.is_dir():
        if marker.is_file() and json.loads(marker.read_text()) == fingerprint:
            return get_last_checkpoint(str(checkpoint_dir))
        log.info("removing checkpoints of a run with other inputs in %s", checkpoint_dir)
        shutil.rmtree(checkpoint_dir)
    checkpoint_dir.mkdir(parents=True, exist_ok=True)
    marker.write_text(json.dumps(fingerprint, sort_keys=True))
    return None


def _run_loss(trainer_loss: float, log_history: list[dict[str, Any]], *, resumed: bool) -> float:
    """The whole run's mean training loss.

    The Trainer's ``training_loss`` averages only the steps this process ran: 0.0 for a restarted
    run that had already finished, a partial mean after a kill. A resumed run therefore reports the
    mean of the logged losses, which the checkpoint carries from before the restart (every logging
    interval weighs the same, so this equals the full-run mean when the interval divides the steps).
    """
    if resumed:
        losses = [float(entry["loss"]) for entry in log_history if "loss" in entry]
        return sum(losses) / len(losses) if losses else float("nan")
    return float(trainer_loss) if not math.isnan(trainer_loss) else float("nan")


def fit_stage(
    model: torch.nn.Module,
    dataset: torch.utils.data.Dataset,
    collator,
    cfg: StageTraining,
    *,
    checkpoint_dir: Path,
    fingerprint: dict[str, Any],
    seed: int,
    label: str,
    sampler_factory=None,
    callbacks: list[TrainerCallback] = (),
    deepspeed: str | dict | None = None,
) -> StageResult:
    """Train ``model`` in place; resumes from the last checkpoint of an identical earlier run.
    ``deepspeed``: the DeepSpeed config to train under (impkit.train.launch.deepspeed_config); under
    ZeRO-3 the weights stay sharded afterwards (impkit.train.parts.gathered_weights)."""
    # Under a launcher (torchrun, `accelerate launch`; impkit.train.launch) every process sees
    # WORLD_SIZE; the global batch stays the recipe's.
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    args = training_arguments(cfg, checkpoint_dir, seed, world_size=world_size, deepspeed=deepspeed)
    with args.main_process_first(local=False, desc="the checkpoint check"):  # one process clears stale ones
        resume = _matching_checkpoint(checkpoint_dir, fingerprint)
    record_file = checkpoint_dir / RUN_RECORD
    finished = json.loads(record_file.read_text()) if resume and record_file.is_file() else None
    if finished:
        log.info("%s: this run already finished (%s); loading its weights, training nothing", label, resume)
    elif resume:
        log.info("%s: resuming from %s", label, resume)
    samples_per_step = cfg.global_batch_size
    trainer = ImpTrainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        projector_lr=cfg.projector_lr,
        sampler_factory=sampler_factory,
        share_prefix=cfg.share_prefix,
        callbacks=[
            PlainProgress(label, samples_per_step),
            ResumedHistory(list(callbacks), finished["summary"] if finished else None),
            *callbacks,
        ],
    )
    trainer.remove_callback(PrinterCallback)  # without a bar it prints every log dict; PlainProgress says it in words
    start = time.perf_counter()
    with step_speedups(model, cfg), warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="`broadcast_buffers` is deprecated", category=FutureWarning)
        output = trainer.train(resume_from_checkpoint=resume)
    seconds = time.perf_counter() - start
    history = list(trainer.state.log_history)
    if finished:
        return StageResult(
            steps=output.global_step,
            resumed_from=resume,
            train_loss=finished["train_loss"],
            samples_per_second=finished["samples_per_second"],
            seconds=finished["seconds"],
            log_history=history,
        )
    steps_run = output.global_step - (int(Path(resume).name.split("-")[-1]) if resume else 0)
    result = StageResult(
        steps=output.global_step,
        resumed_from=resume,
        train_loss=_run_loss(output.training_loss, history, resumed=bool(resume)),
        samples_per_second=steps_run * samples_per_step / max(seconds, 1e-9),
        seconds=seconds,
        log_history=history,
    )
    if trainer.is_world_process_zero():
        summary = {key: value for key, value in history[-1].items() if key != "step"}
        record = {
            "summary": summary,
            "train_loss": result.train_loss,
            "seconds": seconds,
            "samples_per_second": result.samples_per_second,
        }
        write_json(record_file, record)
    return result

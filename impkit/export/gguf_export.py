"""Release folder -> GGUF files for llama.cpp: the LLM and the vision "mmproj", then quantized levels.

Layout of an export folder (names from ``llm_filename`` / ``mmproj_filename``)::

    llm-F16.gguf  llm-Q8_0.gguf  llm-Q4_K_M.gguf  ...   one LLM file per level
    mmproj-F16.gguf                                     the vision tower + projector

Run them with llama-cpp-python: ``Llama(model_path=llm, chat_handler=MTMDChatHandler(clip_model_path=
mmproj))``; the LLM file carries the release's chat template with llama.cpp's media marker.
Every file is written atomically; F16 files hold matrices in float16, norms and biases in float32.
"""

from __future__ import annotations

import logging
import os
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import torch

from impkit.export import llm as llm_part
from impkit.export import mmproj as mmproj_part
from impkit.export.names import LLM_PREFIX, ExportError, TensorPlan, plan_tensors
from impkit.export.quantize import ftype, quantize
from impkit.export.writer import summary, write_gguf
from impkit.release import Release, ReleaseError, ReleaseNotFound, llm_filename, mmproj_filename

log = logging.getLogger(__name__)


@dataclass
class ExportSource:
    """A release's weights and what the GGUF files need besides (normalisation, record, config)."""

    folder: Path
    meta: dict[str, Any]
    config: Any  # LlavaConfig
    state: dict[str, torch.Tensor]
    tokenizer: Any
    image_mean: list[float]
    image_std: list[float]

    @property
    def name(self) -> str:
        return str(self.meta.get("preset") or self.folder.name)


def load_release(folder: str | os.PathLike) -> ExportSource:
    """A release folder's weights (as transformers loads them, whatever the layout on disk), its
    tokenizer, ``impkit.json`` and the image normalisation of ``processor_config.json``. A checkpoint
    tensor the model class does not know would be dropped, a missing one exported as random init:
    both are errors here, named."""
    try:
        release = Release.open(folder)
        mean, std = release.normalisation(required=True)
        model, tokenizer = release.load(dtype="auto", strict=True)
    except ReleaseNotFound:
        raise
    except ReleaseError as exc:
        raise ExportError(str(exc)) from None
    state = dict(model.state_dict())
    return ExportSource(release.folder, release.meta, model.config, state, tokenizer, mean, std)


def _tied(release: ExportSource) -> bool:
    head, embed = release.state.get("lm_head.weight"), release.state.get(LLM_PREFIX + "embed_tokens.weight")
    return head is not None and embed is not None and head.data_ptr() == embed.data_ptr()


def plan_release(release: ExportSource) -> TensorPlan:
    arch = llm_part.llm_arch(release.meta["family"])
    return plan_tensors(
        release.state,
        arch=arch.arch,
        n_llm_layers=release.config.text_config.num_hidden_layers,
        n_vision_layers_kept=mmproj_part.vision_layers_kept(release.config),
        tied_output=_tied(release),
    )


def export_release(release_dir: str | os.PathLike, out_dir: str | os.PathLike) -> dict[str, Any]:
    """Write ``llm-F16.gguf`` and ``mmproj-F16.gguf`` for a release folder into ``out_dir``.

    Returns the record: paths, sizes in bytes, tensor counts and types, the GGUF arch, the
    tokenizer facts and the tensors left out on purpose (with why). Nothing is written when a
    check fails (unknown family, unmapped tensor, unsupported activation or rope scaling, ...).
    """
    release = load_release(release_dir)
    family, template = release.meta["family"], release.meta["template"]
    arch = llm_part.llm_arch(family)
    mmproj_part.check_vision(release.config)
    plan = plan_release(release)
    out_dir = Path(out_dir)
    n_vocab = release.state[LLM_PREFIX + "embed_tokens.weight"].shape[0]
    facts: dict[str, Any] = {}

    def fill_llm(writer: gguf.GGUFWriter) -> None:
        writer.add_name(llm_part.gguf_model_name(release.name, release.tokenizer))
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        facts["hparams"] = llm_part.add_hparams(writer, arch, release.config.text_config)
        facts["tokenizer"] = llm_part.add_tokenizer(
            writer, release.tokenizer, family=family, template=template, n_vocab=n_vocab
        )
        llm_part.add_weights(writer, arch, release.state, plan, release.config.text_config)

    def fill_mmproj(writer: gguf.GGUFWriter) -> None:
        writer.add_name(f"{release.name} vision")
        writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
        facts["vision"] = mmproj_part.add_vision(
            writer, release.config, release.state, plan, image_mean=release.image_mean, image_std=release.image_std
        )

    # Both files are staged and moved in together: a failing check leaves neither, not half a pair.
    out_dir.mkdir(parents=True, exist_ok=True)
    records = {}
    with tempfile.TemporaryDirectory(prefix=".gguf-stage-", dir=out_dir) as stage:
        for part, name, arch_name, fill in (
            ("llm", llm_filename("F16"), arch.name, fill_llm),
            ("mmproj", mmproj_filename("F16"), "clip", fill_mmproj),
        ):
            records[part] = write_gguf(Path(stage) / name, arch_name, fill)
        for record in records.values():
            final = out_dir / Path(record["path"]).name
            os.replace(record["path"], final)
            record["path"] = str(final)
            log.info("wrote %s (%d bytes, %d tensors)", final, record["bytes"], record["n_tensors"])
    llm_record, mm_record = records["llm"], records["mmproj"]
    return {
        "release": str(release.folder),
        "name": release.name,
        "family": family,
        "template": template,
        "arch": arch.name,
        "image_tokens": facts["vision"]["image_tokens"],
        "llm": {**llm_record, "level": "F16", "hparams": facts["hparams"], "tokenizer": facts["tokenizer"]},
        "mmproj": {**mm_record, "level": "F16", **facts["vision"]},
        "skipped": plan.skipped,
    }


def export_and_quantize(
    release_dir: str | os.PathLike,
    out_dir: str | os.PathLike,
    levels: Sequence[str] = ("F16", "Q8_0", "Q4_K_M"),
    mmproj_level: str = "F16",
    *,
    threads: int | None = None,
) -> dict[str, Any]:
    """One LLM file per level in ``levels`` plus the mmproj at ``mmproj_level``, in ``out_dir``.

    The F16 export is the quantizer's input; it is kept only when "F16" is among the levels (the
    same for the mmproj). ``sizes`` gives bytes per level: LLM, mmproj and their total.
    """
    levels = list(dict.fromkeys(levels))
    if not levels:
        raise ExportError("no quantization levels given")
    for level in (*levels, mmproj_level):
        ftype(level)  # an unknown level fails before any work
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=".gguf-export-", dir=out_dir) as work:
        base = export_release(release_dir, work)
        llm_f16, mm_f16 = Path(base["llm"]["path"]), Path(base["mmproj"]["path"])
        llm: dict[str, dict[str, Any]] = {}
        for level in [lv for lv in levels if lv != "F16"]:
            llm[level] = quantize(llm_f16, out_dir / llm_filename(level), level, threads=threads)
            log.info("%s: %d bytes", llm[level]["path"], llm[level]["bytes"])
        if "F16" in levels:
            os.replace(llm_f16, out_dir / llm_filename("F16"))
            llm["F16"] = {**summary(out_dir / llm_filename("F16")), "level": "F16"}
        if mmproj_level == "F16":
            os.replace(mm_f16, out_dir / mmproj_filename("F16"))
            mmproj = {**summary(out_dir / mmproj_filename("F16")), "level": "F16"}
        else:
            mmproj = quantize(mm_f16, out_dir / mmproj_filename(mmproj_level), mmproj_level, threads=threads)
    llm = {level: llm[level] for level in levels}
    sizes = {
        level: {"llm": rec["bytes"], "mmproj": mmproj["bytes"], "total": rec["bytes"] + mmproj["bytes"]}
        for level, rec in llm.items()
    }
    info = {k: v for k, v in base.items() if k not in ("llm", "mmproj")}
    return {
        **info,
        "hparams": base["llm"]["hparams"],
        "tokenizer": base["llm"]["tokenizer"],
        "llm": llm,
        "mmproj": mmproj,
        "sizes": sizes,
    }

"""GGUF pairs with the exact shapes of the real Imp-2B/3B/4B (at 384 or 196 px) and random weights.

Latency depends on shapes, quantization level and hardware, not on what the weights say, so a pair
with Imp-3B@196's shapes measures Imp-3B@196's deployment speed (paper Table 4) without the real
checkpoint, which cannot be downloaded here. The files are written by the same code as a release's
export (``llm.add_hparams`` / ``add_tokenizer`` / ``add_weights``, ``mmproj.add_vision``,
``names.plan_tensors``, ``writer.write_gguf``, ``quantize.quantize``), so they have exactly the
tensors, names, types and metadata a real Imp export would have:

* names and shapes come from ``LlavaForConditionalGeneration`` built on the ``meta`` device (no
  memory) from a profile of ``latency.paper.profiles`` in params.yaml: a preset of ``model.presets``
  (imp-2b, imp-3b, imp-4b) and, optionally, another vision input size (Imp-3B@196 is imp-3b at
  196 px: 14 x 14 = 196 visual tokens, the position embeddings resized);
* the tokenizer is a small byte-level BPE (``impkit.model.tokenizer``) with the family's special
  tokens, padded to the real vocabulary size (151936 Qwen1.5, 51200 Phi-2, 32064 Phi-3) by
  ``add_tokenizer``: the embedding and output matrices have the real shapes;
* weights are generated when the exporter asks for them: uniform noise with std 0.02 (norm scales 1)
  written in chunks into float16 memory-mapped scratch files, so a multi-GB model never sits in RAM;
* the vision file is written whole. The LLM is written at every level from a row-thin copy: each
  matrix with its real columns but only its first ``DISTINCT_ROWS`` rows goes through the same export
  and through llama.cpp's own quantizer, and the final file repeats those rows (F16 values or
  quantized blocks, as llama.cpp made them) up to the real row count. llama.cpp picks each tensor's
  type from its name, its layer and its row length, never its row count, so the file holds exactly
  the types, shapes and bytes of a quantized full-size export (tested against llama.cpp quantizing
  the full F16 file), and a matmul costs the same whatever rows repeat. Quantizing Imp-3B's 2.8 B
  random parameters to Q4_K_M took 220 s of a 7-minute stage on a 2-core EPYC; the thin copy takes
  seconds.

A profile's ``table4_gb`` holds the paper's sizes where it gives them (Imp-3B: 6.0 / 3.6 / 2.3 GB at
16 / 8 / 4 bits), and the record compares the files with them.
"""

from __future__ import annotations

import copy
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gguf
import numpy as np
import torch

from impkit.config import ConfigError, PaperProfile, PresetConfig, from_dict
from impkit.export import llm as llm_part
from impkit.export import mmproj as mmproj_part
from impkit.export.names import ExportError, TensorPlan, plan_tensors
from impkit.export.quantize import ftype, quantize
from impkit.export.writer import summary, write_gguf
from impkit.io import atomic_path, write_json
from impkit.progress import progress
from impkit.release import llm_filename, mmproj_filename

log = logging.getLogger(__name__)

RECORD = "paper-size.json"
GIB = 2**30
# Rows of each LLM matrix that are generated and quantized; the full matrix repeats them (module doc)
DISTINCT_ROWS = 64
WEIGHT_STD = 0.02
IMAGE_MEAN = IMAGE_STD = (0.5, 0.5, 0.5)  # SigLIP's normalisation
# Text for the small stand-in tokenizer (its merges; the vocabulary is padded to the real size).
_CORPUS = (
    "a chat between a curious user and an artificial intelligence assistant",
    "the assistant gives helpful detailed and polite answers to the user's questions",
    "describe the picture: a red circle, two blue squares and the word lamp",
    "what colour is the shape? how many objects are there? answer with a single word",
)


def paper_preset(name: str, profile: PaperProfile, presets: Mapping[str, Any]) -> PresetConfig:
    """The preset of paper-size profile ``name``: ``model.presets[profile.preset]``, with the vision
    input at ``profile.image_size`` when the profile sets one."""
    if profile.preset not in presets:
        raise ConfigError(
            f"latency.paper.profiles.{name}: no preset '{profile.preset}' in model.presets; known: {sorted(presets)}"
        )
    raw = copy.deepcopy(dict(presets[profile.preset]))
    if profile.image_size is not None:
        raw["vision"] = {**raw["vision"], "arch": {**raw["vision"]["arch"], "image_size": profile.image_size}}
    return from_dict(PresetConfig, raw, f"model.presets.{profile.preset}")


@dataclass
class PaperSizePlan:
    """What the pair holds: the Llava config, every state-dict tensor's shape and its GGUF name."""

    profile: str
    preset: PresetConfig
    config: Any  # LlavaConfig
    tokenizer: Any
    shapes: dict[str, tuple[int, ...]]  # HF state-dict name -> shape
    plan: TensorPlan

    @property
    def arch(self) -> llm_part.LlmArch:
        return llm_part.llm_arch(self.preset.family)

    def gguf_shapes(self, part: str) -> dict[str, tuple[int, ...]]:
        """GGUF name -> shape (torch order) of the tensors the ``llm`` or ``mmproj`` file holds."""
        mapping = self.plan.llm if part == "llm" else self.plan.mmproj
        shapes = {target: self.shapes[hf] for hf, target in mapping.items()}
        if part == "llm" and self.arch.explicit_output:  # add_weights adds these for phi2
            vocab, width = self.shapes[next(hf for hf, t in mapping.items() if t == "token_embd.weight")]
            shapes.setdefault("output.weight", (vocab, width))
            shapes.setdefault("output.bias", (vocab,))
        return shapes

    def n_params(self, part: str) -> int:
        return sum(int(np.prod(shape)) for shape in self.gguf_shapes(part).values())

    def f16_bytes(self, part: str) -> int:
        """Tensor bytes of the F16 file (matrices 2 bytes, vectors and position embeddings 4)."""
        return sum(
            int(np.prod(s)) * (4 if len(s) <= 1 or n.startswith("v.position_embd") else 2)
            for n, s in self.gguf_shapes(part).items()
        )

    def digest(self) -> str:
        text = json.dumps(
            {
                "profile": self.profile,
                "llm": sorted(self.gguf_shapes("llm").items()),
                "mmproj": sorted(self.gguf_shapes("mmproj").items()),
            }
        )
        return hashlib.sha256(text.encode()).hexdigest()[:16]


def stand_in_tokenizer(family: str) -> Any:
    from impkit.model.tokenizer import family_tokenizer, train_bpe

    return family_tokenizer(train_bpe(list(_CORPUS) * 4, 400), family)


def plan_paper_size(
    name: str,
    profile: PaperProfile,
    presets: Mapping[str, Any],
    *,
    llm_layers: int | None = None,
    vision_layers: int | None = None,
) -> PaperSizePlan:
    """Shapes and names of the profile's pair; ``*_layers`` reduce depth (tests), nothing else."""
    from transformers import LlavaForConditionalGeneration

    from impkit.model.presets import llava_config
    from impkit.model.tokenizer import IMAGE_TOKEN

    preset = paper_preset(name, profile, presets)
    tok = stand_in_tokenizer(preset.family)
    ids = {"bos_token_id": tok.bos_token_id, "eos_token_id": tok.eos_token_id, "pad_token_id": tok.pad_token_id}
    config = llava_config(
        preset,
        image_token_id=tok.convert_tokens_to_ids(IMAGE_TOKEN),
        special_ids=ids,
        vision_layers=vision_layers,
        llm_layers=llm_layers,
    )
    mmproj_part.check_vision(config)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    state = model.state_dict()
    tied = bool(config.tie_word_embeddings) and "lm_head.weight" in state
    plan = plan_tensors(
        state,
        arch=llm_part.llm_arch(preset.family).arch,
        n_llm_layers=config.text_config.num_hidden_layers,
        n_vision_layers_kept=mmproj_part.vision_layers_kept(config),
        tied_output=tied,
    )
    shapes = {name: tuple(t.shape) for name, t in state.items()}
    return PaperSizePlan(name, preset, config, tok, shapes, plan)


class RandomWeights(Mapping[str, torch.Tensor]):
    """State-dict tensors made on first access: matrices as float16 memory-mapped scratch files
    filled in chunks (uniform noise, std ``std``), vectors in memory (norm scales 1, biases noise).
    Each tensor's values depend only on (seed, its name), not on the order of access."""

    CHUNK = 1 << 24  # values generated per step

    def __init__(
        self,
        shapes: Mapping[str, tuple[int, ...]],
        scratch: Path,
        *,
        seed: int = 0,
        std: float = WEIGHT_STD,
        bar: Any = None,
    ) -> None:
        self.shapes, self.scratch, self.seed, self.std, self.bar = dict(shapes), Path(scratch), seed, std, bar
        self.scratch.mkdir(parents=True, exist_ok=True)
        self._made: dict[str, torch.Tensor] = {}
        self._files = 0

    def __getitem__(self, name: str) -> torch.Tensor:
        if name not in self._made:
            self._made[name] = self._make(name)
        return self._made[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.shapes)

    def __len__(self) -> int:
        return len(self.shapes)

    def _rng(self, name: str) -> np.random.Generator:
        return np.random.default_rng([self.seed, int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "little")])

    def _make(self, name: str) -> torch.Tensor:
        shape, rng = self.shapes[name], self._rng(name)
        half_width = self.std * 3**0.5  # uniform(-a, a) has std a / sqrt(3)
        n = int(np.prod(shape))
        if len(shape) <= 1:
            if "norm" in name and name.endswith(".weight"):
                values = np.ones(n, dtype=np.float32)
            else:
                values = ((rng.random(n, dtype=np.float32) - 0.5) * 2 * half_width).astype(np.float32)
            if self.bar is not None:
                self.bar.update(n * 2)
            return torch.from_numpy(values.reshape(shape))
        self._files += 1
        path = self.scratch / f"{self._files:05d}.f16"
        array = np.memmap(path, dtype=np.float16, mode="w+", shape=shape)
        flat = array.reshape(-1)
        for start in range(0, n, self.CHUNK):
            stop = min(n, start + self.CHUNK)
            flat[start:stop] = (rng.random(stop - start, dtype=np.float32) - 0.5) * (2 * half_width)
            if self.bar is not None:
                self.bar.update((stop - start) * 2)
        return torch.from_numpy(array)


def _fill_llm(writer: gguf.GGUFWriter, plan: PaperSizePlan, state: Mapping[str, torch.Tensor]) -> dict:
    arch, config = plan.arch, plan.config
    writer.add_name(llm_part.gguf_model_name(f"{plan.profile} (paper-size, random weights)", plan.tokenizer))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    hparams = llm_part.add_hparams(writer, arch, config.text_config)
    n_vocab = config.text_config.vocab_size
    tok = llm_part.add_tokenizer(
        writer, plan.tokenizer, family=plan.preset.family, template=plan.preset.template, n_vocab=n_vocab
    )
    llm_part.add_weights(writer, arch, state, plan.plan, config.text_config)
    return {"hparams": hparams, "tokenizer": tok}


def _fill_mmproj(writer: gguf.GGUFWriter, plan: PaperSizePlan, state: Mapping[str, torch.Tensor]) -> dict:
    writer.add_name(f"{plan.profile} vision (paper-size, random weights)")
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    return mmproj_part.add_vision(writer, plan.config, state, plan.plan, image_mean=IMAGE_MEAN, image_std=IMAGE_STD)


def disk_need(plan: PaperSizePlan, levels: Sequence[str]) -> int:
    """Peak bytes under the output folder: the vision file and its scratch weights, and the LLM at
    each level (at most F16's size; the row-thin copies are small)."""
    return 2 * plan.f16_bytes("mmproj") + len(levels) * plan.f16_bytes("llm")


def size_report(sizes: Mapping[str, Mapping[str, int]], table4_gb: Mapping[str, float]) -> dict[str, Any]:
    """Bytes per level with GiB (2^30) and decimal GB, and the ratio to Table 4 where it has one."""
    out = {}
    for level, parts in sizes.items():
        row: dict[str, Any] = {
            "bytes": dict(parts),
            "gib": {k: round(v / GIB, 3) for k, v in parts.items()},
            "gb": {k: round(v / 1e9, 3) for k, v in parts.items()},
        }
        paper = table4_gb.get(level)
        if paper is not None:
            row["table4_gb"] = paper
            row["total_gib_over_table4"] = round(parts["total"] / GIB / paper, 3)
            row["total_gb_over_table4"] = round(parts["total"] / 1e9 / paper, 3)
        out[level] = row
    return out


def _check_disk(name: str, plan: PaperSizePlan, levels: Sequence[str], out_dir: Path) -> None:
    """Fail before writing anything when the files would not fit under ``out_dir``."""
    need, free = disk_need(plan, levels), shutil.disk_usage(out_dir).free
    log.info(
        "%s: %.2f G LLM + %.2f G vision parameters; needs up to %.1f GiB of disk, %.1f GiB free",
        name,
        plan.n_params("llm") / 1e9,
        plan.n_params("mmproj") / 1e9,
        need / GIB,
        free / GIB,
    )
    if need > free:
        raise ExportError(
            f"{name}: writing needs about {need / GIB:.1f} GiB under {out_dir}, only {free / GIB:.1f} GiB free"
        )


def _write_mmproj(
    name: str, plan: PaperSizePlan, work: Path, seed: int, seconds: dict[str, float]
) -> tuple[dict, dict]:
    """The whole F16 vision file of random weights under ``work``, and what its writer reports."""
    facts: dict[str, Any] = {}
    total = 2 * sum(int(np.prod(plan.shapes[hf])) for hf in plan.plan.mmproj)
    t = time.perf_counter()
    with progress(total=total, unit="B", unit_scale=True, desc=f"{name}: random vision weights (f16)") as bar:
        state = RandomWeights(plan.shapes, work / "weights", seed=seed, bar=bar)
        f16 = write_gguf(work / mmproj_filename("F16"), "clip", lambda w: facts.update(_fill_mmproj(w, plan, state)))
    shutil.rmtree(work / "weights", ignore_errors=True)  # the scratch weights are in the file now
    seconds["write_mmproj_f16"] = round(time.perf_counter() - t, 1)
    log.info(
        "%s: wrote %s (%.2f GiB) in %.0f s",
        name,
        mmproj_filename("F16"),
        f16["bytes"] / GIB,
        seconds["write_mmproj_f16"],
    )
    return f16, facts


def thin_shapes(plan: PaperSizePlan) -> dict[str, tuple[int, ...]]:
    """The state's shapes with each LLM matrix cut to ``DISTINCT_ROWS`` rows (its columns kept).
    Where the exporter permutes q/k by attention head (llama's layout) those keep every row."""
    permuted = {
        hf
        for hf, target in plan.plan.llm.items()
        if plan.arch.permute_qk and target.split(".")[-2] in ("attn_q", "attn_k")
    }
    return {
        hf: (min(shape[0], DISTINCT_ROWS), *shape[1:])
        if hf in plan.plan.llm and len(shape) >= 2 and hf not in permuted
        else shape
        for hf, shape in plan.shapes.items()
    }


def repeat_rows(src: Path, dst: Path, shapes: Mapping[str, tuple[int, ...]], *, desc: str) -> dict[str, Any]:
    """Write ``dst`` (atomically): the GGUF ``src`` with the same metadata and tensor types, each
    tensor's rows repeated up to ``shapes[name][0]`` rows (torch order). Quantized rows are copied
    as the blocks they are, so nothing is quantized again."""
    reader = gguf.GGUFReader(str(src))
    arch = reader.fields[gguf.Keys.General.ARCHITECTURE].contents()
    full = []
    for tensor in reader.tensors:
        data = tensor.data
        want = tuple(shapes[tensor.name])
        rows = want[0]
        if data.ndim >= 2 and tuple(int(d) for d in reversed(tensor.shape))[1:] != want[1:]:
            raise ExportError(f"{src.name}: {tensor.name} has shape {tuple(tensor.shape)}, the plan {want}")
        full.append((tensor, (rows, *data.shape[1:])))
    with (
        atomic_path(dst) as tmp,
        progress(total=sum(_nbytes(t.data, s) for t, s in full), unit="B", unit_scale=True, desc=desc) as bar,
    ):
        writer = gguf.GGUFWriter(str(tmp), arch)
        try:
            for field in reader.fields.values():
                if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
                    continue  # written by the writer itself
                kind = field.types[0]
                sub = field.types[-1] if kind == gguf.GGUFValueType.ARRAY else None
                writer.add_key_value(field.name, field.contents(), kind, sub_type=sub)
            for tensor, shape in full:
                writer.add_tensor_info(
                    tensor.name, shape, tensor.data.dtype, _nbytes(tensor.data, shape), tensor.tensor_type
                )
            writer.write_header_to_file()
            writer.write_kv_data_to_file()
            writer.write_ti_data_to_file()
            for tensor, shape in full:
                writer.write_tensor_data(np.resize(tensor.data, shape))
                bar.update(_nbytes(tensor.data, shape))
        finally:
            writer.close()
    return summary(dst, reader)


def _nbytes(data: np.ndarray, shape: tuple[int, ...]) -> int:
    return int(np.prod(shape)) * data.dtype.itemsize


def _write_llm(
    name: str,
    plan: PaperSizePlan,
    work: Path,
    out_dir: Path,
    levels: Sequence[str],
    *,
    seed: int,
    threads: int | None,
    seconds: dict[str, float],
) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    """The LLM at every level in ``out_dir``, from its row-thin copy (module doc), and what the
    exporter reports."""
    facts: dict[str, Any] = {}
    t = time.perf_counter()
    state = RandomWeights(thin_shapes(plan), work / "weights", seed=seed)
    thin = write_gguf(work / "thin-F16.gguf", plan.arch.name, lambda w: facts.update(_fill_llm(w, plan, state)))
    shutil.rmtree(work / "weights", ignore_errors=True)
    seconds["write_llm_thin_f16"] = round(time.perf_counter() - t, 1)
    shapes = plan.gguf_shapes("llm")
    llm: dict[str, dict[str, Any]] = {}
    for level in levels:
        t = time.perf_counter()
        src = Path(thin["path"])
        if level != "F16":
            src = Path(quantize(src, work / f"thin-{level}.gguf", level, threads=threads)["path"])
        llm[level] = {
            **repeat_rows(src, out_dir / llm_filename(level), shapes, desc=f"{name}: {llm_filename(level)}"),
            "level": level,
        }
        seconds[f"write_llm_{level}"] = round(time.perf_counter() - t, 1)
        log.info(
            "%s: %s %.2f GiB in %.0f s",
            name,
            llm_filename(level),
            llm[level]["bytes"] / GIB,
            seconds[f"write_llm_{level}"],
        )
    return llm, facts


def _final_mmproj(
    f16: dict[str, Any], out_dir: Path, level: str, threads: int | None, seconds: dict[str, float]
) -> dict[str, Any]:
    """The vision file at ``level`` in ``out_dir``: the F16 file moved there, or quantized from it."""
    if level == "F16":
        os.replace(f16["path"], out_dir / mmproj_filename("F16"))
        return {**summary(out_dir / mmproj_filename("F16")), "level": "F16"}
    t = time.perf_counter()
    mmproj = quantize(f16["path"], out_dir / mmproj_filename(level), level, threads=threads)
    seconds[f"quantize_mmproj_{level}"] = round(time.perf_counter() - t, 1)
    return mmproj


def write_paper_size(
    name: str,
    profile: PaperProfile,
    out_dir: str | os.PathLike,
    *,
    presets: Mapping[str, Any],
    levels: Sequence[str] = ("Q4_K_M",),
    mmproj_level: str = "F16",
    seed: int = 0,
    threads: int | None = None,
    llm_layers: int | None = None,
    vision_layers: int | None = None,
) -> dict[str, Any]:
    """Write profile ``name``'s ``llm-<LEVEL>.gguf`` for each level and ``mmproj-<LEVEL>.gguf`` into
    ``out_dir``, plus
    ``paper-size.json`` (the record returned: plan digest, tensor counts, sizes vs Table 4, times)."""
    levels = list(dict.fromkeys(levels))
    if not levels:
        raise ExportError("no quantization levels given")
    for level in (*levels, mmproj_level):
        ftype(level)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    plan = plan_paper_size(name, profile, presets, llm_layers=llm_layers, vision_layers=vision_layers)
    _check_disk(name, plan, levels, out_dir)
    seconds: dict[str, float] = {}
    with tempfile.TemporaryDirectory(prefix=".paper-size-", dir=out_dir) as work:
        mmproj_f16, vision_facts = _write_mmproj(name, plan, Path(work), seed, seconds)
        mmproj = _final_mmproj(mmproj_f16, out_dir, mmproj_level, threads, seconds)
        llm, llm_facts = _write_llm(
            name, plan, Path(work), out_dir, levels, seed=seed, threads=threads, seconds=seconds
        )
    facts = {"mmproj": vision_facts, "llm": llm_facts}
    sizes = {
        lv: {"llm": llm[lv]["bytes"], "mmproj": mmproj["bytes"], "total": llm[lv]["bytes"] + mmproj["bytes"]}
        for lv in levels
    }
    seconds["total"] = round(time.perf_counter() - start, 1)
    record = {
        "profile": name,
        "digest": plan.digest(),
        "seed": seed,
        "weight_std": WEIGHT_STD,
        "llm_distinct_rows": DISTINCT_ROWS,
        "family": plan.preset.family,
        "arch": plan.arch.name,
        "llm_params": plan.n_params("llm"),
        "vision_params": plan.n_params("mmproj"),
        "image_tokens": facts["mmproj"]["image_tokens"],
        "vision_layers": facts["mmproj"]["vision_layers"],
        "hparams": facts["llm"]["hparams"],
        "tokenizer": facts["llm"]["tokenizer"],
        "llm": {lv: {**rec, "path": Path(rec["path"]).name} for lv, rec in llm.items()},
        "mmproj": {**mmproj, "path": Path(mmproj["path"]).name},
        "sizes": size_report(sizes, profile.table4_gb),
        "seconds": seconds,
    }
    write_json(out_dir / RECORD, record)
    return record


def existing_paper_size(
    name: str,
    profile: PaperProfile,
    out_dir: str | os.PathLike,
    *,
    presets: Mapping[str, Any],
    levels: Sequence[str],
    seed: int = 0,
    llm_layers: int | None = None,
    vision_layers: int | None = None,
) -> dict[str, Any] | None:
    """The record of a pair already in ``out_dir`` with this profile's shapes (at the given depth),
    seed and every level (files present at their recorded sizes), else None."""
    out_dir = Path(out_dir)
    path = out_dir / RECORD
    if not path.is_file():
        return None
    record = json.loads(path.read_text(encoding="utf-8"))
    plan = plan_paper_size(name, profile, presets, llm_layers=llm_layers, vision_layers=vision_layers)
    if record.get("digest") != plan.digest() or record.get("seed") != seed:
        return None
    files = [(out_dir / record["mmproj"]["path"], record["mmproj"]["bytes"])]
    for level in levels:
        if level not in record.get("llm", {}):
            return None
        files.append((out_dir / record["llm"][level]["path"], record["llm"][level]["bytes"]))
    if all(p.is_file() and p.stat().st_size == n for p, n in files):
        return record
    return None

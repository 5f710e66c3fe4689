"""Runners measure the protocol on a device; device profiles name a runner kind and its settings.

A ``DeviceProfile`` (``impkit.config``) is plain data (from ``params.yaml: latency.devices``): a name, a runner kind, a
thread count and free-form options. ``RUNNERS`` maps the kind to a ``LatencyRunner`` subclass;
``runner_for(profile)`` builds it (an unknown kind or option is a ``ConfigError`` naming the known
ones). Two kinds exist:

* ``llamacpp``: llama-cpp-python on this machine (``impkit.llamacpp.GGUFSession``), a GGUF pair;
* ``torch``: a PyTorch release folder on this machine, fp32 on the CPU by default.

Adding a device (e.g. a phone over ``adb``): subclass ``LatencyRunner`` in a new module, set
``kind = "adb"``, ``formats = ("gguf",)`` and the option names it takes in ``options`` (say
``serial``, ``remote_dir``, ``binary``), decorate it with ``@register_runner`` and import the
module from ``impkit/latency/__init__.py``. Implement ``load(target)`` to push the files and return
a ``LoadedModel`` whose ``run_once(protocol)`` runs one inference on the device and returns a
``RunTiming`` built from the device's own timers (e.g. a small C++ driver around llama.cpp's mtmd API
that prints the stage times; llama.cpp's CLI tools do not split T_VE from prompt decoding), and
``close()`` to clean up; override ``environment()`` to describe the device (``adb shell cat
/proc/cpuinfo``, ``getprop ro.soc.model``) instead of this host. ``measure`` (warm-up, runs,
summary) is shared and should not change, so figures stay comparable across devices. Then list a
profile ``{name: sd8gen3, runner: adb, threads: 4, options: {serial: ...}}`` in params.yaml.
"""

from __future__ import annotations

import abc
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from impkit.config import ConfigError, DeviceProfile
from impkit.latency.protocol import Protocol, RunTiming, cpu_info, prompt_ids, protocol_image, software_info, summarize
from impkit.progress import progress

# ---------------------------------------------------------------------------------------------
# What is measured


@dataclass(frozen=True)
class GGUFPair:
    """An LLM GGUF at some quantization level and its vision mmproj."""

    name: str
    llm: Path
    mmproj: Path
    level: str
    format: ClassVar[str] = "gguf"

    def describe(self) -> dict[str, Any]:
        sizes = {part: Path(p).stat().st_size for part, p in (("llm", self.llm), ("mmproj", self.mmproj))}
        return {
            "format": self.format,
            "name": self.name,
            "level": self.level,
            "llm": str(self.llm),
            "mmproj": str(self.mmproj),
            "bytes": {**sizes, "total": sum(sizes.values())},
        }


@dataclass(frozen=True)
class TorchRelease:
    """A release folder (``impkit.release``) run by transformers."""

    name: str
    folder: Path
    format: ClassVar[str] = "torch"

    def describe(self) -> dict[str, Any]:
        return {"format": self.format, "name": self.name, "folder": str(self.folder)}


Target = GGUFPair | TorchRelease


class LoadedModel(abc.ABC):
    """A model loaded on a device (loading is not timed); ``run_once`` times one inference."""

    @abc.abstractmethod
    def run_once(self, protocol: Protocol) -> RunTiming: ...

    def close(self) -> None:  # noqa: B027  (optional hook)
        pass

    def __enter__(self) -> LoadedModel:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class LatencyRunner(abc.ABC):
    kind: ClassVar[str]
    formats: ClassVar[tuple[str, ...]]  # the Target formats it runs
    options: ClassVar[tuple[str, ...]] = ()  # option names a profile may set

    def __init__(self, profile: DeviceProfile) -> None:
        unknown = sorted(set(profile.options) - set(self.options))
        if unknown:
            raise ConfigError(
                f"latency device '{profile.name}': unknown option(s) {unknown} for runner "
                f"'{self.kind}'; known: {list(self.options)}"
            )
        self.profile = profile
        self.threads = profile.resolved_threads()

    @abc.abstractmethod
    def load(self, target: Target) -> LoadedModel: ...

    def environment(self) -> dict[str, Any]:
        """The device the figures come from (this host for the local runners)."""
        return {
            "cpu": cpu_info(),
            "software": software_info(llama_cpp=self.kind == "llamacpp", torch=self.kind == "torch"),
        }

    def accepts(self, target: Target) -> bool:
        return target.format in self.formats

    def measure(self, target: Target, protocol: Protocol) -> dict[str, Any]:
        """Load once, ``protocol.warmup`` untimed-for-the-summary runs, then ``protocol.runs``."""
        if not self.accepts(target):
            raise ConfigError(f"runner '{self.kind}' runs {list(self.formats)} models, not {target.format!r}")
        start = time.perf_counter()
        with self.load(target) as model:
            load_s = time.perf_counter() - start
            timings = [
                model.run_once(protocol)
                for _ in progress(range(protocol.warmup + protocol.runs), desc=f"{self.profile.name}: {target.name}")
            ]
        return {
            "device": self.profile.describe(),
            "model": target.describe(),
            "protocol": protocol.describe(),
            "environment": self.environment(),
            "load_s": round(load_s, 3),
            "summary": summarize(timings[protocol.warmup :], timings[: protocol.warmup]),
        }


RUNNERS: dict[str, type[LatencyRunner]] = {}


def register_runner(cls: type[LatencyRunner]) -> type[LatencyRunner]:
    if cls.kind in RUNNERS and RUNNERS[cls.kind] is not cls:
        raise ValueError(f"runner kind '{cls.kind}' is already registered by {RUNNERS[cls.kind].__name__}")
    RUNNERS[cls.kind] = cls
    return cls


def runner_class(kind: str) -> type[LatencyRunner]:
    try:
        return RUNNERS[kind]
    except KeyError:
        raise ConfigError(f"unknown latency runner kind '{kind}'; known kinds: {sorted(RUNNERS)}") from None


def runner_for(profile: DeviceProfile) -> LatencyRunner:
    return runner_class(profile.runner)(profile)


def check_devices(devices: Sequence[DeviceProfile]) -> None:
    """Build each device's runner once, so an unknown kind or option fails as the section loads,
    named, rather than after the measurements of the devices before it (the config layer does not
    know the runners)."""
    for device in devices:
        runner_for(device)


# ---------------------------------------------------------------------------------------------
# llama.cpp on this machine


def mmproj_image_size(path: str | os.PathLike) -> int:
    """The vision input size recorded in an mmproj file (``clip.vision.image_size``)."""
    import gguf

    field_ = gguf.GGUFReader(str(path)).fields.get("clip.vision.image_size")
    if field_ is None:
        raise ConfigError(f"{path}: no clip.vision.image_size (not an mmproj file?)")
    return int(field_.contents())


class LlamaCppModel(LoadedModel):
    """A GGUF pair in a ``GGUFSession``; every stage ends with ``llama_synchronize`` (inside the
    session's steps), so the wall-clock stage times are the compute times."""

    def __init__(self, target: GGUFPair, threads: int, options: Mapping[str, Any]) -> None:
        from impkit.llamacpp import GGUFSession

        self.image = protocol_image(mmproj_image_size(target.mmproj))
        self.session = GGUFSession(
            target.llm,
            target.mmproj,
            n_threads=threads,
            n_ctx=int(options.get("n_ctx", 2048)),
            n_batch=int(options.get("n_batch", 512)),
            verbose=bool(options.get("verbose", False)),
        )
        self._ids: dict[int, list[int]] = {}

    def close(self) -> None:
        self.session.close()

    def prompt_ids(self, n: int) -> list[int]:
        if n not in self._ids:
            self._ids[n] = prompt_ids(self.session.tokenize, n)
        return self._ids[n]

    def perf(self) -> dict[str, Any]:
        import llama_cpp

        data = llama_cpp.llama_perf_context(self.session.llama._ctx.ctx)
        return {
            "t_p_eval_ms": data.t_p_eval_ms,
            "n_p_eval": data.n_p_eval,
            "t_eval_ms": data.t_eval_ms,
            "n_eval": data.n_eval,
        }

    def run_once(self, protocol: Protocol) -> RunTiming:
        import llama_cpp

        s = self.session
        ids = self.prompt_ids(protocol.prompt_tokens)
        s.reset()
        llama_cpp.llama_perf_context_reset(s.llama._ctx.ctx)
        start = time.perf_counter()
        with s.chunks(s.marker, self.image) as chunks:  # image preprocessing happens here (T_other)
            if [c.kind for c in chunks] != ["image"]:
                raise RuntimeError(f"expected one image chunk for the bare marker, got {[c.kind for c in chunks]}")
            chunk = chunks[0]
            t0 = time.perf_counter()
            embeddings = s.encode_image(chunk)
            t1 = time.perf_counter()
            s.decode_image(chunk, embeddings)
            t2 = time.perf_counter()
        n_image = s.n_past
        t3 = time.perf_counter()
        s.eval_text(ids)
        t4 = time.perf_counter()
        for _ in range(protocol.gen_tokens):
            s.decode_token(s.next_greedy())
        t5 = time.perf_counter()
        n_gen = s.n_past - n_image - len(ids)
        return RunTiming(
            n_image=n_image,
            n_text=len(ids),
            n_gen=n_gen,
            t_ve=t1 - t0,
            t_prompt=(t2 - t1) + (t4 - t3),
            t_gen=t5 - t4,
            wall=t5 - start,
            detail={"image_decode_s": t2 - t1, "text_decode_s": t4 - t3, "llama_perf": self.perf()},
        )


@register_runner
class LocalLlamaCppRunner(LatencyRunner):
    """llama-cpp-python on this machine, ``profile.threads`` threads for the LLM and the vision file."""

    kind = "llamacpp"
    formats = ("gguf",)
    options = ("n_ctx", "n_batch", "verbose")

    def load(self, target: Target) -> LoadedModel:
        return LlamaCppModel(target, self.threads, self.profile.options)


# ---------------------------------------------------------------------------------------------
# PyTorch on this machine


class TorchModel(LoadedModel):
    """A release folder in transformers: T_VE = vision tower + projector (``get_image_features``),
    the prompt = one forward of the language model over [image features; text embeddings] with a
    KV cache, generation = single-token forwards with that cache, greedy."""

    def __init__(self, target: TorchRelease, threads: int, options: Mapping[str, Any]) -> None:
        import torch

        from impkit.release import Release

        release = Release.open(target.folder)
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[options.get("dtype", "fp32")]
        self._threads = torch.get_num_threads()
        torch.set_num_threads(threads)
        self.torch = torch
        self.model, self.tokenizer = release.load(dtype=dtype)
        self.model.eval()
        self.processor = release.image_processor()
        self.image = protocol_image(release.image_size)
        self.dtype = dtype

    def close(self) -> None:
        self.torch.set_num_threads(self._threads)

    def run_once(self, protocol: Protocol) -> RunTiming:
        torch = self.torch
        ids = prompt_ids(
            lambda text: self.tokenizer(text, add_special_tokens=False)["input_ids"], protocol.prompt_tokens
        )
        llava, lm, head = self.model.model, self.model.model.language_model, self.model.lm_head
        with torch.inference_mode():
            start = time.perf_counter()
            pixels = self.processor([self.image]).to(self.dtype)
            text = llava.get_input_embeddings()(torch.tensor([ids]))
            t0 = time.perf_counter()
            features = llava.get_image_features(pixel_values=pixels).pooler_output[0]
            t1 = time.perf_counter()
            embeds = torch.cat([features[None].to(text.dtype), text], dim=1)
            out = lm(inputs_embeds=embeds, use_cache=True)
            logits = head(out.last_hidden_state[:, -1])
            t2 = time.perf_counter()
            cache = out.past_key_values
            for _ in range(protocol.gen_tokens):
                token = logits.argmax(-1, keepdim=True)
                out = lm(input_ids=token, past_key_values=cache, use_cache=True)
                cache = out.past_key_values
                logits = head(out.last_hidden_state[:, -1])
            t3 = time.perf_counter()
        n_image = features.shape[0]
        n_gen = cache.get_seq_length() - n_image - len(ids)
        return RunTiming(
            n_image=n_image,
            n_text=len(ids),
            n_gen=n_gen,
            t_ve=t1 - t0,
            t_prompt=t2 - t1,
            t_gen=t3 - t2,
            wall=t3 - start,
        )


@register_runner
class LocalTorchRunner(LatencyRunner):
    """A PyTorch release on this machine's CPU, ``profile.threads`` torch threads; ``dtype`` option
    fp32 (default, the release as trained and evaluated) or bf16."""

    kind = "torch"
    formats = ("torch",)
    options = ("dtype",)

    def __init__(self, profile: DeviceProfile) -> None:
        super().__init__(profile)
        if profile.options.get("dtype", "fp32") not in ("fp32", "bf16"):
            raise ConfigError(
                f"latency device '{profile.name}': dtype must be fp32 or bf16, got {profile.options['dtype']!r}"
            )

    def load(self, target: Target) -> LoadedModel:
        return TorchModel(target, self.threads, self.profile.options)

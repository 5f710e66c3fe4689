"""A loaded release answering a chat, and the pool of loaded releases.

The answer is made exactly as the evaluation's llama.cpp runner makes it (``LlamaCppRunner``: the
release's own chat template rendered by ``impkit.data.templates``, the image prepared by the
project's ``ImageProcessor``, the runner's stop tokens and stop strings, greedy decoding on
``GGUFSession``), so at temperature 0 a chat gives the answer ``impkit evaluate --gguf`` scores;
temperature > 0 samples from the same logits. Tokens are produced one at a time on a worker thread,
which checks a cancel flag between tokens: a client that leaves, or a request past its deadline,
stops the generation within one token.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from impkit.chat.catalog import CatalogEntry
from impkit.chat.errors import ChatError
from impkit.data.templates import TemplateError, render_chat_prompt
from impkit.eval.runners import LlamaCppRunner
from impkit.eval.runners.base import clean_answer
from impkit.model.tokenizer import IMAGE_TOKEN


@dataclass
class Timings:
    t_ve_s: float = 0.0  # vision encoder + projector (paper Table 4's T_VE)
    t_prompt_s: float = 0.0  # reading the prompt's text and image tokens into the LLM
    t_gen_s: float = 0.0
    prompt_tokens: int = 0  # positions, image tokens included
    completion_tokens: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "t_ve_s": round(self.t_ve_s, 5),
            "t_prompt_s": round(self.t_prompt_s, 5),
            "t_gen_s": round(self.t_gen_s, 5),
            "s_prompt_tps": round(self.prompt_tokens / self.t_prompt_s, 1) if self.t_prompt_s else None,
            "s_gen_tps": round(self.completion_tokens / self.t_gen_s, 1) if self.t_gen_s else None,
            "t_total_s": round(self.t_ve_s + self.t_prompt_s + self.t_gen_s, 5),
        }


@dataclass
class Request:
    turns: list[tuple[str, str]]  # ("user" | "assistant", text), alternating, ending with a user turn
    image: Image.Image | None
    system: str | None
    max_tokens: int | None  # None: as many as the context leaves, up to default_max_tokens
    default_max_tokens: int
    temperature: float
    top_p: float
    stop: Sequence[str]
    seed: int | None
    cancel: threading.Event = field(default_factory=threading.Event)
    deadline: float = float("inf")  # time.monotonic() past which generation stops


@dataclass
class Result:
    text: str
    finish_reason: str  # "stop" | "length" | "cancelled" | "timeout"
    timings: Timings


class _Stream:
    """Text safe to show so far: everything before the earliest stop string, minus a tail that could
    still become a stop string, a half UTF-8 character or trailing space; stripped as ``clean_answer``
    strips, so the streamed text adds up to the final answer."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = [s for s in stops if s]
        self.sent = ""

    def visible(self, text: str, final: bool) -> tuple[str, bool]:
        """(the text to show, whether a stop string was reached)."""
        cut = min((at for at in (text.find(s) for s in self.stops) if at != -1), default=-1)
        if cut != -1:
            return text[:cut].strip(), True
        if final:
            return text.strip(), False
        hold = 0
        for stop in self.stops:
            for n in range(min(len(stop) - 1, len(text)), hold, -1):
                if stop.startswith(text[-n:]):
                    hold = n
                    break
        text = text[: len(text) - hold] if hold else text
        if text.endswith("\ufffd"):  # half of a multi-byte character
            text = text[:-1]
        return text.lstrip().rstrip(), False

    def delta(self, visible: str) -> str:
        if not visible.startswith(self.sent):  # cannot happen with the rules above; never send a rewrite
            return ""
        out, self.sent = visible[len(self.sent) :], visible
        return out


class ChatModel:
    """One release at one GGUF level, loaded; answers one chat at a time."""

    def __init__(self, entry: CatalogEntry, *, n_ctx: int, threads: int | None) -> None:
        self.entry = entry
        self.runner = LlamaCppRunner.from_export(
            entry.llm.parent, entry.level, entry.release_dir, n_threads=threads, n_ctx=n_ctx
        )
        self.session = self.runner.session
        self.n_ctx = n_ctx
        self.bytes = entry.file_bytes
        self.in_use = 0

    def close(self) -> None:
        self.runner.close()

    def prompt(self, request: Request) -> str:
        try:
            text = render_chat_prompt(
                self.runner.template, request.turns, request.image is not None, system=request.system
            )
        except TemplateError as exc:
            raise ChatError(400, str(exc), param="messages") from None
        return text.replace(IMAGE_TOKEN, self.session.marker)

    def _next_token(self, request: Request, rng: np.random.Generator) -> int:
        if request.temperature == 0:
            return self.session.next_greedy()
        logits = self.session.last_logits().astype(np.float64) / request.temperature
        probs = np.exp(logits - logits.max())
        probs /= probs.sum()
        if request.top_p < 1:
            order = np.argsort(-probs)
            keep = order[: int(np.searchsorted(np.cumsum(probs[order]), request.top_p)) + 1]
            mask = np.zeros_like(probs)
            mask[keep] = probs[keep]
            probs = mask / mask.sum()
        return int(rng.choice(len(probs), p=probs))

    def generate(self, request: Request, on_ready: Callable[[int], None], on_text: Callable[[str], None]) -> Result:
        """Read the prompt (``on_ready(prompt_tokens)`` once it is read), then generate, calling
        ``on_text`` with each new piece of the answer."""
        session, timings = self.session, Timings()
        text = self.prompt(request)
        # the project's preparation (pad with the mean colour or squash, resize to the model's input),
        # as the runner does: llama.cpp then resizes nothing and sees the evaluation's pixels
        image = self.runner.processor.prepare(request.image) if request.image is not None else None
        session.reset()
        with session.chunks(text, image) as chunks:
            timings.prompt_tokens = n_prompt = sum(c.n_tokens for c in chunks)
            room = self.n_ctx - n_prompt
            if request.max_tokens is not None and request.max_tokens > room:
                raise ChatError(
                    400,
                    f"the prompt takes {n_prompt} of the model's {self.n_ctx} context positions; max_tokens "
                    f"{request.max_tokens} does not fit (at most {max(room, 0)})",
                    param="messages" if room <= 0 else "max_tokens",
                    code="context_length_exceeded",
                )
            if room <= 0:
                raise ChatError(
                    400,
                    f"the prompt takes {n_prompt} positions, over the model's context of {self.n_ctx}",
                    param="messages",
                    code="context_length_exceeded",
                )
            for chunk in chunks:
                if request.cancel.is_set():
                    return Result("", "cancelled", timings)
                start = time.perf_counter()
                if chunk.kind == "text":
                    session.eval_text(chunk.tokens)
                    timings.t_prompt_s += time.perf_counter() - start
                else:
                    embeddings = session.encode_image(chunk)
                    encoded = time.perf_counter()
                    timings.t_ve_s += encoded - start
                    session.decode_image(chunk, embeddings)
                    timings.t_prompt_s += time.perf_counter() - encoded
        on_ready(n_prompt)
        max_tokens = request.max_tokens if request.max_tokens is not None else min(request.default_max_tokens, room)
        stream = _Stream((*self.runner.stop_strings, *request.stop))
        stop_ids = set(self.runner.stop_ids)
        rng = np.random.default_rng(request.seed)
        tokens: list[int] = []
        reason = "length"
        start = time.perf_counter()
        # The evaluation runner's greedy loop (GGUFSession.greedy), with a cancel check and the text
        # streamed: a stop token ends the answer and is not part of it; the last token is not decoded.
        while len(tokens) < max_tokens:
            if request.cancel.is_set():
                reason = "cancelled"
                break
            if time.monotonic() > request.deadline:
                reason = "timeout"
                break
            token = self._next_token(request, rng)
            if token in stop_ids:
                reason = "stop"
                break
            tokens.append(token)
            visible, stopped = stream.visible(session.detokenize(tokens), final=False)
            piece = stream.delta(visible)
            if piece:
                on_text(piece)
            if stopped:
                reason = "stop"
                break
            if len(tokens) < max_tokens:
                session.decode_token(token)
        timings.t_gen_s = time.perf_counter() - start
        timings.completion_tokens = len(tokens)
        answer = clean_answer(session.detokenize(tokens), stream.stops)
        piece = stream.delta(answer)
        if piece:
            on_text(piece)
        return Result(answer, reason, timings)


class ModelPool:
    """Models load on first use and stay loaded; loading one that would take the loaded files past
    ``budget_bytes`` first unloads the least recently used models nobody is using."""

    def __init__(self, *, budget_bytes: int, n_ctx: int, threads: int | None) -> None:
        self.budget_bytes, self.n_ctx, self.threads = budget_bytes, n_ctx, threads
        self.loaded: OrderedDict[str, ChatModel] = OrderedDict()
        self.unloads = 0
        self._lock = threading.Lock()

    @property
    def loaded_bytes(self) -> int:
        return sum(m.bytes for m in self.loaded.values())

    def acquire(self, entry: CatalogEntry, retry_after: int) -> ChatModel:
        """The loaded model of ``entry`` (loading it now if need be), marked in use; blocking."""
        with self._lock:
            model = self.loaded.get(entry.id)
            if model is None:
                need = entry.file_bytes
                if need > self.budget_bytes:
                    raise ChatError(
                        503,
                        f"model {entry.id} ({need / 1e6:.0f} MB) is larger than the memory budget "
                        f"({self.budget_bytes / 1e6:.0f} MB, chat.memory_budget_mb)",
                        code="over_memory_budget",
                    )
                for other_id, other in list(self.loaded.items()):  # least recently used first
                    if self.loaded_bytes + need <= self.budget_bytes:
                        break
                    if other.in_use == 0:
                        del self.loaded[other_id]
                        other.close()
                        self.unloads += 1
                if self.loaded_bytes + need > self.budget_bytes:
                    raise ChatError(
                        503,
                        "the memory budget is taken by models answering other requests; retry shortly",
                        code="over_memory_budget",
                        headers={"Retry-After": str(retry_after)},
                    )
                model = ChatModel(entry, n_ctx=self.n_ctx, threads=self.threads)
                self.loaded[entry.id] = model
            self.loaded.move_to_end(entry.id)
            model.in_use += 1
            return model

    def release(self, model: ChatModel) -> None:
        with self._lock:
            model.in_use -= 1

    def close(self) -> None:
        with self._lock:
            for model in self.loaded.values():
                model.close()
            self.loaded.clear()

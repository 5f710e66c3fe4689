"""One GGUF model pair (LLM + mmproj) run by llama.cpp through llama-cpp-python, step by step.

The evaluation runner, the parity check and the latency harness all drive llama.cpp the same way,
so that a number from one is comparable with the others:

* the prompt is split by llama.cpp's own multimodal tokenizer (``mtmd_tokenize``) into text and
  image chunks; text chunks are decoded with ``Llama.eval`` and image chunks are encoded by the
  vision file (``mtmd_encode_chunk``: ViT + projector) and then decoded into the LLM
  (``mtmd_helper_decode_image_chunk``) — the two steps separate so T_VE can be timed on its own;
* images are handed over already square and at the model's input size (the project's own
  ``ImageProcessor.prepare``): llama.cpp then resizes nothing, so both backends see the same pixels
  (llama.cpp would pad with its own colour otherwise; field notes §3);
* generation is a plain greedy loop over the last logits, one token per decode, which is what makes
  a fixed number of generated tokens possible (``create_completion`` can overshoot ``max_tokens``).

llama.cpp attributes its perf counters only when it synchronises, so every step here ends with
``llama_synchronize`` (field notes §4).
"""

from __future__ import annotations

import contextlib
import ctypes
import logging
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from impkit.errors import ImpkitError

log = logging.getLogger(__name__)


class GGUFRunError(ImpkitError, RuntimeError):
    """llama.cpp refused a file or a step (the message says which)."""


@dataclass
class PromptChunk:
    """A piece of a tokenized prompt: text tokens, or one image's placeholder positions."""

    kind: str  # "text" | "image"
    tokens: list[int]  # text tokens; empty for an image
    n_tokens: int  # positions the chunk takes in the context (image: one per visual token)
    handle: int | None = None  # the mtmd chunk (image only), valid until the chunks are freed


@contextlib.contextmanager
def _quiet(enabled: bool) -> Iterator[None]:
    """llama.cpp prints its load log on the C stderr; keep it out of stage logs unless verbose."""
    if not enabled:
        yield
        return
    from llama_cpp._utils import suppress_stdout_stderr

    with suppress_stdout_stderr(disable=False):
        yield


class GGUFSession:
    """An LLM GGUF (and optionally its mmproj) loaded once and reused prompt after prompt."""

    def __init__(
        self,
        llm_path: str | os.PathLike,
        mmproj_path: str | os.PathLike | None = None,
        *,
        n_threads: int | None = None,
        n_ctx: int = 2048,
        n_batch: int = 512,
        logits_all: bool = False,
        verbose: bool = False,
    ) -> None:
        import llama_cpp
        from llama_cpp import mtmd_cpp

        self._llama_cpp, self._mtmd = llama_cpp, mtmd_cpp
        llm_path = Path(llm_path)
        for path in (llm_path, mmproj_path):
            if path is not None and not Path(path).is_file():
                raise FileNotFoundError(f"{path} not found")
        self.n_threads = n_threads or os.cpu_count() or 1
        self.verbose = verbose
        with _quiet(not verbose):
            self.llama = llama_cpp.Llama(
                model_path=str(llm_path),
                n_ctx=n_ctx,
                n_batch=n_batch,
                n_ubatch=n_batch,
                n_threads=self.n_threads,
                n_threads_batch=self.n_threads,
                logits_all=logits_all,
                verbose=verbose,
            )
        self.mtmd_ctx = None
        # mtmd logs a line per image through its own callbacks, straight to stderr; route them through
        # llama-cpp-python's, which keeps only errors unless the Llama was made verbose
        from llama_cpp._logger import llama_log_callback

        mtmd_cpp.mtmd_log_set(llama_log_callback, None)
        mtmd_cpp.mtmd_helper_log_set(llama_log_callback, None)
        if mmproj_path is not None:
            params = mtmd_cpp.mtmd_context_params_default()
            params.use_gpu = False
            params.print_timings = verbose
            params.n_threads = self.n_threads
            params.warmup = False
            with _quiet(not verbose):
                self.mtmd_ctx = mtmd_cpp.mtmd_init_from_file(str(mmproj_path).encode(), self.llama.model, params)
            if not self.mtmd_ctx:
                self.llama.close()
                raise GGUFRunError(f"llama.cpp could not load the vision file {mmproj_path} for {llm_path}")
        self.marker = mtmd_cpp.mtmd_default_marker().decode()
        self.n_vocab = self.llama.n_vocab()
        # one-token batches for generation: llama_batch_get_one keeps a raw pointer to its tokens, so
        # the array must outlive the decode (a temporary would be freed first)
        self._one_token = (llama_cpp.llama_token * 1)()
        self._kept_prefix: list[int] | None = None  # the first text chunk the KV cache holds (eval_prompt)

    # -- lifetime ---------------------------------------------------------------------------

    def close(self) -> None:
        if self.mtmd_ctx:
            self._mtmd.mtmd_free(self.mtmd_ctx)
            self.mtmd_ctx = None
        if self.llama is not None:
            self.llama.close()
            self.llama = None

    def __enter__(self) -> GGUFSession:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- state ------------------------------------------------------------------------------

    @property
    def n_past(self) -> int:
        return self.llama.n_tokens

    def reset(self) -> None:
        """Forget the context: the next prompt starts at position 0 with an empty KV cache."""
        self.llama.reset()
        self.llama._ctx.kv_cache_clear()
        self._kept_prefix = None

    def synchronize(self) -> None:
        self._llama_cpp.llama_synchronize(self.llama._ctx.ctx)

    # -- prompt -----------------------------------------------------------------------------

    def tokenize(self, text: str) -> list[int]:
        """Text tokens as the release's HF tokenizer gives them with ``add_special_tokens=False``:
        no BOS added, special tokens (template markers) parsed."""
        return self.llama.tokenize(text.encode(), add_bos=False, special=True)

    @contextlib.contextmanager
    def chunks(self, text: str, image: Image.Image | None) -> Iterator[list[PromptChunk]]:
        """``text`` (with ``self.marker`` where the image goes) split by llama.cpp's multimodal
        tokenizer; image handles stay valid inside the ``with`` block."""
        mtmd = self._mtmd
        has_marker = self.marker in text
        if (image is not None) != has_marker:
            raise GGUFRunError("a prompt needs exactly one image marker when an image is given, and none otherwise")
        if image is not None and not self.mtmd_ctx:
            raise GGUFRunError("this session has no vision file (mmproj) to encode an image with")
        if image is None:
            tokens = self.tokenize(text)
            yield [PromptChunk("text", tokens, len(tokens))]
            return
        rgb = np.ascontiguousarray(np.asarray(image.convert("RGB"), dtype=np.uint8))
        buffer = (ctypes.c_uint8 * rgb.size).from_buffer_copy(rgb.tobytes())
        bitmap = mtmd.mtmd_bitmap_init(rgb.shape[1], rgb.shape[0], buffer)
        handles = mtmd.mtmd_input_chunks_init()
        try:
            encoded = text.encode()
            text_input = mtmd.mtmd_input_text()
            text_input.text, text_input.text_len = encoded, len(encoded)
            text_input.add_special, text_input.parse_special = False, True
            bitmaps = (mtmd.mtmd_bitmap_p_ctypes * 1)(bitmap)
            status = mtmd.mtmd_tokenize(self.mtmd_ctx, handles, ctypes.byref(text_input), bitmaps, 1)
            if status != 0:
                raise GGUFRunError(f"mtmd_tokenize failed with status {status}")
            out: list[PromptChunk] = []
            for i in range(mtmd.mtmd_input_chunks_size(handles)):
                chunk = mtmd.mtmd_input_chunks_get(handles, i)
                if mtmd.mtmd_input_chunk_get_type(chunk) == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t()
                    ptr = mtmd.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    tokens = [int(ptr[j]) for j in range(n.value)]
                    if tokens:
                        out.append(PromptChunk("text", tokens, len(tokens)))
                else:
                    out.append(PromptChunk("image", [], int(mtmd.mtmd_input_chunk_get_n_tokens(chunk)), chunk))
            yield out
        finally:
            mtmd.mtmd_input_chunks_free(handles)
            mtmd.mtmd_bitmap_free(bitmap)

    def eval_text(self, tokens: Sequence[int]) -> None:
        if self.n_past + len(tokens) > self.llama.n_ctx():
            raise GGUFRunError(f"prompt exceeds the context: {self.n_past + len(tokens)} > {self.llama.n_ctx()}")
        self.llama.eval(list(tokens))
        self.synchronize()

    def encode_image(self, chunk: PromptChunk) -> ctypes.Array:
        """Run the vision file on an image chunk (ViT + projector): the T_VE of the paper's Table 4.
        Returns the embeddings, to be handed to ``decode_image``."""
        status = self._mtmd.mtmd_encode_chunk(self.mtmd_ctx, chunk.handle)
        if status != 0:
            raise GGUFRunError(f"mtmd_encode_chunk failed with status {status}")
        return self._mtmd.mtmd_get_output_embd(self.mtmd_ctx)

    def decode_image(self, chunk: PromptChunk, embeddings: ctypes.Array) -> None:
        """Feed an encoded image's embeddings to the LLM at the current position."""
        if self.n_past + chunk.n_tokens > self.llama.n_ctx():
            raise GGUFRunError(f"prompt exceeds the context: {self.n_past + chunk.n_tokens} > {self.llama.n_ctx()}")
        new_n_past = self._llama_cpp.llama_pos(0)
        status = self._mtmd.mtmd_helper_decode_image_chunk(
            self.mtmd_ctx,
            self.llama._ctx.ctx,
            chunk.handle,
            embeddings,
            self._llama_cpp.llama_pos(self.n_past),
            self._llama_cpp.llama_seq_id(0),
            self.llama.n_batch,
            ctypes.byref(new_n_past),
            self._mtmd.mtmd_helper_post_decode_callback(),
            None,
        )
        if status != 0:
            raise GGUFRunError(f"mtmd_helper_decode_image_chunk failed with status {status}")
        self.llama.n_tokens = new_n_past.value
        self.synchronize()

    def eval_prompt(self, text: str, image: Image.Image | None = None, *, reuse_prefix: bool = False) -> int:
        """Reset, then read the whole prompt; returns its length in positions (image tokens included).

        ``reuse_prefix`` keeps the cache of the prompt's first text chunk when the previous prompt
        began with the same chunk and more chunks follow: benchmark questions share the template's
        system text before the image (32 of a nano question's 77 positions). That chunk is decoded
        as a batch of its own either way, so its cache, and every answer after it, is the same bit
        for bit (tested); only the time differs, so latency measurements never reuse."""
        with self.chunks(text, image) as chunks:
            first = chunks[0]
            if reuse_prefix and self._reusable(chunks):
                self._truncate(len(first.tokens))
                todo = chunks[1:]
            else:
                self.reset()
                todo = chunks
            for chunk in todo:
                if chunk.kind == "text":
                    self.eval_text(chunk.tokens)
                else:
                    self.decode_image(chunk, self.encode_image(chunk))
            self._kept_prefix = list(first.tokens) if first.kind == "text" and len(chunks) > 1 else None
        return self.n_past

    def _reusable(self, chunks: Sequence[PromptChunk]) -> bool:
        first = chunks[0]
        return (
            len(chunks) > 1  # something is decoded after the kept chunk, so the logits are fresh
            and first.kind == "text"
            and first.tokens == self._kept_prefix
            and self.n_past >= len(first.tokens)
        )

    def _truncate(self, n_positions: int) -> None:
        """Forget every position from ``n_positions`` on (the cache before it stays)."""
        if not self.llama._ctx.kv_cache_seq_rm(0, n_positions, -1):
            raise GGUFRunError(f"llama.cpp could not drop the cache after position {n_positions}")
        self.llama.n_tokens = n_positions

    # -- generation -------------------------------------------------------------------------

    def _logits_view(self) -> np.ndarray:
        """The logits after the last decoded position, as a view of llama.cpp's buffer (valid until
        the next decode)."""
        ptr = self._llama_cpp.llama_get_logits_ith(self.llama._ctx.ctx, -1)
        return np.ctypeslib.as_array(ptr, shape=(self.n_vocab,))

    def last_logits(self) -> np.ndarray:
        """Logits after the last decoded position (a copy, float32)."""
        return self._logits_view().copy()

    def next_greedy(self) -> int:
        """The most likely next token (ties to the lowest id, as torch's argmax)."""
        return int(np.argmax(self._logits_view()))

    def decode_token(self, token: int) -> None:
        """Append one token at the next position: llama.cpp's decode called directly, without
        ``Llama.eval``'s batch building and logits copy, which cost more than a nano model's
        forward pass (the latency benchmark compares this loop with a bare one)."""
        if self.n_past + 1 > self.llama.n_ctx():
            raise GGUFRunError(f"generation exceeds the context of {self.llama.n_ctx()} positions")
        self._one_token[0] = token
        status = self._llama_cpp.llama_decode(
            self.llama._ctx.ctx, self._llama_cpp.llama_batch_get_one(self._one_token, 1)
        )
        if status != 0:
            raise GGUFRunError(f"llama_decode failed with status {status} at position {self.n_past}")
        self.llama.input_ids[self.n_past] = token  # keep the Llama object's view of the context
        self.llama.n_tokens += 1
        self.synchronize()

    def greedy(self, max_new_tokens: int, stop_ids: Sequence[int] = ()) -> list[int]:
        """Greedy tokens after the prompt read by ``eval_prompt``; stops after a stop id (not
        included) or ``max_new_tokens``."""
        out: list[int] = []
        stops = set(stop_ids)
        for _ in range(max_new_tokens):
            token = self.next_greedy()
            if token in stops:
                break
            out.append(token)
            if len(out) < max_new_tokens:
                self.decode_token(token)
        return out

    def detokenize(self, tokens: Sequence[int]) -> str:
        return self.llama.detokenize(list(tokens), special=True).decode("utf-8", errors="replace")

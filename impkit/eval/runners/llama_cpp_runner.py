"""Greedy answers from an exported GGUF pair (LLM + mmproj) through llama.cpp's multimodal path.

The same questions, prompts, image preparation and answer cutting as ``TorchRunner``, so the
scorers compare quantization levels and backends on equal terms (paper Table 4's SQA and MMB
columns, here for all ten benchmarks):

* the prompt is the release's chat template rendered by ``impkit.data.templates`` with llama.cpp's
  media marker where ``<image>`` stands, tokenized by the GGUF's own tokenizer (the export tests
  prove it splits text as the release's tokenizer does);
* images are prepared by the project's ``ImageProcessor.prepare`` (pad with the mean colour or
  squash, then resize to the model's input size), so llama.cpp resizes nothing and both backends
  see the same pixels;
* one question at a time: llama.cpp's Python binding decodes one sequence, and at these sizes a
  question costs milliseconds; the template's system text before the image is read once and kept
  in the cache from question to question (``GGUFSession.eval_prompt``'s ``reuse_prefix``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from PIL import Image

from impkit.data.templates import get_template, render_prompt
from impkit.eval.runners.base import Question, Runner, clean_answer, question_image
from impkit.llamacpp import GGUFSession
from impkit.model.image_processing import ImageProcessor
from impkit.model.tokenizer import IMAGE_TOKEN
from impkit.progress import progress
from impkit.release import Release, llm_filename, mmproj_file


class LlamaCppRunner(Runner):
    name = "llama.cpp"

    def __init__(
        self,
        session: GGUFSession,
        *,
        template: str,
        image_size: int,
        image_aspect: str,
        image_root: Path | str | None = None,
        max_new_tokens: int = 8,
        desc: str = "answer",
        source: dict[str, Any] | None = None,
    ) -> None:
        self.session = session
        self.template = get_template(template)
        self.image_size = image_size
        self.image_aspect = image_aspect
        self.image_root = Path(image_root) if image_root is not None else None
        self.max_new_tokens = max_new_tokens
        self.desc = desc
        self.source = dict(source or {})
        # llama.cpp needs the already-square input only; it normalises with the mmproj's mean/std
        self.processor = ImageProcessor(size=image_size, aspect=image_aspect)
        llama = session.llama
        stop_ids = {llama.token_eos()}
        for stop in self.template.stop:  # a stop string that is one special token stops early
            ids = session.tokenize(stop)
            if len(ids) == 1:
                stop_ids.add(ids[0])
        self.stop_ids = sorted(i for i in stop_ids if i is not None and i >= 0)
        eos_text = session.detokenize([llama.token_eos()])
        self.stop_strings = (*self.template.stop, eos_text)

    @classmethod
    def from_export(
        cls,
        gguf_dir: Path | str,
        level: str,
        release: Path | str,
        *,
        image_root: Path | str | None = None,
        max_new_tokens: int = 8,
        n_threads: int | None = None,
        n_ctx: int = 4096,
        logits_all: bool = False,
        desc: str = "answer",
    ) -> LlamaCppRunner:
        """A runner over ``llm-<level>.gguf`` + the mmproj in ``gguf_dir`` (the export stage's folder),
        with the template, image aspect and input size the release folder records.
        ``logits_all`` keeps every position's logits (the parity check); it costs n_ctx x vocab floats."""
        gguf_dir, release = Path(gguf_dir), Release.open(release)
        llm = gguf_dir / llm_filename(level)
        mmproj = mmproj_file(gguf_dir)
        session = GGUFSession(llm, mmproj, n_threads=n_threads, n_ctx=n_ctx, logits_all=logits_all)
        return cls(
            session,
            template=release.template,
            image_size=release.image_size,
            image_aspect=release.image_aspect,
            image_root=image_root,
            max_new_tokens=max_new_tokens,
            desc=desc,
            source={"llm": str(llm), "mmproj": str(mmproj), "level": level, "release": str(release.folder)},
        )

    def close(self) -> None:
        self.session.close()

    def describe(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "model": self.source.get("llm"),
            **{k: v for k, v in self.source.items() if k != "llm"},
            "template": self.template.name,
            "image_size": self.image_size,
            "image_aspect": self.image_aspect,
            "max_new_tokens": self.max_new_tokens,
            "decoding": "greedy",
            "threads": self.session.n_threads,
        }

    def prompt_text(self, question: Question) -> str:
        text = render_prompt(self.template, question.prompt, has_image=question.image is not None)
        return text.replace(IMAGE_TOKEN, self.session.marker)

    def answer(self, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
        answers = []
        bar = progress(total=len(questions), desc=self.desc, unit="q")
        try:
            for question in questions:
                image: Image.Image | None = None
                if question.image is not None:
                    image = self.processor.prepare(
                        question_image(question, self.image_root, self.image_size, blank=blank_images)
                    )
                self.session.eval_prompt(self.prompt_text(question), image, reuse_prefix=True)
                tokens = self.session.greedy(self.max_new_tokens, self.stop_ids)
                answers.append(clean_answer(self.session.detokenize(tokens), self.stop_strings))
                bar.update(1)
        finally:
            bar.close()
        return answers

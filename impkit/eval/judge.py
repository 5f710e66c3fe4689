"""An LLM judge for MM-Vet served by any OpenAI-compatible chat-completions endpoint.

MM-Vet's official number is a GPT-4 grader's 0-1 correctness mark per answer (see
``impkit/eval/benchmarks/mmvet.py``). ``make_judge`` builds the ``Judge`` that scorer takes, backed by
a server speaking the OpenAI chat-completions protocol: OpenAI itself, vLLM, or a local llama.cpp
server (``http://127.0.0.1:8080/v1``). Marks from another model than MM-Vet's GPT-4 grader are not
paper-comparable; report which model judged.

Configured under ``eval.judge`` in params.yaml (see ``JudgeConfig``); the API key never lives there,
only the name of the environment variable holding it. Every failure (unreachable server, HTTP error
status, a reply that is not the expected JSON, no usable mark after ``max_attempts`` tries) is a
``ScoringError`` with a one-line message naming the endpoint.

Standard library only (urllib, json).
"""

from __future__ import annotations

import http.client
import json
import os
import re
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping
from typing import Any

from impkit.config import MAX_JUDGE_TEMPERATURE as MAX_TEMPERATURE
from impkit.config import JudgeConfig, from_dict
from impkit.eval.scoring.inputs import ScoringError

# judge(question, gold answer, prediction) -> a mark in [0, 1]: what the MM-Vet scorer calls per answer
Judge = Callable[[str, str, str], float]

MAX_TOKENS = 16  # the reply is one number; a little room for a model that adds a word or two
RETRY_TEMPERATURE_STEP = 0.5  # each retry samples a little more freely, so a stuck reply can change


# The grading prompt follows the semantics of MM-Vet's GPT-4 grader (Yu et al., 2023, "MM-Vet:
# Evaluating Large Multimodal Models for Integrated Capabilities", Sec. 3.3 and its evaluator): a
# few-shot prompt asks for a correctness score of the prediction against the ground truth, from 0.0
# to 1.0 in steps of 0.1, with partial credit; in a ground truth "<AND>" means every part is
# required and "<OR>" means any one part suffices; the model completes the last example's score.
# The wording and the worked examples below are this module's own.
_INSTRUCTIONS = """\
You grade answers to questions about images. Compare the prediction of an AI model with the ground \
truth and give the prediction a correctness score.
In a ground truth, <AND> joins parts that are all required: the prediction is totally right only \
if it contains every part. <OR> joins alternatives: the prediction is totally right if it contains \
any one of them. A prediction that is partly right gets partial credit. Wording and formatting do \
not matter, only whether the content agrees with the ground truth.
The correctness score is one of 0.0 (totally wrong), 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9 \
or 1.0 (totally right). Reply with the score only."""

_EXAMPLES = (
    ("How many apples are on the plate?", "3", "There are three apples on the plate.", "1.0"),
    ("Which two colours does the flag have?", "red <AND> white", "The flag is red and blue.", "0.5"),
    ("Which animal is shown on the road sign?", "deer <OR> elk", "It warns drivers about elks.", "1.0"),
    ("What do the two items on the receipt cost together?", "12.50", "They cost 15 dollars in total.", "0.0"),
    (
        "Why might the road be closed?",
        "The road is flooded after heavy rain, so cars cannot pass safely.",
        "Because of the weather.",
        "0.4",
    ),
)


def _block(question: str, gold: str, prediction: str, score: str = "") -> str:
    return f"Question: {question}\nGround truth: {gold}\nPrediction: {prediction}\nCorrectness: {score}".rstrip()


def grading_prompt(question: str, gold: str, prediction: str) -> str:
    """The whole user message for one MM-Vet answer: instructions, worked examples, then the case."""
    examples = "\n\n".join(_block(*example) for example in _EXAMPLES)
    return f"{_INSTRUCTIONS}\n\nExamples:\n\n{examples}\n\nNow grade this one:\n\n{_block(question, gold, prediction)}"


_NUMBER = re.compile(r"[-+]?(?:\d+(?:\.\d*)?|\.\d+)")


def parse_mark(reply: str | None) -> float | None:
    """The first number in ``reply`` if it lies in [0, 1]; None when there is none or it is out of range."""
    found = _NUMBER.search(reply or "")
    if found is None:
        return None
    mark = float(found.group())
    return mark if 0.0 <= mark <= 1.0 else None


def _one_line(text: str, limit: int = 200) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _reason(exc: BaseException, cfg: JudgeConfig) -> str:
    """Plain words for a failed request."""
    if isinstance(exc, urllib.error.URLError) and not isinstance(exc, urllib.error.HTTPError):
        exc = exc.reason if isinstance(exc.reason, BaseException) else OSError(str(exc.reason))
    if isinstance(exc, ConnectionRefusedError):
        return "connection refused (is the server running?)"
    if isinstance(exc, TimeoutError):
        return f"no reply within {cfg.timeout_s:g} s"
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return _one_line(str(exc)) or type(exc).__name__


def _post(cfg: JudgeConfig, headers: Mapping[str, str], body: dict[str, Any]) -> Any:
    where = f"MM-Vet judge at {cfg.endpoint}"
    request = urllib.request.Request(cfg.url, data=json.dumps(body).encode("utf-8"), headers=dict(headers))
    try:
        with urllib.request.urlopen(request, timeout=cfg.timeout_s) as response:
            raw = response.read()
    except urllib.error.HTTPError as exc:
        try:
            detail = _one_line(exc.read().decode("utf-8", "replace"))
        except (OSError, http.client.HTTPException):
            detail = ""
        raise ScoringError(f"{where}: HTTP {exc.code} {exc.reason}" + (f": {detail}" if detail else "")) from None
    except (OSError, http.client.HTTPException) as exc:  # URLError, refused, reset, timeout, bad status line
        raise ScoringError(f"{where}: {_reason(exc, cfg)}") from None
    try:
        return json.loads(raw)
    except ValueError:
        raise ScoringError(f"{where}: the reply is not valid JSON: {_one_line(repr(raw[:200]))}") from None


def _content(reply: Any, where: str) -> str | None:
    """``choices[0].message.content`` of an OpenAI chat-completions reply."""
    try:
        content = reply["choices"][0]["message"]["content"]
    except (KeyError, IndexError, TypeError):
        error = reply.get("error") if isinstance(reply, dict) else None
        detail = error.get("message", error) if isinstance(error, dict) else error
        raise ScoringError(
            f"{where}: the reply has no choices[0].message.content"
            + (f" (error: {_one_line(str(detail))})" if detail else "")
        ) from None
    if content is not None and not isinstance(content, str):
        raise ScoringError(f"{where}: choices[0].message.content is {type(content).__name__}, expected text")
    return content


def make_judge(cfg: JudgeConfig) -> Judge:
    """A ``Judge`` for ``score_mmvet``: one chat-completions request per answer, the reply's mark.

    A reply without a number in [0, 1] is asked again, up to ``cfg.max_attempts`` requests in all,
    each retry at a higher temperature; then ``ScoringError``.
    Network and protocol errors are not retried. The API key is read from the environment once, here.
    """
    where = f"MM-Vet judge at {cfg.endpoint}"
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if cfg.api_key_env is not None:
        key = os.environ.get(cfg.api_key_env, "").strip()
        if not key:
            raise ScoringError(f"{where}: environment variable {cfg.api_key_env} (the API key) is not set")
        headers["Authorization"] = f"Bearer {key}"

    def judge(question: str, gold: str, prediction: str) -> float:
        messages = [{"role": "user", "content": grading_prompt(question, gold, prediction)}]
        last = None
        for attempt in range(cfg.max_attempts):
            temperature = min(cfg.temperature + attempt * RETRY_TEMPERATURE_STEP, MAX_TEMPERATURE)
            body = {"model": cfg.model, "messages": messages, "temperature": temperature, "max_tokens": MAX_TOKENS}
            last = _content(_post(cfg, headers, body), where)
            mark = parse_mark(last)
            if mark is not None:
                return mark
        raise ScoringError(
            f"{where}: no correctness score in [0, 1] in {cfg.max_attempts} replies "
            f"(last reply: {_one_line(repr(last), 80)})"
        )

    return judge


def judge_from_params(mapping: Mapping[str, Any] | None) -> Judge | None:
    """The judge configured by params.yaml ``eval.judge``, or None when that is absent (null)."""
    if mapping is None:
        return None
    return make_judge(from_dict(JudgeConfig, mapping, "eval.judge"))

"""The VQA answer normalisers and soft accuracy, shared by VQAv2, VizWiz and TextVQA.

Three reference implementations apply the same steps with small differences, and each benchmark
follows the one its reference tool runs:

- ``evalai_answer``: MMF's ``EvalAIAnswerProcessor`` (LLaVA-1.5's ``m4c_evaluator.py``), which
  LLaVA's TextVQA evaluator applies to the prediction and the ten human answers, and LLaVA's VQAv2
  and VizWiz submission converters apply to each raw prediction: lowercase; delete ``,`` and ``?``;
  rewrite ``'s`` as `` 's`` ("man's" -> "man 's"); newline/tab -> space; the punctuation rule; the
  period rule; then per word: number words -> digits, articles dropped, contractions restored.
- ``official_answer``: the official VQA evaluation tool (``vqaEval.py``, run by the EvalAI server):
  the punctuation rule (with ``,`` and ``?`` among its marks, not deleted beforehand), the period
  rule, then the same per-word step (which lowercases). The tool normalises the prediction and the
  human answers only when the ten human answers disagree (see vqav2.py).
- ``normalize_answer``: the EvalAI processor without the ``'s`` rule (VizWiz's prediction).

Quirks kept on purpose, because the reference tools have them:
- The period pattern's look-behind is broken in the references (``(?!<=\\d)``), so every ``.`` not
  followed by a digit is removed, "3." included ("3." -> "3"; ports that repair it keep "3.").
- The references call ``pattern.sub("", text, re.UNICODE)``: the flag lands in ``sub``'s ``count``
  argument, which is 32, so **at most 32 periods** are removed per answer. ``all_periods=True``
  (a named deviation, off by default) removes every one.
- The punctuation rule decides "delete or replace with a space" per mark for the whole text (if
  any ``-`` touches a space, every ``-`` is deleted).
- The contractions table keeps the reference's own oddities (see ``CONTRACTIONS``).
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from impkit.eval.scoring.inputs import percent, result

# Marks handled by the punctuation rule, as listed by the official tool (',' and '?' are already
# gone by then, so their entries here never fire; kept so the list reads like the reference).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")
# The references pass re.UNICODE (== 32) as re.sub's positional ``count``: at most 32 periods go.
PERIOD_LIMIT = int(re.UNICODE)

NUMBER_WORDS = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}
ARTICLES = frozenset({"a", "an", "the"})

# The contractions table of the official VQA evaluation tool, as `written=restored` pairs. Its
# quirks are kept on purpose so scores match the reference: "somebody'd" maps to "somebodyd" (the
# pair is reversed there), "she's" and "let's" map to themselves, and the capitalised keys (Im,
# Ive, Id've, I'dve) never match because words are lowercased before the lookup.
_CONTRACTION_PAIRS = """
aint=ain't arent=aren't cant=can't couldve=could've couldnt=couldn't couldn'tve=couldn't've
couldnt've=couldn't've didnt=didn't doesnt=doesn't dont=don't hadnt=hadn't hadnt've=hadn't've
hadn'tve=hadn't've hasnt=hasn't havent=haven't hed=he'd hed've=he'd've he'dve=he'd've hes=he's
howd=how'd howll=how'll hows=how's Id've=I'd've I'dve=I'd've Im=I'm Ive=I've isnt=isn't itd=it'd
itd've=it'd've it'dve=it'd've itll=it'll let's=let's maam=ma'am mightnt=mightn't
mightnt've=mightn't've mightn'tve=mightn't've mightve=might've mustnt=mustn't mustve=must've
neednt=needn't notve=not've oclock=o'clock oughtnt=oughtn't ow's'at='ow's'at 'ows'at='ow's'at
'ow'sat='ow's'at shant=shan't shed've=she'd've she'dve=she'd've she's=she's shouldve=should've
shouldnt=shouldn't shouldnt've=shouldn't've shouldn'tve=shouldn't've somebody'd=somebodyd
somebodyd've=somebody'd've somebody'dve=somebody'd've somebodyll=somebody'll somebodys=somebody's
someoned=someone'd someoned've=someone'd've someone'dve=someone'd've someonell=someone'll
someones=someone's somethingd=something'd somethingd've=something'd've
something'dve=something'd've somethingll=something'll thats=that's thered=there'd
thered've=there'd've there'dve=there'd've therere=there're theres=there's theyd=they'd
theyd've=they'd've they'dve=they'd've theyll=they'll theyre=they're theyve=they've twas='twas
wasnt=wasn't wed've=we'd've we'dve=we'd've weve=we've werent=weren't whatll=what'll
whatre=what're whats=what's whatve=what've whens=when's whered=where'd wheres=where's
whereve=where've whod=who'd whod've=who'd've who'dve=who'd've wholl=who'll whos=who's whove=who've
whyll=why'll whyre=why're whys=why's wont=won't wouldve=would've wouldnt=wouldn't
wouldnt've=wouldn't've wouldn'tve=wouldn't've yall=y'all yall'll=y'all'll y'allll=y'all'll
yall'd've=y'all'd've y'alld've=y'all'd've y'all'dve=y'all'd've youd=you'd youd've=you'd've
you'dve=you'd've youll=you'll youre=you're youve=you've
"""
CONTRACTIONS: dict[str, str] = dict(pair.split("=", 1) for pair in _CONTRACTION_PAIRS.split())


def _punctuation(text: str, all_periods: bool = False) -> str:
    """Delete each listed mark where it touches a space (or the text has a digit-comma-digit, as in
    "1,000"), else replace it with a space ("x-ray" -> "x ray"); then drop periods not before a digit
    (the first 32 of them, as the references do; every one with ``all_periods``)."""
    digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if digit_comma or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out, count=0 if all_periods else PERIOD_LIMIT)


def _words(text: str) -> str:
    kept = []
    for word in text.lower().split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            kept.append(CONTRACTIONS.get(word, word))
    return " ".join(kept)


def _whitespace(text: str) -> str:
    return text.replace("\n", " ").replace("\t", " ").strip()


@functools.lru_cache(maxsize=1 << 16)  # human answers repeat a lot ("yes", "2", ...)
def normalize_answer(answer: str, all_periods: bool = False) -> str:
    """The EvalAI processor without its ``'s`` rule: ``"Yes."`` -> ``yes``, ``"Two"`` -> ``2``,
    ``"A cat"`` -> ``cat``, ``"1,000"`` -> ``1000``, ``"x-ray"`` -> ``x ray``, ``"10:30 a.m."`` -> ``10:30 am``."""
    text = answer.lower().replace(",", "").replace("?", "")
    return _words(_punctuation(_whitespace(text), all_periods))


@functools.lru_cache(maxsize=1 << 16)
def evalai_answer(answer: str, all_periods: bool = False) -> str:
    """MMF's ``EvalAIAnswerProcessor``: ``normalize_answer`` plus ``'s`` -> `` 's`` ("man's" -> "man 's")."""
    text = answer.lower().replace(",", "").replace("?", "").replace("'s", " 's")
    return _words(_punctuation(_whitespace(text), all_periods))


@functools.lru_cache(maxsize=1 << 16)
def official_answer(answer: str, all_periods: bool = False) -> str:
    """The official VQA tool's ``processPunctuation`` then ``processDigitArticle`` (after its own
    newline/tab -> space and strip): no lowercasing before the punctuation rule, ``,`` and ``?``
    handled by that rule ("a,b" -> "a b", where ``normalize_answer`` gives "ab")."""
    return _words(_punctuation(_whitespace(answer), all_periods))


def soft_accuracy(prediction: str, answers: Sequence[str]) -> float:
    """VQA accuracy in [0, 1]: the mean over the leave-one-out subsets of the human answers of
    ``min(1, matches / 3)``. With ten answers that is 0, 0.3, 0.6, 0.9, 1.0 for 0, 1, 2, 3, >=4 matches.

    Both sides are compared as given (normalise them first). Other answer counts: the same
    leave-one-out mean over however many answers there are (the official tool never checks for
    ten); a single answer is an exact match, since leaving it out would leave nothing to match.
    """
    if not answers:
        raise ValueError("soft accuracy needs at least one human answer")
    if len(answers) == 1:
        return float(prediction == answers[0])
    matches = sum(answer == prediction for answer in answers)
    # Leaving out a matching answer leaves matches-1 others that match; leaving out any other leaves all.
    per_subset = [min(1.0, (matches - (answer == prediction)) / 3) for answer in answers]
    return sum(per_subset) / len(per_subset)


def soft_accuracy_result(
    benchmark: str,
    rows: Iterable[tuple[str, Sequence[str], str | None]],
    predictions: Mapping[str, str],
    accuracy: Callable[[str, Sequence[str]], float] | None = None,
) -> dict[str, Any]:
    """The shared scoring loop of VQAv2, VizWiz and TextVQA: ``rows`` are (question key, human
    answers, answer type or None); ``accuracy(raw prediction, human answers)`` scores one question
    (default: ``normalize_answer`` on the prediction, the human answers compared as given). A missing
    prediction scores 0 and is counted as missing. Per-answer-type means when the annotations have types."""
    if accuracy is None:

        def accuracy(prediction: str, answers: Sequence[str]) -> float:
            return soft_accuracy(normalize_answer(prediction), answers)

    total, missing, n = 0.0, 0, 0
    by_type: dict[str, list[float]] = defaultdict(list)
    for key, answers, answer_type in rows:
        n += 1
        if key in predictions:
            acc = accuracy(predictions[key], answers)
        else:
            acc, missing = 0.0, missing + 1
        total += acc
        if answer_type is not None:
            by_type[answer_type].append(acc)
    extra = {"per_answer_type": {t: percent(sum(v), len(v)) for t, v in sorted(by_type.items())}} if by_type else {}
    return result(benchmark, "soft_accuracy", percent(total, n), n, **extra, missing=missing)

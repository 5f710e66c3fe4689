"""The VQA answer normaliser and soft accuracy, shared by VQAv2, VizWiz and TextVQA.

Which implementation this follows
---------------------------------
The steps and their order are those of the EvalAI answer processor that LLaVA-1.5 (and so Imp)
applies before scoring or submitting: lowercase; delete ``,`` and ``?``; newline/tab -> space; the
punctuation rule; the period rule; then per word: number words -> digits, articles dropped,
contractions restored; words joined by single spaces. ``'`` and ``:`` are kept.

For the ``'s`` rule it follows the **official VQA evaluation tool** (vqaEval.py, which the EvalAI
server runs for VQAv2): ``'s`` is left as it is. The documented differences between implementations:

- MMF's ``EvalAIAnswerProcessor`` (used by LLaVA's TextVQA evaluator and its VQAv2/VizWiz
  submission converters) also rewrites ``'s`` as `` 's`` ("man's" -> "man 's"). With both sides
  normalised this rarely changes a match; it does where the contractions table produces an ``'s``
  ("whats" -> "what's" on one side, "what 's" on the other would no longer match).
- The official VQA tool normalises the prediction and the human answers only when the ten human
  answers disagree; when all ten agree it compares the stripped raw strings. This module always
  normalises both sides (VizWiz: the prediction only, as its official code does; see vizwiz.py).
- The official tool's period pattern has a broken look-behind (``(?!<=\\d)``), so it removes every
  ``.`` not followed by a digit, "3." included; ports that "fix" it to ``(?<!\\d)`` keep the period
  in "3.". This module removes it (the official behaviour): "3." -> "3".
- The official tool decides "delete or replace with a space" per punctuation mark for the whole
  text (if any ``-`` touches a space, every ``-`` is deleted); this module does the same.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

from impkit.eval.scoring.inputs import percent, result

# Marks handled by the punctuation rule, as listed by the official tool (',' and '?' are already
# gone by then, so their entries here never fire; kept so the list reads like the reference).
PUNCTUATION = (";", "/", "[", "]", '"', "{", "}", "(", ")", "=", "+", "\\", "_", "-", ">", "<", "@", "`", ",", "?", "!")
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
_PERIOD_NOT_BEFORE_DIGIT = re.compile(r"\.(?!\d)")

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


def _punctuation(text: str) -> str:
    """Delete each listed mark where it touches a space (or the text has a digit-comma-digit, as in
    "1,000"), else replace it with a space ("x-ray" -> "x ray"); then drop periods not before a digit."""
    digit_comma = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if digit_comma or mark + " " in text or " " + mark in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD_NOT_BEFORE_DIGIT.sub("", out)


def _words(text: str) -> str:
    kept = []
    for word in text.split():
        word = NUMBER_WORDS.get(word, word)
        if word not in ARTICLES:
            kept.append(CONTRACTIONS.get(word, word))
    return " ".join(kept)


@functools.lru_cache(maxsize=1 << 16)  # human answers repeat a lot ("yes", "2", ...)
def normalize_answer(answer: str) -> str:
    """Normalise one answer: ``"Yes."`` -> ``yes``, ``"Two"`` -> ``2``, ``"A cat"`` -> ``cat``,
    ``"1,000"`` -> ``1000``, ``"x-ray"`` -> ``x ray``, ``"10:30 a.m."`` -> ``10:30 am``."""
    text = answer.lower().replace(",", "").replace("?", "")
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return _words(_punctuation(text))


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
    benchmark: str, rows: Iterable[tuple[str, Sequence[str], str | None]], predictions: Mapping[str, str]
) -> dict[str, Any]:
    """The shared scoring loop of VQAv2, VizWiz and TextVQA: ``rows`` are (question key, human answers
    as they are to be compared, answer type or None); a prediction is normalised, a missing one
    scores 0 and is counted as missing. Per-answer-type means when the annotations have types."""
    total, missing, n = 0.0, 0, 0
    by_type: dict[str, list[float]] = defaultdict(list)
    for key, answers, answer_type in rows:
        n += 1
        if key in predictions:
            acc = soft_accuracy(normalize_answer(predictions[key]), answers)
        else:
            acc, missing = 0.0, missing + 1
        total += acc
        if answer_type is not None:
            by_type[answer_type].append(acc)
    extra = {"per_answer_type": {t: percent(sum(v), len(v)) for t, v in sorted(by_type.items())}} if by_type else {}
    return result(benchmark, "soft_accuracy", percent(total, n), n, **extra, missing=missing)

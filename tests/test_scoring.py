"""Benchmark scorers: every normalisation and parsing rule on hand-made answers, each scorer on tiny
files in the official formats, and `impkit score` end to end."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest

from impkit import cli
from impkit.eval import benchmarks as registry
from impkit.eval.benchmarks import UnknownBenchmarkError
from impkit.eval.benchmarks.gqa import clean_prediction
from impkit.eval.benchmarks.mmbench import extract_option
from impkit.eval.benchmarks.mme import COGNITION, PERCEPTION, mme_answer
from impkit.eval.benchmarks.pope import pope_answer
from impkit.eval.benchmarks.sqa import extract_letter
from impkit.eval.scoring import ScoringError, normalize_answer, soft_accuracy
from impkit.eval.scoring.vqa import CONTRACTIONS, _punctuation

# ---------------------------------------------------------------- file helpers


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, records) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t")
        writer.writeheader()
        writer.writerows(rows)
    return path


def ten(*groups: tuple[str, int]) -> list[str]:
    answers = [a for a, k in groups for _ in range(k)]
    assert len(answers) == 10
    return answers


# ---------------------------------------------------------------- the VQA normaliser


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("Yes.", "yes"),  # lowercase, trailing period
        ("Two", "2"),  # number word
        ("none", "0"),
        ("ten dogs", "10 dogs"),
        ("A cat", "cat"),  # articles dropped
        ("an apple on the table", "apple on table"),
        ("1,000", "1000"),  # comma deleted
        ("What?", "what"),  # question mark deleted
        ("x-ray", "x ray"),  # mark not touching a space -> space
        ("red - blue", "red blue"),  # mark touching a space -> deleted
        ("x-ray - film", "xray film"),  # ... and then every '-' of the text is deleted
        ("on/off", "on off"),
        ("(hello)!", "hello"),
        ("10:30 a.m.", "10:30 am"),  # ':' kept, periods not before a digit removed
        ("3.5 inches", "3.5 inches"),  # a period before a digit stays
        ("3.", "3"),
        ("rock 'n' roll", "rock 'n' roll"),  # apostrophes kept
        ("line\nbreak\ttab", "line break tab"),
        ("  two   spaces  ", "2 spaces"),
        ("dont", "don't"),  # contractions restored
        ("whats that", "what's that"),
        ("youre right", "you're right"),
        ("man's hat", "man's hat"),  # no "'s" split (official VQA tool, not MMF)
        ("somebody'd", "somebodyd"),  # the reference table's reversed pair, kept on purpose
    ],
)
def test_normalize_answer(raw, expected):
    assert normalize_answer(raw) == expected


def test_punctuation_is_deleted_everywhere_when_the_text_has_digit_comma_digit():
    assert _punctuation("x-ray") == "x ray"
    assert _punctuation("1,000 x-ray") == "1000 xray"


def test_contractions_table_is_the_full_reference_table():
    assert len(CONTRACTIONS) == 120
    assert CONTRACTIONS["couldn'tve"] == "couldn't've" and CONTRACTIONS["yall'd've"] == "y'all'd've"


@pytest.mark.parametrize(("matches", "expected"), [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (7, 1.0)])
def test_soft_accuracy_steps(matches, expected):
    answers = ten(("cat", matches), ("dog", 10 - matches))
    assert soft_accuracy("cat", answers) == pytest.approx(expected)


def test_soft_accuracy_with_other_answer_counts():
    assert soft_accuracy("cat", ["cat"]) == 1.0 and soft_accuracy("dog", ["cat"]) == 0.0
    # three answers, all matching: each leave-one-out subset has two matches -> 2/3
    assert soft_accuracy("cat", ["cat"] * 3) == pytest.approx(2 / 3)
    with pytest.raises(ValueError):
        soft_accuracy("cat", [])


# ---------------------------------------------------------------- VQAv2, VizWiz, TextVQA


def vqav2_files(tmp: Path):
    ann = {
        "annotations": [
            {
                "question_id": 1,
                "image_id": 9,
                "answer_type": "yes/no",
                "answers": [{"answer": "yes"} for _ in range(10)],
            },
            {
                "question_id": 2,
                "image_id": 9,
                "answer_type": "number",
                "answers": [{"answer": a} for a in ten(("2", 3), ("3", 7))],
            },
            {"question_id": 3, "image_id": 9, "answer_type": "other", "answers": [{"answer": "cat"}] * 10},
        ]
    }
    questions = {"questions": [{"question_id": q, "image_id": 9, "question": "?"} for q in (1, 2, 3)]}
    results = [{"question_id": 1, "answer": "Yes."}, {"question_id": 2, "answer": "two"}]  # 3 is missing
    return (
        write_json(tmp / "ann.json", ann),
        write_json(tmp / "q.json", questions),
        write_json(tmp / "res.json", results),
    )


def test_vqav2_soft_accuracy_per_type_and_missing(tmp_path):
    ann, questions, results = vqav2_files(tmp_path)
    m = registry.get("vqav2").score(ann, results, questions=questions)
    assert m["headline"] == {"name": "soft_accuracy", "value": pytest.approx(100 * (1 + 0.9 + 0) / 3)}
    assert m["per_answer_type"] == {"number": pytest.approx(90.0), "other": 0.0, "yes/no": 100.0}
    assert m["missing"] == 1 and m["n"] == 3


def test_vqav2_refuses_predictions_for_unknown_ids(tmp_path):
    ann, _, _ = vqav2_files(tmp_path)
    results = write_json(tmp_path / "bad.json", [{"question_id": 77, "answer": "yes"}])
    with pytest.raises(ScoringError, match=r"bad\.json.*not in the annotations: 77"):
        registry.get("vqav2").score(ann, results)


def test_vizwiz_normalises_the_prediction_only(tmp_path):
    ann = write_json(
        tmp_path / "val.json",
        [
            {
                "image": "a.jpg",
                "question": "?",
                "answer_type": "unanswerable",
                "answerable": 0,
                "answers": [{"answer": "unanswerable", "answer_confidence": "yes"}] * 10,
            },
            {
                "image": "b.jpg",
                "question": "?",
                "answer_type": "other",
                "answerable": 1,
                "answers": [{"answer": "the cat", "answer_confidence": "yes"}] * 10,
            },
        ],
    )
    res = write_json(
        tmp_path / "res.json", [{"image": "a.jpg", "answer": "Unanswerable."}, {"image": "b.jpg", "answer": "the cat"}]
    )
    m = registry.get("vizwiz").score(ann, res)
    # "the cat" -> "cat" on the prediction side only, so it no longer matches the raw human "the cat"
    assert m["headline"]["value"] == 50.0
    assert m["per_answer_type"] == {"other": 0.0, "unanswerable": 100.0}


def test_textvqa_normalises_both_sides(tmp_path):
    ann = write_json(
        tmp_path / "val.json",
        {
            "data": [
                {"question_id": 10, "image_id": "x", "question": "?", "answers": ten(("Coca-Cola", 4), ("pepsi", 6))},
                {
                    "question_id": 11,
                    "image_id": "x",
                    "question": "?",
                    "answers": ten(("The Times", 3), ("times new", 7)),
                },
            ]
        },
    )
    res = write_json(
        tmp_path / "res.json", [{"question_id": 10, "answer": "coca cola"}, {"question_id": 11, "answer": "times"}]
    )
    m = registry.get("textvqa").score(ann, res)
    assert m["headline"]["value"] == pytest.approx(100 * (1.0 + 0.9) / 2) and m["missing"] == 0


# ---------------------------------------------------------------- GQA


def test_gqa_prediction_cleaning():
    assert clean_prediction("Yes.") == "yes"
    assert clean_prediction("Table..") == "table"
    assert clean_prediction("Table..\n") == "table..\n"  # LLaVA's converter strips no whitespace
    assert clean_prediction("Table..\n", strip_whitespace=True) == "table"
    assert clean_prediction("3.5") == "3.5"


def gqa_files(tmp: Path):
    questions = {
        "q1": {"imageId": "i", "question": "?", "answer": "yes", "isBalanced": True, "types": {"structural": "verify"}},
        "q2": {
            "imageId": "i",
            "question": "?",
            "answer": "table",
            "isBalanced": True,
            "types": {"structural": "query"},
        },
        "q3": {"imageId": "i", "question": "?", "answer": "red", "isBalanced": True, "types": {"structural": "query"}},
        "q4": {"imageId": "i", "question": "?", "answer": "no", "isBalanced": False, "types": {"structural": "verify"}},
    }
    preds = [
        {"questionId": "q1", "prediction": "Yes."},
        {"questionId": "q2", "prediction": "table."},
        {"questionId": "q3", "prediction": "blue"},
        {"questionId": "q4", "prediction": "maybe"},  # unbalanced: accepted, not scored
    ]
    return write_json(tmp / "testdev_balanced_questions.json", questions), write_json(tmp / "preds.json", preds)


def test_gqa_trailing_period_and_balanced_filter(tmp_path):
    ann, preds = gqa_files(tmp_path)
    m = registry.get("gqa").score(ann, preds)
    assert m["headline"]["value"] == pytest.approx(200 / 3) and m["n"] == 3
    assert m["per_structural_type"] == {"query": 50.0, "verify": 100.0}


# ---------------------------------------------------------------- ScienceQA-IMG


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("B", "B"),  # rule 1: the bare letter
        ("C. the moon", "C"),  # rule 2: "X. ..." prefix
        ("Plants need light. The answer is A.", "A"),  # rule 3: exactly one "The answer is X."
        ("The answer is A. The answer is B.", None),  # two -> failed
        ("B.", None),  # neither a bare letter nor "X. " with a space
        ("AB", None),
        ("I am not sure", None),
    ],
)
def test_sqa_letter_rules(text, letter):
    assert extract_letter(text) == letter


def sqa_files(tmp: Path):
    problems = {
        "p1": {
            "question": "?",
            "choices": ["a", "b", "c"],
            "answer": 1,
            "hint": "",
            "image": "image.png",
            "split": "test",
        },
        "p2": {"question": "?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png", "split": "test"},
        "p3": {
            "question": "?",
            "choices": ["a", "b", "c"],
            "answer": 2,
            "hint": "",
            "image": "image.png",
            "split": "test",
        },
        "p4": {"question": "?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": None, "split": "test"},
        "p5": {"question": "?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png", "split": "test"},
        "p6": {"question": "?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png", "split": "train"},
    }
    splits = {"train": ["p6"], "val": [], "test": ["p1", "p2", "p3", "p4", "p5"]}
    answers = [
        {"question_id": "p1", "text": "B"},
        {"question_id": "p2", "text": "The answer is A."},
        {"question_id": "p3", "text": "D"},  # beyond the three choices: failed
        {"question_id": "p4", "text": "B"},  # no image: not in SQA-IMG
    ]  # p5 missing
    return (
        write_json(tmp / "problems.json", problems),
        write_json(tmp / "pid_splits.json", splits),
        write_jsonl(tmp / "answers.jsonl", answers),
    )


def test_sqa_scores_image_items_of_the_test_split(tmp_path):
    problems, splits, answers = sqa_files(tmp_path)
    m = registry.get("sqa").score(problems, answers)  # pid_splits.json found next to problems.json
    # as the reference: the image problem without an answer (p5) is left out of the accuracy
    assert m["headline"] == {"name": "img_accuracy", "value": pytest.approx(200 / 3)}
    assert (m["failed"], m["missing"], m["n"]) == (1, 1, 3)
    m = registry.get("sqa").score(problems, answers, missing_as_wrong=True)
    assert m["headline"] == {"name": "img_accuracy", "value": 50.0}
    assert (m["failed"], m["missing"], m["n"]) == (1, 1, 4)


# ---------------------------------------------------------------- POPE


@pytest.mark.parametrize(
    ("text", "label"),
    [
        ("No, there is not.", "no"),
        ("Yes. No.", "yes"),  # only the first sentence counts
        ("Not really", "yes"),  # "Not" is not one of the reference's words
        ("There is no dog in the image.", "no"),
        ("I do not see one", "no"),
        ("Yes, there is a cat.", "yes"),
        ("Nope", "yes"),
    ],
)
def test_pope_first_sentence_rule(text, label):
    assert pope_answer(text) == label


def pope_files(tmp: Path):
    labels = ["yes", "yes", "no", "no"]
    qdir, adir = tmp / "pope", tmp / "answers"
    for split in ("random", "popular", "adversarial"):
        write_jsonl(
            qdir / f"coco_pope_{split}.json",
            [
                {"question_id": i + 1, "image": f"{i}.jpg", "text": "Is there a dog in the image?", "label": lab}
                for i, lab in enumerate(labels)
            ],
        )
        said = (
            ["Yes", "No", "No", "Yes, there is."] if split == "random" else ["Yes.", "yes", "No.", "There is no dog."]
        )
        write_jsonl(adir / f"{split}.jsonl", [{"question_id": i + 1, "text": t} for i, t in enumerate(said)])
    return qdir, adir


def test_pope_metrics_per_split_and_mean_f1(tmp_path):
    qdir, adir = pope_files(tmp_path)
    m = registry.get("pope").score(qdir, adir)
    assert m["splits"]["random"] == {
        "accuracy": 50.0,
        "precision": 50.0,
        "recall": 50.0,
        "f1": 50.0,
        "yes_ratio": 50.0,
        "missing": 0,
        "n": 4,
    }
    assert m["splits"]["popular"]["f1"] == 100.0 and m["splits"]["adversarial"]["yes_ratio"] == 50.0
    assert m["headline"] == {"name": "mean_f1", "value": pytest.approx(250 / 3)} and m["n"] == 12


def test_pope_missing_answer_counts_as_the_wrong_one(tmp_path):
    qdir, adir = pope_files(tmp_path)
    write_jsonl(adir / "popular.jsonl", [{"question_id": 1, "text": "Yes"}, {"question_id": 3, "text": "No"}])
    popular = registry.get("pope").score(qdir, adir)["splits"]["popular"]
    # q2 (yes) missing -> false negative, q4 (no) missing -> false positive
    assert (popular["missing"], popular["accuracy"], popular["recall"], popular["precision"]) == (2, 50.0, 50.0, 50.0)
    assert popular["yes_ratio"] == 25.0


def test_pope_one_answers_file_needs_unambiguous_ids(tmp_path):
    qdir, _ = pope_files(tmp_path)
    answers = write_jsonl(tmp_path / "all.jsonl", [{"question_id": 1, "text": "Yes"}])
    with pytest.raises(ScoringError, match="several POPE splits"):
        registry.get("pope").score(qdir, answers)
    routed = write_jsonl(tmp_path / "routed.jsonl", [{"question_id": 1, "text": "Yes", "category": "random"}])
    assert registry.get("pope").score(qdir, routed)["missing"] == 11


# ---------------------------------------------------------------- MME


@pytest.mark.parametrize(
    ("prediction", "label"),
    [
        ("Yes", "yes"),
        ("no", "no"),
        ("Yes, it is", "yes"),  # "yes" within the first four characters
        ("No.", "no"),
        ("The answer is yes", "other"),  # neither in the first four characters: wrong
        ("Maybe", "other"),
    ],
)
def test_mme_four_character_rule(prediction, label):
    assert mme_answer(prediction) == label


def mme_folder(tmp: Path, subtasks=PERCEPTION + COGNITION) -> Path:
    folder = tmp / "mme"
    folder.mkdir()
    for name in subtasks:
        lines = [
            "1.jpg\tIs it red?\tYes\tYes",
            "1.jpg\tIs it blue?\tNo\tNo",
            "2.jpg\tA dog?\tYes\tYes",
            "2.jpg\tA cat?\tNo\tNo",
        ]
        if name == "existence":
            lines[3] = "2.jpg\tA cat?\tNo\tThe answer is no"  # one wrong: image 2 loses acc+
        (folder / f"{name}.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_mme_acc_plus_and_sums(tmp_path):
    m = registry.get("mme").score(None, mme_folder(tmp_path))
    existence = m["subtasks"]["existence"]
    assert (existence["acc"], existence["acc_plus"], existence["score"]) == (75.0, 50.0, 125.0)
    assert m["headline"] == {"name": "perception", "value": 125.0 + 9 * 200.0}
    assert m["cognition"] == 800.0 and m["n"] == 14 * 4


def test_mme_without_cognition_files_reports_no_cognition_sum(tmp_path):
    m = registry.get("mme").score(None, mme_folder(tmp_path, PERCEPTION))
    assert m["cognition"] is None and m["missing_cognition_subtasks"] == list(COGNITION)


def test_mme_refuses_unknown_or_missing_subtask_files(tmp_path):
    folder = mme_folder(tmp_path, PERCEPTION[1:])
    with pytest.raises(ScoringError, match=r"missing: \['existence.txt'\]"):
        registry.get("mme").score(None, folder)
    (folder / "existance.txt").write_text("1.jpg\tq\tyes\tyes\n")
    with pytest.raises(ScoringError, match="unknown MME subtask file"):
        registry.get("mme").score(None, folder)


# ---------------------------------------------------------------- MMBench


ABC = {"A": "a cat", "B": "a dog", "C": "a bird"}


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("B", "B"),  # a standalone option letter
        ("The correct choice is (C).", "C"),
        ("答案是B。", "B"),
        ("I think the answer is C because birds have feathers and fly", "C"),
        ("A dog sits on the mat in the sun", "A"),  # as VLMEvalKit: the article is a lone letter A
        ("It is clearly a bird", "C"),
        ("a cat and a dog", None),  # two option texts: unresolved
        ("E", None),  # not an option of the row
        ("A or B", None),  # two letters
    ],
)
def test_mmbench_letter_extraction(answer, letter):
    assert extract_option(answer, ABC) == letter


def rotations(index: int, options: list[str], answer: int, category: str) -> list[dict]:
    """MMBench's circular copies: options rotated, index + k * 1,000,000."""
    rows = []
    for k in range(len(options)):
        rotated = options[k:] + options[:k]
        letters = "ABCD"[: len(options)]
        rows.append(
            {
                "index": index + k * 1_000_000,
                "question": "What is it?",
                "hint": "",
                **{letters[i]: rotated[i] for i in range(len(options))},
                **{c: "" for c in "ABCD"[len(options) :]},
                "answer": letters[rotated.index(options[answer])],
                "category": category,
                "l2-category": "perception",
                "split": "dev",
            }
        )
    return rows


def mmbench_files(tmp: Path, wrong: set[int] = frozenset({1_000_001})):
    rows = rotations(0, ["red", "green", "blue"], 2, "color") + rotations(
        1, ["cat", "dog", "fish", "bird"], 1, "animal"
    )
    sheet = write_tsv(tmp / "mmbench_dev.tsv", rows)
    # right letters, except for the rows in `wrong` (question 1 fails one rotation)
    preds = [{"question_id": r["index"], "text": "no idea" if r["index"] in wrong else f"{r['answer']}."} for r in rows]
    return sheet, write_jsonl(tmp / "answers.jsonl", preds), rows


def test_mmbench_circular_question_counts_only_if_every_rotation_is_right(tmp_path):
    sheet, answers, _ = mmbench_files(tmp_path)
    m = registry.get("mmbench").score(sheet, answers)
    assert m["headline"] == {"name": "circular_accuracy", "value": 50.0}
    assert m["vanilla_accuracy"] == 100.0 and m["per_category"] == {"animal": 0.0, "color": 100.0}
    assert (m["unresolved"], m["rows"], m["n"]) == (1, 7, 2)


def test_mmbench_submission_sheet_with_prediction_column(tmp_path):
    sheet, _, rows = mmbench_files(tmp_path)
    submission = [{**r, "prediction": f"The answer is {r['answer']}" if r["index"] != 0 else ""} for r in rows]
    m = registry.get("mmbench_cn").score(sheet, write_tsv(tmp_path / "submission.tsv", submission))
    assert m["benchmark"] == "mmbench_cn" and m["missing"] == 1 and m["headline"]["value"] == 50.0


def test_mmbench_xlsx_without_openpyxl_is_a_clear_error(tmp_path):
    try:
        import openpyxl  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("openpyxl is installed: .xlsx sheets are readable")
    sheet, _, _ = mmbench_files(tmp_path)
    (tmp_path / "sub.xlsx").write_bytes(b"PK")
    with pytest.raises(ScoringError, match=r"sub\.xlsx.*needs openpyxl"):
        registry.get("mmbench").score(sheet, tmp_path / "sub.xlsx")


# ---------------------------------------------------------------- MM-Vet


def mmvet_files(tmp: Path):
    items = {
        "v1_0": {"imagename": "v1_0.png", "capability": ["rec"], "question": "What?", "answer": "a cat"},
        "v1_1": {"imagename": "v1_1.png", "capability": ["ocr", "math"], "question": "Sum?", "answer": "7"},
    }
    return write_json(tmp / "mm-vet.json", items), write_json(tmp / "answers.json", {"v1_0": "A cat.", "v1_1": "8"})


def test_mmvet_is_not_scored_without_a_judge(tmp_path):
    ann, preds = mmvet_files(tmp_path)
    m = registry.get("mmvet").score(ann, preds)
    assert m["scored"] is False and m["reason"] == "not scored: no judge" and m["headline"]["value"] is None


def test_mmvet_with_a_judge(tmp_path):
    ann, preds = mmvet_files(tmp_path)
    calls = []

    def judge(question, answer, prediction):
        calls.append((question, answer, prediction))
        return 1.0 if normalize_answer(prediction) == normalize_answer(answer) else 0.2

    m = registry.get("mmvet").score(ann, preds, judge=judge)
    assert m["scored"] is True and m["headline"]["value"] == pytest.approx(60.0)
    assert m["per_capability"] == {"math": pytest.approx(20.0), "ocr": pytest.approx(20.0), "rec": 100.0}
    assert ("What?", "a cat", "A cat.") in calls
    with pytest.raises(ScoringError, match="expected a number in"):
        registry.get("mmvet").score(ann, preds, judge=lambda q, a, p: 7)


# ---------------------------------------------------------------- registry and errors


def test_registry_has_exact_keys_and_names_them_on_a_miss():
    names = {"vqav2", "gqa", "vizwiz", "textvqa", "sqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet"}
    assert set(registry.names()) == names
    assert all(registry.get(name).name == name for name in names)
    with pytest.raises(UnknownBenchmarkError, match=r"unknown benchmark 'vqa'; known benchmarks: \['gqa'"):
        registry.get("vqa")


def test_input_errors_name_the_file_and_the_problem(tmp_path):
    ann, _ = gqa_files(tmp_path)
    with pytest.raises(FileNotFoundError, match="GQA predictions not found: .*nope.json"):
        registry.get("gqa").score(ann, tmp_path / "nope.json")
    dup = write_json(
        tmp_path / "dup.json", [{"questionId": "q1", "prediction": "a"}, {"questionId": "q1", "prediction": "b"}]
    )
    with pytest.raises(ScoringError, match="more than one prediction for id"):
        registry.get("gqa").score(ann, dup)
    nofield = write_json(tmp_path / "nofield.json", [{"questionId": "q1", "answer": "yes"}])
    with pytest.raises(ScoringError, match="record 1 of GQA predictions has no 'prediction' field"):
        registry.get("gqa").score(ann, nofield)
    with pytest.raises(ScoringError, match="must hold a JSON object, found list"):
        registry.get("gqa").score(write_json(tmp_path / "list.json", []), dup)
    with pytest.raises(ScoringError, match="does not use a questions file"):
        registry.get("gqa").score(ann, dup, questions=ann)


# ---------------------------------------------------------------- `impkit score` end to end


def cli_case(name: str, tmp: Path) -> tuple[list[str], float | None, int]:
    """Official-format files for one benchmark: (CLI arguments, expected headline, expected n)."""
    if name == "vqav2":
        ann, questions, results = vqav2_files(tmp)
        return ["--annotations", ann, "--questions", questions, "--predictions", results], 100 * 1.9 / 3, 3
    if name == "gqa":
        ann, preds = gqa_files(tmp)
        return ["--annotations", ann, "--predictions", preds], 200 / 3, 3
    if name == "vizwiz":
        ann = write_json(
            tmp / "val.json",
            [
                {
                    "image": "a.jpg",
                    "question": "?",
                    "answer_type": "number",
                    "answerable": 1,
                    "answers": [{"answer": a, "answer_confidence": "yes"} for a in ten(("2", 2), ("3", 8))],
                }
            ],
        )
        return (
            [
                "--annotations",
                ann,
                "--predictions",
                write_json(tmp / "res.json", [{"image": "a.jpg", "answer": "Two"}]),
            ],
            60.0,
            1,
        )
    if name == "textvqa":
        ann = write_json(
            tmp / "val.json", {"data": [{"question_id": 5, "answers": ten(("Stop", 10)), "ocr_tokens": ["STOP"]}]}
        )
        return (
            [
                "--annotations",
                ann,
                "--predictions",
                write_json(tmp / "res.json", [{"question_id": 5, "answer": "stop."}]),
            ],
            100.0,
            1,
        )
    if name == "sqa":
        problems, splits, answers = sqa_files(tmp)
        return (
            ["--annotations", problems, "--questions", splits, "--predictions", answers],
            pytest.approx(200 / 3),
            3,
        )  # the unanswered image problem is left out
    if name == "pope":
        qdir, adir = pope_files(tmp)
        return ["--annotations", qdir, "--predictions", adir], 250 / 3, 12
    if name == "mme":
        return ["--predictions", mme_folder(tmp)], 1925.0, 56
    if name in ("mmbench", "mmbench_cn"):
        sheet, answers, _ = mmbench_files(tmp)
        return ["--annotations", sheet, "--predictions", answers], 50.0, 2
    if name == "mmvet":
        ann, preds = mmvet_files(tmp)
        return ["--annotations", ann, "--predictions", preds], None, 2
    raise AssertionError(name)


@pytest.mark.parametrize("benchmark", sorted(registry.names()))
def test_cli_scores_official_files_and_writes_the_metrics(benchmark, tmp_path, capsys):
    args, headline, n = cli_case(benchmark, tmp_path)
    out = tmp_path / "reports" / "metrics.json"
    cli.main(["score", benchmark, *map(str, args), "--out", str(out)])
    printed = json.loads(capsys.readouterr().out)
    assert printed["benchmark"] == benchmark and printed["n"] == n
    assert printed["headline"]["value"] == (pytest.approx(headline) if headline is not None else None)
    assert json.loads(out.read_text()) == printed
    assert [p.name for p in out.parent.iterdir()] == ["metrics.json"]  # no temporary left behind


def test_cli_reports_a_malformed_predictions_file_in_one_line(tmp_path):
    ann, _ = gqa_files(tmp_path)
    broken = tmp_path / "preds.jsonl"
    broken.write_text('{"questionId": "q1", "prediction": "yes"}\n{"questionId": "q2", "prediction": \n')
    proc = subprocess.run(
        [sys.executable, "-m", "impkit.cli", "score", "gqa", "--annotations", str(ann), "--predictions", str(broken)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1 and proc.stdout == ""
    assert f"{broken}: line 2 of GQA predictions is not valid JSON" in proc.stderr
    assert "Traceback" not in proc.stderr

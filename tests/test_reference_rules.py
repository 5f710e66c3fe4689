"""Each scorer follows its reference tool on the cases where implementations part ways; the expected
values are those the reference tools' documented rules give. Every deliberate deviation is a named
option, off by default, and has its own case here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from impkit import cli
from impkit.eval import benchmarks as registry
from impkit.eval.benchmarks.gqa import clean_prediction
from impkit.eval.benchmarks.mmbench import REFUSED, extract_option
from impkit.eval.benchmarks.vqav2 import vqav2_accuracy
from impkit.eval.scoring import ScoringError
from impkit.eval.scoring.vqa import evalai_answer, normalize_answer, official_answer
from tests.test_scoring import write_json, write_jsonl

# ---------------------------------------------------------------- ScienceQA: other splits' ids


def test_sqa_ignores_answers_for_ids_outside_the_test_split(tmp_path):
    problems = {
        "1": {"question": "?", "choices": ["a", "b"], "answer": 1, "hint": "", "image": "image.png", "split": "test"},
        "3591": {"question": "?", "choices": ["a", "b"], "answer": 0, "hint": "", "image": "image.png", "split": "val"},
    }
    splits = {"train": [], "val": ["3591"], "test": ["1"]}
    ann = write_json(tmp_path / "problems.json", problems)
    write_json(tmp_path / "pid_splits.json", splits)
    # LLaVA's answers file: the test answer, a val answer and an id no problem has
    answers = [
        {"question_id": "1", "prompt": "<image>\n?", "text": "B"},
        {"question_id": "3591", "prompt": "<image>\n?", "text": "A"},
        {"question_id": "99999", "prompt": "?", "text": "A"},
    ]
    m = registry.get("sqa").score(ann, write_jsonl(tmp_path / "answers.jsonl", answers))
    assert m["headline"]["value"] == 100.0 and m["n"] == 1 and m["ignored"] == 2 and m["missing"] == 0


# ---------------------------------------------------------------- MMBench: VLMEvalKit's extraction

ABCD = {"A": "a cat", "B": "a dog", "C": "a bird", "D": "a fish"}


@pytest.mark.parametrize(
    ("answer", "letter"),
    [
        ("the answer is b", "B"),  # lower-case letter after "answer is"
        ("The answer is (c).", "C"),
        ("Failed to obtain answer via API. B", None),  # never read as a letter
        ("Failed to obtain answer via API: it is a dog", "B"),  # the option-text rule still applies
        ("选项D", None),  # a letter glued to other text is not a token
        ("D", "D"),
        ("(D) a fish", "D"),
        ("Cannot determine the answer from the image", REFUSED),
        ("Z", REFUSED),
        ("A dog sits on the mat in the sun", "A"),  # the reference reads the article as option A
    ],
)
def test_mmbench_option_extraction_follows_vlmevalkit(answer, letter):
    assert extract_option(answer, ABCD) == letter


def test_mmbench_last_five_tokens_is_a_named_option():
    assert extract_option("A dog sits on the mat in the sun", ABCD, last_five_tokens=True) == "B"
    assert extract_option("I would pick C", ABCD, last_five_tokens=True) == "C"


# ---------------------------------------------------------------- GQA: no whitespace stripping


def test_gqa_strips_periods_not_whitespace(tmp_path):
    questions = {
        f"q{i}": {"imageId": "i", "question": "?", "answer": "yes", "isBalanced": True, "types": {"structural": "v"}}
        for i in range(4)
    }
    preds = [
        {"questionId": "q0", "prediction": "Yes. "},
        {"questionId": "q1", "prediction": " yes"},
        {"questionId": "q2", "prediction": "yes\n"},
        {"questionId": "q3", "prediction": "Yes.."},
    ]
    ann = write_json(tmp_path / "q.json", questions)
    path = write_json(tmp_path / "preds.json", preds)
    assert registry.get("gqa").score(ann, path)["headline"]["value"] == 25.0
    assert registry.get("gqa").score(ann, path, strip_whitespace=True)["headline"]["value"] == 100.0
    # LLaVA's own answers file reads the same
    llava = write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": p["questionId"], "text": p["prediction"]} for p in preds]
    )
    assert registry.get("gqa").score(ann, llava)["headline"]["value"] == 25.0
    assert clean_prediction("Yes. ") == "yes. "


# ---------------------------------------------------------------- the VQA normalisers


def test_evalai_processor_splits_possessive_s():
    assert evalai_answer("The man's hat") == "man 's hat"
    assert normalize_answer("The man's hat") == "man's hat"
    assert evalai_answer("whats") == "what's"  # the contraction is restored after the 's rule ran
    assert evalai_answer("what's") == "what 's"


def test_period_rule_removes_at_most_32_periods():
    assert official_answer("." * 40) == "." * 8
    assert evalai_answer("a" + "." * 40) == "a" + "." * 8
    assert official_answer("." * 40, all_periods=True) == ""
    assert official_answer("3.5 m.") == "3.5 m"


def test_official_tool_handles_comma_and_question_mark_in_its_punctuation_rule():
    assert official_answer("x,y") == "x y"
    assert normalize_answer("x,y") == "xy"


def test_textvqa_applies_the_possessive_rule_to_both_sides(tmp_path):
    ann = {"data": [{"question_id": 1, "answers": ["what's"] * 10}, {"question_id": 2, "answers": ["man's"] * 10}]}
    res = [{"question_id": 1, "answer": "whats"}, {"question_id": 2, "answer": "Man's."}]
    m = registry.get("textvqa").score(write_json(tmp_path / "a.json", ann), write_json(tmp_path / "r.json", res))
    # "whats" -> "what's" but the humans' "what's" -> "what 's": no match, as in the m4c evaluator
    assert m["headline"]["value"] == 50.0
    llava = write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": r["question_id"], "text": r["answer"]} for r in res]
    )
    assert registry.get("textvqa").score(tmp_path / "a.json", llava)["headline"]["value"] == 50.0


def test_textvqa_all_periods_option(tmp_path):
    ann = {"data": [{"question_id": 1, "answers": ["ok"] * 10}]}
    res = [{"question_id": 1, "answer": "ok" + "." * 40}]
    a, r = write_json(tmp_path / "a.json", ann), write_json(tmp_path / "r.json", res)
    assert registry.get("textvqa").score(a, r)["headline"]["value"] == 0.0
    assert registry.get("textvqa").score(a, r, all_periods=True)["headline"]["value"] == 100.0


# ---------------------------------------------------------------- VQAv2: unanimous human answers


def test_vqav2_unanimous_human_answers_are_compared_as_written():
    assert vqav2_accuracy("yes", ["Yes"] * 10) == 0.0  # the official tool does not normalise them
    assert vqav2_accuracy("yes", ["yes"] * 10) == 1.0
    assert vqav2_accuracy("Yes.", ["yes"] * 10) == 1.0  # the prediction went through LLaVA's converter
    assert vqav2_accuracy("yes", ["Yes"] * 10, normalise_unanimous=True) == 1.0
    # disagreeing humans: both sides normalised by the official tool
    assert vqav2_accuracy("two", ["2"] * 4 + ["Two"] * 3 + ["3"] * 3) == 1.0


def test_vqav2_scorer_option_and_llava_answers(tmp_path):
    ann = {
        "annotations": [
            {"question_id": 1, "answer_type": "yes/no", "answers": [{"answer": "Yes"}] * 10},
            {"question_id": 2, "answer_type": "number", "answers": [{"answer": a} for a in ["2"] * 5 + ["two"] * 5]},
        ]
    }
    a = write_json(tmp_path / "ann.json", ann)
    res = write_json(tmp_path / "res.json", [{"question_id": 1, "answer": "yes"}, {"question_id": 2, "answer": "2"}])
    assert registry.get("vqav2").score(a, res)["headline"]["value"] == 50.0
    assert registry.get("vqav2").score(a, res, normalise_unanimous=True)["headline"]["value"] == 100.0
    llava = write_jsonl(
        tmp_path / "answers.jsonl", [{"question_id": 1, "text": "yes"}, {"question_id": 2, "text": "2"}]
    )
    assert registry.get("vqav2").score(a, llava)["headline"]["value"] == 50.0


# ---------------------------------------------------------------- POPE: LLaVA's own answers file


def pope_official(tmp: Path) -> Path:
    labels = ["yes", "no", "yes", "no"]
    folder = tmp / "pope"
    for split in ("adversarial", "popular", "random"):
        write_jsonl(
            folder / f"coco_pope_{split}.json",
            [
                {"question_id": i + 1, "image": f"{split}{i}.jpg", "text": "Is there a dog?", "label": lab}
                for i, lab in enumerate(labels)
            ],
        )
    return folder


def llava_question_file(tmp: Path, order=("random", "popular", "adversarial")) -> Path:
    rows, qid = [], 0
    for split in order:
        for i in range(4):
            rows.append({"question_id": qid, "image": f"{split}{i}.jpg", "text": "Is there a dog?", "category": split})
            qid += 1
    return write_jsonl(tmp / "llava_pope_test.jsonl", rows)


def test_pope_reads_llavas_answers_file_through_its_question_file(tmp_path):
    folder = pope_official(tmp_path)
    questions = llava_question_file(tmp_path)
    said = {"random": ["Yes", "No", "Yes", "No"], "popular": ["Yes", "Yes", "Yes", "Yes"], "adversarial": ["No"] * 4}
    # ids run on across the splits; no category; written out of order
    answers = [
        {
            "question_id": k * 4 + i,
            "prompt": "?",
            "text": said[split][i],
            "answer_id": "x",
            "model_id": "m",
            "metadata": {},
        }
        for k, split in enumerate(("random", "popular", "adversarial"))
        for i in range(4)
    ][::-1]
    m = registry.get("pope").score(folder, write_jsonl(tmp_path / "answers.jsonl", answers), questions=questions)
    assert m["splits"]["random"]["f1"] == 100.0
    assert m["splits"]["popular"]["accuracy"] == 50.0 and m["splits"]["popular"]["yes_ratio"] == 100.0
    assert m["splits"]["adversarial"]["f1"] == 0.0 and m["missing"] == 0

    # the same answers, split by hand into one file per split with the official ids, score the same
    by_split = tmp_path / "answers"
    for split in ("random", "popular", "adversarial"):
        write_jsonl(by_split / f"{split}.jsonl", [{"question_id": i + 1, "text": t} for i, t in enumerate(said[split])])
    assert registry.get("pope").score(folder, by_split) == m


def test_pope_llava_question_file_that_does_not_match_the_official_files_is_an_error(tmp_path):
    folder = pope_official(tmp_path)
    questions = llava_question_file(tmp_path)
    rows = [json.loads(line) for line in questions.read_text().splitlines()]
    rows[1]["image"] = "elsewhere.jpg"
    write_jsonl(questions, rows)
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"question_id": 0, "text": "Yes"}])
    with pytest.raises(ScoringError, match="elsewhere.jpg.*do not match"):
        registry.get("pope").score(folder, answers, questions=questions)


def test_pope_llava_answers_without_question_file_name_the_fix(tmp_path):
    folder = pope_official(tmp_path)
    answers = write_jsonl(tmp_path / "answers.jsonl", [{"question_id": 11, "text": "Yes"}])
    with pytest.raises(ScoringError, match="llava_pope_test.jsonl"):
        registry.get("pope").score(folder, answers)


# ---------------------------------------------------------------- impkit score --option


def test_score_option_flag(tmp_path, capsys, caplog):
    questions = {"q0": {"imageId": "i", "question": "?", "answer": "yes", "isBalanced": True, "types": {}}}
    ann = write_json(tmp_path / "q.json", questions)
    preds = write_json(tmp_path / "p.json", [{"questionId": "q0", "prediction": " yes"}])
    cli.main(["score", "gqa", "--annotations", str(ann), "--predictions", str(preds), "--option", "strip_whitespace"])
    assert json.loads(capsys.readouterr().out)["headline"]["value"] == 100.0
    with pytest.raises(SystemExit) as exit_:
        cli.main(["score", "gqa", "--annotations", str(ann), "--predictions", str(preds), "--option", "nope"])
    assert exit_.value.code == 1
    assert "gqa has no option 'nope' (its options: strip_whitespace)" in caplog.text


def test_vizwiz_reads_llavas_answers_through_its_question_file(tmp_path):
    """LLaVA answers VizWiz as `{question_id, text}` lines; its converter finds each question's image in
    llava_test.jsonl and submits the EvalAI-processed answer. The same file scores as the converted one."""
    ann = tmp_path / "val.json"
    ann.write_text(
        json.dumps(
            [
                {
                    "image": f"VizWiz_val_{i:08d}.jpg",
                    "question": "?",
                    "answer_type": "other",
                    "answers": [{"answer": a}] * 10,
                }
                for i, a in enumerate(["red", "two dogs", "unanswerable"])
            ]
        )
    )
    questions = tmp_path / "llava_test.jsonl"
    questions.write_text(
        "\n".join(json.dumps({"question_id": i, "image": f"VizWiz_val_{i:08d}.jpg", "text": "?"}) for i in range(3))
    )
    answers = tmp_path / "answers.jsonl"
    answers.write_text(
        "\n".join(
            json.dumps({"question_id": i, "prompt": "?", "text": t})
            for i, t in [(2, "Unanswerable"), (0, "Red."), (1, "2 dogs")]
        )
    )
    converted = tmp_path / "results.json"
    converted.write_text(
        json.dumps(
            [
                {"image": "VizWiz_val_00000000.jpg", "answer": evalai_answer("Red.")},
                {"image": "VizWiz_val_00000001.jpg", "answer": evalai_answer("2 dogs")},
                {"image": "VizWiz_val_00000002.jpg", "answer": evalai_answer("Unanswerable")},
            ]
        )
    )
    vizwiz = registry.get("vizwiz")
    from_llava = vizwiz.score(ann, answers, questions)
    assert from_llava == vizwiz.score(ann, converted)
    assert from_llava["headline"]["value"] == pytest.approx(200 / 3)  # "2 dogs" is not the humans' "two dogs"
    with pytest.raises(ScoringError, match="give its question file"):
        vizwiz.score(ann, answers)
    with pytest.raises(ScoringError, match="does not use a questions file"):
        vizwiz.score(ann, converted, questions)

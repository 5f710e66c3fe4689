"""The ten benchmark twins: built from a tiny generated world, byte-identical between runs, in the
official formats (every scorer gives full marks to the true answers and nothing to wrong ones), and
with the properties each benchmark's construction promises (POPE negatives, VQA disagreement,
MMBench circular copies, the exact prompt suffixes)."""

from __future__ import annotations

import csv
import dataclasses
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from sections import raw

from impkit.config import TwinSizes, WorldConfig, WorldSizes
from impkit.data.synth import generate_world
from impkit.data.synth import language as lang
from impkit.data.synth.scene import COLOURS, SHAPES
from impkit.eval import benchmarks as registry
from impkit.eval import heldout, prompts
from impkit.eval.benchmarks import write_predictions
from impkit.eval.benchmarks.mmbench import CIRCULAR_STRIDE
from impkit.eval.benchmarks.mme import COGNITION, PERCEPTION
from impkit.eval.benchmarks.mmvet import score_mmvet
from impkit.eval.scoring import normalize_answer
from impkit.eval.twins import read_prompts
from impkit.eval.twins.generate import generate_twins

BENCHMARKS = registry.names()

SIZES = TwinSizes(vqav2=40, gqa=40, vizwiz=30, textvqa=20, sqa=30, pope_images=8, mme_images=2, mmbench=24, mmvet=8)
WORLD = WorldSizes(
    **{f.name: 0 for f in dataclasses.fields(WorldSizes)}
    | {
        "heldout_scenes": 40,
        "heldout_charts": 12,
        "heldout_text": 12,
    }
)


@pytest.fixture(scope="module")
def heldout_dir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("world")
    generate_world(WorldConfig(seed=3, heldout_seed=4, image_size=64, sizes=WORLD), root, progress=False)
    return root / "heldout"


@pytest.fixture(scope="module")
def twins(heldout_dir, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("twins") / "twins"
    return out, generate_twins(heldout_dir, out, seed=11, sizes=SIZES)


def load_json(path: Path):
    return json.loads(path.read_text(encoding="utf-8"))


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_jsonl(path: Path, rows) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
    return path


def read_tsv(path: Path) -> list[dict]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f, delimiter="\t"))


def scenes_by_image(heldout_dir: Path) -> dict[str, dict]:
    return {row["image"]: row for row in load_jsonl(heldout_dir / "scenes.jsonl")}


def files_of(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- determinism, layout
def test_twins_are_byte_identical_between_runs_and_depend_on_the_seed(heldout_dir, twins, tmp_path):
    out, _ = twins
    again = tmp_path / "again"
    generate_twins(heldout_dir, again, seed=11, sizes=SIZES)
    assert files_of(again) == files_of(out)
    other = tmp_path / "other"
    generate_twins(heldout_dir, other, seed=12, sizes=SIZES)
    assert files_of(other)["vqav2/annotations.json"] != files_of(out)["vqav2/annotations.json"]
    # no temporary siblings left behind by the atomic writes
    assert sorted(p.name for p in tmp_path.iterdir()) == ["again", "other"]


def test_resizing_one_twin_leaves_the_others_unchanged(heldout_dir, twins, tmp_path):
    out, _ = twins
    resized = tmp_path / "resized"
    generate_twins(heldout_dir, resized, seed=11, sizes=dataclasses.replace(SIZES, vqav2=10))
    before, after = files_of(out), files_of(resized)
    assert before["vqav2/prompts.jsonl"] != after["vqav2/prompts.jsonl"]
    assert all(before[name] == after[name] for name in before if not name.startswith("vqav2/") and name != "twins.json")


def test_manifest_and_prompt_files_cover_every_benchmark(heldout_dir, twins):
    out, manifest = twins
    assert load_json(out / "twins.json") == manifest
    assert tuple(manifest["benchmarks"]) == BENCHMARKS
    images = set(scenes_by_image(heldout_dir))
    for benchmark, entry in manifest["benchmarks"].items():
        rows = read_prompts(out / benchmark)
        assert len(rows) == entry["n_prompts"] > 0
        assert all(
            set(row) == {"id", "image", "prompt", "type", "benchmark"} and row["benchmark"] == benchmark and row["type"]
            for row in rows
        )
        assert len({row["id"] for row in rows}) == len(rows), f"{benchmark}: duplicate prompt ids"
        assert {row["image"] for row in rows} - {None} <= images
        assert [g["id"] for g in load_jsonl(out / entry["gold"])] == [row["id"] for row in rows]
    assert manifest["benchmarks"]["vqav2"]["n_prompts"] == SIZES.vqav2


def test_sizes_are_validated_and_a_missing_world_is_a_clear_error(tmp_path):
    with pytest.raises(ValueError, match="eval.twins.gqa"):
        dataclasses.replace(SIZES, gqa=0)
    with pytest.raises(FileNotFoundError, match="scenes.jsonl"):
        generate_twins(tmp_path / "nowhere", tmp_path / "out", seed=0, sizes=SIZES)


# --------------------------------------------------------------------------- official formats
def _predictions(benchmark: str, root: Path, out: Path, right: bool) -> Path:
    """Prediction files built from the official annotation files themselves (not from gold.jsonl):
    the true answers (``right``) or answers that are all wrong."""
    wrong_text = "zzz"
    if benchmark == "vqav2":
        anns = load_json(root / "annotations.json")["annotations"]
        rows = [
            {"question_id": a["question_id"], "answer": a["multiple_choice_answer"] if right else wrong_text}
            for a in anns
        ]
        return write_json(out / "results.json", rows)
    if benchmark == "gqa":
        data = load_json(root / "testdev_balanced_questions.json")
        rows = [
            {"questionId": qid, "prediction": q["answer"].capitalize() + "." if right else wrong_text}
            for qid, q in data.items()
        ]
        return write_json(out / "predictions.json", rows)
    if benchmark == "vizwiz":
        data = load_json(root / "val.json")
        rows = [
            {
                "image": r["image"],
                "answer": Counter(a["answer"] for a in r["answers"]).most_common(1)[0][0] if right else wrong_text,
            }
            for r in data
        ]
        return write_json(out / "results.json", rows)
    if benchmark == "textvqa":
        data = load_json(root / "TextVQA_0.5.1_val.json")["data"]
        rows = [
            {
                "question_id": r["question_id"],
                "answer": Counter(r["answers"]).most_common(1)[0][0] if right else wrong_text,
            }
            for r in data
        ]
        return write_json(out / "results.json", rows)
    if benchmark == "sqa":
        problems = load_json(root / "problems.json")
        letters = "ABCDE"
        rows = [
            {"question_id": pid, "text": letters[p["answer"] if right else (p["answer"] + 1) % len(p["choices"])]}
            for pid, p in problems.items()
        ]
        return write_jsonl(out / "answers.jsonl", rows)
    if benchmark == "pope":
        for file in (root / "questions").iterdir():
            split = file.name.removeprefix("coco_pope_").removesuffix(".json")
            flip = {"yes": "No, there is not.", "no": "Yes, there is."}
            rows = [
                {"question_id": q["question_id"], "text": q["label"].capitalize() if right else flip[q["label"]]}
                for q in load_jsonl(file)
            ]
            write_jsonl(out / "answers" / f"{split}.jsonl", rows)
        return out / "answers"
    if benchmark == "mme":
        folder = out / "results"
        folder.mkdir(parents=True)
        for file in (root / "ground_truth").glob("*.txt"):
            lines = []
            for line in file.read_text(encoding="utf-8").splitlines():
                gt = line.split("\t")[2]
                lines.append(f"{line}\t{gt if right else {'Yes': 'No', 'No': 'Yes'}[gt]}")
            (folder / file.name).write_text("\n".join(lines) + "\n", encoding="utf-8")
        return folder
    if benchmark in ("mmbench", "mmbench_cn"):
        (sheet,) = root.glob("*.tsv")
        rows = []
        for row in read_tsv(sheet):
            letters = [c for c in "ABCD" if row[c]]
            letter = row["answer"] if right else letters[(letters.index(row["answer"]) + 1) % len(letters)]
            rows.append({"question_id": int(row["index"]), "text": letter})
        return write_jsonl(out / "answers.jsonl", rows)
    assert benchmark == "mmvet"
    data = load_json(root / "mm-vet.json")
    return write_json(
        out / "results.json", {qid: item["answer"] if right else wrong_text for qid, item in data.items()}
    )


FULL_MARKS = {"mme": 2000.0}


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_each_twin_scores_full_marks_when_right_and_zero_when_wrong(benchmark, twins, tmp_path):
    out, manifest = twins
    entry = manifest["benchmarks"][benchmark]
    annotations = None if benchmark == "mme" else out / entry["annotations"]
    questions = out / entry["questions"] if entry["questions"] else None
    scorer = registry.get(benchmark).score
    if benchmark == "mmvet":  # needs a judge: exact match stands in for one here

        def scorer(a, p, questions=None):
            return score_mmvet(a, p, questions, judge=lambda q, gold, pred: float(gold == pred))

    right = scorer(annotations, _predictions(benchmark, out / benchmark, tmp_path / "right", True), questions=questions)
    wrong = scorer(
        annotations, _predictions(benchmark, out / benchmark, tmp_path / "wrong", False), questions=questions
    )
    assert right["headline"]["value"] == pytest.approx(FULL_MARKS.get(benchmark, 100.0))
    assert wrong["headline"]["value"] == pytest.approx(0.0)
    assert right.get("missing", 0) == 0
    if benchmark == "mme":
        assert right["cognition"] == pytest.approx(800.0)
    if benchmark == "mmvet":
        assert (
            registry.get("mmvet").score(annotations, tmp_path / "right" / "results.json")["headline"]["value"] is None
        )


@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_runner_answers_equal_to_gold_write_predictions_the_scorer_gives_full_marks(benchmark, twins, tmp_path):
    out, manifest = twins
    entry = manifest["benchmarks"][benchmark]
    gold = {row["id"]: row["answer"] for row in load_jsonl(out / entry["gold"])}
    target = tmp_path / ("answers" if benchmark in ("pope", "mme") else "predictions.jsonl")
    predictions = write_predictions(benchmark, out / benchmark, gold, target)
    annotations = None if benchmark == "mme" else out / entry["annotations"]
    questions = out / entry["questions"] if entry["questions"] else None
    if benchmark == "mmvet":
        result = score_mmvet(annotations, predictions, judge=lambda q, g, p: float(g == p))
    else:
        result = registry.get(benchmark).score(annotations, predictions, questions=questions)
    assert result["headline"]["value"] == pytest.approx(FULL_MARKS.get(benchmark, 100.0))
    # one answer short: counted missing, not an error
    scored = list(gold)
    if benchmark == "sqa":  # ScienceQA-IMG scores only the problems with an image
        scored = [pid for pid, p in load_json(out / "sqa" / "problems.json").items() if p["image"]]
    if benchmark == "gqa":  # GQA scores only the balanced questions
        scored = [qid for qid, q in load_json(out / entry["annotations"]).items() if q["isBalanced"]]
    first = scored[0]
    partial = write_predictions(
        benchmark, out / benchmark, {k: v for k, v in gold.items() if k != first}, tmp_path / ("p2" + target.suffix)
    )
    if benchmark != "mmvet":
        assert registry.get(benchmark).score(annotations, partial, questions=questions)["missing"] == 1
    with pytest.raises(ValueError, match="does not have"):
        write_predictions(benchmark, out / benchmark, {"no-such-id": "x"}, tmp_path / "p3")


# --------------------------------------------------------------------------- POPE
def _pope(out: Path) -> dict[str, list[dict]]:
    return {
        f.name.removeprefix("coco_pope_").removesuffix(".json"): load_jsonl(f)
        for f in (out / "pope" / "questions").iterdir()
    }


def _category(text: str) -> tuple[str, str]:
    colour, shape = re.fullmatch(r"Is there an? (\w+) (\w+) in the image\?", text).groups()
    return colour, shape


def test_pope_negatives_are_absent_balanced_and_differ_by_strategy(heldout_dir, twins):
    out, _ = twins
    scenes = scenes_by_image(heldout_dir)
    splits = _pope(out)
    assert sorted(splits) == ["adversarial", "popular", "random"]
    negatives: dict[str, set] = {}
    for split, rows in splits.items():
        assert [r["question_id"] for r in rows] == list(range(1, len(rows) + 1))  # POPE numbers from 1 per file
        labels = Counter(r["label"] for r in rows)
        assert labels["yes"] == labels["no"] > 0
        for r in rows:
            present = {(o["colour"], o["shape"]) for o in scenes[r["image"]]["objects"]}
            assert (_category(r["text"]) in present) == (r["label"] == "yes"), r
        negatives[split] = {(r["image"], r["text"]) for r in rows if r["label"] == "no"}
    # the splits share images and positives, and differ only in the negatives
    positives = [{(r["image"], r["text"]) for r in rows if r["label"] == "yes"} for rows in splits.values()]
    assert positives[0] == positives[1] == positives[2]
    assert negatives["adversarial"] != negatives["random"]
    assert negatives["popular"] != negatives["random"]
    # adversarial negatives share a colour or a shape with something in the image
    for image, text in negatives["adversarial"]:
        colour, shape = _category(text)
        objects = scenes[image]["objects"]
        assert any(o["colour"] == colour or o["shape"] == shape for o in objects)
    # popular negatives are the most frequent categories of the held-out scenes the image lacks
    counts = Counter(
        cat
        for row in scenes.values()
        if row["kind"] == "scene"
        for cat in {(o["colour"], o["shape"]) for o in row["objects"]}
    )
    categories = [(c, s) for c in COLOURS for s in SHAPES]
    asked_by_image = defaultdict(list)
    for image, text in negatives["popular"]:
        asked_by_image[image].append(counts[_category(text)])
    for image, asked in asked_by_image.items():
        present = {(o["colour"], o["shape"]) for o in scenes[image]["objects"]}
        lacking = sorted((counts[cat] for cat in categories if cat not in present), reverse=True)
        assert sorted(asked, reverse=True) == lacking[: len(asked)]


# --------------------------------------------------------------------------- VQA-style answers
def test_vqav2_humans_disagree_but_the_majority_normalises_to_the_answer(twins):
    out, _ = twins
    anns = load_json(out / "vqav2" / "annotations.json")["annotations"]
    questions = {q["question_id"]: q for q in load_json(out / "vqav2" / "questions.json")["questions"]}
    assert set(questions) == {a["question_id"] for a in anns}
    raw_variants = disagreeing = 0
    for a in anns:
        answers = [x["answer"] for x in a["answers"]]
        assert len(answers) == 10 and [x["answer_id"] for x in a["answers"]] == list(range(1, 11))
        gold = normalize_answer(a["multiple_choice_answer"])
        assert sum(normalize_answer(x) == gold for x in answers) >= 6
        raw_variants += any(x != a["multiple_choice_answer"] and normalize_answer(x) == gold for x in answers)
        disagreeing += any(normalize_answer(x) != gold for x in answers)
        expected_type = "yes/no" if gold in ("yes", "no") else "number" if gold.isdigit() else "other"
        assert a["answer_type"] == expected_type
        assert questions[a["question_id"]]["image_id"] == a["image_id"] == a["question_id"] // 1000
    assert raw_variants >= len(anns) // 5  # casing, articles, number words, periods the normaliser merges
    assert len(anns) // 5 <= disagreeing < len(anns)  # real disagreement, but not on every question
    assert {a["answer_type"] for a in anns} == {"yes/no", "number", "other"}


def test_vizwiz_has_unanswerable_questions_about_absent_things(heldout_dir, twins):
    out, _ = twins
    scenes = scenes_by_image(heldout_dir)
    records = load_json(out / "vizwiz" / "val.json")
    assert len({r["image"] for r in records}) == len(records)  # the image is the question id
    unanswerable = [r for r in records if r["answerable"] == 0]
    assert unanswerable and len(unanswerable) < len(records)
    for r in records:
        assert len(r["answers"]) == 10 and all(set(a) == {"answer", "answer_confidence"} for a in r["answers"])
        top = Counter(a["answer"] for a in r["answers"]).most_common(1)[0]
        assert top[1] >= 6
        assert (top[0] == "unanswerable") == (r["answerable"] == 0) == (r["answer_type"] == "unanswerable")
        match = re.fullmatch(r"What colour is the (\w+)\?", r["question"])
        if r["answerable"] == 0 and match and scenes[r["image"]]["kind"] == "scene":
            assert all(o["shape"] != match.group(1) for o in scenes[r["image"]]["objects"])


def test_textvqa_ocr_tokens_hold_the_word(heldout_dir, twins):
    out, _ = twins
    scenes = scenes_by_image(heldout_dir)
    data = load_json(out / "textvqa" / "TextVQA_0.5.1_val.json")["data"]
    prompt_of = {row["id"]: row for row in read_prompts(out / "textvqa")}
    for r in data:
        image = prompt_of[str(r["question_id"])]["image"]
        assert image.startswith(r["image_id"])
        assert scenes[image]["word"].upper() in r["ocr_tokens"]
        assert len(r["answers"]) == 10 and all(isinstance(a, str) for a in r["answers"])


def test_gqa_marks_some_questions_unbalanced_and_types_them(twins):
    out, manifest = twins
    data = load_json(out / "gqa" / "testdev_balanced_questions.json")
    balanced = [q for q in data.values() if q["isBalanced"]]
    assert 0 < len(balanced) < len(data) and manifest["benchmarks"]["gqa"]["balanced"] == len(balanced)
    assert {q["types"]["structural"] for q in data.values()} >= {"verify", "query"}
    assert all(q["answer"] == q["answer"].lower() and not q["answer"].endswith(".") for q in data.values())


# --------------------------------------------------------------------------- multiple choice
def test_mmbench_circular_copies_move_the_answer_letter(twins):
    out, _ = twins
    en = read_tsv(out / "mmbench" / "MMBench_DEV_EN.tsv")
    cn = read_tsv(out / "mmbench_cn" / "MMBench_DEV_CN.tsv")
    assert list(en[0]) == [
        "index",
        "question",
        "hint",
        "A",
        "B",
        "C",
        "D",
        "answer",
        "category",
        "l2-category",
        "split",
        "image_path",
    ]
    groups = defaultdict(list)
    for row in en:
        groups[int(row["index"]) % CIRCULAR_STRIDE].append(row)
    assert len(groups) == SIZES.mmbench
    for rows in groups.values():
        options = [c for c in "ABCD" if rows[0][c]]
        assert len(rows) == len(options) >= 2  # one copy per option position
        assert sorted(int(r["index"]) // CIRCULAR_STRIDE for r in rows) == list(range(len(rows)))
        assert len({r["answer"] for r in rows}) == len(rows)  # the answer visits every letter
        assert len({r[r["answer"]] for r in rows}) == 1  # ... and is always the same option
        assert len({r["question"] for r in rows}) == len({r["image_path"] for r in rows}) == 1
    assert any(r["hint"] for r in en) and any(not r["hint"] for r in en)
    # the CN sheet is the same questions translated: same rows, answers and images, Chinese text
    assert [(r["index"], r["answer"], r["image_path"], r["category"]) for r in cn] == [
        (r["index"], r["answer"], r["image_path"], r["category"]) for r in en
    ]
    assert all(re.search(r"[\u4e00-\u9fff]", r["question"]) for r in cn)


def test_sqa_has_text_only_and_hinted_problems_and_scores_image_items_only(twins):
    out, manifest = twins
    problems = load_json(out / "sqa" / "problems.json")
    splits = load_json(out / "sqa" / "pid_splits.json")
    assert splits["test"] == list(problems)
    assert all(
        p["split"] == "test" and 2 <= len(p["choices"]) <= 5 and 0 <= p["answer"] < len(p["choices"])
        for p in problems.values()
    )
    with_image = [p for p in problems.values() if p["image"]]
    assert 0 < len(with_image) < len(problems)
    assert any(p["hint"] for p in problems.values()) and any(not p["hint"] for p in problems.values())
    assert manifest["benchmarks"]["sqa"]["image_problems"] == len(with_image)


def test_mme_has_every_subtask_with_a_yes_and_a_no_question_per_image(twins):
    out, _ = twins
    files = sorted(p.stem for p in (out / "mme" / "ground_truth").glob("*.txt"))
    assert files == sorted(PERCEPTION + COGNITION)
    for name in files:
        lines = [line.split("\t") for line in (out / "mme" / "ground_truth" / f"{name}.txt").read_text().splitlines()]
        assert all(len(cells) == 3 for cells in lines)
        by_image = defaultdict(list)
        for image, question, gt in lines:
            assert question.endswith(" " + prompts.MME_YES_NO)
            by_image[image].append(gt)
        assert by_image and all(gts == ["Yes", "No"] for gts in by_image.values())


# --------------------------------------------------------------------------- prompts
SUFFIX = {
    "vqav2": "\n" + prompts.SHORT_ANSWER,
    "gqa": "\n" + prompts.SHORT_ANSWER,
    "pope": "\n" + prompts.SHORT_ANSWER,
    "mme": "\n" + prompts.SHORT_ANSWER,
    "textvqa": "\n" + prompts.SHORT_ANSWER,
    "vizwiz": f"\n{prompts.VIZWIZ_UNANSWERABLE}\n{prompts.SHORT_ANSWER}",
    "sqa": "\n" + prompts.OPTION_ANSWER,
    "mmbench": "\n" + prompts.OPTION_ANSWER,
    "mmbench_cn": "\n" + prompts.OPTION_ANSWER_CN,
}


def test_prompts_carry_the_exact_suffixes(twins):
    out, _ = twins
    assert prompts.SHORT_ANSWER == "Answer the question using a single word or phrase."
    assert prompts.OPTION_ANSWER == "Answer with the option's letter from the given choices directly."
    assert prompts.OPTION_ANSWER_CN == "请直接回答选项字母。"
    assert prompts.VIZWIZ_UNANSWERABLE == "When the provided information is insufficient, respond with 'Unanswerable'."
    # training prompts and evaluation prompts must not drift apart
    assert lang.SHORT_ANSWER == heldout.SHORT_ANSWER == "\n" + prompts.SHORT_ANSWER
    assert lang.MC_INSTRUCTION == "\n" + prompts.OPTION_ANSWER
    for benchmark, suffix in SUFFIX.items():
        for row in read_prompts(out / benchmark):
            assert row["prompt"].endswith(suffix), (benchmark, row["prompt"])
            assert prompts.IMAGE_TAG not in row["prompt"] and prompts.MME_YES_NO not in row["prompt"]
    for row in read_prompts(out / "textvqa"):
        assert f"\n{prompts.OCR_REFERENCE}" in row["prompt"]
    mmvet = load_json(out / "mmvet" / "mm-vet.json")
    assert [row["prompt"] for row in read_prompts(out / "mmvet")] == [item["question"] for item in mmvet.values()]
    problems = load_json(out / "sqa" / "problems.json")
    for row in read_prompts(out / "sqa"):
        p = problems[row["id"]]
        expected = ([f"Context: {p['hint']}"] if p["hint"] else []) + [p["question"]]
        expected += [f"{letter}. {choice}" for letter, choice in zip("ABCDE", p["choices"], strict=False)]
        assert row["prompt"] == "\n".join([*expected, prompts.OPTION_ANSWER])
        assert (row["image"] is None) == (p["image"] is None)
    sheet = {r["index"]: r for r in read_tsv(out / "mmbench" / "MMBench_DEV_EN.tsv")}
    for row in read_prompts(out / "mmbench"):
        r = sheet[row["id"]]
        options = [f"{c}. {r[c]}" for c in "ABCD" if r[c]]
        assert row["prompt"] == "\n".join(
            ([r["hint"]] if r["hint"] else []) + [r["question"], *options, prompts.OPTION_ANSWER]
        )


def test_prompt_builders():
    assert prompts.with_image("Q?") == "<image>\nQ?"
    assert prompts.mme("Is it red? Please answer yes or no.") == "Is it red?\n" + prompts.SHORT_ANSWER
    with pytest.raises(ValueError, match="Please answer yes or no"):
        prompts.mme("Is it red?")
    assert prompts.textvqa("What?", []) == "What?\n" + prompts.SHORT_ANSWER
    assert prompts.textvqa("What?", ["A", "B"]) == "What?\nReference OCR token: A, B\n" + prompts.SHORT_ANSWER


def test_impkit_twins_reads_its_sizes_from_params_and_scores_full_marks_with_gold(heldout_dir, tmp_path):
    import yaml

    from impkit.cli import main

    params = tmp_path / "params.yaml"
    section = {**raw("eval"), "seed": 5, "twins": dataclasses.asdict(SIZES)}
    params.write_text(yaml.safe_dump({"eval": section}), encoding="utf-8")
    out = tmp_path / "twins"
    main(["twins", "--params", str(params), "--heldout", str(heldout_dir), "--out", str(out)])
    manifest = load_json(out / "twins.json")
    assert manifest["benchmarks"]["vqav2"]["n_prompts"] == SIZES.vqav2 and manifest["seed"] == 5
    gold = {row["id"]: row["answer"] for row in map(json.loads, (out / "gqa" / "gold.jsonl").read_text().splitlines())}
    predictions = write_predictions("gqa", out / "gqa", gold, tmp_path / "gqa-predictions")
    entry = load_json(out / "twins.json")["benchmarks"]["gqa"]
    assert registry.get("gqa").score(out / entry["annotations"], predictions)["headline"]["value"] == 100.0


def test_impkit_twins_without_an_eval_section_is_a_clear_error(heldout_dir, tmp_path):
    import subprocess
    import sys

    params = tmp_path / "params.yaml"
    params.write_text("world: {}\n", encoding="utf-8")
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "impkit.cli",
            "twins",
            "--params",
            str(params),
            "--heldout",
            str(heldout_dir),
            "--out",
            str(tmp_path / "t"),
        ],
        capture_output=True,
        text=True,
    )
    assert proc.returncode != 0
    assert "eval" in proc.stderr and "Traceback" not in proc.stderr

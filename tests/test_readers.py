"""Reading the benchmarks' official files into the twins' layout (impkit.eval.readers, `impkit
prepare`). The twins write the official formats, so the strongest check is that every twin's own
official files read back into exactly the twin's prompts and gold answers; then the real-file cases
the twins do not cover (base64 MMBench images, splits without answers, MME's release folders, the
default image names), the one-line errors, the CLI, and an evaluation over a prepared folder."""

from __future__ import annotations

import base64
import csv
import io
import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import pytest
from conftest import TWIN_SIZES
from PIL import Image

from impkit.cli import main as cli
from impkit.config import TwinSizes
from impkit.eval import benchmarks as registry
from impkit.eval import prompts
from impkit.eval.benchmarks import write_predictions
from impkit.eval.benchmarks.mmbench import read_mmbench
from impkit.eval.benchmarks.mme import PERCEPTION, read_mme
from impkit.eval.benchmarks.prepare import prepare
from impkit.eval.benchmarks.vqav2 import read_vqav2
from impkit.eval.evaluate import MAJORITY, NO_ANNOTATIONS, NO_GOLD, evaluate
from impkit.eval.runners import Question, Runner
from impkit.eval.scoring import ScoringError
from impkit.eval.twins import read_prompts

BENCHMARKS = registry.names()

SIZES = TwinSizes(**TWIN_SIZES)
# Where the twins' official files keep each benchmark's image reference, as patterns onto the
# held-out images folder (VQAv2's image_id is the line in scenes.jsonl, the scenes come first;
# GQA's imageId and TextVQA's image_id are the image path without its extension).
TWIN_INPUTS = {
    "vqav2": {
        "questions": "vqav2/questions.json",
        "annotations": "vqav2/annotations.json",
        "image_pattern": "scenes/{image_id:06d}.png",
    },
    "gqa": {"annotations": "gqa/testdev_balanced_questions.json", "image_pattern": "{imageId}.png"},
    "vizwiz": {"annotations": "vizwiz/val.json"},
    "textvqa": {"annotations": "textvqa/TextVQA_0.5.1_val.json", "image_pattern": "{image_id}.png"},
    "sqa": {"annotations": "sqa/problems.json", "image_pattern": "{image}"},
    "pope": {"annotations": "pope/questions"},
    "mme": {"annotations": "mme/ground_truth", "image_pattern": "{image}"},
    "mmbench": {"annotations": "mmbench/MMBench_DEV_EN.tsv"},
    "mmbench_cn": {"annotations": "mmbench_cn/MMBench_DEV_CN.tsv"},
    "mmvet": {"annotations": "mmvet/mm-vet.json"},
}
# The twins' gold is the canonical answer; VizWiz/TextVQA's is read as the humans' majority answer.
MAJORITY_GOLD = ("vizwiz", "textvqa")
FULL_MARKS = {"mme": 2800.0}  # perception + cognition: 14 subtasks x 200 (the headline is perception)


@pytest.fixture(scope="session")
def heldout(eval_world) -> Path:
    return eval_world


@pytest.fixture(scope="session")
def twins(eval_twins) -> Path:
    return eval_twins


def twin_args(twins: Path, benchmark: str) -> dict:
    return {key: (value if key == "image_pattern" else twins / value) for key, value in TWIN_INPUTS[benchmark].items()}


@pytest.fixture(scope="module")
def prepared(heldout, twins, tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("prepared") / "real"
    entries = {b: prepare(b, out, images=heldout / "images", **twin_args(twins, b)) for b in BENCHMARKS}
    return out, entries


def load_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_json(path: Path, obj) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj, ensure_ascii=False), encoding="utf-8")
    return path


def write_tsv(path: Path, rows: list[dict]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
    return path


def encoded(image: Image.Image, fmt: str) -> tuple[str, bytes]:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt)
    return base64.b64encode(buffer.getvalue()).decode(), buffer.getvalue()


def same_file(a: str | None, b: str | None) -> bool:
    return (a is None and b is None) or (a is not None and b is not None and Path(a).resolve() == Path(b).resolve())


# --------------------------------------------------------------------------- the twins read back
@pytest.mark.parametrize("benchmark", BENCHMARKS)
def test_the_twins_official_files_read_back_into_the_twins_prompts_and_gold(
    benchmark, prepared, twins, heldout, tmp_path
):
    out, entries = prepared
    ours, theirs = read_prompts(out / benchmark), read_prompts(twins / benchmark)
    assert [row["id"] for row in ours] == [row["id"] for row in theirs]
    for mine, twin in zip(ours, theirs, strict=True):
        assert {k: mine[k] for k in ("id", "prompt", "type", "benchmark")} == {
            k: twin[k] for k in ("id", "prompt", "type", "benchmark")
        }
        assert mine["image"] is None or Path(mine["image"]).is_absolute()
        twin_image = None if twin["image"] is None else str(heldout / "images" / twin["image"])
        assert same_file(mine["image"], twin_image), (mine, twin)

    gold = load_jsonl(out / benchmark / "gold.jsonl")
    twin_gold = load_jsonl(twins / benchmark / "gold.jsonl")
    assert [g["id"] for g in gold] == [g["id"] for g in twin_gold]
    if benchmark not in MAJORITY_GOLD:
        assert gold == twin_gold
    # whatever the gold answer, the scorer gives it full marks on the official files
    answers = {g["id"]: g["answer"] for g in gold}
    predictions = write_predictions(
        benchmark, out / benchmark, answers, tmp_path / registry.get(benchmark).prediction_file
    )
    entry = entries[benchmark]
    if benchmark == "mmvet":
        assert (
            registry.get("mmvet").score(entry["annotations"], predictions)["missing"] == 0
        )  # no number without a judge
    elif benchmark == "mme":
        metrics = registry.get("mme").score(None, predictions)
        assert metrics["perception"] + metrics["cognition"] == FULL_MARKS["mme"]
    else:
        metrics = registry.get(benchmark).score(entry["annotations"], predictions, questions=entry["questions"])
        assert metrics["headline"]["value"] == pytest.approx(100.0)


def test_the_manifest_lists_every_prepared_benchmark_like_the_twins(prepared, twins):
    out, entries = prepared
    manifest = json.loads((out / "twins.json").read_text(encoding="utf-8"))
    twin_manifest = json.loads((twins / "twins.json").read_text(encoding="utf-8"))
    assert manifest["seed"] is None and manifest["source"] == "official files"
    assert manifest["benchmarks"] == entries and tuple(entries) == BENCHMARKS
    for benchmark, entry in entries.items():
        twin_entry = twin_manifest["benchmarks"][benchmark]
        for key in ("prompts", "gold", "predictions", "n_prompts"):
            assert entry[key] == twin_entry[key], (benchmark, key)
        assert entry["source"] == "official"
        if benchmark == "mme":
            assert entry["annotations"] == twin_entry["annotations"] == "mme/ground_truth"
        else:
            assert Path(entry["annotations"]) == (twins / twin_entry["annotations"]).absolute()
        if twin_entry["questions"]:
            assert Path(entry["questions"]) == (twins / twin_entry["questions"]).absolute()
        else:
            assert entry["questions"] is None
    assert entries["sqa"]["text_only"] > 0 and entries["vqav2"]["text_only"] == 0


def test_mme_ground_truth_is_written_exactly_as_the_twins_write_it(prepared, twins):
    out, _ = prepared
    ours = sorted((out / "mme" / "ground_truth").glob("*.txt"))
    assert [p.name for p in ours] == sorted(p.name for p in (twins / "mme" / "ground_truth").glob("*.txt"))
    for path in ours:
        assert path.read_bytes() == (twins / "mme" / "ground_truth" / path.name).read_bytes()


def test_mme_release_folders_read_like_the_eval_tool_lines(twins, heldout, tmp_path):
    """The MME release keeps per subtask one question file per image (``<stem>.txt`` of
    ``question<TAB>answer`` lines), next to the image or in questions_answers_YN/ beside images/."""
    release = tmp_path / "MME_Benchmark_release_version"
    for gt in sorted((twins / "mme" / "ground_truth").glob("*.txt")):
        nested = gt.stem in ("artwork", "celebrity", "landmark", "posters", "scene")
        qa_dir = release / gt.stem / ("questions_answers_YN" if nested else "")
        image_dir = release / gt.stem / ("images" if nested else "")
        qa_dir.mkdir(parents=True, exist_ok=True)
        image_dir.mkdir(parents=True, exist_ok=True)
        by_image: dict[str, list[str]] = {}
        for line in gt.read_text(encoding="utf-8").splitlines():
            image, question, answer = line.split("\t")
            by_image.setdefault(image, []).append(f"{question}\t{answer}\n")
        for image, lines in by_image.items():
            stem = image.replace("/", "_").rsplit(".", 1)[0]
            shutil.copyfile(heldout / "images" / image, image_dir / f"{stem}.png")
            (qa_dir / f"{stem}.txt").write_text("".join(lines), encoding="utf-8")
    from_release = read_mme(release, release)  # the default patterns find both layouts
    from_tool = read_mme(twins / "mme" / "ground_truth", heldout / "images", image_pattern="{image}")
    assert [(r.id, r.prompt, r.type, r.gold) for r in from_release] == [
        (r.id, r.prompt, r.type, r.gold) for r in from_tool
    ]
    assert all(
        Path(a.image).read_bytes() == Path(b.image).read_bytes() for a, b in zip(from_release, from_tool, strict=True)
    )
    assert any("/images/" in r.image for r in from_release) and any("/images/" not in r.image for r in from_release)
    out = tmp_path / "out"
    prepare("mme", out, annotations=release, images=release)
    line = (out / "mme" / "ground_truth" / "existence.txt").read_text(encoding="utf-8").splitlines()[0]
    assert line.split("\t")[0].startswith("scenes_") and line.endswith("\tYes")  # the eval tool's image names


# --------------------------------------------------------------------------- MMBench's base64 sheet
def test_mmbench_base64_images_are_decoded_once_per_distinct_image(tmp_path):
    red, red_png = encoded(Image.new("RGB", (8, 6), (200, 20, 20)), "PNG")
    blue, _ = encoded(Image.new("RGB", (5, 7), (20, 20, 200)), "JPEG")
    base = {"hint": "", "C": "", "D": "", "category": "ocr", "l2-category": "x", "split": "dev"}
    rows = [
        base | {"index": "0", "question": "Which colour?", "A": "red", "B": "blue", "answer": "A", "image": red},
        base
        | {
            "index": "1",
            "question": "Which one?",
            "hint": "Look closely.",
            "A": "x",
            "B": "y",
            "C": "z",
            "answer": "C",
            "image": blue,
        },
        base | {"index": "1000000", "question": "Which colour?", "A": "blue", "B": "red", "answer": "B", "image": red},
        base | {"index": "2000000", "question": "Which colour?", "A": "red", "B": "blue", "answer": "A", "image": "0"},
    ]
    sheet = write_tsv(tmp_path / "MMBench_DEV_EN.tsv", rows)
    out = tmp_path / "out"
    entry = prepare("mmbench", out, annotations=sheet, images=None)
    images = out / "mmbench" / "images"
    assert sorted(p.name for p in images.iterdir()) == ["0.png", "1.png"]
    assert (images / "0.png").read_bytes() == red_png
    with Image.open(images / "1.png") as decoded:
        assert decoded.format == "PNG" and decoded.size == (5, 7)
    got = read_prompts(out / "mmbench")
    assert [row["id"] for row in got] == ["0", "1", "1000000", "2000000"]
    assert [Path(row["image"]).name for row in got] == ["0.png", "1.png", "0.png", "0.png"]
    assert got[1]["prompt"] == prompts.mmbench("Which one?", ["x", "y", "z"], "Look closely.", "en")
    assert [row["type"] for row in got] == ["ocr"] * 4
    assert [g["answer"] for g in load_jsonl(out / "mmbench" / "gold.jsonl")] == ["A", "C", "B", "A"]
    assert entry["annotations"] == str(sheet.absolute()) and entry["n_prompts"] == 4
    # MMBench-CN: the same sheet asked with the Chinese instruction
    cn = read_mmbench(sheet, None, image_dir=tmp_path / "cn-images", language="cn")
    assert cn[0].prompt.endswith(prompts.OPTION_ANSWER_CN)


# --------------------------------------------------------------------------- splits without answers
def test_splits_without_answers_give_prompts_and_no_gold(prepared, twins, heldout, tmp_path):
    out = tmp_path / "test-splits"
    images = heldout / "images"
    # VQAv2 test-dev: the questions only
    prepare(
        "vqav2",
        out,
        questions=twins / "vqav2" / "questions.json",
        images=images,
        image_pattern="scenes/{image_id:06d}.png",
    )
    # VizWiz test: records without answers (nor answer types)
    records = json.loads((twins / "vizwiz" / "val.json").read_text(encoding="utf-8"))
    test = write_json(tmp_path / "test.json", [{"image": r["image"], "question": r["question"]} for r in records])
    prepare("vizwiz", out, questions=test, images=images)
    # MMBench test: no answer column
    with open(twins / "mmbench" / "MMBench_DEV_EN.tsv", encoding="utf-8", newline="") as f:
        sheet = [{k: v for k, v in row.items() if k != "answer"} for row in csv.DictReader(f, delimiter="\t")]
    prepare("mmbench", out, annotations=write_tsv(tmp_path / "MMBench_TEST_EN.tsv", sheet), images=images)

    manifest = json.loads((out / "twins.json").read_text(encoding="utf-8"))["benchmarks"]
    for benchmark in ("vqav2", "vizwiz", "mmbench"):
        entry = manifest[benchmark]
        assert entry["gold"] is None and entry["annotations"] is None
        assert not (out / benchmark / "gold.jsonl").exists()
        # the same prompts as with answers; VQAv2 loses its question types (they are in the annotations)
        with_answers = read_prompts(prepared[0] / benchmark)
        without = read_prompts(out / benchmark)
        assert [(r["id"], r["prompt"], r["image"]) for r in without] == [
            (r["id"], r["prompt"], r["image"]) for r in with_answers
        ]
    assert {r["type"] for r in read_prompts(out / "vqav2")} == {""}
    assert manifest["vqav2"]["questions"] == str((twins / "vqav2" / "questions.json").absolute())

    # preparing again with answers brings the gold back; without, a stale gold file goes
    prepare("vqav2", out, **twin_args(twins, "vqav2"), images=images)
    assert (out / "vqav2" / "gold.jsonl").is_file()
    prepare(
        "vqav2",
        out,
        questions=twins / "vqav2" / "questions.json",
        images=images,
        image_pattern="scenes/{image_id:06d}.png",
    )
    assert not (out / "vqav2" / "gold.jsonl").exists()


def test_default_image_names_follow_the_official_files(tmp_path):
    images = tmp_path / "test2015"
    images.mkdir()
    (images / "COCO_test2015_000000000123.jpg").write_bytes(b"jpeg")
    questions = write_json(
        tmp_path / "v2_OpenEnded_mscoco_test-dev2015_questions.json",
        {
            "data_subtype": "test-dev2015",
            "questions": [{"image_id": 123, "question": "What is it?", "question_id": 123000}],
        },
    )
    (row,) = read_vqav2(questions, images)
    assert Path(row.image) == images.absolute() / "COCO_test2015_000000000123.jpg"
    assert (row.id, row.prompt, row.type, row.gold) == ("123000", prompts.short_answer("What is it?"), "", None)
    assert registry.get("gqa").image_patterns == ("{imageId}.jpg",)
    assert registry.get("sqa").image_patterns == ("{pid}/image.png",)
    # without a data_subtype the default pattern cannot be filled: the error says why
    bare = write_json(tmp_path / "bare.json", {"questions": [{"image_id": 1, "question": "Q?", "question_id": 1}]})
    with pytest.raises(ScoringError, match=r"bare\.json.*\{split\}.*data_subtype"):
        read_vqav2(bare, images)


# --------------------------------------------------------------------------- errors
def test_bad_inputs_are_one_line_errors_naming_the_file(twins, heldout, tmp_path):
    images = heldout / "images"
    gqa = twins / "gqa" / "testdev_balanced_questions.json"
    # images that do not exist: how many, and the first few
    with pytest.raises(ScoringError, match=r"testdev_balanced_questions\.json: \d+ of \d+ images are missing") as err:
        prepare("gqa", tmp_path / "out", annotations=gqa, images=images)  # default {imageId}.jpg, the world has .png
    assert "\n" not in str(err.value) and ".jpg" in str(err.value)
    assert not (tmp_path / "out" / "twins.json").exists()  # nothing written
    # a missing column
    rows = list(csv.DictReader(open(twins / "mmbench" / "MMBench_DEV_EN.tsv", encoding="utf-8"), delimiter="\t"))
    sheet = write_tsv(tmp_path / "broken.tsv", [{k: v for k, v in row.items() if k != "question"} for row in rows])
    with pytest.raises(ScoringError, match=r"broken\.tsv.*lacks column\(s\) \['question'\]"):
        prepare("mmbench", tmp_path / "out", annotations=sheet, images=images)
    # a missing key, a missing file, a pattern field the rows do not have
    mmvet = write_json(tmp_path / "mm-vet.json", {"v1_0": {"imagename": "x.png", "answer": "a"}})
    with pytest.raises(ScoringError, match=r"mm-vet\.json: question v1_0 has no 'question' field"):
        prepare("mmvet", tmp_path / "out", annotations=mmvet, images=images)
    with pytest.raises(FileNotFoundError, match=r"not found: .*nowhere\.json"):
        prepare("vizwiz", tmp_path / "out", annotations=tmp_path / "nowhere.json", images=images)
    with pytest.raises(ScoringError, match=r"uses \{image_name\}"):
        prepare("gqa", tmp_path / "out", annotations=gqa, images=images, image_pattern="{image_name}.png")
    with pytest.raises(FileNotFoundError, match="images folder not found"):
        prepare("gqa", tmp_path / "out", annotations=gqa, images=tmp_path / "no-images")
    with pytest.raises(ScoringError, match="vqav2: give the questions file"):
        prepare("vqav2", tmp_path / "out", annotations=twins / "vqav2" / "annotations.json", images=images)
    # MME needs all ten perception subtasks, and MME's own question tail
    partial = tmp_path / "mme"
    partial.mkdir()
    shutil.copy(twins / "mme" / "ground_truth" / "count.txt", partial)
    with pytest.raises(ScoringError, match="perception subtask"):
        prepare("mme", tmp_path / "out", annotations=partial, images=images)
    for name in PERCEPTION:
        text = (twins / "mme" / "ground_truth" / f"{name}.txt").read_text(encoding="utf-8")
        (partial / f"{name}.txt").write_text(text.replace(" Please answer yes or no.", ""), encoding="utf-8")
    with pytest.raises(ScoringError, match=r"existence\.txt: line 1.*Please answer yes or no"):
        prepare("mme", tmp_path / "out", annotations=partial, images=images, image_pattern="{image}")


def test_an_input_inside_the_written_files_is_refused(twins, heldout, tmp_path):
    out = tmp_path / "out"
    (out / "mme").mkdir(parents=True)
    shutil.copytree(twins / "mme" / "ground_truth", out / "mme" / "ground_truth")
    with pytest.raises(ScoringError, match="may not be one of the files prepare writes"):
        prepare("mme", out, annotations=out / "mme" / "ground_truth", images=heldout / "images")


# --------------------------------------------------------------------------- the command line
def test_cli_prepares_benchmarks_one_by_one_into_one_manifest(twins, heldout, tmp_path, capsys):
    out = tmp_path / "real"
    cli(
        [
            "prepare",
            "gqa",
            "--out",
            str(out),
            "--images",
            str(heldout / "images"),
            "--annotations",
            str(twins / "gqa" / "testdev_balanced_questions.json"),
            "--image-pattern",
            "{imageId}.png",
        ]
    )
    summary = json.loads(capsys.readouterr().out)
    assert summary == {"benchmark": "gqa", "prompts": SIZES.gqa, "gold": True, "out": str(out)}
    cli(
        [
            "prepare",
            "pope",
            "--out",
            str(out),
            "--images",
            str(heldout / "images"),
            "--annotations",
            str(twins / "pope" / "questions"),
        ]
    )
    assert json.loads(capsys.readouterr().out)["benchmark"] == "pope"
    manifest = json.loads((out / "twins.json").read_text(encoding="utf-8"))
    assert set(manifest["benchmarks"]) == {"gqa", "pope"}
    assert manifest["benchmarks"]["gqa"]["image_pattern"] == "{imageId}.png"
    # bad input: exit status 1 and one line, no traceback
    with pytest.raises(SystemExit) as exit_:
        cli(
            [
                "prepare",
                "mmvet",
                "--out",
                str(out),
                "--images",
                str(heldout / "images"),
                "--annotations",
                str(tmp_path / "missing.json"),
            ]
        )
    assert exit_.value.code == 1
    assert set(json.loads((out / "twins.json").read_text(encoding="utf-8"))["benchmarks"]) == {"gqa", "pope"}


# --------------------------------------------------------------------------- end to end
class GoldRunner(Runner):
    """Answers with the gold answer of (prompt, image), "yes" where there is none."""

    name = "gold"

    def __init__(self, gold: dict[tuple[str, str | None], str]):
        self.gold = gold

    def answer(self, questions: Sequence[Question], *, blank_images: bool = False) -> list[str]:
        return [self.gold.get((q.prompt, q.image), "yes") for q in questions]

    def describe(self) -> dict:
        return {"backend": self.name}


def test_evaluate_runs_on_a_prepared_folder_with_full_marks(prepared, twins, heldout, tmp_path):
    out, _ = prepared
    real = tmp_path / "real"
    for benchmark in ("gqa", "pope", "mme", "sqa"):
        shutil.copytree(out / benchmark, real / benchmark)
    manifest = json.loads((out / "twins.json").read_text(encoding="utf-8"))
    manifest["benchmarks"] = {b: manifest["benchmarks"][b] for b in ("gqa", "pope", "mme", "sqa")}
    write_json(real / "twins.json", manifest)
    # and a test split without answers
    prepare(
        "vqav2",
        real,
        questions=twins / "vqav2" / "questions.json",
        images=heldout / "images",
        image_pattern="scenes/{image_id:06d}.png",
    )
    gold = {}
    for benchmark in ("gqa", "pope", "mme", "sqa"):
        rows, answers = read_prompts(real / benchmark), load_jsonl(real / benchmark / "gold.jsonl")
        gold |= {(row["prompt"], row["image"]): g["answer"] for row, g in zip(rows, answers, strict=True)}
    # the image root does not matter: the prepared prompts carry absolute paths
    details = evaluate(
        GoldRunner(gold),
        real,
        tmp_path / "eval",
        run="gold",
        blind=False,
        benchmarks=["vqav2", "gqa", "pope", "mme", "sqa"],
    )
    scores = details["scores"]["gold"]
    assert scores["gqa"]["headline"]["value"] == scores["pope"]["headline"]["value"] == 100.0
    assert scores["sqa"]["headline"]["value"] == 100.0 and scores["mme"]["headline"]["value"] == 2000.0
    assert scores["vqav2"]["scored"] is False and scores["vqav2"]["reason"] == NO_ANNOTATIONS
    assert (tmp_path / "eval" / scores["vqav2"]["predictions"]).is_file()
    assert details["scores"][MAJORITY]["vqav2"]["reason"] == NO_GOLD

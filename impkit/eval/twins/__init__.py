"""Synthetic twins of the ten benchmarks, built from the world's held-out split and written in the
benchmarks' official file formats, so that ``impkit score <benchmark>`` scores them exactly as it
scores the real files.

Layout written under ``out_dir`` (every image path is relative to the held-out images folder)::

    twins.json                          what was built: per benchmark its files, sizes, score call
    <benchmark>/prompts.jsonl           {id, image, prompt, benchmark}: what a runner asks, the prompt
                                        being the exact text after "<image>\\n" (impkit.eval.prompts)
    <benchmark>/gold.jsonl              {id, answer}: the answer that scores full marks
    vqav2/questions.json, annotations.json
    gqa/testdev_balanced_questions.json
    vizwiz/val.json
    textvqa/TextVQA_0.5.1_val.json
    sqa/problems.json, pid_splits.json
    pope/questions/coco_pope_{adversarial,popular,random}.json
    mme/ground_truth/<subtask>.txt      eval-tool lines without the prediction column
    mmbench/MMBench_DEV_EN.tsv, mmbench_cn/MMBench_DEV_CN.tsv   with an image_path column
    mmvet/mm-vet.json

Prompt ids are the benchmark's own question ids (VQAv2/TextVQA ``question_id``, GQA ``qid``,
VizWiz ``image``, ScienceQA ``pid``, MMBench ``index``, MM-Vet key), ``<split>/<question_id>``
for POPE and ``<subtask>/<line>`` for MME. ``write_predictions`` turns a runner's ``{id: answer}``
into the prediction file the scorer reads.

Every twin draws from its own generator seeded by (seed, benchmark): the same world, seed and
sizes give byte-identical files, and resizing one twin leaves the others unchanged.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable, Mapping
from dataclasses import asdict
from pathlib import Path
from typing import Any

from impkit.config import TwinSizes
from impkit.eval.twins import choice, open_ended, short_answer, yes_no
from impkit.eval.twins.common import Heldout, Jsonl, Table, TwinFiles, load_heldout, twin_rng
from impkit.io import atomic_open, atomic_path, dumps_line

__all__ = [
    "BENCHMARKS",
    "MANIFEST",
    "PREDICTION_FILES",
    "generate_twins",
    "load_heldout",
    "read_prompts",
    "write_predictions",
]

BENCHMARKS = ("vqav2", "gqa", "vizwiz", "textvqa", "sqa", "pope", "mme", "mmbench", "mmbench_cn", "mmvet")
MANIFEST = "twins.json"

# What each scorer is given as predictions (the form write_predictions produces).
PREDICTIONS = {
    "vqav2": "results.json: [{question_id, answer}]",
    "gqa": "predictions.json: [{questionId, prediction}]",
    "vizwiz": "results.json: [{image, answer}]",
    "textvqa": "results.json: [{question_id, answer}]",
    "sqa": "answers.jsonl: {question_id, text}",
    "pope": "answers/ folder: <split>.jsonl of {question_id, text}",
    "mme": "results/ folder: <subtask>.txt with the prediction as 4th column",
    "mmbench": "answers.jsonl: {question_id (= index), text}",
    "mmbench_cn": "answers.jsonl: {question_id (= index), text}",
    "mmvet": 'results.json: {"v1_0": answer, ...}',
}

# The file (or folder, for POPE and MME) name each run's answers are written under.
PREDICTION_FILES = {name: spec.split(":")[0].split("/")[0] for name, spec in PREDICTIONS.items()}


def _builders(heldout: Heldout, seed: int, sizes: TwinSizes) -> dict[str, Callable[[], TwinFiles]]:
    def rng(name: str):
        return twin_rng(seed, name)

    items: list = []

    def mmbench(language: str) -> TwinFiles:
        if not items:  # EN and CN share their questions (MMBench-CN translates MMBench)
            items.extend(choice.mmbench_items(heldout, rng("mmbench"), sizes.mmbench))
        return choice.mmbench(items, language)

    return {
        "vqav2": lambda: short_answer.vqav2(heldout, rng("vqav2"), sizes.vqav2),
        "gqa": lambda: short_answer.gqa(heldout, rng("gqa"), sizes.gqa),
        "vizwiz": lambda: short_answer.vizwiz(heldout, rng("vizwiz"), sizes.vizwiz),
        "textvqa": lambda: short_answer.textvqa(heldout, rng("textvqa"), sizes.textvqa),
        "sqa": lambda: choice.sqa(heldout, rng("sqa"), sizes.sqa),
        "pope": lambda: yes_no.pope(heldout, rng("pope"), sizes.pope_images),
        "mme": lambda: yes_no.mme(heldout, rng("mme"), sizes.mme_images),
        "mmbench": lambda: mmbench("en"),
        "mmbench_cn": lambda: mmbench("cn"),
        "mmvet": lambda: open_ended.mmvet(heldout, rng("mmvet"), sizes.mmvet),
    }


def _dump(path: Path, value: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if isinstance(value, str):
        text = value
    elif isinstance(value, Jsonl):
        text = "".join(dumps_line(row) for row in value)
    elif isinstance(value, Table):
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=value.columns, delimiter="\t", lineterminator="\n")
        writer.writeheader()
        writer.writerows(value.rows)
        text = buffer.getvalue()
    else:
        text = json.dumps(value, indent=2, ensure_ascii=False) + "\n"
    path.write_text(text, encoding="utf-8")


def generate_twins(heldout_dir: Path, out_dir: Path, *, seed: int, sizes: TwinSizes) -> dict[str, Any]:
    """Write all ten twins under ``out_dir`` (replacing it as a whole, atomically) from the held-out
    split at ``heldout_dir`` (``scenes.jsonl`` + ``images/``); return the manifest (``twins.json``)."""
    heldout = load_heldout(Path(heldout_dir))
    manifest: dict[str, Any] = {"seed": seed, "sizes": asdict(sizes), "benchmarks": {}}
    builders = _builders(heldout, seed, sizes)
    with atomic_path(Path(out_dir)) as root:
        for benchmark in BENCHMARKS:
            twin = builders[benchmark]()
            folder = root / benchmark
            for rel, value in twin.files.items():
                _dump(folder / rel, value)
            _dump(folder / "prompts.jsonl", Jsonl(p.line(benchmark) for p in twin.prompts))
            _dump(folder / "gold.jsonl", Jsonl({"id": p.id, "answer": p.gold} for p in twin.prompts))
            manifest["benchmarks"][benchmark] = {
                "annotations": f"{benchmark}/{twin.annotations}",
                "questions": f"{benchmark}/{twin.questions}" if twin.questions else None,
                "prompts": f"{benchmark}/prompts.jsonl",
                "gold": f"{benchmark}/gold.jsonl",
                "predictions": PREDICTIONS[benchmark],
                "n_prompts": len(twin.prompts),
                **twin.info,
            }
        _dump(root / MANIFEST, manifest)  # last: its presence marks a complete set
    return manifest


def read_prompts(twin_dir: Path) -> list[dict[str, Any]]:
    """A twin's ``prompts.jsonl`` rows."""
    text = (Path(twin_dir) / "prompts.jsonl").read_text(encoding="utf-8")
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def _write(path: Path, value: Any) -> None:
    with atomic_open(path, "w", encoding="utf-8") as f:
        if isinstance(value, Jsonl):
            f.writelines(dumps_line(row) for row in value)
        else:
            json.dump(value, f, ensure_ascii=False, indent=1)
            f.write("\n")


def write_predictions(benchmark: str, twin_dir: Path, answers: Mapping[str, str], out: Path) -> Path:
    """Write a runner's answers (prompt id -> text) as the prediction file(s) the benchmark's scorer
    reads (see ``PREDICTIONS``); returns the path to pass to ``impkit score --predictions``.
    Prompts without an answer are left out (the scorers count them as missing)."""
    if benchmark not in PREDICTIONS:
        raise KeyError(f"unknown benchmark {benchmark!r}; known: {list(BENCHMARKS)}")
    twin_dir, out = Path(twin_dir), Path(out)
    known = [row["id"] for row in read_prompts(twin_dir)]
    unknown = sorted(set(answers) - set(known))
    if unknown:
        raise ValueError(f"answers for ids that {twin_dir}/prompts.jsonl does not have: {unknown[:5]}")
    given = [(qid, answers[qid]) for qid in known if qid in answers]
    if benchmark in ("mmbench", "mmbench_cn") and out.suffix not in (".json", ".jsonl"):
        # the MMBench scorer reads any other suffix as a submission sheet
        raise ValueError(f"{benchmark} answers are JSON Lines: name the file .jsonl (got {out})")
    if benchmark in ("vqav2", "textvqa"):
        _write(out, [{"question_id": int(qid), "answer": text} for qid, text in given])
    elif benchmark == "gqa":
        _write(out, [{"questionId": qid, "prediction": text} for qid, text in given])
    elif benchmark == "vizwiz":
        _write(out, [{"image": qid, "answer": text} for qid, text in given])
    elif benchmark in ("sqa", "mmbench", "mmbench_cn"):
        ids = int if benchmark != "sqa" else str
        _write(out, Jsonl({"question_id": ids(qid), "text": text} for qid, text in given))
    elif benchmark == "mmvet":
        _write(out, dict(given))
    elif benchmark == "pope":
        with atomic_path(out) as folder:
            folder.mkdir()
            for split in yes_no.SPLITS:
                rows = [
                    {"question_id": int(qid.split("/", 1)[1]), "text": text}
                    for qid, text in given
                    if qid.split("/", 1)[0] == split
                ]
                _dump(folder / f"{split}.jsonl", Jsonl(rows))
    else:  # mme: the ground-truth lines with the answer appended, as LLaVA-1.5's converter writes them
        by_id = dict(given)
        with atomic_path(out) as folder:
            folder.mkdir()
            for gt in sorted((twin_dir / "ground_truth").glob("*.txt")):
                lines = gt.read_text(encoding="utf-8").splitlines()
                filled = []
                for number, line in enumerate(lines):
                    text = by_id.get(f"{gt.stem}/{number}")
                    flat = None if text is None else " ".join(text.split())
                    filled.append(line if flat is None else f"{line}\t{flat}")
                _dump(folder / gt.name, "".join(line + "\n" for line in filled))
    return out

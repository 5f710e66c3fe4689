"""Benchmark: can stage 2 teach a nano model one grounding question on its own? Starting from a
preset's stage-1 model (``models/aligned/<preset>``), the recipe's stage 2 (LoRA and the projector,
the pipeline's own trainer, in one process) runs on questions of a single kind, written from the training scenes'
ground truth, and the model then answers its own first training questions and the held-out scenes'
questions of that kind with the image, a blank image and another scene's image.

    .venv/bin/python -m benchmarks.binding_probe --preset nano-3b-196 --kind shape-alone
    .venv/bin/python -m benchmarks.binding_probe --kind shape-of-colour --steps 300 --projector-lr 2.8e-3

The kinds separate reading from binding: ``shape-alone`` asks the shape of the only object of a
one-object scene (is the shape readable from the image tokens at all?); ``shape-of-colour`` and
``colour-of-shape`` name one object by its colour or shape and ask the other (can the model find
the named object's token and read it?). The whole stage-2 mixture asks these among many other
questions (docs/experiments.md, "Where the missing points are"); this isolates one at a time.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import random
import tempfile
from pathlib import Path

from benchmarks.tower_probe import scenes
from impkit.config import PresetConfig, TrainSettings, load_params, load_section
from impkit.data.synth.language import SHORT_ANSWER
from impkit.data.synth.world import image_record
from impkit.eval.heldout import accuracy, answer_questions, shuffled_images
from impkit.hardware import read_machine
from impkit.model.image_processing import ImageProcessor
from impkit.release import Release, ReleaseError
from impkit.train.dataset import DataCollator, SupervisedDataset
from impkit.train.parts import merged, prepare_stage2
from impkit.train.trainer import fit_stage, resolve_stage


def shape_alone(rng: random.Random, objects: list[dict]) -> tuple[str, str] | None:
    if len(objects) != 1:
        return None
    return "What shape is the object?", objects[0]["shape"]


def _named_by(rng: random.Random, objects: list[dict], name: str, ask: str, question: str):
    """One object whose ``name`` attribute no other object shares: (question naming it, its ``ask``)."""
    names = [o[name] for o in objects]
    unique = [o for o in objects if names.count(o[name]) == 1]
    if not unique:
        return None
    obj = rng.choice(unique)
    return question.format(obj[name]), obj[ask]


def shape_of_colour(rng: random.Random, objects: list[dict]) -> tuple[str, str] | None:
    return _named_by(rng, objects, "colour", "shape", "What shape is the {} object?")


def colour_of_shape(rng: random.Random, objects: list[dict]) -> tuple[str, str] | None:
    return _named_by(rng, objects, "shape", "colour", "What colour is the {}?")


KINDS = {"shape-alone": shape_alone, "shape-of-colour": shape_of_colour, "colour-of-shape": colour_of_shape}


def questions(scenes_file: Path, kind: str, seed: int) -> list[dict]:
    """One question of ``kind`` per scene that has one: ``{"image", "question", "answer", "type"}``."""
    ask = KINDS[kind]
    rng = random.Random(seed)
    out = []
    for scene in scenes(scenes_file, None):
        qa = ask(rng, scene["objects"])
        if qa is not None:
            out.append({"image": scene["image"], "question": qa[0], "answer": qa[1], "type": kind})
    return out


def as_records(asked: list[dict]) -> list[dict]:
    """LLaVA records with the short-answer suffix, as the world's VQA family writes them."""
    return [
        image_record(f"binding-{i:06d}", q["image"], [(q["question"] + SHORT_ANSWER, q["answer"])])
        for i, q in enumerate(asked)
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="nano-3b-196")
    parser.add_argument("--aligned", type=Path, help="stage-1 model (default models/aligned/<preset>)")
    parser.add_argument("--world", type=Path, default=Path("data/world"))
    parser.add_argument("--kind", choices=sorted(KINDS), default="shape-alone")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps of the recipe's global batch")
    parser.add_argument("--learning-rate", type=float, help="LoRA's rate (default: the recipe's)")
    parser.add_argument("--projector-lr", type=float, help="the projector's rate (default: the recipe's)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-check", type=int, default=500, help="training questions answered after")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()

    params = load_params(args.params)
    preset = load_section(PresetConfig, f"model.presets.{args.preset}", params)
    recipe = load_section(TrainSettings, "train", params).recipe(preset.train)
    try:
        release = Release.open(args.aligned or Path("models/aligned") / args.preset)
    except ReleaseError as err:
        raise SystemExit(f"{err} (build the stage-1 model first: dvc repro align@{args.preset})") from None
    model, tokenizer = release.load()
    train_questions = questions(args.world / "scenes.jsonl", args.kind, args.seed)
    heldout = questions(args.world / "heldout" / "scenes.jsonl", args.kind, args.seed)
    if not train_questions or not heldout:
        raise SystemExit(f"the world has no scenes for '{args.kind}' questions")

    stage = recipe.stage2
    overrides = {"learning_rate": args.learning_rate, "projector_lr": args.projector_lr}
    stage = dataclasses.replace(stage, **{k: v for k, v in overrides.items() if v is not None})
    stage = dataclasses.replace(stage, epochs=args.steps * stage.global_batch_size / len(train_questions))
    stage = resolve_stage(stage, read_machine(), where=f"binding probe {args.preset}")
    print(
        f"{args.preset} from {release.folder}: {len(train_questions)} training and {len(heldout)} held-out "
        f"'{args.kind}' questions; {args.steps} steps of {stage.global_batch_size}, LoRA lr "
        f"{stage.learning_rate}, projector lr {stage.projector_lr}",
        flush=True,
    )
    with tempfile.TemporaryDirectory(prefix="binding-probe-") as scratch:
        records = Path(scratch) / "records.jsonl"
        records.write_text("".join(json.dumps(r) + "\n" for r in as_records(train_questions)), encoding="utf-8")
        dataset = SupervisedDataset(
            records,
            args.world / "images",
            tokenizer,
            release.template,
            image_processor=ImageProcessor(size=release.image_size, aspect=release.image_aspect),
            num_image_tokens=release.image_tokens,
            max_length=stage.max_length,
            image_length_words=release.image_tokens,
            cache_mb=256,
        )
        model = prepare_stage2(model, preset.family, recipe.lora)
        fit_stage(
            model,
            dataset,
            DataCollator(tokenizer.pad_token_id),
            stage,
            checkpoint_dir=Path(scratch) / "checkpoints",
            fingerprint={"inputs": "binding-probe"},
            seed=args.seed,
            label=f"binding probe {args.preset}",
        )
    model = merged(model).eval()
    mean, std = release.normalisation()
    common = dict(
        template=release.template,
        image_size=release.image_size,
        image_aspect=release.image_aspect,
        n_image_tokens=release.image_tokens,
        batch_size=32,
        image_mean=mean,
        image_std=std,
    )

    def score(asked: list[dict], root: Path, blank: bool, truth: list[dict]) -> float:
        answers = answer_questions(model, tokenizer, questions=asked, image_root=root, blank=blank, **common)
        return accuracy(truth, answers)["accuracy"]

    seen = train_questions[: args.train_check]
    root = args.world / "heldout" / "images"
    prior = max(sum(q["answer"] == a for q in heldout) for a in {q["answer"] for q in heldout}) / len(heldout)
    print("| questions | with its image | blank image | another image | majority answer |\n|---|---|---|---|---|")
    print(f"| first {len(seen)} training | {score(seen, args.world / 'images', False, seen):.3f} | | | |")
    print(
        f"| {len(heldout)} held-out | {score(heldout, root, False, heldout):.3f} | "
        f"{score(heldout, root, True, heldout):.3f} | {score(shuffled_images(heldout), root, False, heldout):.3f} "
        f"| {prior:.3f} |"
    )


if __name__ == "__main__":
    main()

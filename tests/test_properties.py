"""Property tests (Hypothesis, a bounded number of examples): the answer normalisers and parsers
never crash and stay within their outputs, and the data intake turns any records and any bytes into
kept or quarantined records with a reason, never a crash."""

from __future__ import annotations

import json
from pathlib import Path

from conftest import data_params, qa, read_jsonl, rgb_image
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from impkit.config import DataConfig, from_dict
from impkit.data.assemble import AssemblyPaths, assemble
from impkit.data.llava_format import RecordStream, contained_image_path
from impkit.data.record_features import record_features
from impkit.eval.benchmarks.gqa import clean_prediction
from impkit.eval.benchmarks.mmbench import REFUSED, extract_option
from impkit.eval.benchmarks.mme import mme_answer
from impkit.eval.benchmarks.pope import pope_answer
from impkit.eval.benchmarks.sqa import extract_letter
from impkit.eval.benchmarks.vqav2 import vqav2_accuracy
from impkit.eval.scoring.vqa import evalai_answer, normalize_answer, official_answer, soft_accuracy

FAST = settings(max_examples=50, deadline=None)
# answer-like text: letters, digits, the punctuation the rules act on, whitespace, some non-ASCII
ANSWER = st.text(
    alphabet=st.one_of(st.sampled_from(list("aAbBsS'.,?!;:-/()[]{}\"\n\t 0123456789ZD答案是选项")), st.characters()),
    max_size=60,
)


# ---------------------------------------------------------------- the answer normalisers


@FAST
@given(ANSWER)
def test_vqa_normalisers_give_single_spaced_words(text):
    for normalise in (normalize_answer, evalai_answer, official_answer):
        out = normalise(text)
        assert out == " ".join(out.split())  # no surrounding or doubled whitespace
        assert not {"a", "an", "the"} & set(out.split())  # articles dropped


@FAST
@given(ANSWER, st.lists(ANSWER, min_size=1, max_size=10), st.booleans())
def test_soft_accuracy_is_a_fraction(prediction, answers, unanimous):
    assert 0.0 <= soft_accuracy(normalize_answer(prediction), [normalize_answer(a) for a in answers]) <= 1.0
    assert 0.0 <= vqav2_accuracy(prediction, answers, normalise_unanimous=unanimous) <= 1.0


@FAST
@given(ANSWER, st.dictionaries(st.sampled_from("ABCD"), ANSWER, min_size=2, max_size=4), st.booleans())
def test_option_and_yes_no_parsers_answer_within_their_sets(text, options, window):
    assert extract_option(text, options, last_five_tokens=window) in {None, REFUSED, *options}
    assert pope_answer(text) in ("yes", "no")
    assert mme_answer(text) in ("yes", "no", "other")
    assert extract_letter(text) in {None, *"ABCDE"}
    assert clean_prediction(text) == clean_prediction(clean_prediction(text))


# ---------------------------------------------------------------- the intake

JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=8,
)
TURN = st.fixed_dictionaries({"from": st.sampled_from(["human", "gpt", "system", 3]), "value": st.text(max_size=20)})
RECORD = st.fixed_dictionaries(
    {},
    optional={
        "id": st.one_of(st.text(max_size=6), st.integers(-3, 3), st.booleans(), st.none()),
        "image": st.one_of(
            st.sampled_from(["ok.png", "../ok.png", "/etc/passwd", "sub/../ok.png", "missing.png", "", "link.png"]),
            st.text(max_size=8),
            JSON,
        ),
        "conversations": st.one_of(st.lists(TURN, max_size=4), JSON, st.just(qa())),
    },
)
LINE = st.one_of(
    RECORD.map(lambda r: json.dumps(r).encode("utf-8")),
    JSON.map(lambda v: json.dumps(v).encode("utf-8")),
    st.binary(max_size=40).filter(lambda b: b"\n" not in b and b"\r" not in b),
)


@FAST
@given(st.lists(LINE, max_size=12))
def test_any_jsonl_bytes_give_one_record_or_one_error_per_line(tmp_path_factory, lines):
    path = tmp_path_factory.mktemp("stream") / "src.jsonl"
    path.write_bytes(b"\n".join(lines) + b"\n")
    raws = list(RecordStream(path))
    assert [r.position for r in raws] == [i for i, line in enumerate(lines) if line.strip()]
    for raw in raws:
        if raw.error is None:  # a JSON value (``null`` included: the gate says it is no record)
            record_features(raw.record)  # describing a record never raises
            json.dumps(raw.record, ensure_ascii=False).encode("utf-8")  # and it can be written out
        else:
            assert raw.error.split(":")[0] in ("encoding", "malformed_json") and raw.raw is not None


@FAST
@given(st.text(max_size=30))
def test_contained_image_paths_never_leave_the_root(tmp_path_factory, image):
    root = tmp_path_factory.mktemp("root")
    path = contained_image_path(str(root), str(root.resolve()), image)
    if path is not None:
        assert Path(path).resolve().is_relative_to(root.resolve())


@settings(max_examples=4, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(LINE, min_size=1, max_size=25))
def test_the_stage_keeps_or_quarantines_every_record_with_a_reason(tmp_path_factory, lines):
    # Each example runs the whole stage (the gate starts Great Expectations), hence few examples of many lines.
    tmp = tmp_path_factory.mktemp("assemble")
    root = tmp / "images"
    rgb_image(root / "ok.png")
    (root / "link.png").symlink_to(tmp / "outside.png")
    rgb_image(tmp / "outside.png", colour=(0, 0, 255))
    source = tmp / "src.jsonl"
    source.write_bytes(b"\n".join(lines) + b"\n")
    cfg = from_dict(
        DataConfig,
        data_params(
            {"src": {"path": str(source), "image_root": str(root)}}, {"finetune": {"entries": [{"source": "src"}]}}
        ),
    )
    layout = AssemblyPaths(tmp / "out", tmp / "quarantine", tmp / "cache.sqlite", tmp / "docs")
    manifest = assemble(cfg, layout)
    kept = read_jsonl(tmp / "out" / "finetune.jsonl")
    quarantined = read_jsonl(tmp / "quarantine" / "finetune.jsonl")
    records = sum(1 for line in lines if line.strip())
    assert len(kept) + len(quarantined) == records
    assert all(q["reasons"] for q in quarantined)
    assert len({q["position"] for q in quarantined}) == len(quarantined)  # each record once
    source_report = manifest["mixtures"]["finetune"]["sources"][0]
    assert source_report["in"] == records == source_report["kept"] + source_report["quarantined"]
    stored = [p for p in (tmp / "out" / "images").rglob("*") if p.is_file()]
    assert all(p.read_bytes() == (root / "ok.png").read_bytes() for p in stored)  # nothing from outside the root

"""Every quarantine reason: broken records go to data/quarantine with the check they failed."""

from __future__ import annotations

import json

import pytest
from conftest import data_params, qa, read_jsonl, rgb_image, write_jsonl

from impkit.config import DataConfig, from_dict
from impkit.data.assemble import assemble


def good(i: int, image: str | None = "ok.png") -> dict:
    rec = {"id": f"good-{i}", "conversations": qa(f"Question {i}?", "fine", image is not None)}
    if image:
        rec["image"] = image
    return rec


# (expected reason, record) — each record breaks exactly one rule
BROKEN = [
    ("record_is_object", ["not", "a", "record"]),
    ("id_is_string_or_integer", {"image": "ok.png", "conversations": qa()}),
    ("id_is_string_or_integer", {"id": True, "image": "ok.png", "conversations": qa()}),
    ("id_is_string_or_integer", {"id": 1.5, "image": "ok.png", "conversations": qa()}),
    ("id_not_empty", {"id": "", "image": "ok.png", "conversations": qa()}),
    ("image_is_path", {"id": "img-list", "image": ["a.png"], "conversations": qa()}),
    ("conversations_is_list", {"id": "conv-str", "image": "ok.png", "conversations": "hello"}),
    (
        "turns_well_formed",
        {"id": "bad-turn", "image": "ok.png", "conversations": [qa()[0], {"from": "gpt", "value": None}]},
    ),
    ("has_exchange+ends_with_answer", {"id": "one-turn", "image": "ok.png", "conversations": qa()[:1]}),
    (
        "first_turn_human+image_tag_in_first_turn",
        {"id": "gpt-first", "image": "ok.png", "conversations": [qa()[1], qa()[0], qa()[1]]},
    ),
    (
        "roles_alternate",
        {
            "id": "two-humans",
            "image": "ok.png",
            "conversations": [qa()[0], {"from": "human", "value": "again?"}, qa()[1]],
        },
    ),
    (
        "ends_with_answer",
        {"id": "ends-human", "image": "ok.png", "conversations": [*qa(), {"from": "human", "value": "and?"}]},
    ),
    ("image_tag_count", {"id": "no-tag", "image": "ok.png", "conversations": qa(image=False)}),
    ("image_tag_count", {"id": "tag-no-image", "conversations": qa()}),
    (
        "image_tag_count",
        {
            "id": "two-tags",
            "image": "ok.png",
            "conversations": [{"from": "human", "value": "<image>\n<image>\nQ?"}, qa()[1]],
        },
    ),
    (
        "image_tag_in_first_turn",
        {
            "id": "tag-late",
            "image": "ok.png",
            "conversations": [*qa(image=False), {"from": "human", "value": "<image>\nQ?"}, qa()[1]],
        },
    ),
    ("image_readable", {"id": "missing-file", "image": "nope.png", "conversations": qa()}),
    ("image_readable", {"id": "corrupt-file", "image": "corrupt.png", "conversations": qa()}),
    ("image_min_size", {"id": "tiny-image", "image": "tiny.png", "conversations": qa()}),
    ("prompt_length", {"id": "long-prompt", "image": "ok.png", "conversations": qa("x" * 500)}),
    ("prompt_length", {"id": "empty-prompt", "image": "ok.png", "conversations": qa("")}),
    ("answer_length", {"id": "empty-answer", "image": "ok.png", "conversations": qa(answer="  ")}),
    ("answer_max_length", {"id": "long-answer", "image": "ok.png", "conversations": qa(answer="y" * 500)}),
]


@pytest.fixture
def broken_source(tmp_path):
    root = tmp_path / "images"
    rgb_image(root / "ok.png")
    rgb_image(root / "tiny.png", size=(8, 8))
    (root / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really a png")
    records = [good(i) for i in range(30)] + [rec for _, rec in BROKEN]
    path = write_jsonl(tmp_path / "src.jsonl", records, raw_lines=['{"id": "cut-off", "conv'])
    return path, root


def test_every_broken_record_is_quarantined_with_its_reason(broken_source, paths):
    path, root = broken_source
    cfg = from_dict(
        DataConfig,
        data_params(
            {"src": {"path": str(path), "image_root": str(root)}},
            {"finetune": {"entries": [{"source": "src"}]}},
            dedup={"by_id": True, "by_content": False},
        ),
    )
    manifest = assemble(cfg, paths)

    quarantined = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    by_position = {q["position"]: q for q in quarantined}
    for k, (reason, record) in enumerate(BROKEN):
        line = by_position[30 + k]
        assert sorted(line["reasons"]) == sorted(reason.split("+")), (record, line["reasons"])
        assert line["record"] == record  # nothing lost: the record is kept verbatim
    malformed = by_position[30 + len(BROKEN)]
    assert malformed["reasons"][0].startswith("malformed_json")
    assert malformed["raw"] == '{"id": "cut-off", "conv'
    assert "image_error" in by_position[30 + [r for r, _ in BROKEN].index("image_readable") + 1]

    kept = read_jsonl(paths.out_dir / "finetune.jsonl")
    assert [r["id"] for r in kept] == [f"src:good-{i}" for i in range(30)]
    assert all((paths.image_store / r["image"]).is_file() for r in kept)
    assert len({r["image"] for r in kept}) == 1  # one image shared by 30 records is stored once

    mix = manifest["mixtures"]["finetune"]
    assert mix["in"] == 30 + len(BROKEN) + 1
    assert mix["in"] == mix["kept"] + mix["quarantined"] + mix["dropped"]
    assert mix["quarantined"] == len(BROKEN) + 1
    reasons = mix["sources"][0]["quarantine_reasons"]
    assert reasons["image_tag_count"] == 3 and reasons["malformed_json"] == 1
    assert json.loads((paths.out_dir / "manifest.json").read_text())["mixtures"]["finetune"]["kept"] == 30
    assert (paths.docs_dir / "index.html").is_file()  # Great Expectations Data Docs were built


def test_repeated_ids_are_quarantined_when_dedup_by_id_is_off(tmp_path, paths):
    root = tmp_path / "images"
    rgb_image(root / "ok.png")
    records = [good(0), good(1), {**good(0), "conversations": qa("Another question?", "yes")}]
    path = write_jsonl(tmp_path / "src.jsonl", records)
    cfg = from_dict(
        DataConfig,
        data_params(
            {"src": {"path": str(path), "image_root": str(root)}},
            {"finetune": {"entries": [{"source": "src"}]}},
            dedup={"by_id": False, "by_content": True},
        ),
    )
    assemble(cfg, paths)
    quarantined = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    assert [(q["position"], q["reasons"]) for q in quarantined] == [(2, ["id_unique"])]


def test_text_only_records_pass_without_an_image_root(tmp_path, paths):
    path = write_jsonl(tmp_path / "text.jsonl", [good(i, image=None) for i in range(5)])
    cfg = from_dict(
        DataConfig, data_params({"text": {"path": str(path)}}, {"finetune": {"entries": [{"source": "text"}]}})
    )
    manifest = assemble(cfg, paths)
    kept = read_jsonl(paths.out_dir / "finetune.jsonl")
    assert len(kept) == 5 and all("image" not in r for r in kept)
    assert manifest["mixtures"]["finetune"]["quarantined"] == 0

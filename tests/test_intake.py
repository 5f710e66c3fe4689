"""The data intake loses nothing and lets nothing out of its root: bytes that are not UTF-8, integer
ids, image paths that escape the image root, duplicates, a failed gate, and a manifest that the
inputs alone decide."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from conftest import data_params, qa, read_jsonl, rgb_image

from impkit.config import DataConfig, from_dict
from impkit.data.assemble import AssemblyPaths, assemble
from impkit.data.llava_format import RecordStream, contained_image_path
from impkit.data.quality import QualityGateError


def line(record) -> bytes:
    return json.dumps(record, ensure_ascii=False).encode("utf-8")


def good(i, image: str | None = "ok.png") -> dict:
    rec = {"id": f"g{i}", "conversations": qa(f"Question {i}?", "fine", image is not None)}
    if image is not None:
        rec["image"] = image
    return rec


def config(source: Path, root: Path | None, **overrides) -> DataConfig:
    src = {"path": str(source)} | ({"image_root": str(root)} if root is not None else {})
    return from_dict(DataConfig, data_params({"src": src}, {"finetune": {"entries": [{"source": "src"}]}}, **overrides))


@pytest.fixture
def root(tmp_path) -> Path:
    root = tmp_path / "images"
    rgb_image(root / "ok.png")
    return root


# ---------------------------------------------------------------- bytes that are not UTF-8

CAFE_LATIN1 = b'{"id": "caf\xe9", "image": "ok.png", "conversations": ' + json.dumps(qa()).encode() + b"}"


def test_invalid_utf8_in_jsonl_quarantines_the_record_with_its_raw_bytes(tmp_path, root, paths):
    source = tmp_path / "src.jsonl"
    source.write_bytes(b"\n".join([line(good(0)), CAFE_LATIN1, line(good(1))]) + b"\n")
    manifest = assemble(config(source, root), paths)
    kept = read_jsonl(paths.out_dir / "finetune.jsonl")
    assert [r["id"] for r in kept] == ["src:g0", "src:g1"]
    assert "\ufffd" not in (paths.out_dir / "finetune.jsonl").read_text(encoding="utf-8")
    (q,) = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    assert q["position"] == 1 and q["reasons"][0].startswith("encoding")
    assert base64.b64decode(q["raw_base64"]) == CAFE_LATIN1  # the exact bytes, nothing lost
    assert "caf\\xe9" in q["raw"]
    assert manifest["mixtures"]["finetune"]["sources"][0]["quarantine_reasons"] == {"encoding": 1}


def test_invalid_utf8_in_a_json_list_quarantines_only_that_record(tmp_path, root, paths):
    source = tmp_path / "src.json"
    source.write_bytes(b"[" + b",\n".join([line(good(0)), CAFE_LATIN1, line(good(1))]) + b"]")
    assemble(config(source, root), paths)
    assert [r["id"] for r in read_jsonl(paths.out_dir / "finetune.jsonl")] == ["src:g0", "src:g1"]
    (q,) = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    assert q["position"] == 1 and q["reasons"][0].startswith("encoding")
    assert base64.b64decode(q["raw_base64"]) == CAFE_LATIN1


@pytest.mark.parametrize("suffix", [".jsonl", ".json"])
def test_unpaired_surrogate_escapes_are_an_encoding_error(tmp_path, suffix):
    bad = b'{"id": "x\\ud800", "conversations": []}'
    source = tmp_path / f"src{suffix}"
    source.write_bytes(b"[" + bad + b"]" if suffix == ".json" else bad + b"\n")
    (raw,) = list(RecordStream(source))
    assert raw.record is None and raw.error.startswith("encoding") and raw.raw == bad.decode()


# ---------------------------------------------------------------- ids


def test_integer_ids_are_kept_as_given_and_compared_as_text(tmp_path, root, paths):
    records = [
        {"id": 7, "image": "ok.png", "conversations": qa("Seven?")},
        {"id": "8", "image": "ok.png", "conversations": qa("Eight?")},
        {"id": "7", "image": "ok.png", "conversations": qa("Seven again?")},  # the same id as 7
    ]
    source = tmp_path / "src.jsonl"
    source.write_bytes(b"".join(line(r) + b"\n" for r in records))
    manifest = assemble(config(source, root), paths)
    assert [r["id"] for r in read_jsonl(paths.out_dir / "finetune.jsonl")] == ["src:7", "src:8"]
    (q,) = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    assert q["reasons"] == ["duplicate_id"] and q["duplicate_of"] == {"source": "src", "position": 0, "id": 7}
    assert manifest["mixtures"]["finetune"]["gate"] == "passed"


# ---------------------------------------------------------------- image paths stay inside the root


def test_image_paths_outside_the_root_are_quarantined_and_never_stored(tmp_path, root, paths):
    rgb_image(tmp_path / "outside.png", colour=(1, 2, 3))
    (root / "sub").mkdir()
    os.symlink(tmp_path / "outside.png", root / "escape.png")  # a link inside the root leading out
    os.symlink(tmp_path, root / "sub" / "up")  # a folder link leading out
    os.symlink(root / "ok.png", root / "sub" / "alias.png")  # a link that stays inside: fine
    records = [
        good(0),
        {**good(1), "image": "../outside.png"},
        {**good(2), "image": str(tmp_path / "outside.png")},  # absolute
        {**good(3), "image": str(root / "ok.png")},  # absolute, even inside the root
        {**good(4), "image": "escape.png"},
        {**good(5), "image": "sub/up/outside.png"},
        {**good(6), "image": "sub/../../outside.png"},
        {**good(7), "image": "sub/alias.png"},
        {**good(8), "image": "../../../../etc/passwd"},
    ]
    source = tmp_path / "src.jsonl"
    source.write_bytes(b"".join(line(r) + b"\n" for r in records))
    manifest = assemble(config(source, root), paths)
    kept = read_jsonl(paths.out_dir / "finetune.jsonl")
    assert [r["id"] for r in kept] == ["src:g0", "src:g7"]
    quarantined = read_jsonl(paths.quarantine_dir / "finetune.jsonl")
    assert {q["position"]: q["reasons"] for q in quarantined} == {
        i: ["image_path_outside_root"] for i in (1, 2, 3, 4, 5, 6, 8)
    }
    assert all(q["record"] == records[q["position"]] for q in quarantined)
    stored = [p for p in paths.image_store.rglob("*") if p.is_file()]
    assert len(stored) == 1 and stored[0].read_bytes() == (root / "ok.png").read_bytes()
    assert manifest["mixtures"]["finetune"]["sources"][0]["quarantine_reasons"] == {"image_path_outside_root": 7}


def test_contained_image_path_rules(tmp_path):
    root = str(tmp_path)
    real = os.path.realpath(root)
    assert contained_image_path(root, real, "a/b.png") == f"{root}/a/b.png"
    assert contained_image_path(root, real, "a/../b.png") is None  # any ".." is refused
    assert contained_image_path(root, real, "/etc/passwd") is None
    assert contained_image_path(root, real, "a\x00.png") is None


# ---------------------------------------------------------------- publishing and accounting


def test_a_failed_gate_publishes_nothing_and_leaves_the_previous_outputs(tmp_path, root, paths):
    source = tmp_path / "src.jsonl"
    source.write_bytes(b"".join(line(good(i)) + b"\n" for i in range(10)))
    assemble(config(source, root), paths)
    before = {p: p.read_bytes() for p in paths.out_dir.rglob("*") if p.is_file()}
    assert paths.out_dir / "finetune.jsonl" in before and paths.out_dir / "manifest.json" in before

    rgb_image(root / "new.png", colour=(0, 200, 0))
    records = [good(i, image="new.png") for i in range(10)] + [{**good(99), "image": "gone.png"}] * 5
    source.write_bytes(b"".join(line({**r, "id": f"r{i}"}) + b"\n" for i, r in enumerate(records)))
    cfg = config(source, root, quality={**data_params({}, {})["quality"], "max_quarantine_share": 0.1})
    with pytest.raises(QualityGateError, match="nothing was published"):
        assemble(cfg, paths)
    after = {p: p.read_bytes() for p in paths.out_dir.rglob("*") if p.is_file()}
    assert after == before  # no record file, manifest or image changed or appeared (new.png is not stored)
    assert len(read_jsonl(paths.quarantine_dir / "finetune.jsonl")) == 5
    assert (paths.quarantine_dir / "failed_manifest.json").is_file()


def test_the_manifest_is_byte_identical_for_the_same_inputs(tmp_path, root):
    records = [good(i) for i in range(6)] + [good(0), {**good(9), "image": "../x.png"}]
    source = tmp_path / "src.jsonl"
    source.write_bytes(b"".join(line(r) + b"\n" for r in records) + b"{broken\n")
    out = tmp_path / "out"
    layout = AssemblyPaths(out / "assembled", out / "quarantine", out / "cache.sqlite", out / "docs", out / "t.json")
    first = assemble(config(source, root), layout)
    manifest_bytes = (out / "assembled" / "manifest.json").read_bytes()
    assemble(config(source, root), layout)  # warm image cache, filled store: other timings and counts
    assert (out / "assembled" / "manifest.json").read_bytes() == manifest_bytes
    assert "timings" not in first and set(first["images"]) == {"referenced", "store_mode"}
    report = json.loads((out / "t.json").read_text())
    assert report["images"]["cache_hits"] >= 1 and "total_s" in report["timings"]
    src = first["mixtures"]["finetune"]["sources"][0]
    assert src["in"] == src["kept"] + src["quarantined"] == 9 and src["dropped"] == 0
    assert src["accounting"] == "in 9 = kept 6 + quarantined 3 + left out by the recipe 0"

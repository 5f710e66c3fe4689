"""Recipe rules: exclusion by tag / id / image pattern, include filters, seeded sampling, dedup."""

from __future__ import annotations

import pytest
from conftest import data_params, qa, read_jsonl, rgb_image, write_jsonl

from impkit.config import DataConfig, from_dict
from impkit.data.assemble import assemble


def sources(tmp_path, n: int = 40):
    root = tmp_path / "images"
    for name in ("coco/a.png", "textvqa/b.png", "coco/c.png"):
        rgb_image(root / name)
    main = [
        {
            "id": f"m{i}",
            "image": ["coco/a.png", "textvqa/b.png", "coco/c.png"][i % 3],
            "conversations": qa(f"Question number {i}?", "yes"),
        }
        for i in range(n)
    ]
    main.append({"id": "text-1", "conversations": qa("Plain text?", "sure", image=False)})
    other = [{"id": f"o{i}", "image": "coco/a.png", "conversations": qa(f"Other {i}?", "no")} for i in range(n)]
    return {
        "main": {"path": str(write_jsonl(tmp_path / "main.jsonl", main)), "image_root": str(root), "tags": ["llava"]},
        "other": {
            "path": str(write_jsonl(tmp_path / "other.jsonl", other)),
            "image_root": str(root),
            "tags": ["gpt4v"],
        },
    }


def kept_ids(paths, mixture="mix"):
    return [r["id"] for r in read_jsonl(paths.out_dir / f"{mixture}.jsonl")]


def test_exclusion_by_image_pattern_tags_and_id(tmp_path, paths):
    srcs = sources(tmp_path)
    rules = {
        "textcaps": {"match": {"image": "^textvqa/"}, "why": "shares images with TextVQA"},
        "gpt4v": {"match": {"tags": ["gpt4v"]}},
        "by-id": {"match": {"id": "^m1\\d$"}},
        "disabled": {"match": {"text_only": True}, "enabled": False},
    }
    cfg = from_dict(
        DataConfig,
        data_params(
            srcs,
            {
                "mix": {
                    "entries": [{"source": "main"}, {"source": "other"}],
                    "exclude": ["textcaps", "gpt4v", "by-id", "disabled"],
                }
            },
            exclude=rules,
        ),
    )
    manifest = assemble(cfg, paths)
    ids = kept_ids(paths)
    expected = [f"main:m{i}" for i in range(40) if i % 3 != 1 and not 10 <= i <= 19] + ["main:text-1"]
    assert ids == expected
    main_report, other_report = manifest["mixtures"]["mix"]["sources"]
    assert main_report["dropped_by_rule"]["excluded:textcaps"] == sum(1 for i in range(40) if i % 3 == 1)
    assert main_report["dropped_by_rule"]["excluded:by-id"] == sum(1 for i in range(10, 20) if i % 3 != 1)
    assert other_report["dropped_by_rule"] == {"excluded:gpt4v": 40}
    steps = [s["step"] for s in main_report["funnel"]]
    assert steps.index("after excluded:textcaps") < steps.index("after excluded:by-id")


def test_include_filter_keeps_only_matching_records(tmp_path, paths):
    srcs = sources(tmp_path)
    cfg = from_dict(
        DataConfig, data_params(srcs, {"mix": {"entries": [{"source": "main", "include": {"text_only": True}}]}})
    )
    assemble(cfg, paths)
    assert kept_ids(paths) == ["main:text-1"]


def test_sampling_is_seeded_exact_and_deterministic(tmp_path, paths):
    srcs = sources(tmp_path)
    mixtures = {"mix": {"entries": [{"source": "other", "sample": 15}]}}

    def run(seed, out):
        cfg = from_dict(DataConfig, data_params(srcs, mixtures, sample_seed=seed))
        p = type(paths)(tmp_path / out / "a", tmp_path / out / "q", tmp_path / out / "c.sqlite", tmp_path / out / "d")
        assemble(cfg, p)
        return kept_ids(p)

    first, again, other_seed = run(1, "r1"), run(1, "r2"), run(2, "r3")
    assert len(first) == 15 and len(set(first)) == 15
    assert first == again
    assert first != other_seed
    assert set(first) <= {f"other:o{i}" for i in range(40)}


def test_sampling_more_than_available_keeps_all_and_says_so(tmp_path, paths):
    srcs = sources(tmp_path, n=5)
    cfg = from_dict(DataConfig, data_params(srcs, {"mix": {"entries": [{"source": "other", "sample": 50}]}}))
    manifest = assemble(cfg, paths)
    assert len(kept_ids(paths)) == 5
    assert "only 5 eligible" in manifest["mixtures"]["mix"]["sources"][0]["sample_note"]


@pytest.mark.parametrize("chunk_records", [1000, 2])  # 2: duplicates across chunk boundaries
def test_dedup_by_id_within_a_source_and_by_content_across_sources(tmp_path, paths, chunk_records):
    root = tmp_path / "images"
    rgb_image(root / "x.png")
    a = [
        {"id": "1", "image": "x.png", "conversations": qa("Q one?")},
        {"id": "1", "image": "x.png", "conversations": qa("Q one, again with the same id?")},
        {"id": "2", "image": "x.png", "conversations": qa("Q two?")},
    ]
    b = [
        {"id": "1", "image": "x.png", "conversations": qa("Q from b?")},  # same id, other source: kept
        {"id": "9", "image": "x.png", "conversations": qa("Q two?")},  # same image+conversation as a/2
    ]
    srcs = {
        "a": {"path": str(write_jsonl(tmp_path / "a.jsonl", a)), "image_root": str(root)},
        "b": {"path": str(write_jsonl(tmp_path / "b.jsonl", b)), "image_root": str(root)},
    }
    cfg = from_dict(
        DataConfig,
        data_params(srcs, {"mix": {"entries": [{"source": "a"}, {"source": "b"}]}}, chunk_records=chunk_records),
    )
    manifest = assemble(cfg, paths)
    assert kept_ids(paths) == ["a:1", "a:2", "b:1"]
    ra, rb = manifest["mixtures"]["mix"]["sources"]
    # duplicates are quarantined, never dropped, each with the record it repeats
    assert ra["quarantine_reasons"] == {"duplicate_id": 1} and ra["dropped_by_rule"] == {}
    assert rb["quarantine_reasons"] == {"duplicate_content": 1} and rb["dropped_by_rule"] == {}
    mix = manifest["mixtures"]["mix"]
    assert mix["in"] == 5 == mix["kept"] + mix["quarantined"] and mix["dropped"] == 0
    quarantined = read_jsonl(paths.quarantine_dir / "mix.jsonl")
    assert [(q["source"], q["position"], q["reasons"], q["duplicate_of"]) for q in quarantined] == [
        ("a", 1, ["duplicate_id"], {"source": "a", "position": 0, "id": "1"}),
        ("b", 1, ["duplicate_content"], {"source": "a", "position": 2, "id": "2"}),
    ]
    assert quarantined[0]["record"] == a[1]


def test_json_list_sources_and_the_manifest_hashes(tmp_path, paths):
    import hashlib
    import json

    root = tmp_path / "images"
    rgb_image(root / "x.png")
    path = tmp_path / "pretrain.json"
    path.write_text(
        json.dumps([{"id": str(i), "image": "x.png", "conversations": qa(f"Caption {i}")} for i in range(4)])
    )
    cfg = from_dict(
        DataConfig,
        data_params(
            {"cap": {"path": str(path), "image_root": str(root)}}, {"pretrain": {"entries": [{"source": "cap"}]}}
        ),
    )
    manifest = assemble(cfg, paths)
    mix = manifest["mixtures"]["pretrain"]
    assert mix["kept"] == 4
    assert mix["sources"][0]["sha256"] == hashlib.sha256(path.read_bytes()).hexdigest()
    out = paths.out_dir / "pretrain.jsonl"
    assert mix["output"]["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    assert manifest["recipe"]["mixtures"]["pretrain"]["entries"][0]["source"] == "cap"

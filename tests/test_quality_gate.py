"""The gate stops the stage when it should, with a clear message, and loses nothing."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import yaml
from conftest import data_params, qa, read_jsonl, rgb_image, write_jsonl

from impkit.config import ConfigError, DataConfig, from_dict
from impkit.data.assemble import assemble
from impkit.data.llava_format import SourceError
from impkit.data.quality import QualityGateError


def mixed_source(tmp_path, n_good: int, n_missing_image: int):
    root = tmp_path / "images"
    rgb_image(root / "ok.png")
    records = [{"id": f"g{i}", "image": "ok.png", "conversations": qa(f"Q{i}?")} for i in range(n_good)]
    records += [
        {"id": f"b{i}", "image": f"gone/{i}.png", "conversations": qa(f"B{i}?")} for i in range(n_missing_image)
    ]
    return {"path": str(write_jsonl(tmp_path / "src.jsonl", records)), "image_root": str(root)}


def test_gate_fails_above_the_quarantine_threshold_naming_check_and_count(tmp_path, paths):
    params = data_params({"src": mixed_source(tmp_path, 90, 10)}, {"finetune": {"entries": [{"source": "src"}]}})
    params["quality"]["max_quarantine_share"] = 0.05
    with pytest.raises(QualityGateError) as err:
        assemble(from_dict(DataConfig, params), paths)
    message = str(err.value)
    assert "quarantine_share" in message and "10 of 100" in message and "image_readable 10" in message
    # nothing is lost: quarantine, the run's manifest and Data Docs are written; nothing is published
    assert len(read_jsonl(paths.quarantine_dir / "finetune.jsonl")) == 10
    assert not (paths.out_dir / "finetune.jsonl").exists() and not paths.image_store.exists()
    assert not (paths.out_dir / "manifest.json").exists() and (paths.docs_dir / "index.html").is_file()
    failed = json.loads((paths.quarantine_dir / "failed_manifest.json").read_text())
    assert failed["mixtures"]["finetune"]["gate"] == "failed" and "nothing was published" in message


def test_gate_passes_at_the_threshold(tmp_path, paths):
    params = data_params({"src": mixed_source(tmp_path, 90, 10)}, {"finetune": {"entries": [{"source": "src"}]}})
    params["quality"]["max_quarantine_share"] = 0.10
    manifest = assemble(from_dict(DataConfig, params), paths)
    assert manifest["mixtures"]["finetune"]["gate"] == "passed"
    assert len(read_jsonl(paths.out_dir / "finetune.jsonl")) == 90


def test_gate_fails_when_quarantine_skews_the_source_shares(tmp_path, paths):
    root = tmp_path / "images"
    rgb_image(root / "ok.png")
    a = [{"id": f"a{i}", "image": "ok.png", "conversations": qa(f"A{i}?")} for i in range(50)]
    b = [{"id": f"b{i}", "image": "ok.png" if i < 30 else "gone.png", "conversations": qa(f"B{i}?")} for i in range(50)]
    srcs = {
        "a": {"path": str(write_jsonl(tmp_path / "a.jsonl", a)), "image_root": str(root)},
        "b": {"path": str(write_jsonl(tmp_path / "b.jsonl", b)), "image_root": str(root)},
    }
    params = data_params(srcs, {"finetune": {"entries": [{"source": "a"}, {"source": "b"}]}})
    params["quality"]["share_tolerance"] = 0.05
    with pytest.raises(QualityGateError, match="source_share.*a, b"):
        assemble(from_dict(DataConfig, params), paths)


def test_missing_image_root_and_files_are_clear_errors(tmp_path, paths):
    src = mixed_source(tmp_path, 3, 0)
    bad_root = data_params(
        {"src": {**src, "image_root": str(tmp_path / "nowhere")}}, {"m": {"entries": [{"source": "src"}]}}
    )
    with pytest.raises(SourceError, match="image root .*nowhere is not a directory"):
        assemble(from_dict(DataConfig, bad_root), paths)
    no_file = data_params(
        {"src": {**src, "path": str(tmp_path / "absent.jsonl")}}, {"m": {"entries": [{"source": "src"}]}}
    )
    with pytest.raises(SourceError, match="absent.jsonl not found"):
        assemble(from_dict(DataConfig, no_file), paths)


def test_broken_json_list_is_a_clear_error(tmp_path, paths):
    broken = tmp_path / "broken.json"
    broken.write_text('[{"id": "1", "conversations": []}, {"id": "2", "conv')
    params = data_params({"src": {"path": str(broken)}}, {"m": {"entries": [{"source": "src"}]}})
    with pytest.raises(SourceError, match=r"broken.json: not a valid JSON list .*after record 1"):
        assemble(from_dict(DataConfig, params), paths)


def test_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"unknown key\(s\) \['smaple'\]"):
        from_dict(
            DataConfig, data_params({"s": {"path": "x.jsonl"}}, {"m": {"entries": [{"source": "s", "smaple": 3}]}})
        )
    with pytest.raises(ConfigError, match="unknown source 'nope'; known sources: \\['s'\\]"):
        from_dict(DataConfig, data_params({"s": {"path": "x.jsonl"}}, {"m": {"entries": [{"source": "nope"}]}}))
    with pytest.raises(ConfigError, match="expected an integer"):
        from_dict(
            DataConfig, data_params({"s": {"path": "x.jsonl"}}, {"m": {"entries": [{"source": "s", "sample": "many"}]}})
        )


def test_cli_reports_bad_input_without_a_traceback(tmp_path):
    broken = tmp_path / "broken.json"
    broken.write_text('{"not": "a list"}')
    params = {"data": data_params({"src": {"path": str(broken)}}, {"m": {"entries": [{"source": "src"}]}})}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "impkit.cli",
            "assemble",
            "--params",
            str(tmp_path / "params.yaml"),
            "--out",
            str(tmp_path / "o"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1
    assert "must hold a JSON list of records" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_the_documented_real_recipe_is_a_valid_data_section():
    """docs/recipes/imp-1m.yaml (the paper's 1M mix over the real files) must stay loadable."""
    from pathlib import Path

    raw = yaml.safe_load((Path(__file__).parents[1] / "docs" / "recipes" / "imp-1m.yaml").read_text())
    cfg = from_dict(DataConfig, raw["data"], "data")
    finetune = cfg.mixtures["finetune"]
    assert {e.source: e.sample for e in finetune.entries}["allava"] == 300_000
    assert finetune.exclude == ("textcaps",) and cfg.exclude["textcaps"].match.image == "^textvqa/"

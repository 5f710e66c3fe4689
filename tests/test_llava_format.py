"""The streaming reader on valid and broken JSON / JSONL sources."""

from __future__ import annotations

import hashlib
import json

import pytest

from impkit.data.llava_format import RecordStream, SourceError


def test_jsonl_positions_blank_lines_and_malformed_lines(tmp_path):
    path = tmp_path / "s.jsonl"
    path.write_text('{"id": "a"}\n\n{"id": "b"\n   \n{"id": "c"}')  # no trailing newline
    stream = RecordStream(path)
    items = list(stream)
    assert [(r.position, r.record) for r in items if r.error is None] == [(0, {"id": "a"}), (4, {"id": "c"})]
    bad = [r for r in items if r.error]
    assert len(bad) == 1 and bad[0].position == 2 and bad[0].raw == '{"id": "b"'
    assert bad[0].error.startswith("malformed_json")
    assert stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


def test_json_list_streams_records(tmp_path):
    path = tmp_path / "s.json"
    # ~4 MB of two-byte characters: records and characters straddle the 1 MiB read windows
    records = [{"id": str(i), "conversations": [{"from": "human", "value": "é" * (i % 3001)}]} for i in range(1500)]
    path.write_text(json.dumps(records, ensure_ascii=False))
    stream = RecordStream(path)
    assert [r.record for r in stream] == records
    assert stream.sha256 == hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.json", "", "file is empty"),
        ("obj.json", '{"id": 1}', "must hold a JSON list"),
        ("cut.json", '[{"id": 1}, {"id":', "not a valid JSON list"),
        ("data.csv", "id\n1", "unknown source format '.csv'"),
    ],
)
def test_unreadable_sources_raise_clear_errors(tmp_path, name, content, message):
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(SourceError, match=message):
        list(RecordStream(path))


def test_missing_file(tmp_path):
    with pytest.raises(SourceError, match="source file not found"):
        RecordStream(tmp_path / "nope.jsonl")

"""The static release dashboard, opened from disk in headless Chromium: the plots render with every
release's points, the menu switches benchmarks (the paper's points appear where it reports them),
hovering names the release and level, and nothing in the page errs or reaches for the network."""

from __future__ import annotations

from datetime import UTC, datetime

from impkit.dashboards.static import render
from tests.browser import chromium_page, keep_screenshot
from tests.test_registry import _record


def _records(tmp_path):
    first = _record(tmp_path, created=datetime(2026, 1, 1, tzinfo=UTC))
    second = _record(tmp_path, weights=b"retrained", created=datetime(2026, 1, 2, tzinfo=UTC))
    for record, sqa in ((first, 30.0), (second, 40.0)):  # SQA-IMG on every level: the paper reports it too
        record["benchmarks"]["gguf"] = {
            lv: {"vqav2": 50.0 + i, "sqa": sqa + i} for i, lv in enumerate(("F16", "Q8_0", "Q4_K_M"))
        }
        record["sizes"] = {"F16": {"total": 14e6}, "Q8_0": {"total": 10e6}, "Q4_K_M": {"total": 8e6}}
    return [first, second]


def test_the_page_is_self_contained():
    page = render([])
    assert "<script src=" not in page and "https://" not in page.split("</script>", 1)[1]
    assert "0 release(s)" in page


def test_the_dashboard_renders_every_release_and_the_papers_points_in_chromium(tmp_path):
    records = _records(tmp_path)
    out = tmp_path / "index.html"
    out.write_text(render(records), encoding="utf-8")
    with chromium_page() as page:
        requests = []
        page.on("request", lambda request: requests.append(request.url))
        page.goto(out.as_uri())
        points = page.locator("#accuracy-vs-size .scatterlayer .point")
        points.first.wait_for()
        assert points.count() == 6  # two releases x three levels (VQAv2: no paper points)
        # hovering a point names its release and level
        box = points.first.bounding_box()  # plotly's drag layer lies over the points: move the mouse there
        page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
        page.locator("#accuracy-vs-size .hoverlayer .hovertext").wait_for()
        hover = page.locator("#accuracy-vs-size .hoverlayer").text_content()  # SVG: text, not inner text
        assert any(r["id"] in hover for r in records) and "MB" in hover
        # the menu switches to SQA-IMG, where the paper's Table 4 points join (2 models x 3 precisions)
        page.locator("#accuracy-vs-size .updatemenu-header-group").click()
        page.locator("#accuracy-vs-size .updatemenu-item-text", has_text="SQA-IMG").click()
        page.wait_for_timeout(300)
        assert page.locator("#accuracy-vs-size .scatterlayer .point").count() == 6 + 6
        assert "paper: Imp-3B@196 (reported)" in page.locator("#accuracy-vs-size .legend").text_content()
        assert page.locator("table").count() >= 1 + 3 * len(records)
        # the data's gate per source with the quarantine reasons, readable offline (the Data Docs are not)
        assert "bad: 1" in page.locator("table", has_text="Quarantined").first.inner_text()
        keep_screenshot(page, "release-dashboard")
        assert page.errors == []
        assert all(url.startswith(("file:", "data:", "about:")) for url in requests), requests


def test_the_evidently_workspace_is_rebuilt_whole_without_duplicates(tmp_path):
    from evidently.ui.workspace import Workspace

    from impkit.dashboards.evidently_workspace import build_workspace, project_id, release_columns

    records = _records(tmp_path)
    for record in records:
        record["family"] = "phi2"
    folder = tmp_path / "evidently"
    assert build_workspace(records, folder) == {"phi2": 2}
    first = Workspace(str(folder)).get_dashboard(project_id("phi2"))
    assert build_workspace(records, folder) == {"phi2": 2}  # again: the same runs and panels, not twice as many
    workspace = Workspace(str(folder))
    dashboard = workspace.get_dashboard(project_id("phi2"))
    assert len(workspace.list_runs(project_id("phi2"))) == 2
    assert [p.id for p in dashboard.panels] == [p.id for p in first.panels] and len(dashboard.panels) == len(
        {p.id for p in dashboard.panels}
    )
    assert [t.title for t in dashboard.tabs] == ["Benchmarks", "Size", "Latency", "Data"]
    columns = release_columns(records[1])
    assert columns["sqa.Q4_K_M"] == 42.0 and columns["size_mb.Q8_0"] == 10.0
    assert columns["t_total_s.cpu-llamacpp/F16"] == 0.0565 and columns["data.finetune.gate_passed"] == 1.0


def test_each_release_gets_a_drift_report_of_its_training_data_against_the_previous_one(tmp_path):
    import json

    from impkit.dashboards.drift import write_drift_reports
    from impkit.registry import Registry

    def training_data(name: str, answer: str, n: int):
        path = tmp_path / f"{name}.jsonl"
        rows = [
            {
                "id": f"{name}{i}",
                "source": "syn_vqa" if i % 3 else "syn_mc",
                "image": "a.png",
                "conversations": [
                    {"from": "human", "value": "<image>\nWhat colour?"},
                    {"from": "gpt", "value": answer * (1 + i % 4)},
                ],
            }
            for i in range(n)
        ]
        path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        return path

    registry = Registry(tmp_path / "registry")
    first, second = _records(tmp_path)
    registry.add(first, training_data=training_data("a", "red", 60))
    registry.add(second, training_data=training_data("b", "a much longer answer", 60))
    profile = registry.data_profile_path(second)
    assert profile.read_bytes()[:2] == b"\x1f\x8b"  # gzip, written with a fixed time: the same data, the same bytes
    written = write_drift_reports(registry.records(), registry, tmp_path / "drift")
    assert written == [second["id"]]  # the first release has nothing to drift from
    report = (tmp_path / "drift" / f"{second['id']}.html").read_text()
    assert "answer_chars" in report and "question_chars" in report
    page = render(registry.records(), drift={second["id"]: f"drift/{second['id']}.html"})
    assert f"href='drift/{second['id']}.html'" in page


def test_the_tradeoff_table_has_a_row_per_release_and_level():
    import tempfile
    from pathlib import Path

    from impkit.dashboards.tradeoffs import tradeoff_rows

    (record, _) = _records(Path(tempfile.mkdtemp()))
    rows = tradeoff_rows([record])
    assert [(r["level"], r["size_mb"], r["sqa"]) for r in rows] == [
        ("F16", 14.0, 30.0),
        ("Q4_K_M", 8.0, 32.0),
        ("Q8_0", 10.0, 31.0),
    ]
    assert rows[0]["t_total_s_cpu_llamacpp"] == 0.0565 and "t_total_s_cpu_llamacpp" not in rows[1]

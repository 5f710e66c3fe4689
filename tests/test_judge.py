"""The MM-Vet LLM judge against a real local OpenAI-compatible HTTP server (offline, in a thread)."""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from impkit import cli
from impkit.config import ConfigError, JudgeConfig
from impkit.eval.benchmarks.mmvet import score_mmvet
from impkit.eval.judge import judge_from_params, make_judge, parse_mark
from impkit.eval.scoring import ScoringError


def _case(prompt: str) -> tuple[str, str, str]:
    """(question, ground truth, prediction) of the case to grade: the prompt's last block."""
    rest = prompt.rpartition("Question: ")[2]
    question, _, rest = rest.partition("\nGround truth: ")
    gold, _, rest = rest.partition("\nPrediction: ")
    prediction, _, _ = rest.partition("\nCorrectness:")
    return question, gold, prediction


def grade_by_containment(body: dict) -> str:
    """A deterministic grader: 1.0 when the prediction appears verbatim in the ground truth."""
    question, gold, prediction = _case(body["messages"][-1]["content"])
    assert question and gold and prediction
    return "1.0" if prediction in gold else "0.0"


class FakeServer:
    """``POST /v1/chat/completions`` answered by ``reply(request body) -> content`` (or an HTTP status)."""

    def __init__(self, reply: Callable[[dict], str | int]) -> None:
        self.reply = reply
        self.requests: list[tuple[dict, dict[str, str]]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's naming)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                server.requests.append((body, dict(self.headers)))
                content = server.reply(body) if self.path == "/v1/chat/completions" else 404
                if isinstance(content, int):
                    payload, status = json.dumps({"error": {"message": "boom"}}).encode(), content
                else:
                    message = {"role": "assistant", "content": content}
                    payload, status = json.dumps({"choices": [{"index": 0, "message": message}]}).encode(), 200
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, *args) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture
def serve() -> Iterator[Callable[[Callable[[dict], str | int]], FakeServer]]:
    servers: list[FakeServer] = []

    def start(reply: Callable[[dict], str | int]) -> FakeServer:
        servers.append(FakeServer(reply))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def mmvet_files(tmp: Path) -> tuple[Path, Path]:
    items = {
        "v1_0": {"imagename": "v1_0.png", "capability": ["rec"], "question": "What animal?", "answer": "a cat"},
        "v1_1": {"imagename": "v1_1.png", "capability": ["ocr", "math"], "question": "Sum?", "answer": "7"},
        "v1_2": {"imagename": "v1_2.png", "capability": ["rec", "know"], "question": "Who?", "answer": "Ada <OR> Bob"},
        "v1_3": {"imagename": "v1_3.png", "capability": ["ocr"], "question": "Text?", "answer": "EXIT"},
    }
    answers = {"v1_0": "cat", "v1_1": "8", "v1_2": "Bob"}  # v1_3 unanswered: 0, counted as missing
    (tmp / "mm-vet.json").write_text(json.dumps(items))
    (tmp / "results.json").write_text(json.dumps(answers))
    return tmp / "mm-vet.json", tmp / "results.json"


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_score_mmvet_with_the_judge_sends_question_gold_and_prediction(tmp_path, serve):
    server = serve(grade_by_containment)
    ann, preds = mmvet_files(tmp_path)
    m = score_mmvet(ann, preds, judge=make_judge(JudgeConfig(server.endpoint, "judge-model")))
    assert m["scored"] is True and m["missing"] == 1 and m["n"] == 4
    assert m["headline"] == {"name": "judge_mean", "value": pytest.approx(50.0)}
    assert m["per_capability"] == {"know": 100.0, "math": 0.0, "ocr": 0.0, "rec": 100.0}
    assert len(server.requests) == 3  # the unanswered question is not sent
    body, headers = server.requests[0]
    assert body["model"] == "judge-model" and body["temperature"] == 0.0 and 0 < body["max_tokens"] <= 32
    assert _case(body["messages"][-1]["content"]) == ("What animal?", "a cat", "cat")
    assert "<AND>" in body["messages"][-1]["content"] and "<OR>" in body["messages"][-1]["content"]
    assert "Authorization" not in headers


def test_garbage_every_time_fails_after_max_attempts(serve):
    server = serve(lambda body: "I think the answer is quite good!")
    judge = make_judge(JudgeConfig(server.endpoint, "m", max_attempts=4))
    with pytest.raises(ScoringError, match=rf"MM-Vet judge at {server.endpoint}: no correctness score .* 4 replies"):
        judge("q", "gold", "pred")
    assert len(server.requests) == 4
    temperatures = [body["temperature"] for body, _ in server.requests]
    assert temperatures[0] == 0.0 and temperatures == sorted(temperatures) and temperatures[-1] > 0


def test_garbage_once_then_a_number_succeeds(serve):
    replies = iter(["Hmm, hard to say.", "Correctness: 0.7"])
    server = serve(lambda body: next(replies))
    assert make_judge(JudgeConfig(server.endpoint, "m"))("q", "gold", "pred") == pytest.approx(0.7)
    assert len(server.requests) == 2


def test_out_of_range_numbers_are_not_marks():
    assert parse_mark("0.8") == 0.8 and parse_mark(" 1.0\n") == 1.0 and parse_mark(".5 (half)") == 0.5
    assert parse_mark("8/10") is None and parse_mark("-0.5") is None and parse_mark("") is None
    assert parse_mark(None) is None


def test_connection_refused_is_a_plain_one_line_error():
    endpoint = f"http://127.0.0.1:{closed_port()}/v1"
    with pytest.raises(ScoringError) as info:
        make_judge(JudgeConfig(endpoint, "m"))("q", "gold", "pred")
    assert str(info.value).startswith(f"MM-Vet judge at {endpoint}: connection refused")
    assert "\n" not in str(info.value) and info.value.__cause__ is None


def test_http_error_status_is_a_scoring_error(serve):
    server = serve(lambda body: 500)
    with pytest.raises(ScoringError, match=rf"MM-Vet judge at {server.endpoint}: HTTP 500 .*boom"):
        make_judge(JudgeConfig(server.endpoint, "m"))("q", "gold", "pred")
    assert len(server.requests) == 1  # not retried


def test_a_slow_server_times_out_with_a_plain_message(serve):
    server = serve(lambda body: time.sleep(0.5) or "1.0")
    with pytest.raises(ScoringError, match=rf"MM-Vet judge at {server.endpoint}: no reply within 0.1 s"):
        make_judge(JudgeConfig(server.endpoint, "m", timeout_s=0.1))("q", "gold", "pred")


def test_api_key_comes_from_the_named_environment_variable(serve, monkeypatch):
    server = serve(lambda body: "1.0")
    monkeypatch.setenv("IMPKIT_TEST_JUDGE_KEY", "sk-test-123")
    judge = judge_from_params({"endpoint": server.endpoint, "model": "m", "api_key_env": "IMPKIT_TEST_JUDGE_KEY"})
    assert judge("q", "gold", "pred") == 1.0
    assert server.requests[0][1]["Authorization"] == "Bearer sk-test-123"
    monkeypatch.delenv("IMPKIT_TEST_JUDGE_KEY")
    with pytest.raises(ScoringError, match="IMPKIT_TEST_JUDGE_KEY .* is not set"):
        judge_from_params({"endpoint": server.endpoint, "model": "m", "api_key_env": "IMPKIT_TEST_JUDGE_KEY"})


def test_config_is_validated():
    assert judge_from_params(None) is None
    with pytest.raises(ValueError, match="http:// or https:// URL"):
        JudgeConfig("127.0.0.1:8080/v1", "m")
    with pytest.raises(ValueError, match="timeout_s must be positive"):
        JudgeConfig("http://localhost/v1", "m", timeout_s=0)
    with pytest.raises(ValueError, match="max_attempts must be at least 1"):
        JudgeConfig("http://localhost/v1", "m", max_attempts=0)
    with pytest.raises(ConfigError, match="eval.judge: missing key 'model'"):
        judge_from_params({"endpoint": "http://localhost/v1"})
    cfg = JudgeConfig("http://localhost:8080/v1/", "m")
    assert cfg.url == "http://localhost:8080/v1/chat/completions"


def test_cli_scores_mmvet_only_with_a_judge_endpoint(tmp_path, serve, capsys):
    server = serve(grade_by_containment)
    ann, preds = mmvet_files(tmp_path)
    files = ["--annotations", str(ann), "--predictions", str(preds)]
    cli.main(["score", "mmvet", *files, "--judge-endpoint", server.endpoint, "--judge-model", "m"])
    printed = json.loads(capsys.readouterr().out)
    assert printed["scored"] is True and printed["headline"]["value"] == pytest.approx(50.0)
    cli.main(["score", "mmvet", *files])
    printed = json.loads(capsys.readouterr().out)
    assert printed["scored"] is False and printed["reason"] == "not scored: no judge"
    assert printed["headline"]["value"] is None


@pytest.mark.parametrize(
    "argv",
    [
        ["score", "gqa", "--predictions", "p.json", "--judge-endpoint", "http://127.0.0.1:1/v1", "--judge-model", "m"],
        ["score", "mmvet", "--predictions", "p.json", "--judge-endpoint", "http://127.0.0.1:1/v1"],
    ],
)
def test_cli_rejects_misused_judge_flags(argv, caplog):
    with pytest.raises(SystemExit) as info:
        cli.main(argv)
    assert info.value.code not in (0, None)
    assert "--judge-endpoint" in caplog.text  # the one-line error names the flag

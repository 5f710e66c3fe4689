"""ImpChat for real: `impkit chat` on loopback over a registry of tiny releases exported to GGUF.

The official `openai` client gets the evaluation runner's answer, streamed and not; every kind of bad
input gets its 4xx and the next good request is answered; the API key is enforced; a full server
answers 429 with Retry-After and a client that leaves mid-stream frees its slot; Schemathesis fuzzes
the OpenAPI schema without a 5xx; the web page streams an answer in Chromium and switches release."""

from __future__ import annotations

import http.client
import json
import time
import urllib.request
from pathlib import Path

import pytest
from chat_server import CHAT, build_workspace, chat_server, data_uri, png_bytes, post
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_gguf_export import THREADS

pytest.importorskip("llama_cpp.mtmd_cpp")
openai = pytest.importorskip("openai")
schemathesis = pytest.importorskip("schemathesis")
from schemathesis.generation.modes import GenerationMode  # noqa: E402

KEY = "test-key-123"
QUESTIONS = ["What colour is the shape?", "how many objects"]
MAX_TOKENS = 12


@pytest.fixture(scope="module")
def workspace(tmp_path_factory) -> Path:
    return build_workspace(tmp_path_factory.mktemp("chat"))


@pytest.fixture(scope="module")
def server(workspace):
    # queue 0: a second request while one answers is refused at once (the 429 test); a long context
    # so that an answer can run long enough to be interrupted
    limits = {**CHAT["limits"], "max_tokens": 3000}
    with chat_server(workspace, queue=0, n_ctx=4096, limits=limits) as running:
        yield running


@pytest.fixture(scope="module")
def keyed(workspace):
    with chat_server(workspace, name="keyed", key=KEY) as running:
        yield running


def get(url: str, headers: dict | None = None) -> dict:
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=30) as response:
        return json.loads(response.read())


def model_ids(url: str) -> list[str]:
    return [m["id"] for m in get(url + "/v1/models")["data"]]


def image_message(text: str, uri: str) -> list[dict]:
    return [
        {"role": "user", "content": [{"type": "image_url", "image_url": {"url": uri}}, {"type": "text", "text": text}]}
    ]


def good(url: str, model: str, headers: dict | None = None) -> None:
    body = {"model": model, "messages": image_message("What colour?", data_uri(png_bytes())), "max_tokens": 4}
    status, answer, _ = post(url + "/v1/chat/completions", body, headers)
    assert status == 200, answer
    assert answer["choices"][0]["message"]["role"] == "assistant"


def test_models_lists_every_release_and_level_with_its_figures(server):
    models = get(server["url"] + "/v1/models")["data"]
    assert {m["impkit"]["preset"] for m in models} == {"tiny-qwen2", "tiny-phi2"}
    assert {m["impkit"]["level"] for m in models} == {"F16", "Q8_0"}
    for m in models:
        assert m["id"] == f"{m['impkit']['release_id']}:{m['impkit']['level']}"
        assert m["impkit"]["alias"] == f"{m['impkit']['preset']}:{m['impkit']['level']}"
        assert m["impkit"]["size_mb"] > 0 and m["impkit"]["t_total_s"] == 0.05
    accuracy = {m["impkit"]["preset"]: m["impkit"]["accuracy"] for m in models}
    assert accuracy == {"tiny-qwen2": 35.0, "tiny-phi2": 35.5}  # mean of vqav2 and MME/20


def test_the_openai_client_gets_the_evaluation_runners_answer_streamed_and_not(server, workspace, tmp_path):
    from impkit.eval.runners import LlamaCppRunner, Question
    from impkit.registry import Registry

    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    image = tmp_path / "shape.png"
    image.write_bytes(png_bytes(size=(48, 32)))  # not square: both pad it the same way
    uri = data_uri(image.read_bytes())
    answers = set()
    for record in Registry(workspace / "registry").records():
        runner = LlamaCppRunner.from_export(
            workspace / record["files"]["gguf"]["folder"],
            "F16",
            workspace / record["files"]["release"]["folder"],
            max_new_tokens=MAX_TOKENS,
            n_threads=THREADS,
            n_ctx=4096,
        )
        try:
            expected = runner.answer([Question(id=str(i), image=str(image), prompt=q) for i, q in enumerate(QUESTIONS)])
        finally:
            runner.close()
        for question, reference in zip(QUESTIONS, expected, strict=True):
            model = f"{record['preset']}:F16"
            kwargs = dict(model=model, messages=image_message(question, uri), temperature=0, max_tokens=MAX_TOKENS)
            reply = client.chat.completions.create(**kwargs)
            assert reply.choices[0].message.content == reference
            assert reply.usage.prompt_tokens > 16 and 0 < reply.usage.completion_tokens <= MAX_TOKENS
            assert reply.model == f"{record['id']}:F16"
            pieces = [
                chunk.choices[0].delta.content or ""
                for chunk in client.chat.completions.create(**kwargs, stream=True)
                if chunk.choices
            ]
            assert "".join(pieces) == reference
            assert len([p for p in pieces if p]) > 1  # streamed piece by piece, not in one block
            answers.add(reference)
    assert len(answers) > 2  # the answers depend on the release and the question: the comparison can fail
    log = server["log"].read_text()
    assert "tokens_in=" in log and "t_ve_s=0." in log and "gen_tps=" in log and "status=200" in log


def test_a_multi_turn_chat_follows_the_template_and_a_stop_string_cuts_the_answer(server):
    client = openai.OpenAI(base_url=server["url"] + "/v1", api_key="unused", max_retries=0)
    uri = data_uri(png_bytes())
    messages = image_message("What colour is the shape?", uri)
    first = client.chat.completions.create(model="tiny-qwen2:F16", messages=messages, temperature=0, max_tokens=8)
    text = first.choices[0].message.content
    messages += [{"role": "assistant", "content": text}, {"role": "user", "content": "how many objects"}]
    second = client.chat.completions.create(model="tiny-qwen2:F16", messages=messages, temperature=0, max_tokens=8)
    assert second.usage.prompt_tokens > first.usage.prompt_tokens + first.usage.completion_tokens
    long = client.chat.completions.create(model="tiny-phi2:F16", messages=messages, temperature=0, max_tokens=40)
    answer = long.choices[0].message.content
    word = max(answer.split()[1:], key=len)  # a stop string of several characters, given as a string
    cut = client.chat.completions.create(
        model="tiny-phi2:F16", messages=messages, temperature=0, max_tokens=40, stop=word
    )
    assert cut.choices[0].message.content == answer[: answer.index(word)].strip()
    assert cut.choices[0].finish_reason == "stop"
    sampled = client.chat.completions.create(
        model="tiny-phi2:F16", messages=messages, temperature=1.5, max_tokens=20, seed=3
    )
    again = client.chat.completions.create(
        model="tiny-phi2:F16", messages=messages, temperature=1.5, max_tokens=20, seed=3
    )
    assert sampled.choices[0].message.content == again.choices[0].message.content  # a seed repeats a sample


def _bad_inputs(model: str) -> list[tuple[str, bytes | dict, int, str]]:
    def chat(**fields) -> dict:
        return {"model": model, "messages": image_message("What colour?", data_uri(png_bytes())), **fields}

    def with_image(uri: str) -> dict:
        return chat(messages=image_message("What colour?", uri))

    png = png_bytes()
    return [
        ("malformed JSON", b'{"model": "x", "messages": [', 400, "not valid JSON"),
        ("not an object", b"[1, 2]", 400, "invalid_request"),
        ("unknown model", chat(model="nano-9b:Q2_K"), 404, "unknown model"),
        ("a path as model", chat(model="../../models/gguf/x/llm-F16.gguf"), 404, "unknown model"),
        ("messages of the wrong type", chat(messages="hello"), 400, "messages"),
        ("max_tokens as a string", chat(max_tokens="5"), 400, "max_tokens"),
        ("temperature as a string", chat(temperature="hot"), 400, "temperature"),
        ("max_tokens 0", chat(max_tokens=0), 400, "max_tokens"),
        ("max_tokens over the limit", chat(max_tokens=10**6), 400, "max_tokens"),
        ("no messages", chat(messages=[]), 400, "messages"),
        ("five stop strings", chat(stop=["a", "b", "c", "d", "e"]), 400, "stop"),
        ("two answers at once", chat(n=2), 400, "n"),
        ("unknown role", chat(messages=[{"role": "robot", "content": "hi"}]), 400, "role"),
        ("ends with the assistant", chat(messages=[{"role": "assistant", "content": "hi"}]), 400, "assistant"),
        ("a remote image URL", with_image("https://example.com/cat.png"), 400, "remote"),
        ("not a data URI", with_image("cat.png"), 400, "data URI"),
        ("broken base64", with_image("data:image/png;base64,@@@@"), 400, "base64"),
        ("a text file as image", with_image(data_uri(b"just some text, not pixels")), 400, "not an image"),
        ("a truncated PNG", with_image(data_uri(png[: len(png) // 2])), 400, "corrupt"),
        ("an unsupported format", with_image(data_uri(png_bytes(fmt="TIFF"), "image/tiff")), 415, "TIFF"),
        ("an image over the byte limit", with_image(data_uri(b"\x89PNG" + b"0" * 300_000)), 413, "MB limit"),
        ("an image over the pixel limit", with_image(data_uri(png_bytes(size=(300, 300)))), 413, "pixels"),
        (
            "two images",
            chat(
                messages=[
                    {
                        "role": "user",
                        "content": [
                            {"type": "image_url", "image_url": {"url": data_uri(png)}},
                            {"type": "image_url", "image_url": {"url": data_uri(png)}},
                        ],
                    }
                ]
            ),
            400,
            "at most 1 image",
        ),
        ("a prompt over the context", chat(messages=[{"role": "user", "content": "lamp " * 5000}]), 400, "context"),
        (
            "max_tokens past the context",
            chat(max_tokens=2900, messages=[{"role": "user", "content": "lamp " * 2000}]),
            400,
            "max_tokens",
        ),
        ("a body over the limit", chat(messages=[{"role": "user", "content": "x" * 1_100_000}]), 413, "request body"),
        ("the image placeholder in text", chat(messages=[{"role": "user", "content": "<image> hi"}]), 400, "<image>"),
    ]


def test_each_bad_input_gets_its_4xx_and_the_server_keeps_serving(server):
    url = server["url"]
    model = "tiny-qwen2:F16"
    for name, body, status, needle in _bad_inputs(model):
        got, answer, _ = post(url + "/v1/chat/completions", body)
        assert got == status, (name, answer)
        assert needle.lower() in json.dumps(answer).lower(), (name, answer)
        assert set(answer["error"]) >= {"message", "type", "code"}, name
        good(url, model)
    with pytest.raises(urllib.error.HTTPError) as error:
        get(url + "/v1/nothing-here")
    assert error.value.code == 404


def test_the_api_key_is_enforced_when_set(keyed):
    url = keyed["url"]
    assert get(url + "/health")["key_required"] is True
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": KEY}):
        status, answer, _ = post(url + "/v1/chat/completions", {"model": "tiny-qwen2:F16", "messages": []}, headers)
        assert status == 401 and answer["error"]["code"] == "invalid_api_key"
    with pytest.raises(urllib.error.HTTPError) as error:
        get(url + "/v1/models")
    assert error.value.code == 401
    good(url, "tiny-qwen2:F16", {"Authorization": f"Bearer {KEY}"})
    client = openai.OpenAI(base_url=url + "/v1", api_key=KEY, max_retries=0)
    assert len(client.models.list().data) == 4
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=url + "/v1", api_key="wrong", max_retries=0).models.list()


def test_a_full_server_says_429_and_a_client_that_leaves_frees_its_slot(server):
    url, host_port = server["url"], server["url"].removeprefix("http://")
    host, port = host_port.split(":")
    body = {
        "model": "tiny-phi2:F16",  # greedy on this release never reaches a stop token
        "messages": image_message("What colour is the shape?", data_uri(png_bytes())),
        "max_tokens": 3000,
        "temperature": 0,
        "stream": True,
    }
    before = get(url + "/health")["answers"].get("cancelled", 0)
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    connection.request("POST", "/v1/chat/completions", json.dumps(body), {"Content-Type": "application/json"})
    response = connection.getresponse()
    assert response.status == 200
    for _ in range(4):  # a few chunks: the answer is being generated
        assert response.readline()
    status, answer, headers = post(url + "/v1/chat/completions", {**body, "stream": False, "max_tokens": 2})
    assert status == 429 and answer["error"]["code"] == "queue_full", answer
    assert int(headers["retry-after"]) >= 1
    connection.sock.shutdown(2)  # the client goes away mid-answer
    connection.close()
    deadline = time.monotonic() + 10
    while (health := get(url + "/health"))["running"] and time.monotonic() < deadline:
        time.sleep(0.05)
    assert health["running"] == 0 and health["answers"].get("cancelled", 0) == before + 1, health
    good(url, "tiny-phi2:F16")
    assert "finish=disconnected" in server["log"].read_text()


def test_fuzzing_the_openapi_schema_gives_no_5xx_and_the_server_answers_afterwards(server):
    """Schemathesis generates requests from /openapi.json (valid and not), a bounded number per
    operation; none may get a 5xx or hang. (Its pytest plugin's lazy fixture loader does not run under
    pytest 9, so the operations' Hypothesis strategies are driven here directly.)"""
    url = server["url"]
    schema = schemathesis.openapi.from_url(url + "/openapi.json")
    operations = [result.ok() for result in schema.get_all_operations()]
    assert {f"{op.method.upper()} {op.path}" for op in operations} >= {"GET /v1/models", "POST /v1/chat/completions"}
    statuses: list[int] = []
    answered: list[bool] = []  # generated chat requests that reached a model and were answered
    models = st.sampled_from([None, *model_ids(url)])  # None: keep the generated (unknown) model name

    def known_model(drawn):
        case, model, plain_messages = drawn
        if model is not None and isinstance(case.body, dict) and "model" in case.body:
            case.body["model"] = model  # so that valid requests reach the models too
            if plain_messages and case.path == "/v1/chat/completions":
                # the schema's generated messages are almost never a valid conversation: some cases keep
                # every other generated field with a plain one, so the fuzzed options reach a model
                case.body["messages"] = [{"role": "user", "content": "What is in the picture?"}]
        return case

    for operation in operations:
        # a GET without parameters has no invalid form to generate
        modes = [GenerationMode.POSITIVE] + ([GenerationMode.NEGATIVE] if operation.method.upper() == "POST" else [])
        for mode in modes:
            strategy = st.tuples(operation.as_strategy(mode), models, st.booleans()).map(known_model)

            @given(case=strategy)
            @settings(
                max_examples=20, deadline=None, database=None, derandomize=True, suppress_health_check=list(HealthCheck)
            )
            def call(case):
                response = case.call(base_url=url, timeout=60)
                statuses.append(response.status_code)
                answered.append(case.path == "/v1/chat/completions" and response.status_code == 200)
                assert response.status_code < 500, (case.method, case.path, case.body, response.text[:300])
                if response.status_code >= 400:
                    assert "error" in response.json()

            call()
    assert len(statuses) >= 40 and any(answered) and any(400 <= s < 500 for s in statuses)
    print(f"fuzzing: {len(statuses)} requests, {sum(answered)} chat answers")
    # a fresh good answer: nothing hangs and no slot leaked
    good(url, "tiny-qwen2:Q8_0")
    assert get(url + "/health")["running"] == 0


def test_the_web_page_streams_an_answer_and_switches_release(server, tmp_path):
    from tests.browser import chromium_page, keep_screenshot

    image = tmp_path / "upload.png"
    image.write_bytes(png_bytes(size=(64, 64)))
    with chromium_page() as page:
        page.goto(server["url"] + "/")
        page.wait_for_selector("#model option", state="attached")
        options = page.eval_on_selector_all("#model option", "els => els.map(e => e.value)")
        assert len(options) == 4
        page.set_input_files("#image", str(image))
        page.wait_for_selector("#preview:not([hidden])")
        page.fill("#max_tokens", "24")
        page.select_option("#model", options[0])
        page.fill("#prompt", "What colour is the shape?")
        page.click("#send")
        page.wait_for_function(
            "document.querySelectorAll('.msg.assistant').length == 1 && !document.getElementById('send').disabled"
        )
        first = page.inner_text(".msg.assistant")
        # the bubble grew piece by piece as the server's stream arrived (the page counts them)
        assert first.strip() and int(page.get_attribute(".msg.assistant", "data-pieces")) > 3
        assert "T_VE" in page.inner_text("#latency") and "tok/s" in page.inner_text("#latency")
        other = next(o for o in options if o.split(":")[0] != options[0].split(":")[0])
        page.select_option("#model", other)
        assert other.split(":")[0] in page.inner_text("#info")
        page.fill("#prompt", "how many objects")
        page.click("#send")
        page.wait_for_function(
            "document.querySelectorAll('.msg.assistant').length == 2 && !document.getElementById('send').disabled"
        )
        assert page.locator(".msg.error").count() == 0
        assert page.locator(".msg.assistant").nth(1).inner_text().strip()
        keep_screenshot(page, "chat-web-page")
        assert page.errors == []
    log = server["log"].read_text()
    assert f"model={other}" in log


def test_models_load_on_first_use_and_the_least_recently_used_idle_one_goes_past_the_budget(workspace):
    from impkit.chat import ChatError
    from impkit.chat.catalog import Catalog
    from impkit.chat.engine import ModelPool

    catalog = Catalog(workspace / "registry")
    a, b, c = (catalog.resolve(name) for name in ("tiny-qwen2:F16", "tiny-phi2:F16", "tiny-qwen2:Q8_0"))
    sizes = sorted(e.file_bytes for e in (a, b, c))
    pool = ModelPool(budget_bytes=sizes[0] + sizes[1] - 1, n_ctx=256, threads=THREADS)  # any one fits, no two
    try:
        assert pool.loaded == {}  # nothing loads before it is asked for
        pool.release(pool.acquire(a, 1))
        held = pool.acquire(b, 1)  # a is idle: unloaded to make room
        assert list(pool.loaded) == [b.id] and pool.unloads == 1
        with pytest.raises(ChatError) as busy:  # b answers: it stays, and c must wait
            pool.acquire(c, 1)
        assert busy.value.status == 503 and busy.value.headers == {"Retry-After": "1"}
        pool.release(held)
        pool.release(pool.acquire(c, 1))
        assert list(pool.loaded) == [c.id] and pool.unloads == 2 and pool.loaded_bytes <= pool.budget_bytes
        with pytest.raises(ChatError, match="larger than the memory budget"):
            ModelPool(budget_bytes=1000, n_ctx=256, threads=THREADS).acquire(a, 1)
    finally:
        pool.close()


def test_generation_stops_at_its_deadline_and_when_cancelled(workspace):
    import threading

    from impkit.chat.catalog import Catalog
    from impkit.chat.engine import ChatModel, Request

    entry = Catalog(workspace / "registry").resolve("tiny-phi2:F16")
    model = ChatModel(entry, n_ctx=512, threads=THREADS)
    try:

        def ask(**kwargs) -> Request:
            fields = dict(turns=[("user", "how many objects")], image=None, system=None, max_tokens=100)
            fields.update(default_max_tokens=16, temperature=0.0, top_p=1.0, stop=[], seed=None)
            return Request(**fields, **kwargs)

        full = model.generate(ask(), lambda n: None, lambda t: None)
        assert full.finish_reason == "length" and full.timings.completion_tokens == 100
        late = model.generate(ask(deadline=time.monotonic() - 1), lambda n: None, lambda t: None)
        assert late.finish_reason == "timeout" and late.timings.completion_tokens == 0
        cancel = threading.Event()
        pieces: list[str] = []

        def on_text(text: str) -> None:
            pieces.append(text)
            if len(pieces) == 3:
                cancel.set()  # as a client that leaves after three pieces

        left = model.generate(ask(cancel=cancel), lambda n: None, on_text)
        assert left.finish_reason == "cancelled" and left.timings.completion_tokens < 10
    finally:
        model.close()


def test_the_gate_holds_slots_plus_queue_then_says_429_and_a_wait_past_the_deadline_503():
    import asyncio

    from impkit.chat import ChatError
    from impkit.chat.app import Gate

    async def scenario() -> None:
        gate = Gate(slots=1, queue=1, retry_after=3)
        await gate.enter("m", time.monotonic() + 5)  # answering
        waiting = asyncio.create_task(gate.enter("m", time.monotonic() + 0.3))  # queued
        await asyncio.sleep(0.05)
        assert (gate.running, gate.waiting) == (1, 1)
        with pytest.raises(ChatError) as full:
            await gate.enter("m", time.monotonic() + 5)
        assert full.value.status == 429 and full.value.headers == {"Retry-After": "3"}
        with pytest.raises(ChatError) as late:
            await waiting
        assert late.value.status == 503 and late.value.headers == {"Retry-After": "3"}
        assert gate.waiting == 0
        gate.leave("m")
        await gate.enter("m", time.monotonic() + 1)  # the freed slot is taken at once
        assert (gate.running, gate.waiting) == (1, 0)
        gate.leave("m")

    asyncio.run(scenario())


def test_the_web_page_asks_for_the_key_when_the_server_has_one(keyed):
    from tests.browser import chromium_page

    with chromium_page() as page:
        page.goto(keyed["url"] + "/")
        page.wait_for_selector("#keybox:not([hidden])")
        page.wait_for_selector(".msg.error")  # the models could not be listed without the key
        assert "API key" in page.inner_text(".msg.error")
        page.fill("#apikey", KEY)
        page.dispatch_event("#apikey", "change")
        page.wait_for_function("document.querySelectorAll('#model option').length == 4")
        # the 401 of the first listing is the one console error expected
        assert [e for e in page.errors if "401" not in e] == []

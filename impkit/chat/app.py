"""The ImpChat server: FastAPI, OpenAI's chat API over the registry's releases, and the web page.

Why not ``llama_cpp.server`` (llama-cpp-python's own OpenAI server, docs/chat.md has the details): it
serves one model at a time behind one global lock with an unbounded wait, renders the GGUF's Jinja
template through its ``mtmd`` chat handler and lets llama.cpp pad images with its own colour (so its
answers are not the evaluation's), and reports no vision-encoder time. Wrapping it would have meant
replacing its model proxy, its chat handler and its routes; what is left here is the HTTP layer
(routes, request schema, errors, queue, key, log) over the engine the evaluation already uses.

Serving under load: ``slots`` answers are generated at once (one per loaded model at a time); up to
``queue`` more wait; the next gets 429 with Retry-After, and one that waits past its timeout gets 503
with Retry-After. A slot is freed when its worker thread ends, which a client that disconnects
brings about within one token.
"""

# no `from __future__ import annotations`: FastAPI reads the request model from the endpoint's
# annotation, which names a class made inside create_app
import asyncio
import json
import logging
import os
import secrets
import threading
import time
import uuid
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from importlib import resources
from typing import Annotated, Any, Literal

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from impkit.chat import engine
from impkit.chat.catalog import Catalog, CatalogEntry
from impkit.chat.errors import ChatError
from impkit.chat.images import decode_data_uri
from impkit.config import ChatConfig, ChatLimits

log = logging.getLogger("impkit.chat")


# -- the request schema (OpenAI's chat completion request, the fields this server honours) ----------


def request_models(limits: ChatLimits) -> type[BaseModel]:
    """The request body's schema with this server's limits in it (they show in /openapi.json)."""
    strict = ConfigDict(strict=True, extra="ignore")

    class TextPart(BaseModel):
        model_config = strict
        type: Literal["text"]
        text: str

    class ImageURL(BaseModel):
        model_config = strict
        url: str = Field(description="data:image/<format>;base64,... (remote URLs are refused)")
        detail: Literal["auto", "low", "high"] | None = None

    class ImagePart(BaseModel):
        model_config = strict
        type: Literal["image_url"]
        image_url: ImageURL

    Part = Annotated[TextPart | ImagePart, Field(discriminator="type")]

    class Message(BaseModel):
        model_config = strict
        role: Literal["system", "user", "assistant"]
        content: str | list[Part] | None = None
        name: str | None = None

    class StreamOptions(BaseModel):
        model_config = strict
        include_usage: bool | None = None

    class ChatCompletionRequest(BaseModel):
        model_config = strict
        model: str = Field(description="<release id>:<level> or <preset>:<level>, as GET /v1/models lists")
        messages: list[Message] = Field(min_length=1, max_length=limits.max_messages)
        max_tokens: int | None = Field(None, ge=1, le=limits.max_tokens)
        max_completion_tokens: int | None = Field(None, ge=1, le=limits.max_tokens)
        temperature: float | None = Field(None, ge=0, le=2)
        top_p: float | None = Field(None, gt=0, le=1)
        stop: str | Annotated[list[str], Field(max_length=4)] | None = None  # OpenAI's limit of 4
        stream: bool | None = False
        stream_options: StreamOptions | None = None
        seed: int | None = Field(None, ge=0, le=2**63 - 1)
        n: int | None = Field(None, ge=1, le=1)
        user: str | None = None

    return ChatCompletionRequest


# -- admission: slots and the bounded queue -------------------------------------------------------------


class Gate:
    """``slots`` requests generate at once, each holding its model's lock; ``queue`` more may wait."""

    def __init__(self, slots: int, queue: int, retry_after: int) -> None:
        self.slots, self.queue, self.retry_after = slots, queue, retry_after
        self._slots = asyncio.Semaphore(slots)
        self._models: dict[str, asyncio.Lock] = {}
        self.waiting = 0
        self.running = 0

    async def enter(self, model_id: str, deadline: float) -> None:
        lock = self._models.setdefault(model_id, asyncio.Lock())
        if (lock.locked() or self._slots.locked()) and self.waiting >= self.queue:
            raise ChatError(
                429,
                f"all {self.slots} slot(s) are busy and {self.waiting} request(s) are waiting; retry shortly",
                code="queue_full",
                headers={"Retry-After": str(self.retry_after)},
            )
        self.waiting += 1
        try:
            async with asyncio.timeout_at(asyncio.get_running_loop().time() + deadline - time.monotonic()):
                await lock.acquire()
                try:
                    await self._slots.acquire()
                except BaseException:
                    lock.release()
                    raise
        except TimeoutError:
            raise ChatError(
                503,
                "timed out waiting for a free slot; retry shortly",
                code="queue_timeout",
                headers={"Retry-After": str(self.retry_after)},
            ) from None
        finally:
            self.waiting -= 1
        self.running += 1

    def leave(self, model_id: str) -> None:
        self.running -= 1
        self._slots.release()
        self._models[model_id].release()


# -- the application ---------------------------------------------------------------------------------


def _error_response(exc: ChatError) -> JSONResponse:
    return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)


def _validation_message(exc: RequestValidationError) -> tuple[str, str | None]:
    errors = exc.errors()
    if not errors:
        return "invalid request body", None
    first = errors[0]
    loc = [str(p) for p in first.get("loc", ()) if p != "body"]
    if first.get("type") == "json_invalid":
        return f"the body is not valid JSON: {first.get('msg')}", None
    where = ".".join(loc) or "body"
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    return f"{where}: {first.get('msg')}{more}", where if loc else None


class _Middleware:
    """Per request (pure ASGI, so streamed answers pass untouched): an id, the body-size limit, the
    API key on /v1, and one log line when the response has ended (sent in full, or the client left)."""

    def __init__(self, app, *, max_body: int, api_key_env: str) -> None:
        self.app, self.max_body, self.api_key_env = app, max_body, api_key_env

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        state = scope.setdefault("state", {})
        state["rid"] = rid = uuid.uuid4().hex[:12]
        state["log"] = entry = {}
        start, status = time.perf_counter(), [0]

        async def send_logged(message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
                message.setdefault("headers", []).append((b"x-request-id", rid.encode()))
            await send(message)

        try:
            await self._handle(scope, receive, send_logged)
        finally:  # after the last byte, or when the client left mid-answer
            _log_line(scope, rid, status[0], time.perf_counter() - start, entry)

    async def _handle(self, scope, receive, send_logged) -> None:
        refusal = self._refusal(scope)
        if refusal is not None:
            response = _error_response(refusal)
            await response(scope, receive, send_logged)
            return
        if scope["method"] in ("POST", "PUT", "PATCH"):
            # read the body here, bounded: past the limit the rest is read and dropped (answering
            # before the client has sent it all would break its connection instead of telling it why)
            chunks, size, more = [], 0, True
            while more:
                message = await receive()
                if message["type"] != "http.request":
                    return  # the client left before sending its body
                size += len(message.get("body", b""))
                if size <= self.max_body:
                    chunks.append(message.get("body", b""))
                more = message.get("more_body", False)
            if size > self.max_body:
                too_large = ChatError(413, f"request body over {self.max_body / 1e6:g} MB", code="request_too_large")
                await _error_response(too_large)(scope, receive, send_logged)
                return
            replay = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

            async def receive_replayed():
                return replay.pop() if replay else await receive()

            await self.app(scope, receive_replayed, send_logged)
            return
        await self.app(scope, receive, send_logged)

    def _refusal(self, scope) -> ChatError | None:
        headers = dict(scope.get("headers") or [])
        key = os.environ.get(self.api_key_env)
        if key and scope["path"].startswith("/v1"):
            given = headers.get(b"authorization", b"").decode("latin-1")
            if not secrets.compare_digest(given.encode(), f"Bearer {key}".encode()):
                return ChatError(
                    401,
                    f"missing or wrong API key: send 'Authorization: Bearer <key>' (the server's {self.api_key_env})",
                    code="invalid_api_key",
                )
        return None


def _log_line(scope, rid: str, status: int, seconds: float, entry: dict[str, Any]) -> None:
    timings = entry.get("timings") or {}
    fields = {
        "id": rid,
        "method": scope["method"],
        "path": scope["path"],
        "status": status,
        "model": entry.get("model", "-"),
        "tokens_in": entry.get("tokens_in", "-"),
        "tokens_out": entry.get("tokens_out", "-"),
        "t_ve_s": timings.get("t_ve_s", "-"),
        "prompt_tps": timings.get("s_prompt_tps", "-"),
        "gen_tps": timings.get("s_gen_tps", "-"),
        "finish": entry.get("finish", "-"),
        "seconds": round(seconds, 4),
    }
    log.info(" ".join(f"{k}={v}" for k, v in fields.items()))


def create_app(config: ChatConfig, catalog: Catalog) -> FastAPI:
    limits = config.limits
    ChatCompletionRequest = request_models(limits)
    pool = engine.ModelPool(budget_bytes=int(config.memory_budget_mb * 1e6), n_ctx=config.n_ctx, threads=config.threads)
    gate: Gate | None = None
    executor = ThreadPoolExecutor(max_workers=config.slots, thread_name_prefix="impchat")

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        nonlocal gate
        gate = Gate(config.slots, config.queue, config.retry_after_s)
        yield
        executor.shutdown(wait=True, cancel_futures=True)
        pool.close()

    app = FastAPI(
        title="ImpChat",
        version="1",
        description="OpenAI-compatible chat with the releases the registry lists (offline, on this machine).",
        lifespan=lifespan,
        docs_url=None,  # Swagger UI and ReDoc load their scripts from a CDN: nothing to show offline
        redoc_url=None,
    )
    counts: dict[str, int] = {}  # answers by how they ended: stop, length, cancelled, timeout
    app.state.pool, app.state.catalog = pool, catalog

    @app.exception_handler(ChatError)
    async def chat_error(request: Request, exc: ChatError) -> JSONResponse:
        return _error_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return _error_response(ChatError(exc.status_code, str(exc.detail), headers=dict(exc.headers or {})))

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        message, param = _validation_message(exc)
        return _error_response(ChatError(400, message, param=param, code="invalid_request"))

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page() -> HTMLResponse:
        html = resources.files("impkit.chat").joinpath("page.html").read_text(encoding="utf-8")
        return HTMLResponse(html.replace("__API_KEY_ENV__", config.api_key_env))

    @app.get("/health", summary="Liveness, loaded models, queue")
    async def health() -> dict[str, Any]:
        return {
            "status": "ok",
            "loaded": list(pool.loaded),
            "loaded_mb": round(pool.loaded_bytes / 1e6, 2),
            "unloads": pool.unloads,
            "running": gate.running if gate else 0,
            "waiting": gate.waiting if gate else 0,
            "answers": counts,
            "key_required": bool(os.environ.get(config.api_key_env)),
        }

    @app.get("/v1/models", summary="The releases and levels this server answers with")
    async def models() -> dict[str, Any]:
        data = []
        for name in catalog.names():
            e = catalog.entries[name]
            data.append(
                {
                    "id": e.id,
                    "object": "model",
                    "created": _epoch(e.created),
                    "owned_by": "impkit",
                    "impkit": {
                        "alias": e.alias or None,
                        "release_id": e.release_id,
                        "preset": e.preset,
                        "level": e.level,
                        **e.info,
                    },
                }
            )
        return {"object": "list", "data": data}

    @app.post("/v1/chat/completions", summary="OpenAI chat completion (text and one data-URI image)")
    async def chat_completions(body: ChatCompletionRequest, request: Request):  # type: ignore[valid-type]
        entry = catalog.resolve(body.model)
        log_entry = request.state.log
        if entry is None:
            raise ChatError(
                404, f"unknown model '{body.model}'; GET /v1/models lists them", param="model", code="model_not_found"
            )
        log_entry["model"] = entry.id
        chat = _chat_request(body, limits)
        chat.deadline = time.monotonic() + config.request_timeout_s
        assert gate is not None
        return await _answer(request, entry, chat, body, log_entry)

    async def _answer(request: Request, entry: CatalogEntry, chat: engine.Request, body, log_entry) -> Any:
        loop = asyncio.get_running_loop()
        events: asyncio.Queue = asyncio.Queue()

        def put(kind: str, value: Any) -> None:
            loop.call_soon_threadsafe(events.put_nowait, (kind, value))

        def work() -> None:
            model = None
            try:
                if chat.cancel.is_set():  # the client left while waiting: load nothing for it
                    counts["cancelled"] = counts.get("cancelled", 0) + 1
                    put("done", engine.Result("", "cancelled", engine.Timings()))
                    return
                model = pool.acquire(entry, config.retry_after_s)
                result = model.generate(chat, lambda n: put("ready", n), lambda text: put("text", text))
                counts[result.finish_reason] = counts.get(result.finish_reason, 0) + 1
                put("done", result)
            except BaseException as exc:  # handed to the request; the worker thread lives on
                put("error", exc)
            finally:
                if model is not None:
                    pool.release(model)

        watcher = asyncio.create_task(_watch_disconnect(request, chat.cancel))
        try:
            await gate.enter(entry.id, chat.deadline)
        except BaseException:
            watcher.cancel()
            raise
        future = loop.run_in_executor(executor, work)
        future.add_done_callback(lambda _: gate.leave(entry.id))
        try:
            kind, value = await _next_event(events)
        except BaseException:
            watcher.cancel()
            chat.cancel.set()
            raise
        if kind == "error":
            watcher.cancel()
            _raise(value, log_entry)
        cid, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())
        if not body.stream:
            try:
                while kind != "done":  # the pieces add up to the answer, which "done" carries
                    kind, value = await _next_event(events)
                    if kind == "error":
                        _raise(value, log_entry)
            finally:
                watcher.cancel()
                chat.cancel.set()  # a no-op after a finished answer; stops the worker on any way out
            result: engine.Result = value
            _note(log_entry, result)
            if result.finish_reason == "timeout":
                raise ChatError(504, f"the answer took longer than {config.request_timeout_s:g} s", code="timeout")
            return {
                "id": cid,
                "object": "chat.completion",
                "created": created,
                "model": entry.id,
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": result.text},
                        "finish_reason": _finish(result.finish_reason),
                    }
                ],
                "usage": _usage(result.timings),
                "timings": result.timings.as_dict(),
            }
        watcher.cancel()
        include_usage = bool(body.stream_options and body.stream_options.include_usage)

        def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> str:
            payload = {
                "id": cid,
                "object": "chat.completion.chunk",
                "created": created,
                "model": entry.id,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
                **extra,
            }
            return f"data: {json.dumps(payload)}\n\n"

        first = (kind, value) if kind == "done" else None  # cancelled before its prompt was read

        async def sse() -> AsyncIterator[str]:
            pending = first
            try:
                yield chunk({"role": "assistant", "content": ""})
                while True:
                    kind, value = pending or await _next_event(events)
                    pending = None
                    if kind == "text":
                        yield chunk({"content": value})
                    elif kind == "error":
                        if not isinstance(value, ChatError):
                            log.error("request failed mid-answer", exc_info=value)
                        error = value if isinstance(value, ChatError) else ChatError(500, "internal error")
                        log_entry["finish"] = "error"
                        yield f"data: {json.dumps(error.body())}\n\n"
                        break
                    else:
                        result = value
                        _note(log_entry, result)
                        if result.finish_reason == "timeout":
                            error = ChatError(504, f"the answer took longer than {config.request_timeout_s:g} s")
                            yield f"data: {json.dumps(error.body())}\n\n"
                            break
                        yield chunk({}, _finish(result.finish_reason), timings=result.timings.as_dict())
                        if include_usage:
                            payload = {
                                "id": cid,
                                "object": "chat.completion.chunk",
                                "created": created,
                                "model": entry.id,
                                "choices": [],
                                "usage": _usage(result.timings),
                            }
                            yield f"data: {json.dumps(payload)}\n\n"
                        break
                yield "data: [DONE]\n\n"
            finally:  # the client left, or the answer ended: either way the worker stops
                chat.cancel.set()
                if "finish" not in log_entry:
                    log_entry["finish"] = "disconnected"

        return StreamingResponse(sse(), media_type="text/event-stream", headers={"Cache-Control": "no-cache"})

    return app


async def _next_event(events: asyncio.Queue) -> tuple[str, Any]:
    return await events.get()


async def _watch_disconnect(request: Request, cancel: threading.Event) -> None:
    """Until cancelled: wait for the client to go away, then tell the worker to stop."""
    while True:
        message = await request.receive()
        if message["type"] == "http.disconnect":
            cancel.set()
            return


def _raise(exc: BaseException, log_entry: dict[str, Any]) -> None:
    log_entry["finish"] = "error"
    if isinstance(exc, ChatError):
        raise exc
    log.exception("request failed", exc_info=exc)
    raise ChatError(500, f"the model failed: {type(exc).__name__}: {exc}", code="internal_error")


def _note(log_entry: dict[str, Any], result: engine.Result) -> None:
    log_entry.update(
        tokens_in=result.timings.prompt_tokens,
        tokens_out=result.timings.completion_tokens,
        timings=result.timings.as_dict(),
        finish=result.finish_reason,
    )


def _finish(reason: str) -> str:
    return "length" if reason in ("length", "timeout") else "stop"


def _usage(t: engine.Timings) -> dict[str, int]:
    return {
        "prompt_tokens": t.prompt_tokens,
        "completion_tokens": t.completion_tokens,
        "total_tokens": t.prompt_tokens + t.completion_tokens,
    }


def _epoch(created: str) -> int:
    from datetime import datetime

    try:
        return int(datetime.fromisoformat(created).timestamp())
    except ValueError:
        return 0


def _text_of(content: Any, where: str, images: list, limits: ChatLimits) -> str:
    """A message's text; its image parts are decoded into ``images``."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    texts = []
    for i, part in enumerate(content):
        if part.type == "text":
            texts.append(part.text)
        else:
            if len(images) >= limits.max_images:
                raise ChatError(
                    400,
                    f"at most {limits.max_images} image(s) per conversation",
                    param=f"{where}.content.{i}",
                    code="too_many_images",
                )
            images.append((where, decode_data_uri(part.image_url.url, limits, f"{where}.content.{i}.image_url.url")))
    return "\n".join(texts)


def _chat_request(body: Any, limits: ChatLimits) -> engine.Request:
    """The OpenAI messages as the engine's turns: system messages first, then user and assistant
    turns alternating and ending with the user; the image, if any, in the first user message."""
    images: list = []
    system: list[str] = []
    turns: list[tuple[str, str]] = []
    for i, message in enumerate(body.messages):
        where = f"messages.{i}"
        text = _text_of(message.content, where, images, limits)
        for marker in ("<image>", "<__media__>"):
            if marker in text and message.role == "assistant":
                # an earlier answer may hold the placeholder token (an untrained model emits anything);
                # sent back, it would read as a second image
                text = text.replace(marker, "")
            elif marker in text:
                raise ChatError(400, f"{where}: the text may not contain {marker}; send images as image_url parts")
        try:
            text.encode("utf-8")
        except UnicodeEncodeError:
            raise ChatError(400, f"{where}: the text is not valid Unicode", param=where) from None
        if message.role == "system":
            if turns:
                raise ChatError(400, f"{where}: system messages come before the conversation", param=where)
            system.append(text)
        elif message.role == "user" and turns and turns[-1][0] == "user":
            turns[-1] = ("user", f"{turns[-1][1]}\n{text}")  # consecutive user messages are one turn
        elif message.role == "assistant" and (not turns or turns[-1][0] != "user"):
            raise ChatError(400, f"{where}: an assistant message must follow a user message", param=where)
        else:
            turns.append((message.role, text))
        if images and images[0][0] == where and (message.role != "user" or len(turns) != 1):
            raise ChatError(
                400,
                f"{where}: the image goes in the first user message (these models see one image, "
                "before the first question)",
                param=where,
                code="image_position",
            )
    if not turns or turns[-1][0] != "user":
        raise ChatError(400, "messages must end with a user message", param="messages")
    max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
    stop = [body.stop] if isinstance(body.stop, str) else list(body.stop or [])
    return engine.Request(
        turns=turns,
        image=images[0][1] if images else None,
        system="\n".join(system) if system else None,
        max_tokens=max_tokens,
        default_max_tokens=limits.default_max_tokens,
        temperature=1.0 if body.temperature is None else body.temperature,
        top_p=1.0 if body.top_p is None else body.top_p,
        stop=stop,
        seed=body.seed,
    )


def build_app(config: ChatConfig, *, registry: str = "registry", root: str | None = None) -> FastAPI:
    """The app wrapped in its middleware, over the registry's releases."""
    app = create_app(config, Catalog(registry, root))
    wrapped = _Middleware(app, max_body=int(config.limits.max_request_mb * 1e6), api_key_env=config.api_key_env)
    wrapped.state = app.state  # type: ignore[attr-defined]
    return wrapped  # type: ignore[return-value]


def serve(config: ChatConfig, *, registry: str = "registry", root: str | None = None) -> None:
    """Run the server until Ctrl-C (uvicorn), logging one line per request."""
    import uvicorn

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    app = build_app(config, registry=registry, root=root)
    catalog: Catalog = app.state.catalog
    for reason in catalog.skipped:
        log.warning("not served: %s", reason)
    log.info("serving %d model(s) from %s at http://%s:%d/", len(catalog.entries), registry, config.host, config.port)
    if not catalog.entries:
        log.warning("the registry lists no release with its files on disk: build one with `dvc repro` (or dvc pull)")
    uvicorn.run(app, host=config.host, port=config.port, log_level="warning", access_log=False)

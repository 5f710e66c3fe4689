"""A chat server for the tests: tiny random releases exported to GGUF, a registry that lists them in
a workspace of their own, and `impkit chat` started on loopback over it."""

from __future__ import annotations

import base64
import io
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import yaml
from test_gguf_export import THREADS, make_release

from impkit.export import export_and_quantize
from impkit.registry import Registry
from impkit.registry.record import content_id, folder_files

REPO = Path(__file__).resolve().parents[1]
LEVELS = ("F16", "Q8_0")
# chat settings for the tests: small limits so each one is reachable with small inputs
CHAT = {
    "host": "127.0.0.1",
    "port": 0,  # replaced by a free port
    "slots": 1,
    "queue": 2,
    "memory_budget_mb": 1000,
    "request_timeout_s": 60,
    "retry_after_s": 1,
    "n_ctx": 256,
    "threads": THREADS,
    "api_key_env": "IMPKIT_TEST_CHAT_KEY",
    "limits": {
        "max_request_mb": 1,
        "max_image_mb": 0.2,
        "max_image_pixels": 256 * 256,
        "max_images": 1,
        "image_formats": ["PNG", "JPEG"],
        "max_messages": 8,
        "max_tokens": 200,
        "default_max_tokens": 16,
    },
}


def build_workspace(root: Path, families: tuple[str, ...] = ("qwen2", "phi2")) -> Path:
    """``root`` with releases/, models/gguf/ and registry/ as a build leaves them: one release per
    family (preset ``tiny-<family>``), exported at ``LEVELS``, and a registry record of each with
    the figures the picker shows."""
    registry = Registry(root / "registry")
    for n, family in enumerate(families):
        preset = f"tiny-{family}"
        release = make_release(root / "releases", family)
        gguf = root / "models" / "gguf" / preset
        report = export_and_quantize(release, gguf, levels=LEVELS, threads=THREADS)
        files = folder_files(release)
        sizes = {
            level: {"total": (gguf / f"llm-{level}.gguf").stat().st_size + (gguf / "mmproj-F16.gguf").stat().st_size}
            for level in LEVELS
        }
        record = {
            "id": content_id(preset, files),
            "preset": preset,
            "family": family,
            "created": f"2026-01-0{n + 1}T00:00:00+00:00",
            "benchmarks": {"gguf": {level: {"vqav2": 40.0 + n, "mme": 600.0} for level in LEVELS}},
            "sizes": sizes,
            "latency": {
                f"cpu-llamacpp/{level}": {"t_total_s": {"median": 0.05}, "t_ve_s": {"median": 0.002}}
                for level in LEVELS
            },
            "recommendation": {"cpu-llamacpp": {"level": "Q8_0"}},
            "files": {
                "release": {"folder": str(release.relative_to(root)), "files": files},
                "gguf": {"folder": str(gguf.relative_to(root)), "files": folder_files(gguf)},
            },
            "export": report.get("levels") if isinstance(report, dict) else None,
        }
        registry.add(record)
    return root


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def chat_server(workspace: Path, name: str = "server", key: str | None = None, **chat) -> Iterator[dict]:
    """`impkit chat` over ``workspace`` with ``CHAT`` (``chat`` overrides top-level keys); yields
    {"url", "log"}. The log file holds the server's request lines."""
    settings = {**CHAT, **chat, "port": free_port()}
    params = workspace / f"params-{name}.yaml"
    params.write_text(yaml.safe_dump({"chat": settings}), encoding="utf-8")
    log = workspace / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if k != CHAT["api_key_env"]}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")])
    if key is not None:
        env[CHAT["api_key_env"]] = key
    command = [sys.executable, "-m", "impkit.cli", "chat", "--params", str(params)]
    command += ["--registry", str(workspace / "registry")]
    url = f"http://127.0.0.1:{settings['port']}"
    with open(log, "w", encoding="utf-8") as out:
        process = subprocess.Popen(command, cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                with urllib.request.urlopen(url + "/health", timeout=2) as response:
                    if response.status == 200:
                        break
            except OSError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the chat server did not start:\n{log.read_text()}")
            time.sleep(0.2)
        yield {"url": url, "log": log, "process": process}
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def png_bytes(size=(32, 32), colour=(200, 30, 30), fmt: str = "PNG") -> bytes:
    from PIL import Image, ImageDraw

    image = Image.new("RGB", size, colour)
    ImageDraw.Draw(image).rectangle((size[0] // 4, size[1] // 4, size[0] // 2, size[1] // 2), fill=(20, 40, 220))
    buffer = io.BytesIO()
    image.save(buffer, fmt)
    return buffer.getvalue()


def data_uri(data: bytes, mime: str = "image/png") -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def post(url: str, body: bytes | dict, headers: dict | None = None, timeout: float = 30) -> tuple[int, dict, dict]:
    """(status, JSON body, headers) of a POST, whatever the status."""
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    request = urllib.request.Request(url, data=data, headers={"Content-Type": "application/json", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read() or b"{}"), {k.lower(): v for k, v in error.headers.items()}

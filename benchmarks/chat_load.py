"""Benchmark: ImpChat under load on loopback — many clients at once against one release and level.

    .venv/bin/python benchmarks/chat_load.py [--registry registry] [--model nano-3b:Q4_K_M]
        [--clients 16] [--requests 5] [--max-tokens 32] [--params params.yaml] [--time-limit 300]

Starts `impkit chat` (params.yaml's `chat:` section: slots, queue, timeout) as its own process, warms
the model with one request, then runs ``--clients`` asyncio clients that each send ``--requests``
chat completions (an image and a question, temperature 0) one after another. A 429 or 503 is
counted and retried after its Retry-After, as a well-behaved client does; every other status counts
as the request's outcome. Reports: the number of 5xx (target 0), the share of attempts answered
429/503, p50/p95 latency of the answered requests (end to end, waits for Retry-After included),
aggregate completion tokens/s over the wall time, and the server's resident memory after start,
after the warm-up and at the end (target: flat). Bounded: clients x requests answers, and the
whole run stops at ``--time-limit`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import httpx
import psutil
import yaml
from PIL import Image, ImageDraw

REPO = Path(__file__).resolve().parents[1]


def image_uri(seed: int) -> str:
    image = Image.new("RGB", (64, 64), (240, 240, 240))
    draw = ImageDraw.Draw(image)
    colours = [(200, 30, 30), (30, 160, 40), (30, 60, 220), (230, 200, 20)]
    draw.rectangle((8 + seed % 16, 10, 30 + seed % 16, 34), fill=colours[seed % 4])
    draw.ellipse((36, 30, 58, 52), fill=colours[(seed + 1) % 4])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


QUESTIONS = ["What colour is the square?", "How many objects are there?", "Describe the image briefly."]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def rss_mb(pid: int) -> float:
    return round(psutil.Process(pid).memory_info().rss / 2**20, 1)


async def client(n: int, http: httpx.AsyncClient, args, stats: dict, deadline: float) -> None:
    for i in range(args.requests):
        body = {
            "model": args.model,
            "messages": [
                {
                    "role": "user",
                    "content": [
                        {"type": "image_url", "image_url": {"url": image_uri(n * args.requests + i)}},
                        {"type": "text", "text": QUESTIONS[(n + i) % len(QUESTIONS)]},
                    ],
                }
            ],
            "temperature": 0,
            "max_tokens": args.max_tokens,
        }
        start = time.perf_counter()
        while time.monotonic() < deadline:
            response = await http.post("/v1/chat/completions", json=body)
            stats["attempts"] += 1
            if response.status_code in (429, 503):
                stats[str(response.status_code)] += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
                continue
            stats["status"][response.status_code] = stats["status"].get(response.status_code, 0) + 1
            if response.status_code == 200:
                stats["latency"].append(time.perf_counter() - start)
                stats["tokens"] += response.json()["usage"]["completion_tokens"]
            break


async def run_clients(url: str, args) -> dict:
    stats = {"attempts": 0, "429": 0, "503": 0, "status": {}, "latency": [], "tokens": 0}
    deadline = time.monotonic() + args.time_limit
    limits = httpx.Limits(max_connections=args.clients + 4)
    async with httpx.AsyncClient(base_url=url, timeout=args.time_limit, limits=limits) as http:
        start = time.perf_counter()
        await asyncio.gather(*(client(n, http, args, stats, deadline) for n in range(args.clients)))
        stats["wall_s"] = time.perf_counter() - start
    return stats


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    return round(statistics.quantiles(values, n=100, method="inclusive")[q - 1], 3) if len(values) > 1 else values[0]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--registry", default="registry")
    parser.add_argument("--root", help="the workspace the records' folders are relative to (default: its parent)")
    parser.add_argument("--params", default=str(REPO / "params.yaml"), help="its chat: section")
    parser.add_argument("--model", default="nano-3b:Q4_K_M")
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--requests", type=int, default=5)
    parser.add_argument("--max-tokens", type=int, default=32)
    parser.add_argument("--time-limit", type=float, default=300)
    args = parser.parse_args()

    chat = yaml.safe_load(Path(args.params).read_text(encoding="utf-8"))["chat"]
    chat["port"] = free_port()
    with tempfile.TemporaryDirectory() as tmp:
        params = Path(tmp) / "params.yaml"
        params.write_text(yaml.safe_dump({"chat": chat}), encoding="utf-8")
        command = [sys.executable, "-m", "impkit.cli", "chat", "--params", str(params), "--registry", args.registry]
        if args.root:
            command += ["--root", args.root]
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
        env.pop(chat["api_key_env"], None)
        log = Path(tmp) / "server.log"
        with open(log, "w") as out:
            server = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{chat['port']}"
        try:
            for _ in range(300):
                try:
                    urllib.request.urlopen(url + "/health", timeout=1)
                    break
                except OSError:
                    if server.poll() is not None:
                        sys.exit(f"the server did not start:\n{log.read_text()}")
                    time.sleep(0.2)
            rss_start = rss_mb(server.pid)
            warm = httpx.post(
                url + "/v1/chat/completions",
                json={"model": args.model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 4},
                timeout=120,
            )
            warm.raise_for_status()
            rss_warm = rss_mb(server.pid)
            stats = asyncio.run(run_clients(url, args))
            rss_end = rss_mb(server.pid)
            lines = sum(1 for line in log.read_text().splitlines() if "path=/v1/chat/completions" in line)
        finally:
            server.terminate()
            server.wait(timeout=30)
    answered = len(stats["latency"])
    fivexx = sum(n for code, n in stats["status"].items() if code >= 500)
    report = {
        "model": args.model,
        "clients": args.clients,
        "requests_per_client": args.requests,
        "max_tokens": args.max_tokens,
        "slots": chat["slots"],
        "queue": chat["queue"],
        "answered": answered,
        "attempts": stats["attempts"],
        "status": {str(k): v for k, v in sorted(stats["status"].items())},
        "5xx": fivexx,
        "429": stats["429"],
        "503": stats["503"],
        "share_429_503": round((stats["429"] + stats["503"]) / max(stats["attempts"], 1), 3),
        "p50_s": percentile(stats["latency"], 50),
        "p95_s": percentile(stats["latency"], 95),
        "tokens_per_s": round(stats["tokens"] / stats["wall_s"], 1),
        "requests_per_s": round(answered / stats["wall_s"], 2),
        "wall_s": round(stats["wall_s"], 1),
        "rss_mb": {"start": rss_start, "after_warmup": rss_warm, "end": rss_end},
        "log_lines": lines,
    }
    print(json.dumps(report, indent=2))
    if fivexx:
        sys.exit("5xx answers under load")


if __name__ == "__main__":
    main()

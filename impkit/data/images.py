"""Image checks (exists, decodes, RGB-convertible, size) cached by content hash, and the image store.

Decoding is the slow part of checking a million-image mixture, so results are cached in SQLite by
the SHA-256 of the file's bytes: an unchanged image is hashed again on the next run but never
decoded again. Hashing and decoding run in a process pool so both cores work.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import os
import shutil
import sqlite3
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

# PIL refuses "decompression bombs" with a warning; real datasets have none this large.
Image.MAX_IMAGE_PIXELS = 200_000_000


@dataclass(frozen=True)
class ImageFacts:
    status: str  # ok | missing | unreadable | undecodable
    sha256: str | None = None
    width: int | None = None
    height: int | None = None
    error: str | None = None


def hash_file(path: str) -> tuple[str, str | None, str | None]:
    """(path, sha256 or None, error). Runs in worker processes."""
    try:
        digest = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                digest.update(block)
        return path, digest.hexdigest(), None
    except FileNotFoundError:
        return path, None, "missing"
    except OSError as exc:
        return path, None, f"unreadable: {exc.strerror}"


def decode_file(path: str) -> tuple[str, str, int | None, int | None, str | None]:
    """(path, status, width, height, error): fully decode and convert to RGB as training will."""
    try:
        with Image.open(path) as img:
            img.load()
            rgb = img.convert("RGB")
            return path, "ok", rgb.width, rgb.height, None
    except Exception as exc:  # PIL raises many types for corrupt files; all mean "cannot use it"
        return path, "undecodable", None, None, f"{type(exc).__name__}: {exc}"


class ImageChecker:
    """Check images by path; decode results are cached by content hash across runs."""

    def __init__(self, cache_path: str | Path, workers: int = 2, memo_size: int = 200_000):
        self.cache_path = Path(cache_path)
        self.cache_path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.cache_path)
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS image_facts (sha256 TEXT PRIMARY KEY, status TEXT, "
            "width INTEGER, height INTEGER, error TEXT)"
        )
        self._pool = multiprocessing.get_context("fork").Pool(workers) if workers > 1 else None
        self._memo: OrderedDict[str, ImageFacts] = OrderedDict()  # path -> facts, within one run
        self._memo_size = memo_size
        self.hashed = 0
        self.decoded = 0
        self.cache_hits = 0

    def _map(self, fn, items: list[str]):
        if self._pool is None or len(items) < 8:
            return list(map(fn, items))
        return self._pool.map(fn, items, chunksize=max(1, min(256, len(items) // 8)))

    def check(self, paths: Iterable[str]) -> dict[str, ImageFacts]:
        wanted = list(dict.fromkeys(paths))
        result = {p: self._memo[p] for p in wanted if p in self._memo}
        todo = [p for p in wanted if p not in result]
        if todo:
            hashed = self._map(hash_file, todo)
            self.hashed += len(todo)
            shas = {path: sha for path, sha, _ in hashed if sha}
            cached = self._lookup(set(shas.values()))
            to_decode = []
            for path, sha, error in hashed:
                if sha is None:
                    status = "missing" if error == "missing" else "unreadable"
                    result[path] = ImageFacts(status, error=error)
                elif sha in cached:
                    self.cache_hits += 1
                    status, width, height, err = cached[sha]
                    result[path] = ImageFacts(status, sha, width, height, err)
                else:
                    to_decode.append(path)
            fresh = []
            for path, status, width, height, err in self._map(decode_file, to_decode):
                result[path] = ImageFacts(status, shas[path], width, height, err)
                fresh.append((shas[path], status, width, height, err))
            self.decoded += len(to_decode)
            if fresh:
                with self._db:
                    self._db.executemany("INSERT OR REPLACE INTO image_facts VALUES (?,?,?,?,?)", fresh)
            for path in todo:
                self._remember(path, result[path])
        return result

    def _lookup(self, shas: set[str]) -> dict[str, tuple]:
        found: dict[str, tuple] = {}
        shas_list = list(shas)
        for start in range(0, len(shas_list), 900):  # SQLite caps bound parameters per statement
            batch = shas_list[start : start + 900]
            rows = self._db.execute(
                f"SELECT sha256, status, width, height, error FROM image_facts WHERE sha256 IN ({','.join('?' * len(batch))})",
                batch,
            )
            for sha, *facts in rows:
                found[sha] = tuple(facts)
        return found

    def _remember(self, path: str, facts: ImageFacts) -> None:
        self._memo[path] = facts
        if len(self._memo) > self._memo_size:
            self._memo.popitem(last=False)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.close()
            self._pool.join()
            self._pool = None
        self._db.close()

    def __enter__(self) -> ImageChecker:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class ImageStore:
    """Content-addressed image folder: ``<sha[:2]>/<sha><ext>``; shared images are stored once.

    ``copy`` makes the assembled data self-contained (the default, small synthetic images);
    ``hardlink``/``symlink`` avoid duplicating hundreds of GB of real images.
    """

    def __init__(self, root: str | Path, mode: str = "copy"):
        self.root = Path(root)
        self.mode = mode
        self.added = 0
        self._stored: set[str] = set()  # saves a file-system lookup per record for shared images

    @staticmethod
    def plan(src: str, sha256: str) -> str:
        """The path (relative to the store) ``put`` will give this image, without storing it."""
        return f"{sha256[:2]}/{sha256}{os.path.splitext(src)[1].lower()}"

    def put(self, src: str, sha256: str) -> str:
        rel = self.plan(src, sha256)
        if rel in self._stored:
            return rel
        self._stored.add(rel)
        dst = self.root / rel
        if not dst.exists():
            dst.parent.mkdir(parents=True, exist_ok=True)
            tmp = dst.with_name(f".{dst.name}.tmp")
            if self.mode == "symlink":
                os.symlink(os.path.abspath(src), tmp)
            elif self.mode == "hardlink":
                try:
                    os.link(src, tmp)
                except OSError:  # across file systems: fall back to a copy
                    shutil.copyfile(src, tmp)
            else:
                shutil.copyfile(src, tmp)
            os.replace(tmp, dst)
            self.added += 1
        return rel

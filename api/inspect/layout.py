"""What a repo's files say about the model (config.json, the architecture, its GGUF variants),
read through a reader: the Hub's (HubReader) for an inspection, the cache's (CacheReader) for a
switch, which must not call the Hub. Both readers answer `small(path)` and `range(path, start, end)`."""
from __future__ import annotations

import json
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Protocol

from .classify import format_of, kind_of, precision_of
from .fit import Architecture, from_config, from_gguf
from .gguf_meta import FIRST_READ, Variant, group_variants, read_header
from .hubread import MAX_SMALL_FILE


class Reader(Protocol):
    def small(self, path: str) -> bytes: ...

    def range(self, path: str, start: int, end: int) -> bytes: ...


def file_row(path: str, size: int) -> dict:
    return {"path": path, "kind": kind_of(path), "format": format_of(path), "precision": precision_of(path),
            "size": size}


def read_layout(reader: Reader, files: list[dict]) -> tuple[dict | None, Architecture | None, list[Variant]]:
    """config.json, the architecture (config.json, else the first GGUF header) and the GGUF
    variants with their headers read; the files' precision is corrected from those headers."""
    config, arch = None, None
    if any(f["path"] == "config.json" for f in files):
        try:
            config = json.loads(reader.small("config.json"))
            arch = from_config(config) if isinstance(config, dict) else None
        except ValueError:
            config = None
    variants = group_variants([(f["path"], f["size"]) for f in files if f["format"] == "gguf"])
    read_headers(reader, variants)
    quant = {p: v.to_json()["quantization"] for v in variants for p in v.files}
    for f in files:
        if f["path"] in quant:
            f["precision"] = precision_of(f["path"], quant[f["path"]])
    if arch is None and variants and variants[0].header and "error" not in variants[0].header:
        arch = from_gguf(variants[0].header)
    return config, arch, variants


def read_headers(reader: Reader, variants: list[Variant]) -> None:
    """The first header grows until complete; the others start at its size (one read each)."""
    if not variants:
        return

    def one(v: Variant, first: int) -> None:
        path = v.files[0]
        try:
            v.header = read_header(lambda s, e: reader.range(path, s, e), v.extra["first_size"], first)
        except ValueError as e:    # not GGUF after all: the name is all there is
            v.header = {"error": "unreadable_header", "detail": str(e)[:300]}

    one(variants[0], FIRST_READ)
    known = variants[0].header.get("bytes_read") or FIRST_READ
    with ThreadPoolExecutor(4, thread_name_prefix="gguf-header") as pool:
        list(pool.map(lambda v: one(v, known), variants[1:]))


class CacheReader:
    """A snapshot folder of the cache (`snapshots/<commit>`, whose entries link to blobs)."""

    def __init__(self, snapshot: Path):
        self.snapshot = snapshot

    def files(self) -> list[tuple[str, int]]:
        """(path inside the repo, size) of every file; links are followed to their blob, and only
        links that stay in the repo's folder are read (the cache is shared with vLLM)."""
        repo = os.path.realpath(self.snapshot.parent.parent)
        out = []
        for root, _, names in os.walk(self.snapshot):
            for name in names:
                full = os.path.join(root, name)
                real = os.path.realpath(full)
                if os.path.commonpath([repo, real]) == repo and os.path.isfile(real):
                    out.append((Path(full).relative_to(self.snapshot).as_posix(), os.path.getsize(real)))
        return sorted(out)

    def range(self, path: str, start: int, end: int) -> bytes:
        if end <= start:
            return b""
        with open(self.snapshot / path, "rb") as f:
            f.seek(start)
            return f.read(end - start)

    def small(self, path: str) -> bytes:
        return self.range(path, 0, MAX_SMALL_FILE)

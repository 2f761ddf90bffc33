"""GGUF repos: files grouped into quantisation variants, and headers read by ranged requests.

A variant is one model file, or the parts `-00001-of-0000N` of one split model. Its quantisation
is read from the first part's header (`general.file_type`); the name is only the fallback.
"""
from __future__ import annotations

import posixpath
import re
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Callable

import numpy as np
from gguf import GGUF_DEFAULT_ALIGNMENT, GGUF_MAGIC, GGUFReader, LlamaFileType

_SPLIT = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT = re.compile(r"(?:^|[-_.])((?:UD-)?(?:I?Q\d(?:_[0-9A-Z]+)*|BF16|F16|F32|FP16|FP32|MXFP4(?:_MOE)?|TQ\d_\d))"
                    r"(?=$|[-_.])", re.IGNORECASE)
FIRST_READ = 256 << 10        # general.* and the architecture keys precede the vocabulary; grown x4 when not
MAX_HEADER = 64 << 20         # a header this large is not one we parse
ARCH_KEYS = ("context_length", "block_count", "embedding_length", "attention.head_count",
             "attention.head_count_kv", "attention.key_length")


@dataclass
class Variant:
    name: str
    stem: str
    files: list[str]
    size: int
    include: str
    quant_from_name: str | None
    header: dict | None = None
    extra: dict = field(default_factory=dict)

    def to_json(self) -> dict:
        quant = (self.header or {}).get("quantization") or self.quant_from_name
        return {"name": self.name, "quantization": quant,
                "quantization_source": "header" if (self.header or {}).get("quantization") else
                ("file_name" if self.quant_from_name else None),
                "files": self.files, "parts": len(self.files), "size": self.size, "include": self.include,
                "header": self.header}


def quant_in_name(name: str) -> str | None:
    found = _QUANT.findall(posixpath.basename(name)[: -len(".gguf")] if name.lower().endswith(".gguf") else name)
    return found[-1].upper() if found else None


def group_variants(files: list[tuple[str, int]]) -> list[Variant]:
    """(path, size) of every .gguf file -> variants, smallest first; vision projectors left out."""
    groups: OrderedDict[str, list[tuple[str, int, int]]] = OrderedDict()
    for path, size in sorted(files):
        if not path.lower().endswith(".gguf") or posixpath.basename(path).lower().startswith("mmproj"):
            continue
        m = _SPLIT.search(path)
        stem = path[: m.start()] if m else path[: -len(".gguf")]
        groups.setdefault(stem, []).append((path, size, int(m.group(2)) if m else 1))
    variants = []
    for stem, parts in groups.items():
        paths = [p for p, _, _ in parts]
        count = parts[0][2]
        include = paths[0] if count == 1 and len(paths) == 1 else f"{stem}-*-of-{count:05d}.gguf"
        variants.append(Variant(stem, stem, paths, sum(s for _, s, _ in parts), include, quant_in_name(stem),
                                extra={"first_size": parts[0][1]}))
    quants = [v.quant_from_name for v in variants]
    for v in variants:
        if v.quant_from_name and quants.count(v.quant_from_name) == 1:
            v.name = v.quant_from_name
        else:
            v.name = posixpath.basename(v.stem)
    return sorted(variants, key=lambda v: (v.size, v.name))


class _HeaderReader(GGUFReader):
    """GGUFReader's field parser over the bytes read so far; stops cleanly at their end."""

    def __init__(self, data: bytes):  # noqa: super().__init__ memory-maps a whole file
        self.data = np.frombuffer(data, dtype=np.uint8)
        self.byte_order = "I"
        self.alignment = GGUF_DEFAULT_ALIGNMENT
        self.fields = OrderedDict()
        self.tensors = []
        self.complete = False
        if len(data) < 24:
            return
        if self._get(0, np.uint32, override_order="<")[0] != GGUF_MAGIC:
            raise ValueError("not a GGUF file (bad magic)")
        version = self._get(4, np.uint32)
        if version[0] & 0xFFFF == 0:
            self.byte_order = "S"
        tensor_count, kv_count = (int(x) for x in self._get(8, np.uint64, 2))
        offs = 24
        for _ in range(kv_count):
            try:
                end = self._build_fields(offs, 1)
            except (IndexError, ValueError, KeyError, UnicodeDecodeError):
                return
            if end > len(self.data):
                self.fields.popitem()
                return
            offs = end
        self.complete = True
        self.tensor_count = tensor_count

    def value(self, key: str):
        f = self.fields.get(key)
        if f is None:
            return None
        v = f.contents()
        return v.tolist() if isinstance(v, np.ndarray) else v


def _summarise(r: _HeaderReader, read: int) -> dict:
    arch = r.value("general.architecture")
    out: dict = {"architecture": arch, "name": r.value("general.name"), "bytes_read": read,
                 "complete": r.complete}
    for key in ARCH_KEYS:
        out[key.replace("attention.", "")] = r.value(f"{arch}.{key}") if arch else None
    ftype = r.value("general.file_type")
    if isinstance(ftype, int):
        try:
            out["quantization"] = LlamaFileType(ftype).name.removeprefix("MOSTLY_").removeprefix("ALL_")
        except ValueError:
            out["quantization"] = f"file_type_{ftype}"
    else:
        out["quantization"] = None
    out["split_count"] = r.value("split.count")
    return out


def _has_all(r: _HeaderReader) -> bool:
    arch = r.value("general.architecture")
    return bool(arch) and r.value("general.file_type") is not None and \
        all(f"{arch}.{k}" in r.fields for k in ("context_length", "block_count", "attention.head_count"))


def read_header(fetch: Callable[[int, int], bytes], size: int, first: int = FIRST_READ) -> dict:
    """fetch(start, end_exclusive) -> bytes. Reads more (appending) until the keys needed are in."""
    data = b""
    want = min(size, max(first, 64))
    while True:
        data += fetch(len(data), want)
        r = _HeaderReader(data)
        if r.complete or _has_all(r) or len(data) >= size or want >= MAX_HEADER:
            return _summarise(r, len(data))
        want = min(size, want * 4, MAX_HEADER)

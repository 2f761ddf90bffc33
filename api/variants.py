"""Which GGUF variant of a cached repo a switch may serve: vLLM loads `repo_id:quant_type` from the
cache offline, and only a variant that is one file, completely on disk, and the only file of that
quantisation in the snapshot (vLLM picks the file by its quantisation name) can be served.

The snapshot's `.gguf` files are grouped exactly as `GET /api/inspect` groups the Hub's
(api/inspect/gguf_meta.py), so the names a user sees there are the names a switch accepts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from fnmatch import fnmatch
from pathlib import Path

from .errors import Conflict
from .inspect.gguf_meta import group_variants


@dataclass(frozen=True)
class CachedVariant:
    name: str
    file: str          # the variant's one file, relative to the snapshot
    size: int


def _paths(snapshot: Path) -> list[Path]:
    return [Path(dirpath) / name for dirpath, _, names in os.walk(snapshot) for name in names]


def _gguf_files(snapshot: Path, paths: list[Path] | None = None) -> list[tuple[str, int]]:
    """(relative path, size) of every .gguf entry of the snapshot (of `paths` when the caller
    walked it already); a dangling link has size -1."""
    out = []
    for full in _paths(snapshot) if paths is None else paths:
        if not full.name.lower().endswith(".gguf"):
            continue
        try:
            size = full.stat().st_size
        except OSError:
            size = -1   # a link to a blob that is not (or no longer) there
        out.append((full.relative_to(snapshot).as_posix(), size))
    return out


def downloaded_variant(snapshot: Path | None, include: list[str] | None) -> str | None:
    """The one servable GGUF variant a download's `include` patterns selected, else None (no
    patterns, no GGUF file, several variants, a split one, or a quantisation vLLM could not tell apart)."""
    if not include or snapshot is None or not snapshot.is_dir():
        return None
    variants = group_variants(_gguf_files(snapshot))
    chosen = [v for v in variants if all(any(fnmatch(f, p) for p in include) for f in v.files)]
    if len(chosen) != 1 or len(chosen[0].files) != 1:
        return None
    name = chosen[0].name
    return name if sum(v.quant_from_name == name for v in variants) == 1 else None


def cached_variant(model_id: str, snapshot: Path | None, name: str) -> CachedVariant:
    """The variant `name` of the repo's cached snapshot, or Conflict saying why it cannot be served."""
    files = _gguf_files(snapshot) if snapshot is not None and snapshot.is_dir() else []
    variants = group_variants(files)
    found = next((v for v in variants if v.name == name), None)
    same = [v for v in variants if v.quant_from_name == name]
    if found is None and not same:
        have = ", ".join(v.name for v in variants) or "none"
        raise Conflict(f"{model_id} has no GGUF variant {name} in the cache (cached variants: {have}); download it "
                       f"first (include=*{name}*.gguf).", code="variant_not_downloaded")
    if len(same) != 1 or found is not same[0]:
        # vLLM picks the file by its quantisation name: it must name exactly one cached variant.
        raise Conflict(f"{model_id} holds {len(same)} cached GGUF variants of quantisation {name!r}; vLLM's "
                       f"{model_id}:<quant> could not tell which to load.", code="variant_ambiguous")
    if len(found.files) > 1:
        raise Conflict(f"{model_id}:{name} is split into {len(found.files)} files; vLLM loads only single-file "
                       "GGUF (merge the parts with llama.cpp's gguf-split --merge).", code="variant_multi_file")
    if any(size < 0 for path, size in files if path in found.files):
        raise Conflict(f"{model_id}:{name} is not completely downloaded.", code="variant_not_downloaded")
    return CachedVariant(name, found.files[0], found.size)


_WEIGHTS = (".safetensors", ".bin", ".pt", ".pth")


def require_variant(model_id: str, snapshot: Path | None) -> None:
    """A repo whose cached weights are GGUF files only cannot be served as a whole: vLLM needs
    `repo:quant`. Conflict naming the cached variants; nothing to say for any other repo."""
    if snapshot is None or not snapshot.is_dir():
        return
    paths = _paths(snapshot)   # one walk for both questions
    files = _gguf_files(snapshot, paths)
    if not files or any(p.name.lower().endswith(_WEIGHTS) for p in paths):
        return
    have = ", ".join(v.name for v in group_variants(files))
    raise Conflict(f"{model_id} holds GGUF files only; vLLM serves one variant of it: switch with variant= "
                   f"(cached: {have}).", code="variant_required")


def cached_variant_count(snapshot: Path | None) -> int:
    return len(group_variants(_gguf_files(snapshot))) if snapshot is not None and snapshot.is_dir() else 0

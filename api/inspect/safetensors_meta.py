"""Parameter counts and dtypes of safetensors weights, from their headers only.

huggingface_hub's parse_safetensors_file_metadata reads each header with one or two ranged GETs.
Its get_safetensors_metadata would also do, but it stores the index file in HF_HOME's cache,
which on this box may be the cache vLLM serves: the index is read into memory here instead."""
from __future__ import annotations

import json
import posixpath
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from huggingface_hub import HfApi

from .hubread import HubReader

INDEX = "model.safetensors.index.json"
SINGLE = "model.safetensors"


def weight_files(paths: set[str]) -> tuple[list[str], str | None]:
    """Which .safetensors files are the model (an index names them; consolidated.* copies are not)."""
    if INDEX in paths:
        return [], INDEX
    if SINGLE in paths:
        return [SINGLE], None
    return sorted(p for p in paths if p.endswith(".safetensors") and "/" not in p
                  and not posixpath.basename(p).startswith("consolidated")), None


def shards(paths: set[str], small: Callable[[str], bytes]) -> tuple[list[str], str | None, dict | None]:
    """The weight files among `paths`, the index naming them (read with `small`) and its metadata."""
    files, index = weight_files(paths)
    index_meta = None
    if index:
        doc = json.loads(small(index))
        files = sorted(set(doc.get("weight_map", {}).values()))
        index_meta = doc.get("metadata")
    return [f for f in files if f in paths], index, index_meta


def read(api: HfApi, reader: HubReader, paths: set[str]) -> dict | None:
    files, index, index_meta = shards(paths, reader.small)
    if not files:
        return None

    def one(name: str):
        return name, api.parse_safetensors_file_metadata(reader.repo_id, name, revision=reader.commit,
                                                         timeout=reader.timeout)
    with ThreadPoolExecutor(min(4, len(files)), thread_name_prefix="st-header") as pool:
        metas = dict(pool.map(one, files))
    by_dtype: dict[str, int] = {}
    for meta in metas.values():
        for dtype, n in meta.parameter_count.items():
            by_dtype[dtype] = by_dtype.get(dtype, 0) + n
    return {"files": files, "sharded": index is not None, "index_metadata": index_meta,
            "tensors": sum(len(m.tensors) for m in metas.values()),
            "parameters": sum(by_dtype.values()), "parameters_by_dtype": dict(sorted(by_dtype.items()))}

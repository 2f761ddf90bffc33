"""Does a model fit the GPU, and at what context length? Pure arithmetic, documented in
docs/choosing-a-variant.md:

    required = weights + overhead + kv_bytes_per_token x max_model_len
    kv_bytes_per_token = 2 (K and V) x layers x kv_heads x head_dim x kv dtype bytes
    usable   = floor(GPU memory x GPU_MEMORY_UTILIZATION)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

BLOCK = 16              # vLLM's KV block: a context length is useful in whole blocks
MIN_CONTEXT = 2048      # below this a chat model is not worth serving
_DTYPE_BYTES = {"float32": 4, "float": 4, "float16": 2, "half": 2, "bfloat16": 2, "fp8": 1, "float8": 1,
                "int8": 1}


@dataclass(frozen=True)
class Architecture:
    layers: int
    kv_heads: int          # per layer
    head_dim: int
    dtype_bytes: int       # of the KV cache when KV_CACHE_DTYPE is auto
    context_length: int | None
    source: str            # "config.json" or "gguf"
    model_type: str | None = None
    attention_heads: int | None = None   # tensor parallelism must divide them

    def kv_bytes_per_token(self, dtype_bytes: int | None = None) -> int:
        return 2 * self.layers * self.kv_heads * self.head_dim * (dtype_bytes or self.dtype_bytes)

    def to_json(self) -> dict:
        return {**asdict(self), "kv_bytes_per_token": self.kv_bytes_per_token()}


def _int(v) -> int | None:
    return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None


def from_config(cfg: dict) -> Architecture | None:
    """transformers' config.json; multimodal configs keep the language model in text_config."""
    c = cfg.get("text_config") if isinstance(cfg.get("text_config"), dict) else cfg
    layers = _int(c.get("num_hidden_layers")) or _int(c.get("n_layer")) or _int(c.get("num_layers"))
    heads = _int(c.get("num_attention_heads")) or _int(c.get("n_head"))
    if not layers or not heads:
        return None
    kv = _int(c.get("num_key_value_heads")) or (1 if c.get("multi_query") else heads)
    hidden = _int(c.get("hidden_size")) or _int(c.get("n_embd")) or 0
    head_dim = _int(c.get("head_dim")) or (hidden // heads if hidden else 0)
    if not head_dim:
        return None
    dtype = str(c.get("torch_dtype") or c.get("dtype") or cfg.get("torch_dtype") or "bfloat16")
    ctx = _int(c.get("max_position_embeddings")) or _int(c.get("n_positions")) or _int(c.get("seq_length"))
    return Architecture(layers, kv, head_dim, _DTYPE_BYTES.get(dtype, 2), ctx, "config.json",
                        c.get("model_type") or cfg.get("model_type"), heads)


def from_gguf(h: dict) -> Architecture | None:
    """A summarised GGUF header (gguf_meta._summarise). llama.cpp and vLLM keep its KV cache in f16."""
    layers, heads = _int(h.get("block_count")), _int(h.get("head_count"))
    if not layers or not heads:
        return None
    kv = h.get("head_count_kv")
    if isinstance(kv, list):        # per-layer counts (hybrid models): the largest is the bound
        kv = max([k for k in kv if isinstance(k, int)] or [heads])
    head_dim = _int(h.get("key_length")) or ((h.get("embedding_length") or 0) // heads)
    if not head_dim:
        return None
    return Architecture(layers, _int(kv) or heads, head_dim, 2, _int(h.get("context_length")), "gguf",
                        h.get("architecture"), heads)


@dataclass(frozen=True)
class Gpu:
    total_bytes: int | None
    source: str                 # setting, request, nvml, docker, unknown
    count: int = 0
    detail: str | None = None

    def to_json(self) -> dict:
        return asdict(self)


def plan_fit(weights_bytes: int, arch: Architecture | None, gpu: Gpu, *, utilization: float,
             overhead_bytes: int, kv_dtype_bytes: int | None, max_model_len: int | None,
             tensor_parallel_size: int = 1) -> dict:
    """With tensor parallelism over N GPUs the weights and the KV cache are split N ways and each
    GPU pays the overhead: the same sums with N x the usable memory and N x the overhead."""
    tp = tensor_parallel_size
    overhead_bytes *= tp
    out: dict = {"weights_bytes": weights_bytes, "overhead_bytes": overhead_bytes, "gpu": gpu.to_json(),
                 "gpu_memory_utilization": utilization, "tensor_parallel_size": tp, "usable_bytes": None,
                 "kv_bytes_per_token": None, "max_model_len": None, "kv_cache_bytes": None,
                 "required_bytes": None, "max_model_len_that_fits": None}
    kpt = arch.kv_bytes_per_token(kv_dtype_bytes) if arch else None
    ctx = max_model_len or (arch.context_length if arch else None)
    out.update(kv_bytes_per_token=kpt, max_model_len=ctx)
    if kpt and ctx:
        out["kv_cache_bytes"] = kpt * ctx
        out["required_bytes"] = weights_bytes + overhead_bytes + kpt * ctx
    if gpu.total_bytes is None:
        return {**out, "verdict": "unknown",
                "reason": "GPU memory is unknown: set GPU_MEMORY_GB or pass gpu_memory_gb."}
    usable = int(gpu.total_bytes * utilization) * tp
    out["usable_bytes"] = usable
    room = usable - weights_bytes - overhead_bytes
    if room < 0:
        return {**out, "verdict": "does_not_fit",
                "reason": f"The weights and overhead alone need {weights_bytes + overhead_bytes - usable} "
                          "bytes more than the usable GPU memory."}
    if not kpt or not ctx:
        return {**out, "verdict": "unknown",
                "reason": "The weights fit, but the KV cache size is unknown (no config.json or GGUF header)."}
    if out["required_bytes"] <= usable:
        return {**out, "verdict": "fits", "max_model_len_that_fits": ctx,
                "reason": f"Fits at max_model_len {ctx} with {usable - out['required_bytes']} bytes to spare."}
    largest = room // kpt // BLOCK * BLOCK
    out["max_model_len_that_fits"] = largest
    if largest >= min(MIN_CONTEXT, ctx):
        return {**out, "verdict": "fits_with_max_model_len",
                "reason": f"Fits with max_model_len {largest} (of {ctx}): set MAX_MODEL_LEN={largest}."}
    return {**out, "verdict": "does_not_fit",
            "reason": f"Only {largest} tokens of KV cache fit; at least {min(MIN_CONTEXT, ctx)} are needed."}


def tensor_parallel_size(gpu_count: int, attention_heads: int | None) -> int:
    """The largest power of two up to the GPU count that divides the attention heads (vLLM refuses
    a tensor parallel size that does not divide them); 1 when nothing larger qualifies."""
    tp = 1
    while attention_heads and tp * 2 <= gpu_count and attention_heads % (tp * 2) == 0:
        tp *= 2
    return tp


def disk_verdict(bytes_to_fetch: int, free_bytes: int, reserve_bytes: int, promised_bytes: int = 0) -> dict:
    """The check a download makes before it queues (JobManager.check_disk), as a verdict."""
    available = max(0, free_bytes - reserve_bytes - promised_bytes)
    return {"verdict": "fits" if bytes_to_fetch <= available else "does_not_fit",
            "bytes_to_fetch": bytes_to_fetch, "free_bytes": free_bytes, "reserve_bytes": reserve_bytes,
            "promised_bytes": promised_bytes, "available_bytes": available}

"""Simulator repos that look like real model repos, for inspection and fit tests.

Weights carry real headers (written with the `safetensors` and `gguf` packages; tensor data is
zeros) and the config.json files are the published ones of Qwen2.5-7B-Instruct and
Meta-Llama-3-8B-Instruct. The safetensors tensors are those of a *mini* model (MINI below), so the
repos stay a few MB: tests check parameter counts against MINI, KV-cache sizes against the config.
"""
from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .sim import HubSim

QWEN25 = "llmbox-sim/Qwen2.5-7B-Instruct"
LLAMA3 = "llmbox-sim/Meta-Llama-3-8B-Instruct"
QWEN3_GGUF = "llmbox-sim/Qwen3-8B-GGUF"
MYSTERY_GGUF = "llmbox-sim/mystery-GGUF"

QWEN25_CONFIG = {
    "architectures": ["Qwen2ForCausalLM"], "attention_dropout": 0.0, "bos_token_id": 151643,
    "eos_token_id": 151645, "hidden_act": "silu", "hidden_size": 3584, "initializer_range": 0.02,
    "intermediate_size": 18944, "max_position_embeddings": 32768, "max_window_layers": 28,
    "model_type": "qwen2", "num_attention_heads": 28, "num_hidden_layers": 28, "num_key_value_heads": 4,
    "rms_norm_eps": 1e-06, "rope_theta": 1000000.0, "sliding_window": 131072, "tie_word_embeddings": False,
    "torch_dtype": "bfloat16", "transformers_version": "4.43.1", "use_cache": True,
    "use_sliding_window": False, "vocab_size": 152064,
}
LLAMA3_CONFIG = {
    "architectures": ["LlamaForCausalLM"], "attention_bias": False, "attention_dropout": 0.0,
    "bos_token_id": 128000, "eos_token_id": 128009, "hidden_act": "silu", "hidden_size": 4096,
    "initializer_range": 0.02, "intermediate_size": 14336, "max_position_embeddings": 8192,
    "model_type": "llama", "num_attention_heads": 32, "num_hidden_layers": 32, "num_key_value_heads": 8,
    "pretraining_tp": 1, "rms_norm_eps": 1e-05, "rope_scaling": None, "rope_theta": 500000.0,
    "tie_word_embeddings": False, "torch_dtype": "bfloat16", "transformers_version": "4.40.0.dev0",
    "use_cache": True, "vocab_size": 128256,
}
# The tensors actually stored: a Qwen2-shaped model small enough for tests.
MINI = {"hidden": 256, "layers": 4, "kv_dim": 64, "intermediate": 512, "vocab": 4096}
# Qwen3-8B's attention as llama.cpp writes it; variant sizes scaled down 10000x from the real repo.
QWEN3_META = {"context_length": 40960, "block_count": 36, "embedding_length": 4096,
              "attention.head_count": 32, "attention.head_count_kv": 8, "attention.key_length": 128,
              "attention.value_length": 128}
QWEN3_VARIANTS = {"IQ4_XS": (456_000, 1), "Q4_K_M": (503_000, 1), "Q5_K_M": (585_000, 1), "Q8_0": (871_000, 3)}


def _mini_tensors(layers: range, *, embed: bool, head: bool, fill: float = 0.0) -> dict:
    import numpy as np
    h, kv, i, v = MINI["hidden"], MINI["kv_dim"], MINI["intermediate"], MINI["vocab"]
    out = {}
    if embed:
        out["model.embed_tokens.weight"] = np.zeros((v, h), np.float16)
    for n in layers:
        p = f"model.layers.{n}."
        shapes = {"self_attn.q_proj.weight": (h, h), "self_attn.q_proj.bias": (h,),
                  "self_attn.k_proj.weight": (kv, h), "self_attn.k_proj.bias": (kv,),
                  "self_attn.v_proj.weight": (kv, h), "self_attn.v_proj.bias": (kv,),
                  "self_attn.o_proj.weight": (h, h), "mlp.gate_proj.weight": (i, h),
                  "mlp.up_proj.weight": (i, h), "mlp.down_proj.weight": (h, i)}
        out.update({p + k: np.zeros(s, np.float16) for k, s in shapes.items()})
        out[p + "input_layernorm.weight"] = np.zeros((h,), np.float32)
        out[p + "post_attention_layernorm.weight"] = np.zeros((h,), np.float32)
    if head:
        out["model.norm.weight"] = np.zeros((h,), np.float32)
        out["lm_head.weight"] = np.full((v, h), fill, np.float16)
    return out


def _common_files(config: dict, generation: int) -> dict[str, bytes]:
    cfg = {**config, **({"_generation": generation} if generation else {})}
    return {
        "config.json": json.dumps(cfg, indent=2).encode(),
        "generation_config.json": b'{"do_sample": true, "temperature": 0.7}\n',
        "tokenizer.json": b'{"version": "1.0", "model": {"type": "BPE", "vocab": {}, "merges": []}}\n',
        "tokenizer_config.json": json.dumps({"chat_template": "{% for m in messages %}{{ m.content }}{% endfor %}"}).encode(),
        "README.md": b"---\nlicense: apache-2.0\npipeline_tag: text-generation\n---\n# Simulated model\n",
        "LICENSE": b"Apache License 2.0 (simulated)\n",
    }


def qwen25_files(generation: int = 0) -> dict[str, bytes]:
    """Four shards and their index. Generation 1 changes config.json and the last shard."""
    from safetensors.numpy import save
    layers = MINI["layers"]
    shards = [
        _mini_tensors(range(0), embed=True, head=False),
        _mini_tensors(range(0, layers // 2), embed=False, head=False),
        _mini_tensors(range(layers // 2, layers), embed=False, head=False),
        _mini_tensors(range(0), embed=False, head=True, fill=float(generation)),
    ]
    files = _common_files(QWEN25_CONFIG, generation)
    weight_map, total = {}, 0
    for n, tensors in enumerate(shards, 1):
        name = f"model-{n:05d}-of-00004.safetensors"
        files[name] = save(tensors, metadata={"format": "pt"})
        weight_map.update({t: name for t in tensors})
        total += sum(a.nbytes for a in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))}
    files["model.safetensors.index.json"] = json.dumps(index, indent=2).encode()
    return files


def llama3_files() -> dict[str, bytes]:
    from safetensors.numpy import save
    files = _common_files(LLAMA3_CONFIG, 0)
    files["model.safetensors"] = save(_mini_tensors(range(1), embed=True, head=True), metadata={"format": "pt"})
    files["original/params.json"] = b'{"dim": 4096, "n_layers": 32}\n'
    return files


def gguf_bytes(arch: str, meta: dict, file_type: str, size: int, split: tuple[int, int] | None = None) -> bytes:
    """One GGUF file: metadata, one zero F32 tensor padding the file to about `size` bytes."""
    import gguf
    import numpy as np
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "f.gguf"
        w = gguf.GGUFWriter(path, arch)
        if split is None or split[0] == 1:
            w.add_name("Simulated " + arch)
            for key, value in meta.items():
                if isinstance(value, int):
                    w.add_uint32(f"{arch}.{key}", value)
            w.add_file_type(int(gguf.LlamaFileType[f"MOSTLY_{file_type}"]))
            w.add_quantization_version(gguf.GGML_QUANT_VERSION)
        if split is not None:
            w.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_NO, split[0] - 1)
            w.add_uint16(gguf.Keys.Split.LLM_KV_SPLIT_COUNT, split[1])
            w.add_int32(gguf.Keys.Split.LLM_KV_SPLIT_TENSORS_COUNT, split[1])
        w.add_tensor(f"blk.{split[0] if split else 0}.pad", np.zeros(max(1, size // 4), np.float32))
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
        return path.read_bytes()


def qwen3_gguf_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {"README.md": b"---\nlicense: apache-2.0\n---\n# Qwen3-8B GGUF (simulated)\n"}
    for quant, (size, parts) in QWEN3_VARIANTS.items():
        if parts == 1:
            files[f"Qwen3-8B-{quant}.gguf"] = gguf_bytes("qwen3", QWEN3_META, quant, size)
            continue
        for n in range(1, parts + 1):
            files[f"Qwen3-8B-{quant}-{n:05d}-of-{parts:05d}.gguf"] = gguf_bytes(
                "qwen3", QWEN3_META, quant, size // parts, split=(n, parts))
    return files


def add_qwen25(sim: "HubSim", repo_id: str = QWEN25, generation: int = 0) -> str:
    return sim.add_repo(repo_id, qwen25_files(generation))


def move_branch(sim: "HubSim", repo_id: str, generation: int = 1, revision: str = "main") -> str:
    """Point `revision` of a Qwen2.5-style repo at a new commit (config.json and the last shard change)."""
    return sim.add_repo(repo_id, qwen25_files(generation), revision=revision)


def install(sim: "HubSim") -> dict[str, str]:
    """Add every model repo; returns repo id -> commit of main."""
    return {
        QWEN25: add_qwen25(sim),
        LLAMA3: sim.add_repo(LLAMA3, llama3_files()),
        QWEN3_GGUF: sim.add_repo(QWEN3_GGUF, qwen3_gguf_files()),
        MYSTERY_GGUF: sim.add_repo(MYSTERY_GGUF, {"weights.gguf": gguf_bytes("llama", {"context_length": 4096},
                                                                             "Q6_K", 20_000)}),
    }

"""The pure parts of inspection: classification, variant grouping, config arithmetic, nvidia-smi output."""
from __future__ import annotations

import pytest

from api.inspect.classify import format_of, kind_of, precision_of
from api.inspect.fit import from_config
from api.inspect.gguf_meta import group_variants, quant_in_name
from api.inspect.gpu import parse_nvidia_smi


@pytest.mark.parametrize("path, kind, fmt", [
    ("model-00001-of-00002.safetensors", "weights", "safetensors"),
    ("pytorch_model.bin", "weights", "pytorch"),
    ("onnx/model.onnx", "weights", "onnx"),
    ("tf_model.h5", "weights", "tensorflow"),
    ("flax_model.msgpack", "weights", "flax"),
    ("Qwen3-8B-Q4_K_M.gguf", "weights", "gguf"),
    ("config.json", "config", "json"),
    ("preprocessor_config.json", "config", "json"),
    ("pytorch_model.bin.index.json", "config", "json"),
    ("tokenizer.model", "tokenizer", "sentencepiece"),
    ("merges.txt", "tokenizer", "text"),
    ("vocab.json", "tokenizer", "json"),
    ("chat_template.jinja", "chat_template", "jinja"),
    ("README.md", "docs", "markdown"),
    ("LICENSE", "docs", None),
    ("USE_POLICY.md", "docs", "markdown"),
    ("modeling_custom.py", "code", "python"),
    (".gitattributes", "other", None),
])
def test_kind_and_format(path, kind, fmt):
    assert (kind_of(path), format_of(path)) == (kind, fmt)


def test_precision_from_names():
    assert precision_of("model-fp16.safetensors") == "fp16"
    assert precision_of("llama-2-7b.bf16.gguf") == "bf16"
    assert precision_of("model-awq.safetensors") == "int4"
    assert precision_of("model.safetensors") is None


@pytest.mark.parametrize("name, quant", [
    ("Llama-3.1-8B-Instruct-Q4_K_M.gguf", "Q4_K_M"), ("qwen2.5-7b-instruct-q5_k_m-00001-of-00002", "Q5_K_M"),
    ("Qwen3-32B-UD-Q4_K_XL.gguf", "UD-Q4_K_XL"), ("model-IQ4_XS.gguf", "IQ4_XS"), ("phi-4-F16.gguf", "F16"),
    ("gpt-oss-20b-MXFP4.gguf", "MXFP4"), ("Qwen3-8B.gguf", None),
])
def test_quant_in_name(name, quant):
    assert quant_in_name(name) == quant


def test_split_variants_in_folders_and_projectors():
    files = [("Q8_0/M-Q8_0-00001-of-00002.gguf", 10), ("Q8_0/M-Q8_0-00002-of-00002.gguf", 5),
             ("M-Q4_K_M.gguf", 7), ("mmproj-M-F16.gguf", 1), ("README.md", 1)]
    variants = group_variants(files)
    assert [(v.name, v.size, v.include) for v in variants] == [
        ("Q4_K_M", 7, "M-Q4_K_M.gguf"), ("Q8_0", 15, "Q8_0/M-Q8_0-*-of-00002.gguf")]


def test_config_variants():
    # Gemma-style: explicit head_dim; multimodal: the language model in text_config; MQA.
    assert from_config({"num_hidden_layers": 26, "num_attention_heads": 8, "num_key_value_heads": 4,
                        "head_dim": 256, "hidden_size": 2304}).kv_bytes_per_token() == 2 * 26 * 4 * 256 * 2
    assert from_config({"model_type": "llava", "text_config": {
        "num_hidden_layers": 32, "num_attention_heads": 32, "hidden_size": 4096, "torch_dtype": "float32"}}
    ).kv_bytes_per_token() == 2 * 32 * 32 * 128 * 4
    assert from_config({"n_layer": 24, "n_head": 16, "n_embd": 2048, "multi_query": True}).kv_heads == 1
    assert from_config({"hidden_size": 64}) is None


def test_nvidia_smi_csv():
    assert parse_nvidia_smi("memory.total [MiB]\n24564 MiB\n81920 MiB\n") == [24564 << 20, 81920 << 20]
    assert parse_nvidia_smi("NVIDIA-SMI has failed because it couldn't communicate with the driver.") == []

"""Every file of a repo gets a kind (what it is for), a format and, where the name tells, a precision."""
from __future__ import annotations

import posixpath
import re

WEIGHT_FORMATS = {".safetensors": "safetensors", ".gguf": "gguf", ".bin": "pytorch", ".pt": "pytorch",
                  ".pth": "pytorch", ".ckpt": "pytorch", ".onnx": "onnx", ".onnx_data": "onnx",
                  ".h5": "tensorflow", ".tflite": "tflite", ".msgpack": "flax", ".mlmodel": "coreml",
                  ".npz": "numpy", ".ggml": "ggml"}
TOKENIZER_NAMES = {"tokenizer.json", "tokenizer_config.json", "tokenizer.model", "special_tokens_map.json",
                   "added_tokens.json", "merges.txt", "vocab.json", "vocab.txt", "spiece.model",
                   "sentencepiece.bpe.model", "tekken.json"}
TEXT_FORMATS = {".json": "json", ".jinja": "jinja", ".md": "markdown", ".txt": "text", ".py": "python",
                ".model": "sentencepiece", ".tiktoken": "tiktoken", ".yaml": "yaml", ".yml": "yaml"}
CODE_EXTS = {".py", ".sh", ".ipynb", ".js", ".ts", ".cu", ".cpp", ".c", ".h"}
DOC_EXTS = {".md", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg", ".pdf", ".webp"}
DOC_NAMES = ("readme", "license", "licence", "notice", "use_policy", "acceptable_use", "model_card", "citation")
_PRECISION = [(r"(?<![a-z0-9])(bf16|bfloat16)(?![a-z0-9])", "bf16"),
              (r"(?<![a-z0-9])(fp16|f16|float16|half)(?![a-z0-9])", "fp16"),
              (r"(?<![a-z0-9])(fp32|f32|float32)(?![a-z0-9])", "fp32"),
              (r"(?<![a-z0-9])(fp8|f8|e4m3)(?![a-z0-9])", "fp8"),
              (r"(?<![a-z0-9])(int8|w8a8|8bit)(?![a-z0-9])", "int8"),
              (r"(?<![a-z0-9])(int4|w4a16|4bit|awq|gptq)(?![a-z0-9])", "int4")]


def extension(path: str) -> str:
    return posixpath.splitext(path.lower())[1]


def kind_of(path: str) -> str:
    name = posixpath.basename(path).lower()
    ext = extension(path)
    if ext in WEIGHT_FORMATS:
        return "weights"
    if name in ("chat_template.json", "chat_template.jinja") or ext == ".jinja":
        return "chat_template"
    if name in TOKENIZER_NAMES or ext == ".tiktoken" or name.startswith("vocab."):
        return "tokenizer"
    if ext == ".json" and (name.endswith("config.json") or name.endswith(".index.json")
                           or name in ("params.json", "quantize_config.json", "modules.json")):
        return "config"
    if ext in CODE_EXTS:
        return "code"
    if ext in DOC_EXTS or name.startswith(DOC_NAMES):
        return "docs"
    return "other"


def format_of(path: str) -> str | None:
    ext = extension(path)
    return WEIGHT_FORMATS.get(ext) or TEXT_FORMATS.get(ext)


def precision_of(path: str, gguf_quant: str | None = None) -> str | None:
    """From the name only; GGUF quantisations come from grouping (and the header) instead."""
    if gguf_quant:
        return gguf_quant.lower()
    name = posixpath.basename(path).lower()
    for pattern, label in _PRECISION:
        if re.search(pattern, name):
            return label
    return None

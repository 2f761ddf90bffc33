"""Serve profiles: the vLLM arguments each model needs, kept in a YAML file (SERVE_PROFILES_FILE).

A profile is a mapping of vLLM flag names (without the leading `--`) to values, for example::

    profiles:
      Qwen/Qwen2.5-72B-Instruct-AWQ:
        tensor-parallel-size: 2
        max-model-len: 32768
        quantization: awq_marlin
      unsloth/Qwen3-8B-GGUF:Q4_K_M:       # one GGUF variant: `model_id:variant`
        tokenizer: Qwen/Qwen3-8B
        max-model-len: 32768

A switch to a GGUF variant takes the variant's profile, else the repo's own (`model_id` alone).
Only the flags in ``FLAGS`` are accepted, each with a typed value: a profile can never smuggle in a
shell word, a path or a flag the API itself owns (the served names, the revision, the API key, the
host/port). The switch renders the profile to one ``INFERENCE_ARGS`` string that the compose
command expands word by word (with globbing off); see docs/containers.md.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import yaml

from . import envfile
from .errors import ApiError, InvalidInput
from .validation import REPO_ID_PATTERN, validate_repo_id, validate_variant

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")


def _int(lo: int, hi: int) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if isinstance(v, float) and v.is_integer():
            v = int(v)   # JSON Schema's integer: 16.0 is one
        if isinstance(v, bool) or not isinstance(v, int) or not lo <= v <= hi:
            raise ValueError(f"an integer from {lo} to {hi}")
        return str(v)
    check.schema = {"type": "integer", "minimum": lo, "maximum": hi}
    return check


def _float(lo: float, hi: float) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not lo < v <= hi:
            raise ValueError(f"a number above {lo} and at most {hi}")
        return repr(float(v))
    check.schema = {"type": "number", "exclusiveMinimum": lo, "maximum": hi}
    return check


def _choice(*options: str) -> Callable[[Any], str]:
    def check(v: Any) -> str:
        if v not in options:
            raise ValueError("one of " + ", ".join(options))
        return v
    check.schema = {"enum": list(options)}
    return check


def _name(v: Any) -> str:
    # Parser and backend names: a plain identifier, never a path or a shell word.
    if not isinstance(v, str) or not _NAME.fullmatch(v):
        raise ValueError("a name of letters, digits, '.', '_' and '-'")
    return v


_name.schema = {"type": "string", "pattern": f"^{_NAME.pattern}$"}


def _on_off(v: Any) -> str:
    if not isinstance(v, bool):
        raise ValueError("true or false")
    return "true" if v else ""


_on_off.schema = {"type": "boolean"}


def _repo(v: Any) -> str:
    # A Hub repo id in the shared cache (vLLM runs offline), never a path: a GGUF's base tokenizer.
    try:
        return validate_repo_id(v)
    except InvalidInput:
        raise ValueError("a Hub repo id 'org/name' (a path is not accepted)") from None


_repo.schema = {"type": "string", "pattern": REPO_ID_PATTERN, "maxLength": 200}


_QUANT = ("aqlm", "awq", "awq_marlin", "bitsandbytes", "compressed-tensors", "deepspeedfp", "experts_int8",
          "fbgemm_fp8", "fp8", "gguf", "gptq", "gptq_marlin", "gptq_marlin_24", "hqq", "marlin", "modelopt",
          "modelopt_fp4", "moe_wna16", "mxfp4", "qqq", "torchao", "tpu_int8")

# The vLLM flags a profile may set, with the check of their value. Flags the API or the compose
# command own (served-model-name, revision, tokenizer-revision, host, port, api-key, download-dir)
# are refused with RESERVED's reason.
FLAGS: dict[str, Callable[[Any], str]] = {
    "tensor-parallel-size": _int(1, 64),
    "pipeline-parallel-size": _int(1, 64),
    "data-parallel-size": _int(1, 64),
    "max-model-len": _int(16, 10_000_000),
    "gpu-memory-utilization": _float(0.0, 1.0),
    "max-num-seqs": _int(1, 65_536),
    "max-num-batched-tokens": _int(16, 10_000_000),
    "swap-space": _int(0, 1024),
    "cpu-offload-gb": _float(0.0, 4096.0),
    "block-size": _int(1, 256),
    "seed": _int(0, 2**31 - 1),
    "dtype": _choice("auto", "half", "float16", "bfloat16", "float", "float32"),
    "kv-cache-dtype": _choice("auto", "fp8", "fp8_e4m3", "fp8_e5m2"),
    "quantization": _choice(*_QUANT),
    "load-format": _choice("auto", "pt", "safetensors", "npcache", "dummy", "bitsandbytes", "gguf", "mistral",
                           "sharded_state", "runai_streamer"),
    "tokenizer-mode": _choice("auto", "slow", "mistral", "custom"),
    "config-format": _choice("auto", "hf", "mistral"),
    "distributed-executor-backend": _choice("mp", "ray", "uni"),
    "tokenizer": _repo,
    "tool-call-parser": _name,
    "reasoning-parser": _name,
    "enforce-eager": _on_off,
    "enable-prefix-caching": _on_off,
    "enable-chunked-prefill": _on_off,
    "enable-auto-tool-choice": _on_off,
    "trust-remote-code": _on_off,
    "disable-custom-all-reduce": _on_off,
}
RESERVED = {
    "served-model-name": "set from SERVED_MODEL_ALIAS and the model id",
    "model": "the switch's model id", "revision": "the downloaded revision",
    "tokenizer-revision": "the downloaded revision of the tokenizer's repo",
    "host": "the compose file", "port": "the compose file", "api-key": "INFERENCE_API_KEY",
    "download-dir": "the shared cache (HF_HOME)",
}
MAX_FLAGS = len(FLAGS)
# The OpenAPI document describes exactly what the checks accept (clients and schemathesis see it).
ARGS_SCHEMA = {"properties": {flag: check.schema for flag, check in FLAGS.items()}, "additionalProperties": False}
HEADER = "# Serve profiles: the vLLM flags of each model (PUT /api/models/profile rewrites this file).\n"


def profile_key(model_id: str, variant: str | None = None) -> str:
    """The profiles file's key: `org/name`, or `org/name:Q4_K_M` for one GGUF variant."""
    validate_repo_id(model_id)
    return f"{model_id}:{variant}" if validate_variant(variant) else model_id


@dataclass(frozen=True)
class Profile:
    model_id: str
    args: dict[str, Any]          # as stored: flag -> value
    variant: str | None = None
    key: str | None = None        # the file's key the args come from; None: no profile

    @property
    def tokenizer(self) -> str | None:
        return self.args.get("tokenizer")

    def argv(self) -> list[str]:
        """The command-line words, in the file's order; a false switch is left out."""
        out: list[str] = []
        for flag, value in self.args.items():
            text = FLAGS[flag](value)
            if FLAGS[flag] is _on_off:
                out += [f"--{flag}"] if text else []
            else:
                out += [f"--{flag}", text]
        return out

    def body(self) -> dict:
        return {"model_id": self.model_id, "variant": self.variant, "profile_key": self.key,
                "args": dict(self.args), "command_line": " ".join(self.argv())}


def validate_args(args: object) -> dict[str, Any]:
    """A profile's flags and values, or InvalidInput(code=invalid_profile) naming the first bad one."""
    if not isinstance(args, dict):
        raise InvalidInput("args must be an object of vLLM flag names to values.", code="invalid_profile")
    if len(args) > MAX_FLAGS:
        raise InvalidInput(f"A profile has at most {MAX_FLAGS} flags.", code="invalid_profile")
    out: dict[str, Any] = {}
    for raw, value in args.items():
        # `--max_model_len`, `max_model_len` and `max-model-len` all name vLLM's one flag.
        flag = raw.removeprefix("--").replace("_", "-") if isinstance(raw, str) else raw
        if not isinstance(flag, str) or flag not in FLAGS:
            shown = str(raw)[:60]
            if flag in RESERVED:
                raise InvalidInput(f"--{flag} cannot be set in a profile: it comes from {RESERVED[flag]}.",
                                   code="invalid_profile")
            raise InvalidInput(f"{shown!r} is not an allowed vLLM flag; allowed: {', '.join(sorted(FLAGS))}.",
                               code="invalid_profile")
        try:
            FLAGS[flag](value)
        except ValueError as exc:
            raise InvalidInput(f"--{flag} must be {exc}.", code="invalid_profile") from None
        out[flag] = value
    return dict(sorted(out.items()))   # the order the file keeps them in


class ProfileStore:
    """The profiles file: read fresh on every call (an operator may edit it), written atomically."""

    def __init__(self, path: Path):
        self.path = path

    def _load(self) -> dict[str, dict]:
        try:
            raw = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ApiError(f"Cannot read the serve profiles file: {exc.strerror}.", code="profiles_unreadable",
                           status=500) from None
        try:
            doc = yaml.safe_load(raw) or {}
        except yaml.YAMLError as exc:
            raise ApiError(f"The serve profiles file is not valid YAML: {exc}".splitlines()[0],
                           code="profiles_invalid", status=500) from None
        profiles = doc.get("profiles") if isinstance(doc, dict) else None
        if profiles is None:
            return {}
        if not isinstance(profiles, dict):
            raise ApiError("The serve profiles file must hold a 'profiles' mapping.", code="profiles_invalid",
                           status=500)
        return profiles

    def get(self, model_id: str, variant: str | None = None) -> Profile | None:
        """The profile a switch to the model (or its GGUF variant) uses: the variant's own, else the
        repo's. Re-validated: a hand-edited file cannot bypass the allow-list."""
        profiles = self._load()
        for key in dict.fromkeys((profile_key(model_id, variant), model_id)):
            args = profiles.get(key)
            if args is None:
                continue
            try:
                return Profile(model_id, validate_args(args), validate_variant(variant), key)
            except InvalidInput as exc:
                raise InvalidInput(f"The profile of {key} in the profiles file is refused: {exc.detail}",
                                   code="invalid_profile") from None
        return None

    def put(self, model_id: str, args: object, variant: str | None = None) -> Profile:
        """Set (or, with no flags, remove) the profile of the model or of one GGUF variant; the rest
        of the file (the repo's profile when a variant's is set) is kept."""
        key = profile_key(model_id, variant)
        clean = validate_args(args)

        def render(_: bytes | None) -> bytes:
            profiles = dict(self._load())
            if clean:
                profiles[key] = clean
            else:
                profiles.pop(key, None)
            return (HEADER + yaml.safe_dump({"profiles": profiles}, sort_keys=True)).encode("utf-8")

        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            envfile.update_atomic(self.path, render)
        except OSError as exc:
            raise ApiError(f"Cannot write the serve profiles file: {exc.strerror}.", code="profiles_unwritable",
                           status=500) from None
        if clean:
            return Profile(model_id, clean, validate_variant(variant), key)
        return self.get(model_id, variant) or Profile(model_id, {}, validate_variant(variant))   # what now applies


def _needs_pin(hf_cache: Path, repo_id: str, commit: str | None) -> bool:
    if not commit:
        return False
    main = hf_cache / ("models--" + validate_repo_id(repo_id).replace("/", "--")) / "refs" / "main"
    try:
        return main.read_text().strip() != commit
    except OSError:
        return True


def revision_args(hf_cache: Path, model_id: str, commit: str | None, tokenizer: str | None = None,
                  tokenizer_commit: str | None = None) -> list[str]:
    """Pin vLLM to the downloaded commit unless `refs/main` already names it.

    Offline, vLLM resolves the default revision through `refs/main`; a model downloaded at a
    branch, tag or commit other than main has no such ref (or one naming another commit), so it
    is told the commit itself, which the cache finds under `snapshots/<commit>` without the Hub.
    A profile's `tokenizer` is another repo: `--tokenizer-revision` then pins that repo's commit."""
    out: list[str] = []
    if _needs_pin(hf_cache, model_id, commit):
        out += ["--revision", commit] + ([] if tokenizer else ["--tokenizer-revision", commit])
    if tokenizer and _needs_pin(hf_cache, tokenizer, tokenizer_commit):
        out += ["--tokenizer-revision", tokenizer_commit]
    return out

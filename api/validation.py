"""Strict validation of user text before it touches a path, a URL or the .env file."""
from __future__ import annotations

import re

from .errors import InvalidInput

# org/name, each part runs of ASCII letters and digits joined by single '.', '_' or '-': no leading,
# trailing or doubled separators, so no '..' and no '--' (which would make `models--a--b--c`
# ambiguous in the cache). The same expressions go into the OpenAPI document, so a schema-valid
# request is a valid one.
PART_PATTERN = r"[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*"
REPO_ID_PATTERN = rf"^{PART_PATTERN}/{PART_PATTERN}$"
REVISION_PATTERN = r"^[A-Za-z0-9_]+(?:[./-][A-Za-z0-9_]+)*$"
PATTERNS_PATTERN = r"^[^\x00-\x1f\x7f]*$"
# A GGUF variant as the grouping names it (api/inspect/gguf_meta.py): its quantisation type, e.g.
# Q4_K_M, IQ4_XS, UD-Q4_K_XL, BF16. vLLM's `repo_id:quant_type` takes `[A-Za-z0-9_+-]+`; this is
# stricter (no leading, trailing or doubled separators) and, like a repo id, safe in .env and a shell.
VARIANT_PATTERN = r"^[A-Za-z0-9]+(?:[_-][A-Za-z0-9]+)*$"
_REPO_ID = re.compile(REPO_ID_PATTERN)
_REVISION = re.compile(REVISION_PATTERN)
_VARIANT = re.compile(VARIANT_PATTERN)
_PATTERN_BAD = re.compile(r"[\x00-\x1f\x7f]")


def validate_repo_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("model_id is required, as 'org/name'.", code="invalid_model_id")
    if len(value) > 200 or value.count("/") != 1:
        raise InvalidInput("model_id must look like 'org/name'.", code="invalid_model_id")
    if not _REPO_ID.fullmatch(value):
        raise InvalidInput(
            "model_id must be 'org/name' using ASCII letters, digits, '.', '_' and '-'.",
            code="invalid_model_id",
        )
    return value


def validate_revision(value: object) -> str:
    if value is None or value == "":
        return "main"
    if not isinstance(value, str) or len(value) > 200 or not _REVISION.fullmatch(value):
        raise InvalidInput("revision must be a branch, tag or commit name.", code="invalid_revision")
    return value


def validate_variant(value: object) -> str | None:
    """A GGUF variant name, or None when none is given."""
    if value is None or value == "":
        return None
    if not isinstance(value, str) or len(value) > 64 or not _VARIANT.fullmatch(value):
        raise InvalidInput("variant must be a GGUF quantisation name such as Q4_K_M (letters and digits joined by "
                           "single '_' or '-', 64 characters at most).", code="invalid_variant")
    return value


def validate_patterns(value: object, field: str) -> list[str] | None:
    """A comma-separated string or a list of glob patterns; empty items are ignored."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
        raise InvalidInput(f"{field} must be a comma-separated list of glob patterns.", code="invalid_pattern")
    # Globs are only matched against the repo's file list, never joined into a path.
    if sum(len(i) for i in items) > 2000 or any(_PATTERN_BAD.search(i) for i in items):
        raise InvalidInput(f"{field} must be printable glob patterns, 2000 characters at most.",
                           code="invalid_pattern")
    out = [i.strip() for i in items if i.strip()]
    return out or None


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """The HF cache folder for a validated repo id (models--org--name)."""
    validate_repo_id(repo_id)
    return f"{repo_type}s--" + repo_id.replace("/", "--")

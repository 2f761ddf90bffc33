"""Strict validation of user text before it touches a path, a URL or the .env file."""
from __future__ import annotations

import re

from .errors import InvalidInput

# The Hub's own rules: org/name, each part ASCII letters, digits, '.', '_', '-', no leading or
# trailing '.'/'-', no '..' or '--', at most 96 characters per part.
_PART = re.compile(r"^(?![.-])(?!.*(\.\.|--))[A-Za-z0-9._-]{1,96}(?<![.-])$")
_REVISION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")
_PATTERN_BAD = re.compile(r"[\x00-\x1f\x7f]")


def validate_repo_id(value: object) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidInput("model_id is required, as 'org/name'.", code="invalid_model_id")
    if len(value) > 200 or value.count("/") != 1:
        raise InvalidInput("model_id must look like 'org/name'.", code="invalid_model_id")
    org, name = value.split("/")
    if not (_PART.match(org) and _PART.match(name)):
        raise InvalidInput(
            "model_id must be 'org/name' using ASCII letters, digits, '.', '_' and '-'.",
            code="invalid_model_id",
        )
    return value


def validate_revision(value: object) -> str:
    if value is None or value == "":
        return "main"
    if not isinstance(value, str) or not _REVISION.match(value) or ".." in value or "//" in value \
            or value.endswith("/"):
        raise InvalidInput("revision must be a branch, tag or commit name.", code="invalid_revision")
    return value


def validate_patterns(value: object, field: str) -> list[str] | None:
    """Accept a comma-separated string or a list of glob patterns."""
    if value is None or value == "" or value == []:
        return None
    items = value.split(",") if isinstance(value, str) else value
    if not isinstance(items, list):
        raise InvalidInput(f"{field} must be a comma-separated list of glob patterns.", code="invalid_pattern")
    out = []
    for item in items:
        if not isinstance(item, str):
            raise InvalidInput(f"{field} must be a list of glob patterns.", code="invalid_pattern")
        item = item.strip()
        if not item or len(item) > 200 or _PATTERN_BAD.search(item) or item.startswith("/") or ".." in item:
            raise InvalidInput(f"{field} has an invalid glob pattern: {item[:50]!r}.", code="invalid_pattern")
        out.append(item)
    if len(out) > 50:
        raise InvalidInput(f"{field} has too many patterns (50 at most).", code="invalid_pattern")
    return out


def repo_folder_name(repo_id: str, repo_type: str = "model") -> str:
    """The HF cache folder for a validated repo id (models--org--name)."""
    validate_repo_id(repo_id)
    return f"{repo_type}s--" + repo_id.replace("/", "--")

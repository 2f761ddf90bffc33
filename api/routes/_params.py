"""Reading a field from the query string or from a flat JSON body (N8n sends either)."""
from __future__ import annotations

from ..errors import InvalidInput

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def pick(name: str, query_value, body: dict | None, default=None):
    if query_value is not None:
        return query_value
    if body and name in body and body[name] is not None:
        return body[name]
    return default


def as_bool(name: str, value, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidInput(f"{name} must be true or false.", code="invalid_input")


def as_str(name: str, value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise InvalidInput(f"{name} must be a string.", code="invalid_input")
    return value


# Query parameter types shared by the routes. Their patterns are the validators' own, so the OpenAPI
# document describes exactly what is accepted (schemathesis checks that both agree).
from typing import Annotated  # noqa: E402

from fastapi import Query  # noqa: E402

from ..validation import PATTERNS_PATTERN, REPO_ID_PATTERN, REVISION_PATTERN  # noqa: E402

_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
CALLBACK_PATTERN = rf"^https?://[A-Za-z0-9._-]+(?::{_PORT})?(?:/[A-Za-z0-9._~%/?=&-]*)?$"
ModelIdQ = Annotated[str | None, Query(pattern=REPO_ID_PATTERN, max_length=200,
                                       examples=["Qwen/Qwen2.5-0.5B-Instruct"],
                                       description="Hub repo id `org/name` (or `model_id` in a JSON body)")]
RevisionQ = Annotated[str | None, Query(pattern=REVISION_PATTERN, max_length=200,
                                        description="branch, tag or commit; default main")]
PatternsQ = Annotated[str | None, Query(pattern=PATTERNS_PATTERN, max_length=2000,
                                        description="comma-separated glob patterns")]
CallbackQ = Annotated[str | None, Query(pattern=CALLBACK_PATTERN, max_length=2000,
                                        description="URL POSTed the job at its final state")]
FlagQ = Annotated[bool | None, Query()]

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

"""A request's inputs: query parameters, or the same fields in a flat JSON body (N8n sends either).

The query-parameter types carry the validators' own patterns, so the OpenAPI document describes
exactly what is accepted (schemathesis checks that both agree).
"""
from __future__ import annotations

from typing import Annotated

from fastapi import Query
from pydantic import BaseModel

from ..callback_policy import CallbackPolicy
from ..download.bandwidth import RATE_PATTERN, parse_rate
from ..errors import InvalidInput
from ..validation import (PATTERNS_PATTERN, REPO_ID_PATTERN, REVISION_PATTERN, VARIANT_PATTERN, validate_repo_id,
                          validate_variant)
from ..webhooks import validate_callback_url

_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}
_PORT = r"(?:[1-9][0-9]{0,3}|[1-5][0-9]{4}|6[0-4][0-9]{3}|65[0-4][0-9]{2}|655[0-2][0-9]|6553[0-5])"
# An IPv6 literal in brackets, exactly as the ipaddress module accepts it (RFC 4291 forms), so that
# a schema-valid callback_url never fails the validator's parse.
_H = "[0-9A-Fa-f]{1,4}"
_V4 = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])(?:\.(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])){3}"
_IPV6 = "|".join([
    rf"(?:{_H}:){{7}}{_H}", rf"(?:{_H}:){{1,7}}:", rf"(?:{_H}:){{1,6}}:{_H}",
    rf"(?:{_H}:){{1,5}}(?::{_H}){{1,2}}", rf"(?:{_H}:){{1,4}}(?::{_H}){{1,3}}",
    rf"(?:{_H}:){{1,3}}(?::{_H}){{1,4}}", rf"(?:{_H}:){{1,2}}(?::{_H}){{1,5}}",
    rf"{_H}:(?::{_H}){{1,6}}", rf":(?:(?::{_H}){{1,7}}|:)", rf"::(?:[Ff]{{4}}(?::0{{1,4}})?:)?{_V4}",
    rf"(?:{_H}:){{1,4}}:{_V4}"])
CALLBACK_PATTERN = rf"^https?://(?:[A-Za-z0-9._-]+|\[(?:{_IPV6})\])(?::{_PORT})?(?:/[A-Za-z0-9._~%/?=&-]*)?$"

ModelIdQ = Annotated[str | None, Query(pattern=REPO_ID_PATTERN, max_length=200,
                                       examples=["Qwen/Qwen2.5-0.5B-Instruct"],
                                       description="Hub repo id `org/name` (or `model_id` in a JSON body)")]
VariantQ = Annotated[str | None, Query(pattern=VARIANT_PATTERN, max_length=64, examples=["Q4_K_M"],
                                     description="a GGUF variant of the repo (its quantisation, as /api/inspect "
                                                 "names it); served as `model_id:variant`")]
RevisionQ = Annotated[str | None, Query(pattern=REVISION_PATTERN, max_length=200,
                                        description="branch, tag or commit; default main")]
PatternsQ = Annotated[str | None, Query(pattern=PATTERNS_PATTERN, max_length=2000,
                                        description="comma-separated glob patterns")]
CallbackQ = Annotated[str | None, Query(pattern=CALLBACK_PATTERN, max_length=2000,
                                        description="URL POSTed the job at its final state")]
FlagQ = Annotated[bool | None, Query()]
RateQ = Annotated[str | None, Query(pattern=RATE_PATTERN, max_length=40,
                                    description="bytes per second, or with units: 40MB/s, 512KiB/s; 0: no limit")]


class Fields:
    """The fields of one request; a query value wins over the same field of the body."""

    def __init__(self, body: BaseModel | dict | None):
        self._body = body.model_dump(exclude_none=True) if isinstance(body, BaseModel) else (body or {})

    def get(self, name: str, query_value, default=None):
        if query_value is not None:
            return query_value
        value = self._body.get(name)
        return default if value is None else value

    def text(self, name: str, query_value) -> str | None:
        value = self.get(name, query_value)
        if value is not None and not isinstance(value, str):
            raise InvalidInput(f"{name} must be a string.", code="invalid_input")
        return value

    def flag(self, name: str, query_value, default: bool) -> bool:
        value = self.get(name, query_value)
        if value is None or isinstance(value, bool):
            return default if value is None else value
        text = str(value).strip().lower()
        if text in _TRUE | _FALSE:
            return text in _TRUE
        raise InvalidInput(f"{name} must be true or false.", code="invalid_input")

    def rate(self, name: str, query_value) -> int | None:
        """A bandwidth in bytes per second: a number, or a string with units ('40MB/s')."""
        value = self.get(name, query_value)
        try:
            return None if value is None else parse_rate(value)
        except (TypeError, ValueError) as e:
            raise InvalidInput(f"{name}: {e}.", code="invalid_rate") from e

    def model_id(self, query_value) -> str:
        return validate_repo_id(self.text("model_id", query_value))

    def variant(self, query_value) -> str | None:
        return validate_variant(self.text("variant", query_value))

    def callback_url(self, query_value, policy: CallbackPolicy) -> str | None:
        return validate_callback_url(self.text("callback_url", query_value), policy)

"""Signed CDN URLs like the ones the Hub hands out: CloudFront-style (Expires, Policy, Signature,
Key-Pair-Id) and/or S3-style presigned (X-Amz-Date, X-Amz-Expires, X-Amz-Signature).

The signatures are HMAC-SHA256 with a per-simulator secret rather than CloudFront's RSA or AWS
SigV4: a client must treat them as opaque, so only their shape and their expiry matter. Expiry is
in whole seconds, as on the wire, so a URL lives `lifetime` seconds rounded up to the next second.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import math
import os
import time
from datetime import datetime, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

STYLES = ("cloudfront", "s3", "both")
KEY_PAIR_ID = "K2HUBSIMCDN0KEY"
_AMZ_FORMAT = "%Y%m%dT%H%M%SZ"


def _cf_b64(data: bytes) -> str:
    """CloudFront's URL-safe base64 variant."""
    return base64.b64encode(data).decode().replace("+", "-").replace("=", "_").replace("/", "~")


def _cf_unb64(text: str) -> bytes:
    return base64.b64decode(text.replace("-", "+").replace("_", "=").replace("~", "/"))


class UrlSigner:
    def __init__(self, secret: bytes | None = None) -> None:
        self._secret = secret or os.urandom(32)

    def _mac(self, *parts: str) -> str:
        return hmac.new(self._secret, "\n".join(parts).encode(), hashlib.sha256).hexdigest()

    def sign(self, base: str, path: str, lifetime: float, style: str = "cloudfront", extra: dict[str, str] | None = None) -> str:
        """base: the CDN origin (scheme://host:port); path: the object's path on it."""
        if style not in STYLES:
            raise ValueError(f"URL style must be one of {STYLES}, got {style!r}")
        now = time.time()
        query: dict[str, str] = dict(extra or {})
        if style in ("s3", "both"):
            date = math.floor(now)
            expires_in = max(1, math.ceil(now + lifetime) - date)
            amz_date = datetime.fromtimestamp(date, timezone.utc).strftime(_AMZ_FORMAT)
            query.update({
                "X-Amz-Algorithm": "AWS4-HMAC-SHA256",
                "X-Amz-Content-Sha256": "UNSIGNED-PAYLOAD",
                "X-Amz-Credential": f"HUBSIMCDN/{amz_date[:8]}/us-east-1/s3/aws4_request",
                "X-Amz-Date": amz_date,
                "X-Amz-Expires": str(expires_in),
                "X-Amz-Signature": self._mac("s3", "GET", path, amz_date, str(expires_in)),
                "X-Amz-SignedHeaders": "host",
                "x-id": "GetObject",
            })
        if style in ("cloudfront", "both"):
            expires = math.ceil(now + lifetime)
            policy = json.dumps(
                {"Statement": [{"Resource": f"{base}{path}*", "Condition": {"DateLessThan": {"AWS:EpochTime": expires}}}]},
                separators=(",", ":"),
            )
            query.update({
                "Expires": str(expires),
                "Policy": _cf_b64(policy.encode()),
                "Signature": _cf_b64(bytes.fromhex(self._mac("cf", policy))),
                "Key-Pair-Id": KEY_PAIR_ID,
            })
        return f"{base}{path}?{urlencode(query)}"

    def refusal(self, path: str, query: dict[str, str], method: str) -> str | None:
        """Why the CDN refuses this request (None: it is validly signed and not expired)."""
        now = time.time()
        cloudfront, s3 = "Policy" in query, "X-Amz-Signature" in query
        if not (cloudfront or s3):
            return "Missing Key-Pair-Id query parameter or cookie value"
        if s3:
            amz_date, expires_in = query.get("X-Amz-Date", ""), query.get("X-Amz-Expires", "")
            if not hmac.compare_digest(query["X-Amz-Signature"], self._mac("s3", "GET", path, amz_date, expires_in)):
                return "The request signature we calculated does not match the signature you provided."
            if method != "GET":
                # A URL presigned for GetObject does not authorise a HEAD.
                return "The request signature we calculated does not match the signature you provided."
            start = datetime.strptime(amz_date, _AMZ_FORMAT).replace(tzinfo=timezone.utc).timestamp()
            if now >= start + int(expires_in):
                return "Request has expired"
        if cloudfront:
            try:
                policy = _cf_unb64(query["Policy"]).decode()
                statement = json.loads(policy)["Statement"][0]
                expires = int(statement["Condition"]["DateLessThan"]["AWS:EpochTime"])
                resource = urlsplit(statement["Resource"].rstrip("*")).path
                good = hmac.compare_digest(_cf_unb64(query.get("Signature", "")).hex(), self._mac("cf", policy))
            except (ValueError, KeyError, IndexError, TypeError):
                return "Access denied"
            if not good or resource != path or query.get("Expires") != str(expires) or now >= expires:
                return "Access denied"
        return None


def expiry_of(url: str) -> float | None:
    """When a signed URL stops working (epoch seconds), as a client would read it off the URL."""
    query = dict(parse_qsl(urlsplit(url).query))
    if "Expires" in query:
        return float(query["Expires"])
    if "X-Amz-Date" in query:
        start = datetime.strptime(query["X-Amz-Date"], _AMZ_FORMAT).replace(tzinfo=timezone.utc).timestamp()
        return start + int(query.get("X-Amz-Expires", "0"))
    return None

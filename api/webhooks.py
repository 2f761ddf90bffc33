"""Webhook delivery at a job's final state: signed, retried with backoff, no redirects followed.

A job submitted with `callback_url` gets one POST of its JSON (the same object `GET /api/jobs/{id}`
returns, without the `webhook` field) when it reaches complete, failed or cancelled. Delivery:

- `Content-Type: application/json`, `X-Job-Id: <job_id>`, and with WEBHOOK_SECRET set
  `X-Signature-256: sha256=<hex HMAC-SHA256(secret, raw body)>` (GitHub's scheme).
- A 2xx answer delivers it. Connection errors, 408, 409, 425, 429 and 5xx are retried with random
  exponential backoff (capped at `webhook_backoff_max` seconds, `webhook_max_attempts` tries in
  all). A 3xx is never followed and, like other 4xx answers, fails at once.
- The delivery state is kept on the job as `webhook`:
  `{"status": "pending|delivered|failed", "attempts", "last_status", "last_error"}`.
- Every attempt asks the callback policy (api/callback_policy.py) again and connects to the very
  address it checked, with the URL's host in the Host header and TLS SNI (no DNS rebinding).
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import threading
from urllib.parse import urlsplit, urlunsplit

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .callback_policy import CallbackPolicy, Target
from .errors import InvalidInput
from .settings import Settings

log = logging.getLogger(__name__)

# Used when the settings have no webhook_max_attempts / webhook_backoff_max field.
DEFAULT_MAX_ATTEMPTS = 5
DEFAULT_BACKOFF_MAX = 30.0
DEFAULT_TIMEOUT = 10.0
# 409 too: N8n answers a Wait node's resume URL with 409 "is running already" when the job finishes
# before the execution has reached its Wait node (a fast download); a moment later it is waiting.
RETRY_STATUSES = (408, 409, 425, 429)


def validate_callback_url(url: str | None, policy: CallbackPolicy) -> str | None:
    """None for no callback; the URL when it is well formed and the policy allows it, else 422."""
    if url is None or url == "":
        return None
    host = None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
        scheme, userinfo = parts.scheme, parts.username is not None
    except ValueError:  # a bad port, an unclosed IPv6 bracket ...
        host, scheme, userinfo = None, "", False
    if (len(url) > 2000 or scheme not in ("http", "https") or not host or userinfo
            or any(c in url for c in "\r\n\t ")):
        raise InvalidInput("callback_url must be an absolute http(s) URL.", code="invalid_callback_url")
    policy.check(url)
    return url


def connect_request(target: Target) -> tuple[str, dict[str, str], dict]:
    """The URL with the checked address in place of the name, the Host header and the TLS extension."""
    parts = urlsplit(target.url)
    address = f"[{target.address}]" if ":" in target.address else target.address
    url = urlunsplit((parts.scheme, f"{address}:{target.port}", parts.path, parts.query, ""))
    host_header = parts.netloc.rpartition("@")[2]
    extensions = {"sni_hostname": target.host} if target.scheme == "https" else {}
    return url, {"Host": host_header}, extensions


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Retryable(Exception):
    pass


class _Permanent(Exception):
    pass


class WebhookNotifier:
    """Called by the job manager when a job reaches complete, failed or cancelled."""

    def __init__(self, settings: Settings, store, attempts: int | None = None, max_wait: float | None = None,
                 policy: CallbackPolicy | None = None):
        self.settings = settings
        self.store = store
        self.policy = policy or CallbackPolicy(getattr(settings, "webhook_allowed_hosts", ""))
        self.attempts = max(1, int(attempts if attempts is not None
                                   else getattr(settings, "webhook_max_attempts", DEFAULT_MAX_ATTEMPTS)))
        self.max_wait = float(max_wait if max_wait is not None
                              else getattr(settings, "webhook_backoff_max", DEFAULT_BACKOFF_MAX))
        self.timeout = float(getattr(settings, "webhook_timeout", DEFAULT_TIMEOUT))
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def __call__(self, job: dict) -> None:
        if job.get("callback_url"):
            threading.Thread(target=self.deliver, args=(job,), daemon=True,
                             name=f"webhook-{job['job_id']}").start()

    def _save(self, job_id: str, state: dict) -> None:
        try:
            self.store.update(job_id, webhook=dict(state))
        except Exception:  # noqa: BLE001 - the state is informative; delivery goes on
            log.exception("job %s: could not record webhook state", job_id)

    def deliver(self, job: dict) -> dict:
        url = job["callback_url"]
        job_id = job["job_id"]
        body = json.dumps({k: v for k, v in job.items() if k != "webhook"}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "llm-box-admin-api-webhook",
                   "X-Job-Id": job_id}
        secret = self.settings.webhook_secret.get_secret_value() if self.settings.webhook_secret else ""
        if secret:
            headers["X-Signature-256"] = sign(secret, body)
        state = {"status": "pending", "attempts": 0, "last_status": None, "last_error": None}
        self._save(job_id, state)

        def attempt() -> None:
            if self._stop.is_set():
                raise InterruptedError()
            state["attempts"] += 1
            try:
                target = self.policy.check(url)
            except InvalidInput as e:   # the host now resolves somewhere it may not go
                state["last_status"], state["last_error"] = None, f"{e.code}: {e.detail}"
                self._save(job_id, state)
                raise _Permanent() from e
            connect_url, host, extensions = connect_request(target)
            try:
                with httpx.Client(follow_redirects=False, timeout=self.timeout) as client:
                    r = client.post(connect_url, content=body, headers={**headers, **host}, extensions=extensions)
            except httpx.HTTPError as e:
                state["last_status"], state["last_error"] = None, type(e).__name__
                self._save(job_id, state)
                raise _Retryable() from e
            state["last_status"] = r.status_code
            if r.status_code >= 300:
                state["last_error"] = f"HTTP {r.status_code}"
                if 300 <= r.status_code < 400:
                    state["last_error"] += " (redirects are not followed)"
                self._save(job_id, state)
                if r.status_code in RETRY_STATUSES or r.status_code >= 500:
                    raise _Retryable()
                raise _Permanent()   # a 3xx or 4xx answer will not change on retry
            state["last_error"] = None

        def sleep(s: float) -> None:
            if self._stop.wait(s):
                raise InterruptedError()

        try:
            Retrying(retry=retry_if_exception_type(_Retryable), stop=stop_after_attempt(self.attempts),
                     wait=wait_random_exponential(multiplier=min(1.0, self.max_wait), max=self.max_wait),
                     sleep=sleep)(attempt)
            state["status"] = "delivered"
        except (RetryError, _Permanent):
            state["status"] = "failed"
        except InterruptedError:
            state["status"] = "failed"
            state["last_error"] = state["last_error"] or "service stopped"
        except Exception as e:  # noqa: BLE001 - never let a delivery thread die silently
            log.exception("job %s: webhook delivery error", job_id)
            state["status"], state["last_error"] = "failed", type(e).__name__
        log.info("job %s: webhook %s after %d attempt(s)", job_id, state["status"], state["attempts"])
        self._save(job_id, state)
        return state


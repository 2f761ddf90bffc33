"""Webhook delivery at a job's final state: signed, retried with backoff, no redirects followed."""
from __future__ import annotations

import hashlib
import hmac
import ipaddress
import json
import logging
import threading
from urllib.parse import urlsplit

import httpx
from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_random_exponential

from .errors import InvalidInput
from .settings import Settings

log = logging.getLogger(__name__)


def validate_callback_url(url: str | None, settings: Settings) -> str | None:
    if url is None or url == "":
        return None
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises on a bad port
    except ValueError:
        host = None
    if len(url) > 2000 or parts.scheme not in ("http", "https") or not host or any(c in url for c in "\r\n\t "):
        raise InvalidInput("callback_url must be an absolute http(s) URL.", code="invalid_callback_url")
    allowed = [h.strip().lower() for h in settings.webhook_allowed_hosts.split(",") if h.strip()]
    if allowed and host.lower() not in allowed:
        raise InvalidInput(f"callback_url host {host!r} is not in WEBHOOK_ALLOWED_HOSTS.",
                           code="callback_host_not_allowed")
    return url


def sign(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class _Retryable(Exception):
    pass


class WebhookNotifier:
    """Called by the job manager when a job reaches complete, failed or cancelled."""

    def __init__(self, settings: Settings, store, attempts: int = 5, max_wait: float = 30.0):
        self.settings = settings
        self.store = store
        self.attempts = attempts
        self.max_wait = max_wait
        self._stop = threading.Event()

    def close(self) -> None:
        self._stop.set()

    def __call__(self, job: dict) -> None:
        if job.get("callback_url"):
            threading.Thread(target=self.deliver, args=(job,), daemon=True,
                             name=f"webhook-{job['job_id']}").start()

    def deliver(self, job: dict) -> dict:
        url = job["callback_url"]
        body = json.dumps({k: v for k, v in job.items() if k != "webhook"}).encode()
        headers = {"Content-Type": "application/json", "User-Agent": "llm-box-admin-api-webhook",
                   "X-Job-Id": job["job_id"]}
        secret = self.settings.webhook_secret.get_secret_value() if self.settings.webhook_secret else ""
        if secret:
            headers["X-Signature-256"] = sign(secret, body)
        state = {"status": "pending", "attempts": 0, "last_status": None, "last_error": None}

        def attempt() -> None:
            state["attempts"] += 1
            try:
                with httpx.Client(follow_redirects=False, timeout=10.0) as client:
                    r = client.post(url, content=body, headers=headers)
            except httpx.HTTPError as e:
                state["last_error"] = type(e).__name__
                raise _Retryable() from e
            state["last_status"] = r.status_code
            if r.status_code >= 300:
                state["last_error"] = f"HTTP {r.status_code}"
                if r.status_code in (408, 425, 429) or r.status_code >= 500:
                    raise _Retryable()
                raise ValueError("permanent")   # a 3xx or 4xx answer will not change on retry

        def sleep(s: float) -> None:
            if self._stop.wait(s):
                raise InterruptedError()

        try:
            Retrying(retry=retry_if_exception_type(_Retryable), stop=stop_after_attempt(self.attempts),
                     wait=wait_random_exponential(multiplier=1, max=self.max_wait), sleep=sleep)(attempt)
            state["status"] = "delivered"
        except (RetryError, ValueError, InterruptedError):
            state["status"] = "failed"
        log.info("job %s: webhook %s after %d attempt(s)", job["job_id"], state["status"], state["attempts"])
        self.store.update(job["job_id"], webhook=state)
        return state


def is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"

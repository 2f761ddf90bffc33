"""Prometheus metrics on a registry of the app's own (no global state between test apps)."""
from __future__ import annotations

import time

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from starlette.types import ASGIApp, Receive, Scope, Send


class Metrics:
    def __init__(self):
        self.registry = CollectorRegistry()
        self.downloaded_bytes = Counter("llmbox_downloaded_bytes", "Content bytes written by downloads.",
                                        registry=self.registry)
        self.request_latency = Histogram("llmbox_http_request_duration_seconds", "Request latency.",
                                         ["method", "route", "status"], registry=self.registry,
                                         buckets=(.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10))
        self._job_counts = None

    def watch_jobs(self, counts) -> None:
        """counts(): {(kind, status): n}, read at scrape time."""
        self._job_counts = counts
        metrics = self

        class _Jobs:
            def collect(self):
                g = GaugeMetricFamily("llmbox_jobs", "Jobs by kind and status.", labels=["kind", "status"])
                for (kind, status), n in (metrics._job_counts() if metrics._job_counts else {}).items():
                    g.add_metric([kind, status], n)
                yield g

        self.registry.register(_Jobs())


# Any other method token (h11 accepts them all) is counted as "other": labels stay a bounded set.
METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"})


class LatencyMiddleware:
    """Pure ASGI (no BaseHTTPMiddleware) so SSE streams are not buffered."""

    def __init__(self, app: ASGIApp, metrics: Metrics):
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = {"code": 500}

        async def send_wrapper(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_wrapper)
        finally:
            # The route template, never the raw path; requests no route took (404, 401) share one value.
            path = getattr(scope.get("route"), "path", None) or "unmatched"
            method = scope["method"] if scope["method"] in METHODS else "other"
            self.metrics.request_latency.labels(method, path, str(status["code"])).observe(
                time.perf_counter() - start)

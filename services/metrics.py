"""The process's Prometheus metrics (prometheus-client), served by GET /api/metrics.

One private `CollectorRegistry` per process (`process_metrics()`), not prometheus-client's global one: tests
build their own `Metrics()` and never see another test's counts, and nothing a library registers globally
leaks into the scrape. Labels are bounded and never carry a user id or message text: HTTP routes are
templates (`/api/chat/{id}`, never a raw path), providers and error kinds come from the catalogue and
`ProviderError.kind`.

`Metrics` is the ChatService's observer (`reply_started`, `reply_finished`), the rate limiter's refusal
callback, and reads the database pool's own counters (psycopg_pool `get_stats()`) when scraped.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Protocol

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import CounterMetricFamily, GaugeMetricFamily, Metric

# Buckets in seconds. Time to first token: a local model answers in tens of ms, a busy hosted one in
# seconds. Reply duration: a few seconds typically, up to the longest reply (10 minutes).
FIRST_TOKEN_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 4.0, 8.0, 15.0, 30.0, 60.0)
REPLY_BUCKETS = (0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 20.0, 40.0, 80.0, 160.0, 320.0, 600.0)
HTTP_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)

PoolStats = Callable[[], Mapping[str, int]]


class FinishedReply(Protocol):
    """What the metrics need from a finished turn (services.chat.Outcome has these)."""

    @property
    def status(self) -> str: ...
    @property
    def error_kind(self) -> str | None: ...
    @property
    def latency_ms(self) -> int: ...
    @property
    def first_token_ms(self) -> int | None: ...


class _PoolCollector:
    """Reads each watched pool's counters at scrape time, so a scrape always shows the current state and
    the pool needs no hooks of its own."""

    def __init__(self) -> None:
        self._pools: dict[str, PoolStats] = {}
        self._lock = threading.Lock()

    def watch(self, name: str, stats: PoolStats) -> None:
        with self._lock:
            self._pools[name] = stats  # a rebuilt store replaces the old one under the same name

    def collect(self) -> Iterable[Metric]:
        in_use = GaugeMetricFamily("chat_db_pool_connections_in_use", "Pooled connections lent out.", labels=["pool"])
        size = GaugeMetricFamily("chat_db_pool_connections", "Connections the pool holds now.", labels=["pool"])
        limit = GaugeMetricFamily("chat_db_pool_max_connections", "The pool's maximum size.", labels=["pool"])
        waiting = GaugeMetricFamily(
            "chat_db_pool_requests_waiting", "Requests waiting for a connection now.", labels=["pool"]
        )
        queued = CounterMetricFamily(
            "chat_db_pool_waits", "Requests that had to wait for a connection.", labels=["pool"]
        )
        wait_s = CounterMetricFamily(
            "chat_db_pool_wait_seconds", "Total time requests waited for a connection.", labels=["pool"]
        )
        errors = CounterMetricFamily(
            "chat_db_pool_request_errors", "Requests that got no connection (timeout or error).", labels=["pool"]
        )
        with self._lock:
            pools = list(self._pools.items())
        for name, read in pools:
            try:
                s = read()
            except Exception:  # noqa: BLE001 - a closed pool must not break the whole scrape
                continue
            # psycopg_pool leaves counters out until they are non-zero.
            in_use.add_metric([name], s.get("pool_size", 0) - s.get("pool_available", 0))
            size.add_metric([name], s.get("pool_size", 0))
            limit.add_metric([name], s.get("pool_max", 0))
            waiting.add_metric([name], s.get("requests_waiting", 0))
            queued.add_metric([name], s.get("requests_queued", 0))
            wait_s.add_metric([name], s.get("requests_wait_ms", 0) / 1000)
            errors.add_metric([name], s.get("requests_errors", 0))
        return [in_use, size, limit, waiting, queued, wait_s, errors]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.http_requests = Counter(
            "chat_http_requests", "HTTP requests by route template, method and status.",
            ["route", "method", "status"], registry=r,
        )  # fmt: skip
        self.http_errors = Counter(
            "chat_http_request_errors", "HTTP requests that failed on the server (5xx or an unhandled exception).",
            ["route", "status"], registry=r,
        )  # fmt: skip
        self.http_seconds = Histogram(
            "chat_http_request_duration_seconds", "Time to the end of the response, by route template.",
            ["route"], buckets=HTTP_BUCKETS, registry=r,
        )  # fmt: skip
        self.first_token = Histogram(
            "chat_reply_first_token_seconds", "Time from the request to the first text of a reply.",
            ["provider"], buckets=FIRST_TOKEN_BUCKETS, registry=r,
        )  # fmt: skip
        self.reply_seconds = Histogram(
            "chat_reply_duration_seconds", "Time from the request to the stored end of a reply.",
            ["provider", "status"], buckets=REPLY_BUCKETS, registry=r,
        )  # fmt: skip
        self.provider_errors = Counter(
            "chat_provider_errors", "Replies that ended in an error, by provider and kind.",
            ["provider", "kind"], registry=r,
        )  # fmt: skip
        self.active_streams = Gauge("chat_active_streams", "Replies streaming now.", registry=r)
        self.rate_limited = Counter("chat_rate_limit_refusals", "Messages refused by the per-user limit.", registry=r)
        self._pools = _PoolCollector()
        r.register(self._pools)

    # --- feeds -----------------------------------------------------------------------------------

    def watch_pool(self, name: str, stats: PoolStats) -> None:
        self._pools.watch(name, stats)

    def reply_started(self, provider: str) -> None:
        self.active_streams.inc()

    def reply_finished(self, provider: str, outcome: FinishedReply | None) -> None:
        self.active_streams.dec()
        if outcome is None:  # storing the end failed before an outcome existed; the gauge is what matters
            return
        if outcome.first_token_ms is not None:
            self.first_token.labels(provider).observe(outcome.first_token_ms / 1000)
        self.reply_seconds.labels(provider, outcome.status).observe(outcome.latency_ms / 1000)
        if outcome.status == "error":
            self.provider_errors.labels(provider, outcome.error_kind or "server").inc()

    def refused(self) -> None:
        self.rate_limited.inc()

    def http_request(self, route: str, method: str, status: int, seconds: float) -> None:
        self.http_requests.labels(route, method, str(status)).inc()
        self.http_seconds.labels(route).observe(seconds)
        if status >= 500:
            self.http_errors.labels(route, str(status)).inc()

    # --- scrape ----------------------------------------------------------------------------------

    def exposition(self, accept: str | None) -> tuple[bytes, str]:
        """The scrape body and its content type, in the format the scraper asked for (Prometheus text, or
        OpenMetrics when its Accept header prefers it)."""
        encoder, content_type = choose_encoder(accept or "")
        return encoder(self.registry), content_type


_lock = threading.Lock()
_process: Metrics | None = None


def process_metrics() -> Metrics:
    """This process's metrics, created on first use (the HTTP middleware may count requests before the
    services exist)."""
    global _process
    with _lock:
        if _process is None:
            _process = Metrics()
        return _process

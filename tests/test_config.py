"""Settings: env first, secrets.toml second, defaults last; masked secrets; errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import MASK, ConfigError, Secret, redact, settings_from


def test_defaults_need_no_configuration() -> None:
    s = settings_from({})
    assert s.auth_mode == "local"
    assert s.data_dir == Path(".data")
    assert s.database_url is None  # no DATABASE_URL: the embedded database
    assert s.max_message_chars == 32_000
    assert s.resolved_users_file == Path(".data/users.yaml")
    assert s.openai_api_key is None and s.anthropic_api_key is None


def test_environment_wins_over_secrets_and_secrets_fill_gaps() -> None:
    s = settings_from({"CHAT_MAX_MESSAGE_CHARS": "100"}, {"CHAT_MAX_MESSAGE_CHARS": 5, "CHAT_AUTH": "none"})
    assert s.max_message_chars == 100
    assert s.auth_mode == "none"


def test_blank_values_count_as_unset() -> None:
    assert settings_from({"OPENAI_API_KEY": "  ", "CHAT_AUTH": ""}).openai_api_key is None


def test_secrets_are_masked_in_repr_and_str() -> None:
    s = settings_from({"OPENAI_API_KEY": "sk-live-abcdef", "DATABASE_URL": "postgresql://u:pw-123@h/db"})
    text = repr(s) + str(s)
    assert "sk-live-abcdef" not in text and "pw-123" not in text
    assert MASK in text
    assert s.openai_api_key is not None and s.openai_api_key.reveal() == "sk-live-abcdef"
    assert str(Secret("x")) == MASK


def test_redact_removes_every_secret_value_from_a_message() -> None:
    s = settings_from({"DATABASE_URL": "postgresql://app:hunter2@db/chat"})
    message = 'connection to "postgresql://app:hunter2@db/chat" failed'
    assert "hunter2" not in redact(message, s)


@pytest.mark.parametrize(
    ("env", "names"),
    [
        ({"CHAT_AUTH": "magic"}, "CHAT_AUTH"),
        ({"CHAT_MAX_MESSAGE_CHARS": "lots"}, "CHAT_MAX_MESSAGE_CHARS"),
        ({"CHAT_MAX_MESSAGE_CHARS": "0"}, "CHAT_MAX_MESSAGE_CHARS"),
        ({"CHAT_ALLOW_SIGNUP": "perhaps"}, "CHAT_ALLOW_SIGNUP"),
        ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
        ({"DATABASE_ADMIN_URL": "postgresql://a@b/c"}, "DATABASE_ADMIN_URL"),
        ({"CHAT_AUTH": "clerk"}, "CLERK_ISSUER"),
        ({"OPENAI_BASE_URL": "localhost:11434"}, "OPENAI_BASE_URL"),
        ({"OPENAI_MODELS": " , "}, "OPENAI_MODELS"),
    ],
)
def test_bad_settings_fail_with_the_variable_named(env: dict[str, str], names: str) -> None:
    with pytest.raises(ConfigError, match=names):
        settings_from(env)


def test_clerk_jwks_url_defaults_from_the_issuer() -> None:
    s = settings_from({"CHAT_AUTH": "clerk", "CLERK_ISSUER": "https://clerk.example.com/"})
    assert s.clerk_issuer == "https://clerk.example.com"
    assert s.clerk_jwks_url == "https://clerk.example.com/.well-known/jwks.json"


def test_lists_are_comma_separated() -> None:
    s = settings_from({"CLERK_AUTHORIZED_PARTIES": "https://a.example, https://b.example"})
    assert s.clerk_authorized_parties == ("https://a.example", "https://b.example")

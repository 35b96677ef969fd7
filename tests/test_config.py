"""Settings: env first, secrets.toml second, defaults last; masked secrets; errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.config import (
    MASK,
    SETTING_NAMES,
    SETTINGS,
    ConfigError,
    Declaration,
    Secret,
    Settings,
    redact,
    settings_from,
)


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


NUMBERS = [d for d in SETTINGS if d.kind in ("int", "float")]
URLS = [d for d in SETTINGS if d.kind == "url"]
# A URL setting alone must parse, with what it cannot go without: OPENAI_BASE_URL its models,
# SUPABASE_URL the project's key.
URL_COMPANIONS = {
    "OPENAI_BASE_URL": {"OPENAI_COMPAT_MODELS": "llama3.2"},
    "SUPABASE_URL": {"SUPABASE_ANON_KEY": "sb_publishable_x"},
}


def _bad_numbers(d: Declaration) -> list[str]:
    assert d.lo is not None and d.hi is not None
    below, above = d.lo - 1, d.hi + 1
    if d.kind == "int":
        return [str(int(below)), str(int(above)), "lots", "1.5", "1e3", "0x10"]
    return [str(below), str(above), "fast", "nan", "inf", "-inf", "1,5"]


def test_there_are_numeric_and_url_settings_to_check() -> None:
    assert {"CHAT_TOKEN_TTL_S", "CHAT_PROVIDER_TIMEOUT_S"} <= {d.name for d in NUMBERS}
    assert {d.name for d in URLS} == {
        "CLERK_ISSUER", "CLERK_JWKS_URL", "CLERK_API_URL", "OPENAI_BASE_URL", "SUPABASE_URL",
    }  # fmt: skip


@pytest.mark.parametrize("d", NUMBERS, ids=lambda d: d.name)
def test_every_number_has_a_range_holding_its_default_and_accepts_both_ends(d: Declaration) -> None:
    assert d.lo is not None and d.hi is not None, f"{d.name} needs lo= and hi="
    assert d.lo <= d.default <= d.hi
    for end in (d.lo, d.hi):
        raw = str(int(end)) if d.kind == "int" else str(end)
        assert getattr(settings_from({d.name: raw}), d.field_name) == end


@pytest.mark.parametrize(
    ("d", "raw"), [(d, raw) for d in NUMBERS for raw in _bad_numbers(d)], ids=lambda v: getattr(v, "name", v)
)
def test_a_bad_number_fails_naming_the_variable(d: Declaration, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"'{d.name}'"):
        settings_from({d.name: raw})


BAD_URLS = [
    "ftp://x",
    "https://",
    "not a url",
    "example.com",
    "//example.com",
    "https://exa mple.com",
    "https://example.com/a b",
    "https://example.com:port",
    "http://:8080",
    "https://[::1",
]


@pytest.mark.parametrize(
    ("d", "raw"), [(d, raw) for d in URLS for raw in BAD_URLS], ids=lambda v: getattr(v, "name", v)
)
def test_a_malformed_url_fails_naming_the_variable(d: Declaration, raw: str) -> None:
    with pytest.raises(ConfigError, match=f"'{d.name}'"):
        settings_from({d.name: raw, **URL_COMPANIONS.get(d.name, {})})


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("https://clerk.example.com/", "https://clerk.example.com"),
        (" http://localhost:11434/v1 ", "http://localhost:11434/v1"),
        ("http://[::1]:8080/v1", "http://[::1]:8080/v1"),
    ],
)
@pytest.mark.parametrize("d", URLS, ids=lambda d: d.name)
def test_a_good_url_is_kept_without_its_trailing_slash(d: Declaration, raw: str, expected: str) -> None:
    assert getattr(settings_from({d.name: raw, **URL_COMPANIONS.get(d.name, {})}), d.field_name) == expected


def test_settings_defaults_are_the_declared_defaults() -> None:
    defaults = Settings()
    assert [getattr(defaults, d.field_name) for d in SETTINGS] == [d.default for d in SETTINGS]
    assert settings_from({}) == defaults
    assert len(SETTING_NAMES) == len(SETTINGS), "two settings share a variable name"
    assert all(d.doc.strip() for d in SETTINGS), "every setting needs a one-line meaning"


def test_a_short_cursor_key_is_refused_and_a_good_one_stays_secret() -> None:
    with pytest.raises(ConfigError, match="CHAT_CURSOR_KEY"):
        settings_from({"CHAT_CURSOR_KEY": "short"})
    s = settings_from({"CHAT_CURSOR_KEY": "c" * 40})
    assert s.cursor_key is not None and s.cursor_key.reveal() == "c" * 40 and "c" * 40 not in repr(s)

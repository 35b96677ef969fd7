"""The History URL model (services/history_query.py): strict parsing, fixed notices, date ranges, and a
Hypothesis run that feeds it arbitrary query strings."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from services.history_query import (
    CURSOR_NOTICE,
    DATE_NOTICES,
    MAX_DAY,
    MIN_DAY,
    MODEL_NOTICE,
    NOTICES,
    PAGE_SIZE_NOTICE,
    RANGE_NOTICE,
    REVIEWER_NOTICE,
    ROLE_NOTICE,
    SEARCH_NOTICE,
    STATUS_NOTICE,
    TWO_POSITIONS_NOTICE,
    HistoryQuery,
    parse_query,
    usage_range,
)
from services.store import (
    MAX_QUERY_CHARS,
    ROLES,
    STATUSES,
    check_limit,
    check_query,
    check_role,
    check_status,
    clean_model,
)

BERLIN = ZoneInfo("Europe/Berlin")
# Zones at the edges of the offset range: the day after MAX_DAY must still be a datetime in each.
ZONES = (ZoneInfo("UTC"), ZoneInfo("Pacific/Kiritimati"), ZoneInfo("Etc/GMT+12"), BERLIN)
CID = uuid.UUID("6f1c2a43-0d1e-4b59-9c8e-2f4a5b6c7d8e")


def test_an_empty_url_is_the_default_first_page() -> None:
    assert parse_query({}, may_review=False) == (HistoryQuery(), [])


def test_a_full_link_parses_and_prints_back_the_same() -> None:
    params = {
        "limit": "50",
        "before": "eyJ0IjoiIn0.q83vEjRWeJA",  # <payload>.<mac>, both base64url
        "q": "apple pie",
        "conversation": str(CID),
        "role": "assistant",
        "model": "gpt-4o",
        "status": "error",
        "from": "2026-05-01",
        "to": "2026-05-03",
        "scope": "all",
    }
    query, notices = parse_query(params, may_review=True)
    assert notices == []
    assert query == HistoryQuery(
        limit=50,
        before="eyJ0IjoiIn0.q83vEjRWeJA",
        q="apple pie",
        conversation=CID,
        role="assistant",
        model="gpt-4o",
        status="error",
        date_from=date(2026, 5, 1),
        date_to=date(2026, 5, 3),
        all_users=True,
    )
    assert query.params() == params


@pytest.mark.parametrize("raw", ["²", "٣", "２０", "7", "1000", "20.0", "-20", "", "0x14", "1e1", "20\x00"])
def test_page_sizes_are_ascii_numbers_from_the_list(raw: str) -> None:
    query, notices = parse_query({"limit": raw, "before": "abc"}, may_review=False)
    assert notices == [PAGE_SIZE_NOTICE]
    assert query.limit == 20 and query.before is None  # a bad page size means the first page


@pytest.mark.parametrize(("raw", "limit"), [("10", 10), (" 50 ", 50), ("100", 100), ("020", 20)])
def test_good_page_sizes(raw: str, limit: int) -> None:
    assert parse_query({"limit": raw}, may_review=False) == (HistoryQuery(limit=limit), [])


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"before": "x", "after": "y"}, TWO_POSITIONS_NOTICE),
        ({"before": "not a cursor"}, CURSOR_NOTICE),
        ({"after": "abc=="}, CURSOR_NOTICE),
        ({"before": "a" * 257}, CURSOR_NOTICE),
        ({"before": "![x](http://e/x.png)"}, CURSOR_NOTICE),
    ],
)
def test_bad_positions_give_the_first_page(params: dict[str, str], notice: str) -> None:
    query, notices = parse_query({"q": "kept", **params}, may_review=False)
    assert notices == [notice]
    assert query == HistoryQuery(q="kept")


@pytest.mark.parametrize(
    ("params", "notice"),
    [
        ({"q": "x" * (MAX_QUERY_CHARS + 1)}, SEARCH_NOTICE),
        ({"q": "a\x00b"}, SEARCH_NOTICE),
        ({"q": "\ud800"}, SEARCH_NOTICE),  # a lone surrogate cannot be stored either
        ({"conversation": "123"}, "The conversation in the link is not valid; showing all conversations."),
        ({"role": "system"}, ROLE_NOTICE),
        ({"role": "User"}, ROLE_NOTICE),
        ({"status": "done"}, STATUS_NOTICE),
        ({"model": "m" * 201}, MODEL_NOTICE),
        ({"model": "gpt\x00"}, MODEL_NOTICE),
        ({"from": "yesterday"}, DATE_NOTICES["from"]),
        ({"from": "2026-02-30"}, DATE_NOTICES["from"]),
        ({"from": "20260501"}, DATE_NOTICES["from"]),  # fromisoformat would take it; links use one form
        ({"to": "٢٠٢٦-٠٥-٠١"}, DATE_NOTICES["to"]),
        ({"to": "9999-12-31"}, DATE_NOTICES["to"]),
        ({"from": "0001-01-01"}, DATE_NOTICES["from"]),
        ({"scope": "all"}, REVIEWER_NOTICE),
    ],
)
def test_each_bad_value_is_dropped_with_its_notice_and_keeps_the_position(params: dict[str, str], notice: str) -> None:
    query, notices = parse_query({"limit": "10", "before": "abc", **params}, may_review=False)
    assert notices == [notice]
    assert query == HistoryQuery(limit=10, before="abc")  # only the bad value goes, the position stays


def test_a_range_that_ends_before_it_starts_keeps_the_start() -> None:
    query, notices = parse_query({"from": "2026-05-03", "to": "2026-05-01"}, may_review=False)
    assert notices == [RANGE_NOTICE]
    assert (query.date_from, query.date_to) == (date(2026, 5, 3), None)


def test_blank_values_mean_any() -> None:
    params = {"q": "  ", "conversation": "", "role": "", "model": "  ", "status": "", "from": "", "to": ""}
    assert parse_query(params, may_review=False) == (HistoryQuery(), [])


def test_notices_never_quote_the_link() -> None:
    hostile = "![x](http://127.0.0.1:9/x.png) **bold** <img src=x>"
    params = {key: hostile for key in ("limit", "before", "conversation", "role", "status", "from", "to")}
    params["model"] = hostile * 10  # too long to be a model name
    _, notices = parse_query(params, may_review=False)
    assert len(notices) == 8  # every key but q: limit, position, conversation, role, status, model, dates
    for notice in notices:
        assert notice in NOTICES
        assert "![" not in notice and "](" not in notice and "**" not in notice and "<" not in notice


def test_message_filter_covers_whole_days_in_the_users_zone() -> None:
    query = HistoryQuery(date_from=date(2026, 5, 1), date_to=date(2026, 5, 2), role="user", q="pie")
    where = query.message_filter(BERLIN)
    assert where.since == datetime(2026, 4, 30, 22, tzinfo=UTC)
    assert where.until == datetime(2026, 5, 2, 22, tzinfo=UTC)  # exclusive: the start of the day after
    assert (where.role, where.query, where.all_users) == ("user", "pie", False)


def test_usage_range_defaults_to_thirty_days_ending_today() -> None:
    since, until = usage_range(HistoryQuery(), BERLIN, date(2026, 5, 30))
    assert since == datetime(2026, 5, 1, tzinfo=BERLIN) and until == datetime(2026, 5, 31, tzinfo=BERLIN)
    since, until = usage_range(HistoryQuery(date_to=date(2026, 1, 10)), BERLIN, date(2026, 5, 30))
    assert (since.date(), until.date()) == (date(2025, 12, 12), date(2026, 1, 11))
    since, until = usage_range(HistoryQuery(date_from=date(2026, 5, 29)), BERLIN, date(2026, 5, 30))
    assert (since.date(), until.date()) == (date(2026, 5, 29), date(2026, 5, 31))


def test_first_page_drops_only_the_position() -> None:
    query = HistoryQuery(limit=50, after="abc", q="x", all_users=True)
    assert query.first_page() == HistoryQuery(limit=50, q="x", all_users=True)


# --- generated links ----------------------------------------------------------------------------------

KEYS = ("limit", "before", "after", "q", "conversation", "role", "model", "status", "from", "to", "scope")
MARKDOWN = ("![x](http://127.0.0.1:9/x.png)", "**b**", "[l](javascript:x)", "<img src=x>", "`c`", "# h", "\\")
unicode_digits = st.text(st.characters(categories=["Nd", "No"]), min_size=1, max_size=4)
any_date = st.builds(
    lambda y, m, d, sep: f"{y}{sep}{m:02d}{sep}{d:02d}",
    st.integers(-10, 1_000_000),
    st.integers(0, 13),
    st.integers(0, 32),
    st.sampled_from(["-", "/", ""]),
)
values = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(codec="utf-8"), max_size=1200),  # beyond the search limit
    unicode_digits,
    any_date,
    st.dates().map(date.isoformat),
    st.sampled_from([*MARKDOWN, "\x00", "a\x00", "all", " 20 ", "1000", *map(str, (10, 20, 50, 100))]),
    st.sampled_from([*ROLES, *STATUSES, "gpt-4o", str(CID), "AAAA", "eyJ2IjoxfQ"]),
    st.uuids().map(str),
    st.from_regex(r"[A-Za-z0-9_.-]{1,300}", fullmatch=True),  # cursor-like, some too long
)
links = st.dictionaries(st.one_of(st.sampled_from(KEYS), st.text(max_size=10)), values, max_size=12)


def assert_valid(query: HistoryQuery, *, may_review: bool) -> None:
    """What the store and the page rely on, checked with the store's own checkers."""
    assert check_limit(query.limit) == query.limit and query.limit in (10, 20, 50, 100)
    assert not (query.before and query.after)
    for cursor in (query.before, query.after):
        assert cursor is None or (0 < len(cursor) <= 256 and cursor.isascii())
    assert check_query(query.q) == query.q == query.q.strip()
    assert query.role is None or check_role(query.role) == query.role
    assert query.status is None or check_status(query.status) == query.status
    assert query.model is None or clean_model(query.model) == query.model
    assert query.conversation is None or isinstance(query.conversation, uuid.UUID)
    for day in (query.date_from, query.date_to):
        assert day is None or MIN_DAY <= day <= MAX_DAY
    if query.date_from and query.date_to:
        assert query.date_from <= query.date_to
    assert may_review or not query.all_users
    for tz in ZONES:
        where = query.message_filter(tz)
        where.scope()
        usage_range(query, tz, MAX_DAY)
        if where.since and where.until:
            assert where.since < where.until


@settings(max_examples=300, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
@given(params=links, may_review=st.booleans())
@example(params={"limit": "²", "to": "9999-12-31", "role": MARKDOWN[0]}, may_review=False)
@example(params={"q": "\ud800", "model": "\udfff", "before": "\ud800"}, may_review=True)
@example(params={"from": "9999-12-31", "to": "0001-01-01", "scope": "all"}, may_review=True)
def test_any_link_parses_to_a_valid_query(params: dict[str, str], may_review: bool) -> None:
    query, notices = parse_query(params, may_review=may_review)
    assert_valid(query, may_review=may_review)
    assert set(notices) <= NOTICES  # fixed sentences only: nothing from the link is echoed
    # What the page writes back to the URL reads as the same query, with nothing to complain about.
    assert parse_query(query.params(), may_review=may_review) == (query, [])

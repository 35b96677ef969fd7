"""GET /api/chat/history, GET /api/conversations, DELETE /api/conversations/{id}: stored history as JSON.

History takes the History page's own parameters, parsed by services/history_query.py (`q`, `role`, `model`,
`status`, `feedback`, `from`, `to`, `scope=all` for reviewers, `before`/`after` cursors), plus `conversation_id` (the
page calls it `conversation`) and any `limit` from 1 to 100. Where the page drops a bad value with a notice
and shows the first page, the API answers 400 and says which parameter was wrong: a script should hear
about its mistake, not get a different listing. Dates are days in UTC.
"""

from __future__ import annotations

import uuid
from dataclasses import replace
from typing import Any
from zoneinfo import ZoneInfo

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from api.credentials import authenticate
from api.errors import ApiError, json_route
from services import history_query as hq
from services.auth import Principal
from services.runtime import Services, shared_services
from services.store import Conversation, HistoryRow, InvalidCursor, check_limit, parse_uuid

UTC = ZoneInfo("UTC")
DEFAULT_LIMIT = 20
MAX_LIMIT = 100
# Which parameter each of the page's notices is about.
NOTICE_PARAMS = {
    hq.TWO_POSITIONS_NOTICE: "before/after",
    hq.CURSOR_NOTICE: "before/after",
    hq.SEARCH_NOTICE: "q",
    hq.CONVERSATION_NOTICE: "conversation_id",
    hq.ROLE_NOTICE: "role",
    hq.STATUS_NOTICE: "status",
    hq.MODEL_NOTICE: "model",
    hq.FEEDBACK_NOTICE: "feedback",
    hq.DATE_NOTICES["from"]: "from",
    hq.DATE_NOTICES["to"]: "to",
    hq.RANGE_NOTICE: "from/to",
    hq.REVIEWER_NOTICE: "scope",
}


async def _caller(request: Request) -> tuple[Services, Principal]:
    services = await run_in_threadpool(shared_services)
    return services, await run_in_threadpool(authenticate, services, request)


def parse_limit(raw: str | None) -> int:
    if raw is None:
        return DEFAULT_LIMIT
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= MAX_LIMIT:
        raise ApiError(400, "invalid_input", f"'limit' must be a whole number from 1 to {MAX_LIMIT}.")
    return check_limit(int(raw))


def parse_history_params(params: dict[str, str], *, may_review: bool) -> hq.HistoryQuery:
    page_params = {k: v for k, v in params.items() if k not in ("limit", "conversation_id")}
    if "conversation_id" in params:
        page_params["conversation"] = params["conversation_id"]
    query, notices = hq.parse_query(page_params, may_review=may_review)
    if notices:
        wrong = sorted({NOTICE_PARAMS.get(n, "query") for n in notices})
        raise ApiError(400, "invalid_input", f"Invalid value for: {', '.join(wrong)}.")
    return replace(query, limit=parse_limit(params.get("limit")))


def message_json(row: HistoryRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "conversation_id": str(row.conversation_id),
        "conversation_title": row.conversation_title,
        "user_id": row.user_id,
        "role": row.role,
        "content": row.content,
        "model": row.model,
        "status": row.status,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "latency_ms": row.latency_ms,
        "created_at": row.created_at.isoformat(),
        "feedback": row.feedback,
        "feedback_comment": row.feedback_comment,
    }


def conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "created_at": conversation.created_at.isoformat(),
        "updated_at": conversation.updated_at.isoformat(),
    }


@json_route
async def chat_history(request: Request) -> Response:
    services, principal = await _caller(request)
    query = parse_history_params(dict(request.query_params), may_review=principal.is_reviewer)
    view = await run_in_threadpool(services.history.page, principal, query, UTC)
    if view.notice is not None:
        # The service fell back to the first page; an API client gets told its cursor was not valid.
        raise InvalidCursor("The page cursor is not valid for this listing (damaged, expired or another user's).")
    return JSONResponse(
        {
            "items": [message_json(row) for row in view.page.items],
            "next_cursor": view.page.next_cursor,
            "prev_cursor": view.page.prev_cursor,
        }
    )


@json_route
async def list_conversations(request: Request) -> Response:
    services, principal = await _caller(request)
    limit = parse_limit(request.query_params.get("limit"))
    before = request.query_params.get("before") or None
    page = await run_in_threadpool(services.history.conversations, principal, limit, before)
    return JSONResponse({"items": [conversation_json(c) for c in page.items], "next_cursor": page.next_cursor})


@json_route
async def delete_conversation(request: Request) -> Response:
    services, principal = await _caller(request)
    conversation_id: uuid.UUID = parse_uuid(request.path_params["conversation_id"])
    await run_in_threadpool(services.history.delete_conversation, principal, conversation_id)
    return Response(status_code=204)

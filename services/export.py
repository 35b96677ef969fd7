"""Exports of a user's history: all messages as CSV or JSON, one conversation as Markdown.

Each export is a generator of byte chunks: CSV straight from Postgres COPY, JSON and Markdown from the
store's keyset batches (`iter_history`), so 100,000 messages never sit in memory as objects at once.
`spool` writes the chunks to a temporary file that `st.download_button` can read. Output is
byte-stable: rows in (created_at, id) order, times in UTC with fixed precision, JSON keys sorted, no
export timestamp.
"""

from __future__ import annotations

import base64
import io
import json
import re
import tempfile
import uuid
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from typing import Any

from services.auth import Principal
from services.paging import walk_pages
from services.store import Conversation, ExportedAttachment, HistoryRow, NotFound, ReviewStore

JSON_FORMAT = "chat-history/1"
# Rows per output chunk: large enough that the generator overhead is noise, small enough to stay tiny.
CHUNK_ROWS = 500
_LINE_ENDINGS = re.compile(r"\r\n|\r|\n")


def utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def _message_json(row: HistoryRow) -> dict[str, Any]:
    return {
        "id": str(row.id),
        "conversation_id": str(row.conversation_id),
        # The message this one follows or answers (null for a first message): enough to rebuild the tree,
        # edits and regenerated versions included.
        "parent_id": str(row.parent_id) if row.parent_id else None,
        "role": row.role,
        "content": row.content,
        "model": row.model,
        "status": row.status,
        "input_tokens": row.input_tokens,
        "output_tokens": row.output_tokens,
        "latency_ms": row.latency_ms,
        "created_at": utc_text(row.created_at),
        # The author's thumb on a reply ("up", "down" or null) and their comment with it (or null).
        "feedback": row.feedback,
        "feedback_comment": row.feedback_comment,
    }


def _conversation_json(conversation: Conversation) -> dict[str, Any]:
    return {
        "id": str(conversation.id),
        "title": conversation.title,
        "created_at": utc_text(conversation.created_at),
        "updated_at": utc_text(conversation.updated_at),
        "current_leaf_id": str(conversation.current_leaf_id) if conversation.current_leaf_id else None,
        "instructions": conversation.instructions,
    }


def _attachment_json(item: ExportedAttachment) -> dict[str, Any]:
    # The original, whole (base64): an export keeps everything the user attached, byte for byte.
    return {
        "id": str(item.id),
        "message_id": str(item.message_id),
        "name": item.name,
        "media_type": item.media_type,
        "size": item.size,
        "created_at": utc_text(item.created_at),
        "data_base64": base64.b64encode(item.data).decode("ascii"),
    }


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, sort_keys=True, separators=(",", ":"))


def json_chunks(
    user_id: str,
    conversations: Iterable[Conversation],
    rows: Iterable[HistoryRow],
    attachments: Iterable[ExportedAttachment] = (),
) -> Iterator[bytes]:
    """One JSON document: {"format", "user_id", "conversations": [...], "messages": [...], "attachments":
    [...]}, one item a line. Attachments carry their message's id and their original as base64."""
    yield f'{{"format":{_dumps(JSON_FORMAT)},"user_id":{_dumps(user_id)},\n"conversations":['.encode()
    sections: tuple[tuple[str, Iterable[Any]], ...] = (
        ("conversations", conversations),
        ("messages", rows),
        ("attachments", attachments),
    )
    for section, items in sections:
        if section != "conversations":
            yield f'],\n"{section}":['.encode()
        lines: list[str] = []
        first = True
        for item in items:
            if isinstance(item, Conversation):
                data = _conversation_json(item)
            elif isinstance(item, ExportedAttachment):
                data = _attachment_json(item)
            else:
                data = _message_json(item)
            lines.append(("\n" if first else ",\n") + _dumps(data))
            first = False
            if len(lines) >= CHUNK_ROWS or isinstance(item, ExportedAttachment):  # a file can be megabytes
                yield "".join(lines).encode()
                lines = []
        yield "".join(lines).encode()
    yield b"\n]}\n"


def markdown_chunks(conversation: Conversation, rows: Iterable[HistoryRow]) -> Iterator[bytes]:
    """One conversation as Markdown: a heading per message with who, model, time and non-final status; under
    a reply the author rated, their thumb and comment (quoted like the content: it is typed text)."""
    started = utc_text(conversation.created_at)
    yield f"# {conversation.title}\n\nConversation {conversation.id}, started {started}\n".encode()
    for row in rows:
        who = "User" if row.role == "user" else f"Assistant ({row.model})"
        status = "" if row.status == "complete" else f" · {row.status}"
        text = f"\n## {who} · {utc_text(row.created_at)}{status}\n\n{_quoted(row.content)}\n"
        if row.feedback is not None:
            thumb = "👍 thumbs up" if row.feedback == "up" else "👎 thumbs down"
            comment = row.feedback_comment
            text += f"\nFeedback: {thumb}" + (f", with a comment:\n\n{_quoted(comment)}\n" if comment else "\n")
        yield text.encode()


def _quoted(content: str) -> str:
    """Content as a block quote, every line prefixed: whatever it holds (`## User ...`, a setext
    underline, an unclosed code fence) stays inside the quote and cannot start a message heading of the
    export's own. CommonMark's line endings are LF, CR and CRLF, so all three split lines here."""
    return "\n".join(f"> {line}" if line else ">" for line in _LINE_ENDINGS.split(content))


def all_conversations(store: ReviewStore, principal: Principal) -> Iterator[Conversation]:
    """Every conversation of the user, by keyset pages of the existing listing, a page at a time."""
    for page in walk_pages(lambda before: store.list_conversations(principal, limit=200, before=before)):
        yield from page.items


def export_csv(store: ReviewStore, principal: Principal) -> Iterator[bytes]:
    """CSV of every message, streamed by the database (COPY); see ReviewStore.export_csv."""
    return store.export_csv(principal)


def export_json(store: ReviewStore, principal: Principal) -> Iterator[bytes]:
    # Conversations come most recently active first (the listing's keyset order): stable for equal data.
    return json_chunks(
        principal.user_id,
        all_conversations(store, principal),
        store.iter_history(principal),
        store.iter_attachments(principal),
    )


def export_markdown(store: ReviewStore, principal: Principal, conversation_id: uuid.UUID | str) -> Iterator[bytes]:
    conversation = store.get_conversation(principal, conversation_id)
    if conversation.user_id != principal.user_id:
        # A reviewer can read others' conversations, but an export is "my data" only.
        raise NotFound("That conversation does not exist.")
    return markdown_chunks(conversation, store.iter_history(principal, conversation.id))


def spool(chunks: Iterable[bytes]) -> io.FileIO:
    """Write chunks to a temporary file and rewind it: the download is read from disk, not from a list.
    Unbuffered on purpose: st.download_button accepts raw files (io.RawIOBase), not buffered ones."""
    out = tempfile.TemporaryFile(buffering=0)
    for chunk in chunks:
        out.write(chunk)
    out.seek(0)
    return out

"""Model providers behind one small protocol, and the catalogue of models the settings make available.

A provider turns a list of chat turns into a `ReplyStream`: an iterator of text chunks that knows its
token usage once it is exhausted and can be closed early (stop button, closed tab). Every failure a
provider can have reaches the caller as a `ProviderError` with a user-safe message and a `kind` code.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Literal, Protocol

from services.errors import UserError

# "system" comes only from the OpenAI-compatible door, which sends the provider its client's own system prompt.
TurnRole = Literal["system", "user", "assistant"]
ErrorKind = Literal["rate_limited", "timeout", "server", "connection", "auth", "bad_request", "interrupted"]


@dataclass(frozen=True)
class ImagePart:
    """An image sent with a user turn, in each provider's own format (checked and sized by
    services/attachments.py)."""

    name: str
    media_type: str  # image/png, image/jpeg, image/webp or image/gif
    data: bytes


@dataclass(frozen=True)
class Turn:
    """One message of the context sent to a model. `images` only on user turns, and only for a model that
    takes images (the chat service refuses them for any other before anything is sent)."""

    role: TurnRole
    content: str
    images: tuple[ImagePart, ...] = ()


@dataclass(frozen=True)
class Usage:
    input_tokens: int | None = None
    output_tokens: int | None = None


class ProviderError(UserError):
    """A provider call failed. `message` is safe to show; it never contains keys or raw response bodies."""

    def __init__(self, kind: ErrorKind, message: str, *, status: int | None = None) -> None:
        # Provider labels are written for mid-sentence ("the model server"); a message may start with one.
        super().__init__(message[:1].upper() + message[1:])
        self.kind = kind
        self.status = status

    def __repr__(self) -> str:
        return f"ProviderError({self.kind!r}, {self.message!r}, status={self.status!r})"


class ReplyStream(Protocol):
    """Text chunks of one reply. `usage` is filled in once the stream has been read to the end."""

    usage: Usage | None

    def __iter__(self) -> Iterator[str]: ...

    def close(self) -> None: ...


class Provider(Protocol):
    """Opens a streamed reply. Implementations raise ProviderError for every failure, at open or while
    iterating."""

    name: str

    def stream(
        self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None
    ) -> ReplyStream:
        """`system`: the conversation's standing instructions, sent in the provider's own form (OpenAI: a
        leading system message; Anthropic: the `system` parameter). Callers pass it only when set."""
        ...


def retry_after_s(headers: Mapping[str, str] | None) -> int | None:
    """Seconds from a `Retry-After` header (delta-seconds or an HTTP date); None when absent or unusable."""
    value = (headers or {}).get("retry-after")
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            seconds = (parsedate_to_datetime(value) - datetime.now(UTC)).total_seconds()
        except (TypeError, ValueError, IndexError):
            return None
    return max(1, math.ceil(seconds)) if seconds <= 24 * 3600 else None


def error_for_status(status: int, provider_label: str, retry_after: int | None = None) -> ProviderError:
    """The user-facing error for an HTTP status from a provider (bodies are not shown: they can echo input).
    `retry_after` (seconds, from the provider's Retry-After) tells a rate-limited user how long to wait."""
    if status == 429:
        wait = "Wait a moment" if retry_after is None else f"Wait about {_duration(retry_after)}"
        return ProviderError(
            "rate_limited",
            f"{provider_label} is rate-limiting requests right now. {wait} and retry.",
            status=status,
        )
    if status in (401, 403):
        return ProviderError(
            "auth", f"{provider_label} rejected the API key. Check the key in the settings.", status=status
        )
    if status in (400, 404, 413, 422):
        return ProviderError(
            "bad_request", f"{provider_label} refused the request (HTTP {status}); check the model name.", status=status
        )
    return ProviderError(
        "server", f"{provider_label} had a problem answering (HTTP {status}). Please retry.", status=status
    )


def _duration(seconds: int) -> str:
    if seconds < 90:
        return f"{seconds} second{'s' if seconds != 1 else ''}"
    minutes = math.ceil(seconds / 60)
    return f"{minutes} minutes"

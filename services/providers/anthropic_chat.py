"""Anthropic Messages streaming (official SDK 2.x: `messages.stream`, `text_stream`, final usage).

SDK 2.x no longer takes temperature/top_p/top_k, so none are sent.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any, Literal, cast

import anthropic
from anthropic.types import (
    AssistantMessageParam,
    Base64ImageSourceParam,
    ImageBlockParam,
    MessageParam,
    TextBlockParam,
    UserMessageParam,
)

from services.config import Settings
from services.providers import ProviderError, Turn, Usage, error_for_status, retry_after_s

LABEL = "Anthropic"
_MediaType = Literal["image/jpeg", "image/png", "image/gif", "image/webp"]


def _error(exc: BaseException) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, anthropic.APITimeoutError):
        return ProviderError("timeout", f"{LABEL} did not answer in time. Please retry.")
    if isinstance(exc, anthropic.APIConnectionError):
        return ProviderError("connection", f"Could not reach {LABEL} (the connection failed or dropped). Please retry.")
    if isinstance(exc, anthropic.APIStatusError):
        if exc.status_code == 200:
            # An `error` event inside the stream (e.g. overloaded_error) after the 200 response started.
            return ProviderError("server", f"{LABEL} stopped the reply with an error. Please retry.")
        return error_for_status(exc.status_code, LABEL, retry_after_s(exc.response.headers))
    name = type(exc).__name__
    # httpx2 read timeouts and dropped connections surface unwrapped from the stream body.
    if "Timeout" in name:
        return ProviderError("timeout", f"{LABEL} did not answer in time. Please retry.")
    return ProviderError("connection", f"The connection to {LABEL} failed or dropped. Please retry.")


def _message(turn: Turn) -> MessageParam:
    if turn.role == "user" and turn.images:
        # Images first, then the text: Anthropic's guidance for image questions.
        blocks: list[ImageBlockParam | TextBlockParam] = [
            ImageBlockParam(
                type="image",
                source=Base64ImageSourceParam(
                    type="base64",
                    media_type=cast(_MediaType, image.media_type),
                    data=base64.b64encode(image.data).decode("ascii"),
                ),
            )
            for image in turn.images
        ]
        blocks.append(TextBlockParam(type="text", text=turn.content))
        return UserMessageParam(role="user", content=blocks)
    if turn.role == "user":
        return UserMessageParam(role="user", content=turn.content)
    return AssistantMessageParam(role="assistant", content=turn.content)


class _AnthropicReply:
    def __init__(self, manager: Any) -> None:
        self._manager = manager
        self._stream: Any = None
        self.usage: Usage | None = None

    def open(self) -> None:
        try:
            self._stream = self._manager.__enter__()
        except Exception as exc:
            raise _error(exc) from exc

    def __iter__(self) -> Iterator[str]:
        try:
            for text in self._stream.text_stream:
                if text:
                    yield text
            final = self._stream.get_final_message()
            self.usage = Usage(final.usage.input_tokens, final.usage.output_tokens)
        except Exception as exc:
            raise _error(exc) from exc
        if final.stop_reason is None:
            raise ProviderError("connection", f"The reply from {LABEL} ended before it was complete.")

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()


class AnthropicProvider:
    name = "anthropic"
    label = LABEL

    def __init__(
        self,
        *,
        api_key: str,
        base_url: str | None = None,
        timeout_s: float = Settings.provider_timeout_s,
        max_retries: int = 0,
    ) -> None:
        self._client = anthropic.Anthropic(
            api_key=api_key, base_url=base_url, timeout=timeout_s, max_retries=max_retries
        )

    def stream(
        self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None
    ) -> _AnthropicReply:
        # Anthropic takes instructions as the top-level `system` parameter, never as a message: the
        # conversation's own and any system turns a client sent (the OpenAI-compatible door), in order.
        system = "\n\n".join([*([system] if system else []), *(t.content for t in turns if t.role == "system")])
        extra: dict[str, Any] = {"system": system} if system else {}
        reply = _AnthropicReply(
            self._client.messages.stream(
                model=model,
                max_tokens=max_tokens,
                messages=[_message(t) for t in turns if t.role != "system"],
                **extra,
            )
        )
        reply.open()
        return reply

    def close(self) -> None:
        self._client.close()

"""OpenAI Chat Completions streaming (official SDK 3.x), for api.openai.com and OpenAI-compatible servers
(Ollama, vLLM, llama.cpp server, LM Studio) reached through a base URL."""

from __future__ import annotations

import base64
from collections.abc import Iterator, Sequence
from typing import Any

import openai
from openai.types.chat import (
    ChatCompletionAssistantMessageParam,
    ChatCompletionContentPartImageParam,
    ChatCompletionContentPartParam,
    ChatCompletionContentPartTextParam,
    ChatCompletionMessageParam,
    ChatCompletionSystemMessageParam,
    ChatCompletionUserMessageParam,
)

from services.config import Settings
from services.providers import ProviderError, Turn, Usage, error_for_status, retry_after_s

OPENAI_BASE_URL = "https://api.openai.com/v1"


def _error(exc: BaseException, label: str) -> ProviderError:
    if isinstance(exc, ProviderError):
        return exc
    if isinstance(exc, openai.APITimeoutError):
        return ProviderError("timeout", f"{label} did not answer in time. Please retry.")
    if isinstance(exc, openai.APIConnectionError):
        return ProviderError("connection", f"Could not reach {label} (the connection failed or dropped). Please retry.")
    if isinstance(exc, openai.APIStatusError):
        return error_for_status(exc.status_code, label, retry_after_s(exc.response.headers))
    if isinstance(exc, openai.APIError):
        # An error event inside a 200 stream: the body is the provider's, not ours to show verbatim.
        return ProviderError("server", f"{label} stopped the reply with an error. Please retry.")
    return ProviderError("connection", f"The connection to {label} failed. Please retry.")


def _message(turn: Turn) -> ChatCompletionMessageParam:
    if turn.role == "user" and turn.images:
        # Content parts: the text, then each image as a base64 data URL (every OpenAI-compatible server
        # that takes images reads this form; none can fetch a URL from here).
        text = ChatCompletionContentPartTextParam(type="text", text=turn.content)
        parts: list[ChatCompletionContentPartParam] = [text]
        parts += [
            ChatCompletionContentPartImageParam(
                type="image_url",
                image_url={"url": f"data:{image.media_type};base64,{base64.b64encode(image.data).decode('ascii')}"},
            )
            for image in turn.images
        ]
        return ChatCompletionUserMessageParam(role="user", content=parts)
    if turn.role == "user":
        return ChatCompletionUserMessageParam(role="user", content=turn.content)
    if turn.role == "system":
        return ChatCompletionSystemMessageParam(role="system", content=turn.content)
    return ChatCompletionAssistantMessageParam(role="assistant", content=turn.content)


class _OpenAIReply:
    def __init__(self, stream: Any, label: str) -> None:
        self._stream = stream
        self._label = label
        self.usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        finished = False
        try:
            for chunk in self._stream:
                # With include_usage the last chunk has no choices and carries the usage.
                if chunk.usage is not None:
                    self.usage = Usage(chunk.usage.prompt_tokens, chunk.usage.completion_tokens)
                for choice in chunk.choices:
                    if choice.index != 0:
                        continue
                    finished = finished or choice.finish_reason is not None
                    if choice.delta is not None and choice.delta.content:
                        yield choice.delta.content
        except Exception as exc:
            raise _error(exc, self._label) from exc
        if not finished:
            # A clean end of body without finish_reason is a cut-short reply, not a complete one.
            raise ProviderError("connection", f"The reply from {self._label} ended before it was complete.")

    def close(self) -> None:
        self._stream.close()


class OpenAIProvider:
    """`name` is the prefix of the model ids it serves ("openai" or "compat")."""

    def __init__(
        self,
        *,
        name: str = "openai",
        label: str = "OpenAI",
        api_key: str | None,
        base_url: str | None = None,
        timeout_s: float = Settings.provider_timeout_s,
        max_retries: int = 0,
    ) -> None:
        self.name = name
        self.label = label
        # Local servers often need no key, but the SDK insists on one; it is only sent to base_url.
        # max_retries=0: a hidden retry after a 429 can stall the page for a minute; the UI has Retry.
        self._client = openai.OpenAI(
            api_key=api_key or "not-needed",
            base_url=base_url or OPENAI_BASE_URL,
            timeout=timeout_s,
            max_retries=max_retries,
        )

    def stream(
        self, model: str, turns: Sequence[Turn], *, max_tokens: int, system: str | None = None
    ) -> _OpenAIReply:
        messages = [_message(t) for t in turns]
        if system:
            # "system" rather than the newer "developer" role: every OpenAI-compatible server knows it.
            messages.insert(0, ChatCompletionSystemMessageParam(role="system", content=system))
        try:
            stream = self._client.chat.completions.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_completion_tokens=max_tokens,
            )
        except Exception as exc:
            raise _error(exc, self.label) from exc
        return _OpenAIReply(stream, self.label)

    def list_models(self, timeout_s: float) -> list[str]:
        """The model ids the server lists at `GET <base_url>/models`; ProviderError when it cannot say."""
        try:
            page = self._client.with_options(timeout=timeout_s).models.list()
            return [model.id for model in page.data if isinstance(model.id, str) and model.id]
        except Exception as exc:
            raise _error(exc, self.label) from exc

    def close(self) -> None:
        self._client.close()

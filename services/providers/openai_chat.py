"""OpenAI Chat Completions streaming (official SDK 3.x), for api.openai.com and OpenAI-compatible servers
(Ollama, vLLM, llama.cpp server, LM Studio) reached through a base URL."""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Iterator, Sequence
from typing import Any

import anyio
import httpx2
import openai
from openai import APIResponse
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
from services.providers.sse import sse_data

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
        return _stream_error(label)
    return ProviderError("connection", f"The connection to {label} failed. Please retry.")


def _stream_error(label: str) -> ProviderError:
    # An error event inside a 200 stream: the body is the provider's, not ours to show verbatim.
    return ProviderError("server", f"{label} stopped the reply with an error. Please retry.")


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
    """Reads the chunks of an open streamed response as plain JSON.

    Why not the SDK's `Stream`: it builds a pydantic `ChatCompletionChunk` (and its choices and deltas) for
    every chunk, and with 50 streams of 100 chunks a second that was most of the process's CPU
    (bench/load.py, py-spy). The SDK still sends the request and handles its auth, status errors and
    retries; from the body on, this does what its `Stream` does (stops at `[DONE]`, an `error` object is an
    error, read failures become APITimeoutError or APIConnectionError) with json and `sse_data`."""

    def __init__(self, response: APIResponse[Any], label: str) -> None:
        self._response = response
        self._label = label
        self.usage: Usage | None = None

    def __iter__(self) -> Iterator[str]:
        finished = False
        try:
            for data in sse_data(self._body()):
                if data.startswith("[DONE]"):
                    break
                chunk = json.loads(data)
                if not isinstance(chunk, dict):
                    raise ValueError("a stream chunk that is not an object")
                if chunk.get("error"):
                    raise _stream_error(self._label)
                # With include_usage the last chunk has no choices and carries the usage.
                usage = chunk.get("usage")
                if isinstance(usage, dict):
                    self.usage = Usage(_count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens")))
                for choice in chunk.get("choices") or ():
                    if choice.get("index", 0) != 0:
                        continue
                    finished = finished or choice.get("finish_reason") is not None
                    content = (choice.get("delta") or {}).get("content")
                    if content and isinstance(content, str):
                        yield content
        except Exception as exc:
            raise _error(exc, self._label) from exc
        finally:
            self._response.close()
        if not finished:
            # A clean end of body without finish_reason is a cut-short reply, not a complete one.
            raise ProviderError("connection", f"The reply from {self._label} ended before it was complete.")

    def _body(self) -> Iterator[bytes]:
        # The SDK's own mapping of read failures (its Stream._iter_events), so every fault keeps its kind.
        try:
            yield from self._response.iter_bytes()
        except httpx2.TimeoutException as exc:
            raise openai.APITimeoutError(request=self._response.http_response.request) from exc
        except (httpx2.RequestError, ssl.SSLError, anyio.EndOfStream) as exc:
            raise openai.APIConnectionError(request=self._response.http_response.request) from exc

    def close(self) -> None:
        self._response.close()


def _count(value: object) -> int | None:
    return value if isinstance(value, int) else None


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
            # Entering sends the request and raises for an error status, as create() does; the body is
            # left unread for _OpenAIReply.
            response = self._client.chat.completions.with_streaming_response.create(
                model=model,
                messages=messages,
                stream=True,
                stream_options={"include_usage": True},
                max_completion_tokens=max_tokens,
            ).__enter__()
        except Exception as exc:
            raise _error(exc, self.label) from exc
        return _OpenAIReply(response, self.label)

    def list_models(self, timeout_s: float) -> list[str]:
        """The model ids the server lists at `GET <base_url>/models`; ProviderError when it cannot say."""
        try:
            page = self._client.with_options(timeout=timeout_s).models.list()
            return [model.id for model in page.data if isinstance(model.id, str) and model.id]
        except Exception as exc:
            raise _error(exc, self.label) from exc

    def close(self) -> None:
        self._client.close()

"""Anthropic chat adapter: Claude models through the official async SDK (``anthropic.AsyncAnthropic``), streamed.

The adapter turns chat messages into a Messages API request (system messages go to the top-level ``system``
parameter: Anthropic has no system role), streams ``text_delta`` pieces as ``Delta`` items and ends with one
``UsageReport``. Every failure becomes a typed ``ProviderError`` whose message names the provider and status and
never the key. Things the SDK (anthropic 2.14, see docs/FINDINGS) does not do for us, and this module does:

* a stream that ends cleanly without ``message_stop`` raises nothing in the SDK: we raise ``MalformedStream``;
* mid-stream network failures are not wrapped: a truncated body surfaces as a raw ``httpx2.RemoteProtocolError``
  and a stall as a raw ``httpx2.ReadTimeout``;
* an ``error`` event inside a 200 stream is an ``APIStatusError`` with status 200 even for ``overloaded_error``:
  it is mapped by the error type in its body;
* ``temperature`` and ``top_p`` are no longer keyword arguments of ``messages.create`` (the SDK removed them):
  ``temperature`` travels in ``extra_body``; ``top_p`` is not sent, because current Claude models reject a request
  that sets both.

Continuation (failover mid-reply) uses Anthropic's assistant prefill: the partial reply is sent as the final
assistant message, without trailing whitespace (the API rejects it), and the returned text is joined onto the
partial so that ``continue_from + streamed`` reads as one reply.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import anthropic
import httpx2

from ..config import ProviderConfig
from ..errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from ..secrets import Secret, redact
from . import (
    ChatMessage,
    Delta,
    GenerationParams,
    ProviderTimeouts,
    StreamItem,
    UsageReport,
    estimate_tokens,
    register_adapter,
)

log = logging.getLogger(__name__)

_AUTH_STATUSES = {401, 402, 403}  # 402 billing_error: the account, not the request, is the problem
_BAD_REQUEST_STATUSES = {400, 404, 413, 422}
# Error types of an `error` event inside a stream (HTTP status 200), by the typed error they become.
_UNAVAILABLE_TYPES = {"overloaded_error", "api_error"}


def _retry_after(headers: Mapping[str, str] | None) -> float | None:
    """Seconds to wait from ``retry-after`` (seconds or an HTTP date) or ``retry-after-ms``; None when absent."""
    if not headers:
        return None
    value = headers.get("retry-after-ms")
    if value:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def _join_whitespace(emitted: str, lead: str) -> str:
    """The whitespace to yield when the consumer already has ``emitted`` and the model started with ``lead``."""
    if lead.startswith(emitted):
        return lead[len(emitted):]
    if emitted.startswith(lead):
        return ""
    return lead


class _PrefillJoiner:
    """Joins a prefill continuation onto the partial reply the consumer already has.

    The prefill is sent without its trailing whitespace ``emitted``, so the model usually starts with whitespace
    of its own. Leading whitespace is held back (it can span several deltas) until the first visible character,
    then reconciled with ``emitted`` so no space is doubled and none is invented.
    """

    def __init__(self, emitted: str) -> None:
        self._emitted = emitted
        self._pending = ""
        self._done = not emitted  # nothing was stripped: the model's text joins as it is

    def feed(self, text: str) -> str:
        if self._done:
            return text
        self._pending += text
        visible = self._pending.lstrip()
        if not visible:
            return ""
        lead = self._pending[: len(self._pending) - len(visible)]
        self._done = True
        self._pending = ""
        return _join_whitespace(self._emitted, lead) + visible

    def flush(self) -> str:
        if self._done or not self._pending:
            return ""
        self._done = True
        return _join_whitespace(self._emitted, self._pending)


class AnthropicChatProvider:
    """``ChatProvider`` for one Claude model through ``anthropic.AsyncAnthropic`` (SDK retries off)."""

    def __init__(self, *, model: str, api_key: Secret | None, base_url: str | None = None,
                 headers: Mapping[str, str] | None = None, timeouts: ProviderTimeouts = ProviderTimeouts()) -> None:
        self.model = model
        self.name = f"anthropic:{model}"
        self.base_url = base_url
        self.timeouts = timeouts
        self._has_key = api_key is not None
        self._client: anthropic.AsyncAnthropic | None = None
        if api_key is not None:
            # Built once: it owns the connection pool. Retries are the failover chain's job, and the read timeout
            # is only a backstop (the chain enforces first-token and idle gaps itself).
            self._client = anthropic.AsyncAnthropic(
                api_key=api_key.reveal(),
                base_url=base_url,
                default_headers=dict(headers or {}),
                max_retries=0,
                timeout=anthropic.Timeout(max(timeouts.first_token, timeouts.idle), connect=timeouts.connect),
            )

    def __repr__(self) -> str:
        base = redact(self.base_url) if self.base_url else None
        return (f"AnthropicChatProvider(model={self.model!r}, base_url={base!r}, "
                f"api_key={'[redacted]' if self._has_key else None})")

    def count_tokens(self, text: str) -> int:
        """A rough estimate (about four characters a token); Claude's tokenizer is not available offline."""
        return estimate_tokens(text)

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.close()

    # -- request building -----------------------------------------------------------------------------------

    @staticmethod
    def _request_messages(messages: list[ChatMessage], prefill: str) -> tuple[str, list[dict[str, Any]]]:
        """``(system, messages)``: system messages joined for the top-level parameter, the rest in order."""
        system_parts: list[str] = []
        convo: list[dict[str, Any]] = []
        for message in messages:
            if message["role"] == "system":
                if message["content"].strip():
                    system_parts.append(message["content"])
            elif message["content"].strip():
                # Anthropic rejects empty text content; the API merges consecutive same-role turns, so dropping
                # an empty one (a cancelled reply, say) keeps the conversation valid.
                convo.append({"role": message["role"], "content": message["content"]})
        if prefill:
            convo.append({"role": "assistant", "content": prefill})
        return "\n\n".join(system_parts), convo

    # -- streaming ------------------------------------------------------------------------------------------

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        """Stream the reply (or, with ``continue_from``, the rest of a partial reply) as ``Delta`` items, then one
        ``UsageReport``. Raises ``ProviderError`` subclasses only."""
        if self._client is None:
            raise ProviderAuthError(f"{self.name}: no API key configured (ANTHROPIC_API_KEY)", provider=self.name)
        prefill = continue_from.rstrip()
        system, convo = self._request_messages(messages, prefill)
        kwargs: dict[str, Any] = {
            "model": self.model,
            "max_tokens": params.max_tokens,
            "messages": convo,
            "stream": True,
            # No seed in Anthropic's API; top_p deliberately omitted (see the module docstring).
            "extra_body": {"temperature": params.temperature},
        }
        if system:
            kwargs["system"] = system
        log.debug("anthropic request", extra={"provider": self.name, "messages": len(convo),
                                              "prefill_chars": len(prefill)})
        joiner = _PrefillJoiner(continue_from[len(prefill):])
        sdk_stream: Any = None
        prompt_tokens: int | None = None
        completion_tokens: int | None = None
        chars = 0
        stopped = False
        try:
            sdk_stream = await self._client.messages.create(**kwargs)
            async for event in sdk_stream:
                kind = getattr(event, "type", None)
                if kind == "content_block_delta":
                    delta = event.delta
                    if getattr(delta, "type", None) == "text_delta" and delta.text:
                        text = joiner.feed(delta.text)
                        if text:
                            chars += len(text)
                            yield Delta(text)
                elif kind == "message_start":
                    prompt_tokens = _prompt_tokens(getattr(event.message, "usage", None))
                elif kind == "message_delta":
                    usage = getattr(event, "usage", None)
                    if getattr(usage, "output_tokens", None) is not None:
                        completion_tokens = usage.output_tokens
                    stop_reason = getattr(event.delta, "stop_reason", None)
                    if stop_reason not in (None, "end_turn", "max_tokens", "stop_sequence"):
                        log.info("anthropic stream stopped", extra={"provider": self.name,
                                                                   "stop_reason": stop_reason})
                elif kind == "message_stop":
                    stopped = True
            if not stopped:
                # The SDK ends such a stream silently; a reply without its final event may be cut short.
                raise MalformedStream(f"{self.name}: stream ended without message_stop (reply may be truncated)",
                                      provider=self.name)
        except ProviderError:
            raise
        except (anthropic.AnthropicError, httpx2.TransportError, json.JSONDecodeError, UnicodeDecodeError) as exc:
            error = self._map_error(exc)
            log.info("anthropic stream failed", extra={"provider": self.name, "code": error.code,
                                                       "status": error.status, "error": error.message})
            raise error from None  # the SDK's exception holds the request, and with it the key: do not chain it
        finally:
            if sdk_stream is not None:
                # Releases the HTTP response when the consumer stopped early (aclose) or the stream failed.
                await sdk_stream.close()
        tail = joiner.flush()
        if tail:
            chars += len(tail)
            yield Delta(tail)
        estimated = prompt_tokens is None or completion_tokens is None
        if prompt_tokens is None:
            prompt_tokens = sum(self.count_tokens(m["content"]) for m in messages)
        if completion_tokens is None:
            completion_tokens = max(1, (chars + 3) // 4)
        yield UsageReport(prompt_tokens=prompt_tokens, completion_tokens=completion_tokens, estimated=estimated)

    # -- errors ---------------------------------------------------------------------------------------------

    def _map_error(self, exc: BaseException) -> ProviderError:
        """The typed error for anything the SDK or its HTTP library raised."""
        p = self.name
        if isinstance(exc, anthropic.APIStatusError):
            return self._map_status(exc)
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderTimeout(f"{p}: request timed out before the response started", provider=p)
        if isinstance(exc, anthropic.APIConnectionError):
            cause = type(exc.__cause__).__name__ if exc.__cause__ else "connection error"
            return ProviderUnavailable(redact(f"{p}: could not reach the API ({cause})"), provider=p)
        if isinstance(exc, anthropic.APIResponseValidationError):
            return MalformedStream(redact(f"{p}: response did not match the API schema: {exc.message}"), provider=p)
        if isinstance(exc, httpx2.RemoteProtocolError):
            return MalformedStream(f"{p}: connection closed mid-stream before message_stop (truncated)", provider=p)
        if isinstance(exc, httpx2.TimeoutException):
            return ProviderTimeout(f"{p}: no data for too long mid-stream ({type(exc).__name__})", provider=p)
        if isinstance(exc, httpx2.TransportError):
            return ProviderUnavailable(f"{p}: connection failed mid-stream ({type(exc).__name__})", provider=p)
        if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
            return MalformedStream(f"{p}: invalid JSON in a stream event ({type(exc).__name__})", provider=p)
        return ProviderError(redact(f"{p}: {type(exc).__name__}: {exc}"), provider=p)

    def _map_status(self, exc: anthropic.APIStatusError) -> ProviderError:
        p = self.name
        status = exc.status_code
        error_type = exc.type or "unknown_error"
        detail = exc.api_message or ""
        request_id = f" (request {exc.request_id})" if exc.request_id else ""
        if status == 200:
            # An `error` event inside the stream: the HTTP status says nothing, the body's type says everything.
            message = redact(f"{p}: in-stream {error_type}: {detail}{request_id}")
            if error_type in _UNAVAILABLE_TYPES:
                return ProviderUnavailable(message, provider=p, status=status)
            if error_type == "rate_limit_error":
                return RateLimited(message, provider=p, status=status, retry_after=_retry_after(exc.response.headers))
            if error_type == "timeout_error":
                return ProviderTimeout(message, provider=p, status=status)
            return ProviderError(message, provider=p, status=status)
        message = redact(f"{p}: HTTP {status} {error_type}: {detail}{request_id}")
        if status in _AUTH_STATUSES:
            return ProviderAuthError(message, provider=p, status=status)
        if status in _BAD_REQUEST_STATUSES:
            return ProviderBadRequest(message, provider=p, status=status)
        if status == 429:
            return RateLimited(message, provider=p, status=status, retry_after=_retry_after(exc.response.headers))
        if status == 408:
            return ProviderTimeout(message, provider=p, status=status)
        if status >= 500:  # includes 529 overloaded_error
            return ProviderUnavailable(message, provider=p, status=status)
        return ProviderError(message, provider=p, status=status)


def _prompt_tokens(usage: Any) -> int | None:
    """All input tokens of the request: uncached plus those written to and read from the prompt cache."""
    if usage is None or getattr(usage, "input_tokens", None) is None:
        return None
    return int(usage.input_tokens + (getattr(usage, "cache_creation_input_tokens", None) or 0)
               + (getattr(usage, "cache_read_input_tokens", None) or 0))


def _factory(cfg: ProviderConfig, *, model: str, key: Secret | None,
             timeouts: ProviderTimeouts) -> AnthropicChatProvider:
    return AnthropicChatProvider(model=model, api_key=key, base_url=cfg.base_url, headers=cfg.headers or None,
                                 timeouts=timeouts)


register_adapter("anthropic", _factory)

"""OpenAI-compatible chat provider: OpenAI, xAI and any custom OpenAI-compatible server, through ``openai.AsyncOpenAI``.

One adapter serves every server that speaks OpenAI's chat-completions wire format; ``vendor`` only picks the
default base URL and the name of the max-tokens parameter. The SDK's own retries are off (``max_retries=0``):
retrying and failing over is the failover chain's job, and it needs every failure quickly and typed. So every
SDK failure becomes one of the ``ProviderError`` subclasses of ``avatarium_lab.errors``, with a message that
names the provider and the HTTP status and never the key.

Two things the SDK does not do for us (see ``/work/shared/FINDINGS.md``): a stream that ends cleanly without a
finish reason raises nothing, so the adapter checks for one itself; invalid JSON in a chunk surfaces as a bare
``json.JSONDecodeError``.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import AsyncIterator, Mapping
from email.utils import parsedate_to_datetime
from typing import Any

import httpx2
import openai

from ..config import ProviderConfig
from ..errors import (
    ConfigError,
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from ..secrets import REDACTED, VENDOR_ENV, Secret, redact
from . import (
    ChatMessage,
    Delta,
    GenerationParams,
    ProviderTimeouts,
    StreamItem,
    UsageReport,
    continuation_messages,
    estimate_tokens,
    register_adapter,
)
from .loops import LoopClients

log = logging.getLogger(__name__)

DEFAULT_BASE_URLS: dict[str, str] = {
    "openai": "https://api.openai.com/v1",
    "xai": "https://api.x.ai/v1",
}
VENDORS = ("openai", "xai", "custom")

# SDK clients whose event loop closed before they were: see OpenAIChatProvider._client_for_this_loop.

# Sent as the bearer token to a custom server configured without a key: the SDK refuses to build a client
# without one, and left to itself it would fall back to $OPENAI_API_KEY -- sending an OpenAI key to a
# third-party server.
PLACEHOLDER_API_KEY = "no-key-required"

# OpenAI echoes a wrong key back masked ("sk-ab***...wxyz"); even masked, part of a key has no place in our
# messages.
_MASKED_KEY = re.compile(r"\S{0,12}\*{3,}\S{0,8}")
# "Please try again in 1.5s" / "in 20ms" / "in 6m0s" / "in 1h2m3.5s" in OpenAI's 429 messages.
_TRY_AGAIN = re.compile(
    r"try again in\s+(?:(?P<ms>\d+(?:\.\d+)?)ms|(?:(?P<h>\d+)h)?(?:(?P<m>\d+)m)?(?:(?P<s>\d+(?:\.\d+)?)s)?)",
    re.IGNORECASE,
)


def _scrub(text: str) -> str:
    return _MASKED_KEY.sub(REDACTED, redact(text))


def map_status(exc: openai.APIStatusError, name: str, *, model: str | None = None,
               bad_request: tuple[int, ...] = (400, 404, 422)) -> ProviderError:
    """The typed error for an HTTP error status from an OpenAI SDK call (chat, speech and transcription share it).

    ``name`` prefixes the message (``openai:gpt-4o-mini``); ``model`` is named in a rejected request's message;
    ``bad_request`` lists the statuses that mean "this request can never succeed" (not retryable).
    """
    status = exc.status_code
    request_id = f" [request {exc.request_id}]" if exc.request_id else ""
    # The SDK words it "Error code: 429 - <the server's message>"; the status is in our own prefix.
    detail = _scrub(re.sub(r"^Error code: \d+( - )?", "", exc.message)) or "(no message)"
    if status in (401, 403):
        return ProviderAuthError(f"{name}: HTTP {status}: the API key was rejected or lacks access: {detail}"
                                 f"{request_id}", provider=name, status=status)
    if status in bad_request:
        which = f" (model {model!r})" if model else ""
        return ProviderBadRequest(f"{name}: HTTP {status}: the request was rejected{which}: {detail}{request_id}",
                                  provider=name, status=status)
    if status == 429:
        retry_after = _retry_after(exc.response.headers, exc.message)
        wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
        return RateLimited(f"{name}: HTTP 429: rate limited{wait}: {detail}{request_id}",
                           retry_after=retry_after, provider=name, status=status)
    if status >= 500:
        return ProviderUnavailable(f"{name}: HTTP {status}: the server failed or is overloaded: {detail}"
                                   f"{request_id}", provider=name, status=status)
    return ProviderError(f"{name}: HTTP {status}: {detail}{request_id}", provider=name, status=status)


def _retry_after(headers: Mapping[str, str] | None, message: str) -> float | None:
    """Seconds to wait, from ``retry-after-ms``, ``retry-after`` (seconds or an HTTP date) or the message text."""
    if headers is not None:
        for name, divisor in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
            value = headers.get(name)
            if value is None:
                continue
            try:
                seconds = float(value) / divisor
            except ValueError:
                if name != "retry-after":
                    continue
                try:
                    when = parsedate_to_datetime(value)
                except (TypeError, ValueError):
                    continue
                from datetime import UTC, datetime

                seconds = (when - datetime.now(UTC)).total_seconds()
            if seconds >= 0:
                return seconds
    match = _TRY_AGAIN.search(message)
    if match and any(match.group(g) for g in ("ms", "h", "m", "s")):
        if match.group("ms"):
            return float(match.group("ms")) / 1000
        return (float(match.group("h") or 0) * 3600 + float(match.group("m") or 0) * 60
                + float(match.group("s") or 0))
    return None


def _cause_chain(exc: BaseException) -> str:
    """``APIConnectionError: Connection error. <- RemoteProtocolError: ...``: what went wrong, underneath too.

    The typed errors are raised ``from None`` (a logged traceback would print the SDK's exceptions unredacted),
    so the causes are summarised, redacted, in the message instead.
    """
    parts: list[str] = []
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen and len(parts) < 4:
        seen.add(id(current))
        text = str(current).strip()
        part = f"{type(current).__name__}: {text}" if text else type(current).__name__
        if not parts or parts[-1] != part:  # httpx2 re-raises the transport's error under the same name
            parts.append(part)
        current = current.__cause__ or current.__context__
    return _scrub(" <- ".join(parts))


def _env_header_names() -> list[str]:
    # The SDK adds every header of $OPENAI_CUSTOM_HEADERS to every request (and lets it override our
    # Authorization); headers come from this adapter's own configuration only.
    names = []
    for line in (os.environ.get("OPENAI_CUSTOM_HEADERS") or "").split("\n"):
        if ":" in line and line.split(":", 1)[0].strip():
            names.append(line.split(":", 1)[0].strip())
    return names


async def _close(client: openai.AsyncOpenAI) -> None:
    await client.close()


class OpenAIChatProvider:
    """``ChatProvider`` for OpenAI (default), xAI and custom OpenAI-compatible servers, streaming only."""

    def __init__(self, *, model: str, api_key: Secret | None, vendor: str = "openai", base_url: str | None = None,
                 headers: Mapping[str, str] | None = None, timeouts: ProviderTimeouts = ProviderTimeouts()) -> None:
        if vendor not in VENDORS:
            raise ConfigError(f"provider.kind: {vendor!r} is not an OpenAI-compatible vendor; one of {VENDORS}")
        if not model:
            raise ConfigError(f"provider.model: a {vendor} provider needs a model id")
        if vendor == "custom" and not base_url:
            raise ConfigError("provider.base_url: a custom provider needs the base URL of an OpenAI-compatible "
                              "server, e.g. http://127.0.0.1:8000/v1")
        if api_key is not None and not isinstance(api_key, Secret):
            raise TypeError("api_key must be an avatarium_lab.secrets.Secret, never a plain string")
        if api_key is None and vendor != "custom":
            # Only custom servers may go without a key; left to itself the SDK would quietly read $OPENAI_API_KEY.
            raise ProviderAuthError(f"{vendor}:{model}: no API key (set {VENDOR_ENV.get(vendor, ('?',))[0]}, or "
                                    "give the tenant its own key)", provider=f"{vendor}:{model}")
        self.vendor = vendor
        self.model = model
        self.name = f"{vendor}:{model}"
        self.base_url = (base_url or DEFAULT_BASE_URLS[vendor]).rstrip("/")
        self.timeouts = timeouts
        self._api_key = api_key
        self._headers = dict(headers or {})
        # Built once, up front (a bad base URL fails here); the first event loop to stream takes it.
        try:
            url = httpx2.URL(self.base_url)
            if url.scheme not in ("http", "https") or not url.host:
                raise ValueError(f"base URL {redact(self.base_url)!r} is not an http(s) URL with a host")
            spare = self._build_client()
        except (openai.OpenAIError, httpx2.InvalidURL, ValueError) as exc:
            raise ConfigError(f"provider: cannot configure the {self.name} client: {_cause_chain(exc)}") from None
        self._clients: LoopClients[openai.AsyncOpenAI] = LoopClients(self._build_client, _close, spare=spare)

    def _build_client(self) -> openai.AsyncOpenAI:
        # A read timeout of the larger of first-token and idle is only a backstop: the failover chain enforces
        # both precisely. The SDK's default (600 s) would let a silent server hold a turn for ten minutes.
        read = max(self.timeouts.first_token, self.timeouts.idle)
        token = self._api_key.reveal() if self._api_key is not None else PLACEHOLDER_API_KEY
        default_headers: dict[str, Any] = {}
        for name in _env_header_names():
            # An omitted Authorization would drop our own too; an explicit one makes the SDK ignore the env's.
            default_headers[name] = f"Bearer {token}" if name.lower() == "authorization" else openai.omit
        if self.vendor != "openai":
            # The SDK fills these from $OPENAI_ORG_ID / $OPENAI_PROJECT_ID: not for other vendors' servers.
            default_headers.update({"OpenAI-Organization": openai.omit, "OpenAI-Project": openai.omit})
        default_headers.update(self._headers)
        return openai.AsyncOpenAI(
            # Always explicit: with None the SDK reads $OPENAI_API_KEY and $OPENAI_BASE_URL on its own.
            api_key=token,
            base_url=self.base_url,
            max_retries=0,
            timeout=openai.Timeout(read, connect=self.timeouts.connect),
            default_headers=default_headers,
        )

    def _client_for_this_loop(self) -> openai.AsyncOpenAI:
        client = self._clients.get()
        if len(self._clients) > 1:
            log.debug("another event loop: one more SDK client", extra={"provider": self.name})
        return client

    def __repr__(self) -> str:
        if self._api_key is None:
            key = "none (placeholder sent)"
        else:
            key = f"set ({self._api_key.source})" if self._api_key.source else "set"
        return (f"OpenAIChatProvider(name={self.name!r}, base_url={redact(self.base_url)!r}, key={key}, "
                f"headers={sorted(self._headers)!r})")

    def count_tokens(self, text: str) -> int:
        """An estimate (4 characters a token): OpenAI-compatible servers do not all share one tokenizer."""
        return estimate_tokens(text)

    async def aclose(self) -> None:
        """Close the SDK clients (and their connections); the provider builds a new one if used again."""
        await self._clients.aclose()

    def _request_kwargs(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "stream": True,
            "stream_options": {"include_usage": True},
            "temperature": params.temperature,
            "top_p": params.top_p,
        }
        # OpenAI deprecated max_tokens for chat (its reasoning models reject it); xAI and most compatible
        # servers still know only max_tokens.
        kwargs["max_completion_tokens" if self.vendor == "openai" else "max_tokens"] = params.max_tokens
        if params.seed is not None:
            kwargs["seed"] = params.seed
        return kwargs

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        """Stream the reply: ``Delta`` per piece of text, then one ``UsageReport``; typed errors only."""
        sent = continuation_messages(messages, continue_from) if continue_from else list(messages)
        client = self._client_for_this_loop()
        try:
            sdk_stream = await client.chat.completions.create(**self._request_kwargs(sent, params))
        except Exception as exc:  # noqa: BLE001 - every failure is mapped to a typed error
            error = self._map_error(exc, began=False, chunks=0)
            log.debug("request failed", extra={"provider": self.name, "error_code": error.code})
            raise error from None

        reply: list[str] = []
        chunks = 0
        finish_reason: str | None = None
        usage: Any = None
        try:
            async for chunk in sdk_stream:
                chunks += 1
                if chunk.usage is not None:
                    usage = chunk.usage
                for choice in chunk.choices or ():  # lenient servers send null choices, or no index
                    if choice.index not in (0, None):
                        continue
                    text = choice.delta.content if choice.delta is not None else None
                    if choice.finish_reason is not None:
                        finish_reason = choice.finish_reason
                    if text:
                        reply.append(text)
                        yield Delta(text)
        except Exception as exc:  # noqa: BLE001 - GeneratorExit/CancelledError are not Exceptions: they pass
            error = self._map_error(exc, began=True, chunks=chunks)
            if finish_reason is None or not isinstance(error, MalformedStream | ProviderTimeout):
                log.debug("stream failed", extra={"provider": self.name, "error_code": error.code})
                raise error from None
            # The reply was complete (it had its finish_reason); only the usage chunk or [DONE] got lost. Failing
            # now would make a failover chain "continue" a finished reply.
            log.warning("stream broke after its finish_reason; keeping the complete reply",
                        extra={"provider": self.name, "error_code": error.code})
        finally:
            # Also on aclose() by a consumer that stopped early: release the HTTP response (and the server).
            await sdk_stream.close()

        if finish_reason is None:
            raise MalformedStream(
                f"{self.name}: the stream ended after {chunks} chunks without a finish_reason "
                "(no terminal chunk): the reply may be cut short",
                provider=self.name, status=200)
        if finish_reason not in ("stop", "length"):
            log.debug("stream finished", extra={"provider": self.name, "finish_reason": finish_reason})
        if usage is not None and usage.prompt_tokens is not None and usage.completion_tokens is not None:
            yield UsageReport(prompt_tokens=int(usage.prompt_tokens), completion_tokens=int(usage.completion_tokens))
        else:
            text = "".join(reply)
            yield UsageReport(
                prompt_tokens=estimate_tokens("".join(m["content"] for m in sent)),
                completion_tokens=estimate_tokens(text) if text else 0,
                estimated=True,
            )

    def _map_error(self, exc: Exception, *, began: bool, chunks: int) -> ProviderError:
        """The typed error for an SDK failure; ``began``: the HTTP response (status 200) had already started."""
        name = self.name
        where = f"after {chunks} chunks" if began else "before the response"
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return self._map_status(exc)
        if isinstance(exc, openai.APITimeoutError) or isinstance(exc, httpx2.TimeoutException):
            what = "no data within the read timeout" if began else "no connection or response in time"
            return ProviderTimeout(f"{name}: timed out {where} ({what}; connect {self.timeouts.connect:g}s, read "
                                   f"{max(self.timeouts.first_token, self.timeouts.idle):g}s): {_cause_chain(exc)}",
                                   provider=name)
        if isinstance(exc, openai.APIConnectionError) or isinstance(exc, httpx2.TransportError):
            if began:
                return MalformedStream(f"{name}: the stream broke off {where} (truncated, no terminal chunk): "
                                       f"{_cause_chain(exc)}", provider=name, status=200)
            return ProviderUnavailable(f"{name}: cannot reach {redact(self.base_url)} (refused, reset or "
                                       f"unreachable): {_cause_chain(exc)}", provider=name)
        if isinstance(exc, json.JSONDecodeError):
            return MalformedStream(f"{name}: invalid JSON in a stream chunk {where}: {_cause_chain(exc)}",
                                   provider=name, status=200)
        if isinstance(exc, openai.APIError):
            # Not a status error: OpenAI's in-stream error, `data: {"error": {...}}` after a 200.
            return self._map_in_stream(exc, where)
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(f"{name}: SDK error {where}: {_cause_chain(exc)}", provider=name)
        return ProviderError(f"{name}: unexpected {type(exc).__name__} {where}: {_cause_chain(exc)}",
                             provider=name)

    def _map_status(self, exc: openai.APIStatusError) -> ProviderError:
        return map_status(exc, self.name)

    def _map_in_stream(self, exc: openai.APIError, where: str) -> ProviderError:
        name = self.name
        body = exc.body if isinstance(exc.body, dict) else {}
        etype, code = str(body.get("type") or "").lower(), str(body.get("code") or "").lower()
        kind = f"{etype} {code}"
        detail = _scrub(exc.message)
        message = f"{name}: error event inside the stream {where}: {detail}"
        if "rate_limit" in kind or etype in ("requests", "tokens"):
            return RateLimited(message, retry_after=_retry_after(None, exc.message), provider=name, status=200)
        if any(word in kind for word in ("server_error", "overloaded", "unavailable", "timeout", "bad_gateway")):
            return ProviderUnavailable(message, provider=name, status=200)
        return ProviderError(message, provider=name, status=200)


def _factory(cfg: ProviderConfig, *, model: str, key: Secret | None,
             timeouts: ProviderTimeouts) -> OpenAIChatProvider:
    return OpenAIChatProvider(model=model, api_key=key, vendor=cfg.kind, base_url=cfg.base_url,
                              headers=cfg.headers or None, timeouts=timeouts)


for _kind in VENDORS:
    register_adapter(_kind, _factory)

"""Google Gemini chat provider: a ``ChatProvider`` over the official ``google-genai`` SDK (Gemini Developer API).

What the SDK leaves to its caller, and this adapter therefore does itself (measured with google-genai 3.6.1
against ``avatarium_lab.testing.fake_google``; see /work/shared/FINDINGS.md):

- it never wraps network failures: refused connections, resets, truncated bodies and stalls surface as raw
  ``httpx2`` exceptions, mapped here to ``ProviderUnavailable`` / ``MalformedStream`` / ``ProviderTimeout``;
- an invalid key is a 400 whose body says ``API_KEY_INVALID`` (mapped to ``ProviderAuthError``), and a 429 carries
  its retry delay in a ``google.rpc.RetryInfo`` detail of the body, not in a header;
- a stream that ends without a candidate ``finish_reason`` raises nothing: that check is ours;
- ``HttpOptions.timeout`` is one number for every phase (and is also sent to Google as ``X-Server-Timeout``, a
  server-side deadline for the whole reply), so the connect / read timeouts are set per request by an httpx
  event hook instead;
- it retries 429/5xx and resumes dropped streams on its own unless told not to; retries and failover belong to
  ``FailoverChain``, so both are switched off.
"""

from __future__ import annotations

import contextlib
import email.utils
import itertools
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

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
    continuation_messages,
    estimate_tokens,
    register_adapter,
)
from .loops import PerLoopTransport

log = logging.getLogger(__name__)

VENDOR = "google"
_ROLES = {"user": "user", "assistant": "model"}
# Finish reasons of a reply that ended normally; every other one (SAFETY, RECITATION, BLOCKLIST, ...) means the
# model refused or was stopped, which is reported as an error rather than passed off as a complete reply.
_OK_FINISH = {types.FinishReason.STOP, types.FinishReason.MAX_TOKENS}

# The SDK's HTTP library is httpx2 by default and httpx when GOOGLE_GENAI_HTTP_CLIENT=httpx: map both.
_HTTP_MODULES: list[Any] = []
for _name in ("httpx2", "httpx"):
    with contextlib.suppress(ImportError):
        _HTTP_MODULES.append(__import__(_name))


def _exc_types(attr: str) -> tuple[type[BaseException], ...]:
    return tuple(getattr(m, attr) for m in _HTTP_MODULES if hasattr(m, attr))


_CONNECT_TIMEOUT = _exc_types("ConnectTimeout")
_TIMEOUT = _exc_types("TimeoutException")
_CONNECT_ERROR = _exc_types("ConnectError")
_BODY_BROKEN = _exc_types("RemoteProtocolError") + _exc_types("ReadError") + _exc_types("DecodingError")
_TRANSPORT = _exc_types("TransportError") + _exc_types("StreamError")

# The httpx responses opened by the stream currently stepping its SDK iterator. Set around each step and reset
# before anything is yielded, so it never leaks into the consumer's code; the client's response hook fills it.
_RESPONSE_SINK: ContextVar[list[Any] | None] = ContextVar("google_chat_response_sink", default=None)


async def _collect_response(response: Any) -> None:
    sink = _RESPONSE_SINK.get()
    if sink is not None:
        sink.append(response)


def check_model_name(model: str) -> None:
    """Raise ``ProviderBadRequest`` for a model name google-genai would refuse (it rejects ``?``, ``&``, ``..``)."""
    if not model or not model.strip():
        raise ProviderBadRequest("google: a model name is required (e.g. gemini-3.1-flash)", provider="google")
    bad = [s for s in ("?", "&", "..") if s in model]
    if bad or any(c.isspace() for c in model):
        what = ", ".join(repr(s) for s in bad) or "whitespace"
        raise ProviderBadRequest(
            f"google:{redact(model)}: invalid model name (contains {what}); use a Gemini model id such as "
            "gemini-3.1-flash, models/<id> or tunedModels/<id>", provider=f"google:{redact(model)}")


def parse_retry_delay(value: Any) -> float | None:
    """Seconds from a ``google.rpc.RetryInfo`` ``retryDelay``: ``"2s"``, ``"1.500s"`` or ``{"seconds", "nanos"}``."""
    if isinstance(value, str):
        m = re.fullmatch(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*s?\s*", value)
        return float(m.group(1)) if m else None
    if isinstance(value, Mapping):
        try:
            return float(value.get("seconds", 0)) + float(value.get("nanos", 0)) / 1e9
        except (TypeError, ValueError):
            return None
    return None


def parse_retry_after_header(value: str | None) -> float | None:
    """Seconds from an HTTP ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    with contextlib.suppress(TypeError, ValueError, IndexError):
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    return None


def _error_details(body: Any) -> list[Any]:
    if isinstance(body, list) and len(body) == 1:
        body = body[0]
    if not isinstance(body, Mapping):
        return []
    err = body.get("error", body)
    details = err.get("details") if isinstance(err, Mapping) else None
    return list(details) if isinstance(details, list) else []


def retry_after_of(exc: genai_errors.APIError) -> float | None:
    """The wait a 429 asks for: the body's ``RetryInfo.retryDelay``, else a ``Retry-After`` header."""
    for detail in _error_details(exc.details):
        if isinstance(detail, Mapping) and str(detail.get("@type", "")).endswith("google.rpc.RetryInfo"):
            delay = parse_retry_delay(detail.get("retryDelay"))
            if delay is not None:
                return delay
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    with contextlib.suppress(AttributeError, TypeError):
        for key, value in headers.items():
            if str(key).lower() == "retry-after":
                return parse_retry_after_header(str(value))
    return None


class GoogleChatProvider:
    """``ChatProvider`` for Gemini models through ``google-genai``; one SDK client per provider, built here."""

    def __init__(self, *, model: str, api_key: Secret | None, base_url: str | None = None,
                 headers: Mapping[str, str] | None = None, timeouts: ProviderTimeouts = ProviderTimeouts()) -> None:
        check_model_name(model)
        self.model = model
        self.name = f"{VENDOR}:{model}"
        self.base_url = base_url
        self.timeouts = timeouts
        if api_key is None:
            # The SDK would quietly fall back to GEMINI_API_KEY / GOOGLE_API_KEY; keys are resolved (and
            # registered for redaction) by avatarium_lab.secrets instead, so a missing one is an error here.
            raise ProviderAuthError(f"{self.name}: no API key; set GEMINI_API_KEY (or GOOGLE_API_KEY) or give the "
                                    "tenant's own Google key", provider=self.name)
        self._api_key = api_key
        # Read backstop: the larger of the chain's first-token and idle limits (the chain enforces both itself).
        read = max(timeouts.first_token, timeouts.idle)
        per_request_timeout = {"connect": timeouts.connect, "read": read, "write": read, "pool": timeouts.connect}

        async def set_timeouts(request: Any) -> None:
            request.extensions = {**request.extensions, "timeout": per_request_timeout}

        http_options = types.HttpOptions(
            base_url=base_url,
            headers=dict(headers or {}),
            # attempts=1: no tenacity retries, and it also turns off the SDK's implicit sleep-and-retry on
            # connection errors (aiohttp transport): the failover chain owns retries.
            retry_options=types.HttpRetryOptions(attempts=1),
            # An explicit httpx transport keeps the SDK on httpx even when aiohttp is installed (mlflow brings
            # it): the SDK would otherwise switch to aiohttp and silently drop these hooks and timeouts.
            async_client_args={"event_hooks": {"request": [set_timeouts], "response": [_collect_response]},
                               "transport": PerLoopTransport()},
        )
        try:
            self._client = genai.Client(api_key=api_key.reveal(), http_options=http_options)
        except ValueError as exc:
            raise ProviderBadRequest(f"{self.name}: cannot configure the Gemini client: {redact(str(exc))}",
                                     provider=self.name) from None

    def __repr__(self) -> str:
        base = f", base_url={self.base_url!r}" if self.base_url else ""
        return f"GoogleChatProvider(model={self.model!r}{base}, api_key={self._api_key!r})"

    def count_tokens(self, text: str) -> int:
        """An estimate (about four characters a token), never less than 1; no network call."""
        return estimate_tokens(text)

    async def aclose(self) -> None:
        """Close the SDK client's connection pools."""
        with contextlib.suppress(Exception):
            await self._client.aio.aclose()
        with contextlib.suppress(Exception):
            self._client.close()

    # -- request ------------------------------------------------------------------------------------------

    def _request(self, messages: list[ChatMessage], params: GenerationParams
                 ) -> tuple[list[types.Content], types.GenerateContentConfig]:
        system: list[str] = []
        contents: list[types.Content] = []
        for m in messages:
            role, text = m["role"], m["content"]
            if role == "system":
                if text:
                    system.append(text)
                continue
            if role not in _ROLES:
                raise ProviderBadRequest(f"{self.name}: unsupported message role {role!r}", provider=self.name)
            if not text:
                continue  # Gemini refuses an empty text part with a 400; an empty turn carries nothing anyway
            contents.append(types.Content(role=_ROLES[role], parts=[types.Part(text=text)]))
        config = types.GenerateContentConfig(
            system_instruction="\n\n".join(system) or None,
            max_output_tokens=params.max_tokens,
            temperature=params.temperature,
            top_p=params.top_p,
            seed=params.seed,
            # repeat_penalty has no Gemini equivalent (frequency_penalty is not accepted by every model): not sent.
            # Client-side only (never sent): no automatic function calling loop, and no automatic resumption of a
            # broken stream -- a failure must reach the failover chain.
            automatic_function_calling=types.AutomaticFunctionCallingConfig(disable=True),
            automatic_continuation=False,
        )
        return contents, config

    # -- streaming ----------------------------------------------------------------------------------------

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        """Stream the reply (or, with ``continue_from``, the rest of a reply) as ``Delta`` items, then usage."""
        sent = continuation_messages(messages, continue_from) if continue_from else list(messages)
        contents, config = self._request(sent, params)
        log.debug("google stream", extra={"provider": self.name, "messages": len(contents),
                                          "continuation": bool(continue_from)})
        responses: list[Any] = []  # httpx responses this stream opened (filled by the client's response hook)
        sdk_stream: Any = None
        text: list[str] = []
        usage: types.GenerateContentResponseUsageMetadata | None = None
        finish: types.FinishReason | None = None
        blocked: Any = None
        try:
            sdk_stream = await self._step(
                self._client.aio.models.generate_content_stream(model=self.model, contents=contents, config=config),
                responses, chunks=0)
            for chunks in itertools.count():
                chunk = await self._step(anext(sdk_stream, None), responses, chunks=chunks)
                if chunk is None:
                    break
                if chunk.usage_metadata is not None:
                    usage = chunk.usage_metadata  # a running total: the latest one counts
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason:
                    blocked = feedback.block_reason
                if not chunk.candidates:
                    continue
                candidate = chunk.candidates[0]
                for part in (candidate.content.parts or []) if candidate.content else []:
                    if part.text and not part.thought:  # thought summaries are not part of the reply
                        text.append(part.text)
                        yield Delta(part.text)
                if candidate.finish_reason:
                    finish = candidate.finish_reason
                    if finish not in _OK_FINISH:
                        raise self._refusal(finish, candidate.finish_message)
        finally:
            await self._release(sdk_stream, responses)
        if finish is None:
            if blocked:
                raise ProviderError(f"{self.name}: the prompt was blocked ({_enum_name(blocked)}); no reply",
                                    provider=self.name, retryable=False)
            raise MalformedStream(f"{self.name}: the stream ended without a finish reason (the reply may be cut "
                                  f"short after {len(''.join(text))} characters)", provider=self.name, status=200)
        yield self._usage(sent, "".join(text), usage)

    async def _step(self, awaitable: Any, responses: list[Any], *, chunks: int) -> Any:
        """Await one step of the SDK with this stream's response sink active; map what it raises."""
        token = _RESPONSE_SINK.set(responses)
        try:
            return await awaitable
        except ProviderError:
            raise
        except Exception as exc:
            # Error statuses pass the response hook too: "responded" means a 200 stream had begun.
            responded = any(getattr(r, "status_code", None) == 200 for r in responses)
            raise self._map_error(exc, responded=responded, chunks=chunks) from exc
        finally:
            _RESPONSE_SINK.reset(token)

    async def _release(self, sdk_stream: Any, responses: list[Any]) -> None:
        # Closing the SDK's generator does not reach the HTTP response: google-genai's HttpResponse holds its own
        # segment iterator (a reference cycle), so the generators under it -- and the connection -- stay open until
        # the cyclic garbage collector runs (measured: still ACTIVE in the pool). Closing the httpx responses
        # ourselves releases the connection now, on an early stop as on an error.
        if sdk_stream is not None:
            with contextlib.suppress(Exception):
                await sdk_stream.aclose()
        for response in responses:
            with contextlib.suppress(Exception):
                await response.aclose()

    def _refusal(self, finish: types.FinishReason, detail: str | None) -> ProviderError:
        why = f": {redact(detail)}" if detail else ""
        return ProviderError(f"{self.name}: the model stopped with finish reason {_enum_name(finish)}{why} "
                             "(content filter, recitation or policy; the reply is incomplete)",
                             provider=self.name, retryable=False)

    def _usage(self, sent: list[ChatMessage], reply: str,
               usage: types.GenerateContentResponseUsageMetadata | None) -> UsageReport:
        prompt = usage.prompt_token_count if usage else None
        completion = usage.candidates_token_count if usage else None
        if prompt is not None and completion is not None:
            # Thinking tokens are billed as output but not counted in candidates_token_count.
            return UsageReport(prompt_tokens=prompt, completion_tokens=completion + (usage.thoughts_token_count or 0))
        if prompt is None:
            prompt = self.count_tokens("\n".join(m["content"] for m in sent))
        if completion is None:
            completion = self.count_tokens(reply) if reply else 0
        return UsageReport(prompt_tokens=prompt, completion_tokens=completion, estimated=True)

    # -- errors -------------------------------------------------------------------------------------------

    def _map_error(self, exc: Exception, *, responded: bool, chunks: int) -> ProviderError:
        """The typed error for anything the SDK or its HTTP library raised. Messages pass through ``redact``."""
        name = self.name
        kind = type(exc).__name__
        text = redact(str(exc)).strip()
        detail = _clip(text) if text else "no detail"
        cause = f"{kind}: {detail}" if text else kind  # httpx's ReadError (a reset) has an empty message
        log.debug("google provider error", extra={"provider": name, "error_type": kind, "responded": responded,
                                                   "chunks": chunks})
        if isinstance(exc, genai_errors.APIError):
            return self._map_api_error(exc, in_stream=responded)
        if isinstance(exc, genai_errors.UnknownApiResponseError):
            return MalformedStream(f"{name}: a stream chunk is not valid JSON ({detail})", provider=name,
                                   status=200)
        if isinstance(exc, _CONNECT_TIMEOUT):
            return ProviderTimeout(f"{name}: no connection within {self.timeouts.connect:g} s ({kind})",
                                   provider=name)
        if isinstance(exc, _TIMEOUT):
            read = max(self.timeouts.first_token, self.timeouts.idle)
            what = "response" if not responded else ("next chunk" if chunks else "first chunk")
            return ProviderTimeout(f"{name}: no {what} within {read:g} s ({kind})", provider=name)
        if isinstance(exc, _CONNECT_ERROR):
            return ProviderUnavailable(f"{name}: cannot connect ({cause})", provider=name)
        if isinstance(exc, _BODY_BROKEN):
            if responded:
                return MalformedStream(f"{name}: the stream was cut off before its end ({cause})",
                                       provider=name, status=200)
            return ProviderUnavailable(f"{name}: the connection was closed or reset before a response ({cause})",
                                       provider=name)
        if isinstance(exc, _TRANSPORT):
            return ProviderUnavailable(f"{name}: transport failure ({cause})", provider=name)
        if isinstance(exc, json.JSONDecodeError):
            return MalformedStream(f"{name}: a stream chunk is not valid JSON ({detail})", provider=name)
        if isinstance(exc, ValueError):  # the SDK validates arguments (model name, contents) with ValueError
            return ProviderBadRequest(f"{name}: request rejected by google-genai: {detail}", provider=name)
        return ProviderError(f"{name}: unexpected {cause}", provider=name)

    def _map_api_error(self, exc: genai_errors.APIError, *, in_stream: bool) -> ProviderError:
        name = self.name
        code = exc.code if isinstance(exc.code, int) else None
        status = exc.status or ""
        message = redact(str(exc.message or "")) or "no message"
        where = " (error event inside the stream)" if in_stream else ""
        text = f"{name}: HTTP {code if code is not None else '?'} {status}{where}: {_clip(message)}"
        body = json.dumps(exc.details, default=str) if exc.details is not None else ""
        if code == 400 and "API_KEY_INVALID" in body:
            return ProviderAuthError(f"{text} (the Google API key was rejected)", provider=name, status=code)
        if code in (401, 403):
            return ProviderAuthError(text, provider=name, status=code)
        if code == 429:
            retry_after = retry_after_of(exc)
            hint = f" (retry after {retry_after:g} s)" if retry_after is not None else ""
            return RateLimited(text + hint, retry_after=retry_after, provider=name, status=code)
        if code is not None and code >= 500:
            return ProviderUnavailable(text, provider=name, status=code)
        if code == 408:
            return ProviderTimeout(text, provider=name, status=code)
        if code is not None and 400 <= code < 500:
            return ProviderBadRequest(text, provider=name, status=code)
        return ProviderError(text, provider=name, status=code)


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _factory(cfg: ProviderConfig, *, model: str, key: Secret | None, timeouts: ProviderTimeouts) -> GoogleChatProvider:
    return GoogleChatProvider(model=model, api_key=key, base_url=cfg.base_url, headers=cfg.headers or None,
                              timeouts=timeouts)


register_adapter("google", _factory)

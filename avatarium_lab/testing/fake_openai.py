"""A loopback fake of OpenAI's chat-completions API (``POST /v1/chat/completions``), driven by a ``FakeBehaviour``.

It speaks the real wire format, so the official ``openai`` SDK works against it unpatched (``base_url`` =
``server.url + "/v1"``): OpenAI's error bodies and headers, ``chat.completion.chunk`` server-sent events, the
usage chunk of ``stream_options.include_usage`` and the closing ``data: [DONE]``. It also serves xAI and any
other OpenAI-compatible client. A behaviour whose ``api_key`` is empty accepts any or no key, like the local
servers the ``custom`` vendor talks to.

Faults follow ``fake_vendors.Fault``; ``status`` 429 answers like ``rate_limit``. A mid-stream fault whose
``after_chunks`` is past the last content chunk strikes after the ``finish_reason`` chunk (before the usage chunk
and ``[DONE]``). ``in_stream_error`` sends OpenAI's ``data: {"error": {...}}`` for ``fault.status`` (a 5xx; 500
otherwise) and ends the body.

Each request's record (``behaviour.requests[i]``) gains ``"outcome"``: ``"completed"`` when the whole stream
was sent, ``"disconnected"`` when the client went away first, ``"fault:<kind>"`` when a fault ended it.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..providers import CONTINUE_INSTRUCTION
from .fake_vendors import FakeBehaviour, Fault, InjectedTruncation

log = logging.getLogger(__name__)

SYSTEM_FINGERPRINT = "fp_f4ke0pena1"

# OpenAI's own error bodies, by status (messages as the API words them).
_STATUS_ERRORS: dict[int, dict[str, Any]] = {
    400: {"message": "Invalid request.", "type": "invalid_request_error", "param": None, "code": None},
    403: {"message": "You are not allowed to sample from this model", "type": "invalid_request_error",
          "param": None, "code": "unsupported_country_region_territory"},
    404: {"message": "The model `{model}` does not exist or you do not have access to it.",
          "type": "invalid_request_error", "param": None, "code": "model_not_found"},
    422: {"message": "Unprocessable entity.", "type": "invalid_request_error", "param": None, "code": None},
    500: {"message": "The server had an error while processing your request. Sorry about that!",
          "type": "server_error", "param": None, "code": None},
    502: {"message": "Bad gateway.", "type": "cf_bad_gateway", "param": None, "code": 502},
    503: {"message": "The engine is currently overloaded, please try again later", "type": "server_error",
          "param": None, "code": None},
    504: {"message": "Gateway timeout.", "type": "cf_gateway_timeout", "param": None, "code": 504},
}

_NO_KEY_MESSAGE = (
    "You didn't provide an API key. You need to provide your API key in an Authorization header using Bearer "
    "auth (i.e. Authorization: Bearer YOUR_KEY), or as the password field (with blank username) if you're "
    "accessing the API from your browser and are prompted for a username and password. You can obtain an API "
    "key from https://platform.openai.com/account/api-keys."
)




def mask_key(key: str) -> str:
    """A key the way OpenAI's 401 message shows it: the first 5 and last 4 characters, stars between."""
    if len(key) <= 9:
        return "*" * len(key)
    return f"{key[:5]}{'*' * (len(key) - 9)}{key[-4:]}"


def _request_id() -> str:
    return f"req_{uuid.uuid4().hex}"


def _error(status: int, error: dict[str, Any], headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"error": error}, status_code=status,
                        headers={"x-request-id": _request_id(), **(headers or {})})


def _status_error(status: int, model: str) -> JSONResponse:
    body = dict(_STATUS_ERRORS.get(status) or {
        "message": f"Request failed with status {status}.",
        "type": "server_error" if status >= 500 else "invalid_request_error", "param": None, "code": None,
    })
    body["message"] = body["message"].replace("{model}", model)
    return _error(status, body)


def _seconds_text(seconds: float) -> str:
    return str(int(seconds)) if float(seconds).is_integer() else f"{seconds:g}"


def _rate_limited(fault: Fault, model: str) -> JSONResponse:
    wait = fault.retry_after
    headers = {
        "x-ratelimit-limit-requests": "500",
        "x-ratelimit-remaining-requests": "0",
        "x-ratelimit-reset-requests": f"{_seconds_text(wait if wait is not None else 1.0)}s",
        "x-ratelimit-limit-tokens": "200000",
        "x-ratelimit-remaining-tokens": "199958",
        "x-ratelimit-reset-tokens": "12ms",
    }
    if wait is not None:
        headers["retry-after"] = _seconds_text(wait)
    hint = f"Please try again in {_seconds_text(wait)}s. " if wait is not None else ""
    message = (f"Rate limit reached for {model} in organization org-fake0000000000000000 on requests per min "
               f"(RPM): Limit 500, Used 500, Requested 1. {hint}Visit https://platform.openai.com/account/"
               "rate-limits to learn more.")
    return _error(429, {"message": message, "type": "requests", "param": None, "code": "rate_limit_exceeded"},
                  headers)


def _invalid_key(token: str) -> JSONResponse:
    return _error(401, {"message": f"Incorrect API key provided: {mask_key(token)}. You can find your API key at "
                        "https://platform.openai.com/account/api-keys.",
                        "type": "invalid_request_error", "param": None, "code": "invalid_api_key"})


def check_key(request: Request, behaviour: FakeBehaviour) -> tuple[str, JSONResponse | None]:
    """The bearer token of ``request`` and, if ``behaviour`` wants a key and this is not it, OpenAI's 401 (no key
    / incorrect key, the key masked as OpenAI masks it). Shared by the chat, speech and transcription fakes."""
    header = request.headers.get("authorization", "")
    token = header[7:].strip() if header.lower().startswith("bearer ") else ""
    if behaviour.api_key and token != behaviour.api_key:
        if not token:
            return token, _error(401, {"message": _NO_KEY_MESSAGE, "type": "invalid_request_error", "param": None,
                                       "code": None})
        return token, _invalid_key(token)
    return token, None


def fault_response(fault: Any, record: dict[str, Any], token: str, model: str) -> JSONResponse | None:
    """The HTTP error an injected ``status`` / ``rate_limit`` fault answers with, as OpenAI words it (401 with the
    masked key, 429 with rate-limit headers, other statuses with their bodies); None for other faults. Shared by
    the chat, speech and transcription fakes."""
    if fault is not None and fault.kind == "status" and fault.status != 429:
        record["outcome"] = "fault:status"
        if fault.status == 401:
            return _invalid_key(token)
        return _status_error(fault.status, model)
    if fault is not None and fault.kind in ("rate_limit", "status"):
        record["outcome"] = "fault:rate_limit"
        return _rate_limited(fault, model)
    return None



def _partial_from(messages: list[Any]) -> str | None:
    """The assistant text a continuation request asks to finish, or None for an ordinary request."""
    if (len(messages) >= 2 and isinstance(messages[-1], dict) and isinstance(messages[-2], dict)
            and messages[-1].get("role") == "user" and messages[-1].get("content") == CONTINUE_INSTRUCTION
            and messages[-2].get("role") == "assistant" and isinstance(messages[-2].get("content"), str)):
        return messages[-2]["content"]
    return None


def _sse(payload: dict[str, Any] | str) -> bytes:
    data = payload if isinstance(payload, str) else json.dumps(payload, separators=(",", ":"))
    return f"data: {data}\n\n".encode()


def make_openai_app(behaviour: FakeBehaviour) -> Starlette:
    """The fake OpenAI chat-completions server for ``behaviour`` (run it with ``FakeServer``)."""

    async def chat_completions(request: Request) -> Response:
        token, refused = check_key(request, behaviour)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, {"message": "We could not parse the JSON body of your request. (HINT: This likely "
                                "means you aren't using your HTTP library correctly.)",
                                "type": "invalid_request_error", "param": None, "code": None})
        behaviour.record(request.url.path, body, dict(request.headers))
        # record() appended this request's dict just now, with no await in between: it is ours
        record = behaviour.requests[-1]
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list) or not body.get("model"):
            return _error(400, {"message": "you must provide a model parameter and a list of messages",
                                "type": "invalid_request_error", "param": None, "code": None})
        model = behaviour.model or str(body["model"])
        if not body.get("stream"):
            return _error(400, {"message": "This fake server only streams: set stream=true.",
                                "type": "invalid_request_error", "param": "stream", "code": None})
        fault = behaviour.next_fault()
        refused = fault_response(fault, record, token, model)
        if refused is not None:
            return refused

        pieces = behaviour.reply_for(_partial_from(body["messages"]))
        include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
        completion_id = f"chatcmpl-{uuid.uuid4().hex[:29]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
            payload: dict[str, Any] = {
                "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                "system_fingerprint": SYSTEM_FINGERPRINT,
                "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
            }
            if include_usage:
                payload["usage"] = None
            return _sse(payload)

        async def mid_stream_fault() -> AsyncIterator[bytes]:
            """The body of a fault that strikes after ``fault.after_chunks`` content chunks."""
            assert fault is not None
            record["outcome"] = f"fault:{fault.kind}"
            if fault.kind == "stall_mid":
                await asyncio.sleep(fault.stall)
                record["outcome"] = None  # the client waited it out: the stream goes on
            elif fault.kind == "truncate":
                raise InjectedTruncation("fake OpenAI: truncating the stream on purpose")
            elif fault.kind == "invalid_json":
                yield b"data: {not json\n\n"
            elif fault.kind == "in_stream_error":
                # What OpenAI sends when a stream fails after it started: an error object, then the end.
                status = fault.status if fault.status in _STATUS_ERRORS and fault.status >= 500 else 500
                yield _sse({"error": _STATUS_ERRORS[status]})

        async def events() -> AsyncIterator[bytes]:
            try:
                if fault is not None and fault.kind == "stall_before_first":
                    record["outcome"] = "fault:stall_before_first"
                    await asyncio.sleep(fault.stall)
                    record["outcome"] = None
                if behaviour.ttft:
                    await asyncio.sleep(behaviour.ttft)
                yield chunk({"role": "assistant", "content": ""})
                # A mid-stream fault strikes after `after_chunks` content chunks; past the last one, it strikes
                # after the finish_reason chunk (the reply is complete, its usage and [DONE] are not).
                strike_at = -1
                if fault is not None and fault.kind in ("stall_mid", "truncate", "invalid_json", "in_stream_error"):
                    strike_at = fault.after_chunks if fault.after_chunks <= len(pieces) else len(pieces) + 1
                for i, piece in enumerate([*pieces, None]):
                    if i == strike_at:
                        async for data in mid_stream_fault():
                            yield data
                        if record.get("outcome"):
                            return
                    if piece is None:
                        break
                    if i and behaviour.chunk_interval:
                        await asyncio.sleep(behaviour.chunk_interval)
                    yield chunk({"content": piece})
                if fault is not None and fault.kind == "no_terminal":
                    record["outcome"] = "fault:no_terminal"
                    return  # a clean end of the body: no finish_reason, no usage, no [DONE]
                yield chunk({}, "stop")
                if strike_at == len(pieces) + 1:
                    async for data in mid_stream_fault():
                        yield data
                    if record.get("outcome"):
                        return
                if include_usage:
                    completion = behaviour.completion_tokens(pieces)
                    yield _sse({
                        "id": completion_id, "object": "chat.completion.chunk", "created": created, "model": model,
                        "system_fingerprint": SYSTEM_FINGERPRINT, "choices": [],
                        "usage": {"prompt_tokens": behaviour.prompt_tokens, "completion_tokens": completion,
                                  "total_tokens": behaviour.prompt_tokens + completion},
                    })
                yield _sse("[DONE]")
                record["outcome"] = "completed"
            except (asyncio.CancelledError, GeneratorExit):
                # Starlette cancels the body when the client disconnects (ASGI http.disconnect)
                record["outcome"] = "disconnected"
                raise

        return StreamingResponse(events(), media_type="text/event-stream",
                                 headers={"x-request-id": _request_id(), "cache-control": "no-cache",
                                          "openai-processing-ms": "1"})

    return Starlette(routes=[Route("/v1/chat/completions", chat_completions, methods=["POST"])])

"""A loopback fake of Anthropic's Messages API (``POST /v1/messages``, streaming SSE), driven by a ``FakeBehaviour``.

Point the official SDK at it unpatched: ``AsyncAnthropic(api_key=..., base_url=server.url)``. It checks the key
(``x-api-key``, or ``Authorization: Bearer``, which is how anthropic 2.x sends an ``api_key``) and the
``anthropic-version`` header, validates the request the way the real API does where that matters to an adapter
(no ``system`` role in ``messages``, no trailing whitespace in a final assistant prefill), records it, applies
one queued ``Fault`` and streams the scripted reply as Anthropic's event sequence: ``message_start``,
``content_block_start``, ``ping``, ``content_block_delta`` per chunk, ``content_block_stop``, ``message_delta``,
``message_stop``. A request whose last message is an assistant message (prefill) gets the rest of the script.
"""

from __future__ import annotations

import asyncio
import json
import logging
import secrets
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .fake_vendors import FakeBehaviour, Fault, InjectedTruncation

log = logging.getLogger(__name__)

# Anthropic's error type and message per HTTP status (https://docs.claude.com/en/api/errors).
ERROR_TYPES: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request"),
    401: ("authentication_error", "invalid x-api-key"),
    402: ("billing_error", "Your credit balance is too low to access the Anthropic API."),
    403: ("permission_error", "Your API key does not have permission to use the specified resource."),
    404: ("not_found_error", "The requested resource could not be found."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes."),
    422: ("invalid_request_error", "Unprocessable request"),
    429: ("rate_limit_error", "This request would exceed your organization's rate limit. Please try again later."),
    500: ("api_error", "Internal server error"),
    502: ("api_error", "Bad gateway"),
    503: ("api_error", "Service unavailable"),
    504: ("timeout_error", "Request timeout"),
    529: ("overloaded_error", "Overloaded"),
}


def _request_id() -> str:
    return "req_" + secrets.token_hex(12)


def error_body(error_type: str, message: str) -> dict[str, Any]:
    """Anthropic's error envelope, as the API returns it with a non-2xx status."""
    return {"type": "error", "error": {"type": error_type, "message": message}, "request_id": _request_id()}


def error_response(status: int, error_type: str | None = None, message: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    default_type, default_message = ERROR_TYPES.get(status, ("api_error" if status >= 500 else "invalid_request_error",
                                                             f"HTTP {status}"))
    body = error_body(error_type or default_type, message or default_message)
    return JSONResponse(body, status_code=status, headers={"request-id": body["request_id"], **(headers or {})})


def _sse(event: str, data: dict[str, Any]) -> bytes:
    # The real API sends compact JSON, one `event:` and one `data:` line per event, then a blank line.
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _text_of(content: Any) -> str:
    """The text of a message's content: a string, or the concatenated text of a list of content blocks."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(block.get("text", "") for block in content
                       if isinstance(block, dict) and block.get("type") == "text")
    return ""


def _validate(body: Any) -> str | None:
    """The real API's message for a request an adapter could plausibly get wrong, or None when it is fine."""
    if not isinstance(body, dict):
        return "request body must be a JSON object"
    for field in ("model", "max_tokens", "messages"):
        if field not in body:
            return f"{field}: Field required"
    if not isinstance(body["max_tokens"], int) or body["max_tokens"] < 1:
        return "max_tokens: Input should be a valid integer greater than or equal to 1"
    messages = body["messages"]
    if not isinstance(messages, list) or not messages:
        return "messages: at least one message is required"
    for i, message in enumerate(messages):
        role = message.get("role") if isinstance(message, dict) else None
        if role == "system":
            return ('messages: Unexpected role "system". The Messages API accepts a top-level `system` parameter, '
                    'not "system" as an input message role.')
        if role not in ("user", "assistant"):
            return f"messages.{i}.role: Input should be 'user' or 'assistant'"
    last = messages[-1]
    if last["role"] == "assistant":
        text = _text_of(last.get("content"))
        if text != text.rstrip():
            return "messages: final assistant content cannot end with trailing whitespace"
    if "temperature" in body and "top_p" in body:
        # What current Claude models answer; an adapter must send at most one of the two.
        return "`temperature` and `top_p` cannot both be specified for this model. Please use only one."
    return None


def _rate_limit_headers(fault: Fault) -> dict[str, str]:
    reset = (datetime.now(UTC) + timedelta(seconds=fault.retry_after or 1.0)).strftime("%Y-%m-%dT%H:%M:%SZ")
    headers = {
        "anthropic-ratelimit-requests-limit": "50",
        "anthropic-ratelimit-requests-remaining": "0",
        "anthropic-ratelimit-requests-reset": reset,
        "anthropic-ratelimit-tokens-limit": "40000",
        "anthropic-ratelimit-tokens-remaining": "0",
        "anthropic-ratelimit-tokens-reset": reset,
        "anthropic-ratelimit-input-tokens-limit": "30000",
        "anthropic-ratelimit-input-tokens-remaining": "0",
        "anthropic-ratelimit-input-tokens-reset": reset,
        "anthropic-ratelimit-output-tokens-limit": "10000",
        "anthropic-ratelimit-output-tokens-remaining": "0",
        "anthropic-ratelimit-output-tokens-reset": reset,
    }
    if fault.retry_after is not None:
        headers["retry-after"] = f"{fault.retry_after:g}"
    return headers




def make_anthropic_app(behaviour: FakeBehaviour) -> Starlette:
    """The fake as a Starlette app. ``app.state.open_streams`` counts response bodies still being streamed, so a
    test can see that a client which stopped reading really released its connection."""

    async def messages(request: Request) -> Response:
        headers = dict(request.headers)
        key = headers.get("x-api-key")
        auth = headers.get("authorization", "")
        if key is None and auth.lower().startswith("bearer "):
            key = auth[len("bearer "):].strip()
        if key != behaviour.api_key:
            return error_response(401, "authentication_error", "invalid x-api-key")
        raw = await request.body()
        try:
            body: Any = json.loads(raw) if raw else None
        except json.JSONDecodeError:
            behaviour.record(request.url.path, raw.decode("utf-8", "replace"), headers)
            return error_response(400, "invalid_request_error", "There was an error parsing the body of your request")
        behaviour.record(request.url.path, body, headers)
        if not headers.get("anthropic-version"):
            return error_response(400, "invalid_request_error", "anthropic-version: header is required")
        problem = _validate(body)
        if problem:
            return error_response(400, "invalid_request_error", problem)

        fault = behaviour.next_fault()
        if fault is not None:
            log.debug("fake anthropic: applying fault", extra={"fault": fault.kind, "fault_status": fault.status})
        if fault is not None and fault.kind == "status":
            return error_response(fault.status)
        if fault is not None and fault.kind == "rate_limit":
            return error_response(429, headers=_rate_limit_headers(fault))

        last = body["messages"][-1]
        partial = _text_of(last.get("content")) if last["role"] == "assistant" else None
        chunks = behaviour.reply_for(partial)
        model = behaviour.model or body["model"]
        if not body.get("stream"):
            text = "".join(chunks)
            return JSONResponse({
                "id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant", "model": model,
                "content": [{"type": "text", "text": text}], "stop_reason": "end_turn", "stop_sequence": None,
                "usage": {"input_tokens": behaviour.prompt_tokens,
                          "output_tokens": behaviour.completion_tokens(chunks)},
            })
        return StreamingResponse(
            _events(behaviour, fault, chunks, model),
            media_type="text/event-stream; charset=utf-8",
            headers={"cache-control": "no-cache", "request-id": _request_id()},
        )

    async def _events(behaviour: FakeBehaviour, fault: Fault | None, chunks: list[str],
                      model: str) -> AsyncIterator[bytes]:
        app.state.open_streams += 1
        try:
            async for piece in _event_bytes(behaviour, fault, chunks, model):
                yield piece
        finally:
            app.state.open_streams -= 1

    async def _event_bytes(behaviour: FakeBehaviour, fault: Fault | None, chunks: list[str],
                           model: str) -> AsyncIterator[bytes]:
        kind = fault.kind if fault is not None else None
        yield _sse("message_start", {"type": "message_start", "message": {
            "id": "msg_" + secrets.token_hex(12), "type": "message", "role": "assistant", "model": model,
            "content": [], "stop_reason": None, "stop_sequence": None,
            "usage": {"input_tokens": behaviour.prompt_tokens, "output_tokens": 1},
        }})
        yield _sse("content_block_start", {"type": "content_block_start", "index": 0,
                                           "content_block": {"type": "text", "text": ""}})
        yield _sse("ping", {"type": "ping"})
        if kind == "stall_before_first" and fault is not None:
            await asyncio.sleep(fault.stall)
        if behaviour.ttft:
            await asyncio.sleep(behaviour.ttft)
        # A fault fires before chunk `after_chunks`, or at the end when the script is shorter than that.
        fire_at = min(fault.after_chunks, len(chunks)) if fault is not None else -1
        for i in range(len(chunks) + 1):
            if i == fire_at:
                if kind == "stall_mid" and fault is not None:
                    await asyncio.sleep(fault.stall)
                elif kind == "truncate":
                    raise InjectedTruncation("fake: connection dropped mid-body")
                elif kind == "invalid_json":
                    yield b"event: content_block_delta\ndata: {not json\n\n"
                    return
                elif kind == "in_stream_error":
                    yield _sse("error", {"type": "error",
                                         "error": {"type": "overloaded_error", "message": "Overloaded"}})
                    return
            if i == len(chunks):
                break
            if i and behaviour.chunk_interval:
                await asyncio.sleep(behaviour.chunk_interval)
            yield _sse("content_block_delta", {"type": "content_block_delta", "index": 0,
                                               "delta": {"type": "text_delta", "text": chunks[i]}})
        yield _sse("content_block_stop", {"type": "content_block_stop", "index": 0})
        yield _sse("message_delta", {"type": "message_delta",
                                     "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                                     "usage": {"output_tokens": behaviour.completion_tokens(chunks)}})
        if kind == "no_terminal":
            return
        yield _sse("message_stop", {"type": "message_stop"})

    app = Starlette(routes=[Route("/v1/messages", messages, methods=["POST"])])
    app.state.open_streams = 0
    return app

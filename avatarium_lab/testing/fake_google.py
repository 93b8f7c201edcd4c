"""A loopback fake of the Gemini API (``generativelanguage.googleapis.com``) speaking its real wire format.

``make_google_app(behaviour)`` serves what the official ``google-genai`` SDK calls, unpatched:

- ``POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse`` -- SSE, one ``data: {...}\\r\\n\\r\\n`` event
  per chunk, each a ``GenerateContentResponse``; the last carries ``finishReason: "STOP"`` and full
  ``usageMetadata``. (google-genai 3.6 uses ``v1`` by default, ``v1beta`` with ``GOOGLE_GENAI_API_VERSION=beta``.)
- ``POST /{v1,v1beta}/models/{model}:generateContent`` -- the same reply as one JSON response (minimal).

The key travels in ``x-goog-api-key`` (``?key=`` is accepted too). A wrong key gets Google's real answer, which is
a 400 ``API_KEY_INVALID`` (not a 401); a missing key a 403. Faults (``FakeBehaviour.faults``) are applied as the
shared machinery describes; see ``_stream_events`` for how each one looks on this wire.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..providers import CONTINUE_INSTRUCTION
from .fake_vendors import FakeBehaviour, Fault, InjectedTruncation

log = logging.getLogger(__name__)

API_VERSIONS = ("v1", "v1beta")

# google.rpc.Code names and the messages the real API sends with them.
_STATUS_NAMES = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL", 501: "NOT_IMPLEMENTED",
    503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED",
}
_STATUS_MESSAGES = {
    500: "An internal error has occurred. Please retry or report in "
         "https://developers.generativeai.google/guide/troubleshooting",
    503: "The model is overloaded. Please try again later.",
    504: "The request timed out. Please try again.",
}
_RATE_LIMIT_MESSAGE = (
    "You exceeded your current quota, please check your plan and billing details. For more information on this "
    "error, head to: https://ai.google.dev/gemini-api/docs/rate-limits."
)




def error_body(code: int, message: str | None = None, details: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Google's JSON error envelope (``google.rpc.Status`` under ``error``)."""
    body: dict[str, Any] = {
        "code": code,
        "message": message or _STATUS_MESSAGES.get(code, f"Request failed with status {code}."),
        "status": _STATUS_NAMES.get(code, "UNKNOWN"),
    }
    if details:
        body["details"] = details
    return {"error": body}


def invalid_key_body() -> dict[str, Any]:
    """What generativelanguage.googleapis.com answers (with status 400) to a wrong API key."""
    return error_body(400, "API key not valid. Please pass a valid API key.", [{
        "@type": "type.googleapis.com/google.rpc.ErrorInfo",
        "reason": "API_KEY_INVALID",
        "domain": "googleapis.com",
        "metadata": {"service": "generativelanguage.googleapis.com"},
    }])


def rate_limit_body(retry_after: float | None) -> dict[str, Any]:
    """A 429 body as the Gemini API sends it: the retry delay lives in a ``google.rpc.RetryInfo`` detail."""
    details: list[dict[str, Any]] = [
        {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": [{
            "quotaMetric": "generativelanguage.googleapis.com/generate_content_free_tier_requests",
            "quotaId": "GenerateRequestsPerMinutePerProjectPerModel-FreeTier",
        }]},
        {"@type": "type.googleapis.com/google.rpc.Help", "links": [{
            "description": "Learn more about Gemini API quotas",
            "url": "https://ai.google.dev/gemini-api/docs/rate-limits",
        }]},
    ]
    if retry_after is not None:
        details.append({"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": f"{retry_after:g}s"})
    return error_body(429, _RATE_LIMIT_MESSAGE, details)


def _text_of(content: dict[str, Any]) -> str:
    return "".join(part.get("text", "") for part in content.get("parts") or [] if isinstance(part, dict))


def partial_of(body: dict[str, Any]) -> str | None:
    """The partial reply a request asks to continue: the 'model' turn before a final CONTINUE_INSTRUCTION."""
    contents = body.get("contents") or []
    if len(contents) >= 2:
        last, before = contents[-1], contents[-2]
        if (last.get("role") == "user" and _text_of(last).strip() == CONTINUE_INSTRUCTION
                and before.get("role") == "model"):
            return _text_of(before)
    return None


def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"


class _Reply:
    """The chunks of one reply and how to render each as a ``GenerateContentResponse``."""

    def __init__(self, behaviour: FakeBehaviour, model: str, body: dict[str, Any]) -> None:
        self.behaviour = behaviour
        self.model = model
        self.chunks = behaviour.reply_for(partial_of(body))
        self.response_id = uuid.uuid4().hex[:22]

    def usage(self, upto: int) -> dict[str, int]:
        prompt = self.behaviour.prompt_tokens
        done = self.behaviour.completion_tokens(self.chunks[:upto]) if upto else 0
        return {"promptTokenCount": prompt, "candidatesTokenCount": done, "totalTokenCount": prompt + done}

    def response(self, index: int, *, final: bool, text: str | None = None) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": self.chunks[index] if text is None else text}], "role": "model"},
            "index": 0,
        }
        if final:
            candidate["finishReason"] = "STOP"
            usage = self.usage(len(self.chunks))
        else:
            # Like the real API, intermediate chunks report the prompt's tokens but not yet the candidates'.
            usage = {"promptTokenCount": self.behaviour.prompt_tokens,
                     "totalTokenCount": self.behaviour.prompt_tokens}
        return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": self.model,
                "responseId": self.response_id}


async def _stream_events(reply: _Reply, fault: Fault | None) -> AsyncGenerator[bytes, None]:
    """The SSE body of one streamed reply, with ``fault`` (one of the mid-stream kinds) applied."""
    b = reply.behaviour
    kind = fault.kind if fault else None
    stall = fault.stall if fault else 0.0
    n = len(reply.chunks)
    cut = min(max(fault.after_chunks, 0), n) if fault else n  # chunks sent before a mid-stream fault
    if kind == "stall_before_first":
        await asyncio.sleep(stall)  # headers are already out: StreamingResponse sends them before the body
    if b.ttft:
        await asyncio.sleep(b.ttft)
    for i in range(n):
        if i == cut and kind in ("stall_mid", "truncate", "invalid_json", "in_stream_error"):
            if kind == "stall_mid":
                await asyncio.sleep(stall)
            elif kind == "truncate":
                raise InjectedTruncation("fake 'truncate' fault: dropping the connection mid-body")
            elif kind == "invalid_json":
                yield b"data: {not json\r\n\r\n"
                return
            else:
                yield _sse(error_body(503, "The model is overloaded. Please try again later."))
                return
        if i and b.chunk_interval:
            await asyncio.sleep(b.chunk_interval)
        yield _sse(reply.response(i, final=(i == n - 1 and kind != "no_terminal")))
    if n == 0 and kind is None:
        # Nothing left to say (asked to continue a reply that was already complete): the API still ends the
        # stream with one empty candidate carrying the finish reason.
        yield _sse(reply.response(0, final=True, text=""))
    if cut == n and kind == "truncate":
        raise InjectedTruncation("fake 'truncate' fault: dropping the connection before the body ends")
    if cut == n and kind == "invalid_json":
        yield b"data: {not json\r\n\r\n"
    if cut == n and kind == "in_stream_error":
        yield _sse(error_body(503, "The model is overloaded. Please try again later."))


def make_google_app(behaviour: FakeBehaviour) -> Starlette:
    """A Starlette app faking the Gemini API's generateContent endpoints, driven by ``behaviour``.

    ``app.state.open_streams`` counts streamed bodies still being served: it drops back once a client that
    stopped reading has really closed its connection (what tests of an early ``aclose`` poll for).
    """

    async def tracked(events: AsyncGenerator[bytes, None]) -> AsyncIterator[bytes]:
        app.state.open_streams += 1
        try:
            async for event in events:
                yield event
        finally:
            app.state.open_streams -= 1
            await events.aclose()

    async def models(request: Request) -> Response:
        version = request.path_params["version"]
        model, sep, method = request.path_params["rest"].rpartition(":")
        if version not in API_VERSIONS or not sep or method not in ("streamGenerateContent", "generateContent"):
            return JSONResponse(error_body(404, f"Method not found: {request.url.path}"), status_code=404)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return JSONResponse(error_body(
                403, "Method doesn't allow unregistered callers (callers without established identity). "
                     "Please use API Key or other form of API consumer identity to call this API."),
                status_code=403)
        if key != behaviour.api_key:
            return JSONResponse(invalid_key_body(), status_code=400)
        try:
            body = await request.json()
        except ValueError:
            body = None
        behaviour.record(request.url.path, body, dict(request.headers))
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return JSONResponse(error_body(400, "Invalid JSON payload received. 'contents' is required."),
                                status_code=400)
        if behaviour.model and model != behaviour.model:
            return JSONResponse(error_body(
                404, f"models/{model} is not found for API version {version}, or is not supported for "
                     f"{method}. Call ListModels to see the list of available models and their supported methods."),
                status_code=404)
        fault = behaviour.next_fault()
        if fault is not None and fault.kind == "status":
            return JSONResponse(error_body(fault.status), status_code=fault.status)
        if fault is not None and fault.kind == "rate_limit":
            return JSONResponse(rate_limit_body(fault.retry_after), status_code=429)
        reply = _Reply(behaviour, model, body)
        if method == "generateContent":
            if fault is not None and fault.kind in ("stall_before_first", "stall_mid"):
                await asyncio.sleep(fault.stall)
            await asyncio.sleep(behaviour.ttft)
            whole = reply.response(0, final=True, text="".join(reply.chunks))
            return JSONResponse(whole)
        # alt=sse is what the SDK asks for; without it the real API streams a JSON array, which is not faked.
        return StreamingResponse(tracked(_stream_events(reply, fault)), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    app = Starlette(routes=[Route("/{version}/models/{rest:path}", models, methods=["POST"])])
    app.state.open_streams = 0
    return app

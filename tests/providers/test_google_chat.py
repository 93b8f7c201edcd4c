"""Tests of the Gemini adapter (google-genai, unpatched) against the loopback Gemini fake, fault by fault."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import socket
import struct
import threading
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import httpx2
import pytest
import pytest_asyncio
from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import StreamingResponse
from starlette.routing import Route

from avatarium_lab.errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from avatarium_lab.providers import (
    CONTINUE_INSTRUCTION,
    ChatMessage,
    Delta,
    GenerationParams,
    ProviderTimeouts,
    StreamItem,
    UsageReport,
)
from avatarium_lab.providers.google_chat import (
    GoogleChatProvider,
    parse_retry_after_header,
    parse_retry_delay,
    retry_after_of,
)
from avatarium_lab.secrets import Secret
from avatarium_lab.testing.fake_google import make_google_app
from avatarium_lab.testing.fake_vendors import FakeBehaviour, FakeServer, Fault, closed_port_url, script_chunks

MODEL = "gemini-3.1-flash"
SYSTEM = "You are Aria, a warm and patient tutor."
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Hello!"},
    {"role": "assistant", "content": "Hi, what shall we learn today?"},
    {"role": "user", "content": "Tell me about the ocean."},
]
PARAMS = GenerationParams(max_tokens=80, temperature=0.4, top_p=0.8, seed=7)
STALL_TIMEOUTS = ProviderTimeouts(connect=2.0, first_token=0.3, idle=0.3)
WRONG_KEY = "wrong-key-9876543210fedcba"


@pytest.fixture(scope="module")
def behaviour() -> FakeBehaviour:
    return FakeBehaviour(model=MODEL)


@pytest.fixture(scope="module")
def server(behaviour: FakeBehaviour) -> Iterator[FakeServer]:
    with FakeServer(make_google_app(behaviour)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def _fresh(behaviour: FakeBehaviour) -> None:
    behaviour.faults.clear()
    behaviour.requests.clear()
    behaviour.ttft = 0.0
    behaviour.chunk_interval = 0.0


@pytest_asyncio.fixture
async def provider(server: FakeServer, behaviour: FakeBehaviour) -> AsyncIterator[GoogleChatProvider]:
    p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=server.url)
    yield p
    await p.aclose()


@pytest_asyncio.fixture
async def stall_provider(server: FakeServer, behaviour: FakeBehaviour) -> AsyncIterator[GoogleChatProvider]:
    p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=server.url,
                           timeouts=STALL_TIMEOUTS)
    yield p
    await p.aclose()


async def collect(provider: GoogleChatProvider, messages: list[ChatMessage] = MESSAGES, *,
                  continue_from: str = "") -> list[StreamItem]:
    return [item async for item in provider.stream(messages, PARAMS, continue_from=continue_from)]


async def collect_until_error(provider: GoogleChatProvider) -> tuple[list[StreamItem], ProviderError]:
    items: list[StreamItem] = []
    with pytest.raises(ProviderError) as info:
        async for item in provider.stream(MESSAGES, PARAMS):
            items.append(item)
    return items, info.value


async def wait_until(predicate: Callable[[], bool], within: float = 5.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` (state of the fake server's thread) until it holds or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    for _ in range(int(within / step) + 1):
        if predicate() or time.monotonic() > deadline:
            break
        await asyncio.sleep(step)
    return predicate()


def text_of(items: list[StreamItem]) -> str:
    return "".join(i.text for i in items if isinstance(i, Delta))


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """The error's message, str, repr and full traceback (with its cause) never show a key."""
    rendered = [str(exc), repr(exc), getattr(exc, "message", ""), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in rendered:
            assert secret not in text


# -- the happy path -------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_streams_the_script_exactly_then_one_usage_report(provider: GoogleChatProvider,
                                                                behaviour: FakeBehaviour) -> None:
    items = await collect(provider)
    assert text_of(items) == behaviour.script
    assert [type(i) for i in items[:-1]] == [Delta] * (len(items) - 1)
    chunks = script_chunks(behaviour.script, behaviour.words_per_chunk)
    assert items[-1] == UsageReport(prompt_tokens=behaviour.prompt_tokens,
                                    completion_tokens=behaviour.completion_tokens(chunks), estimated=False)


@pytest.mark.asyncio
async def test_request_uses_gemini_wire_format(provider: GoogleChatProvider, behaviour: FakeBehaviour) -> None:
    await collect(provider)
    [request] = behaviour.requests
    assert request["path"] == f"/v1/models/{MODEL}:streamGenerateContent"
    body = request["body"]
    assert body["systemInstruction"]["parts"] == [{"text": SYSTEM}]
    assert [c["role"] for c in body["contents"]] == ["user", "model", "user"]
    assert [c["parts"][0]["text"] for c in body["contents"]] == [m["content"] for m in MESSAGES[1:]]
    config = body["generationConfig"]
    assert config["maxOutputTokens"] == 80
    assert config["temperature"] == pytest.approx(0.4)
    assert config["topP"] == pytest.approx(0.8)
    assert config["seed"] == 7
    # client-side switches (no automatic function calling, no automatic stream resumption) stay client-side
    assert "automaticFunctionCalling" not in json.dumps(body) and "continuation" not in json.dumps(body).lower()
    # the key travels in the x-goog-api-key header (hidden from the record), never in the URL
    assert behaviour.api_key not in json.dumps(request)
    assert "x-server-timeout" not in request["headers"]  # no server-side deadline on long replies


@pytest.mark.asyncio
async def test_extra_headers_are_sent(server: FakeServer, behaviour: FakeBehaviour) -> None:
    p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=server.url,
                           headers={"x-tenant": "acme"})
    try:
        await collect(p)
    finally:
        await p.aclose()
    assert behaviour.requests[-1]["headers"]["x-tenant"] == "acme"


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 5, 17])
async def test_continuation_yields_exactly_the_rest(provider: GoogleChatProvider, behaviour: FakeBehaviour,
                                                    n: int) -> None:
    chunks = script_chunks(behaviour.script, behaviour.words_per_chunk)
    partial = "".join(chunks[:n])
    items = await collect(provider, continue_from=partial)
    assert text_of(items) == "".join(chunks[n:])
    assert partial + text_of(items) == behaviour.script
    contents = behaviour.requests[-1]["body"]["contents"]
    assert contents[-2] == {"role": "model", "parts": [{"text": partial}]}
    assert contents[-1] == {"role": "user", "parts": [{"text": CONTINUE_INSTRUCTION}]}
    assert [c["role"] for c in contents[:-2]] == ["user", "model", "user"]
    assert isinstance(items[-1], UsageReport)
    assert items[-1].completion_tokens == behaviour.completion_tokens(chunks[n:])


# -- faults ---------------------------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "expected"), [
    (500, ProviderUnavailable), (503, ProviderUnavailable), (504, ProviderUnavailable),
    (400, ProviderBadRequest), (404, ProviderBadRequest), (401, ProviderAuthError), (403, ProviderAuthError),
])
async def test_status_fault(provider: GoogleChatProvider, behaviour: FakeBehaviour, status: int,
                            expected: type[ProviderError]) -> None:
    behaviour.faults.append(Fault("status", status=status))
    items, exc = await collect_until_error(provider)
    assert type(exc) is expected
    assert items == []
    assert exc.status == status and exc.provider == f"google:{MODEL}"
    assert f"google:{MODEL}" in exc.message and str(status) in exc.message
    assert_clean(exc, behaviour.api_key)


@pytest.mark.asyncio
async def test_overloaded_503_message_is_googles(provider: GoogleChatProvider, behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("status", status=503))
    _, exc = await collect_until_error(provider)
    assert exc.retryable
    assert "503 UNAVAILABLE" in exc.message and "overloaded" in exc.message


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [2.0, 1.5, 0.25])
async def test_rate_limit_carries_retry_after_from_retry_info(provider: GoogleChatProvider,
                                                              behaviour: FakeBehaviour, delay: float) -> None:
    behaviour.faults.append(Fault("rate_limit", retry_after=delay))
    _, exc = await collect_until_error(provider)
    assert isinstance(exc, RateLimited)
    assert exc.retry_after == pytest.approx(delay)
    assert exc.status == 429 and exc.retryable
    assert_clean(exc, behaviour.api_key)


@pytest.mark.asyncio
async def test_rate_limit_without_retry_info(provider: GoogleChatProvider, behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("rate_limit", retry_after=None))
    _, exc = await collect_until_error(provider)
    assert isinstance(exc, RateLimited) and exc.retry_after is None


# kind, after_chunks, expected error; after_chunks=0 is "before the first token", 3 is mid-stream.
STREAM_FAULTS = [
    ("stall_before_first", 0, ProviderTimeout),
    ("stall_mid", 0, ProviderTimeout),
    ("stall_mid", 3, ProviderTimeout),
    ("truncate", 0, MalformedStream),
    ("truncate", 3, MalformedStream),
    ("invalid_json", 0, MalformedStream),
    ("invalid_json", 3, MalformedStream),
    ("in_stream_error", 0, ProviderUnavailable),
    ("in_stream_error", 3, ProviderUnavailable),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "after", "expected"), STREAM_FAULTS)
async def test_stream_fault(stall_provider: GoogleChatProvider, behaviour: FakeBehaviour, kind: str,
                            after: int, expected: type[ProviderError]) -> None:
    behaviour.faults.append(Fault(kind, after_chunks=after, stall=2.0))  # type: ignore[arg-type]
    started = time.monotonic()
    items, exc = await collect_until_error(stall_provider)
    elapsed = time.monotonic() - started
    assert type(exc) is expected, exc
    chunks = script_chunks(behaviour.script, behaviour.words_per_chunk)
    assert text_of(items) == "".join(chunks[:after])  # exactly the text sent before the fault, then the error
    assert not any(isinstance(i, UsageReport) for i in items)
    assert exc.provider == f"google:{MODEL}" and f"google:{MODEL}" in exc.message
    assert exc.retryable
    if expected is ProviderTimeout:
        assert 0.25 <= elapsed < 1.5  # the 0.3 s read timeout, not the fake's 2 s stall
    assert_clean(exc, behaviour.api_key)


@pytest.mark.asyncio
async def test_stream_without_finish_reason_is_malformed(provider: GoogleChatProvider,
                                                         behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("no_terminal"))
    items, exc = await collect_until_error(provider)
    assert type(exc) is MalformedStream
    assert text_of(items) == behaviour.script  # every chunk arrived; only the terminal finishReason is missing
    assert "finish reason" in exc.message


@pytest.mark.asyncio
async def test_in_stream_error_names_the_stream(provider: GoogleChatProvider, behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("in_stream_error", after_chunks=2))
    _, exc = await collect_until_error(provider)
    assert isinstance(exc, ProviderUnavailable) and exc.status == 503
    assert "inside the stream" in exc.message


@pytest.mark.asyncio
async def test_a_fault_is_used_once_then_the_next_request_succeeds(provider: GoogleChatProvider,
                                                                   behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("truncate", after_chunks=2))
    await collect_until_error(provider)
    assert text_of(await collect(provider)) == behaviour.script
    assert len(behaviour.requests) == 2  # the SDK did not retry or resume on its own


@pytest.mark.asyncio
async def test_refused_connection_is_unavailable(behaviour: FakeBehaviour) -> None:
    p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=closed_port_url())
    try:
        _, exc = await collect_until_error(p)
    finally:
        await p.aclose()
    assert type(exc) is ProviderUnavailable and exc.retryable
    assert_clean(exc, behaviour.api_key)


@contextlib.contextmanager
def resetting_server(mode: str) -> Iterator[str]:
    """A loopback TCP server that reads the request, then resets the connection ("reset") or closes it cleanly
    ("close") without sending a response: a connection lost before the response starts."""
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.bind(("127.0.0.1", 0))
    listener.listen(4)
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve() -> None:
        for _ in range(200):  # bounded: at most ~40 s, normally ended by `stop` at once
            if stop.is_set():
                break
            try:
                conn, _addr = listener.accept()
            except TimeoutError:
                continue
            with conn:
                conn.settimeout(2)
                with contextlib.suppress(OSError):
                    conn.recv(65536)
                if mode == "reset":  # SO_LINGER 0: close() sends an RST instead of a FIN
                    conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{listener.getsockname()[1]}"
    finally:
        stop.set()
        thread.join(timeout=5)
        listener.close()


@pytest.mark.asyncio
@pytest.mark.parametrize("mode", ["reset", "close"])
async def test_connection_lost_before_the_response_is_unavailable(behaviour: FakeBehaviour, mode: str) -> None:
    with resetting_server(mode) as url:
        p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=url)
        try:
            _, exc = await collect_until_error(p)
        finally:
            await p.aclose()
    assert type(exc) is ProviderUnavailable and exc.retryable, exc
    assert_clean(exc, behaviour.api_key)


@pytest.mark.asyncio
async def test_wrong_key_is_an_auth_error(server: FakeServer, behaviour: FakeBehaviour) -> None:
    p = GoogleChatProvider(model=MODEL, api_key=Secret(WRONG_KEY), base_url=server.url)
    try:
        _, exc = await collect_until_error(p)
    finally:
        await p.aclose()
    assert type(exc) is ProviderAuthError and not exc.retryable
    assert exc.status == 400  # Google answers a bad key with 400 API_KEY_INVALID, not 401
    assert "API key not valid" in exc.message
    assert_clean(exc, WRONG_KEY, behaviour.api_key)


@pytest.mark.parametrize("model", ["gemini?x", "gemini&alt=json", "../../v1/files", "models/../x", "", "  "])
def test_bad_model_name_fails_before_any_request(server: FakeServer, behaviour: FakeBehaviour, model: str) -> None:
    with pytest.raises(ProviderBadRequest) as info:
        GoogleChatProvider(model=model, api_key=Secret(behaviour.api_key), base_url=server.url)
    assert behaviour.requests == []
    assert not info.value.retryable


def test_missing_key_is_an_auth_error(server: FakeServer) -> None:
    with pytest.raises(ProviderAuthError, match="GEMINI_API_KEY"):
        GoogleChatProvider(model=MODEL, api_key=None, base_url=server.url)


@pytest.mark.asyncio
async def test_unknown_model_is_a_bad_request(server: FakeServer, behaviour: FakeBehaviour) -> None:
    p = GoogleChatProvider(model="gemini-0-nonexistent", api_key=Secret(behaviour.api_key), base_url=server.url)
    try:
        _, exc = await collect_until_error(p)
    finally:
        await p.aclose()
    assert type(exc) is ProviderBadRequest and exc.status == 404 and "NOT_FOUND" in exc.message


# -- secrets --------------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_key_never_shows_in_errors_repr_or_logs(server: FakeServer, behaviour: FakeBehaviour,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=server.url,
                              timeouts=STALL_TIMEOUTS)
    bad = GoogleChatProvider(model=MODEL, api_key=Secret(WRONG_KEY), base_url=server.url)
    refused = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=closed_port_url())
    errors: list[ProviderError] = []
    try:
        await collect(good)
        for fault in (Fault("status", status=500), Fault("rate_limit"), Fault("truncate"), Fault("invalid_json"),
                      Fault("no_terminal"), Fault("in_stream_error"), Fault("stall_mid", stall=2.0)):
            behaviour.faults.append(fault)
            errors.append((await collect_until_error(good))[1])
        errors.append((await collect_until_error(bad))[1])
        errors.append((await collect_until_error(refused))[1])
    finally:
        for p in (good, bad, refused):
            await p.aclose()
    for p in (good, bad, refused):
        for text in (str(p), repr(p), f"{p!r}"):
            assert behaviour.api_key not in text and WRONG_KEY not in text
        assert "[redacted]" in repr(p)
    for exc in errors:
        assert_clean(exc, behaviour.api_key, WRONG_KEY)
    assert caplog.records  # the SDK's HTTP library and the adapter did log at DEBUG
    for record in caplog.records:
        rendered = record.getMessage() + repr(record.__dict__)
        assert behaviour.api_key not in rendered and WRONG_KEY not in rendered
    assert behaviour.api_key not in caplog.text and WRONG_KEY not in caplog.text


# -- early close ----------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_closing_early_releases_the_connection(server: FakeServer, provider: GoogleChatProvider,
                                                     behaviour: FakeBehaviour) -> None:
    behaviour.chunk_interval = 0.25  # the whole script would take ~11 s: it cannot simply end by itself in time
    agen = provider.stream(MESSAGES, PARAMS)
    first = await asyncio.wait_for(anext(agen), timeout=5)
    assert isinstance(first, Delta)
    assert server.app.state.open_streams == 1
    await asyncio.wait_for(agen.aclose(), timeout=2)
    # the fake saw the client go: the HTTP connection was closed, not left to the garbage collector
    assert await wait_until(lambda: server.app.state.open_streams == 0, within=2.0)
    # and the provider still works afterwards
    behaviour.chunk_interval = 0.0
    assert text_of(await collect(provider)) == behaviour.script


@pytest.mark.asyncio
async def test_cancelling_the_consumer_does_not_hang(server: FakeServer, provider: GoogleChatProvider,
                                                     behaviour: FakeBehaviour) -> None:
    behaviour.chunk_interval = 0.25

    async def consume() -> None:
        async for _ in provider.stream(MESSAGES, PARAMS):
            pass

    task = asyncio.create_task(consume())
    assert await wait_until(lambda: server.app.state.open_streams == 1)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(task, timeout=2)
    assert await wait_until(lambda: server.app.state.open_streams == 0, within=2.0)


# -- finish reasons and usage the fake's faults do not cover (a tiny scripted SSE server) ----------------------

def _scripted_app(events: list[dict[str, Any]]) -> Starlette:
    async def endpoint(request: Request) -> StreamingResponse:
        async def body() -> AsyncIterator[bytes]:
            for event in events:
                yield b"data: " + json.dumps(event).encode() + b"\r\n\r\n"
        return StreamingResponse(body(), media_type="text/event-stream")
    return Starlette(routes=[Route("/{version}/models/{rest:path}", endpoint, methods=["POST"])])


def _chunk(text: str | None = None, finish: str | None = None, usage: dict[str, int] | None = None,
           thought: bool = False) -> dict[str, Any]:
    candidate: dict[str, Any] = {"index": 0, "content": {"role": "model", "parts": []}}
    if text is not None:
        candidate["content"]["parts"].append({"text": text, **({"thought": True} if thought else {})})
    if finish:
        candidate["finishReason"] = finish
    event: dict[str, Any] = {"candidates": [candidate], "modelVersion": MODEL}
    if usage:
        event["usageMetadata"] = usage
    return event


async def _run_scripted(events: list[dict[str, Any]]) -> tuple[list[StreamItem], ProviderError | None]:
    with FakeServer(_scripted_app(events)) as srv:
        p = GoogleChatProvider(model=MODEL, api_key=Secret("scripted-key-000000"), base_url=srv.url)
        items: list[StreamItem] = []
        try:
            async for item in p.stream(MESSAGES, PARAMS):
                items.append(item)
        except ProviderError as exc:
            return items, exc
        finally:
            await p.aclose()
    return items, None


@pytest.mark.asyncio
@pytest.mark.parametrize("reason", ["SAFETY", "RECITATION", "PROHIBITED_CONTENT", "BLOCKLIST", "OTHER"])
async def test_refusal_finish_reasons_are_errors(reason: str) -> None:
    items, exc = await _run_scripted([_chunk("Whales sing"), _chunk("", finish=reason)])
    assert text_of(items) == "Whales sing"
    assert type(exc) is ProviderError and not exc.retryable
    assert reason in exc.message


@pytest.mark.asyncio
async def test_blocked_prompt_is_an_error() -> None:
    items, exc = await _run_scripted([{"promptFeedback": {"blockReason": "SAFETY"}, "modelVersion": MODEL}])
    assert items == [] and type(exc) is ProviderError and "blocked" in exc.message


@pytest.mark.asyncio
async def test_max_tokens_is_a_normal_end_and_thoughts_are_not_text() -> None:
    usage = {"promptTokenCount": 10, "candidatesTokenCount": 4, "thoughtsTokenCount": 6, "totalTokenCount": 20}
    items, exc = await _run_scripted([_chunk("thinking...", thought=True), _chunk("Whales"),
                                      _chunk(" sing", finish="MAX_TOKENS", usage=usage)])
    assert exc is None
    assert text_of(items) == "Whales sing"
    assert items[-1] == UsageReport(prompt_tokens=10, completion_tokens=10)  # thinking is billed as output


@pytest.mark.asyncio
async def test_usage_is_estimated_when_the_model_reports_none() -> None:
    items, exc = await _run_scripted([_chunk("Whales sing to each other"), _chunk("", finish="STOP")])
    assert exc is None
    usage = items[-1]
    assert isinstance(usage, UsageReport) and usage.estimated
    assert usage.completion_tokens == len("Whales sing to each other") // 4 + 1
    assert usage.prompt_tokens >= 1


# -- small pieces ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "seconds"), [("2s", 2.0), ("1.5s", 1.5), ("0.250s", 0.25), ("30s", 30.0),
                                                ({"seconds": 3, "nanos": 500_000_000}, 3.5), ("soon", None),
                                                (None, None)])
def test_parse_retry_delay(value: Any, seconds: float | None) -> None:
    assert parse_retry_delay(value) == (pytest.approx(seconds) if seconds is not None else None)


def test_retry_after_header_is_the_fallback() -> None:
    exc = genai_errors.ClientError(429, {"error": {"code": 429, "status": "RESOURCE_EXHAUSTED"}},
                                   httpx2.Response(429, headers={"Retry-After": "4"}))
    assert retry_after_of(exc) == 4.0
    assert parse_retry_after_header("Wed, 21 Oct 2015 07:28:00 GMT") == 0.0
    assert parse_retry_after_header("") is None


def test_count_tokens_estimates_at_least_one(provider: GoogleChatProvider) -> None:
    assert provider.count_tokens("") == 1
    assert provider.count_tokens("abcd" * 10) == 10


def test_name_and_model(provider: GoogleChatProvider) -> None:
    assert provider.name == f"google:{MODEL}" and provider.model == MODEL


# -- the fake, through the unpatched SDK and raw HTTP ---------------------------------------------------------

@pytest.mark.asyncio
async def test_fake_serves_non_streaming_generate_content(server: FakeServer, behaviour: FakeBehaviour) -> None:
    client = genai.Client(api_key=behaviour.api_key, http_options=types.HttpOptions(
        base_url=server.url, retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        response = await client.aio.models.generate_content(model=MODEL, contents="Tell me about the ocean.")
    finally:
        await client.aio.aclose()
    assert response.text == behaviour.script
    assert response.candidates[0].finish_reason == types.FinishReason.STOP
    assert response.usage_metadata.prompt_token_count == behaviour.prompt_tokens
    assert behaviour.requests[-1]["path"] == f"/v1/models/{MODEL}:generateContent"


@pytest.mark.asyncio
async def test_fake_accepts_key_query_parameter_and_v1beta(server: FakeServer, behaviour: FakeBehaviour) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    async with httpx2.AsyncClient(base_url=server.url, timeout=5) as http:
        ok = await http.post(f"/v1beta/models/{MODEL}:streamGenerateContent",
                             params={"alt": "sse", "key": behaviour.api_key}, json=body)
        missing = await http.post(f"/v1beta/models/{MODEL}:streamGenerateContent", params={"alt": "sse"}, json=body)
    assert ok.status_code == 200 and ok.headers["content-type"].startswith("text/event-stream")
    events = [json.loads(line[len("data: "):]) for line in ok.text.split("\r\n\r\n") if line.startswith("data: ")]
    assert "".join(e["candidates"][0]["content"]["parts"][0]["text"] for e in events) == behaviour.script
    assert events[-1]["candidates"][0]["finishReason"] == "STOP"
    assert set(events[-1]["usageMetadata"]) == {"promptTokenCount", "candidatesTokenCount", "totalTokenCount"}
    assert missing.status_code == 403
    assert behaviour.api_key not in json.dumps(behaviour.requests)


# -- wiring ---------------------------------------------------------------------------------------------------

def test_provider_kind_google_builds_this_adapter(server: FakeServer, behaviour: FakeBehaviour) -> None:
    from avatarium_lab.config import ProviderConfig
    from avatarium_lab.providers.build import ProviderContext, build_member

    cfg = ProviderConfig(kind="google", model="gemini-3.1-flash", base_url=server.url, headers={"x-tenant": "t1"})
    member = build_member(cfg, ProviderContext(byok={"google": Secret(behaviour.api_key)}, use_keyring=False,
                                               environ={}))
    assert isinstance(member.provider, GoogleChatProvider)
    assert member.provider.name == "google:gemini-3.1-flash"

    async def run() -> str:
        try:
            return text_of([i async for i in member.provider.stream(MESSAGES, PARAMS)])
        finally:
            await member.provider.aclose()

    assert asyncio.run(run()) == behaviour.script
    assert behaviour.requests[-1]["headers"]["x-tenant"] == "t1"


def test_one_provider_serves_successive_event_loops(server: FakeServer, behaviour: FakeBehaviour) -> None:
    # google-genai keeps one connection pool per event loop; the adapter's hooks must work in each of them
    p = GoogleChatProvider(model=MODEL, api_key=Secret(behaviour.api_key), base_url=server.url,
                           timeouts=STALL_TIMEOUTS)

    async def run() -> str:
        return text_of(await collect(p))

    async def stall() -> ProviderError:
        behaviour.faults.append(Fault("stall_mid", after_chunks=1, stall=2.0))
        return (await collect_until_error(p))[1]

    assert asyncio.run(run()) == behaviour.script
    assert asyncio.run(run()) == behaviour.script
    assert isinstance(asyncio.run(stall()), ProviderTimeout)  # the per-request timeouts apply in a new loop too
    asyncio.run(p.aclose())

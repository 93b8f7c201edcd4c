"""The Anthropic adapter against the loopback Anthropic fake: streaming, prefill continuation, every fault, no leaks."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from typing import Any

import pytest

from avatarium_lab.config import ProviderConfig
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
    ChatMessage,
    ChatProvider,
    Delta,
    GenerationParams,
    ProviderTimeouts,
    UsageReport,
    adapter_factory,
)
from avatarium_lab.providers.anthropic_chat import AnthropicChatProvider
from avatarium_lab.secrets import Secret
from avatarium_lab.testing.fake_anthropic import make_anthropic_app
from avatarium_lab.testing.fake_vendors import FakeBehaviour, FakeServer, Fault, closed_port_url, script_chunks

MODEL = "claude-test-1"
KEY = "sk-ant-test-0123456789abcdefghijklmnop"
SYSTEM = "You are Ada, a cheerful science guide."
MESSAGES: list[ChatMessage] = [
    {"role": "system", "content": SYSTEM},
    {"role": "user", "content": "Tell me about the ocean."},
]
PARAMS = GenerationParams(max_tokens=64, temperature=0.5, top_p=0.9, seed=7)
FAST = ProviderTimeouts(connect=1.0, first_token=0.3, idle=0.3)


@pytest.fixture(scope="module")
def behaviour() -> FakeBehaviour:
    return FakeBehaviour(api_key=KEY, prompt_tokens=37)


@pytest.fixture(scope="module")
def server(behaviour: FakeBehaviour) -> Iterator[FakeServer]:
    with FakeServer(make_anthropic_app(behaviour)) as srv:
        yield srv


@pytest.fixture(autouse=True)
def reset(behaviour: FakeBehaviour) -> Iterator[None]:
    behaviour.faults.clear()
    behaviour.requests.clear()
    behaviour.chunk_interval = 0.0
    yield
    behaviour.faults.clear()
    behaviour.chunk_interval = 0.0


def provider(server: FakeServer, *, key: str = KEY, timeouts: ProviderTimeouts = ProviderTimeouts(),
             url: str | None = None) -> AnthropicChatProvider:
    return AnthropicChatProvider(model=MODEL, api_key=Secret(key), base_url=url or server.url, timeouts=timeouts)


async def collect(p: AnthropicChatProvider, *, continue_from: str = "",
                  messages: list[ChatMessage] = MESSAGES) -> tuple[str, list[Any]]:
    items = []
    try:
        async for item in p.stream(messages, PARAMS, continue_from=continue_from):
            items.append(item)
    finally:
        await p.aclose()
    return "".join(i.text for i in items if isinstance(i, Delta)), items


async def failure(p: AnthropicChatProvider) -> tuple[ProviderError, str]:
    """The typed error a stream raised, and the text streamed before it."""
    texts: list[str] = []
    with pytest.raises(ProviderError) as info:
        try:
            async for item in p.stream(MESSAGES, PARAMS):
                if isinstance(item, Delta):
                    texts.append(item.text)
        finally:
            await p.aclose()
    return info.value, "".join(texts)


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text


@pytest.mark.asyncio
async def test_streams_the_script_with_usage(server: FakeServer, behaviour: FakeBehaviour) -> None:
    text, items = await collect(provider(server))
    assert text == behaviour.script
    assert sum(isinstance(i, Delta) for i in items) == len(script_chunks(behaviour.script))
    usage = items[-1]
    assert isinstance(usage, UsageReport) and not usage.estimated
    assert usage.prompt_tokens == 37
    assert usage.completion_tokens == behaviour.completion_tokens(script_chunks(behaviour.script))


@pytest.mark.asyncio
async def test_request_shape(server: FakeServer, behaviour: FakeBehaviour) -> None:
    await collect(provider(server))
    (request,) = behaviour.requests
    body = request["body"]
    assert request["path"] == "/v1/messages"
    assert body["system"] == SYSTEM
    assert [m["role"] for m in body["messages"]] == ["user"]
    assert body["stream"] is True
    assert body["model"] == MODEL
    assert body["max_tokens"] == 64
    assert body["temperature"] == 0.5
    assert "top_p" not in body and "seed" not in body  # current Claude models reject temperature with top_p
    assert request["headers"].get("anthropic-version")
    assert_no_key(repr(request))


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 5, 12])
async def test_continuation_by_prefill(server: FakeServer, behaviour: FakeBehaviour, n: int) -> None:
    chunks = script_chunks(behaviour.script)
    partial = "".join(chunks[:n])
    text, _ = await collect(provider(server), continue_from=partial)
    assert text == "".join(chunks[n:])
    assert partial + text == behaviour.script
    last = behaviour.requests[-1]["body"]["messages"][-1]
    assert last == {"role": "assistant", "content": partial.rstrip()}


@pytest.mark.asyncio
async def test_continuation_after_trailing_space_does_not_double_it(server: FakeServer,
                                                                    behaviour: FakeBehaviour) -> None:
    chunks = script_chunks(behaviour.script)
    partial = "".join(chunks[:4]) + " "
    text, _ = await collect(provider(server), continue_from=partial)
    assert partial + text == behaviour.script
    assert not text.startswith(" ")
    last = behaviour.requests[-1]["body"]["messages"][-1]
    assert last["content"] == partial.rstrip() and not last["content"].endswith(" ")


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "error"), [
    (Fault("status", status=500), ProviderUnavailable),
    (Fault("status", status=503), ProviderUnavailable),
    (Fault("status", status=529), ProviderUnavailable),
    (Fault("status", status=400), ProviderBadRequest),
    (Fault("status", status=404), ProviderBadRequest),
    (Fault("status", status=403), ProviderAuthError),
    (Fault("rate_limit", retry_after=7), RateLimited),
    (Fault("stall_before_first", stall=3.0), ProviderTimeout),
    (Fault("truncate", after_chunks=0), MalformedStream),
    (Fault("invalid_json", after_chunks=0), MalformedStream),
    (Fault("in_stream_error", after_chunks=0), ProviderUnavailable),
], ids=lambda v: (v.kind + (str(v.status) if v.kind == "status" else "")) if isinstance(v, Fault) else v.__name__)
async def test_fault_before_first_token(server: FakeServer, behaviour: FakeBehaviour, fault: Fault,
                                        error: type[ProviderError]) -> None:
    behaviour.faults.append(fault)
    exc, text = await failure(provider(server, timeouts=FAST))
    assert type(exc) is error
    assert text == ""
    assert exc.provider == f"anthropic:{MODEL}" and exc.provider in exc.message
    assert_no_key(str(exc), repr(exc))
    if fault.kind == "status":
        assert exc.status == fault.status and str(fault.status) in exc.message


@pytest.mark.asyncio
@pytest.mark.parametrize(("kind", "error"), [
    ("stall_mid", ProviderTimeout),
    ("truncate", MalformedStream),
    ("invalid_json", MalformedStream),
    ("in_stream_error", ProviderUnavailable),
])
async def test_fault_mid_stream(server: FakeServer, behaviour: FakeBehaviour, kind: str,
                                error: type[ProviderError]) -> None:
    behaviour.faults.append(Fault(kind, after_chunks=3, stall=3.0))  # type: ignore[arg-type]
    exc, text = await failure(provider(server, timeouts=FAST))
    assert type(exc) is error
    assert text == "".join(script_chunks(behaviour.script)[:3])
    assert_no_key(str(exc), repr(exc))


@pytest.mark.asyncio
async def test_stream_without_message_stop_is_malformed(server: FakeServer, behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("no_terminal"))
    exc, text = await failure(provider(server))
    assert isinstance(exc, MalformedStream) and "message_stop" in exc.message
    assert text == behaviour.script  # every delta arrived; only the final event was missing


@pytest.mark.asyncio
async def test_rate_limit_carries_retry_after(server: FakeServer, behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("rate_limit", retry_after=2.5))
    exc, _ = await failure(provider(server))
    assert isinstance(exc, RateLimited) and exc.retryable
    assert exc.retry_after == 2.5 and exc.status == 429


@pytest.mark.asyncio
async def test_overloaded_529_and_in_stream_overload_are_unavailable(server: FakeServer,
                                                                     behaviour: FakeBehaviour) -> None:
    behaviour.faults.append(Fault("status", status=529))
    exc, _ = await failure(provider(server))
    assert isinstance(exc, ProviderUnavailable) and exc.status == 529 and "overloaded_error" in exc.message
    behaviour.faults.append(Fault("in_stream_error", after_chunks=2))
    exc, _ = await failure(provider(server))
    assert isinstance(exc, ProviderUnavailable) and "overloaded_error" in exc.message and exc.retryable


@pytest.mark.asyncio
async def test_refused_connection_is_unavailable(server: FakeServer) -> None:
    exc, _ = await failure(provider(server, url=closed_port_url(), timeouts=FAST))
    assert isinstance(exc, ProviderUnavailable)


@pytest.mark.asyncio
async def test_wrong_key_is_auth_error_and_never_leaks(server: FakeServer, behaviour: FakeBehaviour,
                                                       caplog: pytest.LogCaptureFixture) -> None:
    wrong = "sk-ant-wrong-9876543210zyxwvutsrqponm"
    caplog.set_level(logging.DEBUG)
    p = provider(server, key=wrong)
    exc, _ = await failure(p)
    assert isinstance(exc, ProviderAuthError) and exc.status == 401 and not exc.retryable
    assert "authentication_error" in exc.message
    for text in (str(exc), repr(exc), repr(p), str(p), caplog.text):
        assert wrong not in text


@pytest.mark.asyncio
async def test_key_never_in_logs_errors_or_repr(server: FakeServer, behaviour: FakeBehaviour,
                                                caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    p = provider(server, timeouts=FAST)
    assert_no_key(repr(p), str(p), f"{p}")
    await collect(provider(server))
    texts = [repr(p)]
    for fault in (Fault("status", status=500), Fault("rate_limit"), Fault("truncate"), Fault("invalid_json"),
                  Fault("in_stream_error"), Fault("stall_mid", stall=3.0)):
        behaviour.faults.append(fault)
        exc, _ = await failure(provider(server, timeouts=FAST))
        texts += [str(exc), repr(exc), exc.message]
    texts.append(caplog.text)
    texts += [str(r.__dict__) for r in caplog.records]
    assert any("anthropic" in r.name for r in caplog.records)  # the SDK's debug logging was captured
    assert_no_key(*texts)


@pytest.mark.asyncio
async def test_early_close_releases_the_response(server: FakeServer, behaviour: FakeBehaviour) -> None:
    # ~40 chunks 0.5 s apart: left alone the server would stream for ~20 s, far past the deadline below, so the
    # stream can only finish in time because the client dropped the connection.
    behaviour.chunk_interval = 0.5
    app = server.app
    p = provider(server)
    agen = p.stream(MESSAGES, PARAMS)
    first = await asyncio.wait_for(agen.__anext__(), timeout=5)
    assert isinstance(first, Delta)
    assert app.state.open_streams == 1
    started = time.monotonic()
    await asyncio.wait_for(agen.aclose(), timeout=5)
    for _ in range(250):  # poll, bounded: at most ~5 s
        if not app.state.open_streams or time.monotonic() - started > 5:
            break
        await asyncio.sleep(0.02)
    assert app.state.open_streams == 0, "the server is still streaming to a consumer that stopped"
    assert time.monotonic() - started < 5
    await asyncio.wait_for(p.aclose(), timeout=5)


@pytest.mark.asyncio
async def test_missing_key_fails_without_network() -> None:
    p = AnthropicChatProvider(model=MODEL, api_key=None, base_url=closed_port_url())
    with pytest.raises(ProviderAuthError):
        async for _ in p.stream(MESSAGES, PARAMS):
            pass
    await p.aclose()


def test_count_tokens_and_name() -> None:
    p = AnthropicChatProvider(model=MODEL, api_key=Secret(KEY))
    assert isinstance(p, ChatProvider)
    assert p.name == f"anthropic:{MODEL}" and p.model == MODEL
    assert p.count_tokens("") == 1
    assert p.count_tokens("a" * 40) == 10
    assert_no_key(repr(p), str(p))


@pytest.mark.asyncio
async def test_registered_for_kind_anthropic(server: FakeServer, behaviour: FakeBehaviour) -> None:
    cfg = ProviderConfig(kind="anthropic", model=MODEL, base_url=server.url, headers={"x-trace": "t1"})
    p = adapter_factory("anthropic")(cfg, model=MODEL, key=Secret(KEY), timeouts=FAST)
    assert isinstance(p, AnthropicChatProvider) and p.timeouts == FAST
    text, _ = await collect(p)
    assert text == behaviour.script
    assert behaviour.requests[-1]["headers"]["x-trace"] == "t1"

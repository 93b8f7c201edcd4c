"""Tests of the OpenAI-compatible chat adapter (OpenAI, xAI, custom) against the loopback OpenAI fake."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from avatarium_lab.config import ProviderConfig
from avatarium_lab.errors import (
    ConfigError,
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
    UsageReport,
    adapter_factory,
    estimate_tokens,
)
from avatarium_lab.providers.openai_chat import OpenAIChatProvider
from avatarium_lab.secrets import Secret
from avatarium_lab.testing.fake_openai import make_openai_app, mask_key
from avatarium_lab.testing.fake_vendors import (
    DEFAULT_SCRIPT,
    FakeBehaviour,
    FakeServer,
    Fault,
    closed_port_url,
    script_chunks,
)

KEY = "sk-proj-Tz4kQ9vLw2Xy7Rb1Nc5Md8Fg3Hj6Ks0P"
MODEL = "gpt-4o-mini"
SYSTEM = "You are Aria, a warm tutor. Answer in two sentences."
MESSAGES: list[ChatMessage] = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": "Tell me about the sea."}]
PARAMS = GenerationParams(max_tokens=80, temperature=0.4, top_p=0.8, seed=11)
FAST = ProviderTimeouts(connect=0.3, first_token=0.3, idle=0.3)
CHUNKS = script_chunks(DEFAULT_SCRIPT)


@pytest.fixture(scope="module")
def server() -> Iterator[tuple[FakeServer, FakeBehaviour]]:
    behaviour = FakeBehaviour(api_key=KEY)
    with FakeServer(make_openai_app(behaviour)) as srv:
        yield srv, behaviour


@pytest.fixture(scope="module")
def keyless_server() -> Iterator[tuple[FakeServer, FakeBehaviour]]:
    """A local server that wants no key (api_key empty), as many custom OpenAI-compatible servers are."""
    behaviour = FakeBehaviour(api_key="")
    with FakeServer(make_openai_app(behaviour)) as srv:
        yield srv, behaviour


@pytest.fixture
def fake(server: tuple[FakeServer, FakeBehaviour]) -> FakeBehaviour:
    """The module's fake, reset for this test."""
    _, behaviour = server
    behaviour.faults.clear()
    behaviour.requests.clear()
    behaviour.ttft = behaviour.chunk_interval = 0.0
    behaviour.api_key = KEY
    return behaviour


@pytest.fixture
def make(server: tuple[FakeServer, FakeBehaviour]) -> Callable[..., OpenAIChatProvider]:
    srv, _ = server

    def build(**kw: Any) -> OpenAIChatProvider:
        kw.setdefault("model", MODEL)
        kw.setdefault("api_key", Secret(KEY, source="env:OPENAI_API_KEY"))
        kw.setdefault("base_url", srv.url + "/v1")
        kw.setdefault("timeouts", FAST)
        return OpenAIChatProvider(**kw)

    return build


async def collect(provider: OpenAIChatProvider, **kw: Any) -> tuple[list[str], list[UsageReport]]:
    texts: list[str] = []
    usage: list[UsageReport] = []
    async for item in provider.stream(kw.pop("messages", MESSAGES), kw.pop("params", PARAMS), **kw):
        if isinstance(item, Delta):
            texts.append(item.text)
        elif isinstance(item, UsageReport):
            usage.append(item)
    return texts, usage


async def failing(provider: OpenAIChatProvider) -> tuple[list[str], ProviderError]:
    """The text streamed before the error, and the error."""
    texts: list[str] = []
    with pytest.raises(ProviderError) as info:
        async for item in provider.stream(MESSAGES, PARAMS):
            if isinstance(item, Delta):
                texts.append(item.text)
    return texts, info.value


def assert_no_key(*texts: str) -> None:
    for text in texts:
        assert KEY not in text
        assert mask_key(KEY) not in text
        assert KEY[-6:] not in text


# -- the happy path ---------------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_streams_the_script_exactly_with_usage_from_the_usage_chunk(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make()
    texts, usage = await collect(provider)
    await provider.aclose()
    assert "".join(texts) == DEFAULT_SCRIPT
    assert texts == CHUNKS
    assert usage == [UsageReport(prompt_tokens=fake.prompt_tokens, completion_tokens=fake.completion_tokens(CHUNKS))]
    assert provider.name == f"openai:{MODEL}" and provider.model == MODEL

    [request] = fake.requests
    body = request["body"]
    assert request["path"] == "/v1/chat/completions"
    assert body["messages"][0] == {"role": "system", "content": SYSTEM}
    assert body["messages"] == MESSAGES
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["model"] == MODEL
    assert body["max_completion_tokens"] == PARAMS.max_tokens and "max_tokens" not in body
    assert body["temperature"] == PARAMS.temperature and body["top_p"] == PARAMS.top_p and body["seed"] == PARAMS.seed
    assert request["outcome"] == "completed"


@pytest.mark.asyncio
async def test_no_seed_is_not_sent(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make()
    await collect(provider, params=GenerationParams(seed=None))
    await provider.aclose()
    assert "seed" not in fake.requests[0]["body"]


@pytest.mark.asyncio
async def test_usage_is_estimated_when_the_server_sends_none(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    class NoUsageRequested(OpenAIChatProvider):
        # A server that ignores stream_options sends no usage chunk; not asking for one has the same effect.
        def _request_kwargs(self, messages: list[ChatMessage], params: GenerationParams) -> dict[str, Any]:
            kwargs = super()._request_kwargs(messages, params)
            del kwargs["stream_options"]
            return kwargs

    provider = make()
    provider.__class__ = NoUsageRequested
    texts, usage = await collect(provider)
    await provider.aclose()
    assert "".join(texts) == DEFAULT_SCRIPT
    prompt_text = "".join(m["content"] for m in MESSAGES)
    assert usage == [UsageReport(prompt_tokens=estimate_tokens(prompt_text),
                                 completion_tokens=estimate_tokens(DEFAULT_SCRIPT), estimated=True)]


@pytest.mark.asyncio
async def test_xai_uses_max_tokens_and_its_name(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider],
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK would send these to any host; they belong to OpenAI only.
    monkeypatch.setenv("OPENAI_ORG_ID", "org-should-stay-home")
    monkeypatch.setenv("OPENAI_PROJECT_ID", "proj_should_stay_home")
    provider = make(vendor="xai", model="grok-4-fast", api_key=Secret(KEY, source="env:XAI_API_KEY"))
    texts, usage = await collect(provider)
    await provider.aclose()
    assert provider.name == "xai:grok-4-fast"
    assert "".join(texts) == DEFAULT_SCRIPT and not usage[0].estimated
    body, headers = fake.requests[0]["body"], fake.requests[0]["headers"]
    assert body["model"] == "grok-4-fast"
    assert body["max_tokens"] == PARAMS.max_tokens and "max_completion_tokens" not in body
    assert "openai-organization" not in headers and "openai-project" not in headers


@pytest.mark.asyncio
async def test_custom_server_without_a_key_gets_the_extra_headers(
        keyless_server: tuple[FakeServer, FakeBehaviour], monkeypatch: pytest.MonkeyPatch) -> None:
    srv, behaviour = keyless_server
    behaviour.requests.clear()
    monkeypatch.setenv("OPENAI_API_KEY", KEY)  # must not be picked up by the SDK for a custom server
    monkeypatch.setenv("OPENAI_CUSTOM_HEADERS", "X-From-Env: nope")
    provider = OpenAIChatProvider(model="llama-3.2-3b", api_key=None, vendor="custom", base_url=srv.url + "/v1",
                                  headers={"X-Tenant": "t-42", "X-Trace": "abc"}, timeouts=FAST)
    texts, usage = await collect(provider)
    await provider.aclose()
    assert provider.name == "custom:llama-3.2-3b"
    assert "".join(texts) == DEFAULT_SCRIPT and usage
    request = behaviour.requests[0]
    assert request["headers"]["x-tenant"] == "t-42" and request["headers"]["x-trace"] == "abc"
    assert "x-from-env" not in request["headers"]
    assert request["body"]["max_tokens"] == PARAMS.max_tokens
    assert "none" in repr(provider)


@pytest.mark.asyncio
async def test_custom_server_with_a_key_sends_it(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make(vendor="custom", model="local-model", headers={"X-Tenant": "t-1"})
    texts, _ = await collect(provider)
    await provider.aclose()
    assert "".join(texts) == DEFAULT_SCRIPT  # the fake checked the Bearer key
    assert fake.requests[0]["headers"]["x-tenant"] == "t-1"


# -- continuation -----------------------------------------------------------------------------------------------


@pytest.mark.asyncio
@pytest.mark.parametrize("n", [1, 7, len(CHUNKS) - 1])
async def test_continuation_streams_only_the_rest(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider],
                                                  n: int) -> None:
    partial = "".join(CHUNKS[:n])
    provider = make()
    texts, usage = await collect(provider, continue_from=partial)
    await provider.aclose()
    assert "".join(texts) == DEFAULT_SCRIPT[len(partial):]
    assert partial + "".join(texts) == DEFAULT_SCRIPT
    assert usage and usage[0].completion_tokens == len(CHUNKS) - n
    sent = fake.requests[0]["body"]["messages"]
    assert sent[:-2] == MESSAGES
    assert sent[-2:] == [{"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_INSTRUCTION}]


# -- faults -----------------------------------------------------------------------------------------------------


_MID_STREAM = ("stall_mid", "truncate", "invalid_json", "in_stream_error")
FAULTS: list[tuple[Fault, type[ProviderError], int | None]] = [
    (Fault("status", status=500), ProviderUnavailable, 500),
    (Fault("status", status=502), ProviderUnavailable, 502),
    (Fault("status", status=503), ProviderUnavailable, 503),
    (Fault("status", status=400), ProviderBadRequest, 400),
    (Fault("status", status=404), ProviderBadRequest, 404),
    (Fault("status", status=422), ProviderBadRequest, 422),
    (Fault("status", status=403), ProviderAuthError, 403),
    (Fault("status", status=401), ProviderAuthError, 401),
    (Fault("stall_before_first", stall=5), ProviderTimeout, None),
    (Fault("stall_mid", stall=5, after_chunks=0), ProviderTimeout, None),
    (Fault("stall_mid", stall=5, after_chunks=3), ProviderTimeout, None),
    (Fault("truncate", after_chunks=0), MalformedStream, 200),
    (Fault("truncate", after_chunks=3), MalformedStream, 200),
    (Fault("invalid_json", after_chunks=0), MalformedStream, 200),
    (Fault("invalid_json", after_chunks=3), MalformedStream, 200),
    (Fault("in_stream_error", after_chunks=0), ProviderUnavailable, 200),
    (Fault("in_stream_error", after_chunks=3), ProviderUnavailable, 200),
    (Fault("no_terminal"), MalformedStream, 200),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("fault", "error", "status"), FAULTS,
                         ids=[f"{f.kind}-{f.status}" if f.kind == "status" else f"{f.kind}-after-{f.after_chunks}"
                              if f.kind in _MID_STREAM else f.kind for f, _, _ in FAULTS])
async def test_fault_gives_its_typed_error(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider],
                                           fault: Fault, error: type[ProviderError], status: int | None) -> None:
    fake.faults.append(fault)
    provider = make()
    started = time.monotonic()
    texts, err = await failing(provider)
    elapsed = time.monotonic() - started
    await provider.aclose()
    assert type(err) is error, repr(err)
    assert err.status == status
    assert err.provider == provider.name and err.message.startswith(provider.name)
    if status is not None and status >= 400:
        assert f"HTTP {status}" in err.message
    if fault.kind == "no_terminal":
        assert "".join(texts) == DEFAULT_SCRIPT  # everything arrived, but nothing says it was complete
    elif fault.kind in ("status", "stall_before_first"):
        assert texts == []
    else:
        assert texts == CHUNKS[:fault.after_chunks]  # exactly what came before the fault
    if fault.kind.startswith("stall"):
        assert elapsed < 3, "the read timeout (0.3 s) should end a stall, not the stall itself"
    assert err.retryable == (error not in (ProviderBadRequest, ProviderAuthError))
    assert_no_key(str(err), repr(err), err.message)


@pytest.mark.asyncio
@pytest.mark.parametrize(("retry_after", "expected"), [(2, 2.0), (0.5, 0.5), (None, None)])
async def test_rate_limit_carries_retry_after(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider],
                                              retry_after: float | None, expected: float | None) -> None:
    fake.faults.append(Fault("rate_limit", retry_after=retry_after))
    provider = make()
    texts, err = await failing(provider)
    await provider.aclose()
    assert isinstance(err, RateLimited) and err.status == 429 and err.retryable
    assert err.retry_after == expected
    assert texts == []
    assert_no_key(str(err), repr(err))


@pytest.mark.asyncio
async def test_status_429_fault_is_rate_limited_too(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    fake.faults.append(Fault("status", status=429, retry_after=3))
    provider = make()
    _, err = await failing(provider)
    await provider.aclose()
    assert isinstance(err, RateLimited) and err.retry_after == 3.0


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["truncate", "stall_mid"])
async def test_a_break_after_the_finish_reason_keeps_the_complete_reply(
        fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider], kind: str,
        caplog: pytest.LogCaptureFixture) -> None:
    # after_chunks past the last content chunk: the fake breaks after the finish_reason chunk, before usage
    fake.faults.append(Fault(kind, after_chunks=len(CHUNKS) + 1, stall=5))  # type: ignore[arg-type]
    provider = make()
    texts, usage = await collect(provider)
    await provider.aclose()
    assert "".join(texts) == DEFAULT_SCRIPT
    assert len(usage) == 1 and usage[0].estimated
    assert "finish_reason" in caplog.text


@pytest.mark.asyncio
async def test_refused_connection_is_unavailable(make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make(base_url=closed_port_url() + "/v1")
    texts, err = await failing(provider)
    await provider.aclose()
    assert type(err) is ProviderUnavailable and err.retryable and err.status is None
    assert texts == []
    assert_no_key(str(err), repr(err))


@pytest.mark.asyncio
async def test_wrong_key_is_an_auth_error_that_shows_neither_key(fake: FakeBehaviour,
                                                                 make: Callable[..., OpenAIChatProvider]) -> None:
    wrong = "not-the-right-key-0123456789"
    provider = make(api_key=Secret(wrong, source="tenant:openai"))
    texts, err = await failing(provider)
    await provider.aclose()
    assert type(err) is ProviderAuthError and err.status == 401 and not err.retryable
    assert "Incorrect API key provided" in err.message  # OpenAI's own explanation survives ...
    for text in (str(err), repr(err)):
        assert wrong not in text and mask_key(wrong) not in text and wrong[-4:] not in text  # ... its key does not
    assert fake.requests == []  # a rejected key is not recorded


def test_repr_and_str_never_show_the_key(make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make()
    for text in (repr(provider), str(provider), f"{provider}"):
        assert_no_key(text)
    assert "env:OPENAI_API_KEY" in repr(provider) and MODEL in repr(provider)


@pytest.mark.asyncio
async def test_key_never_reaches_the_logs(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider],
                                          caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    provider = make()
    await collect(provider)
    for fault in (Fault("rate_limit"), Fault("truncate"), Fault("status", status=500), Fault("in_stream_error")):
        fake.faults.append(fault)
        await failing(provider)
    fake.api_key = "another-key-entirely-0000"
    _, err = await failing(provider)
    assert isinstance(err, ProviderAuthError)
    logging.getLogger("test").debug("provider %r failed: %s", provider, err)
    await provider.aclose()
    assert caplog.records, "the SDK and httpx2 log at DEBUG: there is something to check"
    assert_no_key(caplog.text)
    for record in caplog.records:
        assert_no_key(record.getMessage())


# -- closing and event loops ------------------------------------------------------------------------------------


@pytest.mark.asyncio
async def test_closing_early_releases_the_server(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    fake.chunk_interval = 0.05
    provider = make(timeouts=ProviderTimeouts(connect=1, first_token=5, idle=5))
    stream = provider.stream(MESSAGES, PARAMS)
    got = [await anext(stream) for _ in range(3)]
    assert [d.text for d in got if isinstance(d, Delta)] == CHUNKS[:3]
    await asyncio.wait_for(stream.aclose(), timeout=2)  # the adapter does not hang on close
    # The fake runs in another thread: poll its record, bounded by a deadline.
    deadline = time.monotonic() + 5
    for _ in range(1000):
        if fake.requests[0].get("outcome") == "disconnected" or time.monotonic() > deadline:
            break
        await asyncio.sleep(0.01)
    assert fake.requests[0].get("outcome") == "disconnected"
    # and the provider still works afterwards
    fake.chunk_interval = 0.0
    texts, _ = await collect(provider)
    assert "".join(texts) == DEFAULT_SCRIPT
    await provider.aclose()


def test_one_provider_serves_successive_event_loops(fake: FakeBehaviour, make: Callable[..., OpenAIChatProvider]) -> None:
    # The SDK's pooled connections belong to one loop: reused from a second asyncio.run they fail with
    # "Event loop is closed" unless the adapter gives each loop its own client.
    provider = make()
    for _ in range(3):
        texts, _ = asyncio.run(collect(provider))
        assert "".join(texts) == DEFAULT_SCRIPT
    asyncio.run(provider.aclose())


# -- construction -----------------------------------------------------------------------------------------------


def test_configuration_errors(server: tuple[FakeServer, FakeBehaviour]) -> None:
    with pytest.raises(ConfigError, match="base_url"):
        OpenAIChatProvider(model="m", api_key=None, vendor="custom")
    with pytest.raises(ConfigError, match="not an http"):
        OpenAIChatProvider(model="m", api_key=None, vendor="custom", base_url="localhost:8000")
    with pytest.raises(ConfigError, match="vendor"):
        OpenAIChatProvider(model="m", api_key=Secret(KEY), vendor="anthropic")
    with pytest.raises(ProviderAuthError, match="OPENAI_API_KEY"):
        OpenAIChatProvider(model="m", api_key=None)
    with pytest.raises(ProviderAuthError, match="XAI_API_KEY"):
        OpenAIChatProvider(model="m", api_key=None, vendor="xai")
    with pytest.raises(TypeError):
        OpenAIChatProvider(model="m", api_key=KEY)  # type: ignore[arg-type]
    assert OpenAIChatProvider(model="m", api_key=Secret(KEY)).base_url == "https://api.openai.com/v1"
    assert OpenAIChatProvider(model="m", api_key=Secret(KEY), vendor="xai").base_url == "https://api.x.ai/v1"


def test_registered_for_openai_xai_and_custom(server: tuple[FakeServer, FakeBehaviour]) -> None:
    srv, _ = server
    for kind in ("openai", "xai", "custom"):
        cfg = ProviderConfig(kind=kind, model="m", base_url=srv.url + "/v1", headers={"X-A": "1"})
        provider = adapter_factory(kind)(cfg, model="vendor-m", key=Secret(KEY), timeouts=FAST)
        assert isinstance(provider, OpenAIChatProvider)
        assert provider.name == f"{kind}:vendor-m" and provider.base_url == srv.url + "/v1"


def test_count_tokens_estimates_four_characters_a_token(make: Callable[..., OpenAIChatProvider]) -> None:
    provider = make()
    assert provider.count_tokens("") == 1
    assert provider.count_tokens("abcd" * 25) == 25

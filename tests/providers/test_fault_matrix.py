"""The fault matrix: every fault, before the first token and mid-stream, on every vendor, through the real SDKs.

Each vendor's loopback fake streams the same script. A chain of (faulty vendor -> next vendor) must deliver the
whole script exactly once -- no repetition, no gap -- whatever the fault; the same fault with no fallback must
end in a typed error that names it. Nothing here patches an SDK: the chains are built from configurations by
``build_chain``, exactly as a notebook builds them, with base URLs pointing at 127.0.0.1.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest

from avatarium_lab.config import Config, FailoverConfig, ProviderConfig, TimeoutsConfig
from avatarium_lab.errors import AllProvidersFailed
from avatarium_lab.providers import AttemptReport, Delta, GenerationParams, SwitchReport
from avatarium_lab.providers.build import ProviderContext, build_chain
from avatarium_lab.providers.failover import CircuitBreaker
from avatarium_lab.secrets import Secret
from avatarium_lab.testing import DEFAULT_SCRIPT, FakeBehaviour, FakeServer, Fault
from avatarium_lab.testing.fake_anthropic import make_anthropic_app
from avatarium_lab.testing.fake_google import make_google_app
from avatarium_lab.testing.fake_openai import make_openai_app
from avatarium_lab.testing.fake_vendors import closed_port_url

KEY = "sk-matrix-0123456789abcdefghijkl"
VENDORS = ("openai", "anthropic", "google")
MODELS = {"openai": "gpt-4o-mini", "anthropic": "claude-haiku-3.5", "google": "gemini-3.1-flash"}
APPS = {"openai": make_openai_app, "anthropic": make_anthropic_app, "google": make_google_app}
MESSAGES = [{"role": "system", "content": "You are Aria."}, {"role": "user", "content": "Tell me about the ocean."}]
PARAMS = GenerationParams(max_tokens=128, temperature=0.5)

# (fault, the attempt's error code, positions) -- position = content chunks delivered before the fault strikes
FAULTS = [
    (Fault("status", status=500), "provider_unavailable", (0,)),
    (Fault("status", status=503), "provider_unavailable", (0,)),
    (Fault("rate_limit", retry_after=30), "rate_limited", (0,)),
    (Fault("stall_before_first", stall=5), "provider_timeout", (0,)),
    (Fault("stall_mid", stall=5), "provider_timeout", (1, 6)),
    (Fault("truncate"), "malformed_stream", (0, 6)),
    (Fault("invalid_json"), "malformed_stream", (0, 6)),
    (Fault("in_stream_error"), "provider_unavailable", (1, 6)),
    (Fault("no_terminal"), "malformed_stream", (None,)),
]
CASES = [
    pytest.param(vendor, fault, code, pos, id=f"{vendor}-{fault.kind}{fault.status if fault.kind == 'status' else ''}"
                 f"-{'end' if pos is None else pos}")
    for vendor in VENDORS for fault, code, positions in FAULTS for pos in positions
]


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, tuple[FakeServer, FakeBehaviour]]]:
    started = {}
    for vendor in VENDORS:
        behaviour = FakeBehaviour(api_key=KEY)
        started[vendor] = (FakeServer(APPS[vendor](behaviour)).start(), behaviour)
    yield started
    for server, _ in started.values():
        server.stop()


@pytest.fixture(autouse=True)
def fresh(servers: dict[str, tuple[FakeServer, FakeBehaviour]]) -> None:
    for _, behaviour in servers.values():
        behaviour.faults.clear()
        behaviour.requests.clear()


def provider_config(vendor: str, server: FakeServer, *, base_url: str | None = None) -> ProviderConfig:
    base = server.url + "/v1" if vendor == "openai" else server.url
    return ProviderConfig(kind=vendor, model=MODELS[vendor], base_url=base_url or base,
                          timeouts=TimeoutsConfig(connect=1.0, first_token=0.5, idle=0.5))


def chain_for(servers, vendors: list[str], *, keys: dict[str, str] | None = None, base_urls=None, retries=0):
    cfgs = [provider_config(v, servers[v][0], base_url=(base_urls or {}).get(v)) for v in vendors]
    config = Config(provider=cfgs[0], fallbacks=cfgs[1:], failover=FailoverConfig(max_retries=retries, backoff=0))
    byok = {v: Secret((keys or {}).get(v, KEY)) for v in VENDORS}
    context = ProviderContext(plan="free", byok=byok, environ={}, use_keyring=False)
    return build_chain(config, context, breaker=CircuitBreaker(failures=100))


async def run(chain) -> tuple[str, list]:
    items = [item async for item in chain.stream(MESSAGES, PARAMS)]
    return "".join(i.text for i in items if isinstance(i, Delta)), items


def next_vendor(vendor: str) -> str:
    return VENDORS[(VENDORS.index(vendor) + 1) % len(VENDORS)]


def with_position(fault: Fault, position: int | None) -> Fault:
    if position is None:
        return fault
    return Fault(fault.kind, status=fault.status, retry_after=fault.retry_after, after_chunks=position,
                 stall=fault.stall)


@pytest.mark.parametrize(("vendor", "fault", "code", "position"), CASES)
@pytest.mark.asyncio
async def test_fault_fails_over_with_the_reply_intact(servers, vendor, fault, code, position) -> None:
    servers[vendor][1].faults.append(with_position(fault, position))
    fallback = next_vendor(vendor)
    text, items = await asyncio.wait_for(run(chain_for(servers, [vendor, fallback])), timeout=30)
    assert text == DEFAULT_SCRIPT, (text, items)
    failed = [i for i in items if isinstance(i, AttemptReport) and i.outcome == "failed"]
    assert [f.code for f in failed] == [code]
    switch = next(i for i in items if isinstance(i, SwitchReport))
    assert switch.to_provider.startswith(fallback)
    # what the first provider delivered is exactly what the fallback was asked to continue
    delivered = failed[0].chars
    assert switch.committed_chars == delivered and switch.mid_stream == (delivered > 0)
    assert [i.outcome for i in items if isinstance(i, AttemptReport)][-1] == "ok"


@pytest.mark.parametrize(("vendor", "fault", "code", "position"), CASES)
@pytest.mark.asyncio
async def test_fault_without_fallback_is_a_typed_error(servers, vendor, fault, code, position) -> None:
    servers[vendor][1].faults.append(with_position(fault, position))
    with pytest.raises(AllProvidersFailed) as info:
        await asyncio.wait_for(run(chain_for(servers, [vendor])), timeout=30)
    assert [a["code"] for a in info.value.attempts] == [code]
    assert KEY not in str(info.value) and KEY not in repr(info.value.attempts)


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.asyncio
async def test_refused_connection_and_bad_key_fail_over(servers, vendor) -> None:
    fallback = next_vendor(vendor)
    text, items = await run(chain_for(servers, [vendor, fallback], base_urls={vendor: closed_port_url()}))
    assert text == DEFAULT_SCRIPT
    assert next(i for i in items if isinstance(i, AttemptReport)).code == "provider_unavailable"

    text, items = await run(chain_for(servers, [vendor, fallback], keys={vendor: "sk-wrong-key-000000000000"}))
    assert text == DEFAULT_SCRIPT
    assert next(i for i in items if isinstance(i, AttemptReport)).code == "provider_auth"


@pytest.mark.parametrize("vendor", VENDORS)
@pytest.mark.asyncio
async def test_a_short_retry_after_retries_the_same_provider(servers, vendor) -> None:
    servers[vendor][1].faults.append(Fault("rate_limit", retry_after=0.2))
    text, items = await run(chain_for(servers, [vendor, next_vendor(vendor)], retries=1))
    assert text == DEFAULT_SCRIPT
    attempts = [(i.provider.split(":")[0], i.outcome) for i in items if isinstance(i, AttemptReport)]
    assert attempts == [(vendor, "failed"), (vendor, "ok")]
    assert len(servers[next_vendor(vendor)][1].requests) == 0

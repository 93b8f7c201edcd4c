"""FailoverChain: retries, switching, mid-stream continuation without repetition or gaps, timeouts, circuits."""

from __future__ import annotations

import asyncio

import pytest

from avatarium_lab.config import FailoverConfig
from avatarium_lab.errors import (
    AllProvidersFailed,
    ProviderAuthError,
    ProviderUnavailable,
    RateLimited,
)
from avatarium_lab.providers import AttemptReport, Delta, GenerationParams, ProviderTimeouts, SwitchReport, UsageReport
from avatarium_lab.providers.catalog import load_catalog
from avatarium_lab.providers.failover import CircuitBreaker, FailoverChain, Member
from avatarium_lab.testing import DEFAULT_SCRIPT
from avatarium_lab.testing.scripted import ScriptedProvider

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Tell me about the ocean."}]
PARAMS = GenerationParams(max_tokens=64)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def chain(*providers: ScriptedProvider, clock: FakeClock | None = None, timeouts: ProviderTimeouts | None = None,
          **policy: float) -> FailoverChain:
    clock = clock or FakeClock()
    cfg = FailoverConfig(**policy)
    members = [Member(p, timeouts=timeouts or ProviderTimeouts()) for p in providers]
    return FailoverChain(members, cfg, breaker=CircuitBreaker(cfg.circuit_failures, cfg.circuit_cooldown, clock),
                         sleep=clock.sleep, clock=clock)


async def run(c: FailoverChain) -> tuple[str, list]:
    items = [item async for item in c.stream(MESSAGES, PARAMS)]
    return "".join(i.text for i in items if isinstance(i, Delta)), items


def kinds(items: list) -> list[str]:
    out = []
    for i in items:
        if isinstance(i, AttemptReport):
            out.append(f"{i.provider}:{i.outcome}:{i.code}" if i.code else f"{i.provider}:{i.outcome}")
        elif isinstance(i, SwitchReport):
            out.append(f"switch {i.from_provider}->{i.to_provider}{' mid' if i.mid_stream else ''}")
    return out


@pytest.mark.asyncio
async def test_healthy_primary_streams_the_whole_reply_with_its_cost() -> None:
    entry = load_catalog().get("gpt-4o-mini")
    p = ScriptedProvider(name="openai:gpt-4o-mini")
    c = FailoverChain([Member(p, entry=entry)])
    text, items = await run(c)
    assert text == DEFAULT_SCRIPT
    usage = next(i for i in items if isinstance(i, UsageReport))
    assert usage.provider == "openai:gpt-4o-mini"
    assert usage.cost == pytest.approx(entry.cost(usage.prompt_tokens, usage.completion_tokens)) and usage.cost > 0
    assert kinds(items) == ["openai:gpt-4o-mini:ok"]


@pytest.mark.asyncio
async def test_failure_before_the_first_token_retries_then_switches() -> None:
    clock = FakeClock()
    a = ScriptedProvider(name="a", plan=[(ProviderUnavailable("down"), 0), (ProviderUnavailable("down"), 0)])
    b = ScriptedProvider(name="b")
    text, items = await run(chain(a, b, clock=clock, max_retries=1, backoff=0.25))
    assert text == DEFAULT_SCRIPT
    assert kinds(items) == ["a:failed:provider_unavailable", "switch a->a", "a:failed:provider_unavailable",
                            "switch a->b", "b:ok"]
    assert clock.slept == [0.25]
    assert b.requests[0]["continue_from"] == ""


@pytest.mark.parametrize("after", [1, 5, 17])
@pytest.mark.asyncio
async def test_mid_stream_failure_continues_on_the_next_provider_without_gap_or_repeat(after: int) -> None:
    a = ScriptedProvider(name="a", plan=[(ProviderUnavailable("reset"), after)])
    b = ScriptedProvider(name="b")
    text, items = await run(chain(a, b, max_retries=0))
    assert text == DEFAULT_SCRIPT
    switch = next(i for i in items if isinstance(i, SwitchReport))
    assert switch.mid_stream and switch.committed_chars == len(b.requests[0]["continue_from"]) > 0
    assert DEFAULT_SCRIPT.startswith(b.requests[0]["continue_from"])


@pytest.mark.asyncio
async def test_a_continuation_that_repeats_the_last_words_is_trimmed() -> None:
    a = ScriptedProvider(name="a", plan=[(ProviderUnavailable("reset"), 9)])
    b = ScriptedProvider(name="b", repeat_words=3)
    text, _ = await run(chain(a, b, max_retries=0))
    assert text == DEFAULT_SCRIPT


@pytest.mark.asyncio
async def test_non_retryable_errors_switch_at_once() -> None:
    clock = FakeClock()
    a = ScriptedProvider(name="a", plan=[(ProviderAuthError("bad key"), 0)])
    text, items = await run(chain(a, ScriptedProvider(name="b"), clock=clock, max_retries=3))
    assert text == DEFAULT_SCRIPT
    assert kinds(items)[:2] == ["a:failed:provider_auth", "switch a->b"]
    assert clock.slept == [] and len(a.requests) == 1


@pytest.mark.asyncio
async def test_rate_limits_honour_retry_after_up_to_the_limit() -> None:
    clock = FakeClock()
    a = ScriptedProvider(name="a", plan=[(RateLimited("slow down", retry_after=0.5), 0)])
    text, items = await run(chain(a, ScriptedProvider(name="b"), clock=clock, max_retry_after=1.0))
    assert text == DEFAULT_SCRIPT and clock.slept == [0.5] and kinds(items)[-1] == "a:ok"

    clock = FakeClock()
    a = ScriptedProvider(name="a", plan=[(RateLimited("slow down", retry_after=30), 0)])
    text, items = await run(chain(a, ScriptedProvider(name="b"), clock=clock, max_retry_after=1.0))
    assert text == DEFAULT_SCRIPT and clock.slept == [] and kinds(items)[-1] == "b:ok"


@pytest.mark.parametrize("stall_after", [0, 4])
@pytest.mark.asyncio
async def test_first_token_and_idle_timeouts_switch(stall_after: int) -> None:
    a = ScriptedProvider(name="a", plan=[("stall", stall_after)])
    b = ScriptedProvider(name="b")
    c = chain(a, b, timeouts=ProviderTimeouts(first_token=0.2, idle=0.2), max_retries=0)
    text, items = await asyncio.wait_for(run(c), timeout=10)
    assert text == DEFAULT_SCRIPT
    failed = next(i for i in items if isinstance(i, AttemptReport) and i.outcome == "failed")
    assert failed.code == "provider_timeout"
    assert ("idle" if stall_after else "first token") in failed.message
    assert a.closed == 1  # the stalled stream was closed, not left hanging


@pytest.mark.asyncio
async def test_circuit_opens_after_repeated_failures_and_half_opens_after_cooldown() -> None:
    clock = FakeClock()
    down = [(ProviderUnavailable("down"), 0)] * 10
    a = ScriptedProvider(name="a", plan=list(down))
    b = ScriptedProvider(name="b")
    c = chain(a, b, clock=clock, max_retries=0, circuit_failures=2, circuit_cooldown=60, backoff=0)
    await run(c)
    await run(c)
    assert len(a.requests) == 2
    _, items = await run(c)  # open: a is skipped without a request
    assert kinds(items)[0] == "a:skipped:circuit_open" and len(a.requests) == 2
    clock.now += 61
    a.plan.clear()  # a has recovered
    text, items = await run(c)
    assert text == DEFAULT_SCRIPT and kinds(items) == ["a:ok"]


@pytest.mark.asyncio
async def test_when_every_provider_fails_the_error_lists_the_attempts() -> None:
    a = ScriptedProvider(name="a", plan=[(ProviderUnavailable("down"), 0)])
    b = ScriptedProvider(name="b", plan=[(ProviderAuthError("bad key"), 0)])
    with pytest.raises(AllProvidersFailed) as info:
        await run(chain(a, b, max_retries=0))
    assert [(x["provider"], x["code"]) for x in info.value.attempts] == [("a", "provider_unavailable"),
                                                                         ("b", "provider_auth")]


@pytest.mark.asyncio
async def test_closing_the_chain_closes_the_member_stream() -> None:
    p = ScriptedProvider(name="a")
    agen = chain(p).stream(MESSAGES, PARAMS)
    async for item in agen:
        if isinstance(item, Delta):
            break
    await agen.aclose()
    assert p.closed == 1


class QueuedProvider(ScriptedProvider):
    """A local model that serves one request at a time: ``Queued``, a wait behind others, ``Started``, the reply."""

    queue_wait: float = 0.0

    async def stream(self, messages, params, *, continue_from: str = ""):
        from avatarium_lab.providers import Queued, Started

        yield Queued()
        await asyncio.sleep(self.queue_wait)
        yield Started()
        async for item in super().stream(messages, params, continue_from=continue_from):
            yield item


@pytest.mark.asyncio
async def test_waiting_in_a_local_models_queue_is_not_a_first_token_timeout() -> None:
    local = QueuedProvider(name="local")
    local.queue_wait = 0.5  # longer than first_token, shorter than queue
    c = chain(local, timeouts=ProviderTimeouts(first_token=0.2, idle=0.2, queue=2.0), max_retries=0)
    text, items = await asyncio.wait_for(run(c), timeout=10)
    assert text == DEFAULT_SCRIPT and kinds(items) == ["local:ok"]


@pytest.mark.asyncio
async def test_a_queue_wait_beyond_its_limit_fails_over() -> None:
    local = QueuedProvider(name="local")
    local.queue_wait = 1.0
    c = chain(local, ScriptedProvider(name="b"), timeouts=ProviderTimeouts(first_token=0.2, idle=0.2, queue=0.3),
              max_retries=0)
    text, items = await asyncio.wait_for(run(c), timeout=10)
    assert text == DEFAULT_SCRIPT
    failed = next(i for i in items if isinstance(i, AttemptReport) and i.outcome == "failed")
    assert failed.code == "provider_timeout" and "queue" in failed.message

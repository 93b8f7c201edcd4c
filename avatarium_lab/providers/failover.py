"""``FailoverChain``: ordered providers with timeouts, retries, a circuit breaker and seamless mid-stream handover.

Per member the chain enforces two timeouts of its own (first token, idle gap between chunks; the adapter's HTTP
client enforces the connect timeout), retries retryable failures on the same member (a 429's ``Retry-After``
is honoured up to ``max_retry_after``; otherwise exponential backoff), then moves to the next member. A member
that failed ``circuit_failures`` times in a row is skipped for ``circuit_cooldown`` seconds (then tried once).

A failure before the first token switches silently as far as the text goes. A failure after some text was
delivered asks the next member to *continue* the reply after that text (``continue_from``); any overlap the
continuation repeats is trimmed, so the reply the user sees has no repetition and no gap. Every attempt,
retry and switch is reported in the stream (``AttemptReport``, ``SwitchReport``), and usage reports carry the
member and its cost from the catalog prices.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field

from ..config import FailoverConfig
from ..errors import AllProvidersFailed, ProviderError, ProviderTimeout, RateLimited
from ..secrets import redact
from . import (
    AttemptReport,
    ChatMessage,
    ChatProvider,
    Delta,
    GenerationParams,
    ProviderTimeouts,
    Queued,
    Started,
    StreamItem,
    SwitchReport,
    UsageReport,
    estimate_tokens,
)
from .catalog import ModelEntry

log = logging.getLogger(__name__)

_OVERLAP_WINDOW = 80  # characters of a continuation held back to find text it repeats


@dataclass
class Member:
    """One provider of a chain, with its timeouts and (for cost) its catalog entry or explicit prices."""

    provider: ChatProvider
    timeouts: ProviderTimeouts = field(default_factory=ProviderTimeouts)
    entry: ModelEntry | None = None
    price_in: float | None = None
    price_out: float | None = None
    context_window: int = 8192

    @property
    def name(self) -> str:
        return self.provider.name

    def cost(self, usage: UsageReport) -> float:
        p_in = self.price_in if self.price_in is not None else (self.entry.price_in if self.entry else 0.0)
        p_out = self.price_out if self.price_out is not None else (self.entry.price_out if self.entry else 0.0)
        return (usage.prompt_tokens * p_in + usage.completion_tokens * p_out) / 1_000_000


class CircuitBreaker:
    """Consecutive-failure circuit per provider name, shared by every chain that uses the same breaker."""

    def __init__(self, failures: int = 3, cooldown: float = 30.0, clock: Callable[[], float] = time.monotonic):
        self.failures = failures
        self.cooldown = cooldown
        self.clock = clock
        self._count: dict[str, int] = {}
        self._opened: dict[str, float] = {}

    def allows(self, name: str) -> bool:
        opened = self._opened.get(name)
        if opened is None:
            return True
        if self.clock() - opened >= self.cooldown:
            return True  # half-open: one trial; a failure re-opens it at once
        return False

    def success(self, name: str) -> None:
        self._count.pop(name, None)
        self._opened.pop(name, None)

    def failure(self, name: str) -> None:
        count = self._count.get(name, 0) + 1
        self._count[name] = count
        if count >= self.failures or name in self._opened:
            self._opened[name] = self.clock()

    def is_open(self, name: str) -> bool:
        return not self.allows(name)


class _OverlapTrimmer:
    """Drops what a continuation repeats of the text already delivered (some models restate their last words)."""

    def __init__(self, committed: str) -> None:
        self.committed = committed
        self.buffer = ""
        self.done = not committed.strip()

    def feed(self, text: str) -> str:
        if self.done:
            return text
        self.buffer += text
        if len(self.buffer) < _OVERLAP_WINDOW:
            return ""
        return self._release()

    def flush(self) -> str:
        return "" if self.done else self._release()

    def _release(self) -> str:
        self.done = True
        buf, committed = self.buffer, self.committed
        stripped = committed.strip()
        lead = len(buf) - len(buf.lstrip())
        if stripped and buf.lstrip().startswith(stripped):  # the model started over from the beginning
            return buf[lead + len(stripped):]
        # The longest head of the continuation (at least a word) that the committed text ends with.
        body = buf[lead:]
        tail = committed.rstrip()
        for k in range(min(len(body), len(tail)), 3, -1):
            head = body[:k]
            if tail.endswith(head) and (k == len(body) or not body[k].isalnum()):
                return buf[lead + k:]
        return buf


class FailoverChain:
    """A ``ChatProvider`` over ordered members; ``name``/``model`` are the first member's."""

    def __init__(self, members: list[Member], policy: FailoverConfig | None = None, *,
                 breaker: CircuitBreaker | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not members:
            raise ValueError("a failover chain needs at least one provider")
        self.members = members
        self.policy = policy or FailoverConfig()
        self.breaker = breaker or CircuitBreaker(self.policy.circuit_failures, self.policy.circuit_cooldown, clock)
        self._sleep = sleep
        self._clock = clock

    @property
    def name(self) -> str:
        return self.members[0].name

    @property
    def model(self) -> str:
        return self.members[0].provider.model

    def __repr__(self) -> str:
        return f"FailoverChain({' -> '.join(m.name for m in self.members)})"

    async def aclose(self) -> None:
        """Close every member's HTTP client (SDK clients left to the garbage collector try to close
        themselves on an event loop that may be gone)."""
        for m in self.members:
            close = getattr(m.provider, "aclose", None)
            if callable(close):
                await close()

    def warm(self, system_prompt: str | None = None) -> None:
        for m in self.members:
            warm = getattr(m.provider, "warm", None)
            if callable(warm):
                warm(system_prompt)

    @property
    def context_window(self) -> int:
        """The smallest context of the members: a reply may move to any of them."""
        return min(m.context_window for m in self.members)

    def count_tokens(self, text: str) -> int:
        counter = getattr(self.members[0].provider, "count_tokens", None)
        return counter(text) if callable(counter) else estimate_tokens(text)

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        committed = continue_from
        failures: list[dict[str, object]] = []
        previous: str | None = None
        last_error: ProviderError | None = None
        for index, member in enumerate(self.members):
            if not self.breaker.allows(member.name):
                failures.append({"provider": member.name, "code": "circuit_open"})
                yield AttemptReport(provider=member.name, attempt=0, outcome="skipped", code="circuit_open",
                                    message="circuit open after repeated failures")
                continue
            for attempt in range(1, self.policy.max_retries + 2):
                if previous is not None:
                    yield SwitchReport(from_provider=previous, to_provider=member.name,
                                       reason=last_error.code if last_error else "", mid_stream=bool(committed),
                                       committed_chars=len(committed))
                started = self._clock()
                before = len(committed)
                try:
                    # aclosing: leaving early (the consumer closed us) must close the member's stream now, not
                    # whenever the garbage collector finalizes it, so the HTTP request or generation stops.
                    async with aclosing(self._attempt(member, messages, params, committed)) as attempt_stream:
                        async for item in attempt_stream:
                            if isinstance(item, Delta):
                                committed += item.text
                            yield item
                except ProviderError as exc:
                    last_error = exc
                    self.breaker.failure(member.name)
                    failures.append({"provider": member.name, "attempt": attempt, "code": exc.code,
                                     "message": redact(exc.message)})
                    log.info("provider attempt failed", extra={"provider": member.name, "code": exc.code,
                                                               "attempt": attempt})
                    yield AttemptReport(provider=member.name, attempt=attempt, outcome="failed", code=exc.code,
                                        message=redact(exc.message), elapsed=self._clock() - started,
                                        chars=len(committed) - before)
                    previous = member.name
                    wait = self._retry_wait(exc, attempt)
                    if wait is None:
                        break
                    if wait > 0:
                        await self._sleep(wait)
                    continue
                self.breaker.success(member.name)
                yield AttemptReport(provider=member.name, attempt=attempt, outcome="ok",
                                    elapsed=self._clock() - started, chars=len(committed) - before)
                return
            if index == len(self.members) - 1:
                break
        summary = "; ".join(f"{f['provider']}: {f['code']}" for f in failures) or "no provider could be tried"
        raise AllProvidersFailed(f"every provider failed ({summary})", attempts=failures,
                                 retryable=bool(last_error and last_error.retryable))

    def _retry_wait(self, exc: ProviderError, attempt: int) -> float | None:
        """Seconds to wait before retrying the same member, or None to move on."""
        if not exc.retryable or attempt > self.policy.max_retries:
            return None
        if isinstance(exc, RateLimited) and exc.retry_after is not None:
            return exc.retry_after if exc.retry_after <= self.policy.max_retry_after else None
        return self.policy.backoff * (2 ** (attempt - 1))

    async def _attempt(self, member: Member, messages: list[ChatMessage], params: GenerationParams,
                       committed: str) -> AsyncIterator[StreamItem]:
        """One member's stream under the chain's first-token and idle timeouts, overlap-trimmed and priced."""
        agen = member.provider.stream(messages, params, continue_from=committed)
        trimmer = _OverlapTrimmer(committed)
        got_text = False
        queued = False
        try:
            while True:
                limit = (member.timeouts.queue if queued else member.timeouts.idle if got_text
                         else member.timeouts.first_token)
                try:
                    # asyncio.timeout, not wait_for: no extra task per chunk on the hot path
                    async with asyncio.timeout(limit):
                        item = await anext(agen)
                except StopAsyncIteration:
                    break
                except TimeoutError:
                    what = ("its turn in the local model's queue" if queued else "an idle gap between chunks"
                            if got_text else "the first token")
                    raise ProviderTimeout(f"{member.name}: no {what} within {limit:g} s",
                                          provider=member.name) from None
                if isinstance(item, Queued | Started):
                    queued = isinstance(item, Queued)  # queueing is not failing; the first-token clock starts now
                    continue
                if isinstance(item, Delta):
                    got_text = True
                    text = trimmer.feed(item.text)
                    if text:
                        yield Delta(text)
                elif isinstance(item, UsageReport):
                    rest = trimmer.flush()
                    if rest:
                        yield Delta(rest)
                    yield UsageReport(item.prompt_tokens, item.completion_tokens, item.estimated,
                                      provider=member.name, cost=member.cost(item))
                else:
                    yield item
            rest = trimmer.flush()
            if rest:
                yield Delta(rest)
        finally:
            await agen.aclose()

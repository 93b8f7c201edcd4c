"""Chat providers: the ``ChatProvider`` protocol, what it streams, and how a configuration picks one.

A provider is a thin adapter from a list of chat messages to one model's streamed text. It yields ``Delta``
items as text arrives and, at the end, one ``UsageReport``; the pipeline stamps them into ``TextDelta`` and
``Usage`` events. Providers know nothing about turns, voices or avatars.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Literal, Protocol, TypedDict, runtime_checkable

from ..config import ProviderConfig
from ..errors import ConfigError


class ChatMessage(TypedDict):
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True, slots=True)
class GenerationParams:
    max_tokens: int = 96
    temperature: float = 0.7
    top_p: float = 0.9
    repeat_penalty: float = 1.15
    seed: int | None = None

    @classmethod
    def from_config(cls, cfg: ProviderConfig) -> GenerationParams:
        return cls(max_tokens=cfg.max_tokens, temperature=cfg.temperature, top_p=cfg.top_p,
                   repeat_penalty=cfg.repeat_penalty, seed=cfg.seed)


@dataclass(frozen=True, slots=True)
class ProviderTimeouts:
    """Seconds. Adapters give ``connect`` to their HTTP client (and a read timeout of the larger of the other
    two as a backstop); ``FailoverChain`` enforces ``first_token`` and ``idle`` (longest gap between chunks)."""

    connect: float = 5.0
    first_token: float = 15.0
    idle: float = 10.0
    queue: float = 120.0
    """A local model's queue: the longest wait between ``Queued`` and ``Started``."""


CONTINUE_INSTRUCTION = (
    "Continue your previous reply exactly where it stopped, mid-sentence if need be. Do not repeat anything."
)
"""Sent after a partial assistant message when a failover chain asks another provider to finish a reply."""


def continuation_messages(messages: list[ChatMessage], partial: str) -> list[ChatMessage]:
    """The chat-form request for finishing ``partial``: the partial reply as an assistant message, then the
    instruction to continue it. Vendors with true assistant prefill (Anthropic) send the partial message last
    instead, without the instruction."""
    if not partial:
        return list(messages)
    return [*messages, {"role": "assistant", "content": partial},
            {"role": "user", "content": CONTINUE_INSTRUCTION}]


def estimate_tokens(text: str) -> int:
    """The usual rough estimate when a tokenizer is not at hand: four characters a token, at least one."""
    return max(1, (len(text) + 3) // 4)


@dataclass(frozen=True, slots=True)
class Delta:
    """A piece of the reply's text."""

    text: str


@dataclass(frozen=True, slots=True)
class UsageReport:
    """Token counts for the whole reply; ``estimated`` when the model did not report them itself. A failover
    chain fills in which ``provider`` it came from and its ``cost`` (USD, from the catalog's prices)."""

    prompt_tokens: int
    completion_tokens: int
    estimated: bool = False
    provider: str = ""
    cost: float | None = None


@dataclass(frozen=True, slots=True)
class AttemptReport:
    """One attempt of a failover chain: which provider, its outcome, and why it failed."""

    provider: str
    attempt: int
    outcome: Literal["ok", "failed", "skipped"]
    code: str = ""
    message: str = ""
    elapsed: float = 0.0
    chars: int = 0


@dataclass(frozen=True, slots=True)
class SwitchReport:
    """A failover chain moved on to another provider (or retried the same one); ``mid_stream`` when some of the
    reply had already been delivered, in which case the next provider continues after ``committed_chars``."""

    from_provider: str
    to_provider: str
    reason: str
    mid_stream: bool
    committed_chars: int


@dataclass(frozen=True, slots=True)
class Queued:
    """The request waits for a local model that serves one request at a time (other conversations go first).
    A failover chain then waits up to ``timeouts.queue`` for ``Started``: queueing is not the model failing."""


@dataclass(frozen=True, slots=True)
class Started:
    """The provider began working on the request: the first-token timeout counts from here."""


StreamItem = Delta | UsageReport | AttemptReport | SwitchReport | Queued | Started


@runtime_checkable
class ChatProvider(Protocol):
    """One model behind one API. ``name`` is ``"<vendor>:<model>"``; errors are ``ProviderError`` subclasses.

    ``continue_from`` asks the provider to finish a reply another provider started (failover mid-stream): the
    adapter sends it the vendor's way (assistant prefill, or ``continuation_messages``) and streams only the
    continuation.
    """

    name: str
    model: str

    def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
               continue_from: str = "") -> AsyncIterator[StreamItem]:
        """Stream the reply to ``messages``."""
        ...


AdapterFactory = Callable[..., ChatProvider]
"""``factory(cfg, *, model, key, timeouts)``: the adapter for one ``ProviderConfig`` (``model`` is the vendor's
model id after the catalog lookup, ``key`` the resolved ``Secret`` or None)."""

_ADAPTERS: dict[str, AdapterFactory] = {}
# Built-in kinds and the module that registers each; a new provider is one module that calls register_adapter.
_BUILTIN = {"embedded": "embedded", "replay": "cassette", "openai": "openai_chat", "xai": "openai_chat",
            "custom": "openai_chat", "anthropic": "anthropic_chat", "google": "google_chat"}


def register_adapter(kind: str, factory: AdapterFactory) -> None:
    """Make ``provider.kind: <kind>`` in a configuration build adapters with ``factory``."""
    _ADAPTERS[kind] = factory


def adapter_factory(kind: str) -> AdapterFactory:
    if kind not in _ADAPTERS and kind in _BUILTIN:
        importlib.import_module(f"{__name__}.{_BUILTIN[kind]}")
    if kind not in _ADAPTERS:
        known = sorted(set(_BUILTIN) | set(_ADAPTERS))
        raise ConfigError(f"provider.kind: unknown provider {kind!r}; known: {known}")
    return _ADAPTERS[kind]

"""Record/replay cassettes: a provider's streamed reply with its timing, saved to a file and played back.

``RecordingProvider`` wraps any provider and appends one JSON line per request to a cassette file: the request
key (a hash of the messages, generation parameters and continuation), the provider and model, and every item
of the stream with its time since the request (``[dt, "delta", text]``, ``[dt, "usage", prompt, completion,
estimated]``, or a final ``[dt, "error", code, message]``). ``ReplayProvider`` answers the same requests from
the file at the recorded pace or at once, so notebooks and benchmarks are deterministic and offline.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import time
from collections.abc import AsyncIterator
from contextlib import aclosing
from pathlib import Path
from typing import Any, Literal

from ..errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from ..secrets import redact
from . import (
    ChatMessage,
    ChatProvider,
    Delta,
    GenerationParams,
    StreamItem,
    UsageReport,
    estimate_tokens,
    register_adapter,
)

_ERRORS: dict[str, type[ProviderError]] = {
    cls.code: cls for cls in (ProviderAuthError, ProviderBadRequest, RateLimited, ProviderUnavailable,
                              ProviderTimeout, MalformedStream, ProviderError)
}


class CassetteMiss(ProviderError):
    """The cassette has no recording of this request."""

    code = "cassette_miss"


def request_key(messages: list[ChatMessage], params: GenerationParams, continue_from: str = "") -> str:
    """A stable hash of what determines a reply (the seed is left out: replays ignore sampling)."""
    data = {
        "messages": [[m["role"], m["content"]] for m in messages],
        "max_tokens": params.max_tokens,
        "temperature": params.temperature,
        "continue_from": continue_from,
    }
    return hashlib.sha256(json.dumps(data, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:24]


class RecordingProvider:
    """Passes a provider's stream through unchanged and appends it to ``path``."""

    def __init__(self, inner: ChatProvider, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.name = inner.name
        self.model = inner.model

    def __repr__(self) -> str:
        return f"RecordingProvider({self.inner!r}, path={str(self.path)!r})"

    def __getattr__(self, attr: str) -> Any:  # warm(), count_tokens() ... of the wrapped provider
        return getattr(self.inner, attr)

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        t0 = time.perf_counter()
        items: list[list[Any]] = []
        try:
            async with aclosing(self.inner.stream(messages, params, continue_from=continue_from)) as inner:
                async for item in inner:
                    dt = round(time.perf_counter() - t0, 6)
                    if isinstance(item, Delta):
                        items.append([dt, "delta", item.text])
                    elif isinstance(item, UsageReport):
                        items.append([dt, "usage", item.prompt_tokens, item.completion_tokens, item.estimated])
                    yield item
        except ProviderError as exc:
            items.append([round(time.perf_counter() - t0, 6), "error", exc.code, redact(exc.message)])
            raise
        finally:
            record = {
                "key": request_key(messages, params, continue_from),
                "provider": self.inner.name,
                "model": self.inner.model,
                "request": {"messages": messages, "max_tokens": params.max_tokens,
                            "temperature": params.temperature, "continue_from": continue_from},
                "items": items,
            }
            self.path.parent.mkdir(parents=True, exist_ok=True)
            with self.path.open("a", encoding="utf-8") as fh:
                fh.write(redact(json.dumps(record, ensure_ascii=False)) + "\n")


class ReplayProvider:
    """Answers requests from a cassette file: ``pace="recorded"`` sleeps as the original did, ``"instant"`` not.

    ``match="exact"`` finds a recording by the full request key; ``"last_user"`` by the last user message
    only (handy when a notebook changes the persona prompt but wants the same replies). Several recordings of
    one request are played in turn.
    """

    def __init__(self, path: str | Path, *, pace: Literal["recorded", "instant"] = "recorded",
                 match: Literal["exact", "last_user"] = "exact", name: str | None = None) -> None:
        self.path = Path(path)
        if not self.path.is_file():
            raise CassetteMiss(f"cassette file not found: {self.path}")
        self.pace = pace
        self.match = match
        self._records: dict[str, list[dict[str, Any]]] = {}
        self._played: dict[str, int] = {}
        for n, line in enumerate(self.path.read_text(encoding="utf-8").splitlines(), start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise CassetteMiss(f"{self.path}:{n}: not a cassette line ({exc})") from None
            self._records.setdefault(self._key_of(record), []).append(record)
        first = next(iter(self._records.values()), [{}])[0]
        self.model = first.get("model", "replay")
        self.name = name or f"replay:{first.get('provider', self.path.stem)}"

    def __repr__(self) -> str:
        return f"ReplayProvider({str(self.path)!r}, pace={self.pace!r}, recordings={len(self)})"

    def __len__(self) -> int:
        return sum(len(v) for v in self._records.values())

    def _key_of(self, record: dict[str, Any]) -> str:
        if self.match == "last_user":
            req = record["request"]
            return _last_user(req["messages"]) + "\x00" + req.get("continue_from", "")
        return record["key"]

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        if self.match == "last_user":
            key = _last_user(messages) + "\x00" + continue_from
        else:
            key = request_key(messages, params, continue_from)
        records = self._records.get(key)
        if not records:
            raise CassetteMiss(f"{self.path.name} has no recording of this request "
                               f"(last user message: {_last_user(messages)[:60]!r})", provider=self.name)
        played = self._played.get(key, 0)
        self._played[key] = played + 1
        record = records[played % len(records)]
        t0 = time.perf_counter()
        for item in record["items"]:
            dt, kind = item[0], item[1]
            if self.pace == "recorded":
                delay = dt - (time.perf_counter() - t0)
                if delay > 0:
                    await asyncio.sleep(delay)
            if kind == "delta":
                yield Delta(item[2])
            elif kind == "usage":
                yield UsageReport(item[2], item[3], bool(item[4]))
            elif kind == "error":
                cls = _ERRORS.get(item[2], ProviderError)
                raise cls(item[3], provider=self.name)


def _last_user(messages: list[ChatMessage]) -> str:
    return next((m["content"] for m in reversed(messages) if m["role"] == "user"), "")


def _replay_from_config(cfg: Any, **_: Any) -> ReplayProvider:
    from ..errors import ConfigError

    if not cfg.cassette:
        raise ConfigError("provider.cassette: a replay provider needs the cassette file to play")
    return ReplayProvider(cfg.cassette, pace=cfg.pace)


register_adapter("replay", _replay_from_config)

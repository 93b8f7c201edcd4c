"""An in-process ``ChatProvider`` that streams a script and fails on cue, for chain and pipeline tests.

It behaves like the vendor fakes without HTTP: ``plan`` is a list consumed one entry per request, each entry
``None`` (stream the script) or an ``(error, after_chunks)`` pair (stream that many chunks, then raise), or the
string ``"stall"`` / ``("stall", after_chunks)`` to hang. Continuation requests get the rest of the script, like
a model that continues exactly; ``repeat_words`` makes it restate the last words of the partial reply first, as
real models sometimes do.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from ..errors import ProviderError
from ..providers import ChatMessage, Delta, GenerationParams, StreamItem, UsageReport, estimate_tokens
from .fake_vendors import DEFAULT_SCRIPT, continuation_of, script_chunks


@dataclass
class ScriptedProvider:
    name: str = "scripted:model"
    model: str = "model"
    script: str = DEFAULT_SCRIPT
    plan: list[Any] = field(default_factory=list)
    chunk_delay: float = 0.0
    repeat_words: int = 0
    requests: list[dict[str, Any]] = field(default_factory=list)
    closed: int = 0

    def count_tokens(self, text: str) -> int:
        return estimate_tokens(text)

    async def stream(self, messages: list[ChatMessage], params: GenerationParams, *,
                     continue_from: str = "") -> AsyncIterator[StreamItem]:
        self.requests.append({"messages": messages, "continue_from": continue_from})
        step = self.plan.pop(0) if self.plan else None
        text = self.script
        if continue_from:
            rest = continuation_of(self.script, continue_from)
            text = rest if rest is not None else self.script
            if self.repeat_words:
                text = " " + " ".join(continue_from.split()[-self.repeat_words:]) + text
        chunks = script_chunks(text)
        fail_at, error = len(chunks) + 1, None
        if step == "stall":
            fail_at, error = 0, "stall"
        elif isinstance(step, tuple):
            error, fail_at = step
        try:
            for i, chunk in enumerate(chunks):
                if i == fail_at:
                    break
                if self.chunk_delay:
                    await asyncio.sleep(self.chunk_delay)
                yield Delta(chunk)
            if error == "stall":
                await asyncio.sleep(3600)
            if isinstance(error, ProviderError):
                raise error
            yield UsageReport(prompt_tokens=sum(self.count_tokens(m["content"]) for m in messages),
                              completion_tokens=len(chunks))
        finally:
            self.closed += 1

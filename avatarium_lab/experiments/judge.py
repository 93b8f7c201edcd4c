"""An optional judge model: any configured provider rates each reply for persona adherence and quality (1-5).

Off by default (``judge: null`` in a spec). The judge is asked for one JSON object
``{"persona": 1-5, "quality": 1-5, "reason": "..."}``; the first JSON object in its reply is parsed, scores are
clamped to 1..5, and a reply that cannot be parsed gives ``NaN`` scores with ``judge_error`` set (the trial itself
stays valid). Calls go through the same provider chain as the pipeline (keys, retries, failover, cassettes).
"""

from __future__ import annotations

import json
import math
import re
from contextlib import aclosing
from typing import Any

from ..config import Config, ProviderConfig
from ..errors import AvatariumError
from ..personality import Persona
from ..providers import ChatMessage, Delta, GenerationParams

INSTRUCTIONS = (
    "You grade replies of a spoken conversational avatar. Given the avatar's persona, the user's message and the "
    "avatar's reply, rate (1) persona: how well the reply keeps to the persona's identity and style rules, and "
    "(2) quality: how helpful, correct and natural it is when spoken aloud. Use integers from 1 (bad) to 5 "
    '(excellent). Answer with one JSON object only: {"persona": n, "quality": n, "reason": "one sentence"}.'
)
_OBJECT = re.compile(r"\{.*?\}", re.DOTALL)


def parse_scores(text: str) -> dict[str, Any]:
    """``judge_persona``, ``judge_quality`` (1..5 or NaN) and ``judge_error`` from the judge's reply."""
    for match in _OBJECT.finditer(text):
        try:
            data = json.loads(match.group(0))
        except json.JSONDecodeError:
            continue
        try:
            persona, quality = float(data["persona"]), float(data["quality"])
        except (KeyError, TypeError, ValueError):
            continue
        return {"judge_persona": min(5.0, max(1.0, persona)), "judge_quality": min(5.0, max(1.0, quality)),
                "judge_error": None}
    return {"judge_persona": math.nan, "judge_quality": math.nan, "judge_error": "unparseable"}


class Judge:
    def __init__(self, provider_config: ProviderConfig) -> None:
        from ..providers.build import build_chain

        self.config = provider_config
        self.chain = build_chain(Config(provider=provider_config))
        self.params = GenerationParams(max_tokens=120, temperature=0.0, seed=0)

    def messages(self, persona: Persona, prompt: str, reply: str) -> list[ChatMessage]:
        return [
            {"role": "system", "content": INSTRUCTIONS},
            {"role": "user", "content": f"Persona: {persona.system_message()}\n\nUser: {prompt}\n\nReply: {reply}"},
        ]

    async def score(self, persona: Persona, prompt: str, reply: str) -> dict[str, Any]:
        text = ""
        try:
            async with aclosing(self.chain.stream(self.messages(persona, prompt, reply), self.params)) as stream:
                async for item in stream:
                    if isinstance(item, Delta):
                        text += item.text
        except AvatariumError as exc:
            return {"judge_persona": math.nan, "judge_quality": math.nan, "judge_error": exc.code}
        return parse_scores(text)

    async def aclose(self) -> None:
        close = getattr(self.chain, "aclose", None)
        if close is not None:
            await close()


def build_judge(provider_config: ProviderConfig) -> Judge:
    return Judge(provider_config)

"""Personality-aware prompts: the persona's system prompt plus as much recent context as the model can hold.

The system prompt (identity and speaking style) and the new user message are always sent; earlier turns are
added newest first while they fit in the smallest context window of the provider chain, after reserving room
for the reply. Whole exchanges are dropped, oldest first, so the model never sees an answer without its question.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from ..errors import InvalidMessage
from . import ChatMessage

MESSAGE_OVERHEAD = 4
"""Tokens a chat template adds around each message (role markers, separators); a safe estimate."""


def fit_messages(system: str, history: Sequence[ChatMessage], user: str, *, window: int, reserve: int,
                 count: Callable[[str], int]) -> list[ChatMessage]:
    """``[system, *recent history, user]`` within ``window - reserve`` tokens (``count`` measures text)."""
    budget = window - reserve
    used = count(system) + count(user) + 2 * MESSAGE_OVERHEAD
    if used > budget:
        raise InvalidMessage(
            f"the message and the persona prompt need about {used} tokens, but the model's context of {window} "
            f"tokens leaves {budget} after reserving {reserve} for the reply; shorten the message"
        )
    kept: list[ChatMessage] = []
    for message in reversed(history):
        cost = count(message["content"]) + MESSAGE_OVERHEAD
        if used + cost > budget:
            break
        kept.append(message)
        used += cost
    kept.reverse()
    while kept and kept[0]["role"] != "user":  # never start mid-exchange
        kept.pop(0)
    return [{"role": "system", "content": system}, *kept, {"role": "user", "content": user}]

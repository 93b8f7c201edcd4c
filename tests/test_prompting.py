"""Context fitting: system prompt and new message always kept, oldest exchanges dropped first."""

from __future__ import annotations

import pytest

from avatarium_lab.errors import InvalidMessage
from avatarium_lab.providers.prompting import MESSAGE_OVERHEAD, fit_messages


def words(text: str) -> int:
    return len(text.split())


HISTORY = [
    {"role": "user", "content": "one two three"},
    {"role": "assistant", "content": "four five six seven"},
    {"role": "user", "content": "eight nine"},
    {"role": "assistant", "content": "ten eleven twelve"},
]


def test_everything_fits_in_a_large_window() -> None:
    msgs = fit_messages("sys prompt", HISTORY, "new question", window=1000, reserve=100, count=words)
    assert msgs[0] == {"role": "system", "content": "sys prompt"}
    assert msgs[1:-1] == HISTORY and msgs[-1] == {"role": "user", "content": "new question"}


def test_oldest_exchange_goes_first_and_no_answer_is_left_without_its_question() -> None:
    fixed = words("sys prompt") + words("new question") + 2 * MESSAGE_OVERHEAD
    last_two = words("eight nine") + words("ten eleven twelve") + 2 * MESSAGE_OVERHEAD
    window = fixed + last_two + 5 + 10  # room for the last exchange and the reserve, not for more
    msgs = fit_messages("sys prompt", HISTORY, "new question", window=window, reserve=10, count=words)
    assert [m["content"] for m in msgs[1:-1]] == ["eight nine", "ten eleven twelve"]
    # a window that fits only the last answer drops it too (it would start mid-exchange)
    window = fixed + words("ten eleven twelve") + MESSAGE_OVERHEAD + 10
    msgs = fit_messages("sys prompt", HISTORY, "new question", window=window, reserve=10, count=words)
    assert len(msgs) == 2


def test_a_message_that_cannot_fit_is_rejected() -> None:
    with pytest.raises(InvalidMessage, match="shorten the message"):
        fit_messages("sys", [], "word " * 500, window=256, reserve=64, count=words)

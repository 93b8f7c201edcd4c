"""The streaming sentence splitter: cuts at sentence ends, early clause for the first piece, never mid-number."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from avatarium_lab.splitter import SentenceSplitter, speakable


def split_stream(text: str, step: int = 3, **kw: int) -> list[str]:
    s = SentenceSplitter(**kw)
    out: list[str] = []
    for i in range(0, len(text), step):
        out += s.feed(text[i:i + step])
    return out + s.flush()


def test_sentences_are_cut_as_soon_as_they_end() -> None:
    s = SentenceSplitter()
    assert s.feed("Hello there.") == ["Hello there."]   # no need to wait for the next token
    assert s.feed(" How") == []
    assert s.feed(" are you? I am fine") == ["How are you?"]
    assert s.flush() == ["I am fine"]


def test_ambiguous_periods_wait_for_the_next_token() -> None:
    for head, tail in (("It costs 3.", "14 dollars now."), ("Ask Dr.", " Smith today."), ("See e.", "g. this one."),
                       ("Said J.", " Smith himself.")):
        s = SentenceSplitter(first_clause_chars=100)
        assert s.feed(head) == [], head
        assert s.feed(tail) == [head + tail], head


def test_abbreviations_decimals_and_initials_do_not_end_sentences() -> None:
    text = "Dr. Smith paid 3.14 dollars, e.g. for tea. J. R. Tolkien wrote books! Really?"
    assert split_stream(text, first_clause_chars=1000) == [
        "Dr. Smith paid 3.14 dollars, e.g. for tea.",
        "J. R. Tolkien wrote books!",
        "Really?",
    ]


def test_first_piece_may_end_at_a_clause_once_long_enough() -> None:
    text = "The ocean covers most of our planet, and it is full of life. It is deep, dark, and cold."
    pieces = split_stream(text, first_clause_chars=24)
    assert pieces[0] == "The ocean covers most of our planet,"
    # only the first piece is cut early: later commas stay inside their sentence
    assert pieces[1:] == ["and it is full of life.", "It is deep, dark, and cold."]


def test_first_piece_may_end_after_a_few_words_when_asked() -> None:
    text = "The sky can be described as blue because air scatters light. It is lovely."
    pieces = split_stream(text, step=2, first_words=4)
    assert pieces == ["The sky can be", "described as blue because air scatters light.", "It is lovely."]
    # a clause mark or sentence end that comes first still wins
    assert split_stream("Oh. The sky can be described as blue.", first_words=4)[0] == "Oh."
    # the piece is never shorter than min_chars
    assert split_stream("I am a cat and I like fish.", first_words=2, min_chars=10)[0] == "I am a cat"


def test_short_first_clause_is_not_cut() -> None:
    assert split_stream("Well, that is a fine question to ask.", first_clause_chars=24) == [
        "Well, that is a fine question to ask."
    ]


def test_overlong_text_is_cut_at_a_word_boundary() -> None:
    words = " ".join(["word"] * 100)
    pieces = split_stream(words, max_chars=60, first_clause_chars=60)
    assert all(len(p) <= 60 for p in pieces)
    assert " ".join(pieces) == words


def test_newlines_end_pieces() -> None:
    assert split_stream("First line\nSecond line", first_clause_chars=100) == ["First line", "Second line"]


@settings(max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list("abc .,!?\n3")), max_size=300), st.integers(1, 9), st.integers(0, 5))
def test_no_text_is_lost_or_duplicated(text: str, step: int, first_words: int) -> None:
    pieces = split_stream(text, step=step, first_words=first_words)
    # every non-space character comes out once, in order (cuts may only move whitespace)
    assert "".join("".join(pieces).split()) == "".join(text.split())
    assert all(p == p.strip() and p for p in pieces)


def test_speakable_strips_markdown_emoji_and_urls() -> None:
    assert speakable("**Bold** and `code` 🌊 see https://x.org/a?b=c") == "Bold and code see link"
    assert speakable("- item one\n- item two") == "item one item two"

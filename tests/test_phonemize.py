"""Tests of the phonemizer front end (text -> IPA with the bundled espeak-ng, offline)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from avatarium_lab.errors import LipSyncError
from avatarium_lab.lipsync import phoneme_sequence, phonemize, strip_marks


def test_phonemes_per_word() -> None:
    assert phonemize("Hello world") == [["h", "ə", "l", "oʊ"], ["w", "ɜː", "l", "d"]]


def test_stress_marks_on_request() -> None:
    words = phonemize("Hello world", with_stress=True)
    assert words[0][-1] == "ˈoʊ"
    assert not any("ˈ" in p for p in phoneme_sequence("Hello world"))


def test_punctuation_dropped_and_numbers_expanded() -> None:
    words = phonemize("Wait... 37.5 degrees?! (Really.)")
    flat = [p for w in words for p in w]
    assert not any(ch in p for p in flat for ch in ".,?!()")
    assert "".join(strip_marks(p) for p in flat).count("pɔɪnt") == 1  # "point" from 37.5
    assert len(words) >= 7


def test_clause_breaks_match_the_voice() -> None:
    # A comma stops espeak's linking r; phonemizer alone would strip the comma and add one.
    assert "".join(phoneme_sequence("lawyer, hour")) == "lɔɪɚaʊɚ"
    assert "ɹ" in "".join(phoneme_sequence("lawyer hour"))


def test_empty_text() -> None:
    assert phonemize("") == []
    assert phonemize("   \n ") == []
    assert phoneme_sequence("...") == []


def test_language_names() -> None:
    us = phoneme_sequence("tomato", "en-us")
    assert phoneme_sequence("tomato", "EN-US") == us
    gb = phoneme_sequence("tomato", "en")  # espeak's voice file name, phonemizer calls it en-gb
    assert gb == phoneme_sequence("tomato", "en-gb")
    assert gb != us
    assert phonemize("bonjour", "fr-fr")[0][0] == "b"
    with pytest.raises(LipSyncError, match="xx-yy"):
        phonemize("hello", "xx-yy")


def test_strip_marks() -> None:
    assert strip_marks("ˈɑːɹ") == "ɑɹ"
    assert strip_marks("ˌa:") == "a"
    assert strip_marks("t̪") == "t"
    assert strip_marks("n̩") == "n"
    assert strip_marks("t͡ʃ") == "tʃ"


def test_thread_safe() -> None:
    texts = ["The quick brown fox.", "Jumps over the lazy dog.", "Pack my box with five dozen liquor jugs."] * 4
    expected = [phonemize(t) for t in texts]
    with ThreadPoolExecutor(max_workers=4) as pool:
        assert list(pool.map(phonemize, texts)) == expected

"""Tests of the phoneme -> viseme maps (Oculus 15, Rhubarb A-X, ARKit) and the timed viseme track."""

from __future__ import annotations

import logging

import pytest

from avatarium_lab.errors import LipSyncError
from avatarium_lab.events import TimedPhoneme, TimedViseme
from avatarium_lab.lipsync import (
    OCULUS_VISEMES,
    RHUBARB_SHAPES,
    ipa_table,
    ipa_to_oculus,
    ipa_to_oculus_sequence,
    ipa_to_rhubarb,
    oculus_to_arkit,
    oculus_to_rhubarb,
    phonemes_to_visemes,
    split_symbol,
    to_rhubarb,
)
from avatarium_lab.tts.espeak import EspeakVoice

ENGLISH_VOICES = [
    "en-us", "en", "en-gb-x-rp", "en-gb-scotland", "en-029", "en-us-nyc", "en-gb-x-gbclan", "en-gb-x-gbcwmd",
]

VARIED_ENGLISH = """
The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs!
How vexingly quick daft zebras jump; the five boxing wizards jump quickly.
Yesterday, around four thirty in the afternoon, Dr. Watson measured the temperature: 37.5 degrees Celsius.
Would you rather hear a story about pirates, or one about the strange hour when the clocks refused to chime?
Thousands of birds flew north, their wings beating against the cold, gray sky above the harbour.
She usually measures the treasure with a ruler, although her vision isn't what it used to be.
Judge Jenkins enjoyed orange juice, cheese, and church bells every single Sunday morning.
Our poor tourists were sure the fire near the shore was caused by a tired engineer's cigar.
Thirty-three thieves thought that they thrilled the throne throughout Thursday.
Bring your own towel, join the choir, and enjoy the noise of the boys in the toy store.
Cure, pure, fewer, mayor, layer, lawyer, hour, flower, coin, quiet, idea, area, museum, nuclear, genuine.
Which witch wished for the whale's loch? Eighth, width, button, little, bottle, rhythm, prism, schism.
Behold! A giraffe, a gnu, a yak, and a whale were waiting quietly in the queue, singing "la la la".
"""


def tp(symbol: str, start: float, end: float) -> TimedPhoneme:
    return TimedPhoneme(symbol, start, end)


def tv(viseme: str, start: float, end: float) -> TimedViseme:
    return TimedViseme(viseme, start, end)


def assert_track(got: tuple[TimedViseme, ...], expected: list[TimedViseme]) -> None:
    assert [g.viseme for g in got] == [e.viseme for e in expected]
    for g, e in zip(got, expected, strict=True):
        assert g.start == pytest.approx(e.start, abs=1e-9) and g.end == pytest.approx(e.end, abs=1e-9), (g, e)
        assert g.weight == 1.0


def test_constants() -> None:
    assert OCULUS_VISEMES == ("sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U")
    assert RHUBARB_SHAPES == ("A", "B", "C", "D", "E", "F", "G", "H", "X")


def test_every_oculus_viseme_has_arkit_and_rhubarb_entries() -> None:
    for viseme in OCULUS_VISEMES:
        weights = oculus_to_arkit(viseme)
        assert isinstance(weights, dict)
        assert all(isinstance(k, str) and 0.0 <= v <= 1.0 for k, v in weights.items())
        assert oculus_to_rhubarb(viseme) in RHUBARB_SHAPES
    assert oculus_to_arkit("aa")["jawOpen"] > oculus_to_arkit("I")["jawOpen"] > oculus_to_arkit("PP")["jawOpen"]
    assert oculus_to_arkit("U")["mouthPucker"] > 0.5
    assert sum(oculus_to_arkit("sil").values()) == 0.0


def test_arkit_returns_a_copy_and_rejects_unknown() -> None:
    weights = oculus_to_arkit("aa")
    weights["jawOpen"] = 0.0
    assert oculus_to_arkit("aa")["jawOpen"] > 0.0
    with pytest.raises(LipSyncError):
        oculus_to_arkit("AA")
    with pytest.raises(LipSyncError):
        oculus_to_rhubarb("viseme_aa")


def test_ipa_tables_cover_the_same_symbols() -> None:
    oculus, rhubarb = ipa_table("oculus"), ipa_table("rhubarb")
    assert set(oculus) == set(rhubarb)
    assert set(oculus.values()) <= set(OCULUS_VISEMES)
    assert set(rhubarb.values()) <= set(RHUBARB_SHAPES)
    with pytest.raises(LipSyncError):
        ipa_table("azure")


@pytest.mark.parametrize(
    ("viseme", "symbols"),
    [
        ("PP", "p b m"), ("FF", "f v"), ("TH", "θ ð"), ("DD", "t d"), ("kk", "k ɡ ŋ"), ("CH", "tʃ dʒ ʃ ʒ"),
        ("SS", "s z"), ("nn", "n l"), ("RR", "ɹ r"), ("aa", "ɑ a æ ʌ"), ("E", "ɛ e ə"), ("I", "ɪ i"),
        ("O", "ɔ o"), ("U", "ʊ u w"),
    ],
)
def test_oculus_reference_groups(viseme: str, symbols: str) -> None:
    for symbol in symbols.split():
        assert ipa_to_oculus(symbol) == viseme, symbol


@pytest.mark.parametrize(
    ("symbol", "shape"),
    [("p", "A"), ("m", "A"), ("s", "B"), ("k", "B"), ("iː", "B"), ("ɛ", "C"), ("æ", "C"), ("ɑː", "D"),
     ("ɔː", "E"), ("ɚ", "E"), ("uː", "F"), ("w", "F"), ("f", "G"), ("v", "G"), ("l", "H"), ("", "X")],
)
def test_rhubarb_shapes_follow_their_documentation(symbol: str, shape: str) -> None:
    assert ipa_to_rhubarb(symbol) == shape


def test_merged_and_marked_symbols_are_tokenised() -> None:
    assert split_symbol("ˈɑːɹ") == (("ɑ", 2.0), ("ɹ", 1.0))
    assert split_symbol("aɪ") == (("a", 1.0), ("ɪ", 1.0))
    assert split_symbol("tʃ") == (("tʃ", 1.0),)
    assert split_symbol("t͡ʃ") == (("tʃ", 1.0),)
    assert split_symbol("t̪") == (("t", 1.0),)
    assert split_symbol("ˈa:") == (("a", 2.0),)
    assert split_symbol("ˈ") == ()
    assert ipa_to_oculus("ˈɑːɹ") == "aa"
    assert ipa_to_oculus("ˌoʊ") == "O"
    assert ipa_to_oculus("ɚ") == "RR"
    assert ipa_to_oculus_sequence("ˈaɪə") == [("aa", 1.0), ("I", 1.0), ("E", 1.0)]
    assert ipa_to_oculus("") == "sil" and ipa_to_oculus_sequence("") == []


def test_unknown_symbol_falls_back_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="avatarium_lab.lipsync.visemes"):
        assert ipa_to_oculus("ʘ") == "E"  # a click: not English
        assert ipa_to_oculus("ʘ") == "E"
        assert ipa_to_rhubarb("ʘ") == "B"
    oculus_warnings = [r for r in caplog.records if "Oculus" in r.getMessage() and "ʘ" in r.getMessage()]
    assert len(oculus_warnings) == 1


def collect_espeak_symbols() -> set[str]:
    symbols: set[str] = set()
    for language in ENGLISH_VOICES:
        voice = EspeakVoice(language)
        for line in VARIED_ENGLISH.strip().splitlines():
            symbols.update(p.symbol for p in voice.synthesize_sync(line).phonemes)
    return symbols


def test_every_english_espeak_phoneme_maps_without_fallback() -> None:
    symbols = collect_espeak_symbols()
    assert len(symbols) > 60  # varied text across accents really exercises the inventory
    oculus, rhubarb = ipa_table("oculus"), ipa_table("rhubarb")
    unmapped = {
        symbol: segment
        for symbol in symbols
        for segment, _ in split_symbol(symbol)
        if segment not in oculus or segment not in rhubarb
    }
    assert not unmapped, unmapped
    assert all(split_symbol(s) for s in symbols), "every reported phoneme must leave at least one segment"


def test_phonemes_to_visemes_exact_track() -> None:
    phonemes = [
        tp("h", 0.00, 0.05),        # kk
        tp("ə", 0.05, 0.10),        # E
        tp("l", 0.10, 0.20),        # nn
        tp("ˈoʊ", 0.20, 0.40),      # O + U, split equally
        tp("w", 0.50, 0.60),        # gap 0.40-0.50 -> sil; U
        tp("ˈɜː", 0.60, 0.75),      # E (long, alone)
        tp("l", 0.75, 0.80),
        tp("d", 0.80, 0.85),
        tp("", 0.85, 1.00),         # a pause symbol -> sil
        tp("f", 1.00, 1.06),
        tp("ˈɑːɹ", 1.06, 1.36),     # aa (long: 2/3) + RR (1/3)
        tp("m", 1.36, 1.40),
        tp("b", 1.40, 1.45),        # identical neighbour visemes merge: PP
    ]
    assert_track(
        phonemes_to_visemes(phonemes),
        [
            tv("kk", 0.00, 0.05), tv("E", 0.05, 0.10), tv("nn", 0.10, 0.20), tv("O", 0.20, 0.30),
            tv("U", 0.30, 0.40), tv("sil", 0.40, 0.50), tv("U", 0.50, 0.60), tv("E", 0.60, 0.75),
            tv("nn", 0.75, 0.80), tv("DD", 0.80, 0.85), tv("sil", 0.85, 1.00), tv("FF", 1.00, 1.06),
            tv("aa", 1.06, 1.26), tv("RR", 1.26, 1.36), tv("PP", 1.36, 1.45),
        ],
    )


def test_phonemes_to_visemes_merges_across_phonemes_and_gaps() -> None:
    track = phonemes_to_visemes([tp("s", 0.0, 0.1), tp("z", 0.1, 0.2), tp("", 0.2, 0.3), tp("t", 0.35, 0.4)])
    assert_track(track, [tv("SS", 0.0, 0.2), tv("sil", 0.2, 0.35), tv("DD", 0.35, 0.4)])
    # A diphthong followed by its own second element merges into one span.
    assert_track(phonemes_to_visemes([tp("aɪ", 1.0, 1.2), tp("ɪ", 1.2, 1.3)]), [tv("aa", 1.0, 1.1), tv("I", 1.1, 1.3)])


def test_phonemes_to_visemes_edge_cases() -> None:
    assert phonemes_to_visemes([]) == ()
    # Zero-length items vanish; a lone stress mark extends the previous viseme; times are not shifted.
    assert_track(
        phonemes_to_visemes([tp("m", 2.0, 2.1), tp("ˈ", 2.1, 2.15), tp("ə", 2.15, 2.15), tp("i", 2.15, 2.3)]),
        [tv("PP", 2.0, 2.15), tv("I", 2.15, 2.3)],
    )
    # Overlapping input: the earlier phoneme keeps its time.
    assert_track(phonemes_to_visemes([tp("p", 0.0, 0.2), tp("a", 0.1, 0.3)]), [tv("PP", 0.0, 0.2), tv("aa", 0.2, 0.3)])


def test_to_rhubarb_from_phonemes_and_from_visemes() -> None:
    phonemes = [tp("l", 0.0, 0.1), tp("ˈoʊ", 0.1, 0.3), tp("", 0.3, 0.4), tp("m", 0.4, 0.5), tp("iː", 0.5, 0.6)]
    assert_track(
        to_rhubarb(phonemes),
        [tv("H", 0.0, 0.1), tv("E", 0.1, 0.2), tv("F", 0.2, 0.3), tv("X", 0.3, 0.4), tv("A", 0.4, 0.5),
         tv("B", 0.5, 0.6)],
    )
    visemes = phonemes_to_visemes(phonemes)
    assert_track(
        to_rhubarb(visemes),
        [tv("B", 0.0, 0.1), tv("E", 0.1, 0.2), tv("F", 0.2, 0.3), tv("X", 0.3, 0.4), tv("A", 0.4, 0.5),
         tv("B", 0.5, 0.6)],
    )
    assert to_rhubarb([]) == ()
    with pytest.raises(LipSyncError):
        to_rhubarb([phonemes[0], visemes[0]])  # type: ignore[list-item]


def test_espeak_track_covers_speech_without_gaps() -> None:
    chunk = EspeakVoice("en-us+f3").synthesize_sync("The car is far, and the flowers are quiet.")
    track = phonemes_to_visemes(chunk.phonemes)
    assert track[0].start == pytest.approx(chunk.phonemes[0].start)
    assert track[-1].end == pytest.approx(chunk.phonemes[-1].end)
    for a, b in zip(track, track[1:], strict=False):
        assert a.end == pytest.approx(b.start) and a.viseme != b.viseme
    assert {v.viseme for v in track} <= set(OCULUS_VISEMES)
    assert "sil" in {v.viseme for v in track}  # the comma pause
    assert {v.viseme for v in to_rhubarb(chunk.phonemes)} <= set(RHUBARB_SHAPES)

"""Tests of the optional Debian voices, festival (HTS SLT) and flite (SLT): audio, phone timings mapped to IPA,
rate and pitch, safe text passing, typed errors, streaming and cancellation. Skipped where a program is missing."""

from __future__ import annotations

import asyncio
import difflib
import os
import shutil
import time
from pathlib import Path

import numpy as np
import pytest

from avatarium_lab.errors import ConfigError, UnknownVoice, VoiceError
from avatarium_lab.lipsync.phonemize import phoneme_sequence
from avatarium_lab.lipsync.visemes import ipa_table, ipa_to_oculus_sequence, split_symbol
from avatarium_lab.tts import SpeechChunk, Voice, get_voice
from avatarium_lab.tts import festival as fest
from avatarium_lab.tts.festival import (
    ARPABET_TO_IPA,
    FestivalVoice,
    FliteVoice,
    ascii_text,
    available,
    scheme_string,
    sentences,
)

needs_festival = pytest.mark.skipif(shutil.which("festival") is None,
                                    reason="festival is not installed (apt-get install festival festvox-us-slt-hts)")
needs_flite = pytest.mark.skipif(shutil.which("flite") is None, reason="flite is not installed (apt-get install flite)")

ENGINES = [
    pytest.param("festival:cmu_us_slt_arctic_hts", 32000, marks=needs_festival, id="festival"),
    pytest.param("flite:slt", 16000, marks=needs_flite, id="flite"),
]

SENTENCES = [
    "Hello world.",
    "She sells sea shells, by the sea shore.",
    "Would you rather hear a story about pirates, or one about the strange hour when the clocks refused to chime?",
    "I can't believe it's already the twenty-first of February!",
]

PARAGRAPHS = [
    "The quick brown fox jumps over the lazy dog. Pack my box with five dozen liquor jugs! "
    "Thousands of birds flew north, their wings beating against the cold, gray sky above the harbour. "
    "She usually measures the treasure with a ruler, although her vision isn't what it used to be.",
    "Judge Jenkins enjoyed orange juice, cheese, and church bells every single Sunday morning. "
    "\"Oh, really?\" he whispered. \"I thought you'd never ask, but here we are, finally.\" "
    "Our poor tourists were sure the fire near the shore was caused by a tired engineer's cigar.",
    "Thirty-three thieves thought that they thrilled the throne throughout Thursday. "
    "Bring your own towel, join the choir, and enjoy the noise of the boys in the toy store. "
    "On 3 March 2024 at 10:45, Mr. O'Neill paid $1,299.99 for 12 GB of RAM at the U.S. store. "
    "Genre, beige, Zürich, naïve café, Dvořák and Bach: the loch was measured in ångströms.",
]

MULTI = (
    "The morning was cold and bright. We walked along the river to the old mill. "
    "Nobody had been there for years, and the door creaked when we pushed it open. "
    "Inside, the dust danced in long beams of sunlight."
)


@pytest.fixture(scope="module")
def voices() -> dict[str, Voice]:
    return {}


def voice_for(voices: dict[str, Voice], voice_id: str) -> Voice:
    if voice_id not in voices:
        voices[voice_id] = get_voice(voice_id)
    return voices[voice_id]


def samples(chunk: SpeechChunk) -> np.ndarray:
    return np.frombuffer(chunk.pcm, dtype="<i2").astype(np.float64)


def check_chunk(chunk: SpeechChunk, rate: int) -> None:
    assert chunk.sample_rate == rate
    assert chunk.phonemes, "no phonemes"
    x = samples(chunk)
    assert np.sqrt(np.mean(x**2)) > 300, "audio is (nearly) silent"
    previous_end = 0.0
    for p in chunk.phonemes:
        assert p.symbol and p.symbol == p.symbol.strip()
        assert 0.0 <= p.start < p.end <= chunk.duration + 1e-9, p
        assert p.start >= previous_end - 1e-9, "phonemes overlap or go backwards"
        previous_end = p.end


def visemes(symbols: list[str]) -> list[str]:
    return [v for s in symbols for v, _ in ipa_to_oculus_sequence(s)]


def viseme_similarity(spoken: list[str], text: str) -> float:
    """Agreement with espeak's phonemes for ``text``, compared as viseme sequences (the engines' phone sets and
    dictionaries differ in detail, e.g. ɝ vs ɜː, but should look alike on the lips)."""
    expected = visemes(phoneme_sequence(text))
    return difflib.SequenceMatcher(None, visemes(spoken), expected, autojunk=False).ratio()


def unmapped(symbols: list[str]) -> set[str]:
    table = ipa_table("oculus")
    return {s for s in symbols if not split_symbol(s) or any(seg not in table for seg, _ in split_symbol(s))}


def f0_median(chunk: SpeechChunk) -> float:
    x = samples(chunk)
    sr = chunk.sample_rate
    frame, hop = int(0.04 * sr), int(0.01 * sr)
    lo, hi = int(sr / 500), int(sr / 60)
    loud = 0.03 * np.abs(x).max()
    found = []
    for s in range(0, len(x) - frame, hop):
        f = x[s : s + frame]
        if np.sqrt(np.mean(f**2)) < loud:
            continue
        f = f - f.mean()
        ac = np.correlate(f, f, "full")[frame - 1 :]
        if ac[0] <= 0:
            continue
        ac = ac / ac[0]
        lag = lo + int(np.argmax(ac[lo:hi]))
        if ac[lag] > 0.5:
            found.append(sr / lag)
    assert len(found) > 20
    return float(np.median(found))


# --- pure helpers (no program needed) ------------------------------------------------------------------------


def test_arpabet_table_maps_to_visemes() -> None:
    assert not unmapped(list(ARPABET_TO_IPA.values()))
    assert fest.arpabet_to_ipa("AY1") == "aɪ" and fest.arpabet_to_ipa("dh") == "ð"


def test_text_helpers() -> None:
    assert ascii_text("“Café” — naïve…\tZoë\x00!") == '"Cafe" , naive... Zoe !'
    assert scheme_string('He said "hi" \\ (x)') == '"He said \\"hi\\"   (x)"'
    assert sentences("One. Two? Three! Four") == ["One.", "Two?", "Three!", "Four"]
    assert sentences(". . ,") == []
    long = "word " * 200
    assert all(len(s) <= fest.MAX_SENTENCE for s in sentences(long))


def test_timed_phonemes_clamp_and_gap() -> None:
    ends = [("pau", 0.1), ("hh", 0.2), ("ax", 0.2), ("l", 0.35), ("pau", 0.4), ("ow", 0.6)]
    items = fest.timed_phonemes(ends, 1000, 500, "test")
    assert [(p.symbol, p.start, p.end) for p in items] == [("h", 0.1, 0.2), ("l", 0.2, 0.35), ("oʊ", 0.4, 0.5)]


def test_available_reports_the_programs() -> None:
    assert available("festival") == (shutil.which("festival") is not None)
    assert available("flite") == (shutil.which("flite") is not None)


# --- both engines ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_get_voice_builds_registered_engine(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    assert isinstance(v, (FestivalVoice, FliteVoice)) and isinstance(v, Voice)
    assert v.id == voice_id and v.sample_rate == rate and v.has_timings is True


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_timings_monotonic_inside_audio(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    for text in SENTENCES:
        chunks = v.synthesize_sync(text)
        assert len(chunks) == 1
        check_chunk(chunks[0], rate)
        assert viseme_similarity([p.symbol for p in chunks[0].phonemes], text) >= 0.85, text


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_paragraphs_plausible_and_mapped(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    symbols: list[str] = []
    for text in PARAGRAPHS:
        chunks = v.synthesize_sync(text)
        assert len(chunks) >= 3, "one chunk per sentence"
        for chunk in chunks:
            check_chunk(chunk, rate)
        spoken = [p.symbol for c in chunks for p in c.phonemes]
        assert viseme_similarity(spoken, text) >= 0.85, text
        symbols += spoken
    assert len(symbols) > 400
    assert not unmapped(symbols)


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_pauses_are_gaps(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    chunk = voice_for(voices, voice_id).synthesize_sync("She sells sea shells, by the sea shore.")[0]
    x = samples(chunk)
    gaps = [(a.end, b.start) for a, b in zip(chunk.phonemes, chunk.phonemes[1:]) if b.start > a.end]
    assert gaps, "the comma should leave a pause"
    start, end = max(gaps, key=lambda g: g[1] - g[0])
    middle = x[int((start + 0.02) * rate) : int((end - 0.02) * rate)]
    assert len(middle) and np.sqrt(np.mean(middle**2)) < 0.2 * np.sqrt(np.mean(x**2))


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_rate_changes_duration(voice_id: str, rate: int) -> None:
    text = "The quick brown fox jumps over the lazy dog by the river."
    slow = get_voice(voice_id, rate=100).synthesize_sync(text)[0]
    normal = get_voice(voice_id, rate=170).synthesize_sync(text)[0]
    fast = get_voice(voice_id, rate=300).synthesize_sync(text)[0]
    assert slow.duration > normal.duration * 1.3
    assert normal.duration > fast.duration * 1.3
    for chunk in (slow, normal, fast):
        check_chunk(chunk, rate)
        assert [p.symbol for p in chunk.phonemes] == [p.symbol for p in normal.phonemes]


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
@pytest.mark.parametrize("bad", [{"rate": 50}, {"rate": "fast"}, {"rate": float("nan")}])
def test_bad_rate(voice_id: str, rate: int, bad: dict) -> None:
    with pytest.raises(ConfigError):
        get_voice(voice_id, **bad)


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_text_is_passed_safely(voices: dict[str, Voice], voice_id: str, rate: int, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    nasty = [
        f'He said "hi") (system "touch {marker}") ("; and left.',
        "Back\\slash \\\" quote; (paren) `tick` $HOME $(touch " + str(marker) + ") -t --help",
        "-o /tmp/x.wav starts like an option.",
        "Unicode “quotes”, naïve café, emoji 😀 and CJK 漢字 end here.",
    ]
    v = voice_for(voices, voice_id)
    for text in nasty:
        chunks = v.synthesize_sync(text)
        assert chunks, text
        for chunk in chunks:
            check_chunk(chunk, rate)
    assert not marker.exists()


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_empty_text(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    for text in ("", "   ", "\n", "\0", " . , ", "😀"):
        assert v.synthesize_sync(text) == []


@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
def test_inputs_that_crash_espeak(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    """The dotted-letter inputs that crash espeak-ng: these programs run in a child, so at worst a VoiceError."""
    v = voice_for(voices, voice_id)
    for text in ["'s" * 200, "é." * 200, "a.a.a. " * 60]:
        try:
            chunks = v.synthesize_sync(text)
        except VoiceError:
            continue
        for chunk in chunks:
            assert chunk.duration > 0


@pytest.mark.asyncio
@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
async def test_async_streams_sentences(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    start = time.perf_counter()
    arrivals: list[float] = []
    chunks: list[SpeechChunk] = []
    async for chunk in v.synthesize(" ".join([MULTI] * 2)):
        arrivals.append(time.perf_counter() - start)
        chunks.append(chunk)
    assert len(chunks) == 8
    for chunk in chunks:
        check_chunk(chunk, rate)
    assert arrivals[0] < arrivals[-1] / 2, arrivals


@pytest.mark.asyncio
@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
async def test_async_close_early_does_not_hang(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    agen = v.synthesize(" ".join([MULTI] * 4))
    first = await asyncio.wait_for(agen.__anext__(), timeout=60)
    check_chunk(first, rate)
    start = time.perf_counter()
    await asyncio.wait_for(agen.aclose(), timeout=5)
    assert time.perf_counter() - start < 1.0


@pytest.mark.asyncio
@pytest.mark.parametrize(("voice_id", "rate"), ENGINES)
async def test_async_cancel_while_waiting(voices: dict[str, Voice], voice_id: str, rate: int) -> None:
    v = voice_for(voices, voice_id)
    first = asyncio.Event()

    async def consume() -> None:
        async for _ in v.synthesize(" ".join([MULTI] * 4)):
            first.set()

    task = asyncio.create_task(consume())
    await asyncio.wait_for(first.wait(), timeout=60)
    task.cancel()
    done, _ = await asyncio.wait({task}, timeout=5)
    assert task in done and task.cancelled()
    assert [c async for c in v.synthesize("Still here.")]


# --- festival -------------------------------------------------------------------------------------------------


@needs_festival
def test_festival_unknown_voice() -> None:
    for name in ("voice_that_is_not_there", "cmu_us_slt_arctic_hts) (system \"true\")", ""):
        with pytest.raises(UnknownVoice):
            FestivalVoice(name)


@needs_festival
@pytest.mark.asyncio
async def test_festival_close_kills_the_process(voices: dict[str, Voice], monkeypatch: pytest.MonkeyPatch) -> None:
    v = voice_for(voices, "festival:cmu_us_slt_arctic_hts")
    runs: list[fest._FestivalRun] = []
    real_start = FestivalVoice.start

    def spy(self: FestivalVoice, text: str) -> fest._FestivalRun | None:
        run = real_start(self, text)
        runs.append(run)
        return run

    monkeypatch.setattr(FestivalVoice, "start", spy)
    agen = v.synthesize(" ".join([MULTI] * 4))
    await asyncio.wait_for(agen.__anext__(), timeout=60)
    await asyncio.wait_for(agen.aclose(), timeout=5)
    (run,) = runs
    assert run.proc.poll() is not None, "festival still running after close"
    assert not run.dir.exists(), "temporary files left behind"


@needs_festival
def test_festival_failure_is_voice_error(voices: dict[str, Voice], tmp_path: Path,
                                         monkeypatch: pytest.MonkeyPatch) -> None:
    v = voice_for(voices, "festival:cmu_us_slt_arctic_hts")
    fake = tmp_path / "festival"
    fake.write_text("#!/bin/sh\necho 'SIOD ERROR: something broke' >&2\nexit 3\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(VoiceError, match="something broke"):
        v.synthesize_sync("Hello there.")


# --- flite ----------------------------------------------------------------------------------------------------


@needs_flite
def test_flite_unknown_voice() -> None:
    with pytest.raises(UnknownVoice, match="slt"):
        FliteVoice("nobody")


@needs_flite
def test_flite_pitch_changes_f0() -> None:
    text = "Hello there, how are you doing today on this lovely morning?"
    low = f0_median(FliteVoice(pitch=15).synthesize_sync(text)[0])
    high = f0_median(FliteVoice(pitch=85).synthesize_sync(text)[0])
    assert high > low * 1.3, (low, high)
    with pytest.raises(ConfigError):
        FliteVoice(pitch=101)


@needs_flite
def test_flite_failure_is_voice_error(voices: dict[str, Voice], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    v = voice_for(voices, "flite:slt")
    fake = tmp_path / "flite"
    fake.write_text("#!/bin/sh\necho 'flite: out of cheese' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    with pytest.raises(VoiceError, match="out of cheese"):
        v.synthesize_sync("Hello there.")


# --- missing programs -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(("cls", "command"), [(FestivalVoice, "apt-get install festival"),
                                              (FliteVoice, "apt-get install flite")])
def test_missing_program_is_voice_error(cls: type, command: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(fest.shutil, "which", lambda name: None)
    with pytest.raises(VoiceError, match=command):
        cls()
    assert not available("festival") and not available("flite")

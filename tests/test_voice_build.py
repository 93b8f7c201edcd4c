"""Voice building: catalog, plan gating, keys, loudness normalisation, resampling, and untimed voices."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import numpy as np
import pytest

from avatarium_lab.config import Config, VoiceConfig
from avatarium_lab.errors import PlanRequired, ProviderAuthError, UnknownVoice
from avatarium_lab.lipsync.aligners import text_proportional, voiced_spans
from avatarium_lab.personality import load_persona
from avatarium_lab.pipeline import Pipeline
from avatarium_lab.providers.build import ProviderContext
from avatarium_lab.tts import SpeechChunk, get_voice
from avatarium_lab.tts.audio import integrated_loudness, pcm16_to_float
from avatarium_lab.tts.build import LevelledVoice, build_voice
from avatarium_lab.tts.catalog import available, load_voice_catalog

PERSONA = load_persona("warm_tutor")
OFFLINE = ProviderContext(environ={}, use_keyring=False)


async def speak(voice, text: str) -> list[SpeechChunk]:
    return [c async for c in voice.synthesize(text)]


def test_catalog_lists_every_tier_and_knows_what_is_available() -> None:
    catalog = load_voice_catalog()
    assert {v.tier for v in catalog.voices} == {"basic", "standard", "premium"}
    espeak = catalog.find("espeak:en-us+f3")
    assert espeak is not None and available(espeak)
    assert catalog.tier_of("espeak:en-au") == "basic" and catalog.tier_of("piper:some-voice") == "standard"


def test_premium_voices_need_a_plan_and_a_key() -> None:
    with pytest.raises(PlanRequired, match="premium"):
        build_voice(VoiceConfig(id="openai:alloy"), PERSONA, ProviderContext(plan="free", environ={},
                                                                             use_keyring=False))
    with pytest.raises(ProviderAuthError, match="no API key"):
        build_voice(VoiceConfig(id="openai:alloy"), PERSONA, ProviderContext(plan="premium", environ={},
                                                                             use_keyring=False))
    with pytest.raises(UnknownVoice):
        build_voice(VoiceConfig(id="nope:voice"), PERSONA, OFFLINE)


def test_voices_are_levelled_to_the_same_loudness() -> None:
    # a voice of the same id at its default volume, calibrated first, must not lend the quiet one its gain
    asyncio.run(LevelledVoice(get_voice("espeak:en-us"), target_lufs=-20.0).calibrate())
    quiet = LevelledVoice(get_voice("espeak:en-us", volume=30), target_lufs=-20.0)
    loud = LevelledVoice(get_voice("espeak:en-us+f3", volume=180), target_lufs=-20.0)
    raw_quiet = asyncio.run(speak(quiet.inner, "Levels should match."))
    levels = []
    for voice in (quiet, loud):
        chunks = asyncio.run(speak(voice, "The ocean is deep and full of life, and it covers most of the planet."))
        levels.append(integrated_loudness(pcm16_to_float(b"".join(c.pcm for c in chunks)), chunks[0].sample_rate))
    assert abs(levels[0] - levels[1]) < 1.5, levels
    assert all(abs(level + 20.0) < 2.0 for level in levels), levels
    raw = integrated_loudness(pcm16_to_float(raw_quiet[0].pcm), raw_quiet[0].sample_rate)
    assert raw < -25.0  # the quiet engine really was quiet before levelling


class FixedVoice:
    """Replays one recorded chunk, so a comparison is not disturbed by the engine's run-to-run differences."""

    id = "test:fixed"
    has_timings = True

    def __init__(self, chunk: SpeechChunk) -> None:
        self.chunk = chunk
        self.sample_rate = chunk.sample_rate

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        yield self.chunk


def test_resampling_keeps_durations_and_timings() -> None:
    native = get_voice("espeak:en-us").synthesize_sync("Resampling keeps time.")
    voice = LevelledVoice(FixedVoice(native), target_lufs=None, sample_rate=16000)
    chunk = asyncio.run(speak(voice, "Resampling keeps time."))[0]
    assert chunk.sample_rate == 16000 and voice.sample_rate == 16000
    assert chunk.duration == pytest.approx(native.duration, abs=1 / 16000)
    assert chunk.phonemes == native.phonemes
    # the signal survives: the same loudness, before and after
    before = integrated_loudness(pcm16_to_float(native.pcm), native.sample_rate)
    assert integrated_loudness(pcm16_to_float(chunk.pcm), 16000) == pytest.approx(before, abs=0.5)


def test_text_proportional_baseline_lands_near_the_engine_timings() -> None:
    chunk = asyncio.run(speak(get_voice("espeak:en-us"), "Fish swim slowly across the wide blue sea."))[0]
    samples = pcm16_to_float(chunk.pcm)
    spans = voiced_spans(samples, chunk.sample_rate)
    assert spans and spans[0][0] < 0.15 and spans[-1][1] > chunk.duration - 0.3
    aligned = text_proportional(samples, chunk.sample_rate, "Fish swim slowly across the wide blue sea.")
    assert all(a.start < a.end <= chunk.duration + 1e-6 for a in aligned)
    assert all(a.start >= b.start for a, b in zip(aligned[1:], aligned))
    # A baseline, not an aligner: its boundaries are within ~100 ms of espeak's own on average.
    engine = chunk.phonemes
    n = min(len(engine), len(aligned))
    error = np.mean([abs(engine[i].start - aligned[i].start) for i in range(n)])
    assert error < 0.12, error
    assert text_proportional(np.zeros(22050, np.float32), 22050, "silence") == ()


class UntimedVoice:
    """espeak's real audio without its timings: stands in for a cloud voice that reports none."""

    id = "test:untimed"
    sample_rate = 22050
    has_timings = False

    def __init__(self) -> None:
        self.inner = get_voice("espeak:en-us")

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        async for chunk in self.inner.synthesize(text):
            half = len(chunk.pcm) // 4 * 2  # two chunks per sentence, as a streaming voice sends them
            yield SpeechChunk(chunk.pcm[:half], chunk.sample_rate)
            yield SpeechChunk(chunk.pcm[half:], chunk.sample_rate)


@pytest.mark.model
def test_a_voice_without_timings_is_aligned_from_its_audio(pipeline: Pipeline) -> None:
    p = Pipeline(Config.default(), provider=pipeline.provider, voice=UntimedVoice())
    turn = p.run("Tell me about the sea.", conversation=None)
    p.close()
    assert turn.ended.reason == "complete", turn.error
    phonemes = [e for e in turn if e.type == "phonemes"]
    assert phonemes and all(e.source == "text-proportional" for e in phonemes)
    audio = [e for e in turn if e.type == "audio"]
    for ev in phonemes:
        seg_audio = [a for a in audio if a.segment == ev.segment]
        start, end = seg_audio[0].offset, seg_audio[-1].offset + seg_audio[-1].duration
        assert all(start - 1e-6 <= ph.start < ph.end <= end + 1e-6 for ph in ev.items)
    assert turn.visemes


@pytest.mark.model
def test_a_configured_aligner_replaces_the_engine_timings(pipeline: Pipeline) -> None:
    config = Config.default().with_overrides(**{"lipsync.aligner": "text-proportional"})
    p = Pipeline(config, provider=pipeline.provider)
    turn = p.run("Tell me about the sea.", conversation=None)
    p.close()
    sources = {e.source for e in turn if e.type == "phonemes"}
    assert sources == {"text-proportional"} and turn.visemes

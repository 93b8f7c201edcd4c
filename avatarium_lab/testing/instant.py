"""A zero-latency voice for measuring what surrounds the pipeline (the gateway's own overhead, load tests).

``InstantVoice`` answers each sentence at once with quiet PCM16 of a plausible length (60 ms per character, at
most 2 s) and evenly spaced phoneme timings (a fixed cycle of lip, tongue and vowel sounds), so visemes flow as
with a real voice, without any synthesis cost. Paired with ``testing.scripted.ScriptedProvider`` it makes a turn whose every
millisecond is pipeline and transport. Never a default: only benchmarks and tests build it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass

from ..events import TimedPhoneme
from ..tts import SpeechChunk

_SECONDS_PER_CHAR = 0.06
_MAX_SECONDS = 2.0
_UNITS = ("p", "a", "t", "o", "s", "i", "m", "u")


@dataclass
class InstantVoice:
    id: str = "instant:test"
    sample_rate: int = 16000
    has_timings: bool = True

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        seconds = min(_MAX_SECONDS, max(0.2, _SECONDS_PER_CHAR * len(text)))
        n = int(seconds * self.sample_rate)
        pcm = b"\x01\x00" * n  # near-silence, not zeros: some consumers treat all-zero audio as missing
        units = max(1, int(seconds / 0.08))
        step = seconds / units
        phonemes = tuple(TimedPhoneme(_UNITS[i % len(_UNITS)], i * step, (i + 1) * step) for i in range(units))
        yield SpeechChunk(pcm=pcm, sample_rate=self.sample_rate, phonemes=phonemes)

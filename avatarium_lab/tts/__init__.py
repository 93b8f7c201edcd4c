"""Text-to-speech: the ``Voice`` protocol, the chunks voices produce, and the registry of voice engines.

A voice turns one sentence into audio chunks. Engines that know their own phoneme timings (espeak-ng does)
attach them to each chunk, times relative to that chunk's first sample; engines that do not leave
``phonemes`` as ``None`` and the pipeline sends their audio to an aligner instead.
"""

from __future__ import annotations

import importlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

from ..errors import UnknownVoice
from ..events import TimedPhoneme


@dataclass(frozen=True, slots=True)
class SpeechChunk:
    """PCM16 little-endian mono audio plus (optionally) its phoneme timings, relative to the chunk start."""

    pcm: bytes = field(repr=False)
    sample_rate: int
    phonemes: tuple[TimedPhoneme, ...] | None = None

    @property
    def duration(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


@runtime_checkable
class Voice(Protocol):
    """What the pipeline needs from a voice."""

    id: str
    sample_rate: int
    has_timings: bool

    def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Stream the audio of ``text`` (one sentence or clause)."""
        ...


VoiceFactory = Callable[..., Voice]
"""``factory(name, *, rate=None, pitch=None, model_path=None, key=None, model=None, base_url=None,
timeouts=None, **_)``: each engine takes what it understands and ignores the rest."""
_ENGINES: dict[str, VoiceFactory] = {}
# Built-in engines and the module that registers each (imported on first use).
_BUILTIN = {"espeak": "espeak", "piper": "piper", "festival": "festival", "flite": "festival",
            "openai": "openai_tts", "elevenlabs": "elevenlabs_tts", "gemini": "gemini_tts"}


def register_engine(name: str, factory: VoiceFactory) -> None:
    """Register a voice engine under ``name``; voice ids look like ``"<engine>:<engine voice>"``."""
    _ENGINES[name] = factory


def get_voice(voice_id: str, **params: object) -> Voice:
    """Build a voice from its id, e.g. ``get_voice("espeak:en-us+f3", rate=170, pitch=55)``."""
    engine, _, name = voice_id.partition(":")
    if engine not in _ENGINES and engine in _BUILTIN:
        importlib.import_module(f"{__name__}.{_BUILTIN[engine]}")
    factory = _ENGINES.get(engine)
    if factory is None or not name:
        known = sorted(set(_ENGINES) | set(_BUILTIN))
        raise UnknownVoice(f"unknown voice {voice_id!r}: ids look like '<engine>:<voice>' with engine one of {known}")
    return factory(name, **params)

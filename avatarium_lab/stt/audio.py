"""Input checks every speech-to-text engine shares: samples to 16 kHz float32 mono, silence, language codes.

Resampling is the project's (``tts.audio.resample``: soxr, high quality). Every way the input can be unusable
(no samples, a sample rate no audio has, too long) is a :class:`SpeechToTextError` with code ``invalid_audio``
or ``audio_too_long``; NaN and infinite samples become silence and samples are clipped into -1..1, as
``lipsync.audio_io`` does for WAV files.
"""

from __future__ import annotations

import asyncio
import logging
import re

import numpy as np

from ..errors import SpeechToTextError
from ..tts.audio import resample

log = logging.getLogger(__name__)

SAMPLE_RATE = 16_000
"""What every engine here decodes: Whisper's and pocketsphinx's models are 16 kHz models."""
MIN_SAMPLE_RATE = 1_000
MAX_SAMPLE_RATE = 384_000
DEFAULT_MAX_SECONDS = 300.0
"""Longest audio an engine accepts by default (an audio *message*, not a recording); engines take
``max_seconds=``."""
SILENCE_PEAK = 1e-3
"""Audio whose peak (around its mean) stays below -60 dBFS is silence: answered without decoding."""

_LANGUAGE = re.compile(r"^([a-z]{2,3})(?:[-_][a-z0-9]{2,8})*$")


def to_16k(samples: np.ndarray, sample_rate: int, *, engine: str,
           max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[np.ndarray, float]:
    """``(samples at 16 kHz, duration of the input in seconds)``.

    ``samples``: float mono (1-D), or 2-D ``(frames, channels)``, which is averaged to mono.
    """
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int | np.integer):
        raise SpeechToTextError(f"sample_rate must be an integer number of Hz, not {sample_rate!r}",
                                engine=engine, code="invalid_audio")
    if not MIN_SAMPLE_RATE <= int(sample_rate) <= MAX_SAMPLE_RATE:
        raise SpeechToTextError(f"sample rate {sample_rate} Hz is outside {MIN_SAMPLE_RATE}..{MAX_SAMPLE_RATE} Hz",
                                engine=engine, code="invalid_audio")
    try:
        x = np.asarray(samples, dtype=np.float32)
    except (TypeError, ValueError) as exc:
        raise SpeechToTextError(f"samples must be a numeric array ({exc})", engine=engine,
                                code="invalid_audio") from None
    if x.ndim == 2:
        x = x.mean(axis=1, dtype=np.float32) if x.shape[1] else x.reshape(-1)
    if x.ndim != 1:
        raise SpeechToTextError(f"samples must be mono (1-D) or (frames, channels), not shape {x.shape}",
                                engine=engine, code="invalid_audio")
    if x.size == 0:
        raise SpeechToTextError("the audio has no samples", engine=engine, code="invalid_audio")
    duration = x.size / int(sample_rate)
    if duration > max_seconds:
        raise SpeechToTextError(f"the audio is {duration:.1f} s long; at most {max_seconds:g} s",
                                engine=engine, code="audio_too_long")
    bad = ~np.isfinite(x)
    if bad.any():
        log.warning("%d NaN/infinite samples replaced by silence", int(bad.sum()))
        x = np.where(bad, np.float32(0.0), x)
    x = np.clip(x, -1.0, 1.0)
    out = resample(np.ascontiguousarray(x), int(sample_rate), SAMPLE_RATE)
    return np.ascontiguousarray(np.clip(out, -1.0, 1.0), dtype=np.float32), duration


def is_silent(samples: np.ndarray) -> bool:
    """True when there is nothing to hear: the peak around the mean (DC removed) is below :data:`SILENCE_PEAK`."""
    if samples.size == 0:
        return True
    return float(np.max(np.abs(samples - samples.mean()))) < SILENCE_PEAK


def check_language(language: str, *, engine: str, english_only: bool) -> str:
    """``language`` as a lower-case code (``en``, ``en-us``); English-only engines accept ``en`` and its
    regional forms only (``SpeechToTextError`` code ``unsupported_language`` otherwise)."""
    code = language.strip().lower().replace("_", "-") if isinstance(language, str) else ""
    match = _LANGUAGE.match(code)
    if match is None:
        raise SpeechToTextError(f"language {language!r} is not a language code such as 'en' or 'en-us'",
                                engine=engine, code="unsupported_language")
    if english_only and match.group(1) != "en":
        raise SpeechToTextError(f"the {engine} engine understands English only ('en'), not {language!r}; use a "
                                "cloud engine (openai:<model>) for other languages", engine=engine,
                                code="unsupported_language")
    return code


async def prepare(samples: np.ndarray, sample_rate: int, *, engine: str, language: str, english_only: bool,
                  max_seconds: float = DEFAULT_MAX_SECONDS) -> tuple[str, np.ndarray, float]:
    """What every engine does first: ``(language code, samples at 16 kHz, duration in seconds)``, with typed errors
    for an unsupported language or unusable audio; the resampling runs off the event loop."""
    code = check_language(language, engine=engine, english_only=english_only)
    audio, duration = await asyncio.to_thread(to_16k, samples, sample_rate, engine=engine, max_seconds=max_seconds)
    return code, audio, duration

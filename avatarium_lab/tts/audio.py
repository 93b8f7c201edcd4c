"""Audio utilities shared by voices, aligners and the pipeline: PCM16 conversion, resampling, loudness.

Resampling is soxr's (high quality, no hand-written filters); loudness is ITU-R BS.1770 integrated loudness
measured by pyloudnorm.
"""

from __future__ import annotations

import numpy as np

CALIBRATION_TEXT = (
    "The quick brown fox jumps over the lazy dog. Every morning, a gentle breeze carried the smell of the sea "
    "across the quiet harbour town."
)
"""Spoken once per voice to measure its loudness (long enough for the 400 ms gating blocks of BS.1770)."""


def pcm16_to_float(pcm: bytes) -> np.ndarray:
    return np.frombuffer(pcm, dtype="<i2").astype(np.float32) / 32768.0


def float_to_pcm16(samples: np.ndarray) -> bytes:
    return (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()


def wav_bytes(samples: np.ndarray, sample_rate: int) -> bytes:
    """A mono 16-bit WAV file of float samples, in memory (for audio players)."""
    import io
    import wave

    buf = io.BytesIO()
    with wave.open(buf, "wb") as wf:
        wf.setnchannels(1)
        wf.setsampwidth(2)
        wf.setframerate(sample_rate)
        wf.writeframes(float_to_pcm16(samples))
    return buf.getvalue()


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Float mono samples from ``rate_in`` to ``rate_out`` Hz (soxr, high quality)."""
    if rate_in == rate_out or samples.size == 0:
        return samples.astype(np.float32, copy=False)
    import soxr

    return soxr.resample(samples.astype(np.float32, copy=False), rate_in, rate_out, quality="HQ")


def resample_pcm16(pcm: bytes, rate_in: int, rate_out: int) -> bytes:
    return pcm if rate_in == rate_out else float_to_pcm16(resample(pcm16_to_float(pcm), rate_in, rate_out))


def integrated_loudness(samples: np.ndarray, sample_rate: int) -> float:
    """BS.1770 integrated loudness in LUFS (``-inf`` for silence)."""
    import pyloudnorm

    if samples.size < int(0.4 * sample_rate):
        samples = np.pad(samples, (0, int(0.4 * sample_rate) - samples.size))
    return float(pyloudnorm.Meter(sample_rate).integrated_loudness(samples.astype(np.float64)))


def apply_gain(pcm: bytes, gain_db: float) -> bytes:
    """PCM16 scaled by ``gain_db``; peaks that would clip are limited softly instead of wrapping or squaring off."""
    if gain_db == 0.0 or not pcm:
        return pcm
    x = pcm16_to_float(pcm) * (10.0 ** (gain_db / 20.0))
    over = np.abs(x) > 0.9
    if over.any():
        # Above 0.9 a tanh knee maps (0.9, inf) into (0.9, 1.0): a limiter, so loud voices do not crackle.
        x[over] = np.sign(x[over]) * (0.9 + 0.1 * np.tanh((np.abs(x[over]) - 0.9) / 0.1))
    return float_to_pcm16(x)

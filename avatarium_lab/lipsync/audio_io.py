"""Reading users' WAV files for lip sync: any rate, any channel count, integer PCM or float, as float32 mono.

Decoding is scipy's (``scipy.io.wavfile``): it reads RIFF, RIFX and RF64 files, ``WAVE_FORMAT_PCM`` at 8 (unsigned),
16, 24, 32 and 64 bits, ``WAVE_FORMAT_IEEE_FLOAT`` at 32 and 64 bits, and ``WAVE_FORMAT_EXTENSIBLE`` wrapping
either -- more than the stdlib ``wave`` module, which on Python 3.11 reads integer PCM only. This module adds
the parts a user-facing loader needs: the sample format turned into float32 in -1..1, channels averaged to mono,
and every way a file can be wrong (missing, empty, not a WAV, a broken header, A-law and other encodings scipy
does not decode) reported as a :class:`LipSyncError` whose message says what is wrong with which file.

A data chunk shorter than its header says (a recording cut off, or a WAV streamed through a pipe whose size
fields were never filled in) is read as far as it goes, with a logged warning: the audio that is there is fine.
"""

from __future__ import annotations

import io
import logging
import os
import warnings
from pathlib import Path

import numpy as np

from ..errors import LipSyncError
from ..tts.audio import resample

log = logging.getLogger(__name__)

MIN_SAMPLE_RATE = 1000
"""Lowest sample rate accepted: below 1 kHz a file cannot carry speech, so such a header is broken."""

SUPPORTED_FORMATS = ("integer PCM (8, 16, 24, 32, 64 bit)", "IEEE float (32, 64 bit)")

_RIFF_MAGIC = (b"RIFF", b"RIFX", b"RF64")


def _check_container(path: Path, data: bytes | None = None) -> None:
    """Fail early, with a clear message, on files that are missing, empty or not RIFF/WAVE at all."""
    if data is not None:
        head = data[:12]
        if not head:
            raise LipSyncError("audio is empty (0 bytes)")
        if head[:4] not in _RIFF_MAGIC:
            raise LipSyncError(f"not a WAV file (no RIFF header; starts with {head[:4]!r})")
        if len(head) < 12 or head[8:12] != b"WAVE":
            raise LipSyncError("not a WAV file: a truncated or non-WAVE RIFF header")
        return
    if not path.exists():
        raise LipSyncError(f"audio file not found: {path}")
    if path.is_dir():
        raise LipSyncError(f"audio path is a directory, not a WAV file: {path}")
    try:
        with path.open("rb") as fh:
            head = fh.read(12)
    except OSError as exc:
        raise LipSyncError(f"cannot read audio file {path}: {exc.strerror or exc}") from exc
    if not head:
        raise LipSyncError(f"audio file is empty (0 bytes): {path}")
    if head[:4] not in _RIFF_MAGIC:
        raise LipSyncError(f"not a WAV file (no RIFF header; starts with {head[:4]!r}): {path}")
    if len(head) < 12:
        raise LipSyncError(f"broken WAV file: the header is truncated after {len(head)} bytes: {path}")
    if head[8:12] != b"WAVE":
        raise LipSyncError(f"not a WAV file: a RIFF file of type {head[8:12].decode('latin-1')!r}: {path}")


def _to_float(data: np.ndarray, path: Path) -> np.ndarray:
    """Samples of any scipy WAV dtype as float32 in -1..1 (floats are kept as they are, apart from NaN/inf)."""
    if data.dtype == np.uint8:  # 8-bit WAV is unsigned, centred on 128
        return (data.astype(np.float32) - 128.0) / 128.0
    if np.issubdtype(data.dtype, np.signedinteger):
        # scipy returns 24-bit samples left-justified in int32, so one full-scale divisor per dtype fits all.
        return (data.astype(np.float64) / float(2 ** (8 * data.dtype.itemsize - 1))).astype(np.float32)
    if np.issubdtype(data.dtype, np.floating):
        out = data.astype(np.float32)
        bad = ~np.isfinite(out)
        if bad.any():
            log.warning("%s: %d NaN/infinite float samples replaced by silence", path, int(bad.sum()))
            out[bad] = 0.0
        return out
    raise LipSyncError(f"unsupported WAV sample type {data.dtype} in {path}; supported: {', '.join(SUPPORTED_FORMATS)}")


def load_wav(path: str | os.PathLike[str] | bytes | bytearray | memoryview) -> tuple[np.ndarray, int]:
    """``(samples, sample_rate)`` of a WAV file (a path, or the file's bytes): float32 mono (channels averaged),
    seconds = len / rate.

    Raises :class:`LipSyncError` for a missing, empty, non-WAV or broken file, an unsupported encoding
    (A-law, mu-law, ADPCM, ...), an implausible sample rate or a file without a single sample.
    """
    raw = bytes(path) if isinstance(path, bytes | bytearray | memoryview) else None
    path = Path("<audio bytes>") if raw is not None else Path(path)
    _check_container(path, raw)
    from scipy.io import wavfile

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", wavfile.WavFileWarning)
            sample_rate, data = wavfile.read(io.BytesIO(raw) if raw is not None else path, mmap=False)
    except ValueError as exc:
        message = str(exc)
        if "Unknown wave file format" in message or "Unsupported bit depth" in message:
            raise LipSyncError(f"unsupported WAV encoding in {path} ({message.split('. Supported')[0].rstrip('.')}); "
                               f"supported: {', '.join(SUPPORTED_FORMATS)}") from exc
        raise LipSyncError(f"broken WAV file {path}: {message}") from exc
    except Exception as exc:  # noqa: BLE001 - a malformed header makes scipy raise struct.error, ZeroDivisionError...
        raise LipSyncError(f"broken WAV file {path}: its header cannot be parsed ({type(exc).__name__}: {exc})") from exc
    for w in caught:
        text = str(w.message)
        if "EOF" in text or "prematurely" in text:
            log.warning("%s: data chunk is shorter than its header says; reading the %d frames present",
                        path, len(data))
        else:
            log.debug("%s: %s", path, text)
    if not isinstance(sample_rate, (int, np.integer)) or sample_rate < MIN_SAMPLE_RATE:
        raise LipSyncError(f"broken WAV file {path}: sample rate {sample_rate} Hz (at least {MIN_SAMPLE_RATE} Hz "
                           "expected)")
    if data.ndim == 2:
        if data.shape[1] == 0:
            raise LipSyncError(f"broken WAV file {path}: it has no channels")
    elif data.ndim != 1:
        raise LipSyncError(f"broken WAV file {path}: unexpected sample layout {data.shape}")
    if data.shape[0] == 0:
        raise LipSyncError(f"WAV file has no audio samples (only a header): {path}")
    samples = _to_float(data, path)
    if samples.ndim == 2:
        samples = samples.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(samples, dtype=np.float32), int(sample_rate)


def resample_for(samples: np.ndarray, sample_rate: int, target: int) -> np.ndarray:
    """``samples`` (float mono at ``sample_rate`` Hz) at ``target`` Hz, e.g. 16 kHz for pocketsphinx (soxr, HQ)."""
    if sample_rate <= 0 or target <= 0:
        raise LipSyncError(f"cannot resample from {sample_rate} Hz to {target} Hz")
    return resample(np.asarray(samples, dtype=np.float32), int(sample_rate), int(target))

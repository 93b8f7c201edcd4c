"""Reading users' WAV files: every sample format and channel count to float mono; broken files to LipSyncError."""

from __future__ import annotations

import struct
import wave
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from avatarium_lab.errors import LipSyncError
from avatarium_lab.lipsync.audio_io import load_wav

RATE = 16000
TONE = (0.5 * np.sin(2 * np.pi * 220 * np.arange(RATE // 2) / RATE)).astype(np.float32)


def write(path: Path, data: np.ndarray, rate: int = RATE) -> Path:
    wavfile.write(path, rate, data)
    return path


@pytest.mark.parametrize(
    ("dtype", "scale", "offset", "tolerance"),
    [
        (np.int16, 32767, 0, 1e-4),
        (np.int32, 2**31 - 1, 0, 1e-6),
        (np.uint8, 127, 128, 1e-2),
        (np.float32, 1.0, 0, 0.0),
        (np.float64, 1.0, 0, 1e-7),
    ],
)
def test_every_sample_format_reads_as_float_mono(tmp_path: Path, dtype, scale, offset, tolerance) -> None:
    data = (TONE.astype(np.float64) * scale + offset).round().astype(dtype) if scale != 1.0 else TONE.astype(dtype)
    samples, rate = load_wav(write(tmp_path / "a.wav", data))
    assert rate == RATE and samples.dtype == np.float32 and samples.ndim == 1
    np.testing.assert_allclose(samples, TONE, atol=tolerance + 1e-4)


def test_24_bit_pcm(tmp_path: Path) -> None:
    ints = (TONE.astype(np.float64) * (2**23 - 1)).round().astype(np.int32)
    raw = b"".join(struct.pack("<i", int(v))[:3] for v in ints)
    path = tmp_path / "a24.wav"
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(3)
        w.setframerate(RATE)
        w.writeframes(raw)
    samples, _ = load_wav(path)
    np.testing.assert_allclose(samples, TONE, atol=1e-5)


def test_stereo_is_averaged_to_mono(tmp_path: Path) -> None:
    stereo = np.stack([TONE, np.zeros_like(TONE)], axis=1)
    samples, _ = load_wav(write(tmp_path / "s.wav", stereo))
    np.testing.assert_allclose(samples, TONE / 2, atol=1e-7)


def test_nan_samples_become_silence(tmp_path: Path) -> None:
    data = TONE.copy()
    data[100:110] = np.nan
    samples, _ = load_wav(write(tmp_path / "n.wav", data))
    assert np.isfinite(samples).all() and (samples[100:110] == 0).all()


def test_a_truncated_data_chunk_reads_what_is_there(tmp_path: Path) -> None:
    path = write(tmp_path / "t.wav", (TONE * 32767).astype(np.int16))
    raw = path.read_bytes()
    path.write_bytes(raw[: len(raw) - 1000])
    samples, _ = load_wav(path)
    assert len(samples) == len(TONE) - 500


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "empty"),
        (b"ID3\x04\x00\x00\x00\x00\x00\x00 this is an mp3", "not a WAV"),
        (b"RIFF\x24\x00\x00\x00AVI LIST", "RIFF file of type"),
        (b"RIFF\x24\x00", "truncated"),
        (b"RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00", "broken WAV"),
    ],
)
def test_broken_files_give_a_typed_error(tmp_path: Path, content: bytes, message: str) -> None:
    path = tmp_path / "bad.wav"
    path.write_bytes(content)
    with pytest.raises(LipSyncError, match=message):
        load_wav(path)


def test_missing_file_and_directory(tmp_path: Path) -> None:
    with pytest.raises(LipSyncError, match="not found"):
        load_wav(tmp_path / "nope.wav")
    with pytest.raises(LipSyncError, match="directory"):
        load_wav(tmp_path)


def test_header_only_file(tmp_path: Path) -> None:
    with pytest.raises(LipSyncError, match="no audio samples"):
        load_wav(write(tmp_path / "h.wav", np.zeros(0, np.int16)))


def test_a_law_is_reported_as_unsupported(tmp_path: Path) -> None:
    fmt = struct.pack("<HHIIHH", 6, 1, 8000, 8000, 1, 8)  # WAVE_FORMAT_ALAW
    body = b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", 4) + b"\xd5" * 4
    path = tmp_path / "alaw.wav"
    path.write_bytes(b"RIFF" + struct.pack("<I", len(body)) + body)
    with pytest.raises(LipSyncError, match="unsupported WAV encoding"):
        load_wav(path)

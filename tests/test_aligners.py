"""Every aligner's output contract on real speech and on the WAV edge cases users bring.

The reference is espeak-ng's own phoneme timings for the same audio, so each aligner is also scored; the floors
here are far below the benchmark's numbers (``benchmarks/lipsync.py``) and only catch a broken aligner.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from scipy.io import wavfile

from avatarium_lab.errors import LipSyncError
from avatarium_lab.events import TimedPhoneme
from avatarium_lab.lipsync.aligners import Aligner, aligner_names, get_aligner
from avatarium_lab.lipsync.audio_io import load_wav
from avatarium_lab.lipsync.scoring import score
from avatarium_lab.lipsync.visemes import OCULUS_VISEMES, ipa_to_oculus
from avatarium_lab.tts import get_voice
from avatarium_lab.tts.audio import pcm16_to_float, resample

ALIGNERS = ["text-proportional", "pocketsphinx", "neural"]
TEXT = "Maybe we could bring a map, and walk by the old pier before lunch."
# Rhubarb-space frame accuracy each aligner must at least reach on clean espeak speech.
FLOORS = {"text-proportional": 0.35, "pocketsphinx": 0.65, "neural": 0.75}


@pytest.fixture(scope="module")
def speech() -> tuple[np.ndarray, int, tuple[TimedPhoneme, ...]]:
    chunk = get_voice("espeak:en-us").synthesize_sync(TEXT)
    return pcm16_to_float(chunk.pcm), chunk.sample_rate, chunk.phonemes


@pytest.fixture(scope="module", params=ALIGNERS)
def aligner(request: pytest.FixtureRequest) -> Aligner:
    return get_aligner(request.param)


def check_contract(phonemes: tuple[TimedPhoneme, ...], duration: float) -> None:
    assert isinstance(phonemes, tuple)
    last_end = 0.0
    for p in phonemes:
        assert isinstance(p, TimedPhoneme) and p.symbol
        assert 0.0 <= p.start < p.end <= duration + 1e-6, p
        assert p.start >= last_end - 1e-6, "phonemes overlap or go backwards"
        assert ipa_to_oculus(p.symbol) in OCULUS_VISEMES
        last_end = p.end


def test_all_aligners_are_registered() -> None:
    assert set(ALIGNERS) <= set(aligner_names())
    with pytest.raises(LipSyncError, match="unknown aligner"):
        get_aligner("nope")


def test_aligns_clean_speech(aligner: Aligner, speech) -> None:
    samples, rate, reference = speech
    duration = len(samples) / rate
    got = aligner.align(samples, rate, TEXT)
    check_contract(got, duration)
    s = score(reference, got, duration)
    assert s.frame_accuracy_rhubarb >= FLOORS[aligner.name], s
    assert isinstance(aligner, Aligner)


def test_silence_only_gives_no_phonemes(aligner: Aligner) -> None:
    assert aligner.align(np.zeros(16000, np.float32), 16000, "hello there") == ()


def test_empty_text_gives_no_phonemes(aligner: Aligner, speech) -> None:
    samples, rate, _ = speech
    assert aligner.align(samples, rate, "  ...  ") == ()


def test_clipped_speech(aligner: Aligner, speech) -> None:
    samples, rate, reference = speech
    clipped = np.clip(samples * 20, -1.0, 1.0)
    duration = len(samples) / rate
    got = aligner.align(clipped, rate, TEXT)
    check_contract(got, duration)
    assert score(reference, got, duration).frame_accuracy_rhubarb >= FLOORS[aligner.name] - 0.1


def test_8_khz_speech_keeps_its_timeline(aligner: Aligner, speech) -> None:
    samples, rate, reference = speech
    narrow = resample(samples, rate, 8000)
    duration = len(narrow) / 8000
    got = aligner.align(narrow, 8000, TEXT)
    check_contract(got, duration)
    assert score(reference, got, duration).frame_accuracy_rhubarb >= FLOORS[aligner.name] - 0.1


def test_a_0_2_second_file(aligner: Aligner) -> None:
    chunk = get_voice("espeak:en-us", rate=220).synthesize_sync("Hi.")
    samples = pcm16_to_float(chunk.pcm)[: int(0.2 * chunk.sample_rate)]
    samples = np.pad(samples, (0, int(0.2 * chunk.sample_rate) - len(samples)))
    got = aligner.align(samples, chunk.sample_rate, "Hi.")
    check_contract(got, 0.2)
    assert got, "a word that is there is aligned"


def test_a_60_second_file(aligner: Aligner) -> None:
    voice = get_voice("espeak:en-us")
    sentences = [TEXT, "The quick brown fox jumps over the lazy dog.", "Please remember to bring your umbrella."]
    pieces, reference, texts, offset = [], [], [], 0.0
    while offset < 60.0:
        text = sentences[len(texts) % len(sentences)]
        chunk = voice.synthesize_sync(text)
        pieces.append(pcm16_to_float(chunk.pcm))
        reference += [TimedPhoneme(p.symbol, p.start + offset, p.end + offset) for p in chunk.phonemes]
        texts.append(text)
        offset += chunk.duration
    samples = np.concatenate(pieces)[: 60 * chunk.sample_rate]
    reference = [p for p in reference if p.end <= 60.0]
    got = aligner.align(samples, chunk.sample_rate, " ".join(texts))
    check_contract(got, 60.0)
    assert got[-1].end > 55.0, "the alignment reaches the end of the file"
    # The words past 60 s are not in the audio; the rest must still line up.
    assert score(reference, [p for p in got if p.end <= 59.0], 59.0).frame_accuracy_rhubarb >= \
        FLOORS[aligner.name] - 0.15


# --- the CLI contract ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def stereo_8k_wav(tmp_path_factory: pytest.TempPathFactory, speech) -> Path:
    samples, rate, _ = speech
    narrow = resample(samples, rate, 8000)
    path = tmp_path_factory.mktemp("cli") / "stereo8k.wav"
    wavfile.write(path, 8000, (np.stack([narrow, narrow], axis=1) * 32767).astype(np.int16))
    return path


@pytest.mark.parametrize("name", ALIGNERS)
def test_cli_prints_the_documented_json(name: str, stereo_8k_wav: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "lipsync", str(stereo_8k_wav), "--text", TEXT,
                          "--aligner", name, "--json"], capture_output=True, text=True, timeout=120, check=True)
    result = json.loads(out.stdout)
    assert set(result) == {"phonemes", "visemes"}
    duration = len(load_wav(stereo_8k_wav)[0]) / 8000
    assert result["phonemes"] and result["visemes"]
    for p in result["phonemes"]:
        assert set(p) == {"symbol", "start", "end"} and isinstance(p["symbol"], str)
        assert 0 <= p["start"] < p["end"] <= duration + 1e-3
    for v in result["visemes"]:
        assert set(v) == {"viseme", "start", "end"} and v["viseme"] in OCULUS_VISEMES
        assert 0 <= v["start"] < v["end"] <= duration + 1e-3
    assert [v["start"] for v in result["visemes"]] == sorted(v["start"] for v in result["visemes"])
    assert "PP" in {v["viseme"] for v in result["visemes"]}  # "Maybe ... map ... by ... pier"


def test_cli_default_aligner_and_a_broken_file(tmp_path: Path, stereo_8k_wav: Path) -> None:
    out = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "lipsync", str(stereo_8k_wav), "--text", TEXT,
                          "--json"], capture_output=True, text=True, timeout=120, check=True)
    assert json.loads(out.stdout)["phonemes"]
    bad = tmp_path / "bad.wav"
    bad.write_bytes(b"RIFF\x00\x00")
    out = subprocess.run([sys.executable, "-m", "avatarium_lab.cli", "lipsync", str(bad), "--text", "hi", "--json"],
                         capture_output=True, text=True, timeout=60)
    assert out.returncode == 2 and out.stdout == ""
    assert "error [lipsync" in out.stderr and "bad.wav" in out.stderr

"""The `avatarium` command line, run as a user would run it."""

from __future__ import annotations

import json
import subprocess
import sys
import wave
from pathlib import Path

import pytest

pytestmark = pytest.mark.model


def avatarium(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "avatarium_lab.cli", *args], capture_output=True, text=True,
                          timeout=300)


def test_turn_json_emits_every_stage_with_timestamps(tmp_path: Path) -> None:
    wav = tmp_path / "reply.wav"
    done = avatarium("turn", "Tell me about the ocean", "--json", "--max-tokens", "40", "--save-wav", str(wav))
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    events, summary = lines[:-1], lines[-1]
    kinds = {e["type"] for e in events}
    assert {"turn_started", "text_delta", "sentence", "audio", "phonemes", "visemes", "turn_ended"} <= kinds
    assert all(isinstance(e["t"], float) for e in events)
    assert [e["seq"] for e in events] == list(range(len(events)))
    assert events[-1]["type"] == "turn_ended" and events[-1]["reason"] == "complete"
    audio = [e for e in events if e["type"] == "audio"]
    assert all(isinstance(a["pcm"], str) and a["duration"] > 0 for a in audio)  # base64 on the wire
    assert summary["type"] == "latency_breakdown" and summary["time_to_first_audio_ms"] > 0
    with wave.open(str(wav)) as wf:
        assert wf.getframerate() == 22050 and wf.getnframes() > 22050 * 0.5


def test_turn_text_output_and_typed_errors() -> None:
    done = avatarium("turn", "Hi!", "--max-tokens", "16", "--persona", "concise_concierge")
    assert done.returncode == 0, done.stderr
    assert "time_to_first_audio_ms" in done.stdout and "events:" in done.stdout
    bad = avatarium("turn", "   ")
    assert bad.returncode == 2 and "invalid_message" in bad.stderr
    bad = avatarium("turn", "Hi", "--persona", "nobody")
    assert bad.returncode == 2 and "unknown_persona" in bad.stderr and "warm_tutor" in bad.stderr
    bad = avatarium("turn", "Hi", "--voice", "espeak:xx-nonsense")
    assert bad.returncode == 2 and "unknown_voice" in bad.stderr


def test_personas_json() -> None:
    done = avatarium("personas", "--json")
    assert done.returncode == 0
    assert {p["id"] for p in json.loads(done.stdout)} >= {"warm_tutor", "concise_concierge", "playful_storyteller"}


@pytest.mark.parametrize("voice", ["espeak:en-gb+m3", "piper:en_US-joe-medium", "flite:slt",
                                   "festival:cmu_us_slt_arctic_hts"])
def test_turn_speaks_with_every_offline_voice(voice: str) -> None:
    done = avatarium("turn", "Hi there", "--voice", voice, "--max-tokens", "16", "--json", "--omit-audio")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()][:-1]
    audio = [e for e in events if e["type"] == "audio"]
    assert audio and {a["voice"] for a in audio} == {voice}
    assert {e["source"] for e in events if e["type"] == "phonemes"} == {"engine"}


def test_voices_json_lists_tiers_and_availability() -> None:
    done = avatarium("voices", "--json")
    assert done.returncode == 0
    voices = {v["id"]: v for v in json.loads(done.stdout)}
    assert {v["tier"] for v in voices.values()} == {"basic", "standard", "premium"}
    assert voices["espeak:en-us"]["available"] is True and voices["piper:en_US-joe-medium"]["available"] is True
    assert all({"id", "tier", "available"} <= set(v) for v in voices.values())

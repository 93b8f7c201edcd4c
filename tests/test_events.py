"""Events: wire encoding round trip, monotonic stamps, and the latency derivation."""

from __future__ import annotations

import json

import pytest

from avatarium_lab.errors import ProtocolError
from avatarium_lab.events import (
    EVENT_TYPES,
    Audio,
    Phonemes,
    Sentence,
    StageTiming,
    TextDelta,
    TimedPhoneme,
    TimedViseme,
    TurnEnded,
    TurnStarted,
    Visemes,
    event_from_dict,
    latency_breakdown,
)


def test_every_event_round_trips_through_json() -> None:
    samples = [
        TurnStarted(turn_id="t", text="hi", persona="p"),
        TextDelta(turn_id="t", text="Hel", provider="embedded"),
        Sentence(turn_id="t", index=0, text="Hello."),
        Audio(turn_id="t", segment=0, pcm=b"\x01\x00\xff\xff", sample_rate=22050, offset=0.5),
        Phonemes(turn_id="t", segment=0, items=(TimedPhoneme("h", 0.0, 0.1),)),
        Visemes(turn_id="t", segment=0, items=(TimedViseme("aa", 0.1, 0.2, 0.8),)),
        StageTiming(turn_id="t", stage="tts", start=1.0, end=1.5, segment=0),
        TurnEnded(turn_id="t", reason="complete", text="Hello."),
    ]
    for ev in samples:
        wire = json.loads(ev.to_json())
        assert wire["type"] == ev.type
        back = event_from_dict(wire)
        assert back == ev


def test_audio_bytes_travel_as_base64_and_duration_is_derived() -> None:
    ev = Audio(turn_id="t", segment=0, pcm=b"\x00\x00" * 22050, sample_rate=22050, offset=0.0)
    wire = ev.to_dict()
    assert isinstance(wire["pcm"], str) and wire["duration"] == pytest.approx(1.0)
    assert "pcm" not in repr(ev)  # reprs stay short


def test_unknown_or_malformed_events_are_protocol_errors() -> None:
    with pytest.raises(ProtocolError, match="unknown event type"):
        event_from_dict({"type": "nope"})
    with pytest.raises(ProtocolError, match="malformed sentence"):
        event_from_dict({"type": "sentence", "turn_id": "t"})


def test_timestamps_are_monotonic_in_creation_order() -> None:
    evs = [TextDelta(turn_id="t", text=str(i)) for i in range(50)]
    assert all(a.t <= b.t for a, b in zip(evs, evs[1:]))


def test_latency_breakdown_is_derived_from_event_times() -> None:
    t0 = 100.0
    evs = [
        TurnStarted(turn_id="t", text="hi", persona="p", t=t0),
        TextDelta(turn_id="t", text="Hello", t=t0 + 0.020),
        TextDelta(turn_id="t", text=" there.", t=t0 + 0.050),
        TextDelta(turn_id="t", text=" More", t=t0 + 0.070),
        Sentence(turn_id="t", index=0, text="Hello there.", t=t0 + 0.071),
        Audio(turn_id="t", segment=0, pcm=b"\0\0", sample_rate=22050, offset=0.0, t=t0 + 0.080),
        StageTiming(turn_id="t", stage="tts", start=t0 + 0.072, end=t0 + 0.079, segment=0, t=t0 + 0.081),
        Visemes(turn_id="t", segment=0, items=(), t=t0 + 0.082),
        StageTiming(turn_id="t", stage="llm", start=t0, end=t0 + 0.2, t=t0 + 0.2),
        TurnEnded(turn_id="t", t=t0 + 0.3),
    ]
    b = latency_breakdown(evs)
    assert b.time_to_first_token == pytest.approx(0.020)
    assert b.time_to_first_sentence == pytest.approx(0.071)
    assert b.time_to_first_audio == pytest.approx(0.080)
    assert b.time_to_first_viseme == pytest.approx(0.082)
    assert b.total == pytest.approx(0.3)
    assert b.busy == pytest.approx({"tts": 0.007, "llm": 0.2})
    # compute on the path to first audio: the model until the delta that let the splitter cut (70 ms), plus
    # 7 ms of voice; the rest (3 ms) is the pipeline's own
    assert b.first_segment_compute == pytest.approx(0.077)
    assert b.pipeline_overhead == pytest.approx(0.003)
    assert b.as_ms()["time_to_first_audio_ms"] == pytest.approx(80.0)


def test_latency_breakdown_needs_the_start() -> None:
    with pytest.raises(ValueError):
        latency_breakdown([TextDelta(turn_id="t", text="x")])


def test_event_type_names_are_unique() -> None:
    assert len(EVENT_TYPES) == 14

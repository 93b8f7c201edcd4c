"""The pipeline end to end with the real embedded model and the real espeak-ng voice."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from avatarium_lab.config import Config
from avatarium_lab.errors import InvalidMessage, ModelNotFound, UnknownPersona, UnknownVoice, VoiceError
from avatarium_lab.events import Audio, Error, Phonemes, Sentence, TextDelta, TurnEnded, TurnStarted, Visemes
from avatarium_lab.lipsync.visemes import OCULUS_VISEMES
from avatarium_lab.pipeline import Conversation, Pipeline
from avatarium_lab.tts import SpeechChunk

pytestmark = pytest.mark.model


def test_a_turn_streams_every_stage(pipeline: Pipeline) -> None:
    turn = pipeline.run("Tell me about the ocean.", conversation=None)
    kinds = [e.type for e in turn]
    assert kinds[0] == "turn_started" and kinds[-1] == "turn_ended", kinds
    assert turn.ended is not None and turn.ended.reason == "complete", turn.error
    for needed in ("text_delta", "sentence", "audio", "phonemes", "visemes", "usage", "stage_timing"):
        assert needed in kinds, needed
    assert [e.seq for e in turn] == list(range(len(turn)))
    assert turn.text and turn.ended.text == turn.text

    # every spoken sentence came from the reply, in order, and got its own audio segment
    sentences = turn.of(Sentence)
    assert [s.index for s in sentences] == list(range(len(sentences)))
    assert {a.segment for a in turn.of(Audio)} == {s.index for s in sentences}

    # audio segments are back to back on the turn's timeline; timings lie inside their own audio
    audio = turn.of(Audio)
    for a, b in zip(audio, audio[1:]):
        assert b.offset == pytest.approx(a.offset + a.duration)
    by_segment = {a.segment: a for a in audio}
    for ev in turn.of(Phonemes) + turn.of(Visemes):
        seg = by_segment[ev.segment]
        for item in ev.items:
            assert seg.offset - 1e-6 <= item.start < item.end <= seg.offset + seg.duration + 1e-6
    assert all(v.viseme in OCULUS_VISEMES for v in turn.visemes)
    assert len(turn.audio) / turn.sample_rate == pytest.approx(sum(a.duration for a in audio))

    # speech started before the model finished writing (streaming, not batch)
    last_delta = turn.of(TextDelta)[-1].t
    if len(sentences) > 1:
        assert audio[0].t < last_delta

    lat = turn.latency
    assert 0 < lat.time_to_first_token <= lat.time_to_first_sentence <= lat.time_to_first_audio
    assert lat.time_to_first_audio <= lat.time_to_first_viseme <= lat.total
    assert set(lat.busy) >= {"llm", "tts", "lipsync"}
    assert lat.pipeline_overhead is not None and lat.pipeline_overhead >= -0.001


def test_the_persona_shapes_the_reply() -> None:
    cfg = Config.default().with_overrides(**{"provider.max_tokens": 40, "provider.temperature": 0.0, "provider.n_threads": 1})
    question = "What should I do this evening?"
    replies = {}
    for persona in ("warm_tutor", "concise_concierge", "playful_storyteller"):
        p = Pipeline(cfg.with_overrides(persona=persona))
        replies[persona] = p.run(question, conversation=None).text
        p.close()
    assert len(set(replies.values())) == 3, replies


def test_context_carries_across_turns(pipeline: Pipeline) -> None:
    conv = Conversation()
    first = asyncio.run(pipeline.arun("My name is Zorblat.", conversation=conv))
    assert [m["role"] for m in conv.messages] == ["user", "assistant"]
    assert conv.messages[1]["content"] == first.text
    messages = pipeline.build_messages("What is my name?", conv)
    assert messages[0]["role"] == "system" and messages[1]["content"] == "My name is Zorblat."


def test_bad_messages_are_rejected_before_any_event(pipeline: Pipeline) -> None:
    for bad in ("", "   \n", "x" * 5000):
        with pytest.raises(InvalidMessage):
            pipeline.run(bad)


def test_closing_the_stream_cancels_the_turn(pipeline: Pipeline) -> None:
    async def first_audio_then_stop() -> list:
        seen = []
        agen = pipeline.turn("Tell me a long story about a dragon and a castle.")
        async for ev in agen:
            seen.append(ev)
            if isinstance(ev, Audio):
                break
        await agen.aclose()
        return seen

    seen = asyncio.run(first_audio_then_stop())
    assert isinstance(seen[-1], Audio)
    # the model's worker is free again at once: the next turn completes normally
    again = pipeline.run("Hi!", conversation=None)
    assert again.ended.reason == "complete"


def test_typed_errors_for_bad_configuration(tmp_path: Path) -> None:
    with pytest.raises(UnknownPersona):
        Pipeline(Config(persona="nobody"))
    with pytest.raises(UnknownVoice):
        Pipeline(Config().with_overrides(**{"voice.id": "espeak:xx-nonsense"}))
    with pytest.raises(ModelNotFound, match="not found"):
        Pipeline(Config().with_overrides(**{"provider.model_path": str(tmp_path / "missing.gguf")}))
    fake = tmp_path / "fake.gguf"
    fake.write_bytes(b"not a model")
    with pytest.raises(ModelNotFound, match="not a GGUF"):
        Pipeline(Config().with_overrides(**{"provider.model_path": str(fake)}))


class BrokenVoice:
    """A voice that always fails, to check that a failing stage ends the turn cleanly."""

    id = "test:broken"
    sample_rate = 22050
    has_timings = False

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        raise VoiceError("synthetic voice failure")
        yield  # pragma: no cover - makes this an async generator


def test_a_failing_stage_ends_the_turn_with_a_typed_error(pipeline: Pipeline) -> None:
    p = Pipeline(pipeline.config, provider=pipeline.provider, voice=BrokenVoice())
    turn = p.run("Tell me about whales.", conversation=None)
    assert isinstance(turn.events[0], TurnStarted)
    err = turn.error
    assert isinstance(err, Error) and err.code == "voice_error" and "synthetic" in err.message
    assert isinstance(turn.events[-1], TurnEnded) and turn.events[-1].reason == "error"
    assert sum(isinstance(e, TurnEnded) for e in turn) == 1
    p.close()


def test_a_turn_seed_overrides_the_configured_one() -> None:
    from avatarium_lab.testing import FakeBehaviour, FakeServer
    from avatarium_lab.testing.fake_openai import make_openai_app

    behaviour = FakeBehaviour(api_key="sk-seed-0123456789abcdefghij")
    with FakeServer(make_openai_app(behaviour)) as server, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AVATARIUM_TEST_SEED_KEY", behaviour.api_key)
        config = Config.default().with_overrides(**{
            "provider": {"kind": "custom", "model": "m", "base_url": server.url + "/v1",
                         "api_key_env": "AVATARIUM_TEST_SEED_KEY", "seed": 7}})
        p = Pipeline(config)
        try:
            asyncio.run(p.arun("Hello there.", seed=1234))
            asyncio.run(p.arun("Hello there."))
        finally:
            p.close()
    assert [r["body"].get("seed") for r in behaviour.requests] == [1234, 7]

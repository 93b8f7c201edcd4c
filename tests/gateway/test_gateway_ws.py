"""End to end over a real WebSocket on 127.0.0.1: a full turn, barge-in, reconnect and resume, expiry, limits."""

from __future__ import annotations

import base64
import contextlib
import io
import json
import os
import time

import numpy as np
import pytest
from gateway_helpers import frames_until, turn_frames
from websockets.exceptions import ConnectionClosed


def test_a_full_turn_streams_every_kind_of_event_and_is_saved(gateway) -> None:
    conv = gateway.create_conversation()
    with gateway.connect(conv) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello == {"type": "hello", "protocol": 1, "conversation_id": conv, "config": "default",
                         "resumed": False, "messages": 0}
        frames = turn_frames(ws, "Tell me about the sea")
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "ack" and frames[0]["seq"] >= 0
    for kind in ("turn_started", "text_delta", "sentence", "audio", "visemes", "emotion", "gesture", "usage",
                 "turn_ended", "latency_breakdown"):
        assert kind in kinds, (kind, kinds)
    audio = next(f for f in frames if f["type"] == "audio")
    assert len(base64.b64decode(audio["pcm"])) > 0 and audio["sample_rate"] == 16000
    ended = next(f for f in frames if f["type"] == "turn_ended")
    assert ended["reason"] == "complete" and "ocean is deep" in ended["text"]
    stats = frames[-1]
    assert stats["gateway_overhead_ms"] >= 0 and stats["time_to_first_audio_ms"] is not None

    with gateway.http() as c:
        t = c.get(f"/v1/conversations/{conv}/transcript", headers=gateway.auth()).json()
        assert [m["role"] for m in t["messages"]] == ["user", "assistant"]
        assert t["messages"][0]["content"] == "Tell me about the sea"
        events = c.get(f"/v1/conversations/{conv}/events", headers=gateway.auth()).json()
        types = {e["type"] for e in events}
        assert {"turn_started", "usage", "turn_ended", "latency_breakdown"} <= types
        assert not any("pcm" in e for e in events)  # analytics, not the audio
        only = c.get(f"/v1/conversations/{conv}/events?types=usage", headers=gateway.auth()).json()
        assert only and {e["type"] for e in only} == {"usage"}


@pytest.mark.skipif(not os.environ.get("AVATARIUM_TEST_POSTGRES_URL"),
                    reason="set AVATARIUM_TEST_POSTGRES_URL (.ci/run starts a PostgreSQL) to run on PostgreSQL")
def test_a_turn_and_isolation_on_postgresql(make) -> None:
    gw = make(db_url=os.environ["AVATARIUM_TEST_POSTGRES_URL"])
    assert gw.store.dialect == "postgresql"
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        assert turn_frames(ws, "Hello from PostgreSQL")[-1]["type"] == "latency_breakdown"
    with gw.http() as c:
        assert len(c.get(f"/v1/conversations/{conv}/transcript", headers=gw.auth()).json()["messages"]) == 2
        assert c.get(f"/v1/conversations/{conv}", headers=gw.auth("b")).status_code == 404


def test_barge_in_cancel_frame_and_new_message_stop_the_turn_within_a_chunk(make) -> None:
    gw = make(chunk_delay=0.08, script=" ".join(["The sea is wide and the waves are tall."] * 12))
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "message", "text": "Talk for a while"}))
        frames_until(ws, lambda f: f["type"] == "text_delta")
        ws.send(json.dumps({"type": "cancel"}))
        t0 = time.monotonic()
        after = frames_until(ws, lambda f: f["type"] == "turn_ended" and f.get("reason") == "cancelled")
        assert time.monotonic() - t0 < 0.5
        assert sum(f["type"] == "text_delta" for f in after) <= 2  # at most the chunk already on its way
        # a new message while a turn runs replaces it
        ws.send(json.dumps({"type": "message", "text": "First question"}))
        frames_until(ws, lambda f: f["type"] == "text_delta")
        ws.send(json.dumps({"type": "message", "text": "Never mind, second question"}))
        frames = frames_until(ws, lambda f: f["type"] == "turn_ended" and f.get("reason") == "cancelled")
        assert frames[-1]["reason"] == "cancelled"
        ack = frames_until(ws, lambda f: f["type"] == "ack")
        assert ack[-1]["seq"] > 0
    with gw.http() as c:
        messages = c.get(f"/v1/conversations/{conv}/transcript", headers=gw.auth()).json()["messages"]
    users = [m["content"] for m in messages if m["role"] == "user"]
    assert users == ["Talk for a while", "First question", "Never mind, second question"]
    # the interrupted replies are kept as far as they were spoken
    assert sum(m["role"] == "assistant" for m in messages) >= 1


def test_reconnect_resumes_the_conversation_with_its_context(gateway) -> None:
    conv = gateway.create_conversation()
    with gateway.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        turn_frames(ws, "My name is Ada")
    with gateway.connect(conv) as ws:
        hello = json.loads(ws.recv(timeout=10))
        assert hello["resumed"] is True and hello["messages"] == 2
        turn_frames(ws, "What is my name?")
    last = gateway.provider.requests[-1]["messages"]
    texts = [m["content"] for m in last]
    assert "My name is Ada" in texts and any("ocean is deep" in t for t in texts)  # earlier turn in context


def test_an_idle_conversation_expires_with_a_clear_error(make) -> None:
    gw = make(idle_timeout=60)
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        turn_frames(ws, "Hello")
        gw.clock.advance(61)
        ws.send(json.dumps({"type": "message", "text": "Still there?"}))
        err = frames_until(ws, lambda f: f["type"] == "error")[-1]
        assert err["code"] == "conversation_expired"
    with gw.connect(conv) as ws:
        err = json.loads(ws.recv(timeout=10))
        assert err["type"] == "error" and err["code"] == "conversation_expired"
        with pytest.raises(ConnectionClosed) as closed:
            ws.recv(timeout=5)
        assert closed.value.rcvd.code == 4410
    with gw.http() as c:
        rec = c.get(f"/v1/conversations/{conv}", headers=gw.auth()).json()
        assert rec["status"] == "expired"
        # retention "keep": the transcript is still readable
        assert len(c.get(f"/v1/conversations/{conv}/transcript", headers=gw.auth()).json()["messages"]) == 2


def test_malformed_and_oversized_frames_get_error_frames_and_the_socket_survives(make) -> None:
    gw = make(limits={"max_message_chars": 200, "max_frame_bytes": 4096})
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        cases = [
            ("not json at all", "invalid_frame"),
            (json.dumps({"type": "dance"}), "invalid_frame"),
            (json.dumps({"type": "message"}), "invalid_frame"),
            (json.dumps({"type": "message", "text": "hi", "extra": 1}), "invalid_frame"),
            (json.dumps({"type": "message", "text": "x" * 300}), "invalid_message"),
            (json.dumps({"type": "message", "text": "y" * 5000}), "frame_too_large"),
            (json.dumps({"type": "audio", "wav_b64": "!!!not base64!!!"}), "invalid_message"),
            (json.dumps({"type": "audio", "wav_b64": base64.b64encode(b"RIFF0000WAVEjunk").decode()}),
             "invalid_audio"),
        ]
        for raw, code in cases:
            ws.send(raw)
            err = frames_until(ws, lambda f: f["type"] == "error")[-1]
            assert err["code"] == code, (raw[:40], err)
        ws.send(b"\x00\x01binary")
        assert frames_until(ws, lambda f: f["type"] == "error")[-1]["code"] == "invalid_frame"
        ws.send(json.dumps({"type": "ping"}))
        assert frames_until(ws, lambda f: f["type"] == "pong")
        assert turn_frames(ws, "Still fine?")[-1]["type"] == "latency_breakdown"


def test_rate_limit_per_key_with_retry_after(make) -> None:
    gw = make(limits={"messages_per_minute": 3})
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        for i in range(3):
            assert turn_frames(ws, f"message {i}")[-1]["type"] == "latency_breakdown"
        ws.send(json.dumps({"type": "message", "text": "one too many"}))
        err = frames_until(ws, lambda f: f["type"] == "error")[-1]
        assert err["code"] == "rate_limited" and 0 < err["retry_after"] <= 60
    with gw.http() as c:
        r = c.post(f"/v1/conversations/{conv}/messages", json={"text": "over HTTP"}, headers=gw.auth())
        assert r.status_code == 429 and 1 <= int(r.headers["retry-after"]) <= 60
        assert r.json()["error"]["code"] == "rate_limited"
        # another tenant's key has its own window
        other = c.post("/v1/conversations", json={}, headers=gw.auth("b")).json()["id"]
        assert c.post(f"/v1/conversations/{other}/messages", json={"text": "hi"},
                      headers=gw.auth("b")).status_code == 200


def test_concurrent_conversations_per_tenant_are_limited(make) -> None:
    gw = make(limits={"max_conversations": 2})
    convs = [gw.create_conversation() for _ in range(3)]
    with contextlib.ExitStack() as stack:
        first, second = stack.enter_context(gw.connect(convs[0])), stack.enter_context(gw.connect(convs[1]))
        for ws in (first, second):
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
        with gw.connect(convs[2]) as third:
            err = json.loads(third.recv(timeout=10))
            assert err["code"] == "too_many_conversations"
            with pytest.raises(ConnectionClosed) as closed:
                third.recv(timeout=5)
            assert closed.value.rcvd.code == 4429
        # tenant B is not affected by A's sockets
        other = gw.create_conversation("b")
        with gw.connect(other, who="b") as ws:
            assert json.loads(ws.recv(timeout=10))["type"] == "hello"
    time.sleep(0.3)
    with gw.connect(convs[2]) as ws:  # a slot is free again
        assert json.loads(ws.recv(timeout=10))["type"] == "hello"


def _wav(samples: np.ndarray, rate: int) -> bytes:
    from scipy.io import wavfile

    buf = io.BytesIO()
    wavfile.write(buf, rate, (np.clip(samples, -1, 1) * 32767).astype(np.int16))
    return buf.getvalue()


def test_speech_input_is_transcribed_then_answered(gateway) -> None:
    from avatarium_lab.tts import get_voice
    from avatarium_lab.tts.audio import pcm16_to_float

    voice = get_voice("espeak:en-us", rate=150)

    async def speak() -> tuple[np.ndarray, int]:
        chunks = [c async for c in voice.synthesize("Hello, how are you today?")]
        return pcm16_to_float(b"".join(c.pcm for c in chunks)), chunks[0].sample_rate

    import asyncio

    samples, rate = asyncio.run(speak())
    conv = gateway.create_conversation()
    with gateway.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        ws.send(json.dumps({"type": "audio", "wav_b64": base64.b64encode(_wav(samples, rate)).decode(), "id": "m1"}))
        frames = frames_until(ws, lambda f: f["type"] in ("latency_breakdown", "error"), timeout=60)
    transcript = next(f for f in frames if f["type"] == "transcript")
    assert transcript["text"].strip() and transcript["audio_seconds"] > 0.5
    ack = next(f for f in frames if f["type"] == "ack")
    assert ack["id"] == "m1"
    assert frames[-1]["type"] == "latency_breakdown"
    with gateway.http() as c:
        messages = c.get(f"/v1/conversations/{conv}/transcript", headers=gateway.auth()).json()["messages"]
    assert messages[0]["content"] == transcript["text"].strip()


def test_audio_longer_than_the_limit_is_refused(make) -> None:
    gw = make(limits={"max_audio_seconds": 1.0})
    conv = gw.create_conversation()
    with gw.connect(conv) as ws:
        json.loads(ws.recv(timeout=10))
        wav = _wav(np.zeros(16000 * 2, dtype=np.float32), 16000)
        ws.send(json.dumps({"type": "audio", "wav_b64": base64.b64encode(wav).decode()}))
        err = frames_until(ws, lambda f: f["type"] == "error")[-1]
        assert err["code"] == "audio_too_long"

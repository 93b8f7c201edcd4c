"""Tests of the Premium cloud voices (OpenAI, ElevenLabs, Gemini) through their official SDKs, unpatched, against
the loopback fakes of ``avatarium_lab.testing.fake_tts``: streaming, timings, faults, keys, early close."""

from __future__ import annotations

import asyncio
import difflib
import logging
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from avatarium_lab.errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from avatarium_lab.events import TimedPhoneme
from avatarium_lab.lipsync.phonemize import strip_marks
from avatarium_lab.providers import ProviderTimeouts
from avatarium_lab.secrets import Secret
from avatarium_lab.testing.fake_tts import (
    ELEVENLABS_PCM_RATES,
    espeak_take,
    make_elevenlabs_app,
    make_gemini_tts_app,
    make_openai_tts_app,
    speech_pcm,
)
from avatarium_lab.testing.fake_vendors import FakeBehaviour, FakeServer, Fault, closed_port_url
from avatarium_lab.tts import SpeechChunk, Voice, get_voice
from avatarium_lab.tts.elevenlabs_tts import CharacterTimeline, ElevenLabsVoice, spread
from avatarium_lab.tts.gemini_tts import GeminiVoice, pcm_rate
from avatarium_lab.tts.openai_tts import OpenAIVoice, PcmRechunker

log = logging.getLogger(__name__)

TEXT = "Whales sing to each other across hundreds of miles of dark water."
SHORT = "Hello there, how are you today?"
STALL_TIMEOUTS = ProviderTimeouts(connect=2.0, first_token=0.3, idle=0.3)
WRONG_KEY = "wrong-key-9876543210fedcba"
VOICE_NAMES = {"openai": "alloy", "elevenlabs": "21m00Tcm4TlvDq8ikWAM", "gemini": "Kore"}
DEFAULT_MODELS = {"openai": "gpt-4o-mini-tts", "elevenlabs": "eleven_flash_v2_5",
                  "gemini": "gemini-2.5-flash-preview-tts"}
RATES = {"openai": 24_000, "elevenlabs": 22_050, "gemini": 24_000}
VENDORS = ("openai", "elevenlabs", "gemini")


@dataclass
class Vendor:
    """One fake vendor server and how to point its voice at it."""

    engine: str
    behaviour: FakeBehaviour
    server: FakeServer

    @property
    def app(self) -> Any:
        return self.server.app

    @property
    def base_url(self) -> str:
        return self.server.url + "/v1" if self.engine == "openai" else self.server.url

    @property
    def rate(self) -> int:
        return RATES[self.engine]

    def voice(self, *, key: str | None = "", timeouts: ProviderTimeouts = ProviderTimeouts(),
              model: str | None = None, base_url: str | None = None) -> Voice:
        secret = None if key is None else Secret(key or self.behaviour.api_key)
        return get_voice(f"{self.engine}:{VOICE_NAMES[self.engine]}", key=secret, model=model,
                         base_url=base_url or self.base_url, timeouts=timeouts)

    def expected_pcm(self, text: str) -> bytes:
        return speech_pcm(text, self.rate)


@pytest.fixture(scope="module")
def servers() -> Iterator[dict[str, Vendor]]:
    makers: dict[str, Callable[[FakeBehaviour], Any]] = {
        "openai": make_openai_tts_app, "elevenlabs": make_elevenlabs_app, "gemini": make_gemini_tts_app}
    started: dict[str, Vendor] = {}
    try:
        for engine, make in makers.items():
            behaviour = FakeBehaviour(model=DEFAULT_MODELS[engine])
            started[engine] = Vendor(engine, behaviour, FakeServer(make(behaviour)).start())
        yield started
    finally:
        for vendor in started.values():
            vendor.server.stop()


@pytest.fixture(params=VENDORS)
def vendor(request: pytest.FixtureRequest, servers: dict[str, Vendor]) -> Vendor:
    v = servers[request.param]
    v.behaviour.faults.clear()
    v.behaviour.requests.clear()
    v.behaviour.ttft = 0.0
    v.behaviour.chunk_interval = 0.0
    return v


@pytest.fixture
def eleven(servers: dict[str, Vendor]) -> Vendor:
    v = servers["elevenlabs"]
    v.behaviour.faults.clear()
    v.behaviour.requests.clear()
    v.behaviour.ttft = 0.0
    v.behaviour.chunk_interval = 0.0
    return v


async def collect(voice: Voice, text: str = TEXT) -> list[tuple[float, SpeechChunk]]:
    """Every chunk with its arrival time (seconds since the call)."""
    t0 = time.perf_counter()
    out = []
    async for chunk in voice.synthesize(text):
        out.append((time.perf_counter() - t0, chunk))
    return out


async def collect_until_error(voice: Voice, text: str = TEXT) -> tuple[list[SpeechChunk], ProviderError]:
    chunks: list[SpeechChunk] = []
    with pytest.raises(ProviderError) as info:
        async for chunk in voice.synthesize(text):
            chunks.append(chunk)
    return chunks, info.value


async def closing(voice: Voice) -> None:
    await voice.aclose()  # type: ignore[attr-defined]


async def wait_until(predicate: Callable[[], bool], within: float = 5.0, step: float = 0.02) -> bool:
    """Poll ``predicate`` (state of the fake server's thread) until it holds or ``within`` seconds pass."""
    deadline = time.monotonic() + within
    for _ in range(int(within / step) + 1):
        if predicate() or time.monotonic() > deadline:
            break
        await asyncio.sleep(step)
    return predicate()


def assert_clean(exc: BaseException, *secrets: str) -> None:
    """The error's message, str, repr and full traceback never show a key."""
    rendered = [str(exc), repr(exc), getattr(exc, "message", ""), "".join(traceback.format_exception(exc))]
    for secret in secrets:
        for text in rendered:
            assert secret not in text


def absolute(chunks: list[SpeechChunk]) -> list[TimedPhoneme]:
    out: list[TimedPhoneme] = []
    offset = 0.0
    for chunk in chunks:
        out.extend(TimedPhoneme(p.symbol, p.start + offset, p.end + offset) for p in chunk.phonemes or ())
        offset += chunk.duration
    return out


# -- streaming ----------------------------------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_audio_streams_in_chunks_that_add_up_to_the_fakes_audio(vendor: Vendor) -> None:
    vendor.behaviour.chunk_interval = 0.02
    voice = vendor.voice()
    try:
        arrivals = await collect(voice, SHORT)
    finally:
        await closing(voice)
    chunks = [c for _, c in arrivals]
    assert len(chunks) >= 3
    first, last = arrivals[0][0], arrivals[-1][0]
    assert first < last - 0.05, (first, last)  # audio arrives while the server is still sending
    assert b"".join(c.pcm for c in chunks) == vendor.expected_pcm(SHORT)  # every byte, in order, none lost
    assert all(c.pcm and len(c.pcm) % 2 == 0 and c.sample_rate == vendor.rate for c in chunks)
    assert voice.sample_rate == vendor.rate and voice.id == f"{vendor.engine}:{VOICE_NAMES[vendor.engine]}"
    if vendor.engine == "elevenlabs":
        assert voice.has_timings and all(c.phonemes is not None for c in chunks)
    else:
        assert not voice.has_timings and all(c.phonemes is None for c in chunks)
    if vendor.engine == "openai":  # re-cut from odd-sized network reads into 50-100 ms pieces
        assert all(0.05 - 1e-9 <= c.duration <= 0.1 + 1e-9 for c in chunks[:-1])
    assert vendor.behaviour.requests[-1]["outcome"] == "completed"
    log.info("%s: first chunk after %.1f ms, last after %.1f ms, %d chunks", vendor.engine, first * 1000,
             last * 1000, len(chunks))


@pytest.mark.asyncio
async def test_first_chunk_arrives_long_before_the_stream_ends(vendor: Vendor) -> None:
    vendor.behaviour.ttft = 0.05
    vendor.behaviour.chunk_interval = 0.03
    voice = vendor.voice()
    try:
        await collect(voice, SHORT)  # warm: connection, espeak, phonemizer, the fake's cache
        arrivals = await collect(voice, SHORT)
    finally:
        await closing(voice)
    first, last = arrivals[0][0], arrivals[-1][0]
    assert first < 0.05 + 0.25  # the fake's ttft plus little
    assert first < last / 2
    log.info("%s: time to first audio %.1f ms (fake ttft 50 ms)", vendor.engine, first * 1000)


@pytest.mark.asyncio
async def test_requests_use_each_vendors_wire_format(vendor: Vendor) -> None:
    voice = vendor.voice()
    try:
        await collect(voice, SHORT)
    finally:
        await closing(voice)
    [request] = vendor.behaviour.requests
    body = request["body"]
    if vendor.engine == "openai":
        assert request["path"] == "/v1/audio/speech"
        assert body == {"model": "gpt-4o-mini-tts", "voice": "alloy", "input": SHORT, "response_format": "pcm"}
    elif vendor.engine == "elevenlabs":
        assert request["path"] == f"/v1/text-to-speech/{VOICE_NAMES['elevenlabs']}/stream/with-timestamps"
        assert body["text"] == SHORT and body["model_id"] == "eleven_flash_v2_5"
        assert "xi-api-key" not in {k.lower() for k in request["headers"]}
    else:
        assert request["path"] == "/v1beta/models/gemini-2.5-flash-preview-tts:streamGenerateContent"
        config = body["generationConfig"]
        assert config["responseModalities"] == ["AUDIO"]
        # google-genai 3.6 writes speechConfig's fields in proto (snake_case) spelling, which Google accepts
        speech = config["speechConfig"]
        voice = speech.get("voiceConfig") or speech["voice_config"]
        prebuilt = voice.get("prebuiltVoiceConfig") or voice["prebuilt_voice_config"]
        assert (prebuilt.get("voiceName") or prebuilt["voice_name"]) == "Kore"
        assert body["contents"][-1]["parts"] == [{"text": SHORT}]
    assert vendor.behaviour.api_key not in repr(request)


@pytest.mark.asyncio
async def test_elevenlabs_asks_for_pcm_22050(eleven: Vendor) -> None:
    voice = eleven.voice()
    try:
        await collect(voice, SHORT)
    finally:
        await closing(voice)
    assert ELEVENLABS_PCM_RATES["pcm_22050"] == voice.sample_rate
    # the query string is not in the record's path; the fake answers 400 to any other format, so a served
    # request proves it, and the audio matches the 22,050 Hz speech byte for byte
    assert eleven.behaviour.requests[-1]["outcome"] == "completed"


@pytest.mark.asyncio
async def test_empty_text_makes_no_request(vendor: Vendor) -> None:
    voice = vendor.voice()
    try:
        assert await collect(voice, "   ") == []
    finally:
        await closing(voice)
    assert vendor.behaviour.requests == []


# -- ElevenLabs timings -------------------------------------------------------------------------------------------

@pytest.mark.asyncio
@pytest.mark.parametrize("text", [TEXT, "Hello there! It's 42 degrees, a well-known fact."])
async def test_elevenlabs_timings_are_monotonic_inside_each_chunk_and_where_espeak_put_them(
        eleven: Vendor, text: str) -> None:
    voice = eleven.voice()
    try:
        chunks = [c for _, c in await collect(voice, text)]
    finally:
        await closing(voice)
    assert len(chunks) >= 3
    for chunk in chunks:
        assert chunk.phonemes is not None
        last_end = 0.0
        for p in chunk.phonemes:
            assert 0.0 <= p.start < p.end <= chunk.duration + 1e-9, (p, chunk.duration)
            assert p.start >= last_end - 1e-9  # monotonic, no overlaps
            last_end = p.end
    ours = absolute(chunks)
    starts = [p.start for p in ours]
    assert starts == sorted(starts)
    # The fake's character timings come from espeak's own phoneme events for the audio it sent: the voice's
    # phonemes (spread over each word) must land near espeak's.
    _, reference = espeak_take(text)
    matcher = difflib.SequenceMatcher(None, [strip_marks(p.symbol) for p in ours],
                                      [strip_marks(p.symbol) for p in reference], autojunk=False)
    errors = [abs(ours[b.a + k].start - reference[b.b + k].start)
              for b in matcher.get_matching_blocks() for k in range(b.size)]
    assert len(errors) >= 0.8 * len(reference)
    assert sum(errors) / len(errors) < 0.04 and max(errors) < 0.12
    agree = 0
    for ref in reference:
        mid = (ref.start + ref.end) / 2
        hit = next((p for p in ours if p.start <= mid < p.end), None)
        agree += hit is not None and strip_marks(hit.symbol) == strip_marks(ref.symbol)
    assert agree / len(reference) >= 0.7  # the same sound at the middle of espeak's phoneme


@pytest.mark.asyncio
async def test_elevenlabs_chunks_wait_only_for_the_words_they_contain(eleven: Vendor) -> None:
    # Audio is held back until its words are complete, then released: the first chunk comes with the first
    # object's audio up to the first unfinished word, long before the stream ends.
    eleven.behaviour.chunk_interval = 0.05
    voice = eleven.voice()
    try:
        arrivals = await collect(voice, TEXT)
    finally:
        await closing(voice)
    first_t, first = arrivals[0]
    assert first.duration > 0.05 and first.phonemes
    assert first_t < 0.3 < arrivals[-1][0]


def test_character_timeline_spreads_words_and_clips_at_chunk_edges() -> None:
    tl = CharacterTimeline()
    text = "go now"
    starts = [0.10, 0.20, 0.30, 0.40, 0.55, 0.70]
    ends = [0.20, 0.30, 0.40, 0.55, 0.70, 0.90]
    tl.add(list(text[:4]), starts[:4], ends[:4], audio_offset=0.0)  # "go " complete, "n" unfinished
    assert tl.horizon == pytest.approx(0.40)
    first = tl.take(0.0, 0.25)
    assert [p.symbol for p in first] == ["ɡ", "oʊ"] and first[0].start == pytest.approx(0.10)
    assert first[-1].end == pytest.approx(0.25)  # "oʊ" straddles 0.25: clipped here ...
    tl.add(list(text[4:]), starts[4:], ends[4:], audio_offset=0.6)
    tl.finish()
    second = tl.take(0.25, 1.0)
    assert second[0].symbol == "oʊ" and second[0].start == 0.0  # ... and continued in the next chunk
    assert [p.symbol for p in second[1:]] == ["n", "aʊ"]
    assert second[1].start == pytest.approx(0.40 - 0.25) and second[-1].end == pytest.approx(0.90 - 0.25)
    assert tl.text == text


def test_character_timeline_tolerates_times_restarting_per_chunk() -> None:
    tl = CharacterTimeline()
    tl.add(list("hi "), [0.0, 0.1, 0.2], [0.1, 0.2, 0.3], audio_offset=0.0)
    tl.add(list("you"), [0.0, 0.1, 0.2], [0.1, 0.2, 0.3], audio_offset=0.3)  # restarted at 0: shifted by 0.3
    tl.finish()
    phonemes = tl.take(0.0, 1.0)
    assert phonemes[-1].end == pytest.approx(0.6)
    assert [p.start for p in phonemes] == sorted(p.start for p in phonemes)


def test_spread_gives_vowels_longer_shares() -> None:
    out = spread(["k", "æ", "t"], 0.0, 0.36)
    assert [p.symbol for p in out] == ["k", "æ", "t"]
    assert out[0].start == 0.0 and out[-1].end == 0.36
    assert out[1].end - out[1].start > out[0].end - out[0].start


def test_pcm_rechunker_never_splits_a_sample() -> None:
    chunker = PcmRechunker(24_000)
    fed = bytes(range(256)) * 40
    out: list[bytes] = []
    for i in range(0, len(fed), 777):  # odd-sized reads
        out.extend(chunker.feed(fed[i:i + 777]))
    out.append(chunker.flush())
    assert b"".join(out) == fed and all(len(c) % 2 == 0 for c in out) and chunker.leftover == 0
    chunker.feed(b"\x01\x02\x03")
    assert chunker.flush() == b"\x01\x02" and chunker.leftover == 1


def test_pcm_rate_reads_geminis_mime_type() -> None:
    assert pcm_rate("audio/L16;codec=pcm;rate=24000") == 24_000
    assert pcm_rate("audio/L16; codec=pcm; rate=16000") == 16_000
    assert pcm_rate("audio/mpeg") is None


# -- faults -------------------------------------------------------------------------------------------------------

STATUS_FAULTS = [(500, ProviderUnavailable), (503, ProviderUnavailable), (400, ProviderBadRequest),
                 (404, ProviderBadRequest), (422, ProviderBadRequest), (401, ProviderAuthError),
                 (403, ProviderAuthError)]


@pytest.mark.asyncio
@pytest.mark.parametrize(("status", "expected"), STATUS_FAULTS)
async def test_status_fault(vendor: Vendor, status: int, expected: type[ProviderError]) -> None:
    vendor.behaviour.faults.append(Fault("status", status=status))
    voice = vendor.voice()
    try:
        chunks, exc = await collect_until_error(voice)
    finally:
        await closing(voice)
    assert type(exc) is expected, exc
    assert chunks == []
    assert exc.status == status and exc.provider == voice.id and voice.id in exc.message
    assert exc.retryable == (status >= 500)
    assert_clean(exc, vendor.behaviour.api_key)


@pytest.mark.asyncio
@pytest.mark.parametrize("delay", [2.0, 0.25])
async def test_rate_limit_carries_retry_after(vendor: Vendor, delay: float) -> None:
    vendor.behaviour.faults.append(Fault("rate_limit", retry_after=delay))
    voice = vendor.voice()
    try:
        _, exc = await collect_until_error(voice)
    finally:
        await closing(voice)
    assert isinstance(exc, RateLimited) and exc.status == 429 and exc.retryable
    assert exc.retry_after == pytest.approx(delay)
    assert_clean(exc, vendor.behaviour.api_key)


@pytest.mark.asyncio
async def test_rate_limit_without_a_delay(vendor: Vendor) -> None:
    vendor.behaviour.faults.append(Fault("rate_limit", retry_after=None))
    voice = vendor.voice()
    try:
        _, exc = await collect_until_error(voice)
    finally:
        await closing(voice)
    assert isinstance(exc, RateLimited)
    if vendor.engine != "openai":  # OpenAI's message also names the rate-limit window; the others say nothing
        assert exc.retry_after is None


# engine(s), kind, after_chunks, expected error
STREAM_FAULTS = [
    (VENDORS, "stall_before_first", 0, ProviderTimeout),
    (VENDORS, "stall_mid", 0, ProviderTimeout),
    (VENDORS, "stall_mid", 3, ProviderTimeout),
    (VENDORS, "truncate", 0, MalformedStream),
    (VENDORS, "truncate", 3, MalformedStream),
    (("elevenlabs", "gemini"), "invalid_json", 0, MalformedStream),
    (("elevenlabs", "gemini"), "invalid_json", 3, MalformedStream),
    (("elevenlabs",), "no_terminal", 3, MalformedStream),  # a clean end, but the alignment stops short
    (("gemini",), "no_terminal", 0, MalformedStream),  # every chunk, no finishReason
    (("gemini",), "in_stream_error", 0, ProviderUnavailable),
    (("gemini",), "in_stream_error", 3, ProviderUnavailable),
]


@pytest.mark.asyncio
@pytest.mark.parametrize(("engines", "kind", "after", "expected"), STREAM_FAULTS)
async def test_stream_fault(servers: dict[str, Vendor], engines: tuple[str, ...], kind: str, after: int,
                            expected: type[ProviderError]) -> None:
    for engine in engines:
        vendor = servers[engine]
        vendor.behaviour.faults.clear()
        vendor.behaviour.requests.clear()
        vendor.behaviour.ttft = vendor.behaviour.chunk_interval = 0.0
        vendor.behaviour.faults.append(Fault(kind, after_chunks=after, stall=2.0))  # type: ignore[arg-type]
        voice = vendor.voice(timeouts=STALL_TIMEOUTS)
        started = time.monotonic()
        try:
            chunks, exc = await collect_until_error(voice)
        finally:
            await closing(voice)
        elapsed = time.monotonic() - started
        assert type(exc) is expected, (engine, exc)
        assert exc.provider == voice.id and voice.id in exc.message and exc.retryable
        # what arrived before the fault is the start of the real audio, sample-aligned
        got = b"".join(c.pcm for c in chunks)
        assert vendor.expected_pcm(TEXT).startswith(got) and len(got) % 2 == 0
        if expected is ProviderTimeout:
            assert 0.25 <= elapsed < 1.5, (engine, elapsed)  # the 0.3 s read timeout, not the fake's 2 s stall
        assert_clean(exc, vendor.behaviour.api_key)


@pytest.mark.asyncio
@pytest.mark.parametrize("kind", ["invalid_json", "no_terminal", "in_stream_error"])
async def test_openai_raw_pcm_has_no_place_for_json_faults(servers: dict[str, Vendor], kind: str) -> None:
    vendor = servers["openai"]
    vendor.behaviour.faults.clear()
    vendor.behaviour.requests.clear()
    vendor.behaviour.faults.append(Fault(kind))  # type: ignore[arg-type]
    voice = vendor.voice()
    try:
        chunks = [c for _, c in await collect(voice, SHORT)]
    finally:
        await closing(voice)
    assert b"".join(c.pcm for c in chunks) == vendor.expected_pcm(SHORT)
    assert vendor.behaviour.requests[-1]["outcome"] == f"ignored:{kind}"


@pytest.mark.asyncio
async def test_a_fault_is_used_once_and_the_sdk_does_not_retry(vendor: Vendor) -> None:
    vendor.behaviour.faults.append(Fault("status", status=503))
    voice = vendor.voice()
    try:
        await collect_until_error(voice, SHORT)
        chunks = [c for _, c in await collect(voice, SHORT)]
    finally:
        await closing(voice)
    assert b"".join(c.pcm for c in chunks) == vendor.expected_pcm(SHORT)
    assert len(vendor.behaviour.requests) == 2


@pytest.mark.asyncio
async def test_refused_connection_is_unavailable(vendor: Vendor) -> None:
    url = closed_port_url() + ("/v1" if vendor.engine == "openai" else "")
    voice = vendor.voice(base_url=url)
    try:
        _, exc = await collect_until_error(voice)
    finally:
        await closing(voice)
    assert type(exc) is ProviderUnavailable and exc.retryable, exc
    assert_clean(exc, vendor.behaviour.api_key)


@pytest.mark.asyncio
async def test_unknown_model_is_a_bad_request(vendor: Vendor) -> None:
    voice = vendor.voice(model="no-such-model")
    try:
        _, exc = await collect_until_error(voice)
    finally:
        await closing(voice)
    assert type(exc) is ProviderBadRequest and not exc.retryable
    assert exc.status in (400, 404)


# -- keys ---------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("engine", VENDORS)
def test_missing_key_fails_before_any_request(servers: dict[str, Vendor], engine: str) -> None:
    vendor = servers[engine]
    vendor.behaviour.requests.clear()
    with pytest.raises(ProviderAuthError) as info:
        vendor.voice(key=None)
    assert vendor.behaviour.requests == []
    assert not info.value.retryable
    assert {"openai": "OPENAI_API_KEY", "elevenlabs": "ELEVENLABS_API_KEY",
            "gemini": "GEMINI_API_KEY"}[engine] in info.value.message


@pytest.mark.parametrize("cls", [OpenAIVoice, ElevenLabsVoice, GeminiVoice])
def test_a_plain_string_key_is_refused(cls: type) -> None:
    with pytest.raises(TypeError):
        cls("x", key="test-key-0123456789abcdef")


@pytest.mark.asyncio
async def test_wrong_key_is_an_auth_error_and_no_key_shows_anywhere(vendor: Vendor,
                                                                    caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    good = vendor.voice()
    bad = vendor.voice(key=WRONG_KEY)
    try:
        await collect(good, SHORT)
        _, exc = await collect_until_error(bad, SHORT)
    finally:
        await closing(good)
        await closing(bad)
    assert type(exc) is ProviderAuthError and not exc.retryable
    assert exc.status == (400 if vendor.engine == "gemini" else 401)  # Google: 400 API_KEY_INVALID
    for secret in (WRONG_KEY, vendor.behaviour.api_key):
        assert_clean(exc, secret)
        assert secret not in repr(good) and secret not in str(good) and secret not in repr(bad)
        assert secret not in caplog.text
        assert all(secret not in repr(r) for r in vendor.behaviour.requests)


# -- early close, cancellation, event loops -------------------------------------------------------------------------

@pytest.mark.asyncio
async def test_closing_the_generator_early_releases_the_server_stream(vendor: Vendor) -> None:
    vendor.behaviour.chunk_interval = 0.05
    voice = vendor.voice()
    try:
        stream: AsyncIterator[SpeechChunk] = voice.synthesize(TEXT)
        first = await anext(stream)
        assert first.pcm
        assert vendor.app.state.open_streams == 1
        await stream.aclose()  # type: ignore[attr-defined]  # barge-in
        assert await wait_until(lambda: vendor.app.state.open_streams == 0)
        assert vendor.behaviour.requests[-1]["outcome"] == "disconnected"
        # the voice still works afterwards
        vendor.behaviour.chunk_interval = 0.0
        chunks = [c for _, c in await collect(voice, SHORT)]
        assert b"".join(c.pcm for c in chunks) == vendor.expected_pcm(SHORT)
    finally:
        await closing(voice)


@pytest.mark.asyncio
async def test_cancelling_the_consumer_releases_the_server_stream(vendor: Vendor) -> None:
    vendor.behaviour.chunk_interval = 0.05
    voice = vendor.voice()
    got: list[SpeechChunk] = []

    async def consume() -> None:
        async for chunk in voice.synthesize(TEXT):
            got.append(chunk)

    try:
        task = asyncio.create_task(consume())
        assert await wait_until(lambda: len(got) >= 1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        assert await wait_until(lambda: vendor.app.state.open_streams == 0)
        assert vendor.behaviour.requests[-1]["outcome"] == "disconnected"
    finally:
        await closing(voice)


def test_one_voice_serves_successive_event_loops(servers: dict[str, Vendor]) -> None:
    # Pooled connections belong to one loop: reused from a second asyncio.run they fail unless each loop gets
    # its own client.
    for vendor in servers.values():
        vendor.behaviour.faults.clear()
        vendor.behaviour.chunk_interval = 0.0
        voice = vendor.voice()
        for _ in range(2):
            chunks = asyncio.run(collect(voice, SHORT))
            assert b"".join(c.pcm for _, c in chunks) == vendor.expected_pcm(SHORT)
        asyncio.run(closing(voice))


def test_engines_are_registered_with_the_catalogs_ids(servers: dict[str, Vendor]) -> None:
    for vendor in servers.values():
        voice = vendor.voice()
        assert isinstance(voice, Voice)
        assert voice.id == f"{vendor.engine}:{VOICE_NAMES[vendor.engine]}"
        asyncio.run(closing(voice))


@pytest.mark.asyncio
async def test_gemini_fake_also_answers_generate_content_whole(servers: dict[str, Vendor]) -> None:
    # The non-streaming route (what a client that cannot stream audio would use) returns the same speech at once.
    from google import genai
    from google.genai import types

    vendor = servers["gemini"]
    vendor.behaviour.faults.clear()
    client = genai.Client(api_key=vendor.behaviour.api_key, http_options=types.HttpOptions(
        base_url=vendor.server.url, api_version="v1beta", retry_options=types.HttpRetryOptions(attempts=1)))
    try:
        reply = await client.aio.models.generate_content(
            model=DEFAULT_MODELS["gemini"], contents=SHORT, config=types.GenerateContentConfig(
                response_modalities=["AUDIO"], speech_config=types.SpeechConfig(voice_config=types.VoiceConfig(
                    prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name="Puck")))))
    finally:
        await client.aio.aclose()
    [part] = reply.candidates[0].content.parts  # type: ignore[index,union-attr]
    assert part.inline_data is not None and pcm_rate(part.inline_data.mime_type) == 24_000
    assert part.inline_data.data == vendor.expected_pcm(SHORT)
    assert reply.usage_metadata is not None and reply.usage_metadata.candidates_token_count

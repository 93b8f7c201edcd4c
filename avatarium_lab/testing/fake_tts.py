"""Loopback fakes of three cloud text-to-speech APIs (OpenAI, ElevenLabs, Gemini), speaking their real wire formats.

Each ``make_*_app(behaviour)`` returns a Starlette app to run with ``FakeServer``; the official SDKs talk to it
unpatched by base URL. The audio is real speech: the request's text spoken by the project's espeak voice
(``tts.espeak.EspeakVoice``, 22,050 Hz) and resampled with ``soxr`` to the rate the format promises, so lip-sync
aligners find voiced spans where the words are. It is deterministic (same text, same bytes) and cached per text.

- ``make_openai_tts_app``: ``POST /v1/audio/speech`` (Bearer key, OpenAI's error bodies) streaming raw 24 kHz
  PCM16 in pieces of ``chunk_bytes`` (odd by default, as network reads are: clients must keep samples whole).
- ``make_elevenlabs_app``: ``POST /v1/text-to-speech/{voice_id}/stream/with-timestamps`` (``xi-api-key``,
  ``{"detail": {"status", "message"}}`` errors) streaming newline-delimited JSON objects, each with
  ``audio_base64`` and ``alignment`` of the characters that start in its audio. The character times are real:
  espeak's phoneme events grouped into the text's words (see :func:`espeak_character_timings`).
- ``make_gemini_tts_app``: ``POST /{v1,v1beta}/models/{model}:streamGenerateContent?alt=sse`` (and
  ``:generateContent``) answering with ``inlineData`` parts ``audio/L16;codec=pcm;rate=24000`` and Google's error
  bodies (a wrong key is 400 ``API_KEY_INVALID``).

Pacing: ``behaviour.ttft`` before the first chunk, ``behaviour.chunk_interval`` between chunks. Faults
(``behaviour.faults``, one per request): ``status``, ``rate_limit``, ``stall_before_first``, ``stall_mid``,
``truncate`` everywhere; ``invalid_json`` for the JSON-framed ones (ElevenLabs, Gemini); ``no_terminal``: for
Gemini the last chunk lacks its ``finishReason``, and for ElevenLabs, whose body has no end marker, the body ends
cleanly after ``after_chunks`` chunks; ``in_stream_error``: Gemini's error object inside the SSE stream. A fault
a format cannot express (``invalid_json``, ``no_terminal``, ``in_stream_error`` on raw PCM; ``in_stream_error``
for ElevenLabs) is ignored: the request is served normally and its record says ``"ignored:<kind>"``.

Each request's record (``behaviour.requests[i]``, key headers removed) gains ``"outcome"``: ``"completed"``,
``"disconnected"`` (the client went away first), ``"fault:<kind>"`` or ``"ignored:<kind>"``. ``app.state.open_streams``
counts bodies still being served (what tests of an early close poll for); ``app.state.timings`` keeps, per text,
the character timings the ElevenLabs fake sent.
"""

from __future__ import annotations

import asyncio
import base64
import difflib
import json
import logging
import math
import re
from collections.abc import AsyncIterator, Collection
from functools import lru_cache
from typing import Any

import numpy as np
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from ..events import TimedPhoneme
from ..lipsync.phonemize import phonemize, strip_marks
from .fake_google import API_VERSIONS, error_body, invalid_key_body, rate_limit_body
from .fake_openai import _error, _request_id, _status_error, check_key, fault_response
from .fake_vendors import FakeBehaviour, Fault, InjectedTruncation

log = logging.getLogger(__name__)

ESPEAK_RATE = 22_050
OPENAI_RATE = 24_000
GEMINI_RATE = 24_000
GEMINI_MIME = f"audio/L16;codec=pcm;rate={GEMINI_RATE}"
OPENAI_VOICES = frozenset({"alloy", "ash", "ballad", "coral", "echo", "fable", "onyx", "nova", "sage", "shimmer",
                           "verse", "marin", "cedar"})
GEMINI_VOICES = frozenset({
    "Zephyr", "Puck", "Charon", "Kore", "Fenrir", "Leda", "Orus", "Aoede", "Callirrhoe", "Autonoe", "Enceladus",
    "Iapetus", "Umbriel", "Algieba", "Despina", "Erinome", "Algenib", "Rasalgethi", "Laomedeia", "Achernar",
    "Alnilam", "Schedar", "Gacrux", "Pulcherrima", "Achird", "Zubenelgenubi", "Vindemiatrix", "Sadachbia",
    "Sadaltager", "Sulafat",
})
ELEVENLABS_PCM_RATES = {"pcm_16000": 16_000, "pcm_22050": 22_050, "pcm_24000": 24_000, "pcm_44100": 44_100}
_MID_STREAM = ("stall_mid", "truncate", "invalid_json", "in_stream_error", "no_terminal")
_WORD = re.compile(r"[^\W_]+(?:['’][^\W_]+)*")
_HIDDEN_HEADERS = {"xi-api-key"}  # FakeBehaviour.record hides the other vendors' key headers itself


# -- the speech every fake speaks -------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def _espeak() -> Any:
    from ..tts.espeak import EspeakVoice

    return EspeakVoice("en-us")


@lru_cache(maxsize=64)
def espeak_take(text: str) -> tuple[bytes, tuple[TimedPhoneme, ...]]:
    """``text`` spoken by espeak-ng (22,050 Hz PCM16) and its exact phoneme timings."""
    chunk = _espeak().synthesize_sync(text)
    return chunk.pcm, tuple(chunk.phonemes or ())


@lru_cache(maxsize=64)
def speech_pcm(text: str, rate: int) -> bytes:
    """The fakes' speech for ``text`` at ``rate`` Hz (PCM16 little-endian mono), resampled with soxr."""
    pcm, _ = espeak_take(text)
    if rate == ESPEAK_RATE or not pcm:
        return pcm
    import soxr

    samples = np.frombuffer(pcm, dtype="<i2")
    return np.asarray(soxr.resample(samples, ESPEAK_RATE, rate), dtype="<i2").tobytes()


def _word_labels(voice: list[str], words: list[list[str]]) -> list[int]:
    """For each of espeak's phonemes (``voice``), the index of the text word it belongs to.

    ``words`` is ``phonemize``'s phonemes of each text word (the same espeak-ng underneath, so the sequences agree
    but for stress marks, a few merges and out-of-context forms); they are matched with difflib. A run of
    unmatched phonemes goes to the words between its neighbours that got none (a weak "a" spoken ``ɐ`` but
    phonemized alone as ``eɪ``), else to the word before it.
    """
    flat = [strip_marks(p) for w in words for p in w]
    owner = [i for i, w in enumerate(words) for _ in w]
    labels: list[int | None] = [None] * len(voice)
    matcher = difflib.SequenceMatcher(None, [strip_marks(p) for p in voice], flat, autojunk=False)
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            labels[block.a + k] = owner[block.b + k]
    out: list[int] = []
    i = 0
    while i < len(labels):
        label = labels[i]
        if label is not None:
            out.append(label)
            i += 1
            continue
        j = i
        while j < len(labels) and labels[j] is None:
            j += 1
        before = out[-1] if out else -1
        after = next((x for x in labels[j:j + 1] if x is not None), len(words))
        missing = list(range(before + 1, after))
        for k in range(j - i):
            if missing:
                out.append(missing[k * len(missing) // (j - i)])
            else:
                out.append(before if before >= 0 else min(after, len(words) - 1))
        i = j
    return out


@lru_cache(maxsize=64)
def espeak_character_timings(text: str) -> tuple[tuple[str, float, float], ...]:
    """Per character of ``text``: (character, start, end) seconds on the espeak audio of ``text``.

    Real timings, as ElevenLabs reports them: each word's span runs from its first to its last phoneme in
    espeak's own events and its characters share that span equally; spaces and punctuation fill the gaps
    between words (the pauses).
    """
    pcm, phonemes = espeak_take(text)
    duration = len(pcm) / 2 / ESPEAK_RATE
    spans = [(m.start(), m.end()) for m in _WORD.finditer(text)]
    # Word by word: phonemizing the whole text gives one list per *spoken* word, and numbers, abbreviations and
    # hyphens make those differ from the written words in ways a count cannot catch. Out of context a few
    # sounds differ (a weak "the"), which the sequence matching absorbs.
    per_word = [[p for w in phonemize(text[a:b]) for p in w] for a, b in spans]
    word_time: list[tuple[float, float] | None] = [None] * len(spans)
    if phonemes and spans:
        labels = _word_labels([p.symbol for p in phonemes], per_word)
        for p, w in zip(phonemes, labels):
            current = word_time[w]
            word_time[w] = (p.start, p.end) if current is None else (min(current[0], p.start),
                                                                    max(current[1], p.end))
    out: list[tuple[str, float, float]] = []
    cursor = 0  # next character to time
    t = 0.0
    for (a, b), span in zip(spans, word_time):
        start, end = span if span is not None else (t, t)
        start, end = max(start, t), max(end, start, t)
        out.extend(_share(text[cursor:a], t, start))  # the gap before the word
        out.extend(_share(text[a:b], start, end))
        cursor, t = b, end
    out.extend(_share(text[cursor:], t, max(t, duration)))
    return tuple(out)


def _share(chars: str, start: float, end: float) -> list[tuple[str, float, float]]:
    n = len(chars)
    return [(ch, start + (end - start) * i / n, start + (end - start) * (i + 1) / n) for i, ch in enumerate(chars)]


def _pieces(pcm: bytes, size: int) -> list[bytes]:
    return [pcm[i:i + size] for i in range(0, len(pcm), size)] or [b""]


# -- shared streaming plumbing -----------------------------------------------------------------------------------

def _tracked(app: Starlette, record: dict[str, Any], body: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
    """``body`` counted in ``app.state.open_streams`` and its end written into ``record["outcome"]``."""

    async def run() -> AsyncIterator[bytes]:
        app.state.open_streams += 1
        try:
            async for data in body:
                yield data
            if not record.get("outcome"):
                record["outcome"] = "completed"
        except (asyncio.CancelledError, GeneratorExit):
            # Starlette cancels the body when the client disconnects (ASGI http.disconnect)
            record["outcome"] = "disconnected"
            raise
        finally:
            app.state.open_streams -= 1

    return run()


async def _paced(behaviour: FakeBehaviour, record: dict[str, Any], fault: Fault | None, chunks: list[bytes],
                 *, invalid: bytes | None = None, error_event: bytes | None = None) -> AsyncIterator[bytes]:
    """``chunks`` with the behaviour's pacing and ``fault`` applied (a mid-stream fault strikes before chunk
    ``fault.after_chunks``, or after the last one when that is past the end)."""
    kind = fault.kind if fault else None
    if kind == "stall_before_first":
        record["outcome"] = "fault:stall_before_first"
        await asyncio.sleep(fault.stall)  # type: ignore[union-attr]
        record["outcome"] = None  # the client waited it out: the stream goes on
    if behaviour.ttft:
        await asyncio.sleep(behaviour.ttft)
    strike = min(max(fault.after_chunks, 0), len(chunks)) if fault and kind in _MID_STREAM else -1
    for i in range(len(chunks) + 1):
        if i == strike:
            record["outcome"] = f"fault:{kind}"
            if kind == "stall_mid":
                await asyncio.sleep(fault.stall)  # type: ignore[union-attr]
                record["outcome"] = None
            elif kind == "truncate":
                raise InjectedTruncation(f"fake TTS: dropping the connection after {i} chunks on purpose")
            elif kind == "invalid_json" and invalid is not None:
                yield invalid
                return
            elif kind == "in_stream_error" and error_event is not None:
                yield error_event
                return
            elif kind == "no_terminal":
                return
        if i == len(chunks):
            break
        if i and behaviour.chunk_interval:
            await asyncio.sleep(behaviour.chunk_interval)
        yield chunks[i]


def _record(behaviour: FakeBehaviour, request: Request, body: Any) -> dict[str, Any]:
    headers = {k: v for k, v in request.headers.items() if k.lower() not in _HIDDEN_HEADERS}
    behaviour.record(request.url.path, body, headers)
    # record() appended this request's dict just now, with no await in between: it is ours
    return behaviour.requests[-1]


def _ignore(record: dict[str, Any], fault: Fault | None, applicable: Collection[str]) -> Fault | None:
    if fault is not None and fault.kind not in applicable:
        log.info("fault %r does not exist in this wire format: serving the request normally", fault.kind)
        record["outcome"] = f"ignored:{fault.kind}"
        return None
    return fault


# -- OpenAI: POST /v1/audio/speech ---------------------------------------------------------------------------------

def make_openai_tts_app(behaviour: FakeBehaviour, *, chunk_bytes: int = 2401) -> Starlette:
    """The fake OpenAI speech endpoint: raw 24 kHz PCM16 (``response_format="pcm"``) in ``chunk_bytes`` pieces."""

    async def speech(request: Request) -> Response:
        token, refused = check_key(request, behaviour)
        if refused is not None:
            return refused
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            return _error(400, {"message": "We could not parse the JSON body of your request.",
                                "type": "invalid_request_error", "param": None, "code": None})
        record = _record(behaviour, request, body)
        if not isinstance(body, dict) or not body.get("model") or not isinstance(body.get("input"), str):
            return _error(400, {"message": "you must provide a model parameter and an input string",
                                "type": "invalid_request_error", "param": None, "code": None})
        model = str(body["model"])
        if behaviour.model and model != behaviour.model:
            return _status_error(404, model)
        if body.get("voice") not in OPENAI_VOICES:
            supported = ", ".join(f"'{v}'" for v in sorted(OPENAI_VOICES))
            return _error(400, {"message": f"Invalid value: '{body.get('voice')}'. Supported values are: "
                                f"{supported}.", "type": "invalid_request_error", "param": "voice",
                                "code": "invalid_value"})
        if not body["input"].strip() or len(body["input"]) > 4096:
            return _error(400, {"message": "input must be between 1 and 4096 characters",
                                "type": "invalid_request_error", "param": "input", "code": None})
        if body.get("response_format") != "pcm":
            return _error(400, {"message": "This fake serves only response_format='pcm'.",
                                "type": "invalid_request_error", "param": "response_format", "code": None})
        fault = behaviour.next_fault()
        refused = fault_response(fault, record, token, model)
        if refused is not None:
            return refused
        fault = _ignore(record, fault, ("stall_before_first", "stall_mid", "truncate"))
        pcm = await asyncio.to_thread(speech_pcm, body["input"], OPENAI_RATE)
        stream = _paced(behaviour, record, fault, _pieces(pcm, max(1, chunk_bytes)))
        return StreamingResponse(_tracked(app, record, stream), media_type="audio/pcm",
                                 headers={"x-request-id": _request_id(), "openai-processing-ms": "1"})

    app = Starlette(routes=[Route("/v1/audio/speech", speech, methods=["POST"])])
    app.state.open_streams = 0
    return app


# -- ElevenLabs: POST /v1/text-to-speech/{voice_id}/stream/with-timestamps -----------------------------------------

def _eleven_error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse({"detail": {"status": code, "message": message}}, status_code=status, headers=headers)


_ELEVEN_STATUS: dict[int, tuple[str, str]] = {
    400: ("invalid_request", "The request was invalid."),
    401: ("invalid_api_key", "Invalid API key"),
    403: ("missing_permissions", "The API key you used is missing the permission text_to_speech to execute this "
                                 "operation."),
    404: ("voice_not_found", "A voice with the voice_id {voice} was not found."),
    500: ("internal_server_error", "An internal server error occurred. Please try again later."),
    503: ("system_busy", "Our services are experiencing high levels of traffic and your request could not be "
                         "processed. Please try again later."),
}


def make_elevenlabs_app(behaviour: FakeBehaviour, *, chunk_seconds: float = 0.2,
                        voices: Collection[str] | None = None) -> Starlette:
    """The fake ElevenLabs streaming-with-timestamps endpoint; ``voices`` limits the voice ids it knows."""

    async def stream_with_timestamps(request: Request) -> Response:
        voice = request.path_params["voice_id"]
        key = request.headers.get("xi-api-key", "")
        if not key:
            return _eleven_error(401, "needs_authorization",
                                 "Neither authorization header nor xi-api-key received, please provide one.")
        if behaviour.api_key and key != behaviour.api_key:
            return _eleven_error(401, "invalid_api_key", "Invalid API key")
        try:
            body = await request.json()
        except (json.JSONDecodeError, UnicodeDecodeError):
            body = None
        record = _record(behaviour, request, body)
        if not isinstance(body, dict) or not isinstance(body.get("text"), str):
            return JSONResponse({"detail": [{"loc": ["body", "text"], "msg": "field required",
                                             "type": "value_error.missing"}]}, status_code=422)
        text: str = body["text"]
        model = str(body.get("model_id") or "eleven_multilingual_v2")
        output_format = request.query_params.get("output_format", "mp3_44100_128")
        if output_format not in ELEVENLABS_PCM_RATES:
            return _eleven_error(400, "invalid_output_format",
                                 f"This fake serves only {sorted(ELEVENLABS_PCM_RATES)}, not {output_format!r}.")
        if behaviour.model and model != behaviour.model:
            return _eleven_error(400, "model_not_found", f"A model with model ID {model} does not exist.")
        if voices is not None and voice not in voices:
            return _eleven_error(400, "voice_not_found", f"A voice with the voice_id {voice} was not found.")
        if not text.strip():
            return _eleven_error(400, "invalid_text", "Text must not be empty.")
        fault = behaviour.next_fault()
        if fault is not None and (fault.kind == "rate_limit" or (fault.kind == "status" and fault.status == 429)):
            record["outcome"] = "fault:rate_limit"
            headers = {"retry-after": f"{fault.retry_after:g}"} if fault.retry_after is not None else None
            return _eleven_error(429, "too_many_concurrent_requests",
                                 "Too many concurrent requests. Your current subscription is associated with a "
                                 "maximum of 2 concurrent requests.", headers)
        if fault is not None and fault.kind == "status":
            record["outcome"] = "fault:status"
            if fault.status == 422:
                return JSONResponse({"detail": [{"loc": ["body", "text"], "msg": "invalid", "type": "value_error"}]},
                                    status_code=422)
            code, message = _ELEVEN_STATUS.get(fault.status, ("error", f"Request failed with status {fault.status}."))
            return _eleven_error(fault.status, code, message.replace("{voice}", voice))
        fault = _ignore(record, fault, ("stall_before_first", "stall_mid", "truncate", "invalid_json",
                                        "no_terminal"))
        rate = ELEVENLABS_PCM_RATES[output_format]
        pcm = await asyncio.to_thread(speech_pcm, text, rate)
        timings = await asyncio.to_thread(espeak_character_timings, text)
        app.state.timings[text] = timings
        stream = _paced(behaviour, record, fault, _eleven_lines(pcm, rate, timings, chunk_seconds),
                        invalid=b'{"audio_base64": "AAAA", "alignment": {not json\n')
        return StreamingResponse(_tracked(app, record, stream), media_type="application/json",
                                 headers={"request-id": _request_id(), "history-item-id": _request_id()[4:24],
                                          "character-cost": str(len(text))})

    app = Starlette(routes=[Route("/v1/text-to-speech/{voice_id}/stream/with-timestamps", stream_with_timestamps,
                                  methods=["POST"])])
    app.state.open_streams = 0
    app.state.timings = {}
    return app


def _eleven_lines(pcm: bytes, rate: int, timings: tuple[tuple[str, float, float], ...],
                  chunk_seconds: float) -> list[bytes]:
    """The body's JSON lines: audio in ``chunk_seconds`` pieces, each with the characters that start in it."""
    samples = len(pcm) // 2
    per = max(1, round(chunk_seconds * rate))
    n = max(1, math.ceil(samples / per))
    lines: list[bytes] = []
    c = 0
    for k in range(n):
        audio = pcm[2 * k * per: 2 * min(samples, (k + 1) * per)]
        end_t = (k + 1) * per / rate
        chars: list[tuple[str, float, float]] = []
        while c < len(timings) and (timings[c][1] < end_t or k == n - 1):
            chars.append(timings[c])
            c += 1
        alignment = None
        if chars:
            alignment = {
                "characters": [ch for ch, _, _ in chars],
                "character_start_times_seconds": [round(s, 3) for _, s, _ in chars],
                "character_end_times_seconds": [round(e, 3) for _, _, e in chars],
            }
        obj = {"audio_base64": base64.b64encode(audio).decode("ascii"), "alignment": alignment,
               "normalized_alignment": alignment}
        lines.append(json.dumps(obj, separators=(",", ":")).encode() + b"\n")
    return lines


# -- Gemini: POST /{version}/models/{model}:streamGenerateContent ------------------------------------------------

def _sse(payload: dict[str, Any]) -> bytes:
    return b"data: " + json.dumps(payload, separators=(",", ":")).encode() + b"\r\n\r\n"


def _gemini_text(body: dict[str, Any]) -> str:
    contents = body.get("contents") or []
    last = contents[-1] if contents and isinstance(contents[-1], dict) else {}
    return "".join(p.get("text", "") for p in last.get("parts") or [] if isinstance(p, dict))


def _field(obj: Any, camel: str) -> Any:
    """A field of a proto-JSON object by either name: Google's servers accept the lowerCamelCase JSON name and
    the proto's snake_case one (google-genai 3.6 sends ``speechConfig`` with snake_case fields inside)."""
    if not isinstance(obj, dict):
        return None
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", camel).lower()
    return obj.get(camel, obj.get(snake))


def _gemini_voice(body: dict[str, Any]) -> tuple[list[str], str | None]:
    config = _field(body, "generationConfig") or {}
    voice = _field(_field(_field(config, "speechConfig"), "voiceConfig"), "prebuiltVoiceConfig")
    return list(_field(config, "responseModalities") or []), _field(voice, "voiceName")


def _gemini_response(blobs: list[bytes], model: str, response_id: str, *, final: bool, prompt_tokens: int,
                     audio_seconds: float) -> dict[str, Any]:
    parts = [{"inlineData": {"mimeType": GEMINI_MIME, "data": base64.b64encode(b).decode("ascii")}} for b in blobs]
    candidate: dict[str, Any] = {"content": {"parts": parts, "role": "model"}, "index": 0}
    usage: dict[str, Any] = {"promptTokenCount": prompt_tokens, "totalTokenCount": prompt_tokens}
    if final:
        candidate["finishReason"] = "STOP"
        audio_tokens = max(1, round(25 * audio_seconds))  # Gemini counts 25 tokens per second of audio
        usage = {"promptTokenCount": prompt_tokens, "candidatesTokenCount": audio_tokens,
                 "totalTokenCount": prompt_tokens + audio_tokens,
                 "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt_tokens}],
                 "candidatesTokensDetails": [{"modality": "AUDIO", "tokenCount": audio_tokens}]}
    return {"candidates": [candidate], "usageMetadata": usage, "modelVersion": model, "responseId": response_id}


def make_gemini_tts_app(behaviour: FakeBehaviour, *, chunk_seconds: float = 0.2) -> Starlette:
    """The fake Gemini TTS endpoints: ``inlineData`` audio parts of ``chunk_seconds``, streamed or whole."""

    async def models(request: Request) -> Response:
        version = request.path_params["version"]
        model, sep, method = request.path_params["rest"].rpartition(":")
        if version not in API_VERSIONS or not sep or method not in ("streamGenerateContent", "generateContent"):
            return JSONResponse(error_body(404, f"Method not found: {request.url.path}"), status_code=404)
        key = request.headers.get("x-goog-api-key") or request.query_params.get("key")
        if not key:
            return JSONResponse(error_body(
                403, "Method doesn't allow unregistered callers (callers without established identity). "
                     "Please use API Key or other form of API consumer identity to call this API."),
                status_code=403)
        if key != behaviour.api_key:
            return JSONResponse(invalid_key_body(), status_code=400)
        try:
            body = await request.json()
        except ValueError:
            body = None
        record = _record(behaviour, request, body)
        if not isinstance(body, dict) or not isinstance(body.get("contents"), list):
            return JSONResponse(error_body(400, "Invalid JSON payload received. 'contents' is required."),
                                status_code=400)
        if behaviour.model and model != behaviour.model:
            return JSONResponse(error_body(
                404, f"models/{model} is not found for API version {version}, or is not supported for {method}. "
                     "Call ListModels to see the list of available models and their supported methods."),
                status_code=404)
        modalities, voice = _gemini_voice(body)
        if modalities != ["AUDIO"]:
            return JSONResponse(error_body(400, "The requested combination of response modalities is not "
                                                "supported by the model. models/" + model + " accepts the "
                                                "following combination of response modalities: * AUDIO"),
                                status_code=400)
        if voice is not None and voice not in GEMINI_VOICES:
            return JSONResponse(error_body(400, f"Voice name {voice} is not supported."), status_code=400)
        text = _gemini_text(body)
        if not text.strip():
            return JSONResponse(error_body(400, "Unable to submit request because it has an empty text parameter."),
                                status_code=400)
        fault = behaviour.next_fault()
        if fault is not None and fault.kind == "status":
            record["outcome"] = "fault:status"
            return JSONResponse(error_body(fault.status), status_code=fault.status)
        if fault is not None and fault.kind == "rate_limit":
            record["outcome"] = "fault:rate_limit"
            return JSONResponse(rate_limit_body(fault.retry_after), status_code=429)
        pcm = await asyncio.to_thread(speech_pcm, text, GEMINI_RATE)
        seconds = len(pcm) / 2 / GEMINI_RATE
        response_id = _request_id()[4:26]
        prompt_tokens = behaviour.prompt_tokens
        if method == "generateContent":
            if fault is not None and fault.kind in ("stall_before_first", "stall_mid"):
                await asyncio.sleep(fault.stall)
            await asyncio.sleep(behaviour.ttft)
            record["outcome"] = "completed"
            return JSONResponse(_gemini_response([pcm], model, response_id, final=True,
                                                 prompt_tokens=prompt_tokens, audio_seconds=seconds))
        blobs = _pieces(pcm, 2 * max(1, round(chunk_seconds * GEMINI_RATE)))
        no_terminal = fault is not None and fault.kind == "no_terminal"
        events = [_sse(_gemini_response([b], model, response_id, final=(i == len(blobs) - 1 and not no_terminal),
                                        prompt_tokens=prompt_tokens, audio_seconds=seconds))
                  for i, b in enumerate(blobs)]
        if no_terminal:
            fault = None  # the whole audio, just no finishReason
            record["outcome"] = "fault:no_terminal"
        stream = _paced(behaviour, record, fault, events, invalid=b"data: {not json\r\n\r\n",
                        error_event=_sse(error_body(503, "The model is overloaded. Please try again later.")))
        return StreamingResponse(_tracked(app, record, stream), media_type="text/event-stream",
                                 headers={"cache-control": "no-cache"})

    app = Starlette(routes=[Route("/{version}/models/{rest:path}", models, methods=["POST"])])
    app.state.open_streams = 0
    return app

"""Premium voice with timings: ElevenLabs streaming TTS with character timestamps, turned into phoneme timings.

``ElevenLabsVoice("21m00Tcm4TlvDq8ikWAM", key=Secret(...))`` calls
``POST /v1/text-to-speech/{voice_id}/stream/with-timestamps?output_format=pcm_22050`` (model
``eleven_flash_v2_5`` by default) through the official ``elevenlabs`` SDK (2.78,
``text_to_speech.with_raw_response.stream_with_timestamps``). The body is newline-delimited JSON; each object
carries ``audio_base64`` (22,050 Hz PCM16 mono) and ``alignment`` ``{characters, character_start_times_seconds,
character_end_times_seconds}`` with times on the whole request's audio.

What the SDK is used for, and what is done here instead (read in ``elevenlabs/text_to_speech/raw_client.py``):

* The SDK builds the request (path, query, ``xi-api-key``), talks to ``base_url`` and turns error statuses into
  ``ApiError`` (status, headers, parsed body). Streaming requests are never retried by it (``max_retries`` is
  set to 0 anyway).
* Its stream parser swallows every line that fails to parse (``except Exception: pass``): a corrupted chunk would
  become a silent gap in the audio. So the body is read here from the underlying ``httpx.Response`` (caught by a
  response event hook of the ``httpx.AsyncClient`` we give the SDK) and parsed strictly: a bad line is
  ``MalformedStream``.
* The SDK's client is ``httpx`` (not ``httpx2``) and network failures come through raw, so they are mapped here.
  Its timeout is one float applied to every phase; a request hook sets connect / read timeouts separately.
  Redirects are not followed: ``xi-api-key`` is a custom header that httpx would forward to another host.

Timings (``has_timings=True``): characters are grouped into words, each word is phonemized
(``lipsync.phonemize``) and its phonemes spread over the word's time span in proportion to a weight (vowels
longer than consonants). A chunk's audio is held back only until the words it contains are complete (the
alignment of the next object usually completes them), then it is yielded with the phonemes inside it, relative
to its first sample; a phoneme straddling a chunk boundary is clipped into both chunks.

ElevenLabs' body has no end marker; a stream that ends cleanly while its alignment stops short of the request
text is reported as ``MalformedStream``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import math
import unicodedata
from collections.abc import AsyncIterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import httpx
from elevenlabs.client import AsyncElevenLabs
from elevenlabs.core.api_error import ApiError

from ..errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from ..events import TimedPhoneme
from ..lipsync.phonemize import STRESS_MARKS, phonemize
from ..providers import ProviderTimeouts
from ..providers.google_chat import parse_retry_after_header
from ..providers.loops import LoopClients
from ..secrets import Secret, redact
from . import SpeechChunk, register_engine
from .openai_tts import check_base_url, check_voice_args

log = logging.getLogger(__name__)

ENGINE = "elevenlabs"
DEFAULT_MODEL = "eleven_flash_v2_5"
DEFAULT_BASE_URL = "https://api.elevenlabs.io"
OUTPUT_FORMAT = "pcm_22050"
SAMPLE_RATE = 22_050
MIN_CHUNK_SECONDS = 0.02
"""Released audio shorter than this waits for more (no confetti of tiny chunks)."""
MAX_HOLD_SECONDS = 1.0
"""Audio is never held back longer than this waiting for its words' timings (alignment lagging or missing)."""
VOWEL_WEIGHT = 1.6
"""A vowel's share of its word's time relative to a consonant's."""
_BACKWARDS_TOLERANCE = 0.05

_VOWELS = frozenset("aeiouyæɑɒɐəɚɛɜɝɞɘɵɪʊʌɔøœɤɯɨʉɶʏ")
_WORD_JOINERS = frozenset("'’")

# The httpx responses opened while this module's request is being made (set around the SDK call only, so it
# never leaks into the consumer's code); the client's response hook fills it.
_RESPONSE_SINK: ContextVar[list[httpx.Response] | None] = ContextVar("elevenlabs_response_sink", default=None)


async def _collect_response(response: httpx.Response) -> None:
    sink = _RESPONSE_SINK.get()
    if sink is not None:
        sink.append(response)


def is_vowel(symbol: str) -> bool:
    """Whether an IPA phoneme (as espeak names it: ``ˈoʊ``, ``ɚ``, ``n̩``) is a vowel or a syllabic sound."""
    core = "".join(ch for ch in symbol if ch not in STRESS_MARKS)
    return bool(core) and (core[0] in _VOWELS or "\u0329" in core)


@lru_cache(maxsize=4096)
def _word_phonemes(word: str, language: str) -> tuple[str, ...]:
    return tuple(p for w in phonemize(word, language) for p in w)


def spread(phonemes: tuple[str, ...] | list[str], start: float, end: float) -> list[TimedPhoneme]:
    """``phonemes`` laid out back to back over ``start``..``end``, each in proportion to its weight."""
    if not phonemes or end <= start:
        return []
    weights = [VOWEL_WEIGHT if is_vowel(p) else 1.0 for p in phonemes]
    total = sum(weights)
    out: list[TimedPhoneme] = []
    t = start
    acc = 0.0
    for symbol, w in zip(phonemes, weights):
        acc += w
        nxt = end if acc >= total else start + (end - start) * acc / total
        out.append(TimedPhoneme(symbol, t, nxt))
        t = nxt
    return out


def _is_word_char(ch: str) -> bool:
    return ch.isalnum() or unicodedata.category(ch) == "Mn"


@dataclass
class _Word:
    text: str
    start: float
    end: float


class CharacterTimeline:
    """Character timings in, phoneme timings out: the timing half of :class:`ElevenLabsVoice` (no I/O).

    Feed each object's alignment with :meth:`add`; :attr:`horizon` is how far (seconds) every phoneme is known;
    :meth:`take` gives the phonemes of an audio span relative to its start. :meth:`finish` completes the last
    word at the end of the stream.
    """

    def __init__(self, language: str = "en-us") -> None:
        self.language = language
        self.characters: list[str] = []
        self._last_start = 0.0
        self._last_end = 0.0
        self._word: _Word | None = None
        self._phonemes: list[TimedPhoneme] = []
        self._first = 0  # phonemes before this index end before the audio already handed out
        self._finished = False

    @property
    def horizon(self) -> float:
        """Seconds up to which every phoneme is known: the start of an unfinished word, else the last timing."""
        if self._finished:
            return math.inf
        return self._word.start if self._word is not None else self._last_end

    def add(self, characters: list[str], starts: list[float], ends: list[float], *, audio_offset: float) -> None:
        """Add one object's alignment. ``audio_offset``: seconds of audio received before this object's audio,
        used only if the times turn out to restart per chunk instead of running over the whole request."""
        if not characters:
            return
        shift = 0.0
        if self.characters and starts[0] < self._last_start - _BACKWARDS_TOLERANCE <= starts[0] + audio_offset:
            # Documented as request-relative; a server that restarts them per chunk is tolerated, not trusted.
            log.debug("character times restart per chunk: shifting by the chunk's audio offset",
                      extra={"offset": audio_offset})
            shift = audio_offset
        for ch, s, e in zip(characters, starts, ends):
            # Forced monotonic and non-overlapping: the horizon must never move backwards.
            start = max(float(s) + shift, self._last_end)
            end = max(float(e) + shift, start)
            self.characters.append(ch)
            self._last_start, self._last_end = start, end
            if _is_word_char(ch) or (ch in _WORD_JOINERS and self._word is not None):
                if self._word is None:
                    self._word = _Word(ch, start, end)
                else:
                    self._word.text += ch
                    self._word.end = end
            else:
                self._close_word()

    def finish(self) -> None:
        self._close_word()
        self._finished = True

    def _close_word(self) -> None:
        word, self._word = self._word, None
        if word is None:
            return
        text = word.text.strip("".join(_WORD_JOINERS))
        if not text:
            return
        try:
            phonemes = _word_phonemes(text, self.language)
        except Exception as exc:  # noqa: BLE001 - a word we cannot phonemize stays silent, the audio plays on
            log.warning("cannot phonemize a word; its mouth shapes are skipped",
                        extra={"error": type(exc).__name__})
            return
        self._phonemes.extend(spread(phonemes, word.start, word.end))

    def take(self, t0: float, t1: float) -> tuple[TimedPhoneme, ...]:
        """Phonemes overlapping ``t0``..``t1`` (seconds), clipped to it, relative to ``t0``.

        Spans are taken in order; phonemes that end before ``t1`` are not offered again.
        """
        out: list[TimedPhoneme] = []
        i = self._first
        while i < len(self._phonemes) and self._phonemes[i].start < t1:
            p = self._phonemes[i]
            start, end = max(p.start, t0), min(p.end, t1)
            if end - start > 1e-4:
                out.append(TimedPhoneme(p.symbol, start - t0, end - t0))
            if p.end <= t1:
                self._first = i + 1
            i += 1
        return tuple(out)

    @property
    def text(self) -> str:
        return "".join(self.characters)


def _covers(text: str, aligned: str) -> bool | None:
    """Whether the aligned characters cover ``text``: True / False, or None when they are not a prefix of it
    (the server normalised the text: no judgement possible)."""
    want, got = " ".join(text.split()), " ".join(aligned.split())
    if not want.startswith(got):
        return None
    return not want[len(got):].strip()


class ElevenLabsVoice:
    """A Premium voice with timings: ElevenLabs voice ``name`` (a voice id), 22,050 Hz PCM plus phonemes."""

    has_timings: bool = True
    sample_rate: int = SAMPLE_RATE

    def __init__(self, name: str, *, key: Secret | None, model: str | None = None, base_url: str | None = None,
                 timeouts: ProviderTimeouts = ProviderTimeouts(), language: str = "en-us", **_: object) -> None:
        self.name = check_voice_args(ENGINE, name, key, "ELEVENLABS_API_KEY")
        self.model = model or DEFAULT_MODEL
        self.id = f"{ENGINE}:{self.name}"
        self.base_url = check_base_url(base_url or DEFAULT_BASE_URL, "ElevenLabs' base URL has no /v1")
        self.timeouts = timeouts or ProviderTimeouts()
        self.language = language
        self._key = key
        self._clients: LoopClients[tuple[AsyncElevenLabs, httpx.AsyncClient]] = LoopClients(
            self._build_client, _close_client)

    def _build_client(self) -> tuple[AsyncElevenLabs, httpx.AsyncClient]:
        assert self._key is not None
        read = max(self.timeouts.first_token, self.timeouts.idle)
        per_request = {"connect": self.timeouts.connect, "read": read, "write": read, "pool": self.timeouts.connect}

        async def set_timeouts(request: httpx.Request) -> None:
            # The SDK passes one float for every phase; the connect limit must stay the short one.
            request.extensions = {**request.extensions, "timeout": per_request}

        http = httpx.AsyncClient(timeout=httpx.Timeout(read, connect=self.timeouts.connect), follow_redirects=False,
                                 event_hooks={"request": [set_timeouts], "response": [_collect_response]})
        client = AsyncElevenLabs(api_key=self._key.reveal(), base_url=self.base_url, httpx_client=http,
                                 timeout=read)
        return client, http

    def __repr__(self) -> str:
        source = f" ({self._key.source})" if self._key is not None and self._key.source else ""
        return (f"ElevenLabsVoice(id={self.id!r}, model={self.model!r}, base_url={redact(self.base_url)!r}, "
                f"key=set{source})")

    async def aclose(self) -> None:
        """Close the HTTP clients and their connections; the voice builds new ones if used again."""
        await self._clients.aclose()

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Stream the speech of ``text`` with phoneme timings; nothing for text with nothing to say."""
        if not text.strip():
            return
        client, _http = self._clients.get()
        responses: list[httpx.Response] = []
        manager = client.text_to_speech.with_raw_response.stream_with_timestamps(
            self.name, text=text, model_id=self.model, output_format=OUTPUT_FORMAT,
            request_options={"max_retries": 0})
        token = _RESPONSE_SINK.set(responses)
        try:
            await manager.__aenter__()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error
            raise self._map_error(exc, began=False, received=0) from None
        finally:
            _RESPONSE_SINK.reset(token)
        received = 0
        try:
            body = next((r for r in reversed(responses) if 200 <= r.status_code < 300), None)
            if body is None:  # the hook did not run: only possible if the SDK changed how it sends requests
                raise ProviderError(f"{self.id}: no HTTP response to read (elevenlabs SDK changed?)",
                                    provider=self.id)
            timeline = CharacterTimeline(self.language)
            pending = bytearray()  # decoded audio not yet yielded; starts at sample `emitted`
            odd = b""
            emitted = 0
            total = 0  # whole samples received
            min_samples = round(MIN_CHUNK_SECONDS * SAMPLE_RATE)
            max_hold = round(MAX_HOLD_SECONDS * SAMPLE_RATE)
            lines = 0
            async for line in body.aiter_lines():
                if not line.strip():
                    continue
                lines += 1
                audio, alignment = self._parse(line, lines)
                received += len(audio)
                audio = odd + audio
                whole = len(audio) - len(audio) % 2
                odd = audio[whole:]
                offset = total / SAMPLE_RATE
                pending += audio[:whole]
                total += whole // 2
                if alignment is not None:
                    timeline.add(*alignment, audio_offset=offset)
                release = min(total, int(timeline.horizon * SAMPLE_RATE)) if timeline.horizon < math.inf else total
                release = max(release, total - max_hold)
                if release - emitted >= min_samples:
                    yield self._chunk(pending, emitted, release, timeline)
                    emitted = release
            timeline.finish()
            if odd:
                raise MalformedStream(f"{self.id}: the audio ended in the middle of a 16-bit sample after "
                                      f"{received} bytes", provider=self.id, status=200)
            if total > emitted:
                yield self._chunk(pending, emitted, total, timeline)
            if total == 0:
                raise MalformedStream(f"{self.id}: the stream carried no audio", provider=self.id, status=200)
            covered = _covers(text, timeline.text)
            if covered is False:
                raise MalformedStream(
                    f"{self.id}: the stream ended after {len(timeline.text)} of {len(text)} characters (cut short: "
                    "the alignment stops before the end of the text)", provider=self.id, status=200)
            if covered is None and timeline.text:
                log.debug("alignment characters differ from the request text; completeness not checked",
                          extra={"voice": self.id})
        except Exception as exc:  # noqa: BLE001 - GeneratorExit/CancelledError are not Exceptions: they pass
            raise self._map_error(exc, began=True, received=received) from None
        finally:
            # Also when the consumer stops early (barge-in): release the HTTP response, and with it the server.
            with contextlib.suppress(Exception):
                await manager.__aexit__(None, None, None)
            for response in responses:
                with contextlib.suppress(Exception):
                    await response.aclose()

    def _chunk(self, pending: bytearray, emitted: int, upto: int, timeline: CharacterTimeline) -> SpeechChunk:
        n = upto - emitted
        pcm = bytes(pending[: 2 * n])
        del pending[: 2 * n]
        t0, t1 = emitted / SAMPLE_RATE, upto / SAMPLE_RATE
        return SpeechChunk(pcm=pcm, sample_rate=SAMPLE_RATE, phonemes=timeline.take(t0, t1))

    def _parse(self, line: str, index: int) -> tuple[bytes, tuple[list[str], list[float], list[float]] | None]:
        """The audio and alignment of one line of the body; ``MalformedStream`` for anything else."""
        where = f"line {index} of the stream"
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise MalformedStream(f"{self.id}: {where} is not valid JSON ({exc.msg} at column {exc.colno})",
                                  provider=self.id, status=200) from None
        if not isinstance(obj, dict) or not isinstance(obj.get("audio_base64"), str | None):
            raise MalformedStream(f"{self.id}: {where} is not an audio object: {_describe(obj)}",
                                  provider=self.id, status=200)
        if "audio_base64" not in obj:
            raise MalformedStream(f"{self.id}: {where} has no audio_base64: {_describe(obj)}", provider=self.id,
                                  status=200)
        try:
            audio = base64.b64decode(obj.get("audio_base64") or "", validate=True)
        except (binascii.Error, ValueError):
            raise MalformedStream(f"{self.id}: {where}: audio_base64 is not base64", provider=self.id,
                                  status=200) from None
        raw = obj.get("alignment")
        if raw is None:
            return audio, None
        try:
            chars = [str(c) for c in raw["characters"]]
            starts = [float(t) for t in raw["character_start_times_seconds"]]
            ends = [float(t) for t in raw["character_end_times_seconds"]]
        except (KeyError, TypeError, ValueError):
            raise MalformedStream(f"{self.id}: {where}: alignment is not {{characters, character_start_times_"
                                  "seconds, character_end_times_seconds}", provider=self.id, status=200) from None
        if not len(chars) == len(starts) == len(ends) or not all(map(math.isfinite, starts + ends)):
            raise MalformedStream(f"{self.id}: {where}: alignment lists differ in length or hold non-numbers",
                                  provider=self.id, status=200)
        return audio, (chars, starts, ends)

    def _map_error(self, exc: Exception, *, began: bool, received: int) -> ProviderError:
        """The typed error for a failure; ``began``: the 200 response had started (audio may have arrived)."""
        name = self.id
        kind = type(exc).__name__
        where = f"after {received} bytes of audio" if began else "before the response"
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, ApiError):
            return self._map_status(exc)
        detail = redact(str(exc)).strip()
        cause = f"{kind}: {detail}" if detail else kind
        read = max(self.timeouts.first_token, self.timeouts.idle)
        if isinstance(exc, httpx.ConnectTimeout):
            return ProviderTimeout(f"{name}: no connection within {self.timeouts.connect:g}s ({cause})",
                                   provider=name)
        if isinstance(exc, httpx.TimeoutException):
            what = "no audio" if began else "no response"
            return ProviderTimeout(f"{name}: {what} within the {read:g}s read timeout {where} ({cause})",
                                   provider=name)
        if isinstance(exc, httpx.ConnectError):
            return ProviderUnavailable(f"{name}: cannot reach {redact(self.base_url)} ({cause})", provider=name)
        if isinstance(exc, httpx.TransportError | httpx.StreamError):
            if began:
                return MalformedStream(f"{name}: the stream broke off {where} (truncated): {cause}",
                                       provider=name, status=200)
            return ProviderUnavailable(f"{name}: the connection was closed or reset before a response ({cause})",
                                       provider=name)
        return ProviderError(f"{name}: unexpected {cause} {where}", provider=name)

    def _map_status(self, exc: ApiError) -> ProviderError:
        name = self.id
        status = exc.status_code or 0
        code, message = _detail_of(exc.body)
        detail = redact(f"{code}: {message}" if code else message) or "(no message)"
        text = f"{name}: HTTP {status}: {_clip(detail)}"
        if status in (401, 403):
            # ElevenLabs also answers 401 for `quota_exceeded`: a new attempt with the same key cannot help either.
            return ProviderAuthError(f"{text} (the API key was rejected, lacks access or is out of quota)",
                                     provider=name, status=status)
        if status in (400, 404, 422):
            return ProviderBadRequest(f"{text} (voice {self.name!r}, model {self.model!r})", provider=name,
                                      status=status)
        if status == 429:
            headers = {str(k).lower(): str(v) for k, v in (exc.headers or {}).items()}
            retry_after = parse_retry_after_header(headers.get("retry-after"))
            wait = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
            return RateLimited(f"{text}{wait}", retry_after=retry_after, provider=name, status=status)
        if status >= 500:
            return ProviderUnavailable(f"{text} (the server failed or is busy)", provider=name, status=status)
        return ProviderError(text, provider=name, status=status)


def _detail_of(body: Any) -> tuple[str, str]:
    """(status code word, message) of an ElevenLabs error body: ``{"detail": {"status", "message"}}``, a FastAPI
    validation list ``{"detail": [{"loc", "msg"}]}``, or plain text."""
    detail = body.get("detail", body) if isinstance(body, Mapping) else body
    if isinstance(detail, Mapping):
        return str(detail.get("status") or detail.get("code") or ""), str(detail.get("message") or "")
    if isinstance(detail, list) and detail:
        first = detail[0]
        if isinstance(first, Mapping):
            where = ".".join(str(x) for x in first.get("loc") or [])
            return "validation_error", f"{where}: {first.get('msg', '')}".strip(": ")
    return "", str(detail or "")


def _describe(obj: Any) -> str:
    if isinstance(obj, Mapping):
        code, message = _detail_of(obj)
        if code or message:
            return _clip(redact(f"{code}: {message}"))
        return f"keys {sorted(map(str, obj))[:6]}"
    return type(obj).__name__


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


async def _close_client(pair: tuple[AsyncElevenLabs, httpx.AsyncClient]) -> None:
    await pair[1].aclose()


def _factory(name: str, *, key: Secret | None = None, model: str | None = None, base_url: str | None = None,
             timeouts: ProviderTimeouts | None = None, **params: object) -> ElevenLabsVoice:
    language = params.get("language")
    return ElevenLabsVoice(name, key=key, model=model, base_url=base_url, timeouts=timeouts or ProviderTimeouts(),
                           language=language if isinstance(language, str) and language else "en-us")


register_engine(ENGINE, _factory)

"""Premium voice: OpenAI text-to-speech (``gpt-4o-mini-tts`` by default) streamed as raw PCM through ``openai``.

``OpenAIVoice("alloy", key=Secret(...))`` asks ``POST /v1/audio/speech`` for ``response_format="pcm"`` (24 kHz
PCM16 little-endian mono, no header) with the SDK's ``with_streaming_response`` and yields ``SpeechChunk``s while
the bytes arrive, re-cut into sample-aligned pieces of 50-100 ms. OpenAI gives no timings
(``has_timings=False``): the pipeline aligns the audio itself.

The lessons of the chat adapter (``providers/openai_chat.py``) apply and its small helpers are reused: an
explicit key (the SDK would read ``$OPENAI_API_KEY`` on its own), ``max_retries=0`` (retrying is the caller's
decision), a read timeout as a backstop, one SDK client per event loop, every failure mapped to the typed
``ProviderError`` family with the key scrubbed. What differs from chat: a raw audio body has no end marker, no
in-stream error and no JSON, so a stream is complete when the HTTP body ends cleanly with whole samples; network
errors while reading it arrive as raw ``httpx2`` exceptions (the SDK wraps only its own request phase).

This module also holds :class:`PcmRechunker` and the constructor checks the other cloud voices share.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import httpx2
import openai

from ..errors import (
    ConfigError,
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
)
from ..providers import ProviderTimeouts
from ..providers.loops import LoopClients
from ..providers.openai_chat import _cause_chain, _env_header_names, map_status
from ..secrets import Secret, redact
from . import SpeechChunk, register_engine

log = logging.getLogger(__name__)

ENGINE = "openai"
DEFAULT_MODEL = "gpt-4o-mini-tts"
DEFAULT_BASE_URL = "https://api.openai.com/v1"
SAMPLE_RATE = 24_000
"""OpenAI's ``pcm`` format: 24 kHz, 16-bit signed little-endian, mono."""
MAX_INPUT_CHARS = 4096
"""The API's limit on ``input``; longer text is refused before any request."""

C = TypeVar("C")


class PcmRechunker:
    """Re-cut a PCM16 byte stream into sample-aligned chunks of ``min_seconds``..``max_seconds``.

    Network reads arrive in arbitrary sizes (odd ones too); a chunk must never split a 16-bit sample. Small
    reads are held until ``min_seconds`` of audio is there (fewer, larger events downstream), large ones are cut
    into ``max_seconds`` pieces (the player can start on the first piece while the rest is queued).
    """

    def __init__(self, sample_rate: int, *, min_seconds: float = 0.05, max_seconds: float = 0.1) -> None:
        if not 0 < min_seconds <= max_seconds:
            raise ValueError("need 0 < min_seconds <= max_seconds")
        self._min = 2 * max(1, round(min_seconds * sample_rate))
        self._max = 2 * max(1, round(max_seconds * sample_rate))
        self._buf = bytearray()

    def feed(self, data: bytes) -> list[bytes]:
        """Add ``data``; return the chunks that are ready (possibly none)."""
        self._buf += data
        out: list[bytes] = []
        while len(self._buf) >= self._max:
            out.append(bytes(self._buf[: self._max]))
            del self._buf[: self._max]
        if len(self._buf) >= self._min:
            n = len(self._buf) - len(self._buf) % 2
            out.append(bytes(self._buf[:n]))
            del self._buf[:n]
        return out

    def flush(self) -> bytes:
        """The whole samples still held (at the end of the stream); a lone odd byte stays in ``leftover``."""
        n = len(self._buf) - len(self._buf) % 2
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    @property
    def leftover(self) -> int:
        """Bytes held that do not make a whole sample (non-zero after ``flush`` means a broken stream)."""
        return len(self._buf)


def check_voice_args(engine: str, name: str, key: Secret | None, env_hint: str) -> str:
    """Validate what every cloud voice's constructor gets; returns the stripped voice name."""
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"voice.id: a {engine} voice needs a name, e.g. '{engine}:<voice>'")
    if key is not None and not isinstance(key, Secret):
        raise TypeError("key must be an avatarium_lab.secrets.Secret, never a plain string")
    if key is None:
        # Checked before any request; left to itself each SDK would quietly read the environment instead.
        raise ProviderAuthError(f"{engine}:{name.strip()}: no API key (set {env_hint}, or give the tenant its own "
                                "key)", provider=f"{engine}:{name.strip()}")
    return name.strip()


def check_base_url(base_url: str, what: str) -> str:
    """``base_url`` without a trailing slash, or ``ConfigError`` when it is not an http(s) URL with a host."""
    try:
        url = httpx2.URL(base_url)
    except (httpx2.InvalidURL, ValueError, TypeError):
        url = None
    if url is None or url.scheme not in ("http", "https") or not url.host:
        raise ConfigError(f"voice.base_url: {redact(str(base_url))!r} is not an http(s) URL with a host ({what})")
    return base_url.rstrip("/")


class OpenAIVoice:
    """A Premium voice: OpenAI TTS voice ``name`` (``alloy``, ``nova``, ...), streamed as 24 kHz PCM."""

    has_timings: bool = False
    sample_rate: int = SAMPLE_RATE

    def __init__(self, name: str, *, key: Secret | None, model: str | None = None, base_url: str | None = None,
                 timeouts: ProviderTimeouts = ProviderTimeouts(), **_: object) -> None:
        self.name = check_voice_args(ENGINE, name, key, "OPENAI_API_KEY")
        self.model = model or DEFAULT_MODEL
        self.id = f"{ENGINE}:{self.name}"
        self.base_url = check_base_url(base_url or DEFAULT_BASE_URL, "OpenAI's base URL ends in /v1")
        self.timeouts = timeouts or ProviderTimeouts()
        self._key = key
        self._clients: LoopClients[openai.AsyncOpenAI] = LoopClients(self._build_client, _close_openai)

    def _build_client(self) -> openai.AsyncOpenAI:
        assert self._key is not None
        token = self._key.reveal()
        # $OPENAI_CUSTOM_HEADERS would be added to every request (and could replace our Authorization): headers
        # come from this voice's configuration only.
        headers: dict[str, Any] = {
            h: (f"Bearer {token}" if h.lower() == "authorization" else openai.omit) for h in _env_header_names()
        }
        read = max(self.timeouts.first_token, self.timeouts.idle)
        return openai.AsyncOpenAI(api_key=token, base_url=self.base_url, max_retries=0,
                                  timeout=openai.Timeout(read, connect=self.timeouts.connect),
                                  default_headers=headers)

    def __repr__(self) -> str:
        source = f" ({self._key.source})" if self._key is not None and self._key.source else ""
        return (f"OpenAIVoice(id={self.id!r}, model={self.model!r}, base_url={redact(self.base_url)!r}, "
                f"key=set{source})")

    async def aclose(self) -> None:
        """Close the SDK clients and their connections; the voice builds new ones if used again."""
        await self._clients.aclose()

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Stream the speech of ``text`` as 50-100 ms chunks; nothing for text with nothing to say."""
        if not text.strip():
            return
        if len(text) > MAX_INPUT_CHARS:
            raise ProviderBadRequest(f"{self.id}: text of {len(text)} characters is over OpenAI's limit of "
                                     f"{MAX_INPUT_CHARS}; split it into sentences", provider=self.id)
        client = self._clients.get()
        manager = client.audio.speech.with_streaming_response.create(
            model=self.model, voice=self.name, input=text, response_format="pcm")
        try:
            response = await manager.__aenter__()
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error
            raise self._map_error(exc, began=False, received=0) from None
        received = 0
        try:
            content_type = response.headers.get("content-type", "")
            if content_type.startswith(("application/json", "text/")):
                raise MalformedStream(f"{self.id}: expected raw PCM audio, got {redact(content_type)!r}",
                                      provider=self.id, status=response.status_code)
            chunker = PcmRechunker(SAMPLE_RATE)
            async for data in response.iter_bytes():
                received += len(data)
                for piece in chunker.feed(data):
                    yield SpeechChunk(pcm=piece, sample_rate=SAMPLE_RATE)
            tail = chunker.flush()
            if tail:
                yield SpeechChunk(pcm=tail, sample_rate=SAMPLE_RATE)
            if chunker.leftover:
                raise MalformedStream(f"{self.id}: the audio ended in the middle of a 16-bit sample after "
                                      f"{received} bytes (truncated or not PCM16)", provider=self.id, status=200)
            if received == 0:
                raise MalformedStream(f"{self.id}: the response carried no audio", provider=self.id, status=200)
        except Exception as exc:  # noqa: BLE001 - GeneratorExit/CancelledError are not Exceptions: they pass
            raise self._map_error(exc, began=True, received=received) from None
        finally:
            # Also when the consumer stops early (barge-in): release the HTTP response, and with it the server.
            await response.close()

    def _map_error(self, exc: Exception, *, began: bool, received: int) -> ProviderError:
        """The typed error for a failure; ``began``: the 200 response had started (audio may have arrived)."""
        name = self.id
        where = f"after {received} bytes of audio" if began else "before the response"
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return self._map_status(exc)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            read = max(self.timeouts.first_token, self.timeouts.idle)
            what = "no audio within the read timeout" if began else "no connection or response in time"
            return ProviderTimeout(f"{name}: timed out {where} ({what}; connect {self.timeouts.connect:g}s, read "
                                   f"{read:g}s): {_cause_chain(exc)}", provider=name)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            if began:
                return MalformedStream(f"{name}: the audio stream broke off {where} (truncated): "
                                       f"{_cause_chain(exc)}", provider=name, status=200)
            return ProviderUnavailable(f"{name}: cannot reach {redact(self.base_url)} (refused, reset or "
                                       f"unreachable): {_cause_chain(exc)}", provider=name)
        if isinstance(exc, json.JSONDecodeError):
            return MalformedStream(f"{name}: invalid JSON {where}: {_cause_chain(exc)}", provider=name)
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(f"{name}: SDK error {where}: {_cause_chain(exc)}", provider=name)
        return ProviderError(f"{name}: unexpected {type(exc).__name__} {where}: {_cause_chain(exc)}",
                             provider=name)

    def _map_status(self, exc: openai.APIStatusError) -> ProviderError:
        return map_status(exc, self.id, model=self.model, bad_request=(400, 404, 422))

async def _close_openai(client: openai.AsyncOpenAI) -> None:
    await client.close()


def _factory(name: str, *, key: Secret | None = None, model: str | None = None, base_url: str | None = None,
             timeouts: ProviderTimeouts | None = None, **_: object) -> OpenAIVoice:
    return OpenAIVoice(name, key=key, model=model, base_url=base_url, timeouts=timeouts or ProviderTimeouts())


register_engine(ENGINE, _factory)

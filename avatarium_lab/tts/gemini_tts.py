"""Premium voice: Gemini text-to-speech (``gemini-2.5-flash-preview-tts`` by default) streamed through ``google-genai``.

``GeminiVoice("Kore", key=Secret(...))`` sends the sentence to ``models/<model>:streamGenerateContent`` with
``response_modalities=["AUDIO"]`` and a prebuilt voice in ``speech_config``. The audio comes back as ``inlineData``
parts (``audio/L16;codec=pcm;rate=24000``), which the SDK decodes from base64; each part is yielded as it arrives.
The Gemini TTS models support ``streamGenerateContent`` and the SDK parses audio parts in a stream like text
ones, so one streamed request per sentence is used (not a blocking ``generateContent``). No timings
(``has_timings=False``).

Despite the ``L16`` name (big-endian in RFC 2586), Gemini's PCM is little-endian -- Google's own examples write it
unchanged into a WAV file -- so it is passed through as is.

Lessons of the chat adapter (``providers/google_chat.py``) reused here: an explicit key (the SDK would read
``GEMINI_API_KEY`` / ``GOOGLE_API_KEY`` itself), no SDK retries (``HttpRetryOptions(attempts=1)``), per-request
connect / read timeouts set by an httpx event hook (``HttpOptions.timeout`` would also become a server-side
deadline), raw ``httpx2`` network errors mapped by hand, the key check (400 ``API_KEY_INVALID``) and the 429
``RetryInfo`` parsing, the check for the final ``finishReason`` (a stream ending without one raises nothing in
the SDK), and closing the httpx responses ourselves on an early stop (closing the SDK's generator does not reach
them). One SDK client per event loop, as for the other cloud voices.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import re
from collections.abc import AsyncIterator
from contextvars import ContextVar
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types

from ..errors import (
    MalformedStream,
    ProviderAuthError,
    ProviderBadRequest,
    ProviderError,
    ProviderTimeout,
    ProviderUnavailable,
    RateLimited,
)
from ..providers import ProviderTimeouts
from ..providers.google_chat import (
    _BODY_BROKEN,
    _CONNECT_ERROR,
    _CONNECT_TIMEOUT,
    _TIMEOUT,
    _TRANSPORT,
    check_model_name,
    retry_after_of,
)
from ..providers.loops import LoopClients, PerLoopTransport
from ..secrets import Secret, redact
from . import SpeechChunk, register_engine
from .openai_tts import check_base_url, check_voice_args

log = logging.getLogger(__name__)

ENGINE = "gemini"
DEFAULT_MODEL = "gemini-2.5-flash-preview-tts"
SAMPLE_RATE = 24_000
API_VERSION = "v1beta"
_OK_FINISH = {types.FinishReason.STOP, types.FinishReason.MAX_TOKENS}
_RATE = re.compile(r"rate=(\d+)")

# The httpx responses opened by the stream currently stepping the SDK iterator (set around each step only, so it
# never leaks into the consumer's code); the client's response hook fills it.
_RESPONSE_SINK: ContextVar[list[Any] | None] = ContextVar("gemini_tts_response_sink", default=None)


async def _collect_response(response: Any) -> None:
    sink = _RESPONSE_SINK.get()
    if sink is not None:
        sink.append(response)


def pcm_rate(mime_type: str | None) -> int | None:
    """The sample rate of a raw PCM16 mime type (``audio/L16;codec=pcm;rate=24000``, ``audio/pcm``), else None."""
    mime = (mime_type or "").lower().replace(" ", "")
    if not (mime.startswith("audio/l16") or mime.startswith("audio/pcm")):
        return None
    match = _RATE.search(mime)
    return int(match.group(1)) if match else SAMPLE_RATE


class GeminiVoice:
    """A Premium voice: Gemini TTS prebuilt voice ``name`` (``Kore``, ``Puck``, ...), 24 kHz PCM."""

    has_timings: bool = False
    sample_rate: int = SAMPLE_RATE

    def __init__(self, name: str, *, key: Secret | None, model: str | None = None, base_url: str | None = None,
                 timeouts: ProviderTimeouts = ProviderTimeouts(), **_: object) -> None:
        self.name = check_voice_args(ENGINE, name, key, "GEMINI_API_KEY (or GOOGLE_API_KEY)")
        self.model = model or DEFAULT_MODEL
        self.id = f"{ENGINE}:{self.name}"
        try:
            check_model_name(self.model)
        except ProviderBadRequest as exc:
            raise ProviderBadRequest(exc.message.replace("google:", f"{self.id} "), provider=self.id) from None
        self.base_url = check_base_url(base_url, "the Gemini API's address") if base_url else None
        self.timeouts = timeouts or ProviderTimeouts()
        self._key = key
        self._clients: LoopClients[genai.Client] = LoopClients(self._build_client, _close_client)

    def _build_client(self) -> genai.Client:
        assert self._key is not None
        read = max(self.timeouts.first_token, self.timeouts.idle)
        per_request = {"connect": self.timeouts.connect, "read": read, "write": read, "pool": self.timeouts.connect}

        async def set_timeouts(request: Any) -> None:
            request.extensions = {**request.extensions, "timeout": per_request}

        http_options = types.HttpOptions(
            base_url=self.base_url,
            # Google documents the TTS models (previews, speechConfig) on v1beta; the SDK's default is v1.
            api_version=API_VERSION,
            retry_options=types.HttpRetryOptions(attempts=1),
            # An explicit httpx transport keeps the SDK on httpx even when aiohttp is installed (mlflow brings
            # it): the SDK would otherwise switch to aiohttp and silently drop these hooks and timeouts.
            async_client_args={"event_hooks": {"request": [set_timeouts], "response": [_collect_response]},
                               "transport": PerLoopTransport()},
        )
        try:
            return genai.Client(api_key=self._key.reveal(), http_options=http_options)
        except ValueError as exc:
            raise ProviderBadRequest(f"{self.id}: cannot configure the Gemini client: {redact(str(exc))}",
                                     provider=self.id) from None

    def __repr__(self) -> str:
        base = f", base_url={redact(self.base_url)!r}" if self.base_url else ""
        source = f" ({self._key.source})" if self._key is not None and self._key.source else ""
        return f"GeminiVoice(id={self.id!r}, model={self.model!r}{base}, key=set{source})"

    async def aclose(self) -> None:
        """Close the SDK clients' connection pools; the voice builds new ones if used again."""
        await self._clients.aclose()

    def _config(self) -> types.GenerateContentConfig:
        return types.GenerateContentConfig(
            response_modalities=["AUDIO"],
            speech_config=types.SpeechConfig(voice_config=types.VoiceConfig(
                prebuilt_voice_config=types.PrebuiltVoiceConfig(voice_name=self.name))),
            # Client-side only: a broken stream must reach us as an error, not be resumed silently.
            automatic_continuation=False,
        )

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Stream the speech of ``text`` part by part; nothing for text with nothing to say."""
        if not text.strip():
            return
        client = self._clients.get()
        responses: list[Any] = []
        sdk_stream: Any = None
        finish: types.FinishReason | None = None
        odd = b""
        received = 0
        warned_rate = False
        try:
            sdk_stream = await self._step(
                client.aio.models.generate_content_stream(model=self.model, contents=text, config=self._config()),
                responses, received=0)
            for index in itertools.count():
                chunk = await self._step(anext(sdk_stream, None), responses, received=received)
                if chunk is None:
                    break
                feedback = chunk.prompt_feedback
                if feedback is not None and feedback.block_reason:
                    raise ProviderError(f"{self.id}: the text was blocked ({_enum_name(feedback.block_reason)})",
                                        provider=self.id, retryable=False)
                if not chunk.candidates:
                    continue
                candidate = chunk.candidates[0]
                for part in (candidate.content.parts or []) if candidate.content else []:
                    blob = part.inline_data
                    if blob is None or not blob.data:
                        continue
                    rate = pcm_rate(blob.mime_type)
                    if rate is None:
                        raise MalformedStream(f"{self.id}: chunk {index} carries {redact(str(blob.mime_type))!r}, "
                                              "not raw PCM16", provider=self.id, status=200)
                    if rate != SAMPLE_RATE and not warned_rate:
                        log.warning("Gemini sent audio at an unexpected rate; chunks carry the real rate",
                                    extra={"voice": self.id, "sample_rate": rate})
                        warned_rate = True
                    received += len(blob.data)
                    audio = odd + blob.data
                    whole = len(audio) - len(audio) % 2
                    odd = audio[whole:]
                    if whole:
                        yield SpeechChunk(pcm=audio[:whole], sample_rate=rate)
                if candidate.finish_reason:
                    finish = candidate.finish_reason
                    if finish not in _OK_FINISH:
                        why = f": {redact(candidate.finish_message)}" if candidate.finish_message else ""
                        raise ProviderError(f"{self.id}: the model stopped with finish reason {_enum_name(finish)}"
                                            f"{why} (the audio is incomplete)", provider=self.id, retryable=False)
        finally:
            await _release(sdk_stream, responses)
        if odd:
            raise MalformedStream(f"{self.id}: the audio ended in the middle of a 16-bit sample after {received} "
                                  "bytes", provider=self.id, status=200)
        if finish is None:
            raise MalformedStream(f"{self.id}: the stream ended without a finish reason after {received} bytes of "
                                  "audio (cut short)", provider=self.id, status=200)
        if received == 0:
            raise MalformedStream(f"{self.id}: the reply carried no audio", provider=self.id, status=200)

    async def _step(self, awaitable: Any, responses: list[Any], *, received: int) -> Any:
        """Await one step of the SDK with this stream's response sink active; map what it raises."""
        token = _RESPONSE_SINK.set(responses)
        try:
            return await awaitable
        except ProviderError:
            raise
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error
            responded = any(getattr(r, "status_code", None) == 200 for r in responses)
            raise self._map_error(exc, responded=responded, received=received) from None
        finally:
            _RESPONSE_SINK.reset(token)

    def _map_error(self, exc: Exception, *, responded: bool, received: int) -> ProviderError:
        name = self.id
        kind = type(exc).__name__
        text = redact(str(exc)).strip()
        detail = _clip(text) if text else ""
        cause = f"{kind}: {detail}" if detail else kind
        where = f"after {received} bytes of audio" if responded else "before the response"
        if isinstance(exc, genai_errors.APIError):
            return self._map_api_error(exc, in_stream=responded)
        if isinstance(exc, genai_errors.UnknownApiResponseError):
            return MalformedStream(f"{name}: a stream chunk is not valid JSON {where} ({detail})", provider=name,
                                   status=200)
        if isinstance(exc, _CONNECT_TIMEOUT):
            return ProviderTimeout(f"{name}: no connection within {self.timeouts.connect:g}s ({kind})",
                                   provider=name)
        if isinstance(exc, _TIMEOUT):
            read = max(self.timeouts.first_token, self.timeouts.idle)
            return ProviderTimeout(f"{name}: nothing within the {read:g}s read timeout {where} ({kind})",
                                   provider=name)
        if isinstance(exc, _CONNECT_ERROR):
            return ProviderUnavailable(f"{name}: cannot connect ({cause})", provider=name)
        if isinstance(exc, _BODY_BROKEN):
            if responded:
                return MalformedStream(f"{name}: the stream was cut off {where} ({cause})", provider=name,
                                       status=200)
            return ProviderUnavailable(f"{name}: the connection was closed or reset before a response ({cause})",
                                       provider=name)
        if isinstance(exc, _TRANSPORT):
            return ProviderUnavailable(f"{name}: transport failure ({cause})", provider=name)
        if isinstance(exc, json.JSONDecodeError):
            return MalformedStream(f"{name}: a stream chunk is not valid JSON ({detail})", provider=name)
        if isinstance(exc, ValueError):  # the SDK validates its arguments with ValueError
            return ProviderBadRequest(f"{name}: request rejected by google-genai: {detail}", provider=name)
        return ProviderError(f"{name}: unexpected {cause} {where}", provider=name)

    def _map_api_error(self, exc: genai_errors.APIError, *, in_stream: bool) -> ProviderError:
        name = self.id
        code = exc.code if isinstance(exc.code, int) else None
        status = exc.status or ""
        message = redact(str(exc.message or "")) or "no message"
        where = " (error event inside the stream)" if in_stream else ""
        text = f"{name}: HTTP {code if code is not None else '?'} {status}{where}: {_clip(message)}"
        body = json.dumps(exc.details, default=str) if exc.details is not None else ""
        if code == 400 and "API_KEY_INVALID" in body:
            return ProviderAuthError(f"{text} (the Google API key was rejected)", provider=name, status=code)
        if code in (401, 403):
            return ProviderAuthError(text, provider=name, status=code)
        if code == 429:
            retry_after = retry_after_of(exc)
            hint = f" (retry after {retry_after:g}s)" if retry_after is not None else ""
            return RateLimited(text + hint, retry_after=retry_after, provider=name, status=code)
        if code is not None and code >= 500:
            return ProviderUnavailable(text, provider=name, status=code)
        if code == 408:
            return ProviderTimeout(text, provider=name, status=code)
        if code is not None and 400 <= code < 500:
            return ProviderBadRequest(f"{text} (voice {self.name!r}, model {self.model!r})", provider=name,
                                      status=code)
        return ProviderError(text, provider=name, status=code)


async def _release(sdk_stream: Any, responses: list[Any]) -> None:
    # google-genai's response object keeps its own iterator in a reference cycle: closing the SDK's generator
    # leaves the connection open until the garbage collector runs. Closing the httpx responses frees it now.
    if sdk_stream is not None:
        with contextlib.suppress(Exception):
            await sdk_stream.aclose()
    for response in responses:
        with contextlib.suppress(Exception):
            await response.aclose()


async def _close_client(client: genai.Client) -> None:
    with contextlib.suppress(Exception):
        await client.aio.aclose()
    with contextlib.suppress(Exception):
        client.close()


def _enum_name(value: Any) -> str:
    return str(getattr(value, "value", value))


def _clip(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[:limit] + "..."


def _factory(name: str, *, key: Secret | None = None, model: str | None = None, base_url: str | None = None,
             timeouts: ProviderTimeouts | None = None, **_: object) -> GeminiVoice:
    return GeminiVoice(name, key=key, model=model, base_url=base_url, timeouts=timeouts or ProviderTimeouts())


register_engine(ENGINE, _factory)

"""Cloud speech-to-text: OpenAI's ``POST /v1/audio/transcriptions`` through the official ``openai`` SDK.

``make_stt("openai:gpt-transcribe")`` (or ``openai:whisper-1``, ``openai:gpt-4o-mini-transcribe``, ...) uploads
the utterance as a 16 kHz PCM16 WAV (``file=("audio.wav", wav, "audio/wav")``, multipart/form-data) and reads
the JSON ``{"text": ...}`` answer. ``base_url`` is configurable (tests point it at the loopback fake of
``avatarium_lab.testing.fake_stt``).

Keys work as for chat providers and cloud voices: an explicit :class:`~avatarium_lab.secrets.Secret`, else
``resolve_key("openai", ...)`` (the tenant's own key, ``$OPENAI_API_KEY``, the keyring). No key is a
``ProviderAuthError`` before any request (left to itself the SDK would read the environment). The SDK's retries
are off and every failure becomes the typed ``ProviderError`` family with the key scrubbed: 401/403
``ProviderAuthError``, 400/404/413/422 ``ProviderBadRequest``, 429 ``RateLimited`` (``retry_after`` from the
headers or the message), 5xx and refused/reset connections ``ProviderUnavailable``, timeouts
``ProviderTimeout``, a body that is not the promised JSON ``MalformedStream``. The SDK clients, the header
hygiene and the error helpers are the chat adapter's (``providers.openai_chat``, ``providers.loops``).
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any

import httpx2
import numpy as np
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
from ..secrets import Secret, redact, resolve_key
from ..tts.audio import wav_bytes
from . import Transcript, register_stt
from .audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE, is_silent, prepare

log = logging.getLogger(__name__)

ENGINE = "openai"
DEFAULT_MODEL = "gpt-transcribe"
"""The SDK's list marks whisper-1 and the gpt-4o(-mini)-transcribe models deprecated (shutdown 2027-02-26)."""
DEFAULT_BASE_URL = "https://api.openai.com/v1"
MAX_UPLOAD_BYTES = 25 * 1024 * 1024
"""OpenAI's limit on the uploaded file; a 16 kHz PCM16 WAV reaches it after ~13 minutes."""
_MODEL = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")


class OpenAISTT:
    """OpenAI transcription with ``model``; ``key`` a ``Secret`` (resolve one with ``make_stt``)."""

    def __init__(self, model: str = DEFAULT_MODEL, *, key: Secret | None, base_url: str | None = None,
                 timeouts: ProviderTimeouts = ProviderTimeouts(), max_seconds: float = DEFAULT_MAX_SECONDS,
                 prompt: str | None = None) -> None:
        if not isinstance(model, str) or not _MODEL.match(model):
            raise ConfigError(f"stt: {redact(str(model))!r} is not an OpenAI transcription model id (e.g. "
                              f"'openai:{DEFAULT_MODEL}')")
        self.model = model
        self.name = f"{ENGINE}:{model}"
        if key is not None and not isinstance(key, Secret):
            raise TypeError("key must be an avatarium_lab.secrets.Secret, never a plain string")
        if key is None:
            raise ProviderAuthError(f"{self.name}: no API key (set OPENAI_API_KEY, store one in the keyring, or "
                                    "give the tenant its own key)", provider=self.name)
        base = (base_url or DEFAULT_BASE_URL).rstrip("/")
        try:
            url = httpx2.URL(base)
        except (httpx2.InvalidURL, ValueError, TypeError):
            url = None
        if url is None or url.scheme not in ("http", "https") or not url.host:
            raise ConfigError(f"stt.base_url: {redact(str(base_url))!r} is not an http(s) URL with a host "
                              "(OpenAI's ends in /v1)")
        self.base_url = base
        self.timeouts = timeouts or ProviderTimeouts()
        self.max_seconds = float(max_seconds)
        self.prompt = prompt
        self._key = key
        self._clients: LoopClients[openai.AsyncOpenAI] = LoopClients(self._build_client, _close_openai)

    def _build_client(self) -> openai.AsyncOpenAI:
        assert self._key is not None
        token = self._key.reveal()
        # $OPENAI_CUSTOM_HEADERS would be added to every request (and could replace our Authorization).
        headers: dict[str, Any] = {
            h: (f"Bearer {token}" if h.lower() == "authorization" else openai.omit) for h in _env_header_names()
        }
        # Not streamed: the whole answer comes after the whole upload, so the read timeout covers both.
        read = max(self.timeouts.first_token, self.timeouts.idle)
        return openai.AsyncOpenAI(api_key=token, base_url=self.base_url, max_retries=0,
                                  timeout=openai.Timeout(read, connect=self.timeouts.connect),
                                  default_headers=headers)

    def __repr__(self) -> str:
        source = f" ({self._key.source})" if self._key is not None and self._key.source else ""
        return f"OpenAISTT(model={self.model!r}, base_url={redact(self.base_url)!r}, key=set{source})"

    async def aclose(self) -> None:
        """Close the SDK clients; the engine builds new ones if used again."""
        await self._clients.aclose()

    async def transcribe(self, samples: np.ndarray, sample_rate: int, *, language: str = "en") -> Transcript:
        t0 = time.perf_counter()
        code, audio, duration = await prepare(samples, sample_rate, engine=self.name, language=language,
                                              english_only=False, max_seconds=self.max_seconds)
        iso = code.split("-")[0]
        if is_silent(audio):  # nothing to hear: no paid request
            return Transcript("", iso, duration, time.perf_counter() - t0, self.name)
        wav = await asyncio.to_thread(wav_bytes, audio, SAMPLE_RATE)
        if len(wav) > MAX_UPLOAD_BYTES:
            raise ProviderBadRequest(f"{self.name}: {duration:.0f} s of audio is over OpenAI's 25 MB upload limit",
                                     provider=self.name)
        extra: dict[str, Any] = {"prompt": self.prompt} if self.prompt else {}
        client = self._clients.get()
        try:
            result = await client.audio.transcriptions.create(
                model=self.model, file=("audio.wav", wav, "audio/wav"), language=iso, response_format="json",
                **extra)
        except Exception as exc:  # noqa: BLE001 - every failure becomes a typed error
            raise self._map_error(exc) from None
        text = getattr(result, "text", None)
        if not isinstance(text, str):
            raise MalformedStream(f"{self.name}: the answer has no 'text' ({type(result).__name__})",
                                  provider=self.name, status=200)
        return Transcript(text.strip(), iso, duration, time.perf_counter() - t0, self.name)

    def _map_error(self, exc: Exception) -> ProviderError:
        name = self.name
        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, openai.APIStatusError):
            return self._map_status(exc)
        if isinstance(exc, openai.APITimeoutError | httpx2.TimeoutException):
            read = max(self.timeouts.first_token, self.timeouts.idle)
            return ProviderTimeout(f"{name}: no answer in time (connect {self.timeouts.connect:g}s, read {read:g}s): "
                                   f"{_cause_chain(exc)}", provider=name)
        if isinstance(exc, openai.APIConnectionError | httpx2.TransportError):
            return ProviderUnavailable(f"{name}: cannot reach {redact(self.base_url)} (refused, reset or cut off): "
                                       f"{_cause_chain(exc)}", provider=name)
        if isinstance(exc, json.JSONDecodeError | openai.APIResponseValidationError):
            return MalformedStream(f"{name}: the answer is not the JSON promised: {_cause_chain(exc)}",
                                   provider=name, status=200)
        if isinstance(exc, openai.OpenAIError):
            return ProviderError(f"{name}: SDK error: {_cause_chain(exc)}", provider=name)
        return ProviderError(f"{name}: unexpected {type(exc).__name__}: {_cause_chain(exc)}", provider=name)

    def _map_status(self, exc: openai.APIStatusError) -> ProviderError:
        return map_status(exc, self.name, model=self.model, bad_request=(400, 404, 413, 415, 422))

async def _close_openai(client: openai.AsyncOpenAI) -> None:
    await client.close()


def _factory(variant: str, *, key: Secret | None = None, byok: Mapping[str, Secret | str] | None = None,
             api_key_env: str | None = None, environ: Mapping[str, str] | None = None, use_keyring: bool = True,
             base_url: str | None = None, timeouts: ProviderTimeouts | None = None,
             max_seconds: float = DEFAULT_MAX_SECONDS, prompt: str | None = None, **_: object) -> OpenAISTT:
    model = variant.strip() or DEFAULT_MODEL
    if key is None:
        key = resolve_key("openai", byok=byok, env_var=api_key_env, environ=environ, use_keyring=use_keyring)
    return OpenAISTT(model, key=key, base_url=base_url, timeouts=timeouts or ProviderTimeouts(),
                     max_seconds=max_seconds, prompt=prompt)


register_stt(ENGINE, _factory)

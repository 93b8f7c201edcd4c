"""From a voice configuration to a ready voice: catalog lookup, plan gating, keys, loudness and sample rate.

``build_voice(config.voice, persona, context)`` picks the voice id (configuration, else the persona's), checks
the plan (premium voices need a plan with premium: ``PlanRequired`` before any network call), resolves the
vendor key for cloud voices (BYOK, environment, keyring), builds the engine's voice and wraps it in
``LevelledVoice``, which normalises loudness to a common target and resamples, so voices compare fairly.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING, Any

from ..config import VoiceConfig
from ..errors import ProviderAuthError
from ..providers import ProviderTimeouts
from ..secrets import resolve_key
from . import SpeechChunk, Voice, get_voice
from .audio import CALIBRATION_TEXT, apply_gain, integrated_loudness, pcm16_to_float, resample_pcm16
from .catalog import ENGINE_VENDOR, check_voice_plan

if TYPE_CHECKING:
    from ..personality import Persona
    from ..providers.build import ProviderContext

log = logging.getLogger(__name__)

# Keyed by the engine voice's repr, which names every setting that changes its level (espeak's volume, a
# Piper model path), so two voices of one id with different settings never share a gain.
_GAINS: dict[tuple[str, float], float] = {}
_GAINS_LOCK = threading.Lock()
_MAX_GAIN_DB = 24.0


class LevelledVoice:
    """A voice at a common loudness (``target_lufs``) and, optionally, another sample rate.

    The gain is measured once per voice and target (``calibrate``: one sentence through the voice, BS.1770
    integrated loudness) and then applied to every chunk as a constant, so levels never pump within a reply.
    Timings are untouched: resampling keeps durations.
    """

    def __init__(self, inner: Voice, *, target_lufs: float | None = -20.0, sample_rate: int | None = None) -> None:
        self.inner = inner
        self.id = inner.id
        self.has_timings = inner.has_timings
        self.sample_rate = sample_rate or inner.sample_rate
        self.target_lufs = target_lufs
        self._out_rate = sample_rate

    def __repr__(self) -> str:
        return f"LevelledVoice({self.inner!r}, target_lufs={self.target_lufs}, sample_rate={self.sample_rate})"

    def __getattr__(self, name: str) -> Any:  # rate, pitch, aclose ... of the engine's voice
        return getattr(self.inner, name)

    @property
    def gain_db(self) -> float | None:
        if self.target_lufs is None:
            return 0.0
        return _GAINS.get((repr(self.inner), self.target_lufs))

    async def calibrate(self) -> float:
        """Measure the engine's loudness once and remember the gain for every voice with the same settings."""
        if self.target_lufs is None:
            return 0.0
        known = self.gain_db
        if known is not None:
            return known
        chunks = [c async for c in self.inner.synthesize(CALIBRATION_TEXT)]
        rate = chunks[0].sample_rate if chunks else self.inner.sample_rate
        loudness = integrated_loudness(pcm16_to_float(b"".join(c.pcm for c in chunks)), rate)
        gain = 0.0 if loudness == float("-inf") else max(-_MAX_GAIN_DB, min(_MAX_GAIN_DB, self.target_lufs - loudness))
        with _GAINS_LOCK:
            _GAINS[(repr(self.inner), self.target_lufs)] = gain
        log.info("voice loudness calibrated", extra={"voice": self.id, "lufs": loudness, "gain_db": gain})
        return gain

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        gain = self.gain_db
        if gain is None:
            gain = await self.calibrate()
        agen = self.inner.synthesize(text)
        try:
            async for chunk in agen:
                pcm = apply_gain(chunk.pcm, gain)
                rate = chunk.sample_rate
                if self._out_rate and rate != self._out_rate:
                    pcm, rate = resample_pcm16(pcm, rate, self._out_rate), self._out_rate
                yield SpeechChunk(pcm=pcm, sample_rate=rate, phonemes=chunk.phonemes)
        finally:
            await agen.aclose()  # barge-in: closing us stops the engine at once


def build_voice(cfg: VoiceConfig, persona: Persona, context: ProviderContext | None = None) -> LevelledVoice:
    voice_id = cfg.id or persona.voice.id
    plan = context.plan if context is not None else "free"
    check_voice_plan(voice_id, plan)
    engine = voice_id.partition(":")[0]
    params: dict[str, Any] = {
        "rate": cfg.rate if cfg.rate is not None else persona.voice.rate,
        "pitch": cfg.pitch if cfg.pitch is not None else persona.voice.pitch,
    }
    if cfg.model_path:
        params["model_path"] = cfg.model_path
    vendor = ENGINE_VENDOR.get(engine)
    if vendor is not None:
        key = resolve_key(vendor, byok=context.byok if context else None, env_var=cfg.api_key_env,
                          environ=context.environ if context else None,
                          use_keyring=context.use_keyring if context else True)
        if key is None:
            raise ProviderAuthError(f"no API key for the {engine} voice: set the {vendor} key (see `avatarium "
                                    f"voices`), store one in the keyring, or give the tenant its own key",
                                    provider=voice_id)
        t = cfg.timeouts
        params.update(key=key, model=cfg.model, base_url=cfg.base_url,
                      timeouts=ProviderTimeouts(connect=t.connect, first_token=t.first_token, idle=t.idle))
    inner = get_voice(voice_id, **params)
    return LevelledVoice(inner, target_lufs=cfg.loudness_lufs, sample_rate=cfg.sample_rate)

"""The floor: open-vocabulary dictation with pocketsphinx's bundled en-US model (no extra package, no download).

pocketsphinx 5.1.x ships the en-US continuous acoustic model, the CMU dictionary and a trigram language model
(``pocketsphinx.get_model_path()``), the same package the lip-sync aligner uses for forced alignment. Here it
decodes without a grammar: the whole utterance in one ``process_raw(full_utt=True)`` pass over 16 kHz PCM16.
It is always available but much weaker than Whisper: measured here, WER ~34% on clean human TIMIT speech and
~90% on espeak's synthetic speech (its acoustic model was never trained on anything like it). Words come with
their 10 ms frame timings; fillers (``<s>``, ``<sil>``, ``[NOISE]``) are dropped and alternate pronunciations
(``the(2)``) named by their word.

The decoder's cepstral mean (CMN) estimate carries over from one utterance to the next, and on hard audio that
changed the words recognised (the same TIMIT clip decoded differently after another one). It is reset to the
model's initial estimate before every utterance, so a transcript depends on its own audio only; WER was the
same either way (47.8% on 12 TIMIT utterances).
"""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
from typing import Any

import numpy as np

from ..errors import SpeechToTextError
from . import TimedWord, Transcript, register_stt
from .audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE, is_silent, prepare

log = logging.getLogger(__name__)

ENGINE = "pocketsphinx"
FRAME = 0.010
_ALTERNATE = re.compile(r"\(\d+\)$")


class PocketsphinxSTT:
    """pocketsphinx dictation, English only; one decoder per instance, loaded on first use (~0.4 s)."""

    name = ENGINE

    def __init__(self, *, max_seconds: float = DEFAULT_MAX_SECONDS, **decoder_options: Any) -> None:
        self.max_seconds = float(max_seconds)
        self._options = dict(decoder_options)
        self._decoder: Any = None
        self._lock = threading.Lock()
        self._cmn_init: str | None = None

    def __repr__(self) -> str:
        return f"PocketsphinxSTT(options={self._options!r}, loaded={self._decoder is not None})"

    def load(self) -> None:
        """Create the decoder now, if not yet. Blocking."""
        with self._lock:
            self._load_locked()

    def _load_locked(self) -> Any:
        if self._decoder is None:
            try:
                from pocketsphinx import Decoder
            except ImportError:  # pragma: no cover - a dependency of the package
                raise SpeechToTextError("the pocketsphinx engine needs the 'pocketsphinx' package (pip install "
                                        "pocketsphinx)", engine=ENGINE, code="stt_model_missing") from None
            try:
                # loglevel FATAL: pocketsphinx logs straight to stderr from C.
                self._decoder = Decoder(samprate=SAMPLE_RATE, loglevel="FATAL", **self._options)
                self._cmn_init = self._decoder.get_cmn(False)
            except (RuntimeError, ValueError, KeyError) as exc:
                raise SpeechToTextError(f"cannot create the pocketsphinx decoder: {exc}", engine=ENGINE,
                                        code="stt_model_missing") from None
        return self._decoder

    async def transcribe(self, samples: np.ndarray, sample_rate: int, *, language: str = "en") -> Transcript:
        t0 = time.perf_counter()
        _, audio, duration = await prepare(samples, sample_rate, engine=ENGINE, language=language, english_only=True,
                                           max_seconds=self.max_seconds)
        if is_silent(audio):
            return Transcript("", "en", duration, time.perf_counter() - t0, ENGINE)
        words = await asyncio.to_thread(self._decode, audio)
        text = " ".join(w.word for w in words)
        return Transcript(text, "en", duration, time.perf_counter() - t0, ENGINE, words)

    def _decode(self, audio: np.ndarray) -> tuple[TimedWord, ...]:
        pcm = (audio * 32768.0).round().clip(-32768, 32767).astype("<i2").tobytes()
        with self._lock:
            d = self._load_locked()
            try:
                # Each utterance on its own: no user's audio shapes the next one's. A fresh front end (its noise
                # estimate included; 0.1 ms) and the initial cepstral mean.
                d.reinit_feat()
                if self._cmn_init is not None:
                    d.set_cmn(self._cmn_init)
                d.start_utt()
                d.process_raw(pcm, full_utt=True)
                d.end_utt()
                if d.hyp() is None:
                    return ()
                segments = [(s.word, s.start_frame, s.end_frame) for s in d.seg()]
            except RuntimeError as exc:
                raise SpeechToTextError(f"pocketsphinx failed: {exc}", engine=ENGINE) from None
        words = []
        for word, start, end in segments:
            if word.startswith(("<", "[")):
                continue
            words.append(TimedWord(_ALTERNATE.sub("", word), round(start * FRAME, 3), round((end + 1) * FRAME, 3)))
        return tuple(words)


def _factory(variant: str, *, max_seconds: float = DEFAULT_MAX_SECONDS, decoder_options: dict[str, Any] | None = None,
             **_: object) -> PocketsphinxSTT:
    if variant:
        from ..errors import UnknownSpeechToText

        raise UnknownSpeechToText(f"unknown speech-to-text engine {ENGINE}:{variant!r}: the engine is just {ENGINE!r}")
    return PocketsphinxSTT(max_seconds=max_seconds, **(decoder_options or {}))


register_stt(ENGINE, _factory)

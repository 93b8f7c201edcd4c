"""The ``pocketsphinx`` aligner: HMM forced alignment of the text against the audio with CMU pocketsphinx 5.

pocketsphinx (PyPI 5.1.x) bundles the en-US continuous acoustic model and the CMU pronouncing dictionary; no
download is needed. Alignment runs in two passes over 16 kHz PCM16 (the model's rate; input is resampled with
soxr): ``set_align_text`` + decode gives word boundaries, then ``set_alignment`` + a second decode gives the
phones of those words in 10 ms frames. Optional silences between words are part of the alignment grammar and
come back as ``SIL``; they, and the noise phones, are dropped, so pauses are gaps (rest) in the result.

Things measured on this machine that shape the code (pocketsphinx 5.1.1, espeak-ng and TIMIT speech):

* With pocketsphinx's default beams the alignment search prunes away the only path on two of three espeak
  sentences ("Final result does not match the grammar"). The grammar is a single linear sequence of words, so
  very wide beams with no HMM cap cost little (real-time factor ~0.05) and made every test sentence align.
* A phone that starts at frame ``i`` is first *seen* in the 25.6 ms analysis window centred at
  ``i * 10 ms + 12.8 ms``; placing the boundary between the centres of frames ``i - 1`` and ``i`` (``+7.8 ms``)
  raised frame accuracy against espeak's own timings by ~5 points over taking ``i * 10 ms`` literally.
* Words the dictionary lacks (names, numbers, made-up words) get the pronunciation espeak-ng would speak, via
  the phonemizer front end, mapped from IPA to the model's 39 ARPAbet phones (the inverse of
  :data:`avatarium_lab.tts.festival.ARPABET_TO_IPA` plus the nearest phone for IPA the set lacks). Numbers are
  left to this too: espeak expands ``3.5`` or ``1,000`` as it says them.

Silence-only audio, or text with no word to say, aligns to ``()``. When pocketsphinx cannot align (the words are
not in the audio, say) the text-proportional baseline's timings are returned with a logged warning, and
``last_fallback`` is set, so callers always get a usable track.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any

import numpy as np

from ..errors import LipSyncError
from ..events import TimedPhoneme
from ..tts.festival import ARPABET_TO_IPA
from .aligners import register_aligner, text_proportional, voiced_spans
from .audio_io import resample_for
from .phonemize import phonemize, strip_marks

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
"""The rate of the bundled acoustic model."""
FRAME = 0.010
"""pocketsphinx's frame shift, seconds."""
BOUNDARY_OFFSET = 0.0078
"""Seconds from frame ``i``'s start to the phone boundary it marks: midway between the centres of frames
``i - 1`` and ``i`` (the analysis window is 25.6 ms long, so a frame's centre lies 12.8 ms after its start)."""

# Wide beams, no cap on active HMMs: forced alignment searches one linear grammar, so this stays cheap
# (see the module docstring), while pocketsphinx's dictation-tuned defaults lose the path on synthetic speech.
DECODER_OPTIONS: dict[str, Any] = {
    "beam": 0.0, "pbeam": 0.0, "wbeam": 0.0, "lpbeam": 0.0, "maxhmmpf": -1,
    "silprob": 0.1,
}
_RETRY_PAD = 0.25
"""Seconds of silence added around the audio for the second attempt: speech that touches the edges of the file
leaves the grammar's optional leading/trailing silence nothing to match."""

_SILENCE_PHONES = frozenset({"SIL"})

# IPA that the phonemizer (espeak-ng) writes but the model's phone set has no phone for, with the nearest one.
# Keys are compared after ``strip_marks`` (no stress, length or combining marks).
_EXTRA_IPA_TO_ARPABET: dict[str, str] = {
    "ə": "AH",  # CMU's dictionary writes unstressed schwa as AH too
    "ɐ": "AH",
    "ɚ": "ER",
    "ɜ": "ER",
    "ᵻ": "IH", "ɨ": "IH",
    "ɾ": "T",  # the American flap ("better"); CMU spells it T or D, and T is the commoner
    "ʔ": "T",  # glottal stop, as in "button": CMU writes T there
    "x": "K", "ç": "HH", "ɦ": "HH", "ʍ": "W", "r": "R", "ɫ": "L", "g": "G",
    "e": "EY", "o": "OW", "a": "AE", "ɒ": "AA", "ʉ": "UW", "y": "UW", "ɯ": "UW", "ø": "ER", "œ": "ER", "ɵ": "OW",
}

_TOKEN = re.compile(r"[a-z0-9]+(?:['.,:][a-z0-9]+)*%?")
_APOSTROPHES = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'"})


@lru_cache(maxsize=1)
def _ipa_to_arpabet() -> tuple[dict[str, str], int]:
    """IPA segment -> model phone, and the longest key (for greedy matching)."""
    model_phones = {
        "AA", "AE", "AH", "AO", "AW", "AY", "B", "CH", "D", "DH", "EH", "ER", "EY", "F", "G", "HH", "IH", "IY",
        "JH", "K", "L", "M", "N", "NG", "OW", "OY", "P", "R", "S", "SH", "T", "TH", "UH", "UW", "V", "W", "Y",
        "Z", "ZH",
    }
    table = dict(_EXTRA_IPA_TO_ARPABET)
    for arpa, ipa in ARPABET_TO_IPA.items():
        if arpa.upper() in model_phones:
            table[strip_marks(ipa)] = arpa.upper()
    return table, max(len(k) for k in table)


def ipa_to_arpabet(phones: list[str]) -> list[str]:
    """The model's ARPAbet phones for IPA phonemes (merged ones such as ``ɑːɹ`` split: ``AA R``)."""
    table, longest = _ipa_to_arpabet()
    out: list[str] = []
    for phone in phones:
        text = strip_marks(phone)
        i = 0
        while i < len(text):
            for size in range(min(longest, len(text) - i), 0, -1):
                if text[i : i + size] in table:
                    out.append(table[text[i : i + size]])
                    i += size
                    break
            else:
                log.debug("no ARPAbet phone for IPA %r; skipped", text[i])
                i += 1
    return out


def normalize_words(text: str) -> list[str]:
    """The words of ``text`` as dictionary keys: lower case, accents folded to ASCII, punctuation dropped.

    Numbers keep their digits (``3.5``, ``1,000``, ``50%``); the pronunciation step expands them. Hyphens and
    other punctuation split words; apostrophes inside a word stay (``don't``).
    """
    folded = unicodedata.normalize("NFKD", text.translate(_APOSTROPHES).lower())
    folded = "".join(ch for ch in folded if ch.isascii() and not unicodedata.combining(ch))
    folded = folded.replace("&", " and ")
    return _TOKEN.findall(folded)


class PocketsphinxAligner:
    """Forced alignment with pocketsphinx's bundled en-US model; one decoder per instance (loads in ~0.4 s)."""

    name = "pocketsphinx"

    def __init__(self, language: str = "en-us", **decoder_options: Any) -> None:
        if language.lower() not in ("en", "en-us"):
            raise LipSyncError(f"the pocketsphinx aligner has an English (en-us) model only, not {language!r}")
        try:
            from pocketsphinx import Decoder
        except ImportError as exc:  # pragma: no cover - a dependency of the package
            raise LipSyncError("the pocketsphinx aligner needs the 'pocketsphinx' package (pip install "
                               "pocketsphinx)") from exc
        options = {**DECODER_OPTIONS, **decoder_options}
        # loglevel FATAL: pocketsphinx logs straight to stderr from C; its failures come back to us as results.
        self._decoder = Decoder(samprate=SAMPLE_RATE, bestpath=False, loglevel="FATAL", **options)
        self._lock = threading.Lock()
        self.language = "en-us"
        self.last_fallback = False
        """Whether the last ``align`` call returned the text-proportional fallback."""

    def _pronounce(self, word: str) -> str | None:
        """The word's phones in the decoder's dictionary, adding an espeak-derived entry if it has none."""
        known = self._decoder.lookup_word(word)
        if known:
            return known
        try:
            phones = ipa_to_arpabet([p for w in phonemize(word, "en-us") for p in w])
        except LipSyncError as exc:
            log.warning("no pronunciation for %r (%s); left out of the alignment", word, exc)
            return None
        if not phones:
            log.warning("no pronunciation for %r; left out of the alignment", word)
            return None
        pron = " ".join(phones)
        try:
            self._decoder.add_word(word, pron, True)
        except RuntimeError as exc:
            log.warning("pocketsphinx rejected the pronunciation %r of %r (%s); word left out", pron, word, exc)
            return None
        log.debug("added %r to the dictionary as %s", word, pron)
        return pron

    def _decode(self, pcm: bytes, words: list[str]) -> list[tuple[str, int, int]] | None:
        """(phone, first frame, frames) of the forced alignment, or ``None`` when pocketsphinx finds no path."""
        d = self._decoder
        try:
            d.set_align_text(" ".join(words))
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            if d.hyp() is None:
                return None
            d.set_alignment()
            d.start_utt()
            d.process_raw(pcm, full_utt=True)
            d.end_utt()
            alignment = d.get_alignment()
        except RuntimeError as exc:
            log.debug("pocketsphinx alignment failed: %s", exc)
            return None
        if alignment is None:
            return None
        return [(p.name, int(p.start), int(p.duration)) for w in alignment for p in w]

    def align(self, samples: np.ndarray, sample_rate: int, text: str) -> tuple[TimedPhoneme, ...]:
        """Timed IPA phonemes of ``text`` in ``samples`` (float mono, any rate), seconds from the first sample."""
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        self.last_fallback = False
        duration = len(samples) / sample_rate if sample_rate > 0 else 0.0
        words = normalize_words(text)
        if not words or duration <= 0 or not voiced_spans(samples, sample_rate):
            return ()
        audio = np.clip(np.nan_to_num(resample_for(samples, sample_rate, SAMPLE_RATE)), -1.0, 32767 / 32768)
        pcm16 = (audio * 32768.0).round().astype("<i2")
        with self._lock:
            words = [w for w in words if self._pronounce(w)]
            if not words:
                return ()
            phones = self._decode(pcm16.tobytes(), words)
            offset = 0.0
            if phones is None:
                pad = np.zeros(int(_RETRY_PAD * SAMPLE_RATE), dtype="<i2")
                phones = self._decode(np.concatenate([pad, pcm16, pad]).tobytes(), words)
                offset = _RETRY_PAD
        if phones is None:
            log.warning("pocketsphinx could not align %d words to %.2f s of audio; using text-proportional timings",
                        len(words), duration)
            self.last_fallback = True
            return text_proportional(samples, sample_rate, text, language=self.language)
        return _timed(phones, offset, duration)


def _timed(phones: list[tuple[str, int, int]], offset: float, duration: float) -> tuple[TimedPhoneme, ...]:
    """Frame spans to IPA phonemes in seconds: silences dropped, clamped into the audio, never overlapping."""
    out: list[TimedPhoneme] = []
    cursor = 0.0
    for name, start, frames in phones:
        if name in _SILENCE_PHONES or name.startswith("+") or frames <= 0:
            continue
        symbol = ARPABET_TO_IPA.get(name.lower())
        if symbol is None:
            log.debug("pocketsphinx phone %r has no IPA mapping; skipped", name)
            continue
        begin = min(max(start * FRAME + BOUNDARY_OFFSET - offset, cursor), duration)
        end = min((start + frames) * FRAME + BOUNDARY_OFFSET - offset, duration)
        if end - begin < 1e-6:
            continue
        out.append(TimedPhoneme(symbol, round(begin, 6), round(end, 6)))
        cursor = end
    return tuple(out)


register_aligner("pocketsphinx", PocketsphinxAligner)

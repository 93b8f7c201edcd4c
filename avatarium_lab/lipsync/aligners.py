"""Aligners: audio + its text -> timed phonemes, for voices that report no timings of their own.

Every aligner implements ``Aligner.align(samples, sample_rate, text)`` (float mono samples at any rate) and is
registered under a name; ``get_aligner(name)`` builds one. Built in: ``text-proportional`` (here),
``pocketsphinx`` (HMM forced alignment with the en-US model bundled by the PyPI package) and ``neural`` (this
project's acoustic model, ONNX, with a Viterbi forced-alignment step).

``text_proportional`` is the baseline every lip-sync method is measured against: the text's phonemes (from
the phonemizer front end) spread over the voiced parts of the audio found by an energy detector, each phoneme
taking time in proportion to a typical duration for its class (vowels longer than consonants), pauses left
silent. It needs nothing but the text and the samples and runs in well under a millisecond per second of audio.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from typing import Protocol, runtime_checkable

import numpy as np

from ..errors import LipSyncError
from ..events import TimedPhoneme
from .phonemize import phonemize, strip_marks

_FRAME = 0.010  # seconds per energy frame
_MIN_GAP = 0.08  # shorter silences are treated as part of speech (stop closures)
_MIN_SPAN = 0.03
_VOWELS = set("aeiouyɑɐɒæɛɜəɘɪʊʌɔœøɤɯɨʉ")


def voiced_spans(samples: np.ndarray, sample_rate: int) -> list[tuple[float, float]]:
    """(start, end) seconds of the parts of ``samples`` loud enough to be speech."""
    hop = max(1, int(_FRAME * sample_rate))
    frame = hop / sample_rate  # the true frame length: 220 samples at 22,050 Hz is 9.977 ms, not 10
    n = len(samples) // hop
    if n == 0:
        return []
    frames = samples[: n * hop].astype(np.float32).reshape(n, hop)
    energy = np.sqrt((frames**2).mean(axis=1) + 1e-12)
    loud = float(np.percentile(energy, 95))
    if loud < 1e-4:
        return []
    floor = float(np.percentile(energy, 10))
    # Relative to the loud frames and clear of the noise floor: robust to the level of the recording.
    active = energy > max(0.08 * loud, 3.0 * floor)
    spans: list[list[float]] = []
    for i, on in enumerate(active):
        if not on:
            continue
        t0, t1 = i * frame, (i + 1) * frame
        if spans and t0 - spans[-1][1] <= _MIN_GAP:
            spans[-1][1] = t1
        else:
            spans.append([t0, t1])
    return [(a, b) for a, b in spans if b - a >= _MIN_SPAN]


def _weight(symbol: str) -> float:
    core = strip_marks(symbol)
    if any(ch in _VOWELS for ch in core):
        return 1.0 + 0.4 * (len(core) > 1)  # diphthongs and long vowels last longer
    return 0.65


def text_proportional(samples: np.ndarray, sample_rate: int, text: str, *, language: str = "en-us",
                      phonemes: Sequence[str] | None = None) -> tuple[TimedPhoneme, ...]:
    """Timed phonemes for ``text`` spoken in ``samples`` (float mono): the text-proportional baseline."""
    symbols = list(phonemes) if phonemes is not None else [p for word in phonemize(text, language) for p in word]
    spans = voiced_spans(samples, sample_rate)
    if not symbols or not spans:
        return ()
    weights = np.array([_weight(s) for s in symbols])
    speech = sum(b - a for a, b in spans)
    # Map cumulative phoneme weight onto "speech time" (the voiced spans laid end to end), then back to audio time.
    bounds = np.concatenate([[0.0], np.cumsum(weights) / weights.sum() * speech])
    starts = np.array([a for a, _ in spans])
    offsets = np.concatenate([[0.0], np.cumsum([b - a for a, b in spans])])

    def to_audio_time(t: float) -> float:
        k = min(int(np.searchsorted(offsets, t, side="right")) - 1, len(spans) - 1)
        return float(starts[k] + (t - offsets[k]))

    out = []
    for i, symbol in enumerate(symbols):
        start, end = to_audio_time(bounds[i]), to_audio_time(bounds[i + 1] - 1e-9)
        if end <= start:
            end = start + 1e-3
        out.append(TimedPhoneme(symbol, round(start, 6), round(end, 6)))
    return tuple(out)


@runtime_checkable
class Aligner(Protocol):
    name: str

    def align(self, samples: np.ndarray, sample_rate: int, text: str) -> tuple[TimedPhoneme, ...]:
        """Timed IPA phonemes of ``text`` in ``samples`` (float mono), seconds from the first sample."""
        ...


_ALIGNERS: dict[str, Callable[..., Aligner]] = {}
_BUILTIN = {"text-proportional": "aligners", "pocketsphinx": "pocketsphinx_aligner", "neural": "neural"}


def register_aligner(name: str, factory: Callable[..., Aligner]) -> None:
    _ALIGNERS[name] = factory


def aligner_names() -> list[str]:
    return sorted(set(_ALIGNERS) | set(_BUILTIN))


def get_aligner(name: str, **options: object) -> Aligner:
    """An aligner by name (``text-proportional``, ``pocketsphinx``, ``neural``)."""
    if name not in _ALIGNERS and name in _BUILTIN:
        importlib.import_module(f"{__package__}.{_BUILTIN[name]}")
    if name not in _ALIGNERS:
        raise LipSyncError(f"unknown aligner {name!r}; aligners: {', '.join(aligner_names())}")
    return _ALIGNERS[name](**options)


class TextProportionalAligner:
    """The baseline as an ``Aligner``."""

    name = "text-proportional"

    def __init__(self, language: str = "en-us") -> None:
        self.language = language

    def align(self, samples: np.ndarray, sample_rate: int, text: str) -> tuple[TimedPhoneme, ...]:
        return text_proportional(samples, sample_rate, text, language=self.language)


register_aligner("text-proportional", TextProportionalAligner)

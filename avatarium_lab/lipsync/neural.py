"""Neural aligner: this project's small acoustic model (ONNX, log-mel inside the graph) + Viterbi forced alignment.

``get_aligner("neural")`` builds a :class:`NeuralAligner`. ``align(samples, sample_rate, text)``:

1. resamples the audio to 16 kHz (soxr) and runs ``models/aligner.onnx`` with onnxruntime: raw samples in,
   per-frame log-posteriors over :data:`PHONES` out (100 frames/s; frame ``t`` covers ``[t, t+1) * 10 ms``).
   The log-mel front end (the same one training used, checked there against torchaudio's ``MelSpectrogram``)
   is part of the graph, so training and inference features cannot drift;
2. phonemizes the text (espeak-ng IPA per word), cuts merged symbols into units of the fixed phone set
   (:func:`units`: ``ˈɑːɹ`` -> ``ɑː`` + ``ɹ``, diphthongs and affricates stay whole);
3. finds the best monotonic path through those units (:func:`viterbi`): left to right, each unit at least one
   frame, an optional silence before, between and after words; vectorised over states (one numpy step per frame);
4. returns the units as :class:`TimedPhoneme` (IPA, so ``ipa_to_oculus`` maps them), silences as gaps.

The module needs numpy, onnxruntime and soxr only: torch is a training dependency, never imported here.
``models/aligner.json`` carries the phone set, feature parameters, training configuration, measured metrics
and the model file's sha256 (checked on load).
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import LipSyncError
from ..events import TimedPhoneme
from .aligners import register_aligner, text_proportional, voiced_spans
from .phonemize import marked_segments, phonemize

log = logging.getLogger(__name__)

MODEL_DIR = Path(__file__).resolve().parent / "models"
MODEL_PATH = MODEL_DIR / "aligner.onnx"
META_PATH = MODEL_DIR / "aligner.json"

SAMPLE_RATE = 16_000
FRAME = 0.010
"""Seconds per model frame (hop 160 samples at 16 kHz)."""

SILENCE = "sil"
PHONES: tuple[str, ...] = (
    SILENCE,
    "p", "b", "m", "f", "v", "θ", "ð", "t", "d", "ɾ", "k", "ɡ", "ŋ", "h", "tʃ", "dʒ", "ʃ", "ʒ", "s", "z", "n",
    "l", "ɹ", "j", "w",
    "i", "ɪ", "ɛ", "æ", "ɑ", "ɔ", "ʊ", "u", "ʌ", "ə", "ɚ", "ɜ", "eɪ", "aɪ", "aʊ", "oʊ", "ɔɪ",
)
"""The model's classes: silence + the English phonemes espeak-ng and the festival/flite voices produce."""
PHONE_INDEX = {p: i for i, p in enumerate(PHONES)}

_PAIRS = {"eɪ": "eɪ", "aɪ": "aɪ", "aʊ": "aʊ", "oʊ": "oʊ", "ɔɪ": "ɔɪ", "əʊ": "oʊ", "tʃ": "tʃ", "dʒ": "dʒ"}
"""Two-letter units kept whole (diphthongs, affricates) -> class."""
_ALIASES = {
    "ɐ": "ə", "ᵻ": "ɪ", "ɨ": "ɪ", "ʉ": "u", "ɝ": "ɜ", "a": "æ", "ɒ": "ɑ", "e": "ɛ", "o": "oʊ", "ɫ": "l", "r": "ɹ",
    "ɦ": "h", "ʍ": "w", "x": "k", "g": "ɡ", "ʔ": "t", "ɬ": "l", "ɣ": "ɡ", "ç": "h", "y": "i", "ɵ": "ʊ", "ø": "ɜ",
    "ɘ": "ə", "ɯ": "u", "ʏ": "ʊ", "œ": "ɛ", "ɶ": "æ", "ä": "ɑ", "ɲ": "n", "ɻ": "ɹ", "ʁ": "ɹ", "ɱ": "m",
    "ɡ": "ɡ",
}
"""Other IPA letters -> the nearest class (accents and the ARPAbet-derived symbols of festival and flite)."""
_LONG_WEIGHT = 2.0


@dataclass(frozen=True, slots=True)
class Unit:
    """One unit of the phone set cut out of an IPA symbol: class, IPA text for output, relative duration."""

    phone: str
    ipa: str
    weight: float


@lru_cache(maxsize=4096)
def units(symbol: str) -> tuple[Unit, ...]:
    """``symbol`` (espeak IPA, possibly merged, with stress and length marks) as units of :data:`PHONES`.

    ``ˈɑːɹ`` -> ``(ɑ "ɑː" 2.0, ɹ "ɹ" 1.0)``; ``aɪə`` -> ``aɪ`` + ``ə``; pauses and unknown letters give nothing.
    """
    chars, long_flags = marked_segments(symbol)
    out: list[Unit] = []
    i = 0
    while i < len(chars):
        pair = "".join(chars[i : i + 2])
        if len(pair) == 2 and pair in _PAIRS:
            size, phone = 2, _PAIRS[pair]
        else:
            size, phone = 1, _ALIASES.get(chars[i], chars[i])
        if phone in PHONE_INDEX and phone != SILENCE:
            weight = _LONG_WEIGHT if any(long_flags[i : i + size]) else 1.0
            ipa = "".join(chars[i : i + size]) + ("ː" if weight > 1 else "")
            out.append(Unit(phone, ipa, weight))
        i += size
    return tuple(out)


# --- forced alignment ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class StateGraph:
    """A left-to-right chain: class per state, optional states (silences) that may be skipped, output IPA."""

    classes: np.ndarray
    optional: np.ndarray
    ipa: tuple[str, ...]


def state_graph(words: Sequence[Sequence[str]], *, edge_silence: bool = True) -> StateGraph:
    """States for phonemized ``words``: ``[sil?] w1 units [sil?] w2 units ... [sil?]`` (``?`` = optional)."""
    classes: list[int] = []
    optional: list[bool] = []
    ipa: list[str] = []

    def silence() -> None:
        classes.append(0)
        optional.append(True)
        ipa.append("")

    for k, word in enumerate(words):
        word_units = [u for symbol in word for u in units(symbol)]
        if not word_units:
            continue
        if k > 0 or edge_silence:
            silence()
        for u in word_units:
            classes.append(PHONE_INDEX[u.phone])
            optional.append(False)
            ipa.append(u.ipa)
    if classes and edge_silence:
        silence()
    return StateGraph(np.array(classes, dtype=np.int64), np.array(optional, dtype=bool), tuple(ipa))


def viterbi(logp: np.ndarray, graph: StateGraph, *, silence_penalty: float = 0.0) -> np.ndarray | None:
    """The best path's state per frame through ``graph`` (left to right, every mandatory state ≥ 1 frame).

    ``logp`` is ``[frames, classes]``; entering an optional silence costs ``silence_penalty`` (log units).
    Returns ``None`` when there are fewer frames than mandatory states. One numpy step per frame, vectorised
    over the states; back-pointers are kept as small integers (0 stay, 1 from the previous state, 2 skip one).
    """
    n_frames, n_states = logp.shape[0], len(graph.classes)
    if n_states == 0 or n_frames < int((~graph.optional).sum()):
        return None
    emit = logp[:, graph.classes].astype(np.float64)
    neg = -np.inf
    # A state can be reached by skipping its predecessor when that predecessor is optional.
    skip_ok = np.zeros(n_states, dtype=bool)
    skip_ok[2:] = graph.optional[1:-1]
    enter = np.where(graph.optional, -silence_penalty, 0.0)
    delta = np.full(n_states, neg)
    delta[0] = emit[0, 0] + enter[0]
    if graph.optional[0] and n_states > 1:
        delta[1] = emit[0, 1] + enter[1]
    back = np.zeros((n_frames, n_states), dtype=np.int8)
    prev = np.empty(n_states)
    skip = np.empty(n_states)
    for t in range(1, n_frames):
        prev[0] = neg
        prev[1:] = delta[:-1]
        skip[:2] = neg
        skip[2:] = delta[:-2]
        skip[~skip_ok] = neg
        stay = delta
        best = np.maximum(stay, np.maximum(prev + enter, skip + enter))
        choice = np.where(stay >= best, 0, np.where(prev + enter >= best, 1, 2)).astype(np.int8)
        delta = best + emit[t]
        back[t] = choice
    last = n_states - 1
    end = last if not (graph.optional[last] and n_states > 1 and delta[last - 1] > delta[last]) else last - 1
    if not np.isfinite(delta[end]):
        return None
    path = np.empty(n_frames, dtype=np.int64)
    s = end
    for t in range(n_frames - 1, -1, -1):  # back-tracking: one integer step per frame
        path[t] = s
        s -= int(back[t, s])
    return path


def path_to_phonemes(path: np.ndarray, graph: StateGraph, duration: float,
                     frame: float = FRAME) -> tuple[TimedPhoneme, ...]:
    """Timed phonemes of the non-silence states of a Viterbi path (frame ``t`` = ``[t, t+1) * frame``)."""
    change = np.flatnonzero(np.diff(path)) + 1
    starts = np.concatenate([[0], change])
    ends = np.concatenate([change, [len(path)]])
    out = []
    for a, b in zip(starts, ends, strict=True):
        state = int(path[a])
        if graph.optional[state]:
            continue
        start, end = min(float(a) * frame, duration), min(float(b) * frame, duration)
        if end > start:
            out.append(TimedPhoneme(graph.ipa[state], round(start, 6), round(end, 6)))
    return tuple(out)


# --- the aligner -----------------------------------------------------------------------------------------------


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def load_metadata(path: Path = META_PATH) -> dict[str, Any]:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise LipSyncError(f"the neural aligner's metadata {path} is missing") from None


_SESSIONS: dict[tuple[Path, int], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(path: Path, threads: int) -> Any:
    """One onnxruntime session per (model, threads) per process; ``run`` is thread-safe."""
    key = (path.resolve(), threads)
    with _SESSIONS_LOCK:
        if key not in _SESSIONS:
            import onnxruntime as ort

            opts = ort.SessionOptions()
            opts.intra_op_num_threads = threads
            opts.inter_op_num_threads = 1
            opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
            opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
            # Spinning idle threads burn CPU that the language model and voices need on 2 cores.
            opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
            opts.log_severity_level = 3
            _SESSIONS[key] = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
        return _SESSIONS[key]


class NeuralAligner:
    """Forced alignment with the project's acoustic model; see the module docstring.

    ``silence_penalty`` (log units, default from ``aligner.json``) is the cost of inserting a pause between
    words; ``threads`` the onnxruntime threads (default: all cores, at most 2).
    """

    name = "neural"

    def __init__(self, language: str = "en-us", *, model_path: str | os.PathLike[str] | None = None,
                 silence_penalty: float | None = None, threads: int | None = None, verify: bool = True) -> None:
        self.language = language
        self.model_path = Path(model_path) if model_path is not None else MODEL_PATH
        meta_path = self.model_path.with_suffix(".json")
        self.meta = load_metadata(meta_path)
        if not self.model_path.is_file():
            raise LipSyncError(f"the neural aligner's model {self.model_path} is missing")
        if verify:
            expected = self.meta.get("sha256")
            actual = file_sha256(self.model_path)
            if expected != actual:
                raise LipSyncError(f"{self.model_path} has sha256 {actual}, {meta_path.name} expects {expected}")
        if tuple(self.meta.get("phones", ())) != PHONES:
            raise LipSyncError(f"{meta_path.name} was trained on another phone set than this module's PHONES")
        decode = self.meta.get("decode", {})
        self.silence_penalty = float(decode.get("silence_penalty", 0.0) if silence_penalty is None
                                     else silence_penalty)
        self.threads = threads or min(2, os.cpu_count() or 1)
        self._session = _session(self.model_path, self.threads)

    def log_posteriors(self, samples: np.ndarray, sample_rate: int) -> np.ndarray:
        """``[frames, len(PHONES)]`` log-posteriors of float mono ``samples`` at any rate."""
        from ..tts.audio import resample

        audio = resample(np.asarray(samples, dtype=np.float32).reshape(-1), sample_rate, SAMPLE_RATE)
        if audio.size < 400:  # shorter than one analysis window
            audio = np.pad(audio, (0, 400 - audio.size))
        out = self._session.run(None, {"audio": audio[None, :]})[0]
        return out[0]

    def align(self, samples: np.ndarray, sample_rate: int, text: str) -> tuple[TimedPhoneme, ...]:
        samples = np.asarray(samples, dtype=np.float32).reshape(-1)
        duration = samples.size / sample_rate
        words = phonemize(text, self.language)
        graph = state_graph(words)
        if duration <= 0 or len(graph.classes) == 0 or not voiced_spans(samples, sample_rate):
            return ()  # nothing to say, or nothing said: silence-only audio aligns to no phonemes
        logp = self.log_posteriors(samples, sample_rate)
        n = min(len(logp), int(np.ceil(duration / FRAME)))
        path = viterbi(logp[:n], graph, silence_penalty=self.silence_penalty)
        if path is None:
            # More phonemes than 10 ms frames: too short to align; the baseline spreads them instead.
            log.debug("audio of %.3f s too short for %d phonemes; using text-proportional", duration,
                      int((~graph.optional).sum()))
            return text_proportional(samples, sample_rate, text, language=self.language)
        return path_to_phonemes(path, graph, duration)


register_aligner("neural", NeuralAligner)

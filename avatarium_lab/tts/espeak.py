"""Basic voice: espeak-ng through ctypes (the library and data bundled by ``espeakng-loader``), exact phoneme timings.

``get_voice("espeak:en-us+f3", rate=170, pitch=60)`` builds an :class:`EspeakVoice`. Each call to
``synthesize`` returns one :class:`SpeechChunk`: 22,050 Hz PCM16 mono plus the engine's own phoneme timings.

Things about espeak-ng that shape this module (measured with espeak-ng 1.52 from espeakng-loader 0.2.4):

* The library is one global state machine (voice, rate, pitch, callback). All calls go through one
  module-level lock, and every synthesis re-applies its voice's settings under that lock, so any number of
  ``EspeakVoice`` objects with different settings can coexist.
* Phoneme events carry a millisecond ``audio_position`` *and* the exact sample index in ``sample``
  (``audio_position == sample * 1000 // 22050``); we use the sample index, so timings are sample-exact.
* Pauses arrive as phoneme events with an empty name; some phonemes arrive merged with their neighbour
  (``ˈɑːɹ``) and stress marks ride on the vowel (``ˈoʊ``); names are returned as espeak gives them.
* A post-vocalic ``l`` or ``r`` is often reported with zero duration (its event has the same sample as the
  next phoneme: espeak renders it inside the vowel's transition). Such a phoneme shares the interval of the
  phoneme before it, split equally, so every phoneme gets a non-empty interval.
* Unvoiced stops (p, t, k) are reported from their burst: the 30-45 ms closure silence belongs to the end of
  the preceding phoneme's interval. Animators that want lips closed during the closure must anticipate.
* ``espeak_SetVoiceByName`` accepts any unknown *variant* (``en-us+nonsense``) silently, so variants are
  validated against the files in ``espeak-ng-data/voices/!v``.
* Some inputs overflow buffers in espeak-ng 1.52 and kill the whole process ("stack smashing detected" or
  SIGSEGV): a run without whitespace of ``'s`` repeated over 136 characters, or about 190 dotted single
  letters (``a.a.a.``/``é.é.``...) in one ``espeak_Synth`` call, even spread over words and sentences.
  :func:`espeak_safe_text` cuts long runs and :func:`espeak_pieces` speaks long text in pieces of at most
  :data:`MAX_PIECE` characters, one call each; ``lipsync.phonemize`` applies the same guards.
"""

from __future__ import annotations

import asyncio
import ctypes
import logging
import re
import threading
from collections.abc import AsyncIterator
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import ConfigError, UnknownVoice, VoiceError
from ..events import TimedPhoneme
from . import SpeechChunk, register_engine

log = logging.getLogger(__name__)

# speak_lib.h constants (API revision 12).
_AUDIO_OUTPUT_SYNCHRONOUS = 2
_INIT_PHONEME_EVENTS = 0x0001
_INIT_PHONEME_IPA = 0x0002
_INIT_DONT_EXIT = 0x8000  # without it a missing data directory calls exit() inside the library
_POS_CHARACTER = 1
_CHARS_UTF8 = 1
_ENDPAUSE = 0x1000
_EVENT_LIST_TERMINATED = 0
_EVENT_PHONEME = 7
_PARAM_RATE = 1
_PARAM_VOLUME = 2
_PARAM_PITCH = 3
_PARAM_RANGE = 4
_EE_OK = 0

RATE_RANGE = (80, 450)
"""espeak's documented speaking-rate range, words per minute."""
PITCH_RANGE = (0, 100)
PITCH_RANGE_RANGE = (0, 100)
VOLUME_RANGE = (0, 200)
DEFAULT_RATE = 175
DEFAULT_PITCH = 50
DEFAULT_TRAILING_SILENCE = 0.12
"""Seconds of espeak's own trailing silence kept after the last phoneme, so sentences chain tightly."""
_FADE_SECONDS = 0.005

MAX_RUN = 60
"""Longest run of non-space characters passed to espeak-ng (see the module docstring; no English word is near)."""
MAX_PIECE = 160
"""Longest text given to one ``espeak_Synth`` call; longer text is spoken in pieces cut at punctuation."""
_LONG_RUN = re.compile(rf"\S{{{MAX_RUN + 1},}}")
_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_SENTENCE_CUT = re.compile(r"[.!?…][\"'”’)\]]*\s")
_CLAUSE_CUT = re.compile(r"[,;:—–][\"'”’)\]]*\s|\s[—–]\s")


def espeak_pieces(text: str) -> list[str]:
    """Cut ``text`` into pieces of at most :data:`MAX_PIECE` characters: after the last sentence end in
    range, else the last clause break, else the last space.

    One call per piece bounds what espeak-ng 1.52 accumulates per call: about 190 dotted single letters
    (``a.a.a.`` ..., even spread over several words and sentences) overflow a buffer and kill the process.
    """
    pieces: list[str] = []
    rest = text.strip()
    while len(rest) > MAX_PIECE:
        window = rest[: MAX_PIECE + 1]
        cut = 0
        for pattern in (_SENTENCE_CUT, _CLAUSE_CUT):
            ends = [m.end() for m in pattern.finditer(window)]
            if ends:
                cut = ends[-1]
                break
        if not cut:
            cut = window.rfind(" ") + 1 or MAX_PIECE
        piece, rest = rest[:cut].strip(), rest[cut:].strip()
        if piece:
            pieces.append(piece)
    if rest:
        pieces.append(rest)
    return pieces


def espeak_safe_text(text: str) -> str:
    """``text`` made safe for espeak-ng: control characters become spaces, over-long runs without whitespace
    are cut into pieces of at most :data:`MAX_RUN` characters (they crash espeak-ng 1.52 otherwise)."""
    text = _CONTROL.sub(" ", text)
    return _LONG_RUN.sub(lambda m: " ".join(m[0][i : i + MAX_RUN] for i in range(0, len(m[0]), MAX_RUN)), text)


class _EventId(ctypes.Union):
    _fields_ = [
        ("number", ctypes.c_int),
        ("name", ctypes.c_char_p),
        ("string", ctypes.c_char * 8),  # phoneme name, UTF-8, NUL-terminated unless all 8 bytes are used
    ]


class _Event(ctypes.Structure):
    _fields_ = [
        ("type", ctypes.c_int),
        ("unique_identifier", ctypes.c_uint),
        ("text_position", ctypes.c_int),
        ("length", ctypes.c_int),
        ("audio_position", ctypes.c_int),
        ("sample", ctypes.c_int),
        ("user_data", ctypes.c_void_p),
        ("id", _EventId),
    ]


class _VoiceInfo(ctypes.Structure):
    _fields_ = [
        ("name", ctypes.c_char_p),
        ("languages", ctypes.c_void_p),  # (priority byte, NUL-terminated language)*, then a zero byte
        ("identifier", ctypes.c_char_p),
        ("gender", ctypes.c_ubyte),
        ("age", ctypes.c_ubyte),
        ("variant", ctypes.c_ubyte),
        ("xx1", ctypes.c_ubyte),
        ("score", ctypes.c_int),
        ("spare", ctypes.c_void_p),
    ]


_SynthCallback = ctypes.CFUNCTYPE(ctypes.c_int, ctypes.POINTER(ctypes.c_short), ctypes.c_int, ctypes.POINTER(_Event))

_LOCK = threading.Lock()
"""Guards every call into the library and the engine's capture buffers."""


@dataclass(frozen=True, slots=True)
class _Settings:
    voice: str
    rate: int
    pitch: int
    pitch_range: int | None
    volume: int


class _Engine:
    """The process-wide espeak-ng instance (the C library cannot have two)."""

    def __init__(self) -> None:
        try:
            import espeakng_loader
        except ImportError as exc:  # pragma: no cover - dependency of the package
            raise VoiceError("the espeak voice needs the 'espeakng-loader' package") from exc
        self.library_path = Path(espeakng_loader.get_library_path())
        self.data_path = Path(espeakng_loader.get_data_path())
        if not (self.data_path / "phontab").is_file():
            raise VoiceError(f"espeak-ng data not found at {self.data_path}")
        lib = ctypes.CDLL(str(self.library_path))
        lib.espeak_Initialize.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_char_p, ctypes.c_int]
        lib.espeak_Initialize.restype = ctypes.c_int
        lib.espeak_SetSynthCallback.argtypes = [_SynthCallback]
        lib.espeak_SetSynthCallback.restype = None
        lib.espeak_SetVoiceByName.argtypes = [ctypes.c_char_p]
        lib.espeak_SetVoiceByName.restype = ctypes.c_int
        lib.espeak_SetParameter.argtypes = [ctypes.c_int, ctypes.c_int, ctypes.c_int]
        lib.espeak_SetParameter.restype = ctypes.c_int
        lib.espeak_Synth.argtypes = [
            ctypes.c_void_p, ctypes.c_size_t, ctypes.c_uint, ctypes.c_int, ctypes.c_uint, ctypes.c_uint,
            ctypes.c_void_p, ctypes.c_void_p,
        ]
        lib.espeak_Synth.restype = ctypes.c_int
        lib.espeak_Synchronize.argtypes = []
        lib.espeak_Synchronize.restype = ctypes.c_int
        lib.espeak_ListVoices.argtypes = [ctypes.c_void_p]
        lib.espeak_ListVoices.restype = ctypes.POINTER(ctypes.POINTER(_VoiceInfo))
        # buflength 200 ms: fewer Python callbacks than the 60 ms default; it does not change the audio.
        options = _INIT_PHONEME_EVENTS | _INIT_PHONEME_IPA | _INIT_DONT_EXIT
        rate = lib.espeak_Initialize(_AUDIO_OUTPUT_SYNCHRONOUS, 200, str(self.data_path).encode(), options)
        if rate <= 0:
            raise VoiceError(f"espeak-ng failed to initialise with data from {self.data_path}")
        self.lib = lib
        self.sample_rate = int(rate)
        self._pcm: list[bytes] = []
        self._marks: list[tuple[int, str]] = []
        self._callback = _SynthCallback(self._on_synth)  # keep a reference: C holds only the pointer
        lib.espeak_SetSynthCallback(self._callback)

    def _on_synth(self, wav: Any, num_samples: int, events: Any) -> int:
        i = 0
        while events[i].type != _EVENT_LIST_TERMINATED:
            ev = events[i]
            if ev.type == _EVENT_PHONEME:
                name = bytes(ev.id.string).split(b"\0", 1)[0].decode("utf-8", "replace")
                self._marks.append((int(ev.sample), name))
            i += 1
        if wav and num_samples > 0:
            self._pcm.append(ctypes.string_at(wav, num_samples * 2))
        return 0

    def apply(self, settings: _Settings) -> None:
        """Select voice and parameters; caller holds ``_LOCK``."""
        if self.lib.espeak_SetVoiceByName(settings.voice.encode()) != _EE_OK:
            raise UnknownVoice(f"espeak-ng could not load voice {settings.voice!r}")
        for param, value in (
            (_PARAM_RATE, settings.rate),
            (_PARAM_PITCH, settings.pitch),
            (_PARAM_VOLUME, settings.volume),
            (_PARAM_RANGE, settings.pitch_range),
        ):
            if value is not None and self.lib.espeak_SetParameter(param, int(value), 0) != _EE_OK:
                raise VoiceError(f"espeak-ng rejected parameter {param}={value}")

    def synth(self, settings: _Settings, pieces: list[str]) -> tuple[bytes, list[tuple[int, str]]]:
        """Raw PCM16 bytes and (sample, phoneme name) marks of ``pieces`` spoken back to back.

        Each piece is its own ``espeak_Synth`` call (see :func:`espeak_pieces`); all but the last end with espeak's
        own end-of-clause pause, so the joins sound like the punctuation they were cut at.
        """
        pcm_parts: list[bytes] = []
        marks: list[tuple[int, str]] = []
        offset = 0
        with _LOCK:
            self.apply(settings)
            try:
                for k, piece in enumerate(pieces):
                    self._pcm, self._marks = [], []
                    data = piece.encode("utf-8") + b"\0"
                    buf = ctypes.create_string_buffer(data, len(data))
                    flags = _CHARS_UTF8 | (_ENDPAUSE if k < len(pieces) - 1 else 0)
                    err = self.lib.espeak_Synth(buf, len(data), 0, _POS_CHARACTER, 0, flags, None, None)
                    if err != _EE_OK:
                        raise VoiceError(f"espeak_Synth failed with error {err}", retryable=True)
                    self.lib.espeak_Synchronize()
                    pcm = b"".join(self._pcm)
                    # espeak counts samples from the start of each call; clamp into this piece's audio.
                    marks.extend((offset + min(max(sample, 0), len(pcm) // 2), name) for sample, name in self._marks)
                    pcm_parts.append(pcm)
                    offset += len(pcm) // 2
            finally:
                self._pcm, self._marks = [], []
        return b"".join(pcm_parts), marks

    def list_voices(self) -> list[dict[str, Any]]:
        with _LOCK:
            table = self.lib.espeak_ListVoices(None)
            out: list[dict[str, Any]] = []
            i = 0
            while table[i]:
                v = table[i].contents
                out.append({
                    "name": (v.name or b"").decode("utf-8", "replace"),
                    "identifier": (v.identifier or b"").decode("utf-8", "replace"),
                    "languages": _parse_languages(v.languages),
                    "gender": {1: "male", 2: "female"}.get(v.gender, "unknown"),
                    "age": int(v.age),
                })
                i += 1
        return out


def _parse_languages(ptr: int | None) -> list[str]:
    langs: list[str] = []
    if not ptr:
        return langs
    pos = ptr
    while ctypes.string_at(pos, 1) != b"\0":  # a zero priority byte ends the list
        lang = ctypes.string_at(pos + 1)
        langs.append(lang.decode("utf-8", "replace"))
        pos += 1 + len(lang) + 1
    return langs


_ENGINE: _Engine | None = None


def _engine() -> _Engine:
    global _ENGINE
    if _ENGINE is None:
        with _LOCK:
            if _ENGINE is None:
                _ENGINE = _Engine()
    return _ENGINE


@lru_cache(maxsize=1)
def _voice_catalog() -> tuple[tuple[dict[str, Any], ...], dict[str, dict[str, str]]]:
    engine = _engine()
    voices = tuple(engine.list_voices())
    variants: dict[str, dict[str, str]] = {}
    vdir = engine.data_path / "voices" / "!v"
    for path in sorted(vdir.iterdir()) if vdir.is_dir() else ():
        if not path.is_file():
            continue
        info = {"id": path.name, "name": path.name, "gender": "unknown"}
        for line in path.read_text("utf-8", "replace").splitlines():
            key, _, value = line.strip().partition(" ")
            if key in ("name", "gender") and value.strip():
                info[key] = value.strip().lower() if key == "gender" else value.strip()
        variants[path.name] = info
    return voices, variants


def list_espeak_variants() -> list[dict[str, str]]:
    """Voice variants (``f3``, ``m1``, ``klatt``, ...) that can follow a language voice after ``+``."""
    return [dict(v) for v in _voice_catalog()[1].values()]


def list_espeak_voices() -> list[dict[str, Any]]:
    """Language voices espeak-ng knows: ``id`` (``espeak:<language>``), ``name``, ``identifier``,
    ``languages``, ``gender``, ``age`` and ``variants`` (names usable as ``<language>+<variant>``)."""
    voices, variants = _voice_catalog()
    names = sorted(variants)
    out = []
    for v in voices:
        lang = v["languages"][0] if v["languages"] else v["identifier"].rsplit("/", 1)[-1].lower()
        out.append({**v, "id": f"espeak:{lang}", "variants": list(names)})
    return out


def _validate_voice_name(name: str) -> str:
    """The name to hand ``espeak_SetVoiceByName`` for a user's voice name (``en-gb+m3``).

    Language codes are resolved to the voice file's identifier (``gmw/en+m3``): espeak-ng looks names up by
    voice name or file, so a language code that is not also a file name (``en-gb``, whose file is ``gmw/en``)
    would fail to load although ``espeak_ListVoices`` lists it.
    """
    base, plus, variant = name.strip().partition("+")
    voices, variants = _voice_catalog()
    wanted = base.lower()
    identifier = None
    # A voice whose primary language is the code wins over one that merely also speaks it.
    for rank in range(2):
        for v in voices:
            langs = [lang.lower() for lang in v["languages"]]
            names = {v["name"].lower(), v["identifier"].lower(), v["identifier"].rsplit("/", 1)[-1].lower()}
            if (rank == 0 and ((langs and langs[0] == wanted) or wanted in names)) or (rank == 1 and wanted in langs):
                identifier = v["identifier"]
                break
        if identifier:
            break
    if not base or identifier is None:
        english = sorted({lang for v in voices for lang in v["languages"] if lang.startswith("en")})
        raise UnknownVoice(
            f"espeak-ng has no voice {base!r}; use a language code such as {', '.join(english)} "
            "(list_espeak_voices() lists all)"
        )
    if plus:
        if variant not in variants:
            raise UnknownVoice(
                f"espeak-ng has no voice variant {variant!r}; variants are e.g. f1-f5, m1-m7, klatt "
                "(list_espeak_variants() lists all)"
            )
        return f"{identifier}+{variant}"
    return identifier


def _check_range(field: str, value: object, bounds: tuple[int, int]) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"espeak {field} must be a number in {bounds[0]}..{bounds[1]}, got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"espeak {field} must be in {bounds[0]}..{bounds[1]}, got {value!r}")
    return int(round(value))


class EspeakVoice:
    """A Basic-tier voice: espeak-ng language voice plus optional variant, e.g. ``en-us+f3``.

    ``rate`` is words per minute (80..450), ``pitch`` the base pitch (0..100, 50 = the voice's normal),
    ``pitch_range`` the intonation range (0..100, default: the voice's own), ``volume`` 0..200 (100 = normal).
    ``trailing_silence`` caps the silence kept after the last phoneme, in seconds.
    """

    has_timings: bool = True

    def __init__(
        self,
        name: str = "en-us",
        *,
        rate: float = DEFAULT_RATE,
        pitch: float = DEFAULT_PITCH,
        pitch_range: float | None = None,
        volume: float = 100,
        trailing_silence: float = DEFAULT_TRAILING_SILENCE,
    ) -> None:
        voice = _validate_voice_name(name)
        settings = _Settings(
            voice=voice,
            rate=_check_range("rate", rate, RATE_RANGE),
            pitch=_check_range("pitch", pitch, PITCH_RANGE),
            pitch_range=None if pitch_range is None else _check_range("pitch_range", pitch_range, PITCH_RANGE_RANGE),
            volume=_check_range("volume", volume, VOLUME_RANGE),
        )
        if not isinstance(trailing_silence, (int, float)) or not 0 <= trailing_silence <= 5:
            raise ConfigError(f"espeak trailing_silence must be 0..5 seconds, got {trailing_silence!r}")
        engine = _engine()
        with _LOCK:  # fail now, not at the first sentence, if espeak cannot load it
            engine.apply(settings)
        self._settings = settings
        self._trailing = float(trailing_silence)
        self.id = f"espeak:{name.strip()}"
        self.sample_rate = engine.sample_rate

    @property
    def rate(self) -> int:
        return self._settings.rate

    @property
    def pitch(self) -> int:
        return self._settings.pitch

    def __repr__(self) -> str:
        s = self._settings
        return (f"EspeakVoice({self.id.partition(':')[2]!r}, rate={s.rate}, pitch={s.pitch}, volume={s.volume}"
                f"{'' if s.pitch_range is None else f', pitch_range={s.pitch_range}'})")

    def synthesize_sync(self, text: str) -> SpeechChunk:
        """Speak ``text`` (normally one sentence; longer text comes back as one chunk) with phoneme timings.

        Phoneme times are seconds from the chunk's first sample; each phoneme ends where the next event
        starts, pauses are dropped (their span stays silent audio), the last phoneme ends where speech ends.
        Text with nothing to say gives an empty chunk.
        """
        text = espeak_safe_text(text)
        if not text.strip():
            return SpeechChunk(pcm=b"", sample_rate=self.sample_rate, phonemes=())
        pcm, marks = _engine().synth(self._settings, espeak_pieces(text))
        return _build_chunk(pcm, marks, self.sample_rate, self._trailing)

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Yield the chunk of ``text`` (nothing for text with nothing to say); the C call runs off the loop."""
        chunk = await asyncio.to_thread(self.synthesize_sync, text)
        if chunk.pcm:
            yield chunk


def _build_chunk(pcm: bytes, marks: list[tuple[int, str]], sample_rate: int, trailing: float) -> SpeechChunk:
    n = len(pcm) // 2
    # Clamp into the audio and force monotonic order; espeak's own marks already are, this guards the contract.
    cleaned: list[tuple[int, str]] = []
    last = 0
    for sample, name in marks:
        sample = min(max(sample, last), n)
        cleaned.append((sample, name.strip()))
        last = sample
    spans: list[list[Any]] = []  # [start, end, name] of real phonemes, in samples
    for i, (sample, name) in enumerate(cleaned):
        if not name:
            continue
        end = cleaned[i + 1][0] if i + 1 < len(cleaned) else n
        spans.append([sample, end, name])
    if not spans:
        return SpeechChunk(pcm=b"", sample_rate=sample_rate, phonemes=())
    _share_zero_length(spans)
    speech_end = spans[-1][1]
    keep = min(n, speech_end + int(round(trailing * sample_rate)))
    if keep < n:
        pcm = _fade_out(pcm[: keep * 2], int(_FADE_SECONDS * sample_rate), after=speech_end)
    phonemes = tuple(TimedPhoneme(name, start / sample_rate, end / sample_rate) for start, end, name in spans)
    return SpeechChunk(pcm=pcm, sample_rate=sample_rate, phonemes=phonemes)


def _share_zero_length(spans: list[list[Any]]) -> None:
    """Give zero-length phonemes an equal share of their neighbour's interval (see the module docstring)."""
    i = 0
    while i < len(spans):
        if spans[i][1] > spans[i][0]:
            i += 1
            continue
        j = i
        while j < len(spans) and spans[j][1] <= spans[j][0] and spans[j][0] == spans[i][0]:
            j += 1
        # spans[i:j] are empty and sit at the same sample; prefer the phoneme that ends there, else the next.
        if i > 0 and spans[i - 1][1] == spans[i][0] and spans[i - 1][1] > spans[i - 1][0]:
            group = range(i - 1, j)
        elif j < len(spans) and spans[j][0] == spans[i][0] and spans[j][1] > spans[j][0]:
            group = range(i, j + 1)
        else:
            i = j
            continue
        start, end = spans[group[0]][0], spans[group[-1]][1]
        count = len(group)
        for k, idx in enumerate(group):
            spans[idx][0] = start + (end - start) * k // count
            spans[idx][1] = start + (end - start) * (k + 1) // count
        i = group[-1] + 1


def _fade_out(pcm: bytes, fade: int, *, after: int) -> bytes:
    """Ramp the last ``fade`` samples to zero so a cut inside espeak's quiet tail cannot click."""
    audio = np.frombuffer(pcm, dtype="<i2").astype(np.float32)
    fade = min(fade, max(0, len(audio) - after))
    if fade > 0:
        audio[-fade:] *= np.linspace(1.0, 0.0, fade, dtype=np.float32)
    return audio.astype("<i2").tobytes()


def _factory(name: str, *, rate: float | None = None, pitch: float | None = None, volume: float = 100,
             pitch_range: float | None = None, **_: object) -> EspeakVoice:
    """The registered engine: catalog-wide parameters it does not use (keys, model paths) are ignored."""
    return EspeakVoice(name, rate=DEFAULT_RATE if rate is None else rate,
                       pitch=DEFAULT_PITCH if pitch is None else pitch, volume=volume, pitch_range=pitch_range)


register_engine("espeak", _factory)

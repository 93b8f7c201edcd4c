"""Optional offline voices from Debian packages, festival (HTS) and flite, with the programs' own phone timings.

``get_voice("festival:cmu_us_slt_arctic_hts")`` builds a :class:`FestivalVoice`, ``get_voice("flite:slt")`` a
:class:`FliteVoice`. Both run the Debian program (``apt-get install festival festvox-us-slt-hts flite``), read
its WAV file (PCM16 mono at the program's rate) and turn the phone end times it prints into IPA
:class:`TimedPhoneme` s; ``synthesize`` yields one chunk per sentence as soon as it is ready.

Things about the programs that shape this module (festival 2.5.0, festvox-us-slt-hts 0.2010.10.25, flite 2.2):

* festival runs in batch mode (``festival -b script.scm``), one process per ``synthesize`` call; the script
  selects the voice, then for each sentence calls ``SynthText``, saves the wave and prints every Segment's
  ``name`` and ``end`` (seconds). Starting festival and loading the HTS voice costs ~0.2 s per call.
* festival's stdout is block-buffered when it is a pipe: the script calls ``(fflush nil)`` after each sentence
  so its chunk can be spoken while the next sentence is synthesized.
* festival reads its input as Latin-1 bytes: text is transliterated to ASCII (accents dropped, typographic
  quotes and dashes replaced). In the Scheme string only ``"`` needs escaping; a backslash is not read as an
  escape the way the reader's documentation suggests (``\\\\`` is spoken as two backslashes), so backslashes are
  replaced by spaces. Text never passes through a shell.
* The HTS voice renders at 32 kHz (the Debian package's rate). ``rate`` maps to hts_engine's speed option
  ``-r``, which also updates the Segment end times; ``pitch`` is ignored (hts_engine's ``-fm`` has no effect in
  festival 2.5's HTS module).
* flite runs once per sentence (``flite -voice slt -psdur -o out.wav -t TEXT``; the voice is compiled in, a call
  takes ~10 ms plus ~3% of the audio's duration). ``-psdur`` prints ``phone:end`` pairs, end times cumulative
  over the call; the last one can lie a few milliseconds past the audio and is clamped. 16 kHz output.
  ``rate`` maps to flite's ``duration_stretch``, ``pitch`` (0..100, 50 = the voice's own) to ``f0_shift``.
* Both speak the CMU/radio ARPAbet phone set without stress (``hh ax l ow``); :data:`ARPABET_TO_IPA` maps it to
  the IPA the viseme tables know. ``pau``, ``h#`` and ``brth`` are silences and become gaps between phonemes.
"""

from __future__ import annotations

import asyncio
import logging
import re
import shutil
import subprocess
import tempfile
import threading
import unicodedata
import wave
from collections.abc import AsyncIterator, Iterator
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import ConfigError, UnknownVoice, VoiceError
from ..events import TimedPhoneme
from . import SpeechChunk, register_engine

log = logging.getLogger(__name__)

FESTIVAL_INSTALL = "apt-get install festival festvox-us-slt-hts"
FLITE_INSTALL = "apt-get install flite"
DEFAULT_FESTIVAL_VOICE = "cmu_us_slt_arctic_hts"
DEFAULT_FLITE_VOICE = "slt"

ARPABET_TO_IPA: dict[str, str] = {
    # vowels (radio/CMU phone set; no stress marks in festival's and flite's segment names)
    "aa": "ɑ", "ae": "æ", "ah": "ʌ", "ao": "ɔ", "aw": "aʊ", "ax": "ə", "axr": "ɚ", "ay": "aɪ", "eh": "ɛ",
    "er": "ɝ", "ey": "eɪ", "ih": "ɪ", "ix": "ɨ", "iy": "i", "ow": "oʊ", "oy": "ɔɪ", "uh": "ʊ", "uw": "u",
    "ux": "ʉ",
    # consonants
    "b": "b", "ch": "tʃ", "d": "d", "dh": "ð", "dx": "ɾ", "el": "l̩", "em": "m̩", "en": "n̩", "f": "f", "g": "ɡ",
    "hh": "h", "hv": "ɦ", "jh": "dʒ", "k": "k", "l": "l", "m": "m", "n": "n", "ng": "ŋ", "nx": "ɾ̃", "p": "p",
    "r": "ɹ", "s": "s", "sh": "ʃ", "t": "t", "th": "θ", "v": "v", "w": "w", "wh": "ʍ", "y": "j", "z": "z",
    "zh": "ʒ", "q": "ʔ",
}
"""festival's radio phone set and flite's cmulex phones -> IPA (the symbols espeak-ng and the viseme tables use)."""
SILENCE_PHONES = frozenset({"pau", "h#", "brth", "sil", "ssil", "#"})

# Speaking rate of each voice on the shared words-per-minute scale (the rate at which the espeak voice takes as
# long for the same text), measured on the test paragraph; ``rate`` is applied relative to it.
FESTIVAL_NATURAL_RATE = 163.0
FLITE_NATURAL_RATE = 168.0
RATE_RANGE = (80, 450)
PITCH_RANGE = (0, 100)
MAX_SENTENCE = 400
"""Longest text given to one ``SynthText`` / flite call; a longer sentence is cut at a clause break or space."""

_SENTENCE_BREAK = re.compile(r"(?<=[.!?])[\"')\]]*\s+")
_CLAUSE_CUT = re.compile(r"[,;:][\"')\]]*\s")
_ASCII = str.maketrans({
    "‘": "'", "’": "'", "‚": "'", "“": '"', "”": '"', "„": '"', "«": '"', "»": '"', "—": ", ", "–": ", ",
    "…": "...", "\u00a0": " ", "\\": " ", "ß": "ss", "æ": "ae", "Æ": "AE", "ø": "o", "Ø": "O", "œ": "oe",
    "Œ": "OE", "ł": "l", "Ł": "L", "đ": "d", "Đ": "D", "þ": "th", "ð": "d",
})
_PSDUR = re.compile(r"(\S+):(-?[0-9.]+)")


def ascii_text(text: str) -> str:
    """``text`` as the plain ASCII these programs read well: accents dropped, typographic punctuation replaced,
    control characters and other non-ASCII characters removed, whitespace collapsed."""
    text = unicodedata.normalize("NFKD", text.translate(_ASCII)).translate(_ASCII)
    kept = (ch if ch.isprintable() else " " for ch in text if ch.isascii() and not unicodedata.combining(ch))
    return " ".join("".join(kept).split())


def sentences(text: str, limit: int = MAX_SENTENCE) -> list[str]:
    """Sentences of ``text`` (cut after ``.!?`` and whitespace); longer than ``limit`` ones cut at a clause break
    or space."""
    out: list[str] = []
    for sentence in _SENTENCE_BREAK.split(text):
        rest = sentence.strip()
        while len(rest) > limit:
            window = rest[: limit + 1]
            ends = [m.end() for m in _CLAUSE_CUT.finditer(window)]
            cut = ends[-1] if ends else (window.rfind(" ") + 1 or limit)
            out.append(rest[:cut].strip())
            rest = rest[cut:].strip()
        if rest:
            out.append(rest)
    return [s for s in out if any(ch.isalnum() for ch in s)]


def scheme_string(text: str) -> str:
    """``text`` as a Scheme string literal for festival (after :func:`ascii_text`)."""
    return '"' + text.replace("\\", " ").replace('"', '\\"') + '"'


def _warn_unknown_phone(name: str, engine: str) -> None:
    with _WARN_LOCK:
        if (engine, name) in _WARNED:
            return
        _WARNED.add((engine, name))
    log.warning("%s phone %r has no IPA mapping; kept as is", engine, name)


_WARNED: set[tuple[str, str]] = set()
_WARN_LOCK = threading.Lock()


def arpabet_to_ipa(name: str, engine: str = "festival") -> str:
    """IPA for one ARPAbet phone (stress digits dropped); unknown phones come back unchanged with a warning."""
    key = name.strip().lower().rstrip("012")
    ipa = ARPABET_TO_IPA.get(key)
    if ipa is None:
        _warn_unknown_phone(name, engine)
        return name
    return ipa


def timed_phonemes(ends: list[tuple[str, float]], sample_rate: int, num_samples: int,
                   engine: str) -> tuple[TimedPhoneme, ...]:
    """Phones with end times (seconds, each starting where the previous ended) as IPA phonemes on sample
    boundaries, clamped into the audio and forced monotonic; silences become gaps."""
    out: list[TimedPhoneme] = []
    previous = 0
    for name, end_time in ends:
        end = min(max(int(round(end_time * sample_rate)), previous), num_samples)
        start, previous = previous, end
        if name.strip().lower() in SILENCE_PHONES:
            continue
        if end <= start:
            log.debug("%s phone %r has no duration; dropped", engine, name)
            continue
        out.append(TimedPhoneme(arpabet_to_ipa(name, engine), start / sample_rate, end / sample_rate))
    return tuple(out)


def _read_wav(path: Path, engine: str) -> tuple[bytes, int]:
    try:
        with wave.open(str(path), "rb") as wav:
            channels, width, rate = wav.getnchannels(), wav.getsampwidth(), wav.getframerate()
            frames = wav.readframes(wav.getnframes())
    except (OSError, EOFError, wave.Error) as exc:
        raise VoiceError(f"{engine} wrote no readable WAV file ({exc})", retryable=True) from exc
    if width != 2:
        raise VoiceError(f"{engine} wrote {8 * width}-bit audio; expected 16-bit PCM")
    if channels != 1:
        frames = np.frombuffer(frames, "<i2").reshape(-1, channels).mean(axis=1).astype("<i2").tobytes()
    return frames, rate


def _check_number(engine: str, field: str, value: object, bounds: tuple[int, int]) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        raise ConfigError(f"{engine} {field} must be a number in {bounds[0]}..{bounds[1]}, got {value!r}")
    if not bounds[0] <= value <= bounds[1]:
        raise ConfigError(f"{engine} {field} must be in {bounds[0]}..{bounds[1]}, got {value!r}")
    return float(value)


def festival_available() -> bool:
    """Whether festival is on PATH (the catalog's ``requires: {binary: festival}``)."""
    return shutil.which("festival") is not None


def flite_available() -> bool:
    """Whether flite is on PATH."""
    return shutil.which("flite") is not None


def available(engine: str = "festival") -> bool:
    """Whether ``engine`` (``festival`` or ``flite``) can run here."""
    return {"festival": festival_available, "flite": flite_available}[engine]()


def _binary(name: str, install: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise VoiceError(f"the {name} voice needs the program {name!r} on PATH (Debian/Ubuntu: {install})")
    return path


def _run(args: list[str], engine: str, install: str, timeout: float = 60) -> str:
    try:
        proc = subprocess.run(args, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)
    except FileNotFoundError as exc:
        raise VoiceError(f"{engine} is not installed ({install})") from exc
    except subprocess.TimeoutExpired as exc:
        raise VoiceError(f"{engine} took longer than {timeout:g} s", retryable=True) from exc
    if proc.returncode != 0:
        raise VoiceError(f"{engine} failed (exit {proc.returncode}): {proc.stderr.strip()[-500:]}")
    return proc.stdout


@lru_cache(maxsize=1)
def festival_voices() -> tuple[str, ...]:
    """Voices festival can load (``(voice.list)``)."""
    out = _run([_binary("festival", FESTIVAL_INSTALL), "-b", "(format t \"%l\\n\" (voice.list))"], "festival",
               FESTIVAL_INSTALL)
    return tuple(re.findall(r"[A-Za-z0-9_]+", out))


@lru_cache(maxsize=1)
def flite_voices() -> tuple[str, ...]:
    """Voices compiled into flite (``flite -lv``)."""
    out = _run([_binary("flite", FLITE_INSTALL), "-lv"], "flite", FLITE_INSTALL)
    return tuple(out.partition(":")[2].split())


class _FestivalRun:
    """One festival process speaking a list of sentences; ``next_chunk`` blocks until the next one is ready.

    ``close`` may be called from another thread while ``next_chunk`` waits: it kills the process, which ends
    the wait.
    """

    def __init__(self, voice: FestivalVoice, parts: list[str]) -> None:
        self.voice = voice
        self.count = len(parts)
        self.dir = Path(tempfile.mkdtemp(prefix="avatarium-festival-"))
        self.index = 0
        self._closed = threading.Event()
        script = self.dir / "speak.scm"
        # The text is ASCII already; the temporary path is written as the file system spells it.
        script.write_text(voice.script(parts, self.dir), encoding="utf-8")
        try:
            self.proc = subprocess.Popen(
                [_binary("festival", FESTIVAL_INSTALL), "-b", str(script)], stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, encoding="ascii", errors="replace",
            )
        except OSError as exc:
            shutil.rmtree(self.dir, ignore_errors=True)
            raise VoiceError(f"cannot start festival: {exc} ({FESTIVAL_INSTALL})") from exc

    def next_chunk(self) -> SpeechChunk | None:
        if self.index >= self.count:
            return None
        assert self.proc.stdout is not None
        segments: list[tuple[str, float]] = []
        for line in self.proc.stdout:
            kind, _, rest = line.strip().partition(" ")
            if kind == "seg":
                name, _, end = rest.rpartition(" ")
                try:
                    segments.append((name, float(end)))
                except ValueError:
                    continue
            elif kind == "end":
                k = self.index
                self.index += 1
                pcm, rate = _read_wav(self.dir / f"{k}.wav", "festival")
                return self.voice.chunk(pcm, rate, segments)
        if self._closed.is_set():
            return None
        self.proc.wait()
        stderr = self.proc.stderr.read() if self.proc.stderr else ""
        raise VoiceError(f"festival stopped after {self.index} of {self.count} sentences (exit "
                         f"{self.proc.returncode}): {stderr.strip()[-500:]}")

    def close(self) -> None:
        self._closed.set()
        if self.proc.poll() is None:
            self.proc.kill()
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a killed process is reaped at once
            log.warning("festival process %d did not exit after kill", self.proc.pid)
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream is not None:
                stream.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class _ProgramVoice:
    """What festival and flite voices share: text handling, chunks, sync and async APIs."""

    engine = ""
    has_timings: bool = True
    natural_rate = 175.0

    def __init__(self, name: str, sample_rate: int, rate: float | None) -> None:
        self.name = name
        self.id = f"{self.engine}:{name}"
        self.sample_rate = sample_rate
        self._rate = self.natural_rate if rate is None else _check_number(self.engine, "rate", rate, RATE_RANGE)

    @property
    def rate(self) -> float:
        return self._rate

    def chunk(self, pcm: bytes, rate: int, ends: list[tuple[str, float]]) -> SpeechChunk:
        if rate != self.sample_rate:
            log.warning("%s wrote %d Hz audio, expected %d Hz", self.id, rate, self.sample_rate)
            self.sample_rate = rate
        return SpeechChunk(pcm=pcm, sample_rate=rate,
                           phonemes=timed_phonemes(ends, rate, len(pcm) // 2, self.engine))

    def parts(self, text: str) -> list[str]:
        return sentences(ascii_text(text))

    def iter_chunks(self, text: str) -> Iterator[SpeechChunk]:
        raise NotImplementedError

    def synthesize_sync(self, text: str) -> list[SpeechChunk]:
        """Speak ``text``: one chunk per sentence with phone timings (seconds from the chunk's first sample)."""
        return list(self.iter_chunks(text))


class FestivalVoice(_ProgramVoice):
    """festival with one of its voices (default the HTS voice ``cmu_us_slt_arctic_hts``), one process per call.

    ``rate`` is words per minute (80..450; default the voice's own, ~163); ``pitch`` is ignored (see the
    module docstring).
    """

    engine = "festival"
    natural_rate = FESTIVAL_NATURAL_RATE

    def __init__(self, name: str = DEFAULT_FESTIVAL_VOICE, *, rate: float | None = None,
                 pitch: float | None = None) -> None:
        name = (name or "").strip()
        _binary("festival", FESTIVAL_INSTALL)
        if not re.fullmatch(r"[a-z0-9_]+", name) or name not in festival_voices():
            raise UnknownVoice(f"festival has no voice {name!r}; installed: {', '.join(festival_voices()) or 'none'} "
                               f"(the default needs: {FESTIVAL_INSTALL})")
        if pitch is not None:
            log.debug("festival voices ignore pitch (hts_engine's -fm has no effect in festival 2.5)")
        self.pitch = pitch
        super().__init__(name, 32000 if name.endswith("_hts") else 16000, rate)

    def __repr__(self) -> str:
        return f"FestivalVoice({self.name!r}, rate={self._rate:g})"

    def script(self, parts: list[str], directory: Path) -> str:
        """The Scheme program that speaks ``parts`` into ``directory/<k>.wav`` and prints their segments."""
        speed = self._rate / self.natural_rate
        lines = [
            f"(voice_{self.name})",
            # HTS voices take their speed from hts_engine (-r, which also moves the Segment ends); other voices
            # from festival's own duration module.
            f"(Parameter.set 'Duration_Stretch {1 / speed:.4f})",
            f"(if (boundp 'hts_engine_params) (set! hts_engine_params (append hts_engine_params "
            f"(list (list \"-r\" {speed:.4f})))))",
            "(define (avatarium_say k text wavfile)",
            "  (let ((utt (SynthText text)))",
            "    (utt.save.wave utt wavfile 'riff)",
            "    (mapcar (lambda (seg) (format t \"seg %s %f\\n\" (item.name seg) (item.feat seg 'end)))",
            "            (utt.relation.items utt 'Segment))",
            "    (format t \"end %d\\n\" k)",
            "    (fflush nil)))",
        ]
        for k, part in enumerate(parts):
            wav = str(directory / f"{k}.wav").replace("\\", "/")
            lines.append(f"(avatarium_say {k} {scheme_string(part)} {scheme_string(wav)})")
        return "\n".join(lines) + "\n"

    def start(self, text: str) -> _FestivalRun | None:
        parts = self.parts(text)
        return _FestivalRun(self, parts) if parts else None

    def iter_chunks(self, text: str) -> Iterator[SpeechChunk]:
        run = self.start(text)
        if run is None:
            return
        try:
            while (chunk := run.next_chunk()) is not None:
                yield chunk
        finally:
            run.close()

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Yield one chunk per sentence as festival finishes it; closing early kills the process."""
        run = await asyncio.to_thread(self.start, text)
        if run is None:
            return
        try:
            while (chunk := await asyncio.to_thread(run.next_chunk)) is not None:
                yield chunk
        finally:
            run.close()


class FliteVoice(_ProgramVoice):
    """flite with one of its compiled-in voices (default ``slt``), one process per sentence.

    ``rate`` is words per minute (80..450; default the voice's own, ~168); ``pitch`` 0..100 (50 = the voice's
    own) scales the voice's pitch by 0.71..1.41 (half an octave down or up).
    """

    engine = "flite"
    natural_rate = FLITE_NATURAL_RATE

    def __init__(self, name: str = DEFAULT_FLITE_VOICE, *, rate: float | None = None,
                 pitch: float | None = None) -> None:
        name = (name or "").strip()
        _binary("flite", FLITE_INSTALL)
        if name not in flite_voices():
            raise UnknownVoice(f"flite has no voice {name!r}; compiled in: {', '.join(flite_voices())}")
        self.pitch = None if pitch is None else _check_number("flite", "pitch", pitch, PITCH_RANGE)
        super().__init__(name, 8000 if name == "kal" else 16000, rate)

    def __repr__(self) -> str:
        return f"FliteVoice({self.name!r}, rate={self._rate:g}, pitch={self.pitch})"

    def render(self, sentence: str) -> SpeechChunk:
        """One flite call for one sentence."""
        with tempfile.TemporaryDirectory(prefix="avatarium-flite-") as tmp:
            wav = Path(tmp) / "out.wav"
            args = [_binary("flite", FLITE_INSTALL), "-voice", self.name,
                    "--setf", f"duration_stretch={self.natural_rate / self._rate:.4f}"]
            if self.pitch is not None:
                args += ["--setf", f"f0_shift={2 ** ((self.pitch - 50) / 100):.4f}"]
            args += ["-psdur", "-o", str(wav), "-t", sentence]
            out = _run(args, "flite", FLITE_INSTALL)
            pcm, rate = _read_wav(wav, "flite")
        ends = [(name, float(t)) for name, t in _PSDUR.findall(out)]
        return self.chunk(pcm, rate, ends)

    def iter_chunks(self, text: str) -> Iterator[SpeechChunk]:
        for sentence in self.parts(text):
            yield self.render(sentence)

    async def synthesize(self, text: str) -> AsyncIterator[SpeechChunk]:
        """Yield one chunk per sentence as flite finishes it; each call runs in a worker thread."""
        for sentence in await asyncio.to_thread(self.parts, text):
            yield await asyncio.to_thread(self.render, sentence)


def _festival_factory(name: str, *, rate: float | None = None, pitch: float | None = None,
                      **_: object) -> FestivalVoice:
    return FestivalVoice(name, rate=rate, pitch=pitch)


def _flite_factory(name: str, *, rate: float | None = None, pitch: float | None = None, **_: object) -> FliteVoice:
    return FliteVoice(name, rate=rate, pitch=pitch)


register_engine("festival", _festival_factory)
register_engine("flite", _flite_factory)

"""Phonemizer front end: text to IPA phonemes per word, with the espeak-ng bundled by ``espeakng-loader``.

Offline setup this needs (done once, lazily, by :func:`_backend`):

* ``EspeakWrapper.set_library(espeakng_loader.get_library_path())`` -- phonemizer searches only the system's
  library paths and finds nothing on a machine without apt's espeak-ng.
* ``EspeakWrapper.set_data_path(espeakng_loader.get_data_path())`` -- without it the bundled library looks for
  its data at the path compiled into it (the wheel's CI build directory) and fails with
  ``Error processing file '.../phontab'``.

phonemizer loads its own private copy of the library (it copies the ``.so`` to a temporary directory), so its
global espeak state never collides with the Basic voice's (``avatarium_lab.tts.espeak``). One module lock
serialises the calls, since neither phonemizer's backends nor espeak are thread-safe.
"""

from __future__ import annotations

import logging
import re
import threading
import unicodedata
from functools import lru_cache
from typing import Any

from ..errors import LipSyncError
from ..tts.espeak import espeak_pieces, espeak_safe_text

log = logging.getLogger(__name__)
# phonemizer warns "words count mismatch" whenever espeak expands a number or abbreviation into several
# words, which is normal here; keep its own errors only.
_phonemizer_log = logging.getLogger(__name__ + ".phonemizer")
_phonemizer_log.setLevel(logging.ERROR)

_PHONE_SEP = " "
_WORD_SEP = "|"
_LOCK = threading.Lock()
# phonemizer strips punctuation before espeak sees it, so espeak would link words across a comma ("lawyer,
# hour" gains a linking r the Basic voice never says). Phonemizing clause by clause keeps the breaks the voice
# makes. (phonemizer's own preserve_punctuation=True is no fix: it drops whole clauses, e.g. everything after
# "37" in "temperature: 37.5 degrees Celsius.")
_CLAUSE_BREAK = re.compile(r"(?<=[,;:.!?…])[\"'”’)\]]*\s+|\s+[—–]\s*")

STRESS_MARKS = frozenset("ˈˌ")
LENGTH_MARKS = frozenset("ːˑ:")
"""espeak writes a few length marks as an ASCII colon (``ˈa:`` in some English accents)."""


@lru_cache(maxsize=1)
def _configure() -> None:
    try:
        import espeakng_loader
        from phonemizer.backend.espeak.wrapper import EspeakWrapper
    except ImportError as exc:  # pragma: no cover - dependencies of the package
        raise LipSyncError("phonemizing needs the 'phonemizer' and 'espeakng-loader' packages") from exc
    EspeakWrapper.set_library(espeakng_loader.get_library_path())
    EspeakWrapper.set_data_path(espeakng_loader.get_data_path())


@lru_cache(maxsize=1)
def _language_aliases() -> dict[str, str]:
    """Other names of phonemizer's languages: espeak voice file names (``en`` -> ``en-gb``), any case."""
    from phonemizer.backend.espeak.wrapper import EspeakWrapper

    aliases: dict[str, str] = {}
    for voice in EspeakWrapper().available_voices():
        aliases.setdefault(voice.identifier.rsplit("/", 1)[-1].lower(), voice.language)
        aliases.setdefault(voice.language.lower(), voice.language)
    return aliases


@lru_cache(maxsize=16)
def _backend(language: str, with_stress: bool) -> Any:
    _configure()
    from phonemizer.backend import EspeakBackend

    language = _language_aliases().get(language.lower(), language)
    try:
        return EspeakBackend(
            language,
            with_stress=with_stress,
            preserve_punctuation=False,
            language_switch="remove-flags",  # drop "(fr)"-style markers espeak adds around foreign words
            words_mismatch="ignore",
            logger=_phonemizer_log,
        )
    except RuntimeError as exc:
        raise LipSyncError(f"phonemizer cannot use espeak language {language!r}: {exc}") from exc


def phonemize(text: str, language: str = "en-us", *, with_stress: bool = False) -> list[list[str]]:
    """IPA phonemes of ``text``, one list per spoken word, e.g. ``[["h", "ə", "l", "oʊ"], ["w", "ɜː", "l", "d"]]``.

    Phoneme names are espeak-ng's (the same ones the Basic voice reports), so some are merged
    (``ɑːɹ``, ``aɪə``); with ``with_stress`` the stress marks stay on the vowels. Punctuation is dropped;
    numbers and abbreviations are expanded as espeak speaks them.
    """
    text = espeak_safe_text(text).strip()
    if not text:
        return []
    from phonemizer.separator import Separator

    backend = _backend(language, with_stress)
    separator = Separator(phone=_PHONE_SEP, word=_WORD_SEP, syllable=None)
    # Pieces bound what one espeak call sees: the inputs that crash the Basic voice crash phonemizer too.
    clauses = [p for c in _CLAUSE_BREAK.split(" ".join(text.split())) for p in espeak_pieces(c)]
    with _LOCK:
        out = backend.phonemize(clauses, separator=separator, strip=True, njobs=1)
    words: list[list[str]] = []
    for clause in out:
        for word in clause.split(_WORD_SEP):
            phones = [p for p in word.split(_PHONE_SEP) if p]
            if phones:
                words.append(phones)
    return words


def phoneme_sequence(text: str, language: str = "en-us", *, with_stress: bool = False) -> list[str]:
    """:func:`phonemize` flattened to one list of phonemes."""
    return [p for word in phonemize(text, language, with_stress=with_stress) for p in word]


def strip_marks(symbol: str) -> str:
    """``symbol`` without stress marks, length marks and combining diacritics (``ˈɑːɹ`` -> ``ɑɹ``, ``t̪`` -> ``t``).

    Used to compare phoneme strings from different sources and as the first step of viseme lookup.
    """
    return "".join(
        ch for ch in symbol if ch not in STRESS_MARKS and ch not in LENGTH_MARKS and not unicodedata.combining(ch)
    )


def marked_segments(symbol: str) -> tuple[list[str], list[bool]]:
    """The letters of ``symbol`` without stress marks and diacritics, and for each whether a length mark follows.

    ``ˈɑːɹ`` -> ``(["ɑ", "ɹ"], [True, False])``: the shared first step of cutting a merged symbol into parts.
    """
    chars: list[str] = []
    long_flags: list[bool] = []
    for ch in symbol.strip():
        if ch in STRESS_MARKS or unicodedata.combining(ch):
            continue
        if ch in LENGTH_MARKS:
            if long_flags:
                long_flags[-1] = True
            continue
        chars.append(ch)
        long_flags.append(False)
    return chars, long_flags

"""Phoneme -> viseme mapping: IPA to the 15 Oculus visemes, Rhubarb's mouth shapes A-H/X, and ARKit weights.

The tables live in ``lipsync/data/*.yaml`` (their header comments give the mapping principles) and are loaded
once. IPA symbols are looked up after dropping stress marks, length marks and combining diacritics, then cut
into table keys by greedy longest match, so a merged espeak phoneme such as ``ˈɑːɹ`` or a diphthong such as
``aɪ`` becomes a short sequence of visemes (``aa`` + ``RR``, ``aa`` + ``I``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from functools import lru_cache
from importlib import resources
from typing import Any

import yaml

from ..errors import LipSyncError
from ..events import TimedPhoneme, TimedViseme
from .phonemize import marked_segments

log = logging.getLogger(__name__)

OCULUS_VISEMES: tuple[str, ...] = (
    "sil", "PP", "FF", "TH", "DD", "kk", "CH", "SS", "nn", "RR", "aa", "E", "I", "O", "U",
)
"""The 15 Oculus (Meta) visemes in their canonical order (Ready Player Me's ``viseme_<id>`` morph targets)."""

RHUBARB_SHAPES: tuple[str, ...] = ("A", "B", "C", "D", "E", "F", "G", "H", "X")
"""Rhubarb Lip Sync mouth shapes; ``X`` is the idle/rest shape."""

PAUSE_SYMBOLS = frozenset({"", " ", "_", "sil", "sp", "spn", "pau", "#", "|", "‖"})
"""Phoneme symbols that mean silence (espeak reports pauses as empty names)."""

OCULUS_FALLBACK = "E"
"""Viseme for IPA the table does not know: the schwa's neutral, half-open mouth disturbs speech least."""
RHUBARB_FALLBACK = "B"
"""Rhubarb shape for unknown IPA: B, Rhubarb's 'most consonants' slightly open shape."""

_LONG_WEIGHT = 2.0
"""A long segment (marked ``ː``) gets twice the time of a short one when a merged symbol is split."""
_EPS = 1e-9

_warned: set[tuple[str, str]] = set()
_warn_lock = threading.Lock()


def _read_yaml(name: str) -> Any:
    with resources.files(__package__).joinpath("data", name).open("r", encoding="utf-8") as fh:
        return yaml.safe_load(fh)


def _checked_mapping(name: str, allowed: Sequence[str]) -> dict[str, str]:
    data = _read_yaml(name)
    if not isinstance(data, dict):
        raise LipSyncError(f"{name} must be a mapping")
    out: dict[str, str] = {}
    for key, value in data.items():
        if not isinstance(key, str) or value not in allowed:
            raise LipSyncError(f"{name}: bad entry {key!r}: {value!r} (values must be one of {list(allowed)})")
        out[key] = value
    return out


@lru_cache(maxsize=1)
def _ipa_oculus() -> dict[str, str]:
    return _checked_mapping("ipa_to_oculus.yaml", OCULUS_VISEMES)


@lru_cache(maxsize=1)
def _ipa_rhubarb() -> dict[str, str]:
    return _checked_mapping("ipa_to_rhubarb.yaml", RHUBARB_SHAPES)


@lru_cache(maxsize=1)
def _oculus_rhubarb() -> dict[str, str]:
    table = _checked_mapping("oculus_to_rhubarb.yaml", RHUBARB_SHAPES)
    missing = set(OCULUS_VISEMES) - set(table)
    if missing:
        raise LipSyncError(f"oculus_to_rhubarb.yaml lacks {sorted(missing)}")
    return table


@lru_cache(maxsize=1)
def _oculus_arkit() -> dict[str, dict[str, float]]:
    data = _read_yaml("oculus_to_arkit.yaml")
    out: dict[str, dict[str, float]] = {}
    for viseme in OCULUS_VISEMES:
        weights = data.get(viseme) if isinstance(data, dict) else None
        if not isinstance(weights, dict):
            raise LipSyncError(f"oculus_to_arkit.yaml lacks viseme {viseme!r}")
        clean = {str(k): float(v) for k, v in weights.items()}
        if any(not 0.0 <= v <= 1.0 for v in clean.values()):
            raise LipSyncError(f"oculus_to_arkit.yaml: weights of {viseme!r} must be within 0..1")
        out[viseme] = clean
    return out


@lru_cache(maxsize=1)
def _segment_keys() -> tuple[int, frozenset[str]]:
    keys = frozenset(_ipa_oculus())
    return max(len(k) for k in keys), keys


@lru_cache(maxsize=4096)
def split_symbol(symbol: str) -> tuple[tuple[str, float], ...]:
    """Cut an IPA symbol into table segments with relative durations, e.g. ``ˈɑːɹ`` -> ``(("ɑ", 2.0), ("ɹ", 1.0))``.

    Stress marks and combining diacritics are dropped; a length mark doubles its segment's weight; characters
    the tables do not know come back as their own one-character segments (the lookups then fall back).
    Pauses and symbols with nothing left (a lone stress mark) give ``()``.
    """
    chars, long_flags = marked_segments(symbol)
    max_len, keys = _segment_keys()
    text = "".join(chars)
    parts: list[tuple[str, float]] = []
    i = 0
    while i < len(text):
        for size in range(min(max_len, len(text) - i), 0, -1):
            if text[i : i + size] in keys or size == 1:
                break
        weight = _LONG_WEIGHT if any(long_flags[i : i + size]) else 1.0
        parts.append((text[i : i + size], weight))
        i += size
    return tuple(parts)


def ipa_table(kind: str = "oculus") -> dict[str, str]:
    """A copy of the IPA segment table: ``"oculus"`` (IPA -> viseme) or ``"rhubarb"`` (IPA -> shape)."""
    if kind == "oculus":
        return dict(_ipa_oculus())
    if kind == "rhubarb":
        return dict(_ipa_rhubarb())
    raise LipSyncError(f"unknown IPA table {kind!r}; expected 'oculus' or 'rhubarb'")


def _lookup(segment: str, table: dict[str, str], fallback: str, kind: str) -> str:
    target = table.get(segment)
    if target is not None:
        return target
    with _warn_lock:
        if (kind, segment) not in _warned:
            _warned.add((kind, segment))
            log.warning("no %s mapping for IPA %r (U+%04X); using %r", kind, segment, ord(segment[0]), fallback)
    return fallback


def _parts(symbol: str, table: dict[str, str], fallback: str, kind: str) -> list[tuple[str, float]]:
    return [(_lookup(seg, table, fallback, kind), w) for seg, w in split_symbol(symbol)]


def _dominant(parts: list[tuple[str, float]], silence: str) -> str:
    if not parts:
        return silence
    return max(parts, key=lambda p: p[1])[0]  # max keeps the first of equal weights


def ipa_to_oculus(symbol: str) -> str:
    """The Oculus viseme of one IPA phoneme; for a merged symbol, that of its longest (else first) part."""
    if symbol.strip() in PAUSE_SYMBOLS:
        return "sil"
    return _dominant(_parts(symbol, _ipa_oculus(), OCULUS_FALLBACK, "Oculus"), "sil")


def ipa_to_oculus_sequence(symbol: str) -> list[tuple[str, float]]:
    """Oculus visemes of every part of ``symbol`` with their relative durations (``aɪ`` -> aa 1, I 1)."""
    if symbol.strip() in PAUSE_SYMBOLS:
        return []
    return _parts(symbol, _ipa_oculus(), OCULUS_FALLBACK, "Oculus")


def ipa_to_rhubarb(symbol: str) -> str:
    """The Rhubarb shape of one IPA phoneme (``X`` for pauses); merged symbols as in :func:`ipa_to_oculus`."""
    if symbol.strip() in PAUSE_SYMBOLS:
        return "X"
    return _dominant(_parts(symbol, _ipa_rhubarb(), RHUBARB_FALLBACK, "Rhubarb"), "X")


def oculus_to_rhubarb(viseme: str) -> str:
    """The Rhubarb shape closest to an Oculus viseme."""
    try:
        return _oculus_rhubarb()[viseme]
    except KeyError:
        raise LipSyncError(f"unknown Oculus viseme {viseme!r}; expected one of {list(OCULUS_VISEMES)}") from None


def oculus_to_arkit(viseme: str) -> dict[str, float]:
    """ARKit blendshape weights (0..1) that form an Oculus viseme; shapes not listed are 0. A fresh dict."""
    try:
        return dict(_oculus_arkit()[viseme])
    except KeyError:
        raise LipSyncError(f"unknown Oculus viseme {viseme!r}; expected one of {list(OCULUS_VISEMES)}") from None


def _timeline(
    items: Sequence[Any], parts_of: Callable[[Any], list[tuple[str, float]] | None], silence: str
) -> tuple[TimedViseme, ...]:
    """Spread each item's interval over its parts, fill gaps with ``silence``, merge equal neighbours.

    ``parts_of`` returns ``[]`` for a pause and ``None`` for an item with no shape of its own (a lone stress
    mark), whose time goes to the preceding shape.
    """
    out: list[list[Any]] = []  # [label, start, end]

    def emit(label: str, start: float, end: float) -> None:
        if end - start <= _EPS:
            return
        if out and out[-1][0] == label and start - out[-1][2] <= _EPS:
            out[-1][2] = end
        else:
            out.append([label, start, end])

    cursor: float | None = None
    for item in items:
        start, end = float(item.start), float(item.end)
        if cursor is not None:
            if start - cursor > _EPS:
                emit(silence, cursor, start)
            start = max(start, cursor)  # overlapping input: the earlier item keeps its time
        if end <= start:
            cursor = max(cursor if cursor is not None else end, end)
            continue
        parts = parts_of(item)
        if parts is None:
            if out and start - out[-1][2] <= _EPS:
                out[-1][2] = end
            else:
                emit(silence, start, end)
        elif not parts:
            emit(silence, start, end)
        else:
            total = sum(w for _, w in parts)
            acc = 0.0
            for k, (label, weight) in enumerate(parts):
                seg_start = start + (end - start) * acc / total
                acc += weight
                seg_end = end if k == len(parts) - 1 else start + (end - start) * acc / total
                emit(label, seg_start, seg_end)
        cursor = end
    return tuple(TimedViseme(label, s, e) for label, s, e in out)


def _phoneme_parts(
    table: Callable[[], dict[str, str]], fallback: str, kind: str
) -> Callable[[TimedPhoneme], list[tuple[str, float]] | None]:
    def parts_of(p: TimedPhoneme) -> list[tuple[str, float]] | None:
        if p.symbol.strip() in PAUSE_SYMBOLS:
            return []
        parts = _parts(p.symbol, table(), fallback, kind)
        return parts or None

    return parts_of


def phonemes_to_visemes(phonemes: Sequence[TimedPhoneme]) -> tuple[TimedViseme, ...]:
    """Timed Oculus visemes for timed phonemes (same timeline).

    A merged symbol's interval is split among its parts (long parts count double); pauses and gaps between
    phonemes become ``sil``; consecutive identical visemes are merged. Nothing is added before the first
    phoneme or after the last.
    """
    return _timeline(phonemes, _phoneme_parts(_ipa_oculus, OCULUS_FALLBACK, "Oculus"), "sil")


def to_rhubarb(items: Sequence[TimedPhoneme] | Sequence[TimedViseme]) -> tuple[TimedViseme, ...]:
    """Rhubarb mouth shapes (A-H, X) for timed phonemes or timed Oculus visemes.

    The result reuses ``TimedViseme`` with the shape letter as ``viseme``. Phonemes go through
    ``ipa_to_rhubarb.yaml`` (which can tell l from n), Oculus visemes through ``oculus_to_rhubarb.yaml``;
    gaps become ``X`` and equal neighbours merge.
    """
    if not items:
        return ()
    if all(isinstance(i, TimedPhoneme) for i in items):
        return _timeline(items, _phoneme_parts(_ipa_rhubarb, RHUBARB_FALLBACK, "Rhubarb"), "X")
    if all(isinstance(i, TimedViseme) for i in items):
        return _timeline(items, lambda v: [(oculus_to_rhubarb(v.viseme), 1.0)], "X")
    raise LipSyncError("to_rhubarb takes a sequence of TimedPhoneme or of TimedViseme, not a mix")

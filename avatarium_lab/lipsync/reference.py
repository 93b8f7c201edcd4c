"""Lip-sync reference sets: utterances with exact phoneme timings to score aligners against.

- :func:`load_reference` (``train`` / ``dev`` / ``heldout``): speech synthesised by engines that report their
  phoneme timings, made by ``datasets/lipsync/make_reference.py`` (generated on first use, git-ignored). The
  ``heldout`` split has voices, rates and pitches that training never saw.
- :func:`load_timit`: real human speech with hand-checked phone timings (the TIMIT corpus sample) from a folder
  outside the project, for evaluation only; ``None`` when the folder is not there. TIMIT's phone symbols are
  mapped to IPA here (:data:`TIMIT_TO_IPA`); a stop's closure belongs to the stop (lips are shut during ``bcl``
  and ``pcl``), pauses become gaps.
"""

from __future__ import annotations

import importlib.util
import json
import os
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from ..errors import LipSyncError
from ..events import TimedPhoneme
from ..tts.festival import ARPABET_TO_IPA
from .audio_io import load_wav

ROOT = Path(__file__).resolve().parents[2]
DATASET_DIR = ROOT / "datasets" / "lipsync"
GENERATED = DATASET_DIR / "generated"
TIMIT_DIR = ROOT.parent / "shared" / "datasets" / "timit-sample-dev"
"""Where the TIMIT sample is looked for (override with ``AVATARIUM_TIMIT_DIR``)."""


@dataclass(frozen=True)
class Utterance:
    id: str
    split: str
    engine: str
    voice: str
    text: str
    duration: float
    wav: Path
    phonemes: tuple[TimedPhoneme, ...] = field(repr=False)
    rate: float | None = None

    def audio(self) -> tuple[np.ndarray, int]:
        """Float mono samples and sample rate."""
        return load_wav(self.wav)


@lru_cache(maxsize=1)
def _maker() -> ModuleType:
    path = DATASET_DIR / "make_reference.py"
    if not path.is_file():
        raise LipSyncError(f"the reference generator {path} is missing (it ships with the repository, not the "
                           "installed package)")
    spec = importlib.util.spec_from_file_location("avatarium_make_reference", path)
    module = importlib.util.module_from_spec(spec)  # type: ignore[arg-type]
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is created
    spec.loader.exec_module(module)  # type: ignore[union-attr]
    return module


def load_reference(split: str = "heldout", *, limit: int | None = None, generate: bool = True,
                   progress: bool = True, out_dir: Path = GENERATED) -> list[Utterance]:
    """The utterances of ``split`` (the first ``limit``), synthesising the missing ones when ``generate``."""
    maker = _maker()
    if generate:
        rows = maker.generate([split], out_dir, limit=limit, progress=progress)
    else:
        wanted = [s.id for s in maker.plan(split)][:limit]
        existing = maker.read_manifest(out_dir)
        missing = [i for i in wanted if i not in existing]
        if missing:
            raise LipSyncError(f"{len(missing)} {split!r} utterances are not generated yet; run "
                               "python datasets/lipsync/make_reference.py")
        rows = [existing[i] for i in wanted]
    return [Utterance(r["id"], r["split"], r["engine"], r["voice"], r["text"], r["duration"], out_dir / r["wav"],
                      tuple(TimedPhoneme(s, float(a), float(b)) for s, a, b in r["phonemes"]), r.get("rate"))
            for r in rows]


# --- TIMIT ---------------------------------------------------------------------------------------------------

TIMIT_SILENCE = frozenset({"h#", "pau", "epi"})
TIMIT_CLOSURES = {"bcl": "b", "pcl": "p", "dcl": "d", "tcl": "t", "gcl": "ɡ", "kcl": "k"}
TIMIT_TO_IPA: dict[str, str] = {
    **{k.lower(): v for k, v in ARPABET_TO_IPA.items()},
    "dx": "ɾ", "nx": "n", "q": "ʔ", "ix": "ɪ", "ax": "ə", "ax-h": "ə", "axr": "ɚ", "ux": "u", "em": "m",
    "en": "n", "eng": "ŋ", "el": "l", "hv": "h", "hh": "h",
}


def timit_phonemes(phones: Sequence[dict[str, Any]]) -> tuple[TimedPhoneme, ...]:
    """TIMIT phones ``[{p, start, end}]`` as IPA; closures join the stop after them (or stand as it)."""
    out: list[TimedPhoneme] = []
    pending: tuple[str, float] | None = None  # a closure waiting for its release
    for ph in phones:
        p, start, end = ph["p"], float(ph["start"]), float(ph["end"])
        if p in TIMIT_SILENCE:
            if pending:
                out.append(TimedPhoneme(TIMIT_CLOSURES[pending[0]], pending[1], start))
            pending = None
            continue
        if p in TIMIT_CLOSURES:
            if pending:
                out.append(TimedPhoneme(TIMIT_CLOSURES[pending[0]], pending[1], start))
            pending = (p, start)
            continue
        symbol = TIMIT_TO_IPA.get(p)
        if symbol is None:
            raise LipSyncError(f"unknown TIMIT phone {p!r}")
        if pending:
            if TIMIT_CLOSURES[pending[0]] == symbol or (pending[0] in ("dcl", "tcl") and symbol in ("tʃ", "dʒ")):
                start = pending[1]  # the closure is the start of its own stop
            else:
                out.append(TimedPhoneme(TIMIT_CLOSURES[pending[0]], pending[1], start))  # unreleased stop
            pending = None
        out.append(TimedPhoneme(symbol, start, end))
    if pending:
        out.append(TimedPhoneme(TIMIT_CLOSURES[pending[0]], pending[1], float(phones[-1]["end"])))
    return tuple(out)


def timit_dir() -> Path | None:
    folder = Path(os.environ.get("AVATARIUM_TIMIT_DIR", TIMIT_DIR))
    return folder if (folder / "manifest.jsonl").is_file() else None


def load_timit(limit: int | None = None) -> list[Utterance] | None:
    """The TIMIT sample's utterances (human speech, hand-checked timings), or ``None`` when it is not here."""
    folder = timit_dir()
    if folder is None:
        return None
    rows = [json.loads(line) for line in (folder / "manifest.jsonl").read_text(encoding="utf-8").splitlines()
            if line.strip()][:limit]
    return [Utterance(r["id"], "timit", "human", r.get("speaker", ""), r["text"], float(r["duration"]),
                      folder / r["wav"], timit_phonemes(r["phones"])) for r in rows]

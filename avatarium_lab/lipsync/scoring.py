"""Lip-sync accuracy: predicted timed phonemes scored against a reference with exact timings.

Metrics (all on a 100 fps frame grid over the utterance, gaps between phonemes counting as rest):

- ``frame_accuracy_oculus``: share of frames whose Oculus-15 viseme matches the reference's.
- ``frame_accuracy_rhubarb``: the same in Rhubarb's 9 mouth shapes (A-H, X), mapped from the IPA phonemes.
- ``pp_recall`` / ``pp_precision``: closed lips (Oculus ``PP``: p, b, m) -- the shape viewers notice most when
  it is missing or wrong.
- ``onset_mae_ms``: mean absolute error of the onsets of viseme changes. Both tracks are reduced to runs of equal
  visemes, the two label sequences are matched (longest matching blocks, ``difflib``), and matched runs compare
  their start times.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from ..events import TimedPhoneme
from .visemes import ipa_to_oculus, ipa_to_rhubarb

FPS = 100


@dataclass(frozen=True)
class LipSyncScore:
    frame_accuracy_oculus: float
    frame_accuracy_rhubarb: float
    pp_recall: float
    pp_precision: float
    onset_mae_ms: float
    frames: int
    matched_onsets: int

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def frame_labels(phonemes: Sequence[TimedPhoneme], duration: float, space: str = "oculus",
                 fps: int = FPS) -> np.ndarray:
    """One label per frame (frame centres) over ``duration`` seconds: the viseme/shape of the phoneme there."""
    n = max(0, int(round(duration * fps)))
    rest = "sil" if space == "oculus" else "X"
    mapper = ipa_to_oculus if space == "oculus" else ipa_to_rhubarb
    labels = np.full(n, rest, dtype=object)
    centres = (np.arange(n) + 0.5) / fps
    for ph in phonemes:
        lo, hi = np.searchsorted(centres, [ph.start, ph.end])
        if hi > lo:
            labels[lo:hi] = mapper(ph.symbol)
    return labels


def _runs(labels: np.ndarray, fps: int) -> list[tuple[str, float]]:
    """(label, onset seconds) of each run of equal labels."""
    out: list[tuple[str, float]] = []
    for i, label in enumerate(labels):
        if not out or out[-1][0] != label:
            out.append((label, i / fps))
    return out


def onset_errors(reference: np.ndarray, predicted: np.ndarray, fps: int = FPS) -> list[float]:
    ref_runs, pred_runs = _runs(reference, fps), _runs(predicted, fps)
    matcher = difflib.SequenceMatcher(a=[r[0] for r in ref_runs], b=[p[0] for p in pred_runs], autojunk=False)
    errors = []
    for block in matcher.get_matching_blocks():
        for k in range(block.size):
            i, j = block.a + k, block.b + k
            if i == 0 and j == 0:
                continue  # both tracks' first run starts at 0: that is the utterance's start, not a change
            errors.append(abs(ref_runs[i][1] - pred_runs[j][1]))
    return errors


def score(reference: Sequence[TimedPhoneme], predicted: Sequence[TimedPhoneme], duration: float,
          fps: int = FPS) -> LipSyncScore:
    """Score ``predicted`` against ``reference`` over an utterance of ``duration`` seconds."""
    ref_o, pred_o = frame_labels(reference, duration, "oculus", fps), frame_labels(predicted, duration, "oculus", fps)
    ref_r, pred_r = (frame_labels(reference, duration, "rhubarb", fps),
                     frame_labels(predicted, duration, "rhubarb", fps))
    n = len(ref_o)
    if n == 0:
        return LipSyncScore(1.0, 1.0, 1.0, 1.0, 0.0, 0, 0)
    ref_pp, pred_pp = ref_o == "PP", pred_o == "PP"
    both = float(np.sum(ref_pp & pred_pp))
    errors = onset_errors(ref_o, pred_o, fps)
    return LipSyncScore(
        frame_accuracy_oculus=float(np.mean(ref_o == pred_o)),
        frame_accuracy_rhubarb=float(np.mean(ref_r == pred_r)),
        pp_recall=both / float(ref_pp.sum()) if ref_pp.any() else 1.0,
        pp_precision=both / float(pred_pp.sum()) if pred_pp.any() else (1.0 if not ref_pp.any() else 0.0),
        onset_mae_ms=1000.0 * float(np.mean(errors)) if errors else 0.0,
        frames=n,
        matched_onsets=len(errors),
    )

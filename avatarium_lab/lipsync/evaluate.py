"""Run aligners over a reference set and tabulate: one row per (aligner, utterance), summaries, viseme confusion.

Used by ``benchmarks/lipsync.py`` and ``notebooks/05_lipsync_accuracy.ipynb``::

    utts = load_reference("heldout")
    run = evaluate(["text-proportional", "pocketsphinx", "neural"], utts)
    summarize(run.table)                # frame accuracy (both spaces), PP recall/precision, onset MAE, RTF
    confusion(run, "neural")            # reference x predicted Oculus visemes, frame counts

Timing: ``align_seconds`` is wall time of ``Aligner.align`` alone (audio already decoded), so RTF is
``sum(align_seconds) / sum(duration)``; the first call of each aligner (model load, warm-up) is not counted.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ..events import TimedPhoneme
from .aligners import Aligner, get_aligner
from .reference import Utterance
from .scoring import FPS, frame_labels, score
from .visemes import OCULUS_VISEMES

METRICS = ("frame_accuracy_oculus", "frame_accuracy_rhubarb", "pp_recall", "pp_precision", "onset_mae_ms")
GOALS = {"frame_accuracy_rhubarb": (">=", 0.80), "pp_recall": (">=", 0.85), "onset_mae_ms": ("<=", 20.0),
         "rtf": ("<=", 0.03)}
"""Issue 6's goals for audio + text alone on voices training never saw (2 cores)."""


@dataclass
class EvaluationRun:
    table: pd.DataFrame
    """One row per (aligner, utterance): ids, engine, voice, duration, align_seconds and the score's metrics."""
    predictions: dict[tuple[str, str], tuple[TimedPhoneme, ...]] = field(repr=False)
    utterances: dict[str, Utterance] = field(repr=False)


def evaluate(aligners: Sequence[str | Aligner], utterances: Sequence[Utterance], *,
             progress: bool | Callable[[int, int], None] = True) -> EvaluationRun:
    """Align every utterance with every aligner and score it against the reference timings.

    ``progress``: ``True`` for a tqdm bar, ``False`` for none, or a callable ``(done, total)`` (widget bars).
    """
    from tqdm.auto import tqdm

    built = [get_aligner(a) if isinstance(a, str) else a for a in aligners]
    audio = {}
    rows: list[dict[str, Any]] = []
    predictions: dict[tuple[str, str], tuple[TimedPhoneme, ...]] = {}
    total = len(built) * len(utterances)
    bar = tqdm(total=total, desc="aligning", unit="utt", disable=progress is not True)
    done = 0
    for aligner in built:
        if utterances:  # warm-up: model loads and first-call costs are not part of the RTF
            samples, rate = audio.setdefault(utterances[0].id, utterances[0].audio())
            aligner.align(samples[: rate // 2], rate, utterances[0].text.split()[0])
        for utt in utterances:
            samples, rate = audio.get(utt.id) or audio.setdefault(utt.id, utt.audio())
            duration = len(samples) / rate
            t0 = time.perf_counter()
            predicted = aligner.align(samples, rate, utt.text)
            elapsed = time.perf_counter() - t0
            predictions[(aligner.name, utt.id)] = predicted
            s = score(utt.phonemes, predicted, duration)
            rows.append({"aligner": aligner.name, "id": utt.id, "split": utt.split, "engine": utt.engine,
                         "voice": utt.voice, "rate": utt.rate, "duration": duration, "align_seconds": elapsed,
                         "fallback": bool(getattr(aligner, "last_fallback", False)), **s.as_dict()})
            done += 1
            bar.update(1)
            if callable(progress):
                progress(done, total)
    bar.close()
    return EvaluationRun(pd.DataFrame(rows), predictions, {u.id: u for u in utterances})


def summarize(table: pd.DataFrame, by: Sequence[str] = ("aligner",)) -> pd.DataFrame:
    """Means of the metrics per group, the real-time factor, utterance count and seconds of audio."""
    grouped = table.groupby(list(by), sort=False)
    out = grouped[list(METRICS)].mean()
    out["rtf"] = grouped["align_seconds"].sum() / grouped["duration"].sum()
    out["utterances"] = grouped.size()
    out["audio_seconds"] = grouped["duration"].sum()
    return out


def meets_goals(summary: pd.DataFrame) -> pd.DataFrame:
    """Per aligner: whether each of :data:`GOALS` is met (``True``/``False``)."""
    return pd.DataFrame({metric: (summary[metric] >= goal) if op == ">=" else (summary[metric] <= goal)
                         for metric, (op, goal) in GOALS.items()})


def confusion(run: EvaluationRun, aligner: str, *, space: str = "oculus", normalize: bool = False) -> pd.DataFrame:
    """Frames per (reference viseme, predicted viseme) over all utterances at 100 fps; rows sum to 1 if
    ``normalize``."""
    labels = list(OCULUS_VISEMES) if space == "oculus" else list("ABCDEFGHX")
    index = {v: i for i, v in enumerate(labels)}
    counts = np.zeros((len(labels), len(labels)), dtype=np.int64)
    for (name, uid), predicted in run.predictions.items():
        if name != aligner:
            continue
        utt = run.utterances[uid]
        duration = float(run.table.loc[(run.table.aligner == name) & (run.table.id == uid), "duration"].iloc[0])
        ref = frame_labels(utt.phonemes, duration, space, FPS)
        pred = frame_labels(predicted, duration, space, FPS)
        np.add.at(counts, ([index[r] for r in ref], [index[p] for p in pred]), 1)
    frame = pd.DataFrame(counts, index=pd.Index(labels, name="reference"), columns=pd.Index(labels, name="predicted"))
    if normalize:
        frame = frame.div(frame.sum(axis=1).replace(0, 1), axis=0)
    return frame


def worst(table: pd.DataFrame, aligner: str, n: int = 5, metric: str = "frame_accuracy_rhubarb") -> pd.DataFrame:
    """The ``n`` utterances this aligner does worst on."""
    part = table[table.aligner == aligner]
    ascending = metric != "onset_mae_ms"
    return part.sort_values(metric, ascending=ascending).head(n)

"""Matplotlib figures of a turn: waveform with its phoneme and viseme tracks, and the latency timeline."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

    from .pipeline import TurnResult

# One colour per Oculus viseme family so mouth shapes read at a glance.
_VISEME_COLOURS = {
    "sil": "#e5e7eb", "PP": "#ef4444", "FF": "#f97316", "TH": "#f59e0b", "DD": "#eab308", "kk": "#84cc16",
    "CH": "#22c55e", "SS": "#10b981", "nn": "#14b8a6", "RR": "#06b6d4", "aa": "#3b82f6", "E": "#6366f1",
    "I": "#8b5cf6", "O": "#a855f7", "U": "#ec4899",
}


def plot_turn(turn: TurnResult, *, start: float = 0.0, end: float | None = None, width: float = 12.0) -> Figure:
    """Waveform of the reply with the engine's phonemes and the visemes under it, on one time axis."""
    import matplotlib.pyplot as plt

    audio = turn.audio.astype(np.float32) / 32768.0
    sr = turn.sample_rate
    duration = len(audio) / sr
    end = duration if end is None else min(end, duration)
    fig, (ax_w, ax_p, ax_v) = plt.subplots(3, 1, figsize=(width, 4.8), sharex=True,
                                            gridspec_kw={"height_ratios": [3, 1, 1]})
    times = np.arange(len(audio)) / sr
    sel = (times >= start) & (times <= end)
    ax_w.plot(times[sel], audio[sel], lw=0.5, color="#1f2937")
    ax_w.set_ylabel("amplitude")
    ax_w.set_title(f"“{turn.text[:90]}{'…' if len(turn.text) > 90 else ''}”", fontsize=10)
    for ax, items, label in ((ax_p, turn.phonemes, "phonemes"), (ax_v, turn.visemes, "visemes")):
        for item in items:
            if item.end < start or item.start > end:
                continue
            name = getattr(item, "symbol", None) or getattr(item, "viseme", "")
            colour = _VISEME_COLOURS.get(getattr(item, "viseme", ""), "#dbeafe")
            ax.axvspan(item.start, item.end, color=colour, alpha=0.9, lw=0)
            ax.axvline(item.start, color="white", lw=0.6)
            if item.end - item.start > 0.025:
                ax.text((item.start + item.end) / 2, 0.5, name, ha="center", va="center", fontsize=7)
        ax.set_yticks([])
        ax.set_ylabel(label, rotation=0, ha="right", va="center")
    ax_v.set_xlim(start, end)
    ax_v.set_xlabel("seconds on the turn's audio timeline")
    fig.tight_layout()
    return fig


def plot_latency(turn: TurnResult, *, width: float = 10.0) -> Figure:
    """When each stage was busy during the turn, with first token / audio / viseme marked."""
    import matplotlib.pyplot as plt

    from .events import StageTiming

    t0 = turn.events[0].t
    timings: list[StageTiming] = turn.of(StageTiming)
    stages = sorted({s.stage for s in timings}, key=["llm", "tts", "lipsync"].index)
    fig, ax = plt.subplots(figsize=(width, 1.2 + 0.5 * len(stages)))
    for row, stage in enumerate(stages):
        spans = [((s.start - t0) * 1000, (s.end - s.start) * 1000) for s in timings if s.stage == stage]
        ax.broken_barh(spans, (row - 0.35, 0.7), color=["#3b82f6", "#10b981", "#f59e0b"][row % 3])
    lat = turn.latency
    marks = (("first token", lat.time_to_first_token, "#1f2937"),
             ("first audio", lat.time_to_first_audio, "#dc2626"),
             ("first viseme", lat.time_to_first_viseme, "#7c3aed"))
    for row, (label, value, colour) in enumerate(marks):
        if value is not None:
            ax.axvline(value * 1000, color=colour, ls="--", lw=1)
            # one line of text per mark above the bars, so close marks do not overprint each other
            ax.text(value * 1000, len(stages) - 0.3 + 0.45 * row, f" {label} {value * 1000:.0f} ms",
                    color=colour, fontsize=8, va="center")
    ax.set_yticks(range(len(stages)), stages)
    ax.set_xlabel("milliseconds since the message arrived")
    ax.set_ylim(-0.6, len(stages) + 1.2)
    fig.tight_layout()
    return fig

"""Matplotlib figures: a turn's waveform with its phoneme and viseme tracks and latency timeline; experiment
results (latency distributions, metric means with CIs)."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    import pandas as pd
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


LATENCY_METRICS = ("first_token_ms", "first_audio_ms", "first_viseme_ms", "total_ms")


def plot_latency_distributions(results: pd.DataFrame, metrics: tuple[str, ...] = LATENCY_METRICS, *,
                               width: float = 11.0) -> Figure:
    """Per-variant box plots (means marked) of the latency metrics of an experiment's results table."""
    import matplotlib.pyplot as plt

    metrics = tuple(m for m in metrics if m in results and results[m].notna().any())
    variants = [v for v in _variants(results)]
    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(width, 3.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        data = [results.loc[results["variant"] == v, metric].dropna().to_numpy() for v in variants]
        ax.boxplot(data, showmeans=True, widths=0.6)
        ax.set_xticks(range(1, len(variants) + 1), [_short(v) for v in variants], rotation=20, fontsize=8)
        ax.set_title(metric.replace("_ms", " (ms)").replace("_", " "), fontsize=9)
    fig.tight_layout()
    return fig


def plot_metric_cis(summary: pd.DataFrame, metrics: list[str] | tuple[str, ...], *, width: float = 10.0) -> Figure:
    """Mean and bootstrap 95% CI per variant for each metric of a summary table (``stats.summarize``)."""
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, max(1, len(metrics)), figsize=(width, 3.0), squeeze=False)
    for ax, metric in zip(axes[0], metrics, strict=False):
        part = summary[summary["metric"] == metric]
        y = np.arange(len(part))
        mean = part["mean"].to_numpy(dtype=float)
        low = mean - part["mean_low"].to_numpy(dtype=float)
        high = part["mean_high"].to_numpy(dtype=float) - mean
        ax.errorbar(mean, y, xerr=[np.nan_to_num(low), np.nan_to_num(high)], fmt="o", capsize=4)
        ax.set_yticks(y, [_short(str(v)) for v in part["variant"]], fontsize=8)
        ax.set_title(f"{metric} (mean, 95% CI)", fontsize=9)
        ax.invert_yaxis()
    fig.tight_layout()
    return fig


def _variants(results: pd.DataFrame) -> list[str]:
    column = results["variant"]
    if hasattr(column, "cat"):
        return [v for v in column.cat.categories if (column == v).any()]
    return list(dict.fromkeys(column))


def _short(name: str, limit: int = 28) -> str:
    return name if len(name) <= limit else name[: limit - 1] + "…"


STAGE_COLOURS = {"llm": "#3b82f6", "tts": "#10b981", "lipsync": "#f59e0b"}


def plot_waterfall(timeline: list[dict], milestones: dict[str, float | None], *, title: str = "",
                   width: float = 10.0) -> Figure:
    """A turn's per-stage timeline: one row per stage and segment (busy intervals), milestones as lines.

    ``timeline``: ``[{"stage", "segment", "start", "end"}]`` in seconds from the message; ``milestones``: label ->
    milliseconds (``None`` when never reached).
    """
    import matplotlib.pyplot as plt

    rows: list[tuple[str, int]] = []
    for item in timeline:
        key = (item["stage"], int(item["segment"]) if item["stage"] != "llm" else -1)
        if key not in rows:
            rows.append(key)
    order = ["llm", "tts", "lipsync"]
    rows.sort(key=lambda r: (order.index(r[0]) if r[0] in order else 9, r[1]))
    fig, ax = plt.subplots(figsize=(width, 1.3 + 0.32 * max(1, len(rows))))
    for y, (stage, segment) in enumerate(rows):
        spans = [(i["start"] * 1000, (i["end"] - i["start"]) * 1000) for i in timeline
                 if i["stage"] == stage and (stage == "llm" or int(i["segment"]) == segment)]
        ax.broken_barh(spans, (y - 0.35, 0.7), color=STAGE_COLOURS.get(stage, "#6b7280"))
    colours = ["#1f2937", "#2563eb", "#dc2626", "#7c3aed", "#059669"]
    for k, (label, value) in enumerate(milestones.items()):
        if value is not None and np.isfinite(value):
            colour = colours[k % len(colours)]
            ax.axvline(value, color=colour, ls="--", lw=1)
            ax.text(value, len(rows) - 0.2 + 0.42 * k, f" {label} {value:.0f} ms", color=colour, fontsize=8,
                    va="center")
    ax.set_yticks(range(len(rows)), [s if s == "llm" else f"{s} #{g}" for s, g in rows], fontsize=8)
    ax.set_ylim(-0.6, len(rows) + 0.42 * len(milestones) + 0.2)
    ax.set_xlabel("milliseconds since the message arrived")
    if title:
        ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig

"""LipSyncInspector: an utterance's spectrogram with reference and predicted phoneme/viseme tracks, errors marked,
and the avatar replaying the segment with the viseme track you pick.

Stock ipywidgets (image, audio, sliders, dropdown, button) around one ``AvatarView``: zoom into a time range,
choose whose visemes drive the mouth (the reference or an aligner's), press *Replay*. Frames where an aligner's
viseme differs from the reference are shaded red on its track; the table gives each aligner's scores.
"""

from __future__ import annotations

import io
import time
from collections.abc import Sequence
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..events import Audio, TimedPhoneme, TurnEnded, TurnStarted, Visemes
from ..lipsync.aligners import get_aligner
from ..lipsync.scoring import FPS, frame_labels, score
from ..lipsync.visemes import phonemes_to_visemes
from ..tts.audio import float_to_pcm16, wav_bytes

REFERENCE = "reference"


class LipSyncInspector(widgets.VBox):
    """``LipSyncInspector(samples, sample_rate, text, reference=..., aligners=["text-proportional", "neural"])``."""

    def __init__(self, samples: np.ndarray, sample_rate: int, text: str, *,
                 reference: Sequence[TimedPhoneme] | None = None,
                 aligners: Sequence[str] = ("text-proportional",),
                 predictions: dict[str, Sequence[TimedPhoneme]] | None = None,
                 avatar: Any = "aria", title: str = "") -> None:
        from .avatar_view import AvatarView

        self.samples = np.asarray(samples, dtype=np.float32)
        self.sample_rate = sample_rate
        self.text = text
        self.duration = len(self.samples) / sample_rate
        self.reference = tuple(reference) if reference is not None else None
        self.tracks: dict[str, tuple[TimedPhoneme, ...]] = {}
        self.timing: dict[str, float] = {}
        if self.reference is not None:
            self.tracks[REFERENCE] = self.reference
        for name, items in (predictions or {}).items():
            self.tracks[name] = tuple(items)
        for name in aligners:
            if name in self.tracks:
                continue
            t0 = time.perf_counter()
            self.tracks[name] = get_aligner(name).align(self.samples, sample_rate, text)
            self.timing[name] = time.perf_counter() - t0

        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.range = widgets.FloatRangeSlider(value=(0.0, self.duration), min=0.0, max=self.duration, step=0.05,
                                              description="seconds", continuous_update=False,
                                              layout=widgets.Layout(width="520px"))
        self.source = widgets.Dropdown(options=list(self.tracks), description="mouth from",
                                       layout=widgets.Layout(width="280px"))
        self.replay = widgets.Button(description="Replay", icon="play", button_style="primary")
        self.view = AvatarView(avatar=avatar, canvas_width=260, canvas_height=300)
        self.player = widgets.Audio(format="wav", autoplay=False)
        self.scores = widgets.HTML()
        self.range.observe(lambda _: self._render(), names="value")
        self.replay.on_click(lambda _: self.play())
        controls = widgets.HBox([self.range, self.source, self.replay])
        header = widgets.HTML(f"<b>{title or 'utterance'}</b> · “{text}” · {self.duration:.2f} s")
        super().__init__([header, controls, widgets.HBox([self.view, widgets.VBox([self.scores, self.player])]),
                          self.image])
        self.add_class("avatarium-lipsync-inspector")
        self._render()
        self._render_scores()

    # -- rendering ----------------------------------------------------------------------------------------------

    def _segment(self) -> tuple[float, float]:
        lo, hi = self.range.value
        return float(lo), float(max(hi, lo + 0.05))

    def _render(self) -> None:
        lo, hi = self._segment()
        self.image.value = self.figure_png(lo, hi)
        a, b = int(lo * self.sample_rate), int(hi * self.sample_rate)
        self.player.value = wav_bytes(self.samples[a:b], self.sample_rate)

    def _render_scores(self) -> None:
        if self.reference is None:
            rows = "".join(f"<tr><td>{n}</td><td>{len(t)} phonemes</td></tr>" for n, t in self.tracks.items())
            self.scores.value = f"<table>{rows}</table>"
            return
        head = ("<tr><th>aligner</th><th>Oculus acc.</th><th>Rhubarb acc.</th><th>PP rec.</th><th>PP prec.</th>"
                "<th>onset MAE</th><th>RTF</th></tr>")
        rows = []
        for name, track in self.tracks.items():
            if name == REFERENCE:
                continue
            s = score(self.reference, track, self.duration)
            rtf = self.timing.get(name)
            rows.append(f"<tr><td>{name}</td><td>{s.frame_accuracy_oculus:.3f}</td><td>{s.frame_accuracy_rhubarb:.3f}"
                        f"</td><td>{s.pp_recall:.2f}</td><td>{s.pp_precision:.2f}</td><td>{s.onset_mae_ms:.1f} ms</td>"
                        f"<td>{'' if rtf is None else f'{rtf / self.duration:.4f}'}</td></tr>")
        self.scores.value = ("<table class='avatarium-lipsync-scores' style='font-size:12px;white-space:nowrap;"
                             f"border-spacing:8px 2px'>{head}{''.join(rows)}</table>")

    def figure_png(self, lo: float = 0.0, hi: float | None = None) -> bytes:
        """Spectrogram over [lo, hi] with one phoneme/viseme row per track; disagreements with the reference red."""
        from matplotlib.figure import Figure

        from ..plots import _VISEME_COLOURS

        hi = self.duration if hi is None else hi
        names = list(self.tracks)
        fig = Figure(figsize=(11, 2.2 + 0.55 * len(names)))
        axes = fig.subplots(1 + len(names), 1, sharex=True,
                            gridspec_kw={"height_ratios": [3] + [1] * len(names)})
        spec_ax = axes[0]
        with np.errstate(divide="ignore"):  # digital silence has zero power; log10 of it is just -inf (black)
            spec_ax.specgram(self.samples, NFFT=512, Fs=self.sample_rate, noverlap=384, cmap="magma")
        spec_ax.set_ylim(0, min(8000, self.sample_rate / 2))
        spec_ax.set_ylabel("Hz")
        ref_frames = frame_labels(self.reference, self.duration) if self.reference is not None else None
        for ax, name in zip(axes[1:], names):
            track = self.tracks[name]
            for v in phonemes_to_visemes(track):
                if v.end < lo or v.start > hi:
                    continue
                ax.axvspan(v.start, v.end, color=_VISEME_COLOURS.get(v.viseme, "#ddd"), lw=0, alpha=0.85)
            for ph in track:
                if lo <= (ph.start + ph.end) / 2 <= hi and ph.end - ph.start > (hi - lo) / 120:
                    ax.text((ph.start + ph.end) / 2, 0.5, ph.symbol, ha="center", va="center", fontsize=7)
            if ref_frames is not None and name != REFERENCE:
                wrong = frame_labels(track, self.duration) != ref_frames
                for start, end in _runs_of_true(wrong):
                    ax.axvspan(start / FPS, end / FPS, ymin=0.0, ymax=0.18, color="#dc2626", lw=0)
            ax.set_yticks([])
            ax.set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
        axes[-1].set_xlim(lo, hi)
        axes[-1].set_xlabel("seconds (red: frames whose viseme differs from the reference)")
        fig.tight_layout()
        buf = io.BytesIO()
        fig.savefig(buf, format="png", dpi=100)
        return buf.getvalue()

    # -- avatar -------------------------------------------------------------------------------------------------

    def play(self) -> None:
        """Replay the selected time range on the avatar, the mouth driven by the chosen track."""
        lo, hi = self._segment()
        a, b = int(lo * self.sample_rate), int(hi * self.sample_rate)
        track = [TimedPhoneme(p.symbol, max(p.start, lo) - lo, min(p.end, hi) - lo)
                 for p in self.tracks[self.source.value] if p.end > lo and p.start < hi]
        turn_id = f"inspect-{time.monotonic_ns()}"
        events = [
            TurnStarted(turn_id=turn_id, text=self.text, persona="inspector"),
            Audio(turn_id=turn_id, segment=0, pcm=float_to_pcm16(self.samples[a:b]), sample_rate=self.sample_rate,
                  offset=0.0),
            Visemes(turn_id=turn_id, segment=0, items=phonemes_to_visemes(track)),
            TurnEnded(turn_id=turn_id),
        ]
        self.view.play(events)


def _runs_of_true(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1), np.flatnonzero(edges == -1)))

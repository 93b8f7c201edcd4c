"""VoiceCompare: the same sentence in several voices, each playable inline with its waveform and timing track.

Built from stock ipywidgets (Audio, Image, HTML, a progress bar), so it needs no front-end code of its own.
Every voice is levelled to the same loudness (``build_voice``), so listening side by side is fair. For each
voice it measures time to first audio (request to first chunk) and real-time factor (synthesis time / audio
duration) and shows them under the player; ``results`` has them as a DataFrame.
"""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ipywidgets as widgets
import numpy as np

from ..config import VoiceConfig
from ..errors import AvatariumError
from ..events import TimedPhoneme
from ..lipsync.aligners import text_proportional
from ..lipsync.visemes import phonemes_to_visemes
from ..personality import load_persona
from ..tts import SpeechChunk
from ..tts.audio import pcm16_to_float, wav_bytes
from ..tts.build import build_voice

DEFAULT_TEXT = "The quick brown fox jumps over the lazy dog by the quiet river bank."


@dataclass
class VoiceTake:
    """One voice speaking the sentence."""

    voice: str
    audio: np.ndarray = field(repr=False)
    sample_rate: int
    phonemes: tuple[TimedPhoneme, ...]
    timing_source: str
    first_audio_s: float
    synthesis_s: float
    error: str | None = None

    @property
    def duration(self) -> float:
        return len(self.audio) / self.sample_rate if self.sample_rate else 0.0

    @property
    def rtf(self) -> float:
        return self.synthesis_s / self.duration if self.duration else float("nan")

    def wav(self) -> bytes:
        return wav_bytes(self.audio, self.sample_rate)


async def take(voice_id: str, text: str, **voice_options: Any) -> VoiceTake:
    """Synthesize ``text`` with one voice (calibrated first, so calibration is not timed)."""
    voice = build_voice(VoiceConfig(id=voice_id, **voice_options), load_persona("warm_tutor"))
    await voice.calibrate()
    chunks: list[SpeechChunk] = []
    phonemes: list[TimedPhoneme] = []
    t0 = time.perf_counter()
    first = None
    offset = 0.0
    async for chunk in voice.synthesize(text):
        first = first or time.perf_counter() - t0
        chunks.append(chunk)
        if chunk.phonemes:
            phonemes += [TimedPhoneme(p.symbol, p.start + offset, p.end + offset) for p in chunk.phonemes]
        offset += chunk.duration
    total = time.perf_counter() - t0
    rate = chunks[0].sample_rate if chunks else voice.sample_rate
    audio = pcm16_to_float(b"".join(c.pcm for c in chunks))
    source = "engine"
    if not phonemes and audio.size:
        phonemes = list(text_proportional(audio, rate, text))
        source = "text-proportional"
    close = getattr(voice, "aclose", None)
    if callable(close):
        await close()
    return VoiceTake(voice_id, audio, rate, tuple(phonemes), source, first or total, total)


def _plot_png(t: VoiceTake, width: float = 6.0) -> bytes:
    # A bare Figure (no pyplot): rendering the PNG must not touch the notebook's plotting backend or show a plot.
    from matplotlib.figure import Figure

    from ..plots import _VISEME_COLOURS

    fig = Figure(figsize=(width, 1.9))
    ax_w, ax_v = fig.subplots(2, 1, sharex=True, gridspec_kw={"height_ratios": [3, 1]})
    times = np.arange(t.audio.size) / t.sample_rate
    ax_w.plot(times, t.audio, lw=0.4, color="#1f2937")
    ax_w.set_yticks([])
    ax_w.set_ylim(-1, 1)
    for v in phonemes_to_visemes(t.phonemes):
        ax_v.axvspan(v.start, v.end, color=_VISEME_COLOURS.get(v.viseme, "#ddd"), lw=0)
        if v.end - v.start > 0.04:
            ax_v.text((v.start + v.end) / 2, 0.5, v.viseme, ha="center", va="center", fontsize=6)
    ax_v.set_yticks([])
    ax_v.set_xlim(0, max(t.duration, 0.1))
    ax_v.set_xlabel("seconds", fontsize=7)
    ax_v.tick_params(labelsize=7)
    fig.tight_layout(pad=0.3)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    return buf.getvalue()


class VoiceCompare(widgets.VBox):
    """Several voices side by side: ``VoiceCompare(["espeak:en-us+f3", "piper:en_US-joe-medium"]).run()``."""

    def __init__(self, voices: Sequence[str], text: str = DEFAULT_TEXT, **voice_options: Any) -> None:
        self.voices = list(voices)
        self.text = text
        self.voice_options = voice_options
        self.takes: list[VoiceTake] = []
        self.progress = widgets.IntProgress(value=0, min=0, max=len(self.voices), description="voices",
                                            layout=widgets.Layout(width="360px"))
        self.rows = widgets.VBox()
        header = widgets.HTML(f"<b>“{text}”</b>")
        super().__init__([header, self.progress, self.rows])
        self.add_class("avatarium-voice-compare")

    def run(self) -> VoiceCompare:
        """Synthesize the sentence with every voice (in a worker loop, so it also works inside Jupyter)."""
        self.takes = []
        self.rows.children = ()
        for i, voice_id in enumerate(self.voices):
            try:
                t = _run(take(voice_id, self.text, **self.voice_options))
            except AvatariumError as exc:
                t = VoiceTake(voice_id, np.zeros(0, np.float32), 0, (), "", float("nan"), float("nan"), str(exc))
            self.takes.append(t)
            self.rows.children = (*self.rows.children, self._row(t))
            self.progress.value = i + 1
        return self

    def _row(self, t: VoiceTake) -> widgets.Widget:
        title = widgets.HTML(f"<b>{t.voice}</b>")
        if t.error:
            return widgets.VBox([title, widgets.HTML(f"<span style='color:#b91c1c'>{t.error}</span>")])
        stats = widgets.HTML(
            f"<span class='avatarium-voice-stats'>first audio {t.first_audio_s * 1000:.0f} ms · RTF {t.rtf:.3f} · "
            f"{t.duration:.2f} s · timings: {t.timing_source}</span>")
        player = widgets.Audio(value=t.wav(), format="wav", autoplay=False, loop=False)
        image = widgets.Image(value=_plot_png(t), format="png", layout=widgets.Layout(width="560px"))
        row = widgets.VBox([title, player, image, stats], layout=widgets.Layout(margin="0 0 12px 0"))
        row.add_class("avatarium-voice-take")
        return row

    @property
    def results(self) -> Any:
        import pandas as pd

        return pd.DataFrame([{"voice": t.voice, "first_audio_ms": t.first_audio_s * 1000, "rtf": t.rtf,
                              "duration_s": t.duration, "timings": t.timing_source, "error": t.error}
                             for t in self.takes]).set_index("voice")


def _run(coro: Any) -> Any:
    """Run a coroutine to completion from synchronous code, even where a loop is already running (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(asyncio.run, coro).result()

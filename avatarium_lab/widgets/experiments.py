"""Experiment widgets: ``ABCompare`` (variants side by side, live), ``LatencyWaterfall`` (a turn's stages),
``ResultsExplorer`` (filter and plot an experiment's results).

All three are stock ipywidgets around matplotlib images (and ``AvatarView`` for the avatars), so they render in
JupyterLab, VS Code and Panel alike, and their state is plain Python for tests and notebooks.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import ipywidgets as widgets
import numpy as np
import pandas as pd

from ..config import Config, load_config
from ..events import Audio, Error, Event, TextDelta, TurnStarted, Visemes
from ..pipeline import Pipeline, TurnResult

MILESTONES = (("first token", "first_token_ms"), ("first sentence", "first_sentence_ms"),
              ("first audio", "first_audio_ms"), ("first viseme", "first_viseme_ms"), ("total", "total_ms"))


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


# --- LatencyWaterfall --------------------------------------------------------------------------------------------


class LatencyWaterfall(widgets.VBox):
    """Per-stage timeline of a turn: ``LatencyWaterfall(turn)`` for a ``TurnResult``, or
    ``LatencyWaterfall(results)`` for an experiment's results table (a dropdown picks the trial)."""

    def __init__(self, source: TurnResult | pd.DataFrame | pd.Series | dict[str, Any], *, title: str = "") -> None:
        self.title = title
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.table = widgets.HTML()
        self.table.add_class("avatarium-waterfall-milestones")
        self.picker: widgets.Dropdown | None = None
        children: list[widgets.Widget] = []
        if isinstance(source, pd.DataFrame):
            rows = source[source["timeline"].notna()] if "timeline" in source else source.iloc[0:0]
            if rows.empty:
                raise ValueError("the results have no trial with a timeline")
            self.rows = rows.reset_index(drop=True)
            labels = [(f"{r['variant']} · {r['prompt_id']} · repeat {r['repeat']}", i) for i, r in self.rows.iterrows()]
            self.picker = widgets.Dropdown(options=labels, value=0, description="trial",
                                           layout=widgets.Layout(width="520px"))
            self.picker.observe(lambda _: self.show(self.rows.iloc[self.picker.value]), names="value")
            children.append(self.picker)
            first: Any = self.rows.iloc[0]
        else:
            first = source
        super().__init__(children=[*children, self.image, self.table])
        self.add_class("avatarium-latency-waterfall")
        self.show(first)

    @staticmethod
    def data(source: TurnResult | pd.Series | dict[str, Any]) -> tuple[list[dict], dict[str, float | None]]:
        """(timeline, milestones in ms) of a turn or of a results row."""
        if isinstance(source, TurnResult):
            from ..experiments.metrics import turn_metrics, turn_timeline

            timeline, row = turn_timeline(source), turn_metrics(source)
        else:
            row = dict(source)
            raw = row.get("timeline")
            timeline = json.loads(raw) if isinstance(raw, str) else list(raw or [])
        milestones = {}
        for label, key in MILESTONES:
            value = row.get(key)
            milestones[label] = None if value is None or (isinstance(value, float) and np.isnan(value)) else value
        return timeline, milestones

    def show(self, source: TurnResult | pd.Series | dict[str, Any]) -> None:
        from ..plots import plot_waterfall

        timeline, milestones = self.data(source)
        self.timeline, self.milestones = timeline, milestones
        self.image.value = _png(plot_waterfall(timeline, milestones, title=self.title))
        busy: dict[str, float] = {}
        for item in timeline:
            busy[item["stage"]] = busy.get(item["stage"], 0.0) + (item["end"] - item["start"]) * 1000
        cells = "".join(f"<td>{label}</td><td><b>{'—' if v is None else f'{v:.0f} ms'}</b></td>"
                        for label, v in milestones.items())
        stages = " · ".join(f"{k} busy {v:.0f} ms" for k, v in busy.items())
        self.table.value = f"<table><tr>{cells}</tr></table><div style='color:#555'>{stages}</div>"


# --- ResultsExplorer ----------------------------------------------------------------------------------------------


class ResultsExplorer(widgets.VBox):
    """Filter an experiment's results and plot a metric by a grouping column; the table summarises the selection
    (n, mean, median, p95, mean's bootstrap 95% CI)."""

    KINDS = ("box", "strip", "ecdf", "histogram")

    def __init__(self, results: pd.DataFrame, *, metric: str | None = None, by: str = "variant") -> None:
        from ..experiments.runner import METRICS

        self.results = results.copy()
        numeric = [c for c in results.columns if pd.api.types.is_numeric_dtype(results[c])
                   and c not in ("repeat", "seed", "started_at") and results[c].notna().any()]
        known = [m for m in METRICS if m in numeric]
        self.metrics = known + [c for c in numeric if c not in known]
        factors = [c for c in results.columns if "." in c]  # one column per varied configuration path
        groups = [c for c in ("variant", *factors, "prompt_id", "persona", "voice", "model", "lipsync_source",
                              "repeat") if c in results.columns]
        self.metric = widgets.Dropdown(options=self.metrics, value=metric or self.metrics[0], description="metric")
        self.by = widgets.Dropdown(options=groups, value=by if by in groups else groups[0], description="by")
        self.kind = widgets.ToggleButtons(options=self.KINDS, value="box")
        variants = [str(v) for v in pd.unique(results["variant"])]
        self.variants = widgets.SelectMultiple(options=variants, value=tuple(variants), description="variants",
                                               rows=min(5, len(variants)))
        self.include_errors = widgets.Checkbox(value=False, description="include failed trials")
        self.image = widgets.Image(format="png", layout=widgets.Layout(width="100%"))
        self.table = widgets.HTML()
        self.table.add_class("avatarium-results-table")
        for w in (self.metric, self.by, self.kind, self.variants, self.include_errors):
            w.observe(lambda _: self.refresh(), names="value")
        controls = widgets.HBox([widgets.VBox([self.metric, self.by, self.include_errors]), self.variants])
        super().__init__(children=[controls, self.kind, self.image, self.table])
        self.add_class("avatarium-results-explorer")
        self.refresh()

    def selection(self) -> pd.DataFrame:
        frame = self.results[self.results["variant"].astype(str).isin(self.variants.value)]
        if not self.include_errors.value and "error" in frame:
            frame = frame[frame["error"].isna()]
        return frame

    def summary(self) -> pd.DataFrame:
        from ..experiments import stats

        frame = self.selection()
        if frame.empty:
            return pd.DataFrame()
        table = stats.summarize(frame, [self.metric.value], by=self.by.value, n_resamples=1000)
        keep = [c for c in (self.by.value, "n", "mean", "mean_low", "mean_high", "median", "p95") if c in table]
        return table[keep]

    def figure(self) -> Any:
        import matplotlib.pyplot as plt

        frame = self.selection()
        metric, by, kind = self.metric.value, self.by.value, self.kind.value
        groups = [g for g in pd.unique(frame[by])] if not frame.empty else []
        data = [frame.loc[frame[by] == g, metric].dropna().to_numpy(dtype=float) for g in groups]
        fig, ax = plt.subplots(figsize=(9, 3.6))
        labels = [str(g)[:28] for g in groups]
        if not groups:
            ax.text(0.5, 0.5, "no trials selected", ha="center", va="center", transform=ax.transAxes)
        elif kind == "box":
            ax.boxplot(data, showmeans=True)
            ax.set_xticks(range(1, len(groups) + 1), labels, rotation=20, fontsize=8)
        elif kind == "strip":
            rng = np.random.default_rng(0)
            for i, values in enumerate(data):
                ax.scatter(i + 1 + rng.uniform(-0.15, 0.15, len(values)), values, s=12, alpha=0.7)
            ax.set_xticks(range(1, len(groups) + 1), labels, rotation=20, fontsize=8)
        elif kind == "ecdf":
            for label, values in zip(labels, data, strict=True):
                if len(values):
                    x = np.sort(values)
                    ax.step(x, np.arange(1, len(x) + 1) / len(x), where="post", label=label)
            ax.set_ylabel("share of trials ≤ x")
            ax.legend(fontsize=8)
        else:
            ax.hist([d for d in data], bins=20, label=labels, alpha=0.7)
            ax.legend(fontsize=8)
        ax.set_title(f"{metric} by {by}", fontsize=10)
        fig.tight_layout()
        return fig

    def refresh(self) -> None:
        self.image.value = _png(self.figure())
        table = self.summary()
        self.table.value = table.to_html(index=False, float_format=lambda v: f"{v:.4g}") if len(table) else ""


# --- ABCompare ---------------------------------------------------------------------------------------------------


class _Side:
    """One column of ``ABCompare``: a variant's pipeline, avatar, live numbers and reply."""

    def __init__(self, name: str, pipeline: Pipeline, avatar: Any) -> None:
        from .avatar_view import AvatarView

        self.name = name
        self.pipeline = pipeline
        self.view = AvatarView(avatar, canvas_width=280, canvas_height=300)
        self.header = widgets.HTML(f"<b>{name}</b>")
        self.numbers = widgets.HTML("<i>waiting</i>")
        self.numbers.add_class("avatarium-ab-latency")
        self.reply = widgets.HTML()
        self.reply.add_class("avatarium-ab-reply")
        self.vote = widgets.Button(description=f"{name} is better", disabled=True,
                                   layout=widgets.Layout(width="100%"))
        self.box = widgets.VBox([self.header, self.view, self.numbers, self.reply, self.vote],
                                layout=widgets.Layout(flex="1 1 0", min_width="260px", border="1px solid #ddd",
                                                      padding="6px"))
        self.box.add_class("avatarium-ab-side")
        self.turn: TurnResult | None = None

    def live(self, events: list[Event]) -> None:
        """Update the numbers and reply from the events so far (called as they arrive)."""
        t0 = events[0].t if events and isinstance(events[0], TurnStarted) else None
        if t0 is None:
            return
        first = {}
        for ev in events:
            kind = {TextDelta: "first token", Audio: "first audio", Visemes: "first viseme"}.get(type(ev))
            if kind and kind not in first:
                first[kind] = (ev.t - t0) * 1000
        elapsed = (events[-1].t - t0) * 1000
        cells = " · ".join(f"{k} <b>{v:.0f} ms</b>" for k, v in first.items())
        errors = [e for e in events if isinstance(e, Error)]
        note = f"<br><span style='color:#b91c1c'>error: {errors[0].code}</span>" if errors else ""
        self.numbers.value = f"{cells or 'thinking…'}<br><span style='color:#666'>elapsed {elapsed:.0f} ms</span>{note}"
        text = "".join(e.text for e in events if isinstance(e, TextDelta))
        self.reply.value = f"<div style='font-size:90%'>{text}</div>"


class ABCompare(widgets.VBox):
    """Two or more configurations side by side: the same prompt to each (one after the other, so they do not
    compete for the CPU), each avatar speaking its reply inline, live latency numbers, then a vote.

    ``ABCompare({"espeak": "experiments/configs/default.yaml", "piper": cfg2})``; ``ask(prompt)`` runs a round
    from code (returns the turns); ``votes`` is a DataFrame of the votes cast; ``metric`` (optional callable
    ``TurnResult -> float``) is shown under each side after a round, e.g. a lip-sync score.
    """

    def __init__(self, variants: dict[str, Config | Pipeline | str | Path] | Sequence[Config | str | Path], *,
                 prompt: str = "Tell me about the ocean.", metric: Callable[[TurnResult], float] | None = None,
                 metric_name: str = "metric", play: bool = True) -> None:
        if not isinstance(variants, dict):
            variants = {f"{chr(65 + i)}": v for i, v in enumerate(variants)}
        if len(variants) < 2:
            raise ValueError("ABCompare needs at least two configurations")
        self.sides: list[_Side] = []
        for name, item in variants.items():
            if isinstance(item, Pipeline):
                pipeline = item
            else:
                config = item if isinstance(item, Config) else load_config(item)
                pipeline = Pipeline(config)
            self.sides.append(_Side(name, pipeline, pipeline.config.avatar))
        self.metric, self.metric_name, self.play = metric, metric_name, play
        self.prompt = widgets.Text(value=prompt, description="prompt", layout=widgets.Layout(width="70%"))
        self.send = widgets.Button(description="Ask all", button_style="primary")
        self.tie = widgets.Button(description="Tie", disabled=True)
        self.status = widgets.HTML()
        self.status.add_class("avatarium-ab-status")
        self.send.on_click(lambda _: self._ask_in_background())
        for side in self.sides:
            side.vote.on_click(lambda _, s=side: self.cast(s.name))
        self.tie.on_click(lambda _: self.cast("tie"))
        self._votes: list[dict[str, Any]] = []
        self._round = 0
        self._thread: threading.Thread | None = None
        super().__init__(children=[
            widgets.HBox([self.prompt, self.send]),
            widgets.HBox([s.box for s in self.sides], layout=widgets.Layout(width="100%")),
            widgets.HBox([self.tie, self.status]),
        ])
        self.add_class("avatarium-ab-compare")

    @property
    def votes(self) -> pd.DataFrame:
        columns = ["round", "prompt", "winner"]
        for s in self.sides:
            columns.append(f"{s.name} first_audio_ms")
            if self.metric is not None:
                columns.append(f"{s.name} {self.metric_name}")
        return pd.DataFrame(self._votes, columns=columns)

    def _ask_in_background(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._thread = threading.Thread(target=self.ask, args=(self.prompt.value,), daemon=True)
        self._thread.start()

    def ask(self, prompt: str | None = None) -> dict[str, TurnResult]:
        """One round: the prompt to every side in turn, streamed into its avatar; returns the turns."""
        prompt = prompt or self.prompt.value
        self.prompt.value = prompt
        self.send.disabled = True
        for b in (self.tie, *[s.vote for s in self.sides]):
            b.disabled = True
        self._round += 1
        turns: dict[str, TurnResult] = {}
        try:
            for side in self.sides:
                self.status.value = f"asking <b>{side.name}</b>…"
                side.numbers.value, side.reply.value = "<i>thinking…</i>", ""
                events: list[Event] = []
                last = 0.0
                for ev in side.pipeline.stream(prompt, conversation=None):
                    events.append(ev)
                    if self.play:
                        side.view.send_event(ev)
                    if time.perf_counter() - last > 0.05 or not isinstance(ev, (Audio, TextDelta)):
                        side.live(events)
                        last = time.perf_counter()
                side.live(events)
                side.turn = turns[side.name] = TurnResult(events)
                if self.metric is not None:
                    value = self.metric(side.turn)
                    side.numbers.value += f"<br>{self.metric_name}: <b>{value:.3g}</b>"
        finally:
            self.send.disabled = False
        for b in (self.tie, *[s.vote for s in self.sides]):
            b.disabled = False
        self.status.value = "vote: which reply is better?"
        return turns

    def cast(self, winner: str) -> None:
        """Record a vote for ``winner`` (a side's name or ``"tie"``) for the last round."""
        names = [s.name for s in self.sides]
        if winner not in (*names, "tie"):
            raise ValueError(f"vote for one of {names} or 'tie'")
        row: dict[str, Any] = {"round": self._round, "prompt": self.prompt.value, "winner": winner}
        for side in self.sides:
            first = side.turn.latency.time_to_first_audio if side.turn is not None else None
            row[f"{side.name} first_audio_ms"] = None if first is None else round(first * 1000, 1)
            if self.metric is not None:
                row[f"{side.name} {self.metric_name}"] = self.metric(side.turn) if side.turn is not None else None
        self._votes.append(row)
        for b in (self.tie, *[s.vote for s in self.sides]):
            b.disabled = True
        tally = pd.Series([v["winner"] for v in self._votes]).value_counts().to_dict()
        self.status.value = "votes: " + ", ".join(f"{k} {v}" for k, v in tally.items())

    def close(self) -> None:
        for side in self.sides:
            side.pipeline.close()
        super().close()

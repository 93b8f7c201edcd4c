"""Run an experiment: every (variant, prompt, repeat) trial through the real pipeline, resumably, locally or on Dask.

``run_experiment(spec)`` plans the trials, skips those already finished in ``<out_dir>/trials.jsonl`` (one JSON
line per trial, appended as each finishes, so an interrupted run loses at most the trials in flight), runs the
rest with at most ``concurrency`` in flight per process, then writes ``results.parquet`` and returns an
:class:`ExperimentResult` with the tidy results, summaries with bootstrap CIs, paired comparisons and the MLflow
run it logged.

With ``dask=`` (a scheduler address such as ``tcp://10.0.0.5:8786``, a ``distributed.Client``, or ``"local"`` for
a ``LocalCluster``) the trials are grouped per variant into chunks and run on the workers (each worker builds a
variant's pipeline once per chunk); the rows come back to this process, which stores them exactly as a local run.
"""

from __future__ import annotations

import asyncio
import base64
import json
import logging
import re
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from ..errors import AvatariumError
from .metrics import turn_metrics, turn_timeline
from .spec import ROOT, ExperimentSpec, VariantSpec, load_spec, trial_id, trial_seed

log = logging.getLogger(__name__)

RESULTS_DIR = ROOT / "experiments" / "results"


@dataclass(frozen=True)
class Trial:
    id: str
    variant: str
    prompt_id: str
    prompt: str
    repeat: int
    seed: int


def plan_trials(spec: ExperimentSpec) -> list[Trial]:
    """Every trial of the spec, interleaved (prompt, repeat, then variant) so partial runs stay balanced.

    Within each (prompt, repeat) block the variant order is rotated by the block's index, so every variant goes
    first equally often: what runs second can profit from what ran first (an embedded model shared by the
    variants keeps the prompt it just evaluated in its KV cache, a voice or OS cache is warm), and rotating the
    order keeps that from favouring one variant in the paired comparison.
    """
    variants = spec.variant_list()
    out = []
    block = 0
    for repeat in range(spec.repeats):
        for prompt_id, prompt in spec.prompt_list():
            k = block % len(variants)
            for v in variants[k:] + variants[:k]:
                out.append(Trial(trial_id(spec, v, prompt_id, prompt, repeat), v.name, prompt_id, prompt, repeat,
                                 trial_seed(spec, repeat)))
            block += 1
    return out


# --- one process: trials through pipelines -------------------------------------------------------------------


def _slug(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")[:80] or "variant"


def sample_path(out_dir: Path, variant: str, suffix: str) -> Path:
    """Where a variant's sample turn is kept: ``<out_dir>/samples/<variant>.wav`` / ``.animation.json``."""
    return out_dir / "samples" / f"{_slug(variant)}{suffix}"


def sample_payload(turn: Any) -> dict[str, Any]:
    """A turn's audio (WAV bytes) and animation timeline (JSON), kept for one trial per variant."""
    from ..events import Emotion, Gesture
    from ..tts.audio import wav_bytes

    animation = {
        "text": turn.text,
        "visemes": [asdict(v) for v in turn.visemes],
        "phonemes": [asdict(p) for p in turn.phonemes],
        "emotions": [{"name": e.name, "intensity": e.intensity, "start": e.start} for e in turn.of(Emotion)],
        "gestures": [{k: getattr(g, k) for k in ("name", "start") if hasattr(g, k)} for g in turn.of(Gesture)],
        "sample_rate": turn.sample_rate,
    }
    audio = turn.audio
    return {"wav": wav_bytes(audio, turn.sample_rate) if len(audio) else b"", "animation": animation}


class _Pools:
    """Up to ``size`` warmed pipelines per variant, built on first use and reused by its trials."""

    def __init__(self, spec: ExperimentSpec, size: int) -> None:
        self.spec = spec
        self.size = size
        self.variants = {v.name: v for v in spec.variant_list()}
        self.idle: dict[str, list[Any]] = {}
        self.built: dict[str, int] = {}
        self.all: list[Any] = []
        self.lock = asyncio.Lock()

    async def acquire(self, variant: str) -> Any:
        from ..pipeline import Pipeline

        async with self.lock:
            idle = self.idle.setdefault(variant, [])
            if idle:
                return idle.pop()
            self.built[variant] = self.built.get(variant, 0) + 1
        config = self.spec.variant_config(self.variants[variant])
        config = config.with_overrides(**{"lipsync.emit_reference": True})

        def build() -> Any:
            pipeline = Pipeline(config)
            pipeline.warm()
            return pipeline

        pipeline = await asyncio.to_thread(build)
        self.all.append(pipeline)
        return pipeline

    def release(self, variant: str, pipeline: Any) -> None:
        self.idle.setdefault(variant, []).append(pipeline)

    def close(self) -> None:
        for p in self.all:
            p.close()


async def _run_one(trial: Trial, pools: _Pools, judge: Any, keep_sample: bool) -> dict[str, Any]:
    row: dict[str, Any] = {**asdict(trial), "started_at": time.time()}
    t0 = time.perf_counter()
    try:
        pipeline = await pools.acquire(trial.variant)
    except AvatariumError as exc:
        return {**row, "error": exc.code, "error_message": exc.message}
    try:
        try:
            turn = await pipeline.arun(trial.prompt, turn_id=trial.id[:12], seed=trial.seed)
        except AvatariumError as exc:  # the prompt itself is rejected (too long, empty)
            return {**row, "error": exc.code, "error_message": exc.message}
        row.update(turn_metrics(turn, pipeline.persona))
        row["response"] = turn.text
        row["persona"] = pipeline.persona.id
        row["voice"] = pipeline.voice.id
        row["timeline"] = json.dumps(turn_timeline(turn))
        if judge is not None and turn.text:
            row.update(await judge.score(pipeline.persona, trial.prompt, turn.text))
        if keep_sample:
            row["_sample"] = sample_payload(turn)
        row["trial_ms"] = (time.perf_counter() - t0) * 1000  # the runner's view: pipeline wait + turn + metrics
    finally:
        pools.release(trial.variant, pipeline)
    return row


async def run_trials_async(spec: ExperimentSpec, trials: Sequence[Trial], *, concurrency: int | None = None,
                           on_result: Callable[[dict[str, Any]], None] | None = None,
                           samples_for: Iterable[str] = ()) -> list[dict[str, Any]]:
    """Run ``trials`` in this process with at most ``concurrency`` in flight; rows in completion order."""
    from .judge import build_judge

    limit = concurrency or spec.concurrency
    pools = _Pools(spec, limit)
    judge = build_judge(spec.judge) if spec.judge is not None else None
    keep = set(samples_for)
    sem = asyncio.Semaphore(limit)
    rows: list[dict[str, Any]] = []

    async def one(trial: Trial) -> None:
        async with sem:
            row = await _run_one(trial, pools, judge, trial.id in keep)
        rows.append(row)
        if on_result is not None:
            on_result(row)

    try:
        async with asyncio.TaskGroup() as tg:
            for trial in trials:
                tg.create_task(one(trial))
    finally:
        pools.close()
        if judge is not None:
            await judge.aclose()
    return rows


def run_trials(spec_data: dict[str, Any], trials: list[dict[str, Any]], concurrency: int | None = None,
               samples_for: list[str] | None = None) -> list[dict[str, Any]]:
    """Picklable entry point (Dask workers): run trials given as dicts, return their rows."""
    spec = load_spec(spec_data)
    return asyncio.run(run_trials_async(spec, [Trial(**t) for t in trials], concurrency=concurrency,
                                        samples_for=samples_for or ()))


# --- storage ---------------------------------------------------------------------------------------------------


class TrialStore:
    """``trials.jsonl`` (append-only, one row per finished trial) and the samples folder of one experiment."""

    def __init__(self, out_dir: Path) -> None:
        self.dir = out_dir
        self.path = out_dir / "trials.jsonl"
        self.samples = out_dir / "samples"

    def load(self) -> dict[str, dict[str, Any]]:
        rows: dict[str, dict[str, Any]] = {}
        if self.path.exists():
            raw = self.path.read_bytes()
            if raw and not raw.endswith(b"\n"):  # a run was killed while writing a line: drop that fragment
                raw = raw[: raw.rfind(b"\n") + 1]
                self.path.write_bytes(raw)
            for line in raw.decode("utf-8").splitlines():
                try:
                    row = json.loads(line)
                except json.JSONDecodeError:  # the line a killed run was writing
                    continue
                rows[row["id"]] = row
        return rows

    def append(self, row: dict[str, Any]) -> None:
        sample = row.pop("_sample", None)
        if sample is not None:
            self.samples.mkdir(parents=True, exist_ok=True)
            if sample["wav"]:
                sample_path(self.dir, row["variant"], ".wav").write_bytes(sample["wav"])
            sample_path(self.dir, row["variant"], ".animation.json").write_text(
                json.dumps(sample["animation"], indent=1), encoding="utf-8")
        self.dir.mkdir(parents=True, exist_ok=True)
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps(row, default=_json_default) + "\n")


def _json_default(value: Any) -> Any:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode("ascii")
    if hasattr(value, "item"):
        return value.item()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


# --- the experiment ----------------------------------------------------------------------------------------------


@dataclass
class ExperimentResult:
    spec: ExperimentSpec
    results: pd.DataFrame
    """One row per trial (tidy): variant, prompt_id, repeat, every metric, the reply, error."""
    out_dir: Path
    ran: int
    """Trials run by this call (the others were finished before)."""
    seconds: float
    run_id: str | None = None
    """The MLflow parent run, when logged."""
    tracking_uri: str | None = None
    summary: pd.DataFrame = field(default_factory=pd.DataFrame)
    comparisons: pd.DataFrame = field(default_factory=pd.DataFrame)
    winners: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def variants(self) -> list[str]:
        return [v.name for v in self.spec.variant_list()]

    def sample_audio(self, variant: str) -> Path:
        return sample_path(self.out_dir, variant, ".wav")

    def sample_animation(self, variant: str) -> dict[str, Any]:
        return json.loads(sample_path(self.out_dir, variant, ".animation.json").read_text("utf-8"))

    def __repr__(self) -> str:
        return (f"ExperimentResult({self.spec.name!r}, trials={len(self.results)}, ran={self.ran}, "
                f"variants={self.variants}, run_id={self.run_id!r})")


METRICS = ("first_token_ms", "first_sentence_ms", "first_audio_ms", "first_viseme_ms", "total_ms",
           "pipeline_overhead_ms", "prompt_tokens", "completion_tokens", "cost_usd", "audio_seconds", "rtf",
           "lipsync_rtf", "frame_accuracy_oculus", "frame_accuracy_rhubarb", "pp_recall", "onset_mae_ms",
           "response_chars", "response_words", "response_sentences", "style_score", "judge_persona",
           "judge_quality")
"""Metric columns summarised and compared (those present in the results)."""


def results_frame(rows: Iterable[dict[str, Any]], trials: Sequence[Trial],
                  variants: Sequence[VariantSpec] = ()) -> pd.DataFrame:
    """The tidy results table in plan order (variant order preserved as a categorical).

    Each variant's overrides become columns named by their configuration path (``voice.id``,
    ``lipsync.aligner``...), so results can be summarised per level of one factor across the others
    (``stats.summarize(results, by="voice.id")``).
    """
    order = {t.id: k for k, t in enumerate(trials)}
    frame = pd.DataFrame([r for r in rows if r["id"] in order])
    if frame.empty:
        return frame
    levels = {v.name: v.overrides for v in variants}
    for key in dict.fromkeys(k for o in levels.values() for k in o):
        if key not in frame.columns:
            frame[key] = frame["variant"].map(
                lambda name, key=key: _level(levels.get(name, {}).get(key)))
    frame = frame.sort_values("id", key=lambda s: s.map(order)).reset_index(drop=True)
    variants = list(dict.fromkeys(t.variant for t in trials))
    frame["variant"] = pd.Categorical(frame["variant"], categories=variants, ordered=True)
    if "error" not in frame:
        frame["error"] = None
    return frame


def _level(value: Any) -> Any:
    """A factor level as a table cell: scalars as they are, anything else as JSON."""
    return value if value is None or isinstance(value, (str, int, float, bool)) else json.dumps(value, sort_keys=True)


def _dask_client(dask: Any) -> tuple[Any, Any]:
    """(client, cluster to close or None) for an address, ``"local"`` or an existing client."""
    from distributed import Client, LocalCluster

    if isinstance(dask, Client):
        return dask, None
    if dask == "local":
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None)
        return Client(cluster), cluster
    return Client(str(dask)), None


def _chunks(trials: list[Trial], n: int) -> list[list[Trial]]:
    """Trials grouped by variant, each group cut into about ``n`` chunks (a worker builds a pipeline per chunk)."""
    by_variant: dict[str, list[Trial]] = {}
    for t in trials:
        by_variant.setdefault(t.variant, []).append(t)
    out = []
    for group in by_variant.values():
        size = max(1, -(-len(group) // max(1, n)))
        out += [group[i : i + size] for i in range(0, len(group), size)]
    return out


def run_experiment(spec: ExperimentSpec | dict[str, Any] | str | Path, *, out_dir: str | Path | None = None,
                   resume: bool = True, concurrency: int | None = None, dask: Any = None,
                   progress: bool = True, mlflow: bool = True, tracking_uri: str | None = None,
                   analyse: bool = True) -> ExperimentResult:
    """Run (or finish) an experiment and return its results; see the module docstring."""
    from tqdm.auto import tqdm

    spec = load_spec(spec)
    out = Path(out_dir) if out_dir is not None else RESULTS_DIR / spec.name
    store = TrialStore(out)
    trials = plan_trials(spec)
    done = store.load() if resume else {}
    if not resume and store.path.exists():
        store.path.unlink()
    finished = {i for i, r in done.items() if not r.get("error")}
    todo = [t for t in trials if t.id not in finished]
    first_of_variant: dict[str, str] = {}
    for t in trials:
        first_of_variant.setdefault(t.variant, t.id)
    samples_for = [i for i in first_of_variant.values() if i not in finished]
    bar = tqdm(total=len(trials), initial=len(trials) - len(todo), desc=spec.name, unit="trial",
               disable=not progress)
    new_rows: list[dict[str, Any]] = []

    def record(row: dict[str, Any]) -> None:
        store.append(row)
        new_rows.append(row)
        bar.update(1)

    t0 = time.perf_counter()
    try:
        if todo and dask is None:
            _run_coroutine(run_trials_async(spec, todo, concurrency=concurrency, on_result=record,
                                            samples_for=samples_for))
        elif todo:
            from distributed import as_completed

            client, cluster = _dask_client(dask)
            try:
                workers = max(1, len(client.scheduler_info().get("workers", {})))
                data = spec.model_dump(mode="json")
                data["source"] = spec.source
                futures = [client.submit(run_trials, data, [asdict(t) for t in chunk], concurrency,
                                         [t.id for t in chunk if t.id in samples_for], pure=False)
                           for chunk in _chunks(todo, workers)]
                for future in as_completed(futures):
                    for row in future.result():
                        record(row)
            finally:
                if cluster is not None:
                    client.close()
                    cluster.close()
    finally:
        bar.close()
    seconds = time.perf_counter() - t0
    rows = {**done, **{r["id"]: r for r in new_rows}}
    frame = results_frame(rows.values(), trials, spec.variant_list())
    if not frame.empty:
        frame.drop(columns=[c for c in frame.columns if c.startswith("_")]).to_parquet(out / "results.parquet")
    result = ExperimentResult(spec, frame, out, len(new_rows), seconds)
    if analyse and not frame.empty:
        analyse_result(result)
    if mlflow and not frame.empty:
        from .tracking import log_experiment

        result.run_id, result.tracking_uri = log_experiment(result, tracking_uri)
    return result


def analyse_result(result: ExperimentResult) -> None:
    """Fill ``summary`` (bootstrap CIs), ``comparisons`` (paired tests vs the first variant) and ``winners``."""
    from . import stats

    frame = result.results
    metrics = [m for m in METRICS if m in frame and frame[m].notna().any()]
    ok = frame[frame["error"].isna()] if "error" in frame else frame
    result.summary = stats.summarize(frame, metrics)
    # Only metrics with a known better direction are compared (and counted in the Holm correction): tokens,
    # audio length or reply length describe a variant, they do not rank it.
    ranked = [m for m in metrics if _ranked(m) and ok[m].notna().any()]
    observed = ok["variant"].astype(str).nunique()
    if observed > 1 and ranked:
        result.comparisons = stats.compare_all(ok, ranked)
        result.winners = stats.winner_table(ok, ranked, comparisons=result.comparisons)


def _ranked(metric: str) -> bool:
    from . import stats

    try:
        stats.direction(metric)
    except ValueError:
        return False
    return True


def _run_coroutine(coro: Any) -> Any:
    """Run ``coro`` to the end, also from inside a running loop (Jupyter): then on a helper thread."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    import concurrent.futures

    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()

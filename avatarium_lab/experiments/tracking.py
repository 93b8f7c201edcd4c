"""MLflow logging of an experiment: a parent run, a child run per variant, a trace per turn.

Parent run (named after the spec): the spec's parameters, the results table (``results.parquet``), the summary
with CIs, the paired comparisons and winners (CSV), latency and accuracy plots. Child run per variant: the
variant's whole configuration as parameters (secrets redacted; header values never logged), mean / median / p95
of each metric, and one sample turn's audio (WAV) and animation timeline (JSON). Traces: one per trial (up to
``TRACE_LIMIT`` per variant), a root span for the turn with one child span per stage interval (llm, tts,
lipsync) at the real offsets, linked to the variant's run.

The tracking URI is ``tracking_uri=`` / ``MLFLOW_TRACKING_URI`` / the project's local store (see
:mod:`avatarium_lab.tracking`).
"""

from __future__ import annotations

import json
import math
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from ..secrets import redact
from ..tracking import use_experiment

if TYPE_CHECKING:
    from .runner import ExperimentResult

EXPERIMENT = "avatarium-experiments"
TRACE_LIMIT = 25


def _flatten(data: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(data, dict):
        for key, value in data.items():
            name = f"{prefix}{key}"
            if key == "headers" and isinstance(value, dict):
                out[name] = json.dumps(sorted(value))  # header names only: values may carry credentials
            else:
                out.update(_flatten(value, name + "."))
    elif isinstance(data, (list, tuple)):
        out[prefix.rstrip(".")] = json.dumps(data, default=str)[:500]
    else:
        out[prefix.rstrip(".")] = data
    return out


def safe_params(data: dict[str, Any]) -> dict[str, str]:
    """Flattened parameters with every value passed through ``redact`` (no key-like string survives)."""
    return {k: redact(str(v))[:500] for k, v in _flatten(data).items()}


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _plots(result: ExperimentResult, folder: Path) -> list[Path]:
    import matplotlib.pyplot as plt  # figures are closed after saving: nothing leaks into a notebook's output

    from ..plots import plot_latency_distributions, plot_metric_cis

    out = []
    fig = plot_latency_distributions(result.results)
    path = folder / "latency.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    out.append(path)
    accuracy = [m for m in ("frame_accuracy_rhubarb", "style_score", "judge_quality")
                if m in result.results and result.results[m].notna().any()]
    if accuracy and not result.summary.empty:
        fig = plot_metric_cis(result.summary, accuracy)
        path = folder / "accuracy.png"
        fig.savefig(path, dpi=110, bbox_inches="tight")
        plt.close(fig)
        out.append(path)
    return out


def _trace(trial: pd.Series, run_id: str, experiment_id: str) -> None:
    import mlflow

    timeline = json.loads(trial["timeline"]) if isinstance(trial.get("timeline"), str) else []
    start_ns = int(float(trial["started_at"]) * 1e9)
    total = trial.get("total_ms")
    end_ns = start_ns + int((total if _finite(total) else 0.0) * 1e6)
    root = mlflow.start_span_no_context(
        "turn", span_type="CHAIN", inputs={"prompt": trial["prompt"]}, experiment_id=experiment_id,
        start_time_ns=start_ns, metadata={"mlflow.sourceRun": run_id},
        attributes={"variant": str(trial["variant"]), "trial_id": trial["id"], "repeat": int(trial["repeat"])})
    kinds = {"llm": "LLM", "tts": "TASK", "lipsync": "PARSER"}
    for item in timeline:
        span = mlflow.start_span_no_context(
            item["stage"], span_type=kinds.get(item["stage"], "UNKNOWN"), parent_span=root,
            start_time_ns=start_ns + int(item["start"] * 1e9), attributes={"segment": item["segment"]})
        span.end(end_time_ns=start_ns + int(item["end"] * 1e9))
    outputs = {"reply": trial.get("response") or ""}
    for key in ("first_token_ms", "first_audio_ms", "cost_usd"):
        if _finite(trial.get(key)):
            outputs[key] = float(trial[key])
    root.set_outputs(outputs)
    root.end(end_time_ns=max(end_ns, start_ns + 1))


def log_experiment(result: ExperimentResult, tracking_uri: str | None = None) -> tuple[str, str]:
    """Log ``result`` to MLflow; returns (parent run id, tracking URI)."""
    import mlflow

    from .runner import sample_path

    experiment = use_experiment(EXPERIMENT, tracking_uri)
    uri = mlflow.get_tracking_uri()
    spec = result.spec
    frame = result.results
    with mlflow.start_run(run_name=spec.name, tags={"avatarium.kind": "experiment"}) as parent:
        mlflow.log_params(safe_params({
            "experiment": spec.name, "description": spec.description[:200], "base": spec.base,
            "overrides": spec.overrides, "factors": spec.factors, "prompts": spec.prompts.model_dump(),
            "repeats": spec.repeats, "seed": spec.seed, "concurrency": spec.concurrency,
            "variants": [v.name for v in spec.variant_list()], "judge": spec.judge.model_dump(mode="json")
            if spec.judge else None}))
        mlflow.log_metrics({"trials": float(len(frame)), "errors": float(frame["error"].notna().sum()),
                            "seconds": result.seconds})
        with tempfile.TemporaryDirectory() as tmp:
            folder = Path(tmp)
            frame.to_parquet(folder / "results.parquet")
            result.summary.to_csv(folder / "summary.csv", index=False)
            if not result.comparisons.empty:
                result.comparisons.to_csv(folder / "comparisons.csv", index=False)
                result.winners.to_csv(folder / "winners.csv", index=False)
            for path in [*folder.iterdir(), *_plots(result, folder)]:
                mlflow.log_artifact(str(path))
        for variant in spec.variant_list():
            part = frame[frame["variant"] == variant.name]
            with mlflow.start_run(run_name=variant.name, nested=True,
                                  tags={"avatarium.variant": variant.name}) as child:
                config = spec.variant_config(variant).model_dump(mode="json")
                mlflow.log_params(safe_params({"variant": variant.name, **config}))
                metrics: dict[str, float] = {"trials": float(len(part)), "errors": float(part["error"].notna().sum())}
                summary = result.summary
                if not summary.empty:
                    for _, r in summary[summary["variant"] == variant.name].iterrows():
                        for stat in ("mean", "median", "p95"):
                            if _finite(r.get(stat)):
                                metrics[f"{r['metric']}_{stat}"] = float(r[stat])
                mlflow.log_metrics(metrics)
                for suffix in (".wav", ".animation.json"):
                    path = sample_path(result.out_dir, variant.name, suffix)
                    if path.exists():
                        mlflow.log_artifact(str(path), artifact_path="sample")
                for _, trial in part[part["error"].isna()].head(TRACE_LIMIT).iterrows():
                    _trace(trial, child.info.run_id, experiment.experiment_id)
    mlflow.flush_trace_async_logging()  # traces are exported in the background; have them stored on return
    return parent.info.run_id, uri


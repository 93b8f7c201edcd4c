"""Turn latency on the embedded defaults: p50/p95 of first token, first audio, first viseme, pipeline overhead.

Runs 20 turns (the ``datasets/prompts/everyday.yaml`` prompts) after one warm-up turn, each as a fresh
conversation, and prints percentiles in milliseconds. "Pipeline overhead" is time to first audio minus the
model and voice compute on the path to it (see ``avatarium_lab.events.latency_breakdown``).

    python benchmarks/turn_latency.py [--config FILE] [--turns N] [--json]
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import yaml
from tqdm import tqdm

from avatarium_lab.events import Usage
from avatarium_lab.pipeline import Pipeline

ROOT = Path(__file__).resolve().parent.parent
GOAL_FIRST_AUDIO_P50_MS = 150.0


def percentiles(values: list[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=float)
    return {"p50": float(np.percentile(arr, 50)), "p95": float(np.percentile(arr, 95)),
            "mean": float(arr.mean()), "n": len(values)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--config", default=None)
    ap.add_argument("--turns", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()

    prompts = yaml.safe_load((ROOT / "datasets/prompts/everyday.yaml").read_text())["prompts"]
    pipeline = Pipeline.from_config(args.config)
    pipeline.warm()
    pipeline.run("Hello!", conversation=None)  # warm-up turn, not measured

    metrics: dict[str, list[float]] = {k: [] for k in (
        "time_to_first_token_ms", "time_to_first_sentence_ms", "time_to_first_audio_ms",
        "time_to_first_viseme_ms", "pipeline_overhead_ms", "total_ms")}
    tokens_per_s: list[float] = []
    for i in tqdm(range(args.turns), desc="turns", file=sys.stderr):
        turn = pipeline.run(prompts[i % len(prompts)], conversation=None)
        if turn.error is not None:
            print(f"turn {i} failed: {turn.error.code}: {turn.error.message}", file=sys.stderr)
            return 1
        ms = turn.latency.as_ms()
        for key in metrics:
            if ms.get(key) is not None:
                metrics[key].append(ms[key])
        usage = turn.of(Usage)[0]
        llm_busy = turn.latency.busy.get("llm", 0.0)
        if llm_busy > 0:
            tokens_per_s.append(usage.completion_tokens / llm_busy)
    pipeline.close()

    report = {k: percentiles(v) for k, v in metrics.items() if v}
    report["tokens_per_second"] = percentiles(tokens_per_s)
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\nturn latency over {args.turns} turns, config={pipeline.config.name}, "
          f"model={pipeline.provider.model}, voice={pipeline.voice.id}")
    print(f"{'metric':<28}{'p50':>10}{'p95':>10}{'mean':>10}")
    for key, stats in report.items():
        unit = "" if key == "tokens_per_second" else " ms"
        print(f"{key:<28}{stats['p50']:>10.1f}{stats['p95']:>10.1f}{stats['mean']:>10.1f}{unit}")
    p50 = report["time_to_first_audio_ms"]["p50"]
    print(f"\nfirst audio p50 {p50:.1f} ms vs goal {GOAL_FIRST_AUDIO_P50_MS:.0f} ms: "
          f"ratio {p50 / GOAL_FIRST_AUDIO_P50_MS:.2f} ({'met' if p50 <= GOAL_FIRST_AUDIO_P50_MS else 'NOT met'})")
    overhead = report["pipeline_overhead_ms"]
    print(f"pipeline overhead p50 {overhead['p50']:.2f} ms = "
          f"{overhead['p50'] / p50:.1%} of first audio")
    return 0


if __name__ == "__main__":
    sys.exit(main())

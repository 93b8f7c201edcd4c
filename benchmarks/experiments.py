"""Experiment runner throughput: 1,000 trials over replay cassettes (instant pace) through real pipelines.

Every trial is a whole turn: the replayed reply streams through the sentence splitter into the real espeak-ng
voice, lip sync from the voice's timings, metrics from the events, a row appended to ``trials.jsonl``. Two
variants (two vendors' cassettes) x 3 prompts x 167 repeats = 1,002 trials. Prints trials/s, the runner's
overhead per trial (trial wall time minus the turn's own total, p50/p95) and the statistics step's time.
Goal: 1,000 trials in <= 60 s on 2 cores.

    python benchmarks/experiments.py [--concurrency N] [--dask local|tcp://...] [--mlflow] [--repeats N]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time

import numpy as np

from avatarium_lab.experiments import run_experiment

SPEC = {
    "name": "bench-replay",
    "description": "runner throughput over replayed cassettes",
    "base": "experiments/configs/default.yaml",
    "overrides": {"provider.kind": "replay", "provider.pace": "instant", "voice.id": "espeak:en-us"},
    "variants": [
        {"name": "openai-cassette", "overrides": {"provider.cassette": "datasets/cassettes/openai.jsonl",
                                                  "provider.price_in": 0.15, "provider.price_out": 0.6}},
        {"name": "anthropic-cassette", "overrides": {"provider.cassette": "datasets/cassettes/anthropic.jsonl",
                                                     "provider.price_in": 0.8, "provider.price_out": 4.0}},
    ],
    "prompts": {"file": "datasets/prompts/everyday.yaml", "limit": 3},
    "repeats": 167,
    "seed": 1,
}
GOAL_SECONDS = 60.0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--dask", default=None)
    parser.add_argument("--mlflow", action="store_true", help="also log the run to MLflow (timed separately)")
    parser.add_argument("--repeats", type=int, default=SPEC["repeats"])
    args = parser.parse_args(argv)
    spec = {**SPEC, "repeats": args.repeats, "concurrency": args.concurrency}
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        result = run_experiment(spec, out_dir=tmp, dask=args.dask, mlflow=False, analyse=False)
        run_seconds = time.perf_counter() - t0
        frame = result.results
        from avatarium_lab.experiments.runner import analyse_result

        t1 = time.perf_counter()
        analyse_result(result)
        stats_seconds = time.perf_counter() - t1
        mlflow_seconds = None
        if args.mlflow:
            from avatarium_lab.experiments.tracking import log_experiment

            t2 = time.perf_counter()
            log_experiment(result, f"sqlite:///{tmp}/mlflow.db")
            mlflow_seconds = time.perf_counter() - t2
    n = len(frame)
    errors = int(frame["error"].notna().sum())
    overhead = (frame["trial_ms"] - frame["total_ms"]).dropna().to_numpy()
    turn = frame["total_ms"].dropna().to_numpy()
    print(f"trials: {n} ({errors} failed), concurrency {args.concurrency}"
          + (f", dask {args.dask}" if args.dask else ""))
    print(f"run: {run_seconds:.1f} s  ->  {n / run_seconds:.1f} trials/s  (goal: {n} trials in <= "
          f"{GOAL_SECONDS:.0f} s: {'met' if run_seconds <= GOAL_SECONDS else 'NOT met'}; ratio "
          f"{run_seconds / GOAL_SECONDS:.2f})")
    print(f"turn (pipeline total) ms: p50 {np.percentile(turn, 50):.1f}  p95 {np.percentile(turn, 95):.1f}")
    print(f"runner overhead per trial ms (trial wall - turn total): p50 {np.percentile(overhead, 50):.2f}  "
          f"p95 {np.percentile(overhead, 95):.2f}  mean {overhead.mean():.2f}")
    print(f"wall per trial {1000 * run_seconds / n:.1f} ms vs turn p50 {np.percentile(turn, 50):.1f} ms "
          f"(concurrency hides part of each turn)")
    print(f"statistics (bootstrap CIs, paired tests): {stats_seconds:.1f} s")
    if mlflow_seconds is not None:
        print(f"MLflow logging (parent + children + {min(n, 50)} traces): {mlflow_seconds:.1f} s")
    return 0 if errors == 0 else 1


if __name__ == "__main__":
    sys.exit(main())

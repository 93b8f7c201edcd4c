"""Lip-sync accuracy of every aligner on the held-out reference split (voices training never saw), and on human
speech (the TIMIT sample) when it is on this machine.

For each aligner: frame accuracy at 100 fps in the Oculus-15 and Rhubarb-9 spaces, closed-lips (PP) recall and
precision, mean absolute onset error of viseme changes, real-time factor (align time / audio time, 2 cores),
per engine too. Goals for audio + text alone: Rhubarb >= 0.80, PP recall >= 0.85, onset MAE <= 20 ms,
RTF <= 0.03. ``engine`` (the voice's own timings) is the reference itself and is not listed.

    python benchmarks/lipsync.py [--aligners a,b,c] [--limit N] [--no-timit] [--json]

The held-out split is synthesised on first use (``datasets/lipsync/make_reference.py``, ~1-2 minutes).
"""

from __future__ import annotations

import argparse
import json
import sys

import pandas as pd

from avatarium_lab.lipsync.evaluate import GOALS, evaluate, meets_goals, summarize
from avatarium_lab.lipsync.reference import load_reference, load_timit

ALIGNERS = ("text-proportional", "pocketsphinx", "neural")


def show(title: str, table: pd.DataFrame) -> None:
    print(f"\n== {title}")
    with pd.option_context("display.width", 160, "display.max_columns", 20, "display.float_format", "{:.3f}".format):
        print(table)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--aligners", default=",".join(ALIGNERS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N held-out utterances")
    parser.add_argument("--no-timit", action="store_true", help="skip the human-speech evaluation")
    parser.add_argument("--json", action="store_true", help="print the summaries as JSON at the end")
    args = parser.parse_args(argv)
    names = [a.strip() for a in args.aligners.split(",") if a.strip()]

    heldout = load_reference("heldout", limit=args.limit)
    print(f"held-out: {len(heldout)} utterances, {sum(u.duration for u in heldout) / 60:.1f} min, "
          f"{len({u.voice for u in heldout})} voices ({', '.join(sorted({u.engine for u in heldout}))})")
    run = evaluate(names, heldout)
    summary = summarize(run.table)
    show("held-out split (synthetic voices never seen in training)", summary)
    show("held-out by engine: Rhubarb frame accuracy", run.table.pivot_table(
        index="aligner", columns="engine", values="frame_accuracy_rhubarb", sort=False))
    show("held-out by engine: onset MAE (ms)", run.table.pivot_table(
        index="aligner", columns="engine", values="onset_mae_ms", sort=False))
    goals = meets_goals(summary)
    show("goals met (" + ", ".join(f"{m} {op} {g}" for m, (op, g) in GOALS.items()) + ")", goals)
    fallbacks = run.table.groupby("aligner", sort=False)["fallback"].sum()
    if fallbacks.any():
        print("\nutterances where an aligner fell back to text-proportional timings:", dict(fallbacks[fallbacks > 0]))

    result = {"heldout": json.loads(summary.to_json(orient="index"))}
    timit = None if args.no_timit else load_timit()
    if timit is None:
        print("\nTIMIT sample not found (../shared/datasets/timit-sample-dev): human-speech evaluation skipped")
    else:
        human = summarize(evaluate(names, timit).table)
        show(f"human speech: TIMIT sample, {len(timit)} utterances, {sum(u.duration for u in timit) / 60:.1f} min",
             human)
        result["timit"] = json.loads(human.to_json(orient="index"))
    if args.json:
        print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())

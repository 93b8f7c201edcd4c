"""The ``avatarium`` command line: run a turn, list personas, serve the demo page."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from .errors import AvatariumError
from .secrets import install_log_redaction, redact


def _pipeline(args: argparse.Namespace):  # noqa: ANN202 - imported lazily to keep --help fast
    from .pipeline import Pipeline

    overrides = {}
    if getattr(args, "persona", None):
        overrides["persona"] = args.persona
    if getattr(args, "voice", None):
        overrides["voice.id"] = args.voice
    if getattr(args, "max_tokens", None):
        overrides["provider.max_tokens"] = args.max_tokens
    return Pipeline.from_config(args.config, **overrides)


def cmd_turn(args: argparse.Namespace) -> int:
    from .events import Audio, TextDelta, latency_breakdown

    pipeline = _pipeline(args)
    pipeline.validate_message(args.text)  # reject bad input before loading the model
    pipeline.warm()
    events = []
    for ev in pipeline.stream(args.text, conversation=None):
        events.append(ev)
        if args.json:
            data = ev.to_dict()
            if args.omit_audio and isinstance(ev, Audio):
                data["pcm"] = None
            print(json.dumps(data, ensure_ascii=False), flush=True)
        elif isinstance(ev, TextDelta):
            print(ev.text, end="", flush=True)
    breakdown = latency_breakdown(events)
    error = next((e for e in events if e.type == "error"), None)
    if args.json:
        print(json.dumps({"type": "latency_breakdown", **breakdown.as_ms()}), flush=True)
    else:
        print()
        counts: dict[str, int] = {}
        for ev in events:
            counts[ev.type] = counts.get(ev.type, 0) + 1
        print("events: " + ", ".join(f"{k}={v}" for k, v in counts.items()))
        for key, value in breakdown.as_ms().items():
            print(f"  {key:<28} {'-' if value is None else f'{value:8.1f}'}")
        if error is not None:
            print(f"error [{error.code}]: {error.message}", file=sys.stderr)
    if args.save_wav:
        from .pipeline import TurnResult

        result = TurnResult(events)
        with wave.open(str(args.save_wav), "wb") as wf:
            wf.setnchannels(1)
            wf.setsampwidth(2)
            wf.setframerate(result.sample_rate)
            wf.writeframes(result.audio.tobytes())
    return 1 if error is not None else 0


def cmd_personas(args: argparse.Namespace) -> int:
    from .personality import list_personas, load_persona

    personas = [load_persona(p) for p in list_personas()]
    if args.json:
        print(json.dumps([p.model_dump(mode="json") for p in personas], indent=2))
    else:
        for p in personas:
            print(f"{p.id:<22} {p.name:<8} voice={p.voice.id:<18} {p.description}")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from .providers.catalog import load_catalog
    from .secrets import resolve_key

    catalog = load_catalog()
    rows = []
    for entry in catalog.models:
        plans = [name for name, plan in catalog.plans.items() if entry.tier != "premium" or plan.premium_models]
        key = None if entry.vendor == "embedded" else resolve_key(entry.vendor)
        rows.append({
            **entry.model_dump(),
            "plan": plans[0] if plans else None,
            "plans": plans,
            "key_configured": entry.vendor == "embedded" or key is not None,
            "key_source": "embedded" if entry.vendor == "embedded" else (key.source if key else None),
        })
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'id':<20}{'tier':<10}{'vendor':<11}{'plan':<9}{'in $/M':>8}{'out $/M':>9}  key")
        for r in rows:
            print(f"{r['id']:<20}{r['tier']:<10}{r['vendor']:<11}{r['plan']:<9}{r['price_in']:>8.2f}"
                  f"{r['price_out']:>9.2f}  {r['key_source'] or '-'}")
        print("prices: USD per million tokens, as configured in avatarium_lab/providers/catalog.yaml")
    return 0


def cmd_voices(args: argparse.Namespace) -> int:
    from .providers.catalog import load_catalog
    from .tts.catalog import load_voice_catalog, missing_requirement

    plans = load_catalog().plans
    rows = []
    for entry in load_voice_catalog().voices:
        missing = missing_requirement(entry)
        rows.append({**entry.model_dump(), "available": missing is None, "missing": missing,
                     "plans": [n for n, p in plans.items() if entry.tier != "premium" or p.premium_models]})
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print(f"{'id':<34}{'tier':<10}{'timings':<11}{'$/M chars':>10}  available")
        for r in rows:
            state = "yes" if r["available"] else f"no (needs {r['missing']})"
            print(f"{r['id']:<34}{r['tier']:<10}{r['timings']:<11}{r['cost_per_million_chars']:>10.2f}  {state}")
    return 0


DEFAULT_ALIGNER = "neural"


def cmd_lipsync(args: argparse.Namespace) -> int:
    """Timed phonemes and Oculus visemes of a WAV file and its text, from an aligner (no engine timings)."""
    from .lipsync.aligners import get_aligner
    from .lipsync.audio_io import load_wav
    from .lipsync.visemes import phonemes_to_visemes

    samples, rate = load_wav(args.audio)
    aligner = get_aligner(args.aligner, language=args.language)
    phonemes = aligner.align(samples, rate, args.text)
    visemes = phonemes_to_visemes(phonemes)
    result = {
        "phonemes": [{"symbol": p.symbol, "start": round(p.start, 4), "end": round(p.end, 4)} for p in phonemes],
        "visemes": [{"viseme": v.viseme, "start": round(v.start, 4), "end": round(v.end, 4)} for v in visemes],
    }
    if args.json:
        print(json.dumps(result, ensure_ascii=False))
    else:
        print(f"{args.audio}: {len(samples) / rate:.2f} s at {rate} Hz, aligner {aligner.name}")
        for v in visemes:
            print(f"{v.start:8.3f} {v.end:8.3f}  {v.viseme}")
    return 0


def cmd_bench(args: argparse.Namespace) -> int:
    """Run (or finish) an experiment spec; print the summary and which variant wins on which metric."""
    import pandas as pd

    from .experiments import run_experiment

    result = run_experiment(args.spec, out_dir=args.out, resume=not args.fresh, concurrency=args.concurrency,
                            dask=args.dask, mlflow=not args.no_mlflow, progress=not args.json)
    if args.json:
        print(json.dumps({
            "experiment": result.spec.name, "trials": len(result.results), "ran": result.ran,
            "seconds": result.seconds, "run_id": result.run_id, "tracking_uri": result.tracking_uri,
            "results": str(result.out_dir / "results.parquet"),
            "summary": json.loads(result.summary.to_json(orient="records")),
            "winners": json.loads(result.winners.to_json(orient="records")) if not result.winners.empty else [],
        }, indent=1))
        return 0
    errors = int(result.results["error"].notna().sum())
    print(f"{result.spec.name}: {len(result.results)} trials ({result.ran} run now, {errors} failed) in "
          f"{result.seconds:.1f} s; results: {result.out_dir / 'results.parquet'}")
    with pd.option_context("display.width", 160, "display.max_columns", 12, "display.float_format", "{:.3g}".format):
        table = result.summary.pivot_table(index="metric", columns="variant", values="mean", sort=False,
                                           observed=True)
        print(table)
        if not result.winners.empty:
            print()
            print(result.winners.to_string(index=False))
    if result.run_id:
        print(f"MLflow run {result.run_id} at {result.tracking_uri}")
    return 0


def cmd_avatars(args: argparse.Namespace) -> int:
    """List the avatar library with each avatar's capabilities, or check any GLB/VRM file."""
    from .avatar import list_avatars
    from .avatar.check import check_avatar

    if args.action == "check":
        if not args.file:
            print("avatarium: error: avatars check needs a FILE (.glb or .vrm)", file=sys.stderr)
            return 2
        report = check_avatar(args.file)
        print(json.dumps(report.as_dict(), indent=1) if args.json else report.summary())
        return 0
    rows = []
    for info in list_avatars():
        report = check_avatar(info.path)
        rows.append({"id": info.id, "name": info.name, "description": info.description, "path": str(info.path),
                     "lipsync": report.lipsync, "emotions": report.emotions, "blinks": report.blinks,
                     "gestures": report.gestures, "rig": report.rig, "morph_targets": len(info.morph_targets),
                     "bones": sorted(report.bones), "issues": list(report.issues)})
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        print(f"{'id':<12}{'name':<14}{'lip sync':<10}{'emotions':<10}{'blinks':<8}{'gestures':<10}morphs")
        for r in rows:
            print(f"{r['id']:<12}{r['name']:<14}{r['lipsync']:<10}{r['emotions']:<10}{r['blinks']:<8}"
                  f"{r['gestures']:<10}{r['morph_targets']}")
    return 0


def _run_gateway(command: str, configs: list[Any] | None, **options: Any) -> int:
    """``avatarium serve`` / ``demo``: run the gateway until Ctrl+C; an insecure bind is exit code 2."""
    from .gateway.security import InsecureBind
    from .gateway.server import serve

    try:
        serve(configs, **options)
    except InsecureBind as exc:
        print(f"avatarium {command}: {exc.message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 0
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    """The live page and the gateway on the embedded defaults, with a fresh demo key printed once."""
    db = args.db or os.environ.get("AVATARIUM_DB_URL")
    if db is None:
        path = Path.home() / ".local" / "share" / "avatarium-lab" / "demo.db"
        path.parent.mkdir(parents=True, exist_ok=True)
        db = f"sqlite:///{path}"
    return _run_gateway("demo", [args.config] if args.config else None, host=args.address, port=args.port, db=db,
                        ui=True, demo_key=True)


def cmd_serve(args: argparse.Namespace) -> int:
    return _run_gateway("serve", args.config, host=args.host, port=args.port, certfile=args.certfile,
                        keyfile=args.keyfile, db=args.db, forwarded_allow_ips=args.forwarded_allow_ips, ui=args.ui)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="avatarium", description="avatarium-lab: talking 3D avatar workbench")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="command", required=True)

    turn = sub.add_parser("turn", help="run one conversation turn and print its events and latency")
    turn.add_argument("text")
    turn.add_argument("--config", type=Path, default=None, help="configuration YAML (default: the default one)")
    turn.add_argument("--persona", default=None, help="override the configuration's persona")
    turn.add_argument("--voice", default=None, help="override the voice id, e.g. espeak:en-gb+m3")
    turn.add_argument("--max-tokens", type=int, default=None)
    turn.add_argument("--json", action="store_true", help="print every event as a JSON line")
    turn.add_argument("--omit-audio", action="store_true", help="with --json: leave audio bytes out (pcm: null)")
    turn.add_argument("--save-wav", type=Path, default=None, help="write the reply's audio to a WAV file")
    turn.set_defaults(func=cmd_turn)

    personas = sub.add_parser("personas", help="list the built-in personas")
    personas.add_argument("--json", action="store_true")
    personas.set_defaults(func=cmd_personas)

    models = sub.add_parser("models", help="list the model catalog: tiers, plans, prices, configured keys")
    models.add_argument("--json", action="store_true")
    models.set_defaults(func=cmd_models)

    voices = sub.add_parser("voices", help="list the voice catalog: tiers, timings, costs, availability")
    voices.add_argument("--json", action="store_true")
    voices.set_defaults(func=cmd_voices)

    lipsync = sub.add_parser("lipsync", help="timed phonemes and visemes of a WAV file and its text")
    lipsync.add_argument("audio", type=Path, help="a WAV file: any rate, mono or stereo, PCM or float")
    lipsync.add_argument("--text", required=True, help="the words spoken in the file")
    lipsync.add_argument("--aligner", default=DEFAULT_ALIGNER,
                         help=f"text-proportional, pocketsphinx or neural (default {DEFAULT_ALIGNER})")
    lipsync.add_argument("--language", default="en-us")
    lipsync.add_argument("--json", action="store_true", help='print {"phonemes": [...], "visemes": [...]}')
    lipsync.set_defaults(func=cmd_lipsync)

    bench = sub.add_parser("bench", help="run an experiment spec (A/B test) and report its statistics")
    bench.add_argument("spec", type=Path, help="an experiment YAML, e.g. experiments/ab_voices.yaml")
    bench.add_argument("--dask", default=None, help="a Dask scheduler address (tcp://host:8786) or 'local'")
    bench.add_argument("--concurrency", type=int, default=None, help="trials in flight per process")
    bench.add_argument("--out", type=Path, default=None, help="results folder (default experiments/results/NAME)")
    bench.add_argument("--fresh", action="store_true", help="start over instead of resuming")
    bench.add_argument("--no-mlflow", action="store_true", help="do not log to MLflow")
    bench.add_argument("--json", action="store_true")
    bench.set_defaults(func=cmd_bench)

    avatars = sub.add_parser("avatars", help="list the avatar library, or check a GLB/VRM file")
    avatars.add_argument("action", nargs="?", choices=["list", "check"], default="list")
    avatars.add_argument("file", nargs="?", type=Path, help="with check: the .glb or .vrm file")
    avatars.add_argument("--json", action="store_true")
    avatars.set_defaults(func=cmd_avatars)

    demo = sub.add_parser("demo", help="serve the live page and the gateway on the embedded defaults, with a demo key")
    demo.add_argument("--config", type=Path, default=None)
    demo.add_argument("--address", default="127.0.0.1")
    demo.add_argument("--port", type=int, default=5006)
    demo.add_argument("--db", help="database URL (default: ~/.local/share/avatarium-lab/demo.db)")
    demo.set_defaults(func=cmd_demo)

    serve = sub.add_parser("serve", help="serve the gateway: authenticated HTTP + WebSocket API (docs/protocol.md)")
    serve.add_argument("config", nargs="*", help="configuration YAML files (default: the default configuration)")
    serve.add_argument("--host", default="127.0.0.1", help="off loopback, --certfile/--keyfile are required")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--certfile")
    serve.add_argument("--keyfile")
    serve.add_argument("--db", help="SQLAlchemy database URL (default: AVATARIUM_DB_URL or a local SQLite file)")
    serve.add_argument("--forwarded-allow-ips", help="behind a TLS-terminating load balancer: its addresses")
    serve.add_argument("--ui", action="store_true", help="also serve the live chat page at /app (same API)")
    serve.set_defaults(func=cmd_serve)

    try:
        from .conversation.cli import add_keys_parser
    except ImportError:  # pragma: no cover - the package is part of the install
        pass
    else:
        add_keys_parser(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, stream=sys.stderr)
    install_log_redaction()
    try:
        return args.func(args)
    except AvatariumError as exc:
        print(f"avatarium: error [{exc.code}]: {redact(exc.message)}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())

"""Offline voices: time to first audio for a 12-word sentence, and real-time factor on a ~60-second paragraph.

Every available offline voice in the catalog (``avatarium voices``) is built as the pipeline builds it
(levelled loudness included), warmed up and calibrated, then timed: first audio p50/p95 over ``--runs``
requests, and RTF = synthesis time / audio duration for one paragraph of about a minute of speech.
Goals on 2 cores: Basic first audio <= 15 ms; Standard first audio <= 250 ms and RTF <= 0.2.

    python benchmarks/voices.py [--runs N] [--json]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import numpy as np
from tqdm import tqdm

from avatarium_lab.config import VoiceConfig
from avatarium_lab.personality import load_persona
from avatarium_lab.tts.build import build_voice
from avatarium_lab.tts.catalog import available, load_voice_catalog

SENTENCE = "The quick brown fox jumps over the lazy dog by the quiet river bank."  # 12 words
PARAGRAPH = (
    "The ocean covers more than seventy percent of the surface of our planet, and most of it has never been seen "
    "by human eyes. Sunlight reaches only the top few hundred metres; below that the water turns dark and cold, "
    "and the animals that live there make their own light. Whales sing to each other across great distances, "
    "and their songs change from year to year, passed from one animal to the next like a fashion. Along the "
    "coasts, tides rise and fall twice a day, pulled by the moon and, to a lesser degree, by the sun. Coral "
    "reefs, built over thousands of years by tiny animals, shelter a quarter of all the species in the sea, "
    "although they cover less than one percent of its floor. Every breath we take depends on the ocean too, "
    "because the microscopic plankton near its surface produce about half of the oxygen in the air. Sailors "
    "once believed the sea was endless, but today satellites map every wave and current from far above the "
    "clouds. Still, the deepest trenches remain almost as mysterious as the surface of a distant planet, and "
    "each expedition that reaches them returns with creatures no one has ever described before."
)
GOALS = {"basic": {"first_audio_ms": 15.0}, "standard": {"first_audio_ms": 250.0, "rtf": 0.2}}


async def first_audio(voice, text: str) -> float:
    t0 = time.perf_counter()
    agen = voice.synthesize(text)
    try:
        async for _ in agen:
            return time.perf_counter() - t0
    finally:
        await agen.aclose()
    return float("nan")


async def rtf(voice, text: str) -> tuple[float, float]:
    t0 = time.perf_counter()
    duration = 0.0
    async for chunk in voice.synthesize(text):
        duration += chunk.duration
    return (time.perf_counter() - t0) / duration, duration


async def bench(voice_id: str, runs: int) -> dict:
    voice = build_voice(VoiceConfig(id=voice_id), load_persona("warm_tutor"))
    await voice.calibrate()
    for _ in range(3):
        await first_audio(voice, SENTENCE)
    times = [await first_audio(voice, SENTENCE) for _ in tqdm(range(runs), desc=voice_id, file=sys.stderr)]
    factor, seconds = await rtf(voice, PARAGRAPH)
    arr = np.asarray(times) * 1000
    return {"first_audio_ms_p50": float(np.percentile(arr, 50)), "first_audio_ms_p95": float(np.percentile(arr, 95)),
            "rtf": factor, "paragraph_s": seconds}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=20)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    catalog = load_voice_catalog()
    voices = [v for v in catalog.voices if v.tier != "premium"]
    report = {}
    for entry in voices:
        if not available(entry):
            report[entry.id] = {"tier": entry.tier, "skipped": "not available on this machine"}
            continue
        report[entry.id] = {"tier": entry.tier, **asyncio.run(bench(entry.id, args.runs))}
    if args.json:
        print(json.dumps(report, indent=2))
        return 0
    print(f"\noffline voices: first audio for a 12-word sentence ({args.runs} runs), RTF on a paragraph")
    print(f"{'voice':<34}{'tier':<10}{'first p50':>10}{'first p95':>10}{'RTF':>8}{'audio':>8}  goals")
    for vid, r in report.items():
        if "skipped" in r:
            print(f"{vid:<34}{r['tier']:<10}  skipped: {r['skipped']}")
            continue
        goal = GOALS.get(r["tier"], {})
        verdicts = []
        if "first_audio_ms" in goal:
            ok = r["first_audio_ms_p50"] <= goal["first_audio_ms"]
            verdicts.append(f"first<={goal['first_audio_ms']:.0f}ms {'met' if ok else 'NOT met'}")
        if "rtf" in goal:
            verdicts.append(f"RTF<={goal['rtf']} {'met' if r['rtf'] <= goal['rtf'] else 'NOT met'}")
        print(f"{vid:<34}{r['tier']:<10}{r['first_audio_ms_p50']:>8.1f}ms{r['first_audio_ms_p95']:>8.1f}ms"
              f"{r['rtf']:>8.3f}{r['paragraph_s']:>7.1f}s  {', '.join(verdicts)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Per-trial metrics, all derived from one turn's events (nothing is timed outside the pipeline).

Latency (ms from ``TurnStarted``): first token, first sentence, first audio, first viseme, total; the
pipeline's own overhead. Cost: prompt/completion tokens, USD (as configured in the catalog), provider switches.
Audio: seconds, the voice's real-time factor (voice busy time / audio seconds). Lip sync: when the voice reports
its own timings and an aligner timed the mouth (``lipsync.emit_reference``), the aligner's frame accuracy,
PP recall and onset error against those timings. Reply: characters, words, sentences. Persona: cheap offline
checks (:func:`style_checks`) and, when a judge model is configured, its 1-5 scores.
"""

from __future__ import annotations

import re
from typing import Any

from ..events import Audio, Phonemes, ProviderSwitched, Sentence, Usage
from ..lipsync.scoring import score
from ..personality import Persona
from ..pipeline import TurnResult
from ..secrets import redact

_MARKDOWN = re.compile(r"(^|\s)([*_#`>]|\d+\.\s|- )|\*\*|__|```", re.MULTILINE)
_EMOJI = re.compile("[\U0001f300-\U0001faff\u2600-\u27bf]")
_SENTENCE_END = re.compile(r"[.!?]+(\s|$)")


def count_sentences(text: str) -> int:
    text = text.strip()
    if not text:
        return 0
    return max(1, len(_SENTENCE_END.findall(text)) + (0 if _SENTENCE_END.search(text[-2:] + " ") else 1))


def style_checks(text: str, persona: Persona) -> dict[str, float]:
    """Offline persona-adherence checks of a reply (each 0 or 1) and their mean, ``style_score``."""
    lower = text.lower()
    low, high = persona.checks.sentences
    n = count_sentences(text)
    checks = {
        "style_length_ok": float(low <= n <= high),
        "style_no_markup": float(not _MARKDOWN.search(text) and not _EMOJI.search(text)),
        "style_no_banned": float(not any(b.lower() in lower for b in persona.checks.banned)),
    }
    if persona.checks.markers:
        checks["style_marker"] = float(any(re.search(rf"\b{re.escape(m.lower())}\b", lower)
                                           for m in persona.checks.markers))
    checks["style_score"] = sum(checks.values()) / len(checks)
    return checks


def turn_metrics(turn: TurnResult, persona: Persona | None = None) -> dict[str, Any]:
    """The flat metrics row of one finished turn."""
    lat = turn.latency
    row: dict[str, Any] = {k.replace("time_to_", ""): v for k, v in lat.as_ms().items()}
    usages: list[Usage] = turn.of(Usage)
    row["prompt_tokens"] = sum(u.prompt_tokens for u in usages)
    row["completion_tokens"] = sum(u.completion_tokens for u in usages)
    row["tokens_estimated"] = any(u.estimated for u in usages)
    row["cost_usd"] = sum(u.cost for u in usages)
    row["provider_switches"] = len(turn.of(ProviderSwitched))
    row["model"] = usages[-1].model if usages else None
    audio: list[Audio] = turn.of(Audio)
    seconds = sum(len(a.pcm) / 2 / a.sample_rate for a in audio)
    row["audio_seconds"] = seconds
    tts_busy = lat.busy.get("tts")
    row["rtf"] = tts_busy / seconds if seconds and tts_busy is not None else None
    lipsync_busy = lat.busy.get("lipsync")
    row["lipsync_rtf"] = lipsync_busy / seconds if seconds and lipsync_busy is not None else None
    text = turn.text
    row["response_chars"] = len(text)
    row["response_words"] = len(text.split())
    row["response_sentences"] = len(turn.of(Sentence))
    row["lipsync_source"] = None
    phonemes: list[Phonemes] = turn.of(Phonemes)
    reference = [p for e in phonemes if e.source == "reference" for p in e.items]
    timed = [e for e in phonemes if e.source != "reference"]
    if timed:
        row["lipsync_source"] = timed[0].source
    if reference and timed and seconds:
        s = score(reference, [p for e in timed for p in e.items], seconds)
        row.update(frame_accuracy_oculus=s.frame_accuracy_oculus, frame_accuracy_rhubarb=s.frame_accuracy_rhubarb,
                   pp_recall=s.pp_recall, onset_mae_ms=s.onset_mae_ms)
    if persona is not None:
        row.update(style_checks(text, persona))
    error = turn.error
    row["error"] = error.code if error is not None else None
    row["error_message"] = redact(error.message) if error is not None else None
    return row


def turn_timeline(turn: TurnResult) -> list[dict[str, Any]]:
    """Busy intervals of every stage, seconds from ``TurnStarted`` (for traces and the latency waterfall)."""
    from ..events import StageTiming

    if not turn.events:
        return []
    t0 = turn.events[0].t
    return [{"stage": e.stage, "segment": e.segment, "start": round(e.start - t0, 6), "end": round(e.end - t0, 6)}
            for e in turn.of(StageTiming)]

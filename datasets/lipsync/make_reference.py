"""Lip-sync reference data: utterances synthesised by voices that report exact phoneme timings, 16 kHz WAV + manifest.

Run ``python datasets/lipsync/make_reference.py [--split train|dev|heldout ...] [--limit N]``; it writes
``datasets/lipsync/generated/<split>/<id>.wav`` (16 kHz mono PCM16) and one row per utterance to
``datasets/lipsync/generated/manifest.jsonl``::

    {"id", "split", "engine", "voice", "rate", "pitch", "text", "duration", "sample_rate", "wav",
     "phonemes": [[symbol, start, end], ...]}

Phoneme symbols and times are the engine's own (IPA; festival's and flite's ARPAbet mapped to IPA by
``avatarium_lab.tts.festival``), seconds from the first sample; pauses are gaps between phonemes.

Why it looks the way it does:

* The plan (which text, voice, rate and pitch each utterance gets) is a pure function of the committed text
  files and :data:`SEED`, so every machine builds the same utterances. espeak-ng, flite and festival are
  deterministic; Piper samples noise inside its ONNX graph (onnxruntime's seed does not reach it), so Piper is
  run with its noise scales at 0 (:func:`_piper_without_noise`), which makes it deterministic too.
* Resumable: a row is appended (and flushed) as soon as its WAV is written; a rerun keeps rows whose WAV exists
  and whose plan entry is unchanged, and makes only the rest. A lock file keeps two processes from writing the
  same files at once.
* Splits: ``train`` and ``dev`` share voices (dev has its own texts); ``heldout`` has its own texts and only
  voices and rates that training never sees: the whole festival engine (HTS SLT), flite's SLT voice (training
  has flite RMS, AWB and KAL16), espeak-ng variants and an English accent not in training at rates and
  pitches outside training's ranges, and Piper at rates outside training's range.
* Texts: natural sentences written for this project (``sentences.txt``, assigned to splits by a hash so edits
  never move a sentence between splits) and, for training only, random word sequences from a vocabulary
  (``words.txt`` plus the words of the training sentences) for broad phonetic context coverage.
"""

from __future__ import annotations

import argparse
import contextlib
import fcntl
import hashlib
import json
import logging
import random
import re
import sys
import wave
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
DEFAULT_OUT = HERE / "generated"
SAMPLE_RATE = 16_000
SEED = 20_240_601
SPLITS = ("train", "dev", "heldout")

# Utterances per split and engine.
COUNTS: dict[str, dict[str, int]] = {
    "train": {"espeak": 1800, "piper": 900, "flite": 900},
    "dev": {"espeak": 150, "piper": 75, "flite": 75},
    "heldout": {"festival": 160, "flite": 60, "espeak": 100, "piper": 80},
}

# Voices and parameter ranges seen in training (train and dev draw from these).
TRAIN_ESPEAK_LANGS = ("en-us", "en-us", "en-gb", "en-us-nyc", "en-gb-x-rp", "en-029")
TRAIN_ESPEAK_VARIANTS = (
    "", "m1", "m2", "m3", "m4", "m6", "f1", "f2", "f4", "klatt", "klatt2", "klatt3", "Andy", "belinda", "david",
    "edward", "linda", "max", "paul", "rob", "steph", "Alex", "michel", "iven",
)
TRAIN_ESPEAK_RATE = (140, 240)
TRAIN_PITCH = (25, 75)
TRAIN_PIPER_RATE = (150, 215)
TRAIN_FLITE_VOICES = ("rms", "awb", "kal16")
TRAIN_FLITE_RATE = (140, 200)

# Held-out voices and ranges: none of these appear in train or dev.
HELDOUT_ESPEAK_LANGS = ("en-us", "en-gb-scotland")
HELDOUT_ESPEAK_VARIANTS = ("f3", "f5", "m7", "klatt4", "Annie", "john", "aunty", "quincy")
HELDOUT_ESPEAK_RATES = ((115, 135), (245, 280))
HELDOUT_PITCH = ((10, 22), (78, 90))
HELDOUT_PIPER_RATES = ((115, 140), (230, 260))
HELDOUT_FLITE_VOICES = ("slt",)
HELDOUT_FLITE_RATE = (130, 210)
HELDOUT_FESTIVAL_VOICE = "cmu_us_slt_arctic_hts"
HELDOUT_FESTIVAL_RATE = (130, 200)

TWO_SENTENCE_SHARE = 0.3
RANDOM_TEXT_SHARE = 0.5  # of training utterances
RANDOM_WORDS = (4, 12)

log = logging.getLogger("make_reference")


@dataclass(frozen=True)
class Spec:
    """One planned utterance."""

    id: str
    split: str
    engine: str
    voice: str
    rate: float
    pitch: float | None
    text: str


# --- texts -------------------------------------------------------------------------------------------------------


def _lines(path: Path) -> list[str]:
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            out.append(line)
    return out


def sentence_split(sentence: str) -> str:
    """The split a sentence belongs to: a stable hash, ~60 % train, ~15 % dev, ~25 % heldout."""
    bucket = int(hashlib.sha1(sentence.encode("utf-8")).hexdigest()[:8], 16) % 100
    return "train" if bucket < 60 else "dev" if bucket < 75 else "heldout"


def sentences_by_split(text_dir: Path = HERE) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {s: [] for s in SPLITS}
    for sentence in _lines(text_dir / "sentences.txt"):
        out[sentence_split(sentence)].append(sentence)
    return out


def vocabulary(text_dir: Path = HERE) -> list[str]:
    """Words for the random sequences: ``words.txt`` plus the words of the training sentences, sorted."""
    words = {w for line in _lines(text_dir / "words.txt") for w in line.split()}
    for sentence in sentences_by_split(text_dir)["train"]:
        words.update(w.lower() for w in re.findall(r"[A-Za-z']+", sentence) if w.lower() not in {"'", "s"})
    return sorted(w for w in words if w.strip("'"))


def random_text(rng: random.Random, vocab: Sequence[str]) -> str:
    """A random word sequence with occasional commas and a final '.', '?' or '!'."""
    n = rng.randint(*RANDOM_WORDS)
    words = [rng.choice(vocab) for _ in range(n)]
    out = []
    for i, w in enumerate(words):
        out.append(w)
        if 0 < i < n - 2 and rng.random() < 0.12:
            out[-1] += ","
    text = " ".join(out)
    return text[0].upper() + text[1:] + rng.choice(".....?!")


# --- the plan ----------------------------------------------------------------------------------------------------


def _uniform(rng: random.Random, bounds: tuple[float, float] | Sequence[tuple[float, float]]) -> float:
    if isinstance(bounds[0], tuple):
        bounds = rng.choice(bounds)  # type: ignore[arg-type]
    lo, hi = bounds  # type: ignore[misc]
    return float(round(rng.uniform(lo, hi)))


def _voice(rng: random.Random, split: str, engine: str) -> tuple[str, float, float | None]:
    """(voice id, rate, pitch) for one utterance of ``engine`` in ``split``."""
    held = split == "heldout"
    if engine == "espeak":
        lang = rng.choice(HELDOUT_ESPEAK_LANGS if held else TRAIN_ESPEAK_LANGS)
        variant = rng.choice(HELDOUT_ESPEAK_VARIANTS if held else TRAIN_ESPEAK_VARIANTS)
        voice = f"espeak:{lang}" + (f"+{variant}" if variant else "")
        rate = _uniform(rng, HELDOUT_ESPEAK_RATES if held else TRAIN_ESPEAK_RATE)
        return voice, rate, _uniform(rng, HELDOUT_PITCH if held else TRAIN_PITCH)
    if engine == "piper":
        return "piper:en_US-joe-medium", _uniform(rng, HELDOUT_PIPER_RATES if held else TRAIN_PIPER_RATE), None
    if engine == "flite":
        name = rng.choice(HELDOUT_FLITE_VOICES if held else TRAIN_FLITE_VOICES)
        rate = _uniform(rng, HELDOUT_FLITE_RATE if held else TRAIN_FLITE_RATE)
        return f"flite:{name}", rate, _uniform(rng, (35, 65))
    if engine == "festival":
        return f"festival:{HELDOUT_FESTIVAL_VOICE}", _uniform(rng, HELDOUT_FESTIVAL_RATE), None
    raise ValueError(f"unknown engine {engine!r}")


def plan(split: str, text_dir: Path = HERE) -> list[Spec]:
    """Every utterance of ``split``, in a fixed order (a pure function of the text files and :data:`SEED`)."""
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}; splits: {SPLITS}")
    rng = random.Random(f"{SEED}-{split}")
    pool = sentences_by_split(text_dir)[split]
    vocab = vocabulary(text_dir) if split == "train" else []
    engines = [e for e, n in COUNTS[split].items() for _ in range(n)]
    rng.shuffle(engines)
    specs = []
    order = list(pool)
    cursor = len(order)
    for i, engine in enumerate(engines):
        if vocab and rng.random() < RANDOM_TEXT_SHARE:
            text = random_text(rng, vocab)
        else:
            k = 2 if rng.random() < TWO_SENTENCE_SHARE else 1
            parts = []
            for _ in range(k):
                if cursor >= len(order):  # walk the sentences in shuffled passes: even use of every sentence
                    rng.shuffle(order)
                    cursor = 0
                parts.append(order[cursor])
                cursor += 1
            text = " ".join(parts)
        voice, rate, pitch = _voice(rng, split, engine)
        specs.append(Spec(f"{split}-{i:05d}", split, engine, voice, rate, pitch, text))
    return specs


# --- synthesis ---------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _piper_without_noise(voice: Any) -> Iterator[None]:
    """Piper with its generator and duration noise at 0: deterministic audio and durations.

    ``PiperVoice.render`` leaves the noise scales unset, so piper takes them from the model's config; they are
    set to 0 for the call and restored after (the loaded model is shared within the process).
    """
    config = voice.model.piper.config
    saved = (config.noise_scale, config.noise_w_scale)
    config.noise_scale, config.noise_w_scale = 0.0, 0.0
    try:
        yield
    finally:
        config.noise_scale, config.noise_w_scale = saved


_VOICES: dict[tuple[str, float, float | None], Any] = {}


def _get_voice(spec: Spec) -> Any:
    from avatarium_lab.tts import get_voice

    key = (spec.voice, spec.rate, spec.pitch)
    if key not in _VOICES:
        if len(_VOICES) > 64:
            _VOICES.clear()
        params: dict[str, Any] = {"rate": spec.rate}
        if spec.pitch is not None:
            params["pitch"] = spec.pitch
        if spec.engine == "piper":
            params["split_first"] = False
        _VOICES[key] = get_voice(spec.voice, **params)
    return _VOICES[key]


def synthesize(spec: Spec) -> tuple[np.ndarray, list[list[Any]]]:
    """16 kHz float samples and ``[[symbol, start, end], ...]`` of one planned utterance."""
    from avatarium_lab.tts.audio import pcm16_to_float, resample

    voice = _get_voice(spec)
    if spec.engine == "piper":
        with _piper_without_noise(voice):
            chunks = voice.synthesize_sync(spec.text)
    else:
        out = voice.synthesize_sync(spec.text)
        chunks = out if isinstance(out, list) else [out]
    pieces: list[np.ndarray] = []
    phonemes: list[list[Any]] = []
    offset = 0.0
    for chunk in chunks:
        samples = pcm16_to_float(chunk.pcm)
        pieces.append(resample(samples, chunk.sample_rate, SAMPLE_RATE))
        for p in chunk.phonemes or ():
            phonemes.append([p.symbol, round(offset + p.start, 5), round(offset + p.end, 5)])
        offset += len(samples) / chunk.sample_rate
    audio = np.concatenate(pieces) if pieces else np.zeros(0, np.float32)
    # Chunks are resampled one by one, so the 16 kHz length can differ from the source by a sample per chunk;
    # pad or cut to the source duration so the timings stay exact.
    n = int(round(offset * SAMPLE_RATE))
    audio = np.pad(audio, (0, max(0, n - len(audio))))[:n]
    return audio.astype(np.float32), phonemes


def write_wav(path: Path, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    pcm = (np.clip(samples, -1.0, 32767 / 32768) * 32768.0).round().astype("<i2").tobytes()
    tmp = path.with_name(f".{path.name}.tmp")
    with wave.open(str(tmp), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(pcm)
    tmp.replace(path)


def _row(spec: Spec, duration: float, phonemes: list[list[Any]]) -> dict[str, Any]:
    row = asdict(spec)
    row.update(duration=round(duration, 5), sample_rate=SAMPLE_RATE, wav=f"{spec.split}/{spec.id}.wav",
               phonemes=phonemes)
    return row


def _same(row: dict[str, Any], spec: Spec) -> bool:
    return all(row.get(k) == v for k, v in asdict(spec).items())


def read_manifest(out_dir: Path) -> dict[str, dict[str, Any]]:
    rows: dict[str, dict[str, Any]] = {}
    path = out_dir / "manifest.jsonl"
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            with contextlib.suppress(json.JSONDecodeError):  # a line cut by a killed run
                row = json.loads(line)
                rows[row["id"]] = row
    return rows


@contextlib.contextmanager
def _locked(out_dir: Path) -> Iterator[None]:
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / ".lock", "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def generate(splits: Sequence[str] = SPLITS, out_dir: Path = DEFAULT_OUT, *, limit: int | None = None,
             ids: Sequence[str] | None = None, progress: bool = True, text_dir: Path = HERE) -> list[dict[str, Any]]:
    """Make the missing utterances of ``splits`` (the first ``limit`` of each, or only ``ids``); return their rows.

    Existing rows whose WAV exists and whose plan entry is unchanged are kept; the manifest is rewritten in plan
    order at the end (rows of utterances no longer planned are dropped).
    """
    from tqdm import tqdm

    with _locked(out_dir):
        existing = read_manifest(out_dir)
        wanted: list[Spec] = []
        for split in splits:
            specs = plan(split, text_dir)
            if ids is not None:
                keep = set(ids)
                specs = [s for s in specs if s.id in keep]
            wanted.extend(specs[:limit] if limit is not None else specs)
        todo = [s for s in wanted
                if not (s.id in existing and _same(existing[s.id], s) and (out_dir / existing[s.id]["wav"]).exists())]
        manifest = out_dir / "manifest.jsonl"
        with manifest.open("a", encoding="utf-8") as fh:
            for spec in tqdm(todo, desc="synthesising", unit="utt", disable=not progress or not todo):
                audio, phonemes = synthesize(spec)
                write_wav(out_dir / spec.split / f"{spec.id}.wav", audio)
                row = _row(spec, len(audio) / SAMPLE_RATE, phonemes)
                existing[spec.id] = row
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
                fh.flush()
        # Canonical order: every split's plan order; rows of other (e.g. not yet requested) ids stay after.
        order = {s.id: k for k, s in enumerate(sp for split in SPLITS for sp in plan(split, text_dir))}
        planned = {i: r for i, r in existing.items() if i in order and _same(r, _spec_of(r))}
        tmp = manifest.with_name(".manifest.jsonl.tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            for row in sorted(planned.values(), key=lambda r: order[r["id"]]):
                fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        tmp.replace(manifest)
        return [existing[s.id] for s in wanted]


def _spec_of(row: dict[str, Any]) -> Spec:
    return Spec(**{k: row[k] for k in Spec.__dataclass_fields__})


def summary(rows: Sequence[dict[str, Any]]) -> str:
    lines = []
    for split in SPLITS:
        part = [r for r in rows if r["split"] == split]
        if not part:
            continue
        hours = sum(r["duration"] for r in part) / 3600
        lines.append(f"{split}: {len(part)} utterances, {hours:.2f} h")
        engines: dict[str, list[dict[str, Any]]] = {}
        for r in part:
            engines.setdefault(r["engine"], []).append(r)
        for engine, rs in sorted(engines.items()):
            voices = sorted({r["voice"] for r in rs})
            rates = [r["rate"] for r in rs]
            lines.append(f"  {engine}: {len(rs)} utt, {sum(r['duration'] for r in rs) / 3600:.2f} h, "
                         f"{len(voices)} voices, rate {min(rates):g}-{max(rates):g}: {', '.join(voices[:12])}"
                         + (" ..." if len(voices) > 12 else ""))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--split", action="append", choices=SPLITS, help="split(s) to make (default: all)")
    parser.add_argument("--limit", type=int, help="make only the first N utterances of each split")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument("--plan-only", action="store_true", help="print the plan's summary and exit")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    splits = args.split or list(SPLITS)
    if args.plan_only:
        for split in splits:
            specs = plan(split)
            by_engine: dict[str, int] = {}
            for s in specs:
                by_engine[s.engine] = by_engine.get(s.engine, 0) + 1
            print(split, len(specs), by_engine, len({s.voice for s in specs}), "voices")
        return 0
    rows = generate(splits, args.out, limit=args.limit)
    print(summary(rows))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(HERE.parents[1]))  # run from a clone without installing the package
    sys.exit(main())

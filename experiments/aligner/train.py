"""Train the neural aligner's acoustic model (log-mel -> conv -> BiGRU -> phone posteriors) and export it to ONNX.

Usage (from the repository root, after ``python datasets/lipsync/make_reference.py``)::

    .venv/bin/python experiments/aligner/train.py [--config experiments/aligner/config.yaml] [--epochs N]
    .venv/bin/python experiments/aligner/train.py --export-only     # export + evaluate the best checkpoint

What it does:

* Data: the reference utterances of ``datasets/lipsync/generated`` (several TTS engines with exact phoneme
  timings). Labels are one phone class per 10 ms frame (``avatarium_lab.lipsync.neural.PHONES``: merged espeak
  symbols split, stress and length dropped), with stop closures moved into their stops (see ``labels`` in the
  config: the engines disagree on where closures go, and for lips they belong to the stop).
* Features: log-mel at 100 frames/s computed by :class:`LogMel`, a strided convolution with Hann-windowed DFT
  kernels + torchaudio's mel filter bank. It equals ``torchaudio.transforms.MelSpectrogram`` (checked at start)
  but, unlike ``torch.stft`` with complex outputs, exports to plain ONNX ops, so the exported model takes raw
  16 kHz samples and training and inference features cannot drift. Per-utterance mean normalisation (inside
  the model) removes channel colouring (telephone bands, microphones).
* Model: 3 conv layers + 2-layer BiGRU (~1 M parameters) with a framewise phone head (cross-entropy on the
  engines' exact frame labels: sharp boundaries) and an auxiliary CTC head (blank + phones) on the same encoder.
  CTC alone gives peaky spikes, not boundaries, so it only regularises the encoder; only the framewise head is
  exported and aligned with Viterbi.
* Augmentation (per utterance, on the fly): speed 0.9-1.1 by resampling (labels stretched with it),
  reverberation by synthetic exponential-decay impulse responses, white/pink noise at random SNR, telephone band
  or random low-pass, level, clipping.
* Validation: after each epoch a dev subset is force-aligned (the numpy Viterbi of ``neural.py``) and scored with
  ``avatarium_lab.lipsync.scoring``; the best epoch by Rhubarb frame accuracy is kept.
* Resumable: ``checkpoints/<run_name>/last.pt`` after every epoch (model, optimiser, schedule, RNG states,
  MLflow run id); rerunning continues from it, in the same MLflow run.
* Logged to MLflow (``mlruns/``): parameters, per-epoch metrics, the exported model. When the ``mlflow``
  package is missing the same records go to ``checkpoints/<run_name>/metrics.jsonl`` instead.
* Export: ``avatarium_lab/lipsync/models/aligner.onnx`` (opset 17; raw audio in, log-posteriors out) and
  ``aligner.json`` (phone set, features, config, dev/held-out metrics, sha256), checked against torch with
  onnxruntime; the silence penalty of the Viterbi step is tuned on dev.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import math
import os
import random
import sys
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
import torchaudio
import yaml
from torch import nn
from tqdm import tqdm

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from avatarium_lab.events import TimedPhoneme  # noqa: E402
from avatarium_lab.lipsync import neural  # noqa: E402
from avatarium_lab.lipsync.phonemize import phonemize  # noqa: E402
from avatarium_lab.lipsync.scoring import score  # noqa: E402

N_PHONES = len(neural.PHONES)
STOPS = frozenset({"p", "b", "t", "d", "k", "ɡ", "tʃ", "dʒ"})
METRICS = ("frame_accuracy_oculus", "frame_accuracy_rhubarb", "pp_recall", "pp_precision", "onset_mae_ms")


# --- data --------------------------------------------------------------------------------------------------------


def read_wav(path: Path) -> np.ndarray:
    with wave.open(str(path), "rb") as w:
        return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768.0


def frame_db(audio: np.ndarray, hop: int = 160) -> np.ndarray:
    n = int(math.ceil(len(audio) / hop))
    frames = np.pad(audio, (0, n * hop - len(audio))).reshape(n, hop)
    return 10 * np.log10((frames**2).mean(axis=1) + 1e-10)


def refine_labels(audio: np.ndarray, phonemes: list[list[Any]], cfg: dict[str, Any]) -> list[list[Any]]:
    """Unit-level ``[[ipa, start, end], ...]`` with stop closures moved into the stops and short loud gaps shared.

    Works on 10 ms frames of the clean audio: a frame is quiet when it is ``closure_db`` below the utterance's
    95th-percentile frame level. Frames before a stop's start that are quiet (at most ``closure_max_ms``) join
    the stop, taken from the previous phoneme or the gap before it. Gaps (pauses) shorter than ``gap_fill_ms``
    that are not quiet are split between their neighbours (Piper gives word boundaries durations of their own).
    """
    spans: list[list[Any]] = []
    for symbol, start, end in phonemes:  # split merged symbols into units first
        parts = neural.units(str(symbol))
        total = sum(u.weight for u in parts)
        acc = 0.0
        for u in parts:
            a = start + (end - start) * acc / total
            acc += u.weight
            spans.append([u.phone, a, start + (end - start) * acc / total])
    if not cfg.get("closure_fix", True) or not spans:
        return spans
    db = frame_db(audio)
    quiet = db < np.percentile(db, 95) - cfg["closure_db"]
    max_frames = int(round(cfg["closure_max_ms"] / 10))
    gap_fill = cfg["gap_fill_ms"] / 1000
    for k, span in enumerate(spans):
        if span[0] not in STOPS or k == 0:
            continue
        prev = spans[k - 1]
        f = int(round(span[1] / 0.01))  # first frame of the stop
        limit = max(int(math.ceil(prev[1] / 0.01)) + 1, f - max_frames)  # keep >= 1 frame of the previous unit
        g = f
        while g - 1 >= limit and g - 1 < len(quiet) and quiet[g - 1]:
            g -= 1
        if g < f:
            span[1] = g * 0.01
            prev[2] = min(prev[2], span[1])
    for k in range(1, len(spans)):
        a, b = spans[k - 1], spans[k]
        gap = b[1] - a[2]
        if 0 < gap <= gap_fill:
            lo, hi = int(a[2] / 0.01), int(math.ceil(b[1] / 0.01))
            if hi > lo and not quiet[lo:hi].mean() > 0.5:
                mid = (a[2] + b[1]) / 2
                a[2], b[1] = mid, mid
    return spans


def unit_targets(spans: Sequence[Sequence[Any]], n_frames: int, scale: float = 1.0) -> np.ndarray:
    labels = np.zeros(n_frames, dtype=np.int64)
    centres = (np.arange(n_frames) + 0.5) * 0.01
    for phone, start, end in spans:
        lo, hi = np.searchsorted(centres, [start * scale, end * scale])
        labels[lo:hi] = neural.PHONE_INDEX[phone]
    return labels


class Corpus:
    """The utterances of one split: audio (16 kHz float32), refined unit spans, reference phonemes, text."""

    def __init__(self, manifest: Path, split: str, label_cfg: dict[str, Any], limit: int | None = None) -> None:
        rows = [json.loads(line) for line in manifest.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows = [r for r in rows if r["split"] == split]
        if limit is not None:
            rows = rows[:limit]
        if not rows:
            raise SystemExit(f"no {split!r} utterances in {manifest}: run datasets/lipsync/make_reference.py")
        self.rows = rows
        self.audio = [read_wav(manifest.parent / r["wav"]) for r in tqdm(rows, desc=f"loading {split}", leave=False)]
        self.spans = [refine_labels(a, r["phonemes"], label_cfg) for a, r in zip(self.audio, rows, strict=True)]

    def __len__(self) -> int:
        return len(self.rows)

    def reference(self, i: int) -> tuple[TimedPhoneme, ...]:
        return tuple(TimedPhoneme(s, float(a), float(b)) for s, a, b in self.rows[i]["phonemes"])


# --- features and model ------------------------------------------------------------------------------------------


class LogMel(nn.Module):
    """log(mel power spectrum) at ``hop`` samples per frame; frame ``t`` is centred on ``(t + 0.5) * hop``.

    The STFT is a strided convolution with Hann-windowed cosine/sine kernels (exports to one ONNX Conv);
    the mel matrix is torchaudio's ``melscale_fbanks``. The input is padded by ``(n_fft - hop) / 2`` on the left
    (so window centres fall on frame centres) and enough on the right for ``floor((N + pad) / hop) + 1`` frames,
    which covers the audio (the aligner uses the first ``ceil(N / hop)``).
    """

    def __init__(self, f: dict[str, Any]) -> None:
        super().__init__()
        n_fft, self.hop = int(f["n_fft"]), int(f["hop"])
        self.left = (n_fft - self.hop) // 2
        self.right = n_fft - self.left
        n = torch.arange(n_fft, dtype=torch.float64)
        k = torch.arange(n_fft // 2 + 1, dtype=torch.float64)
        window = torch.hann_window(n_fft, periodic=True, dtype=torch.float64)
        angle = 2 * math.pi * k[:, None] * n[None, :] / n_fft
        basis = torch.cat([torch.cos(angle) * window, -torch.sin(angle) * window])  # [2 * bins, n_fft]
        self.register_buffer("basis", basis.float().unsqueeze(1))
        fb = torchaudio.functional.melscale_fbanks(n_fft // 2 + 1, float(f["f_min"]), float(f["f_max"]),
                                                   int(f["n_mels"]), int(f["sample_rate"]), norm=None,
                                                   mel_scale="htk")
        self.register_buffer("fb", fb.float())
        self.bins = n_fft // 2 + 1
        self.floor = float(f["log_floor"])

    def power_mel(self, audio: torch.Tensor) -> torch.Tensor:
        x = F.pad(audio.unsqueeze(1), (self.left, self.right))
        spec = F.conv1d(x, self.basis, stride=self.hop)  # [B, 2 * bins, T]
        power = spec[:, : self.bins] ** 2 + spec[:, self.bins :] ** 2
        return torch.matmul(power.transpose(1, 2), self.fb)  # [B, T, n_mels]

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.log(self.power_mel(audio) + self.floor)


def n_frames(n_samples: int, hop: int = 160, n_fft: int = 400) -> int:
    left = (n_fft - hop) // 2
    return (n_samples + left + (n_fft - left) - n_fft) // hop + 1


def check_features(logmel: LogMel, f: dict[str, Any]) -> float:
    """Largest difference between :class:`LogMel` and torchaudio's ``MelSpectrogram`` on noise + a tone."""
    t = torch.arange(16000) / 16000
    audio = (0.3 * torch.sin(2 * math.pi * 440 * t) + 0.05 * torch.randn(16000)).unsqueeze(0)
    ref = torchaudio.transforms.MelSpectrogram(
        sample_rate=f["sample_rate"], n_fft=f["n_fft"], win_length=f["n_fft"], hop_length=f["hop"],
        f_min=f["f_min"], f_max=f["f_max"], n_mels=f["n_mels"], power=2.0, center=False, norm=None, mel_scale="htk",
    )(F.pad(audio, (logmel.left, logmel.right)))
    ours = logmel.power_mel(audio).transpose(1, 2)
    return float(((torch.log(ours + 1e-6) - torch.log(ref + 1e-6)).abs()).max())


class AlignerNet(nn.Module):
    """LogMel -> utterance mean normalisation -> conv stack -> BiGRU -> framewise phone logits (+ CTC logits)."""

    def __init__(self, fcfg: dict[str, Any], mcfg: dict[str, Any]) -> None:
        super().__init__()
        self.logmel = LogMel(fcfg)
        c, k, n_mels = int(mcfg["channels"]), int(mcfg["kernel"]), int(fcfg["n_mels"])
        self.register_buffer("scale", torch.ones(n_mels))
        self.inp = nn.Conv1d(n_mels, c, k, padding=k // 2)
        self.convs = nn.ModuleList(nn.Conv1d(c, c, k, padding=k // 2) for _ in range(int(mcfg["conv_layers"]) - 1))
        self.norm = nn.LayerNorm(c)
        self.drop = nn.Dropout(float(mcfg["dropout"]))
        h = int(mcfg["gru_hidden"])
        self.gru = nn.GRU(c, h, num_layers=int(mcfg["gru_layers"]), batch_first=True, bidirectional=True,
                          dropout=float(mcfg["dropout"]))
        self.head = nn.Linear(2 * h, N_PHONES)
        # CTC classes: the phones without silence (shifted down by one) and the blank, last.
        self.ctc_head = nn.Linear(2 * h, N_PHONES)

    def features(self, audio: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        x = self.logmel(audio)  # [B, T, M]
        if frames is None:
            mean = x.mean(dim=1, keepdim=True)
        else:
            mask = (torch.arange(x.shape[1])[None, :] < frames[:, None]).unsqueeze(-1).float()
            mean = (x * mask).sum(dim=1, keepdim=True) / mask.sum(dim=1, keepdim=True).clamp(min=1)
        return (x - mean) * self.scale

    def encode(self, audio: torch.Tensor, frames: torch.Tensor | None = None) -> torch.Tensor:
        x = self.features(audio, frames).transpose(1, 2)  # [B, M, T]
        x = self.drop(F.gelu(self.inp(x)))
        for conv in self.convs:
            x = x + self.drop(F.gelu(conv(x)))
        x = self.norm(x.transpose(1, 2))  # [B, T, C]
        if frames is not None:
            packed = nn.utils.rnn.pack_padded_sequence(x, frames.cpu(), batch_first=True, enforce_sorted=False)
            y, _ = self.gru(packed)
            y, _ = nn.utils.rnn.pad_packed_sequence(y, batch_first=True, total_length=x.shape[1])
        else:
            y, _ = self.gru(x)
        return self.drop(y)

    def forward(self, audio: torch.Tensor, frames: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        y = self.encode(audio, frames)
        return self.head(y), self.ctc_head(y)


class ExportNet(nn.Module):
    """What goes into the ONNX file: raw 16 kHz audio [1, N] -> log-posteriors [1, T, phones]."""

    def __init__(self, net: AlignerNet) -> None:
        super().__init__()
        self.net = net

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(self.net.head(self.net.encode(audio)), dim=-1)


# --- augmentation ------------------------------------------------------------------------------------------------


def _power(x: torch.Tensor) -> float:
    return float((x**2).mean()) + 1e-10


def augment(audio: torch.Tensor, rng: random.Random, a: dict[str, Any]) -> tuple[torch.Tensor, float]:
    """One augmented copy of ``audio`` (16 kHz, 1-D) and its time-stretch factor (labels multiply by it)."""
    sr = 16000
    stretch = 1.0
    if rng.random() < a["speed_p"]:
        stretch = rng.choice(a["speeds"])
        # Resampling to sr * stretch and playing at sr makes it `stretch` times longer (and lower).
        audio = torchaudio.functional.resample(audio, sr, int(round(sr * stretch)))
    n = audio.shape[-1]
    if rng.random() < a["reverb_p"]:
        rt60 = rng.uniform(*a["rt60"])
        length = int(min(rt60, 0.6) * sr)
        t = torch.arange(length) / sr
        g = torch.Generator().manual_seed(rng.randrange(1 << 30))
        ir = torch.randn(length, generator=g) * torch.exp(-6.9 * t / rt60)
        ir[0] = 1.0 / rng.uniform(0.05, 0.5)  # direct path, direct-to-reverberant ratio varies
        ir = ir / ir.abs().sum().sqrt()
        wet = torchaudio.functional.fftconvolve(audio, ir)[:n]
        audio = wet * math.sqrt(_power(audio) / _power(wet))
    if rng.random() < a["noise_p"]:
        g = torch.Generator().manual_seed(rng.randrange(1 << 30))
        noise = torch.randn(n, generator=g)
        if rng.random() < 0.5:  # pink: 1/f power
            spec = torch.fft.rfft(noise)
            f = torch.arange(spec.shape[0]).clamp(min=1).float()
            noise = torch.fft.irfft(spec / f.sqrt(), n=n)
        speech = audio[audio.abs() > 0.02 * float(audio.abs().max() + 1e-9)]
        level = _power(speech) if speech.numel() else _power(audio)
        snr = rng.uniform(*a["snr_db"])
        audio = audio + noise * math.sqrt(level / _power(noise) / 10 ** (snr / 10))
    r = rng.random()
    if r < a["telephone_p"] + a["lowpass_p"]:
        spec = torch.fft.rfft(audio)
        freqs = torch.fft.rfftfreq(n, 1 / sr)
        if r < a["telephone_p"]:
            keep = (freqs >= 300) & (freqs <= 3400)
        else:
            keep = freqs <= rng.uniform(3500, 6000)
        audio = torch.fft.irfft(spec * keep, n=n)
    peak = float(audio.abs().max()) + 1e-9
    gain_db = rng.uniform(*a["gain_db"])
    audio = (audio / peak * 0.5 * 10 ** (gain_db / 20)).clamp(-1.0, 1.0)
    return audio, stretch


def make_batches(lengths: Sequence[int], batch_seconds: float, max_seconds: float,
                 rng: random.Random) -> list[list[int]]:
    """Utterance indices grouped by similar length, about ``batch_seconds`` of audio per batch, shuffled."""
    order = sorted(range(len(lengths)), key=lambda i: (lengths[i], rng.random()))
    batches: list[list[int]] = []
    cur: list[int] = []
    for i in order:
        longest = min(max(lengths[j] for j in [*cur, i]) / 16000, max_seconds)
        if cur and longest * (len(cur) + 1) > batch_seconds:
            batches.append(cur)
            cur = []
        cur.append(i)
    if cur:
        batches.append(cur)
    rng.shuffle(batches)
    return batches


def collate(corpus: Corpus, idx: Sequence[int], rng: random.Random, tcfg: dict[str, Any],
            acfg: dict[str, Any] | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[torch.Tensor]]:
    audios, labels = [], []
    max_n = int(tcfg["max_seconds"] * 16000)
    for i in idx:
        x = torch.from_numpy(corpus.audio[i])
        stretch = 1.0
        if acfg is not None:
            x, stretch = augment(x, rng, acfg)
        y = torch.from_numpy(unit_targets(corpus.spans[i], n_frames(x.shape[0]), stretch))
        if x.shape[0] > max_n:  # random crop on the frame grid
            f0 = rng.randrange(0, (x.shape[0] - max_n) // 160 + 1)
            x = x[f0 * 160 : f0 * 160 + max_n]
            y = y[f0 : f0 + n_frames(max_n)]
        audios.append(x)
        labels.append(y)
    n = max(x.shape[0] for x in audios)
    t = n_frames(n)
    audio = torch.zeros(len(idx), n)
    target = torch.full((len(idx), t), -100, dtype=torch.long)
    frames = torch.zeros(len(idx), dtype=torch.long)
    for k, (x, y) in enumerate(zip(audios, labels, strict=True)):
        audio[k, : x.shape[0]] = x
        m = min(len(y), t)
        target[k, :m] = y[:m]
        frames[k] = m
    ctc = []
    for k in range(len(idx)):
        y = target[k, : frames[k]]
        runs = y[torch.cat([torch.tensor([True]), y[1:] != y[:-1]])]
        ctc.append(runs[runs != 0] - 1)  # CTC classes: phones without silence, 0-based; blank last
    return audio, target, frames, ctc


# --- validation --------------------------------------------------------------------------------------------------


def align_with_logp(logp: np.ndarray, words: list[list[str]], duration: float,
                    silence_penalty: float) -> tuple[TimedPhoneme, ...]:
    graph = neural.state_graph(words)
    n = min(len(logp), int(math.ceil(duration / neural.FRAME)))
    path = neural.viterbi(logp[:n], graph, silence_penalty=silence_penalty)
    return () if path is None else neural.path_to_phonemes(path, graph, duration)


def mean_scores(scores: Sequence[Any]) -> dict[str, float]:
    return {m: float(np.mean([getattr(s, m) for s in scores])) for m in METRICS}


@torch.no_grad()
def dev_logps(net: AlignerNet, corpus: Corpus, indices: Sequence[int]) -> list[np.ndarray]:
    net.eval()
    out = []
    for i in indices:
        audio = torch.from_numpy(corpus.audio[i]).unsqueeze(0)
        out.append(torch.log_softmax(net.head(net.encode(audio)), -1)[0].numpy())
    net.train()
    return out


def evaluate_logps(logps: Sequence[np.ndarray], corpus: Corpus, indices: Sequence[int], words: dict[int, Any],
                   silence_penalty: float) -> dict[str, float]:
    scores, correct, total = [], 0, 0
    for logp, i in zip(logps, indices, strict=True):
        duration = len(corpus.audio[i]) / 16000
        pred = align_with_logp(logp, words[i], duration, silence_penalty)
        scores.append(score(corpus.reference(i), pred, duration))
        y = unit_targets(corpus.spans[i], len(logp))
        correct += int((logp.argmax(-1) == y).sum())
        total += len(y)
    out = mean_scores(scores)
    out["frame_accuracy_phones"] = correct / max(total, 1)
    return out


# --- tracking ----------------------------------------------------------------------------------------------------


class Tracker:
    """MLflow when installed (local ``mlruns/``), else JSON lines next to the checkpoints."""

    def __init__(self, run_dir: Path, run_name: str, run_id: str | None) -> None:
        self.fallback = run_dir / "metrics.jsonl"
        try:
            import mlflow
        except ImportError:
            self.mlflow = None
            self.run_id = run_id or f"local-{run_name}"
            print("mlflow is not installed: logging to", self.fallback)
            return
        self.mlflow = mlflow
        from avatarium_lab.tracking import use_experiment

        use_experiment("lipsync-aligner")
        run = mlflow.start_run(run_id=run_id) if run_id and not run_id.startswith("local-") else \
            mlflow.start_run(run_name=run_name)
        self.run_id = run.info.run_id

    def _write(self, kind: str, payload: dict[str, Any]) -> None:
        with self.fallback.open("a", encoding="utf-8") as fh:
            fh.write(json.dumps({"kind": kind, "time": time.time(), **payload}, ensure_ascii=False) + "\n")

    def params(self, params: dict[str, Any]) -> None:
        if self.mlflow:
            self.mlflow.log_params(params)
        self._write("params", params)

    def metrics(self, metrics: dict[str, float], step: int) -> None:
        if self.mlflow:
            self.mlflow.log_metrics(metrics, step=step)
        self._write("metrics", {"step": step, **metrics})

    def artifact(self, path: Path) -> None:
        if self.mlflow:
            self.mlflow.log_artifact(str(path))
        self._write("artifact", {"path": str(path)})

    def close(self) -> None:
        if self.mlflow:
            self.mlflow.end_run()


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flatten(v, key + "."))
        else:
            out[key] = json.dumps(v) if isinstance(v, list) else v
    return out


# --- export ------------------------------------------------------------------------------------------------------


def export_onnx(net: AlignerNet, path: Path, opset: int) -> None:
    """Export raw audio -> log-posteriors with the TorchScript exporter (dynamic audio length)."""
    from torch.onnx._internal.torchscript_exporter import onnx_proto_utils

    try:
        import onnx  # noqa: F401
    except ImportError:
        # The exporter builds the ModelProto in C++; the `onnx` package is only used to splice in onnxscript
        # functions, which this model has none of. Without it, skip that step instead of failing.
        onnx_proto_utils._add_onnxscript_fn = lambda model_bytes, custom_opsets: model_bytes
    model = ExportNet(net).eval()
    buf = io.BytesIO()
    with torch.no_grad():
        torch.onnx.export(model, (torch.randn(1, 32000) * 0.1,), buf, dynamo=False, opset_version=opset,
                          input_names=["audio"], output_names=["logp"],
                          dynamic_axes={"audio": {1: "samples"}, "logp": {1: "frames"}}, do_constant_folding=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(buf.getvalue())


def check_onnx(net: AlignerNet, path: Path) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    worst = 0.0
    for n in (7000, 16000 * 3 + 37):
        audio = torch.randn(1, n) * 0.1
        with torch.no_grad():
            ref = ExportNet(net).eval()(audio).numpy()
        got = sess.run(None, {"audio": audio.numpy()})[0]
        if got.shape != ref.shape:
            raise SystemExit(f"ONNX output shape {got.shape} != torch {ref.shape}")
        worst = max(worst, float(np.abs(got - ref).max()))
    return worst


# --- main --------------------------------------------------------------------------------------------------------


def set_seed(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", type=Path, default=Path(__file__).with_name("config.yaml"))
    parser.add_argument("--epochs", type=int, help="override train.epochs")
    parser.add_argument("--export-only", action="store_true", help="export and evaluate the best checkpoint")
    parser.add_argument("--train-limit", type=int, help="use only the first N training utterances (smoke runs)")
    args = parser.parse_args(argv)

    cfg = yaml.safe_load(args.config.read_text(encoding="utf-8"))
    if args.epochs:
        cfg["train"]["epochs"] = args.epochs
    torch.set_num_threads(int(cfg["threads"]))
    set_seed(int(cfg["seed"]))
    manifest = ROOT / cfg["data"]["manifest"]
    run_dir = ROOT / cfg["export"]["checkpoints"] / cfg["run_name"]
    run_dir.mkdir(parents=True, exist_ok=True)
    last_path, best_path = run_dir / "last.pt", run_dir / "best.pt"

    net = AlignerNet(cfg["features"], cfg["model"])
    diff = check_features(net.logmel, cfg["features"])
    print(f"log-mel vs torchaudio MelSpectrogram: max |diff| {diff:.2e}")
    if diff > 1e-3:
        raise SystemExit("LogMel does not match torchaudio's MelSpectrogram")
    n_params = sum(p.numel() for p in net.parameters())
    print(f"model: {n_params / 1e6:.2f} M parameters")

    dev = Corpus(manifest, cfg["data"]["dev_split"], cfg["labels"])
    dev_words = {i: phonemize(r["text"]) for i, r in enumerate(dev.rows)}
    dev_rng = random.Random(7)
    dev_subset = sorted(dev_rng.sample(range(len(dev)), min(len(dev), int(cfg["data"]["dev_eval_utterances"]))))

    state: dict[str, Any] = {"epoch": 0, "step": 0, "best": -1.0, "run_id": None, "train_seconds": 0.0}
    tcfg = cfg["train"]
    opt = torch.optim.AdamW(net.parameters(), lr=float(tcfg["lr"]), weight_decay=float(tcfg["weight_decay"]))
    if last_path.exists():
        ckpt = torch.load(last_path, map_location="cpu", weights_only=False)
        net.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        state = ckpt["state"]
        random.setstate(ckpt["random"])
        np.random.set_state(ckpt["numpy"])
        torch.set_rng_state(ckpt["torch"])
        print(f"resuming after epoch {state['epoch']} (step {state['step']})")

    tracker = Tracker(run_dir, cfg["run_name"], state["run_id"])
    state["run_id"] = tracker.run_id
    if state["epoch"] == 0 and not args.export_only:
        tracker.params({**flatten(cfg), "model.parameters": n_params})

    if not args.export_only and state["epoch"] < int(tcfg["epochs"]):
        train = Corpus(manifest, cfg["data"]["train_split"], cfg["labels"], args.train_limit)
        if state["epoch"] == 0:
            # Feature scale: one global std per mel bin from a sample of clean training utterances.
            with torch.no_grad():
                feats = torch.cat([net.features(torch.from_numpy(train.audio[i]).unsqueeze(0))[0]
                                   for i in range(0, len(train), max(1, len(train) // 200))])
                net.scale.copy_(1.0 / feats.std(dim=0).clamp(min=1e-3))
        lengths = [len(a) for a in train.audio]
        epochs = int(tcfg["epochs"])
        steps_per_epoch = len(make_batches(lengths, tcfg["batch_seconds"], tcfg["max_seconds"], random.Random(0)))
        total_steps = epochs * steps_per_epoch

        def lr_at(step: int) -> float:
            warm = int(tcfg["warmup_steps"])
            if step < warm:
                return float(tcfg["lr"]) * (step + 1) / warm
            progress = (step - warm) / max(1, total_steps - warm)
            return float(tcfg["lr"]) * (0.02 + 0.98 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))

        ctc_loss = nn.CTCLoss(blank=N_PHONES - 1, zero_infinity=True)  # CTC classes: 42 phones + blank
        rng = random.Random(int(cfg["seed"]) + 1000 * state["epoch"])
        while state["epoch"] < epochs:
            epoch = state["epoch"] + 1
            t0 = time.time()
            net.train()
            batches = make_batches(lengths, tcfg["batch_seconds"], tcfg["max_seconds"], rng)
            sums = {"loss": 0.0, "ce": 0.0, "ctc": 0.0, "acc": 0.0}
            bar = tqdm(batches, desc=f"epoch {epoch}/{epochs}", unit="batch")
            for k, idx in enumerate(bar):
                audio, target, frames, ctc_targets = collate(train, idx, rng, tcfg, cfg["augment"])
                for g in opt.param_groups:
                    g["lr"] = lr_at(state["step"])
                logits, ctc_logits = net(audio, frames)
                t = min(logits.shape[1], target.shape[1])
                ce = F.cross_entropy(logits[:, :t].reshape(-1, N_PHONES), target[:, :t].reshape(-1),
                                     ignore_index=-100, label_smoothing=float(tcfg["label_smoothing"]))
                loss = ce
                ctc_value = torch.zeros(())
                if tcfg["ctc_weight"] > 0:
                    lp = torch.log_softmax(ctc_logits, -1).transpose(0, 1)  # [T, B, C]
                    flat = torch.cat(ctc_targets) if ctc_targets else torch.zeros(0, dtype=torch.long)
                    ctc_value = ctc_loss(lp, flat, frames, torch.tensor([len(c) for c in ctc_targets]))
                    loss = loss + float(tcfg["ctc_weight"]) * ctc_value
                opt.zero_grad(set_to_none=True)
                loss.backward()
                nn.utils.clip_grad_norm_(net.parameters(), float(tcfg["grad_clip"]))
                opt.step()
                state["step"] += 1
                valid = target[:, :t] != -100
                acc = float((logits[:, :t].argmax(-1) == target[:, :t])[valid].float().mean())
                for key, v in (("loss", float(loss)), ("ce", float(ce)), ("ctc", float(ctc_value)), ("acc", acc)):
                    sums[key] += v
                bar.set_postfix(loss=f"{sums['loss'] / (k + 1):.3f}", acc=f"{sums['acc'] / (k + 1):.3f}")
            train_time = time.time() - t0
            state["train_seconds"] += train_time
            logps = dev_logps(net, dev, dev_subset)
            metrics = evaluate_logps(logps, dev, dev_subset, dev_words, 0.0)
            record = {f"train_{k}": v / len(batches) for k, v in sums.items()}
            record.update({f"dev_{k}": v for k, v in metrics.items()})
            record.update(lr=lr_at(state["step"]), epoch_seconds=train_time)
            tracker.metrics(record, step=epoch)
            print(f"epoch {epoch}: " + ", ".join(f"{k} {v:.4g}" for k, v in record.items()))
            state["epoch"] = epoch
            if metrics["frame_accuracy_rhubarb"] > state["best"]:
                state["best"] = metrics["frame_accuracy_rhubarb"]
                state["best_epoch"] = epoch
                torch.save({"model": net.state_dict(), "epoch": epoch, "metrics": metrics}, best_path)
            torch.save({"model": net.state_dict(), "optimizer": opt.state_dict(), "state": state,
                        "random": random.getstate(), "numpy": np.random.get_state(),
                        "torch": torch.get_rng_state()}, last_path)
            rng = random.Random(int(cfg["seed"]) + 1000 * state["epoch"])  # resumable: next epoch's RNG by number
        del train

    # --- export and final evaluation ---
    best = torch.load(best_path, map_location="cpu", weights_only=False)
    net.load_state_dict(best["model"])
    net.eval()
    print(f"exporting epoch {best['epoch']} (dev rhubarb {best['metrics']['frame_accuracy_rhubarb']:.4f})")
    onnx_path = ROOT / cfg["export"]["onnx"]
    export_onnx(net, onnx_path, int(cfg["export"]["opset"]))
    worst = check_onnx(net, onnx_path)
    print(f"onnx vs torch: max |diff| {worst:.2e}; {onnx_path.stat().st_size / 1e6:.2f} MB")

    # Tune the silence penalty on the full dev set with the exported model's own posteriors.
    all_dev = list(range(len(dev)))
    from avatarium_lab.lipsync.neural import NeuralAligner

    sha = hashlib.sha256(onnx_path.read_bytes()).hexdigest()
    meta_path = onnx_path.with_suffix(".json")
    meta = {"phones": list(neural.PHONES), "sha256": sha, "decode": {"silence_penalty": 0.0}}
    meta_path.write_text(json.dumps(meta), encoding="utf-8")
    aligner = NeuralAligner(model_path=onnx_path)
    dev_lp = [aligner.log_posteriors(dev.audio[i], 16000) for i in all_dev]
    tuning = {}
    for pen in cfg["decode"]["silence_penalties"]:
        tuning[pen] = evaluate_logps(dev_lp, dev, all_dev, dev_words, float(pen))
        print(f"dev silence_penalty {pen}: " + ", ".join(f"{k} {v:.4f}" for k, v in tuning[pen].items()))
    best_pen = max(tuning, key=lambda p: tuning[p]["frame_accuracy_rhubarb"])

    held = Corpus(manifest, cfg["data"]["heldout_split"], cfg["labels"])
    aligner = NeuralAligner(model_path=onnx_path, silence_penalty=float(best_pen))
    scores, by_engine, elapsed, audio_seconds = [], {}, 0.0, 0.0
    for i, row in enumerate(tqdm(held.rows, desc="held-out", leave=False)):
        t0 = time.perf_counter()
        pred = aligner.align(held.audio[i], 16000, row["text"])
        elapsed += time.perf_counter() - t0
        audio_seconds += row["duration"]
        s = score(held.reference(i), pred, row["duration"])
        scores.append(s)
        by_engine.setdefault(row["engine"], []).append(s)
    heldout = {**mean_scores(scores), "rtf": elapsed / audio_seconds, "utterances": len(scores)}
    heldout_engines = {e: mean_scores(v) for e, v in sorted(by_engine.items())}
    print("held-out:", json.dumps(heldout, indent=1))
    print("held-out by engine:", json.dumps(heldout_engines, indent=1))

    meta = {
        "format": "avatarium-lab neural aligner v1",
        "description": "raw 16 kHz mono float32 audio [1, N] -> log-posteriors [1, T, phones] at 100 frames/s; "
                       "frame t covers [t, t+1) * 10 ms; the first ceil(N / 160) frames cover the audio",
        "inputs": {"audio": "float32 [1, samples] at 16 kHz"}, "outputs": {"logp": "float32 [1, frames, phones]"},
        "phones": list(neural.PHONES),
        "features": {**cfg["features"], "frontend": "in the graph: Hann-windowed DFT conv + torchaudio mel "
                     "filter bank (htk, no norm), log, per-utterance mean subtraction, per-bin scale",
                     "matches": "torchaudio.transforms.MelSpectrogram(center=False) on input padded "
                                f"{net.logmel.left} left", "max_abs_diff_vs_torchaudio": diff},
        "model": {**cfg["model"], "parameters": n_params, "epoch": best["epoch"]},
        "training": {k: cfg[k] for k in ("seed", "labels", "train", "augment", "data")} | {
            "train_seconds": state.get("train_seconds"), "epochs_run": state.get("epoch"),
            "mlflow_run_id": tracker.run_id, "torch": torch.__version__, "torchaudio": torchaudio.__version__},
        "decode": {"silence_penalty": float(best_pen), "dev_tuning": {str(k): v for k, v in tuning.items()}},
        "metrics": {"dev": tuning[best_pen], "heldout": heldout, "heldout_by_engine": heldout_engines},
        "onnx_max_abs_diff_vs_torch": worst,
        "sha256": sha,
    }
    meta_path.write_text(json.dumps(meta, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    tracker.metrics({f"final_dev_{k}": v for k, v in tuning[best_pen].items()}
                    | {f"heldout_{k}": v for k, v in heldout.items()}, step=int(state.get("epoch", 0)))
    tracker.artifact(onnx_path)
    tracker.artifact(meta_path)
    tracker.close()
    print(f"wrote {onnx_path} and {meta_path}; MLflow run {tracker.run_id}")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())

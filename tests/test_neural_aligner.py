"""The neural aligner's pieces: phone units, the Viterbi forced alignment, and the committed model's integrity."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from avatarium_lab.errors import LipSyncError
from avatarium_lab.lipsync import neural
from avatarium_lab.lipsync.neural import PHONE_INDEX, NeuralAligner, path_to_phonemes, state_graph, units, viterbi


def test_units_split_merged_symbols_and_keep_diphthongs() -> None:
    assert [(u.phone, u.ipa, u.weight) for u in units("ˈɑːɹ")] == [("ɑ", "ɑː", 2.0), ("ɹ", "ɹ", 1.0)]
    assert [u.phone for u in units("aɪə")] == ["aɪ", "ə"]
    assert [u.phone for u in units("tʃ")] == ["tʃ"]
    assert [u.phone for u in units("ɐ")] == ["ə"]  # aliases to the nearest class
    assert units("ˈ") == () and units("") == ()


def test_state_graph_has_optional_silences_between_words() -> None:
    graph = state_graph([["h", "ə"], ["l", "oʊ"]])
    assert list(graph.optional) == [True, False, False, True, False, False, True]
    assert graph.ipa[1:3] == ("h", "ə")


def posteriorgram(segments: list[tuple[str, int]], noise: float = 0.05, seed: int = 0) -> np.ndarray:
    """Log-posteriors that favour each segment's phone for its frames."""
    rng = np.random.default_rng(seed)
    rows = []
    for phone, frames in segments:
        for _ in range(frames):
            p = rng.uniform(0, noise, len(neural.PHONES))
            p[PHONE_INDEX[phone]] = 1.0
            rows.append(np.log(p / p.sum()))
    return np.array(rows)


def test_viterbi_recovers_the_boundaries_of_a_clear_posteriorgram() -> None:
    segments = [("sil", 10), ("h", 6), ("ə", 8), ("sil", 5), ("l", 7), ("oʊ", 15), ("sil", 9)]
    graph = state_graph([["h", "ə"], ["l", "oʊ"]])
    path = viterbi(posteriorgram(segments), graph)
    phonemes = path_to_phonemes(path, graph, duration=0.6)
    assert [p.symbol for p in phonemes] == ["h", "ə", "l", "oʊ"]
    assert [(round(p.start, 2), round(p.end, 2)) for p in phonemes] == [(0.1, 0.16), (0.16, 0.24), (0.29, 0.36),
                                                                       (0.36, 0.51)]


def test_viterbi_skips_silences_that_are_not_there_and_fails_on_too_few_frames() -> None:
    graph = state_graph([["m", "ɑ"], ["p", "ə"]])
    path = viterbi(posteriorgram([("m", 4), ("ɑ", 6), ("p", 3), ("ə", 5)]), graph)
    assert [graph.ipa[s] for s in dict.fromkeys(path.tolist())] == ["m", "ɑ", "p", "ə"]
    assert viterbi(posteriorgram([("m", 3)]), graph) is None


def test_the_committed_model_is_checked_against_its_metadata(tmp_path: Path) -> None:
    meta = json.loads(neural.META_PATH.read_text())
    assert meta["sha256"] == neural.file_sha256(neural.MODEL_PATH)
    assert meta["phones"] == list(neural.PHONES)
    assert neural.MODEL_PATH.stat().st_size < 8_000_000, "the weights stay a few MB"
    assert {"train", "augment", "labels"} <= set(meta["training"]) and "heldout" in meta["metrics"]
    copy = tmp_path / "aligner.onnx"
    shutil.copy(neural.MODEL_PATH, copy)
    (tmp_path / "aligner.json").write_text(json.dumps({**meta, "sha256": "0" * 64}))
    with pytest.raises(LipSyncError, match="sha256"):
        NeuralAligner(model_path=copy)
    with pytest.raises(LipSyncError, match="missing"):
        NeuralAligner(model_path=tmp_path / "nope.onnx")


def test_inference_does_not_import_torch() -> None:
    import subprocess
    import sys

    code = ("import sys, numpy as np\nfrom avatarium_lab.lipsync.aligners import get_aligner\n"
            "a = get_aligner('neural')\nt = np.arange(16000) / 16000\n"
            "a.align((0.3 * np.sin(2 * np.pi * 200 * t)).astype('float32'), 16000, 'ah')\n"
            "print('torch' in sys.modules, 'torchaudio' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.split() == ["False", "False"]

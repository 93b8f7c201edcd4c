"""The lip-sync scorer: a reference against itself is perfect; a 40 ms shift is a 40 ms onset error."""

from __future__ import annotations

import pytest

from avatarium_lab.events import TimedPhoneme
from avatarium_lab.lipsync.scoring import frame_labels, score

REF = (
    TimedPhoneme("h", 0.10, 0.18), TimedPhoneme("ɛ", 0.18, 0.30), TimedPhoneme("l", 0.30, 0.38),
    TimedPhoneme("oʊ", 0.38, 0.60), TimedPhoneme("m", 0.80, 0.92), TimedPhoneme("ɑ", 0.92, 1.10),
    TimedPhoneme("p", 1.10, 1.20), TimedPhoneme("s", 1.20, 1.40),
)


def shifted(items, dt):
    return tuple(TimedPhoneme(p.symbol, p.start + dt, p.end + dt) for p in items)


def test_reference_scored_against_itself_is_perfect() -> None:
    s = score(REF, REF, 1.6)
    assert (s.frame_accuracy_oculus, s.frame_accuracy_rhubarb, s.pp_recall, s.pp_precision) == (1, 1, 1, 1)
    assert s.onset_mae_ms == 0 and s.frames == 160 and s.matched_onsets > 5


@pytest.mark.parametrize("dt", [0.04, -0.04])
def test_a_40_ms_shift_is_a_40_ms_onset_error(dt: float) -> None:
    s = score(REF, shifted(REF, dt), 1.6)
    assert s.onset_mae_ms == pytest.approx(40.0, abs=1e-6)
    assert s.frame_accuracy_oculus < 1.0


def test_missing_closures_hurt_pp_recall_and_wrong_ones_precision() -> None:
    no_pp = tuple(p for p in REF if p.symbol not in ("m", "p"))
    s = score(REF, no_pp, 1.6)
    assert s.pp_recall == 0.0 and s.pp_precision == 0.0
    extra = (*REF, TimedPhoneme("b", 1.40, 1.55))
    s = score(REF, extra, 1.6)
    assert s.pp_recall == 1.0 and s.pp_precision == pytest.approx(22 / 37, abs=0.02)


def test_frame_labels_cover_the_grid_with_rest_in_gaps() -> None:
    labels = frame_labels(REF, 1.6)
    assert len(labels) == 160 and labels[0] == "sil" and labels[65] == "sil" and labels[85] == "PP"
    rhubarb = frame_labels(REF, 1.6, "rhubarb")
    assert rhubarb[0] == "X" and rhubarb[85] == "A"

"""Re-packaging a library character as a Ready Player Me export and as a VRM 1.0 model keeps every capability."""

from __future__ import annotations

import pytest

from avatarium_lab.avatar import load_avatar
from avatarium_lab.avatar.check import check_avatar
from avatarium_lab.avatar.convert import to_rpm_export, to_vrm1
from avatarium_lab.avatar.testing_glb import split_glb


@pytest.fixture(scope="module")
def kenji() -> bytes:
    return load_avatar("kenji")


def test_rpm_export_is_detected_as_rpm_with_everything(kenji: bytes) -> None:
    data = to_rpm_export(kenji)
    report = check_avatar(data)
    assert report.rig == "rpm" and report.mapping.face_preset == "rpm"
    assert (report.lipsync, report.emotions, report.blinks, report.gestures) == ("full",) * 4
    doc, blob = split_glb(data)
    assert {"Wolf3D_Head", "Wolf3D_Body", "Armature"} <= {n.get("name") for n in doc["nodes"]}
    assert blob == split_glb(kenji)[1]  # geometry untouched


def test_rpm_export_without_morph_targets_says_how_to_re_export(kenji: bytes) -> None:
    report = check_avatar(to_rpm_export(kenji, morph_targets=False))
    assert report.rig == "rpm" and report.lipsync == "none" and report.counts.morph_targets == 0
    assert any("morphTargets=ARKit,Oculus Visemes" in issue for issue in report.issues)
    assert report.gestures == "full"  # the skeleton is still there


def test_vrm1_drives_unnamed_morphs_through_its_expressions(kenji: bytes) -> None:
    report = check_avatar(to_vrm1(kenji, title="Kenji"))
    assert report.format == "vrm1" and report.rig == "vrm" and report.counts.morph_names == 0
    assert {"aa", "ih", "ou", "ee", "oh", "blink", "happy", "sad", "angry", "surprised", "relaxed"} <= set(
        report.vrm_expressions)
    assert (report.lipsync, report.emotions, report.blinks, report.gestures) == ("full",) * 4
    assert report.visemes["viseme_aa"] == "direct"  # the VRM "aa" expression itself
    assert report.vrm_meta.get("title") == "Kenji"
    aa = report.mapping.visemes["viseme_aa"].terms[0].drives
    assert aa and all(d.name is None for d in aa)  # by index only

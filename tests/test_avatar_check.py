"""Custom avatars: validation (check_avatar), capability reports, rig mapping presets and URL import.

The synthetic files come from ``avatarium_lab.avatar.testing_glb``; broken files are made by editing valid ones
(their JSON through ``rewrite_json``, or their bytes). URL imports run against a Starlette app on a loopback
FakeServer, with a temporary cache directory.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import struct
import time
import tracemalloc
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pygltflib
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse
from starlette.routing import Route

from avatarium_lab.avatar import MORPH_TARGETS, VISEMES, avatar_path
from avatarium_lab.avatar import importers as imp
from avatarium_lab.avatar.check import (
    MAX_MESHES,
    MAX_NODES,
    AvatarCheckError,
    AvatarReport,
    AvatarTooLarge,
    BadChunk,
    BadJson,
    BadReference,
    ExternalReference,
    InvalidGltf,
    LengthMismatch,
    NodeCycle,
    NotAGlb,
    OutOfBounds,
    TooComplex,
    TruncatedAvatar,
    UnsupportedVersion,
    check_avatar,
)
from avatarium_lab.avatar.rigmap import ARKIT_52, RigMapError, load_rigmap, presets, resolve, three_node_name
from avatarium_lab.avatar.testing_glb import (
    RPM_BONE_NAMES,
    VROID_MORPHS,
    make_arkit_only,
    make_cc,
    make_glb,
    make_mixamo,
    make_rpm_like,
    make_vrm0,
    make_vrm1,
    pack_glb,
    rewrite_json,
    skeleton,
    split_glb,
)
from avatarium_lab.errors import AvatarError
from avatarium_lab.testing.fake_vendors import FakeServer

MB = 1024 * 1024


@pytest.fixture(scope="module")
def files() -> dict[str, bytes]:
    return {
        "rpm": make_rpm_like(),
        "rpm_bare": make_rpm_like(with_morphs=False),
        "rpm_default": make_rpm_like(with_morphs=False, default_morphs=True),
        "arkit": make_arkit_only(),
        "mixamo": make_mixamo(),
        "cc": make_cc(),
        "vrm0": make_vrm0(),
        "vrm1": make_vrm1(),
        "small": make_glb(morphs=["jawOpen", "viseme_aa"], meshes=["Head", "Body"], bones=["Hips", "Neck", "Head"]),
    }


def _shapes(report: AvatarReport, group: str, key: str) -> dict[str, float]:
    return getattr(report.mapping, group)[key].shapes()


# --------------------------------------------------------------------------------------------------------------
# Reports of valid files
# --------------------------------------------------------------------------------------------------------------


def test_aria_library_avatar_has_full_oculus_lipsync() -> None:
    report = check_avatar(avatar_path("aria"))
    assert (report.format, report.rig, report.lipsync) == ("glb", "oculus", "full")
    assert set(report.visemes.values()) == {"direct"}
    assert report.emotions == "full" and report.blinks == "full"
    assert report.name == "aria" and report.counts.meshes == 4
    assert report.counts.morph_targets == len(MORPH_TARGETS)
    # the mapping points at the real mesh and morph index: Face is mesh 1, viseme_aa its 11th target
    (term,) = report.mapping.visemes["viseme_aa"].terms
    assert term.shape == "viseme_aa"
    assert {(d.mesh, d.index, d.name) for d in term.drives} == {(1, VISEMES.index("viseme_aa"), "viseme_aa")}
    # a skeleton with Mixamo / Ready Player Me names: nods, tilts and shrugs move bones, nothing to report
    assert report.gestures == "full" and report.counts.skins == 1
    assert report.bones["head"] == "Head" and report.bones["leftUpperArm"] == "LeftArm"
    assert report.issues == ()
    json.dumps(report.as_dict())
    assert "lip sync full" in str(report)


def test_files_built_for_tests_are_valid_gltf(files: dict[str, bytes]) -> None:
    for key, data in files.items():
        gltf = pygltflib.GLTF2.load_from_bytes(data)
        assert gltf.asset.version == "2.0", key
        for acc in gltf.accessors:
            view = gltf.bufferViews[acc.bufferView]
            size = {5121: 1, 5123: 2, 5125: 4, 5126: 4}[acc.componentType] * {
                "SCALAR": 1, "VEC3": 3, "VEC4": 4, "MAT4": 16}[acc.type]
            assert (acc.byteOffset or 0) + acc.count * size <= view.byteLength, key
        for mesh in gltf.meshes:
            pos = gltf.accessors[mesh.primitives[0].attributes.POSITION]
            assert pos.min is not None and pos.max is not None
        for skin in gltf.skins:
            ibm = gltf.accessors[skin.inverseBindMatrices]
            assert (ibm.type, ibm.count) == ("MAT4", len(skin.joints))


def test_rpm_with_morphs_is_full(files: dict[str, bytes]) -> None:
    report = check_avatar(files["rpm"], name="rpm")
    assert (report.rig, report.lipsync, report.emotions, report.blinks, report.gestures) == (
        "rpm", "full", "full", "full", "full")
    assert report.mapping.face_preset == "rpm" and report.mapping.bone_preset == "rpm"
    assert len(report.arkit_shapes) == 52
    assert report.bones["head"] == "Head" and report.bones["neck"] == "Neck"
    assert report.bones["leftUpperArm"] == "LeftArm" and report.bones["rightLowerArm"] == "RightForeArm"
    # one shape name drives the head and the teeth
    doc, _ = split_glb(files["rpm"])
    meshes = {m["name"]: i for i, m in enumerate(doc["meshes"])}
    drives = report.mapping.visemes["viseme_PP"].terms[0].drives
    assert {d.mesh for d in drives} == {meshes["Wolf3D_Head"], meshes["Wolf3D_Teeth"]}
    assert not any("re-export" in i for i in report.issues)


def test_rpm_without_morphs_says_how_to_re_export(files: dict[str, bytes]) -> None:
    report = check_avatar(files["rpm_bare"])
    assert (report.rig, report.lipsync, report.emotions, report.blinks) == ("rpm", "none", "none", "none")
    assert report.gestures == "full"
    hint = [i for i in report.issues if "morphTargets=ARKit,Oculus Visemes" in i]
    assert hint and hint[0].startswith("exported without morph targets: re-export from Ready Player Me")
    assert any("lip sync is off" in i for i in report.issues)


def test_rpm_default_morph_set_gives_reduced_lipsync_with_each_approximation(files: dict[str, bytes]) -> None:
    report = check_avatar(files["rpm_default"])
    assert report.lipsync == "reduced" and report.blinks == "reduced"
    assert report.visemes["viseme_aa"] == "approx"
    assert "no viseme_aa: the open vowel (a as in 'car') will use mouthOpen 0.7 instead" in report.issues
    assert "no viseme_PP: closed-lips sounds (p, b, m) will use the closed mouth (all weights 0) instead" in (
        report.issues)
    assert any("without the Oculus visemes (viseme_*) or the 52 ARKit blendshapes" in i for i in report.issues)


def test_rpm_missing_some_visemes_names_them_and_maps_them_through_arkit() -> None:
    gone = ("viseme_PP", "viseme_FF")
    face = tuple(v for v in VISEMES if v not in gone) + ARKIT_52
    data = make_glb(meshes={"Wolf3D_Head": face, "Wolf3D_Body": ()}, bones=skeleton(RPM_BONE_NAMES))
    report = check_avatar(data)
    assert report.rig == "rpm" and report.lipsync == "full"
    assert report.visemes["viseme_PP"] == "mapped"
    assert _shapes(report, "visemes", "viseme_PP") == {"mouthClose": 1.0, "mouthPressLeft": 0.5,
                                                       "mouthPressRight": 0.5}
    missing = [i for i in report.issues if "Oculus visemes viseme_PP, viseme_FF" in i]
    assert missing and "ARKit" not in missing[0].split(":")[0]


def test_arkit_only_maps_every_viseme(files: dict[str, bytes]) -> None:
    report = check_avatar(files["arkit"])
    assert (report.rig, report.mapping.face_preset, report.lipsync) == ("arkit", "arkit", "full")
    assert set(report.visemes.values()) == {"mapped"}
    assert _shapes(report, "visemes", "viseme_U") == {"mouthPucker": 0.9, "jawOpen": 0.1}
    assert _shapes(report, "visemes", "viseme_aa") == {"jawOpen": 0.6, "mouthFunnel": 0.15}
    assert _shapes(report, "visemes", "viseme_sil") == {}
    (pucker, _) = report.mapping.visemes["viseme_U"].terms
    assert [(d.mesh, d.index, d.weight) for d in pucker.drives] == [(0, ARKIT_52.index("mouthPucker"), 0.9)]
    assert report.mapping.names()["viseme_I"] == {"mouthSmileLeft": 0.5, "mouthSmileRight": 0.5, "jawOpen": 0.2}


def test_jaw_only_model_is_reduced_and_says_which_shape_stands_in() -> None:
    report = check_avatar(make_glb(morphs=["jawOpen", "eyeBlinkLeft", "eyeBlinkRight"]))
    assert report.lipsync == "reduced" and report.blinks == "full"
    assert report.visemes["viseme_O"] == "approx"
    assert _shapes(report, "visemes", "viseme_O") == {"jawOpen": 0.5}
    assert "no viseme_O: o as in 'go' will use jawOpen 0.5 instead" in report.issues
    assert report.emotions == "none"  # every emotion combo needs smile/frown/brow shapes


def test_vrm0_expressions_map_to_visemes_emotions_and_blinks(files: dict[str, bytes]) -> None:
    report = check_avatar(files["vrm0"])
    assert (report.format, report.rig, report.lipsync) == ("vrm0", "vrm", "full")
    assert report.mapping.face_preset == "vrm" and report.mapping.bone_preset == "vrm"
    doc, _ = split_glb(files["vrm0"])
    face = next(i for i, m in enumerate(doc["meshes"]) if m["name"] == "Face")

    def target(group: str, key: str) -> tuple[str, int, int, str | None]:
        (term,) = getattr(report.mapping, group)[key].terms
        (d,) = term.drives
        return term.shape, d.mesh, d.index, d.name

    assert target("visemes", "viseme_aa") == ("vrm:aa", face, VROID_MORPHS.index("Fcl_MTH_A"), "Fcl_MTH_A")
    assert target("visemes", "viseme_I") == ("vrm:ih", face, VROID_MORPHS.index("Fcl_MTH_I"), "Fcl_MTH_I")
    assert target("visemes", "viseme_U")[3] == "Fcl_MTH_U" and target("visemes", "viseme_O")[3] == "Fcl_MTH_O"
    assert target("emotions", "happy")[3] == "Fcl_ALL_Joy"
    assert target("emotions", "sad")[3] == "Fcl_ALL_Sorrow"
    assert target("emotions", "relaxed")[3] == "Fcl_ALL_Fun"
    assert target("emotions", "surprised")[3] == "Fcl_ALL_Surprised"  # a custom group named Surprised
    assert target("blinks", "blinkLeft")[3] == "Fcl_EYE_Close_L"
    # consonants are approximations from the table: PP is the closed mouth, FF a narrow ih
    assert report.mapping.visemes["viseme_PP"].terms == ()
    assert _shapes(report, "visemes", "viseme_FF") == {"vrm:ih": 0.3}
    assert report.bones["head"] == "J_Bip_C_Head" and report.bones["leftUpperArm"] == "J_Bip_L_UpperArm"
    assert report.vrm_meta["title"] == "Test VRM 0" and report.vrm_meta["license"] == "CC0"
    assert (report.emotions, report.blinks, report.gestures) == ("full", "full", "full")


def test_vrm1_unnamed_morphs_are_mapped_by_node_and_index(files: dict[str, bytes]) -> None:
    report = check_avatar(files["vrm1"])
    assert (report.format, report.rig, report.lipsync) == ("vrm1", "vrm", "full")
    assert report.morph_names == ()  # nothing to drive by name: only the VRM binds reach the morphs
    doc, _ = split_glb(files["vrm1"])
    face_node = next(i for i, n in enumerate(doc["nodes"]) if n["name"] == "Face")
    face_mesh = doc["nodes"][face_node]["mesh"]
    expected = {"viseme_aa": 0, "viseme_I": 1, "viseme_U": 2, "viseme_E": 3, "viseme_O": 4}
    for viseme, index in expected.items():
        (term,) = report.mapping.visemes[viseme].terms
        (d,) = term.drives
        assert (d.mesh, d.index, d.nodes, d.name, d.weight) == (face_mesh, index, (face_node,), None, 1.0)
    happy = report.mapping.emotions["happy"].as_dict()
    assert happy["shapes"][0]["targets"][0] == {"mesh": face_mesh, "index": 8, "weight": 1.0, "name": None,
                                                "nodes": [face_node]}
    assert report.mapping.blinks["blinkRight"].terms[0].drives[0].index == 7
    assert report.bones["neck"] == "J_Bip_C_Neck"
    assert any("driven by index only" in i for i in report.issues)


def test_vrm_bind_past_the_morph_targets_is_a_reference_error(files: dict[str, bytes]) -> None:
    def edit(doc: dict[str, Any]) -> None:
        doc["extensions"]["VRMC_vrm"]["expressions"]["preset"]["aa"]["morphTargetBinds"][0]["index"] = 99

    with pytest.raises(BadReference, match="binds morph target 99 of mesh 0, which has 13 morph targets"):
        check_avatar(rewrite_json(files["vrm1"], edit))

    def edit0(doc: dict[str, Any]) -> None:
        doc["extensions"]["VRM"]["humanoid"]["humanBones"][0]["node"] = 5000

    with pytest.raises(BadReference, match="refers to node 5000"):
        check_avatar(rewrite_json(files["vrm0"], edit0))


def test_vrm_suffix_without_vrm_extension_is_an_issue(tmp_path: Path, files: dict[str, bytes]) -> None:
    path = tmp_path / "model.vrm"
    path.write_bytes(files["arkit"])
    assert any("named .vrm but has no VRM extension" in i for i in check_avatar(path).issues)
    path.write_bytes(files["vrm1"])
    assert check_avatar(path).format == "vrm1"


def test_mixamo_bones(files: dict[str, bytes]) -> None:
    report = check_avatar(files["mixamo"])
    assert (report.rig, report.mapping.bone_preset, report.lipsync, report.gestures) == (
        "mixamo", "mixamo", "none", "full")
    bones = report.mapping.bones
    assert bones["head"].name == "mixamorig:Head" and bones["head"].three_name == "mixamorigHead"
    assert report.bones["neck"] == "mixamorig:Neck" and report.bones["spine"] == "mixamorig:Spine"
    assert report.bones["leftUpperArm"] == "mixamorig:LeftArm" and report.bones["rightUpperArm"] == "mixamorig:RightArm"
    assert bones["head"].node in report.inventory.joints  # type: ignore[union-attr]


def test_bone_names_match_without_prefix_punctuation_or_case() -> None:
    bones = [("mixamorig1:Hips", None), ("mixamorig1:Spine", "mixamorig1:Hips"),
             ("mixamorigNeck", "mixamorig1:Spine"), ("mixamorig_Head", "mixamorigNeck")]
    report = check_avatar(make_glb(morphs=["jawOpen"], bones=bones))
    assert report.bones == {"hips": "mixamorig1:Hips", "spine": "mixamorig1:Spine", "neck": "mixamorigNeck",
                            "head": "mixamorig_Head"}
    assert report.gestures == "reduced"
    assert any("shrugs are not available" in i for i in report.issues)
    head_only = check_avatar(make_glb(morphs=["jawOpen"], bones=["Hips", "Head"]))
    assert "no neck bone: head gestures will rotate the whole head node" in head_only.issues


def test_character_creator(files: dict[str, bytes]) -> None:
    report = check_avatar(files["cc"])
    assert (report.rig, report.mapping.face_preset, report.mapping.bone_preset) == ("cc", "cc", "cc")
    assert (report.lipsync, report.emotions, report.blinks, report.gestures) == ("full", "full", "full", "full")
    assert report.bones["head"] == "CC_Base_Head" and report.bones["neck"] == "CC_Base_NeckTwist01"
    assert report.bones["spine"] == "CC_Base_Waist" and report.bones["leftUpperArm"] == "CC_Base_L_Upperarm"
    assert _shapes(report, "visemes", "viseme_PP") == {"V_Explosive": 1.0}
    assert _shapes(report, "visemes", "viseme_O") == {"V_Tight_O": 0.6, "V_Open": 0.4}
    assert _shapes(report, "blinks", "blinkLeft") == {"Eye_Blink_L": 1.0}


def test_presets_can_be_forced_or_loaded_from_yaml(tmp_path: Path, files: dict[str, bytes]) -> None:
    assert {"oculus", "arkit", "rpm", "mixamo", "cc", "vrm"} <= set(presets())
    report = check_avatar(files["rpm"])
    forced = resolve(report, preset="arkit")
    assert forced.face_preset == "arkit" and forced.bone_preset == "rpm"  # arkit has no bones: chosen automatically
    assert forced.visemes["viseme_aa"].shapes() == {"jawOpen": 0.6, "mouthFunnel": 0.15}
    custom = {"extends": "arkit", "visemes": {"viseme_aa": [{"jawOpen": 0.9}]}, "bones": {"head": ["Neck"]}}
    mapped = resolve(report, preset=custom)
    assert mapped.visemes["viseme_aa"].shapes() == {"jawOpen": 0.9}
    assert mapped.visemes["viseme_U"].shapes() == {"mouthPucker": 0.9, "jawOpen": 0.1}  # inherited
    assert mapped.bones["head"].name == "Neck"
    path = tmp_path / "mine.yaml"
    path.write_text("presets:\n  mine:\n    visemes:\n      viseme_aa: [{jawOpen: 0.8}]\n")
    assert load_rigmap(path).visemes["viseme_aa"] == ((("jawOpen", 0.8),),)
    assert check_avatar(files["rpm"], preset=path).mapping.visemes["viseme_aa"].shapes() == {"jawOpen": 0.8}
    # a preset is also usable on a bare glTF document
    assert resolve(split_glb(files["arkit"])[0]).face_preset == "arkit"
    with pytest.raises(RigMapError, match="unknown rig map preset"):
        resolve(report, preset="nope")
    with pytest.raises(RigMapError, match="weight in"):
        load_rigmap({"visemes": {"viseme_aa": [{"jawOpen": 3}]}})
    with pytest.raises(RigMapError, match="unknown viseme"):
        load_rigmap({"visemes": {"viseme_zz": [{"jawOpen": 1}]}})


def test_three_node_names() -> None:
    assert three_node_name("mixamorig:Left Arm.001") == "mixamorigLeft_Arm001"


# --------------------------------------------------------------------------------------------------------------
# Broken files: a typed error with a message that says what is wrong
# --------------------------------------------------------------------------------------------------------------


def _edit(data: bytes, fn: Any) -> bytes:
    return rewrite_json(data, fn)


def test_every_check_error_is_an_avatar_error() -> None:
    with pytest.raises(AvatarError) as info:
        check_avatar(b"")
    assert info.value.code == "invalid_avatar" and isinstance(info.value, AvatarCheckError)


def test_empty_and_not_gltf() -> None:
    with pytest.raises(NotAGlb, match="empty file"):
        check_avatar(b"")
    with pytest.raises(NotAGlb, match="instead of the magic"):
        check_avatar(b"hello world, not a model at all")
    with pytest.raises(NotAGlb, match=r"glTF JSON \(\.gltf\)"):
        check_avatar(b'{"asset": {"version": "2.0"}}')
    with pytest.raises(NotAGlb, match="HTML"):
        check_avatar(b"<!doctype html><html>Sign in</html>")
    with pytest.raises(NotAGlb, match="ZIP"):
        check_avatar(b"PK\x03\x04" + bytes(40))


def test_wrong_version(files: dict[str, bytes]) -> None:
    data = bytearray(files["small"])
    struct.pack_into("<I", data, 4, 1)
    with pytest.raises(UnsupportedVersion, match="GLB version 1 is not supported"):
        check_avatar(bytes(data))

    def old(doc: dict[str, Any]) -> None:
        doc["asset"]["version"] = "1.0"

    with pytest.raises(UnsupportedVersion, match="asset.version"):
        check_avatar(_edit(files["small"], old))


def test_truncated_at_any_offset(files: dict[str, bytes]) -> None:
    data = files["small"]
    n = len(data)
    for cut in (1, 3, 4, 11, 12, 19, 20, 21, 100, n // 2, n - 8, n - 4, n - 1):
        with pytest.raises(TruncatedAvatar, match="truncated") as info:
            check_avatar(data[:cut])
        if cut >= 12:
            assert f"the header says {n} bytes, the file has {cut}" in info.value.message


def test_declared_length_mismatch(files: dict[str, bytes]) -> None:
    with pytest.raises(LengthMismatch, match=r"the header says \d+ bytes, the file has \d+ \(8 extra"):
        check_avatar(files["small"] + bytes(8))
    data = bytearray(files["small"])
    struct.pack_into("<I", data, 8, len(data) + 400)
    with pytest.raises(TruncatedAvatar, match=f"the header says {len(data) + 400} bytes"):
        check_avatar(bytes(data))


def test_chunk_layout(files: dict[str, bytes]) -> None:
    data = bytearray(files["small"])
    struct.pack_into("<I", data, 12, 1 << 30)
    with pytest.raises(BadChunk, match="chunk 0 .* says 1073741824 bytes, but only"):
        check_avatar(bytes(data))
    jlen = struct.unpack_from("<I", files["small"], 12)[0]
    data = bytearray(files["small"])
    struct.pack_into("<I", data, 20 + jlen, 0xFFFFFFF0)  # the BIN chunk claims 4 GB
    with pytest.raises(BadChunk, match="chunk 1"):
        check_avatar(bytes(data))
    text = b'{"asset":{"version":"2.0"}}'  # 27 bytes: not padded to 4
    unpadded = struct.pack("<4sII", b"glTF", 2, 12 + 8 + 28) + struct.pack("<I4s", 27, b"JSON") + text + b" "
    with pytest.raises(BadChunk, match="not a multiple of 4"):
        check_avatar(unpadded)
    doc, blob = split_glb(files["small"])
    body = json.dumps(doc).encode()
    body += b" " * (-len(body) % 4)
    bin_first = struct.pack("<I4s", len(blob), b"BIN\x00") + blob + struct.pack("<I4s", len(body), b"JSON") + body
    with pytest.raises(BadChunk, match="the first chunk must be JSON"):
        check_avatar(struct.pack("<4sII", b"glTF", 2, 12 + len(bin_first)) + bin_first)


def _raw_json(text: bytes) -> bytes:
    text += b" " * (-len(text) % 4)
    return struct.pack("<4sII", b"glTF", 2, 20 + len(text)) + struct.pack("<I4s", len(text), b"JSON") + text


def test_json_chunk_problems() -> None:
    with pytest.raises(BadJson, match="does not parse"):
        check_avatar(_raw_json(b'{"asset": {"version": "2.0"'))
    with pytest.raises(BadJson, match="is a list, not an object"):
        check_avatar(_raw_json(b"[1, 2, 3]"))
    with pytest.raises(BadJson, match="not UTF-8"):
        check_avatar(_raw_json(b'{"a": "\xff\xfe"}'))
    with pytest.raises(BadJson, match="NaN is not valid JSON"):
        check_avatar(_raw_json(b'{"asset": {"version": "2.0"}, "x": NaN}'))
    with pytest.raises(BadJson, match="nested too deeply"):
        check_avatar(_raw_json(b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"))
    with pytest.raises(InvalidGltf, match="no 'asset'"):
        check_avatar(_raw_json(b'{"meshes": []}'))
    with pytest.raises(TooComplex, match="separators"):
        check_avatar(_raw_json(b'{"a": [' + b"0," * 1_000_001 + b"0]}"))


@pytest.mark.parametrize(
    ("edit", "error", "message"),
    [
        (lambda d: d["accessors"][0].update(count=1000), OutOfBounds,
         "accessor 0 reads past the end of buffer view 0: 1000 elements need 12000 bytes, the view has 48"),
        (lambda d: d["accessors"][5].update(byteOffset=48 * 10), OutOfBounds, "accessor 5 reads past the end"),
        (lambda d: d["bufferViews"][0].update(byteLength=10**9), OutOfBounds,
         "buffer view 0 reads past the end of buffer 0"),
        (lambda d: d["buffers"][0].update(byteLength=10**9), OutOfBounds, "buffer 0 says it has 1000000000 bytes"),
        (lambda d: d["accessors"][0].update(count=2**31), TooComplex, "accessor 0 has count 2,147,483,648"),
        (lambda d: d["accessors"].append({"componentType": 5126, "type": "VEC3", "count": 2**31}), TooComplex,
         "has count 2,147,483,648"),
        (lambda d: d["meshes"].extend([d["meshes"][0]] * MAX_MESHES), TooComplex, f"at most {MAX_MESHES}"),
        (lambda d: d["nodes"].extend([{"name": "x"}] * MAX_NODES), TooComplex, f"at most {MAX_NODES}"),
        (lambda d: d["meshes"][0]["primitives"][0]["attributes"].update(POSITION=999), BadReference,
         "mesh 0 primitive 0 attribute POSITION refers to accessor 999, but the file has only"),
        (lambda d: d["nodes"][0].update(mesh=50), BadReference, "node 0 'mesh' refers to mesh 50, but the file has "
         "only 2 meshes"),
        (lambda d: d["nodes"][2].update(children=[77]), BadReference, "refers to node 77"),
        (lambda d: d["skins"][0]["joints"].append(900), BadReference, "skin 0 joint 3 refers to node 900"),
        (lambda d: (d["nodes"][3].update(children=[2]), d["nodes"][5].update(children=[0, 1])), NodeCycle,
         "node cycle: node 3 -> node 2 -> node 3 (a node cannot be its own ancestor)"),
        (lambda d: d["nodes"][3].update(children=[2]), BadReference, "node 2 is a child of both node 3 and node 5"),
        (lambda d: d["nodes"][2].update(children=[2]), NodeCycle, "node 2 lists itself as a child"),
        (lambda d: d["nodes"][0].update(children=[3]), BadReference, "node 3 is a child of both node 0 and node 2"),
        (lambda d: d["buffers"][0].update(uri="https://evil.example/steal.bin"), ExternalReference,
         "buffer 0 refers to the external file 'https://evil.example/steal.bin'"),
        (lambda d: d.update(images=[{"uri": "textures/skin.png"}]), ExternalReference,
         "image 0 refers to the external file 'textures/skin.png'"),
        (lambda d: d.update(extensions={"KHR_audio": {"sources": [{"uri": "file:///etc/passwd"}]}}),
         ExternalReference, "/extensions/KHR_audio/sources/0: uri 'file:///etc/passwd' is not embedded"),
        (lambda d: d["accessors"][0].update(componentType=5124), InvalidGltf, "componentType 5124 is not one of"),
        (lambda d: d["accessors"][0].update(bufferView=True), InvalidGltf, "must be a buffer view index"),
        (lambda d: d["meshes"][0]["primitives"][0].update(mode=9), InvalidGltf, "mode 9 is not a glTF primitive"),
        (lambda d: d["nodes"][0].update(translation=[0, "x", 0]), InvalidGltf, "node 0 'translation' must be 3"),
        (lambda d: d.update(meshes={}), InvalidGltf, "'meshes' must be a list"),
    ],
)
def test_broken_json_gives_a_typed_error(files: dict[str, bytes], edit: Any, error: type, message: str) -> None:
    data = _edit(files["small"], edit)
    with pytest.raises(error) as info:
        check_avatar(data)
    assert message in info.value.message


def test_small_layout_assumed_by_the_parametrized_cases(files: dict[str, bytes]) -> None:
    doc, _ = split_glb(files["small"])
    assert [n["name"] for n in doc["nodes"]] == ["Head", "Body", "Hips", "Neck", "Head", "Armature"]
    assert doc["nodes"][2]["children"] == [3] and doc["nodes"][3]["children"] == [4]
    assert len(doc["skins"][0]["joints"]) == 3 and len(doc["meshes"]) == 2


def test_index_data_past_the_vertices(files: dict[str, bytes]) -> None:
    doc, blob = split_glb(files["small"])
    view = doc["bufferViews"][doc["accessors"][doc["meshes"][0]["primitives"][0]["indices"]]["bufferView"]]
    patched = bytearray(blob)
    struct.pack_into("<H", patched, view.get("byteOffset", 0) + 2, 60000)
    with pytest.raises(OutOfBounds, match="mesh 0 primitive 0: index 60000 .* past the 4 vertices"):
        check_avatar(pack_glb(doc, bytes(patched)))


def test_data_uris_are_allowed_and_counted_in_the_size_limit(files: dict[str, bytes]) -> None:
    payload = "data:image/png;base64," + "A" * 4000

    def add(doc: dict[str, Any]) -> None:
        doc["images"] = [{"uri": payload}]
        doc["textures"] = [{"source": 0}]

    data = _edit(files["small"], add)
    report = check_avatar(data)
    assert report.counts.embedded_bytes == 3016
    with pytest.raises(AvatarTooLarge, match="decoded from data: URIs"):
        check_avatar(data, max_bytes=len(data) + 100)


def test_oversize(files: dict[str, bytes], tmp_path: Path) -> None:
    with pytest.raises(AvatarTooLarge, match="the limit is 1,000"):
        check_avatar(files["rpm"], max_bytes=1000)
    path = tmp_path / "big.glb"
    with path.open("wb") as f:  # a sparse 3 GB file: refused from its size, never read
        f.truncate(3 * 1024**3)
    t0 = time.perf_counter()
    with pytest.raises(AvatarTooLarge, match="big.glb has 3,221,225,472 bytes"):
        check_avatar(path)
    assert time.perf_counter() - t0 < 0.5


def test_declared_huge_lengths_use_bounded_memory(files: dict[str, bytes]) -> None:
    base = files["rpm"]
    header_4gb = bytearray(base)
    struct.pack_into("<I", header_4gb, 8, 0xFFFFFFFC)
    json_4gb = bytearray(base)
    struct.pack_into("<I", json_4gb, 12, 0xFFFFFFF0)
    cases: list[tuple[bytes, type]] = [
        (bytes(header_4gb), TruncatedAvatar),
        (bytes(json_4gb), BadChunk),
        (_edit(base, lambda d: d["buffers"][0].update(byteLength=2**32)), OutOfBounds),
        (_edit(base, lambda d: d["bufferViews"][0].update(byteLength=2**40)), OutOfBounds),
        (_edit(base, lambda d: d["accessors"][0].update(count=2**31)), TooComplex),
        (_edit(base, lambda d: d["accessors"].append(
            {"componentType": 5126, "type": "MAT4", "count": 2**24})), TooComplex),  # 1 GB of zeros
    ]
    tracemalloc.start()
    try:
        for data, error in cases:
            with pytest.raises(error):
                check_avatar(data)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 50 * MB


# --------------------------------------------------------------------------------------------------------------
# Fuzzing: any corruption gives a report or an AvatarError, quickly
# --------------------------------------------------------------------------------------------------------------

_FUZZ_BASES = ("small", "rpm", "vrm0", "vrm1", "cc")


def _check_fast(data: bytes) -> None:
    t0 = time.perf_counter()
    try:
        check_avatar(data)
    except AvatarError:
        pass
    assert time.perf_counter() - t0 < 0.5


@st.composite
def _byte_mutations(draw: st.DrawFn, data: bytes) -> bytes:
    out = bytearray(data)
    for _ in range(draw(st.integers(1, 6))):
        kind = draw(st.sampled_from(["flip", "truncate", "insert", "delete", "u32"]))
        if not out:
            break
        pos = draw(st.integers(0, len(out) - 1))
        if kind == "flip":
            out[pos] ^= draw(st.integers(1, 255))
        elif kind == "truncate":
            del out[pos:]
        elif kind == "insert":
            out[pos:pos] = draw(st.binary(min_size=1, max_size=16))
        elif kind == "delete":
            del out[pos : pos + draw(st.integers(1, 16))]
        elif pos + 4 <= len(out):  # a plausible-looking length field
            struct.pack_into("<I", out, pos, draw(st.sampled_from([0, 1, 3, 2**31, 2**32 - 1, len(out)])))
    return bytes(out)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_bytes(files: dict[str, bytes], data: st.DataObject) -> None:
    base = files[data.draw(st.sampled_from(_FUZZ_BASES))]
    _check_fast(data.draw(_byte_mutations(base)))


def _json_mutations(draw: st.DrawFn, doc: Any) -> None:
    """Replace random values somewhere in the document: by random JSON values or by values copied from elsewhere."""
    slots: list[tuple[Any, Any]] = []
    stack = [doc]
    while stack:
        obj = stack.pop()
        keys = list(obj) if isinstance(obj, dict) else range(len(obj))
        for k in keys:
            slots.append((obj, k))
            if isinstance(obj[k], dict | list):
                stack.append(obj[k])
    values = st.one_of(
        st.none(), st.booleans(), st.integers(-3, 10), st.sampled_from([2**31, 2**32, 2**63, -(2**31)]),
        st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8),
        st.lists(st.integers(-1, 40), max_size=5), st.dictionaries(st.text(max_size=5), st.integers(0, 3),
                                                                   max_size=3),
    )
    for _ in range(draw(st.integers(1, 4))):
        obj, key = slots[draw(st.integers(0, len(slots) - 1))]
        if draw(st.booleans()):
            obj[key] = draw(values)
        else:  # a value from elsewhere in the file: the right shape in the wrong place
            other, okey = slots[draw(st.integers(0, len(slots) - 1))]
            obj[key] = json.loads(json.dumps(other[okey]))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_json_values(files: dict[str, bytes], data: st.DataObject) -> None:
    base = files[data.draw(st.sampled_from(_FUZZ_BASES))]
    _check_fast(rewrite_json(base, lambda doc: _json_mutations(data.draw, doc)))


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                                  HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_fuzz_json_text(files: dict[str, bytes], data: st.DataObject) -> None:
    """Byte edits inside the JSON text, re-packed with correct lengths (reaches the parser and the validator)."""
    doc, blob = split_glb(files[data.draw(st.sampled_from(_FUZZ_BASES))])
    text = bytearray(json.dumps(doc).encode())
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(text) - 1))
        text[pos] = data.draw(st.sampled_from(list(b'0123456789-[]{}",:. tfn')))
    body = bytes(text) + b" " * (-len(text) % 4)
    chunks = struct.pack("<I4s", len(body), b"JSON") + body + struct.pack("<I4s", len(blob), b"BIN\x00") + blob
    _check_fast(struct.pack("<4sII", b"glTF", 2, 12 + len(chunks)) + chunks)


# --------------------------------------------------------------------------------------------------------------
# Import: paths, bytes and URLs (loopback server)
# --------------------------------------------------------------------------------------------------------------


class _Site:
    def __init__(self, files: dict[str, bytes]) -> None:
        self.files = files
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.sent = 0

    def app(self) -> Starlette:
        async def model(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))
            key = request.path_params["key"]
            if key not in self.files:
                return Response("no such model", status_code=404)
            etag = f'"{hashlib.sha256(self.files[key]).hexdigest()[:16]}"'
            if request.headers.get("if-none-match") == etag:
                return Response(status_code=304, headers={"ETag": etag})
            return Response(self.files[key], media_type="model/gltf-binary", headers={"ETag": etag})

        async def endless(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))

            async def body() -> Any:
                yield self.files["rpm"][:12]  # starts like a GLB
                while True:
                    self.sent += 65536
                    yield bytes(65536)
                    await asyncio.sleep(0)

            return StreamingResponse(body(), media_type="model/gltf-binary")

        async def announced(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))
            return Response(bytes(2 * MB), media_type="model/gltf-binary")

        async def slow(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))
            await asyncio.sleep(3)
            return Response(self.files["rpm"], media_type="model/gltf-binary")

        async def page(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))
            return Response("<!doctype html><html><body>Sign in to download</body></html>", media_type="text/html")

        async def to_plain_http(request: Request) -> Response:
            self.requests.append((request.url.path, dict(request.headers)))
            return RedirectResponse("http://models.example.com/a.glb", status_code=302)

        return Starlette(routes=[
            Route("/models/{key}.glb", model), Route("/models/{key}.vrm", model),
            Route("/endless.glb", endless), Route("/announced.glb", announced), Route("/slow.glb", slow),
            Route("/page", page), Route("/redirect.glb", to_plain_http),
        ])


@pytest.fixture(scope="module")
def site(files: dict[str, bytes]) -> Iterator[tuple[_Site, str]]:
    s = _Site({**files, "truncated": files["rpm"][:5000]})
    with FakeServer(s.app()) as server:
        yield s, server.url


@pytest.fixture
def fresh_site(site: tuple[_Site, str]) -> tuple[_Site, str]:
    s, url = site
    s.requests.clear()
    s.sent = 0
    return s, url


def test_url_import_downloads_once_then_uses_the_cache(fresh_site: tuple[_Site, str], tmp_path: Path) -> None:
    s, base = fresh_site
    url = f"{base}/models/rpm.glb"
    first = imp.import_avatar(url, cache_dir=tmp_path)
    assert not first.from_cache and len(s.requests) == 1
    key = hashlib.sha256(url.encode()).hexdigest()
    assert first.path == tmp_path / f"{key}.glb" and first.path.read_bytes() == s.files["rpm"]
    meta = json.loads((tmp_path / f"{key}.json").read_text())
    assert meta["url"] == url and meta["size"] == len(s.files["rpm"]) and meta["etag"]
    assert first.report.rig == "rpm" and first.report.lipsync == "full" and first.report.name == "rpm"
    second = imp.import_avatar(url, cache_dir=tmp_path)
    assert second.from_cache and second.path == first.path and len(s.requests) == 1  # no new request
    assert second.report.as_dict() == first.report.as_dict()
    revalidated = imp.import_avatar(url, cache_dir=tmp_path, refresh=True)
    assert revalidated.from_cache and len(s.requests) == 2
    assert s.requests[-1][1].get("if-none-match") == meta["etag"]  # answered 304: the file is kept


def test_url_import_of_a_vrm(fresh_site: tuple[_Site, str], tmp_path: Path) -> None:
    _, base = fresh_site
    imported = imp.import_avatar(f"{base}/models/vrm1.vrm", cache_dir=tmp_path)
    assert imported.report.format == "vrm1" and imported.path.suffix == ".glb"


def test_url_import_errors(fresh_site: tuple[_Site, str], tmp_path: Path) -> None:
    s, base = fresh_site
    with pytest.raises(imp.AvatarNotFound, match="HTTP 404"):
        imp.import_avatar(f"{base}/models/nothing.glb", cache_dir=tmp_path)
    with pytest.raises(NotAGlb, match=f"{base}/page: not a GLB: this looks like an HTML"):
        imp.import_avatar(f"{base}/page", cache_dir=tmp_path)
    with pytest.raises(TruncatedAvatar, match="truncated"):
        imp.import_avatar(f"{base}/models/truncated.glb", cache_dir=tmp_path)
    with pytest.raises(imp.InsecureAvatarUrl, match="plain http is allowed only to loopback"):
        imp.import_avatar(f"{base}/redirect.glb", cache_dir=tmp_path)
    assert not list(tmp_path.glob("*.glb"))  # nothing that failed was kept


def test_url_import_aborts_an_endless_body_early(fresh_site: tuple[_Site, str], tmp_path: Path) -> None:
    s, base = fresh_site
    t0 = time.perf_counter()
    with pytest.raises(imp.AvatarDownloadTooLarge, match="more than 200,000 bytes .the limit. received; download aborted") as info:
        imp.import_avatar(f"{base}/endless.glb", cache_dir=tmp_path, max_bytes=200_000)
    assert time.perf_counter() - t0 < 5
    assert isinstance(info.value, AvatarTooLarge)
    time.sleep(0.2)
    assert s.sent < 32 * MB  # the server stopped producing (socket buffers hold a few MB at most)
    with pytest.raises(imp.AvatarDownloadTooLarge, match="announces 2,097,152 bytes"):
        imp.import_avatar(f"{base}/announced.glb", cache_dir=tmp_path, max_bytes=MB)
    assert not list(tmp_path.glob("*.glb"))


def test_url_import_times_out(fresh_site: tuple[_Site, str], tmp_path: Path) -> None:
    _, base = fresh_site
    t0 = time.perf_counter()
    with pytest.raises(imp.AvatarDownloadTimeout) as info:
        imp.import_avatar(f"{base}/slow.glb", cache_dir=tmp_path, timeout=0.5)
    assert info.value.retryable and time.perf_counter() - t0 < 2.5


def test_insecure_urls_are_refused_without_a_request(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    def no_network(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("no request may be made")

    monkeypatch.setattr(imp, "_download", no_network)
    for url in ("http://models.example.com/a.glb", "http://10.0.0.5/a.glb", "ftp://example.com/a.glb",
                "file:///etc/passwd", "http://127.0.0.1.evil.com/a.glb"):
        with pytest.raises(imp.InsecureAvatarUrl):
            imp.import_avatar(url, cache_dir=tmp_path)
    assert imp.check_url("https://models.example.com/a.glb") == "models.example.com"
    assert imp.check_url("http://[::1]:8000/a.glb") == "::1"
    assert imp.check_url("http://localhost/a.glb") == "localhost"


def test_urllib_fallback(fresh_site: tuple[_Site, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    s, base = fresh_site
    monkeypatch.setattr(imp, "httpx", None)
    imported = imp.import_avatar(f"{base}/models/cc.glb", cache_dir=tmp_path)
    assert imported.report.rig == "cc" and len(s.requests) == 1
    with pytest.raises(imp.AvatarNotFound):
        imp.import_avatar(f"{base}/models/nothing.glb", cache_dir=tmp_path)
    with pytest.raises(imp.AvatarDownloadTooLarge, match="aborted"):
        imp.import_avatar(f"{base}/endless.glb", cache_dir=tmp_path, max_bytes=200_000)
    with pytest.raises(imp.AvatarDownloadTimeout):
        imp.import_avatar(f"{base}/slow.glb", cache_dir=tmp_path, timeout=0.5)


def test_import_of_bytes_and_paths(files: dict[str, bytes], tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    imported = imp.import_avatar(files["vrm0"], cache_dir=cache)
    assert imported.report.format == "vrm0" and imported.path.read_bytes() == files["vrm0"]
    assert imported.path.name == f"{hashlib.sha256(files['vrm0']).hexdigest()}.glb"
    local = tmp_path / "mine.glb"
    local.write_bytes(files["mixamo"])
    by_path = imp.import_avatar(local, cache_dir=cache)
    assert by_path.path == local.resolve() and by_path.report.rig == "mixamo"
    with pytest.raises(imp.AvatarNotFound):
        imp.import_avatar(tmp_path / "missing.glb", cache_dir=cache)
    with pytest.raises(NotAGlb, match="uploaded avatar: not a GLB"):
        imp.import_avatar(b"GIF89a....", cache_dir=cache)


def test_default_cache_dir(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("AVATARIUM_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    assert imp.default_cache_dir() == tmp_path / "avatarium-lab" / "avatars"

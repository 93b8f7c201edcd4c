"""Tests of the avatar library: the aria GLB's structure and its morph targets' geometry; every library character's
shapes, skeleton and skin, capabilities, distinctness, thumbnails and deterministic regeneration; the library API."""

from __future__ import annotations

import itertools
import json
import math
import struct
from pathlib import Path

import numpy as np
import pygltflib
import pytest
import yaml
from PIL import Image

from avatarium_lab.avatar import (
    ARKIT_SHAPES,
    LIBRARY_DIR,
    LIBRARY_FILE,
    MORPH_TARGETS,
    VISEMES,
    AvatarInfo,
    avatar_path,
    list_avatars,
    load_avatar,
)
from avatarium_lab.avatar.check import check_avatar
from avatarium_lab.avatar.generate import HAIR_STYLES, CharacterSpec, entry_spec, generate_library
from avatarium_lab.errors import UnknownAvatar

ENTRIES = yaml.safe_load(LIBRARY_FILE.read_text(encoding="utf-8"))["avatars"]
IDS = [e["id"] for e in ENTRIES]
BUST_BONES = {
    "Hips", "Spine", "Neck", "Head", "LeftShoulder", "LeftArm", "LeftForeArm", "LeftHand",
    "RightShoulder", "RightArm", "RightForeArm", "RightHand",
}  # fmt: skip
LEG_BONES = {"LeftUpLeg", "LeftLeg", "LeftFoot", "RightUpLeg", "RightLeg", "RightFoot"}
EMOTION_SHAPES = {
    "eyeWideLeft", "eyeWideRight", "eyeSquintLeft", "eyeSquintRight", "browOuterUpLeft", "browOuterUpRight",
    "cheekSquintLeft", "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "mouthPucker", "mouthPressLeft",
    "mouthPressRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft", "mouthFrownRight", "browInnerUp",
    "browDownLeft", "browDownRight", "jawOpen", "eyeBlinkLeft", "eyeBlinkRight",
}  # fmt: skip

_CTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}


# --- a minimal GLB reader (sparse accessors included), independent of the generator's code --------------------


def _parse(data: bytes) -> tuple[dict, bytes]:
    magic, version, total = struct.unpack_from("<4sII", data, 0)
    assert (magic, version, total) == (b"glTF", 2, len(data))
    jlen, jtype = struct.unpack_from("<I4s", data, 12)
    assert jtype == b"JSON"
    doc = json.loads(data[20 : 20 + jlen])
    blen, btype = struct.unpack_from("<I4s", data, 20 + jlen)
    assert btype == b"BIN\x00"
    return doc, data[28 + jlen : 28 + jlen + blen]


def _accessor(doc: dict, blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    n, k, dtype = acc["count"], _NCOMP[acc["type"]], _CTYPES[acc["componentType"]]
    if "bufferView" in acc:
        view = doc["bufferViews"][acc["bufferView"]]
        offset = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        arr = np.frombuffer(blob, dtype, n * k, offset).reshape(n, k).copy()
    else:
        arr = np.zeros((n, k), dtype)
    sparse = acc.get("sparse")
    if sparse:
        iv, vv = sparse["indices"], sparse["values"]
        ioff = doc["bufferViews"][iv["bufferView"]].get("byteOffset", 0) + iv.get("byteOffset", 0)
        voff = doc["bufferViews"][vv["bufferView"]].get("byteOffset", 0) + vv.get("byteOffset", 0)
        idx = np.frombuffer(blob, _CTYPES[iv["componentType"]], sparse["count"], ioff).astype(np.int64)
        assert np.all(np.diff(idx) > 0), "sparse indices must increase strictly"
        assert idx.max() < n
        arr[idx] = np.frombuffer(blob, dtype, sparse["count"] * k, voff).reshape(-1, k)
    return arr[:, 0] if k == 1 else arr


class Prim:
    def __init__(self, doc: dict, blob: bytes, prim: dict, names: list[str]) -> None:
        self.material = doc["materials"][prim["material"]]["name"]
        self.pos = _accessor(doc, blob, prim["attributes"]["POSITION"]).astype(np.float64)
        self.tris = _accessor(doc, blob, prim["indices"]).astype(np.int64).reshape(-1, 3)
        self.targets = {
            names[i]: _accessor(doc, blob, t["POSITION"]).astype(np.float64)
            for i, t in enumerate(prim.get("targets", []))
        }
        attrs = prim["attributes"]
        self.joints = _accessor(doc, blob, attrs["JOINTS_0"]).astype(np.int64) if "JOINTS_0" in attrs else None
        self.weights = _accessor(doc, blob, attrs["WEIGHTS_0"]) if "WEIGHTS_0" in attrs else None

    def posed(self, weights: dict[str, float]) -> np.ndarray:
        p = self.pos.copy()
        for name, w in weights.items():
            if name in self.targets:  # meshes without morph targets stay put
                p += w * self.targets[name]
        return p


class Avatar:
    def __init__(self, data: bytes) -> None:
        self.doc, self.blob = _parse(data)
        self.meshes: dict[str, list[Prim]] = {}
        for mesh in self.doc["meshes"]:
            names = (mesh.get("extras") or {}).get("targetNames", [])
            self.meshes[mesh["name"]] = [Prim(self.doc, self.blob, p, names) for p in mesh["primitives"]]
        self.nodes = {n["name"]: n for n in self.doc["nodes"]}
        self.index = {n["name"]: i for i, n in enumerate(self.doc["nodes"])}
        self.parent = {c: i for i, n in enumerate(self.doc["nodes"]) for c in n.get("children", [])}

    def prims(self, material: str, mesh: str = "Face") -> list[Prim]:
        return [p for p in self.meshes[mesh] if p.material == material]

    def world(self, name: str, rotations: dict[str, np.ndarray] | None = None) -> np.ndarray:
        """World matrix of a node (translation-only nodes; ``rotations`` poses named joints)."""
        i, m = self.index[name], np.eye(4)
        while True:
            node = self.doc["nodes"][i]
            local = np.eye(4)
            local[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
            if rotations and node["name"] in rotations:
                local[:3, :3] = rotations[node["name"]]
            m = local @ m
            if i not in self.parent:
                return m
            i = self.parent[i]

    def anchor(self, name: str) -> np.ndarray:
        """World position of an anchor (a child of the Head bone)."""
        return self.world(name)[:3, 3]

    @property
    def joint_names(self) -> list[str]:
        return [self.doc["nodes"][j]["name"] for j in self.doc["skins"][0]["joints"]]

    def skinned(self, prim: Prim, rotations: dict[str, np.ndarray]) -> np.ndarray:
        """Linear blend skinning of a primitive's rest positions with some joints rotated."""
        skin = self.doc["skins"][0]
        ibm = _accessor(self.doc, self.blob, skin["inverseBindMatrices"]).astype(np.float64)
        ibm = ibm.reshape(-1, 4, 4).transpose(0, 2, 1)  # column-major
        mats = np.array([self.world(n, rotations) @ ibm[k] for k, n in enumerate(self.joint_names)])
        assert prim.joints is not None and prim.weights is not None
        blend = np.einsum("vk,vkab->vab", prim.weights.astype(np.float64) / 255.0, mats[prim.joints])
        return np.einsum("vab,vb->va", blend[:, :3, :3], prim.pos) + blend[:, :3, 3]

    def bone_weight(self, prim: Prim, bone: str) -> np.ndarray:
        """Per-vertex weight (0..1) of one joint."""
        assert prim.joints is not None and prim.weights is not None
        j = self.joint_names.index(bone)
        return ((prim.joints == j) * prim.weights.astype(np.float64)).sum(axis=1) / 255.0

    def first_hit(self, x: float, y: float, weights: dict[str, float]) -> str | None:
        """Material of the first surface a ray from the front (+z, looking down -z) meets at (x, y)."""
        best, best_mat = -np.inf, None
        for prims in self.meshes.values():
            for p in prims:
                pos = p.posed(weights)
                a, b, c = pos[p.tris[:, 0]], pos[p.tris[:, 1]], pos[p.tris[:, 2]]
                # barycentric coordinates of (x, y) in the xy-projection of each triangle
                v0, v1 = b[:, :2] - a[:, :2], c[:, :2] - a[:, :2]
                v2 = np.array([x, y]) - a[:, :2]
                den = v0[:, 0] * v1[:, 1] - v1[:, 0] * v0[:, 1]
                ok = np.abs(den) > 1e-16
                den = np.where(ok, den, 1.0)
                l1 = (v2[:, 0] * v1[:, 1] - v1[:, 0] * v2[:, 1]) / den
                l2 = (v0[:, 0] * v2[:, 1] - v2[:, 0] * v0[:, 1]) / den
                inside = ok & (l1 >= 0) & (l2 >= 0) & (l1 + l2 <= 1)
                if inside.any():
                    z = (
                        a[inside, 2]
                        + l1[inside] * (b[inside, 2] - a[inside, 2])
                        + l2[inside] * (c[inside, 2] - a[inside, 2])
                    )
                    if z.max() > best:
                        best, best_mat = float(z.max()), p.material
        return best_mat


def _rot(axis: str, degrees: float) -> np.ndarray:
    c, s = math.cos(math.radians(degrees)), math.sin(math.radians(degrees))
    return {
        "x": np.array([[1.0, 0.0, 0.0], [0.0, c, -s], [0.0, s, c]]),
        "z": np.array([[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]),
    }[axis]


@pytest.fixture(scope="module")
def aria_bytes() -> bytes:
    return load_avatar("aria")


@pytest.fixture(scope="module")
def aria(aria_bytes: bytes) -> Avatar:
    return Avatar(aria_bytes)


# --- structure ------------------------------------------------------------------------------------------------


def test_glb_parses_with_pygltflib(aria_bytes: bytes) -> None:
    gltf = pygltflib.GLTF2.load_from_bytes(aria_bytes)
    assert gltf.asset.version == "2.0"
    assert {m.name for m in gltf.meshes} >= {"Face", "Eyes", "Hair", "Body"}
    assert gltf.scenes[gltf.scene].nodes


def test_file_size_is_small(aria_bytes: bytes) -> None:
    # 1.5 MB before the skeleton (skin attributes) and the 13 extra ARKit shapes; every library GLB stays < 2 MB
    assert len(aria_bytes) < 2_000_000
    assert avatar_path("aria").stat().st_size == len(aria_bytes)


def test_anchors_exist_without_mesh(aria: Avatar) -> None:
    for name in ("MouthAnchor", "HeadAnchor"):
        node = aria.nodes[name]
        assert "mesh" not in node and len(node["translation"]) == 3
        # the anchors ride on the Head bone, so a nod carries them
        assert aria.doc["nodes"][aria.parent[aria.index[name]]]["name"] == "Head"
    mouth, head = aria.anchor("MouthAnchor"), aria.anchor("HeadAnchor")
    # the mouth is below the head centre, in front of it, on the symmetry plane
    assert mouth[1] < head[1] - 0.03 and mouth[2] > head[2] + 0.05 and abs(mouth[0]) < 1e-6
    assert np.allclose(head, [0.0, 0.5, 0.0], atol=1e-6)  # where it always was
    # nodes carry translations only (joints and anchors); meshes sit at the origin
    for node in aria.doc["nodes"]:
        assert not {"matrix", "rotation", "scale"} & set(node)
        assert "translation" not in node or "mesh" not in node


def test_mouth_anchor_sits_between_the_lips(aria: Avatar) -> None:
    mouth = aria.anchor("MouthAnchor")
    lips = np.concatenate([p.pos for p in aria.prims("lips")])
    near = lips[np.abs(lips[:, 0] - mouth[0]) < 0.002]
    assert near[:, 1].min() < mouth[1] < near[:, 1].max()
    assert np.min(np.linalg.norm(lips - mouth, axis=1)) < 0.001


def test_bust_is_y_up_in_metres_facing_plus_z(aria: Avatar) -> None:
    pts = np.concatenate([p.pos for prims in aria.meshes.values() for p in prims])
    lo, hi = pts.min(axis=0), pts.max(axis=0)
    assert -0.01 <= lo[1] and hi[1] <= 0.72 and hi[1] - lo[1] > 0.5
    head = aria.anchor("HeadAnchor")
    skin = np.concatenate([p.pos for p in aria.prims("skin")])
    nose = skin[np.argmax(skin[:, 2])]  # the front-most skin point is the nose tip
    assert abs(nose[0]) < 0.002 and nose[2] > head[2] + 0.08
    eyes = np.concatenate([p.pos for p in aria.prims("pupil", mesh="Eyes")])
    assert eyes[:, 2].min() > head[2] + 0.05


def test_every_required_target_is_on_the_face_mesh(aria: Avatar) -> None:
    face_mesh = next(m for m in aria.doc["meshes"] if m["name"] == "Face")
    assert face_mesh["extras"]["targetNames"] == list(MORPH_TARGETS)
    assert len(face_mesh["weights"]) == len(MORPH_TARGETS)
    for prim in face_mesh["primitives"]:
        assert len(prim["targets"]) == len(MORPH_TARGETS)
    for name in MORPH_TARGETS:
        moved = max(float(np.abs(p.targets[name]).max()) for p in aria.meshes["Face"])
        assert moved > 2e-4, f"{name} moves nothing"
    # other meshes carry no targets
    for mesh in aria.doc["meshes"]:
        if mesh["name"] != "Face":
            assert all("targets" not in p for p in mesh["primitives"])


# --- morph target geometry ------------------------------------------------------------------------------------


def _lower_lip_drop(aria: Avatar, target: str) -> float:
    """Mean downward motion of the lower lip's central vertices."""
    mouth = aria.anchor("MouthAnchor")
    drops = []
    for p in aria.prims("lips"):
        sel = (np.abs(p.pos[:, 0] - mouth[0]) < 0.006) & (p.pos[:, 1] < mouth[1] - 0.0005)
        drops.append(-p.targets[target][sel, 1])
    return float(np.mean(np.concatenate(drops)))


def _mouth_width(aria: Avatar, target: str) -> float:
    lips = np.concatenate([p.posed({target: 1.0}) for p in aria.prims("lips")])
    return float(lips[:, 0].max() - lips[:, 0].min())


def test_open_visemes_drop_the_lower_lip_in_order(aria: Avatar) -> None:
    aa, e, pp = (_lower_lip_drop(aria, t) for t in ("viseme_aa", "viseme_E", "viseme_PP"))
    assert aa > e > pp
    assert aa > 0.012  # jaw wide open: well over a centimetre
    assert abs(pp) < 0.002  # lips pressed: the lower lip stays where it is


def test_rounded_visemes_are_narrower_than_spread_ones(aria: Avatar) -> None:
    rest = _mouth_width(aria, "viseme_sil")
    widths = {t: _mouth_width(aria, t) for t in ("viseme_U", "viseme_O", "viseme_E", "viseme_I")}
    assert max(widths["viseme_U"], widths["viseme_O"]) < min(widths["viseme_E"], widths["viseme_I"])
    assert widths["viseme_U"] < widths["viseme_O"] < rest < widths["viseme_I"]


def test_closed_mouth_shows_lips_and_open_mouth_shows_the_inside(aria: Avatar) -> None:
    mouth = aria.anchor("MouthAnchor")
    assert aria.first_hit(mouth[0], mouth[1], {}) == "lips"
    assert aria.first_hit(mouth[0], mouth[1], {"viseme_PP": 1.0}) == "lips"
    inside = {"mouth", "teeth", "tongue", "lips_inner"}
    for target in ("viseme_aa", "viseme_O", "jawOpen"):
        assert aria.first_hit(mouth[0], mouth[1] - 0.002, {target: 1.0}) in inside, target
    assert aria.first_hit(mouth[0], mouth[1] + 0.0015, {"viseme_TH": 1.0}) in {"teeth", "tongue"}


@pytest.mark.parametrize(("target", "side"), [("eyeBlinkLeft", 1.0), ("eyeBlinkRight", -1.0)])
def test_blink_closes_the_lids_over_the_eye(aria: Avatar, target: str, side: float) -> None:
    pupils = np.concatenate([p.pos for p in aria.prims("pupil", mesh="Eyes")])
    pupil = pupils[np.sign(pupils[:, 0]) == side].mean(axis=0)
    eye_parts = {"sclera", "iris", "iris_rim", "pupil", "highlight"}
    lid_parts = {"skin", "lash"}
    grid = [(pupil[0] + dx, pupil[1] + dy) for dx in np.linspace(-0.012, 0.012, 7) for dy in (-0.004, 0.0, 0.004)]
    open_hits = [aria.first_hit(x, y, {}) for x, y in grid]
    assert sum(h in eye_parts for h in open_hits) >= len(grid) // 2  # the eye is open at rest
    closed_hits = [aria.first_hit(x, y, {target: 1.0}) for x, y in grid]
    assert all(h in lid_parts for h in closed_hits), closed_hits
    # the other eye stays open
    other = "eyeBlinkRight" if target == "eyeBlinkLeft" else "eyeBlinkLeft"
    assert aria.first_hit(pupil[0], pupil[1], {other: 1.0}) in eye_parts


def test_smile_raises_and_frown_lowers_the_corner(aria: Avatar) -> None:
    lips = aria.prims("lips")
    pos = np.concatenate([p.pos for p in lips])
    corner = np.argmax(pos[:, 0])  # the character's left corner is at +x
    for target, sign in (("mouthSmileLeft", 1.0), ("mouthFrownLeft", -1.0)):
        d = np.concatenate([p.targets[target] for p in lips])[corner]
        assert sign * d[1] > 0.002, target
    assert abs(np.concatenate([p.targets["mouthSmileRight"] for p in lips])[corner, 1]) < 1e-4


def test_brows_move_up_and_down(aria: Avatar) -> None:
    brows = aria.prims("brows")
    up = np.concatenate([p.targets["browInnerUp"] for p in brows])[:, 1]
    down = np.concatenate([p.targets["browDownLeft"] for p in brows])[:, 1]
    assert up.max() > 0.002 and down.min() < -0.002


def test_visemes_are_distinct(aria: Avatar) -> None:
    face = aria.meshes["Face"]
    flat = {v: np.concatenate([p.targets[v].ravel() for p in face]) for v in VISEMES}
    for i, a in enumerate(VISEMES):
        for b in VISEMES[i + 1 :]:
            assert np.abs(flat[a] - flat[b]).max() > 5e-4, (a, b)


# --- generation and the library API ---------------------------------------------------------------------------


def test_regeneration_is_byte_identical(tmp_path: Path, aria_bytes: bytes) -> None:
    written = generate_library(tmp_path, only=["aria"])
    assert [p.name for p in written] == ["aria.glb"]
    assert written[0].read_bytes() == aria_bytes
    assert (tmp_path / "aria.png").read_bytes() == (LIBRARY_DIR / "aria.png").read_bytes()


def test_unknown_avatar_raises_with_known_ids() -> None:
    with pytest.raises(UnknownAvatar, match="aria") as info:
        load_avatar("nope")
    assert "nope" in str(info.value) and info.value.code == "unknown_avatar"
    with pytest.raises(UnknownAvatar):
        avatar_path("../aria")


def test_list_avatars_describes_aria() -> None:
    avatars = list_avatars()
    aria = next(a for a in avatars if a.id == "aria")
    assert isinstance(aria, AvatarInfo)
    assert aria.name == "Aria" and aria.description
    assert aria.path == avatar_path("aria") and aria.path.is_file()
    assert set(MORPH_TARGETS) <= set(aria.morph_targets)


# --- the whole library ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def library() -> dict[str, Avatar]:
    return {i: Avatar(load_avatar(i)) for i in IDS}


def test_library_has_six_distinct_characters_including_a_full_body_one() -> None:
    assert len(IDS) >= 6 and len(set(IDS)) == len(IDS)
    assert len({e["name"] for e in ENTRIES}) == len(ENTRIES)
    for e in ENTRIES:
        text = " ".join(e["description"].split())
        assert len(text) > 60 and text.endswith("."), e["id"]
        spec = entry_spec(e)  # framing and generator body agree
        assert e["framing"] == ("full" if spec.body == "full" else "bust")
    assert [e["framing"] for e in ENTRIES].count("full") >= 1
    styles = {CharacterSpec.from_mapping(e["generator"]).hair_style for e in ENTRIES}
    assert len(styles) >= 5 and styles <= set(HAIR_STYLES)
    infos = {a.id: a for a in list_avatars()}
    for e in ENTRIES:
        assert infos[e["id"]].framing == e["framing"]
        assert infos[e["id"]].thumbnail == LIBRARY_DIR / f"{e['id']}.png"


def test_library_parameters_reject_mistakes() -> None:
    with pytest.raises(ValueError, match="hair_style"):
        CharacterSpec.from_mapping({"hair_style": "mohawk"})
    with pytest.raises(ValueError, match="framing"):
        entry_spec({"id": "x", "framing": "full", "generator": {}})


@pytest.mark.parametrize("avatar_id", IDS)
def test_every_avatar_has_the_visemes_and_the_blink_and_emotion_shapes(library: dict[str, Avatar], avatar_id: str):
    av = library[avatar_id]
    face_mesh = next(m for m in av.doc["meshes"] if m["name"] == "Face")
    assert face_mesh["extras"]["targetNames"] == list(MORPH_TARGETS)
    assert set(VISEMES) | EMOTION_SHAPES <= set(MORPH_TARGETS)
    assert set(ARKIT_SHAPES) >= EMOTION_SHAPES
    for name in MORPH_TARGETS:
        moved = max(float(np.abs(p.targets[name]).max()) for p in av.meshes["Face"])
        assert moved > 2e-4, f"{avatar_id}: {name} moves nothing"
    assert {m["name"] for m in av.doc["meshes"]} == {"Body", "Face", "Eyes", "Hair"}
    for mat in av.doc["materials"]:
        assert mat["name"] and mat["pbrMetallicRoughness"]["metallicFactor"] == 0


@pytest.mark.parametrize("avatar_id", IDS)
def test_every_avatar_is_skinned_to_a_mixamo_named_skeleton(library: dict[str, Avatar], avatar_id: str) -> None:
    av = library[avatar_id]
    (skin,) = av.doc["skins"]
    names = av.joint_names
    assert BUST_BONES <= set(names)
    if next(e for e in ENTRIES if e["id"] == avatar_id)["framing"] == "full":
        assert LEG_BONES <= set(names)
    # inverse bind matrices undo each joint's rest (world) transform
    ibm = _accessor(av.doc, av.blob, skin["inverseBindMatrices"]).astype(np.float64).reshape(-1, 4, 4)
    assert len(ibm) == len(names)
    for k, n in enumerate(names):
        assert np.allclose(ibm[k].T @ av.world(n), np.eye(4), atol=2e-6), n
    # every mesh is skinned, every vertex's four byte weights sum to exactly 1 and name real joints
    for node in av.doc["nodes"]:
        if "mesh" in node:
            assert node.get("skin") == 0, node["name"]
    for mesh, prims in av.meshes.items():
        for p in prims:
            assert p.joints is not None and p.weights is not None, (mesh, p.material)
            assert p.weights.dtype == np.uint8 and np.all(p.weights.astype(int).sum(axis=1) == 255), (mesh, p.material)
            assert p.joints.max() < len(names)


@pytest.mark.parametrize("avatar_id", IDS)
def test_a_nod_carries_the_whole_head_and_nothing_below_the_neck(library: dict[str, Avatar], avatar_id: str):
    av = library[avatar_id]
    for mesh in ("Face", "Hair", "Eyes"):
        for p in av.meshes[mesh]:
            bone = av.bone_weight(p, "Head")
            if mesh == "Eyes" and p.material != "highlight":
                bone = av.bone_weight(p, "LeftEye") + av.bone_weight(p, "RightEye")
            assert np.all(bone == 1.0), (mesh, p.material)
    nod = {"Head": _rot("x", 20.0)}
    head_world = av.world("Head", nod)
    anchor = av.world("MouthAnchor", nod)[:3, 3]
    assert np.allclose(anchor, head_world[:3, :3] @ (av.anchor("MouthAnchor") - av.world("Head")[:3, 3])
                       + head_world[:3, 3], atol=1e-6)  # fmt: skip
    for p in av.meshes["Face"] + av.meshes["Hair"]:
        posed = av.skinned(p, nod)
        rigid = (p.pos - av.world("Head")[:3, 3]) @ head_world[:3, :3].T + head_world[:3, 3]
        assert np.abs(posed - rigid).max() < 1e-5
    # the chest stays put
    torso = [p for p in av.meshes["Body"] if p.material == "shirt"]
    for p in torso:
        low = p.pos[:, 1] < av.world("Spine1")[1, 3]
        assert np.abs(av.skinned(p, nod)[low] - p.pos[low]).max() < 1e-6


@pytest.mark.parametrize("avatar_id", IDS)
def test_arm_and_shoulder_bones_deform_their_side(library: dict[str, Avatar], avatar_id: str) -> None:
    av = library[avatar_id]
    body = av.meshes["Body"]
    for bone in ("LeftShoulder", "LeftArm", "LeftForeArm"):
        assert max(float(av.bone_weight(p, bone).max()) for p in body) > 0.5, bone
    raise_arm = {"LeftArm": _rot("z", 60.0)}
    for p in body:
        posed = av.skinned(p, raise_arm)
        move = np.linalg.norm(posed - p.pos, axis=1)
        assert np.all(move[p.pos[:, 0] < -0.01] < 1e-6)  # the right side does not follow the left arm
    moved = max(float(np.linalg.norm(av.skinned(p, raise_arm) - p.pos, axis=1).max()) for p in body)
    assert moved > 0.02


def test_the_full_body_figure_stands_and_can_wave(library: dict[str, Avatar]) -> None:
    full = [e["id"] for e in ENTRIES if e["framing"] == "full"]
    for avatar_id in full:
        av = library[avatar_id]
        pts = np.concatenate([p.pos for prims in av.meshes.values() for p in prims])
        lo, hi = pts.min(axis=0), pts.max(axis=0)
        assert -1e-6 <= lo[1] < 0.002 and 0.6 < hi[1] < 1.0  # stands on y = 0, metres
        head = av.anchor("HeadAnchor")
        assert hi[1] - head[1] < 0.15 and head[1] > 0.5
        mats = {p.material for p in av.meshes["Body"]}
        assert {"skin", "shirt", "pants", "shoes"} <= mats
        # hands: vertices fully on the hand bones, at the ends of the arms, below the shoulders at rest
        shoulder_y = av.world("LeftArm")[1, 3]
        for side in ("Left", "Right"):
            hand = np.concatenate([p.pos[av.bone_weight(p, f"{side}Hand") == 1.0] for p in av.meshes["Body"]])
            assert len(hand) > 50 and hand[:, 1].max() < shoulder_y - 0.1
            assert np.all(np.sign(hand[:, 0]) == (1 if side == "Left" else -1))
        # a wave: the left arm up, the forearm bent in; the hand ends up beside the head
        wave = {"LeftArm": _rot("z", 150.0), "LeftForeArm": _rot("z", 20.0)}
        hand = np.concatenate([
            av.skinned(p, wave)[av.bone_weight(p, "LeftHand") == 1.0] for p in av.meshes["Body"]
        ])  # fmt: skip
        assert hand[:, 1].min() > shoulder_y + 0.12 and hand[:, 1].mean() > head[1]
        # legs: a step bends the left knee and moves only the left leg
        step = {"LeftUpLeg": _rot("x", -30.0)}
        for p in av.meshes["Body"]:
            move = np.linalg.norm(av.skinned(p, step) - p.pos, axis=1)
            assert np.all(move[p.pos[:, 0] < -0.01] < 1e-6)


@pytest.mark.parametrize("avatar_id", IDS)
def test_check_avatar_reports_every_capability_full(avatar_id: str) -> None:
    report = check_avatar(avatar_path(avatar_id))
    assert (report.lipsync, report.emotions, report.blinks, report.gestures) == ("full",) * 4
    assert set(report.visemes.values()) == {"direct"}
    assert all(s != "missing" for s in report.emotion_shapes.values())
    assert report.issues == ()
    assert {"head", "neck", "leftShoulder", "leftUpperArm", "leftLowerArm", "leftHand", "rightShoulder",
            "rightUpperArm", "rightLowerArm", "rightHand"} <= set(report.bones)  # fmt: skip
    # the richer emotion combos apply: surprise widens the eyes, a relaxed face squints a little
    assert "eyeWideLeft" in report.mapping.emotions["surprised"].shapes()
    assert "eyeSquintLeft" in report.mapping.emotions["relaxed"].shapes()


def test_characters_differ_in_look_and_in_their_thumbnails(library: dict[str, Avatar]) -> None:
    colour_keys = ("skin_color", "hair_color", "eye_color", "shirt_color", "lip_color")
    shape_keys = ("head_width", "head_height", "jaw_width", "eye_size", "nose_size", "lip_fullness", "hair_style")
    specs = {e["id"]: CharacterSpec.from_mapping(e["generator"]) for e in ENTRIES}
    thumbs = {i: np.asarray(Image.open(LIBRARY_DIR / f"{i}.png"), dtype=np.float64) for i in IDS}
    for a, b in itertools.combinations(IDS, 2):
        sa, sb = specs[a], specs[b]
        assert sum(getattr(sa, k) != getattr(sb, k) for k in colour_keys) >= 2, (a, b)
        assert any(getattr(sa, k) != getattr(sb, k) for k in shape_keys), (a, b)
        diff = np.abs(thumbs[a] - thumbs[b])
        assert diff.mean() > 8.0 and (diff.max(axis=2) > 40).mean() > 0.1, (a, b)


@pytest.mark.parametrize("avatar_id", IDS)
def test_files_are_small_and_thumbnails_are_256_square_portraits(avatar_id: str) -> None:
    assert avatar_path(avatar_id).stat().st_size < 2_000_000
    img = Image.open(LIBRARY_DIR / f"{avatar_id}.png")
    assert img.size == (256, 256) and img.mode == "RGB"
    px = np.asarray(img, dtype=np.float64)
    background = px[0, 0]
    subject = np.abs(px - background).max(axis=2) > 30
    assert 0.08 < subject.mean() < 0.8  # a character, not an empty frame
    rows, cols = np.nonzero(subject)
    assert abs(cols.mean() - 128) < 40 and rows.min() < 40  # centred, its head near the top


def test_the_beard_follows_the_jaw(library: dict[str, Avatar]) -> None:
    bearded = [e["id"] for e in ENTRIES if (e["generator"].get("beard") or "none") != "none"]
    assert bearded
    for avatar_id in bearded:
        av = library[avatar_id]
        (beard,) = av.prims("beard")
        mouth = av.anchor("MouthAnchor")
        chin = (beard.pos[:, 1] < mouth[1] - 0.02) & (np.abs(beard.pos[:, 0]) < 0.01)
        assert chin.sum() > 5
        assert -beard.targets["jawOpen"][chin, 1].mean() > 0.005
        # seen from the front the lips stay clear, the chin is bearded, and it stays so with the mouth open
        for weights in ({}, {"viseme_aa": 1.0}):
            assert av.first_hit(mouth[0], mouth[1] + 0.003, weights) == "lips"
            assert av.first_hit(mouth[0] + 0.008, mouth[1] - 0.003, {}) == "lips"
            drop = float(-np.mean(beard.targets["viseme_aa"][chin, 1])) * next(iter(weights.values()), 0.0)
            assert av.first_hit(mouth[0], mouth[1] - 0.03 - drop, weights) == "beard"


def test_new_emotion_shapes_move_the_right_features(aria: Avatar) -> None:
    eye = aria.prims("sclera", mesh="Eyes")[0].pos
    left_eye_y = eye[eye[:, 0] > 0][:, 1].mean()
    skin = aria.prims("skin")  # the face sheet and the lids

    def lid_motion(target: str, above: bool) -> float:
        out = []
        for p in skin:
            sel = (p.pos[:, 0] > 0.015) & (p.pos[:, 0] < 0.05) & (np.abs(p.pos[:, 1] - left_eye_y) < 0.02)
            sel &= (p.pos[:, 1] > left_eye_y) if above else (p.pos[:, 1] < left_eye_y)
            out.append(p.targets[target][sel, 1])
        d = np.concatenate(out)
        return float(d.max() if d.max() > -d.min() else d.min())

    assert lid_motion("eyeWideLeft", above=True) > 0.001  # the upper lid lifts
    assert lid_motion("eyeSquintLeft", above=False) > 0.001  # the lower lid rises
    assert lid_motion("cheekSquintLeft", above=False) > 0.001
    for p in skin:  # left shapes stay on the left
        for t in ("eyeWideLeft", "eyeSquintLeft", "cheekSquintLeft", "noseSneerLeft", "browOuterUpLeft"):
            assert np.abs(p.targets[t][p.pos[:, 0] < -0.01]).max(initial=0.0) < 1e-4, t
    brows = np.concatenate([p.pos for p in aria.prims("brows")])
    up = np.concatenate([p.targets["browOuterUpLeft"] for p in aria.prims("brows")])
    assert up[brows[:, 0] > 0.04, 1].mean() > 0.002
    sneer = max(float(p.targets["noseSneerLeft"][:, 1].max()) for p in skin)
    assert sneer > 0.0015
    assert _mouth_width(aria, "mouthPucker") < _mouth_width(aria, "viseme_sil")
    assert abs(_lower_lip_drop(aria, "mouthPressLeft")) < 0.002  # pressing does not open the jaw


def test_the_whole_library_regenerates_byte_identically(tmp_path: Path) -> None:
    """Every committed GLB and thumbnail is what the generator writes now, and writing twice gives the same bytes."""
    written = generate_library(tmp_path)
    assert [p.stem for p in written] == IDS
    for i in IDS:
        assert (tmp_path / f"{i}.glb").read_bytes() == avatar_path(i).read_bytes(), i
        assert (tmp_path / f"{i}.png").read_bytes() == (LIBRARY_DIR / f"{i}.png").read_bytes(), i
    again = generate_library(tmp_path / "again", only=[IDS[-1]])
    assert again[0].read_bytes() == written[-1].read_bytes()


def test_thumbnails_frame_busts_and_full_figures() -> None:
    from avatarium_lab.avatar.thumbnail import render_thumbnail

    data = load_avatar("aria")
    small = render_thumbnail(data, "bust", size=64)
    assert small.shape == (64, 64, 3) and small.dtype == np.uint8
    assert np.array_equal(small, render_thumbnail(data, "bust", size=64))
    full = render_thumbnail(data, "full", size=64)  # the whole bust, smaller in the frame than its head crop
    bg = small[0, 0].astype(int)
    assert (np.abs(full.astype(int) - bg).max(axis=2) > 30).mean() < (
        np.abs(small.astype(int) - bg).max(axis=2) > 30
    ).mean()
    with pytest.raises(ValueError, match="framing"):
        render_thumbnail(data, "portrait")

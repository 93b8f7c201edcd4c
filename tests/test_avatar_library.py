"""Tests of the avatar library: the aria GLB's structure, its morph targets' geometry, and the library API."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pygltflib
import pytest

from avatarium_lab.avatar import (
    MORPH_TARGETS,
    VISEMES,
    AvatarInfo,
    avatar_path,
    list_avatars,
    load_avatar,
)
from avatarium_lab.avatar.generate import generate_library
from avatarium_lab.errors import UnknownAvatar

_CTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4}


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

    def prims(self, material: str, mesh: str = "Face") -> list[Prim]:
        return [p for p in self.meshes[mesh] if p.material == material]

    def anchor(self, name: str) -> np.ndarray:
        return np.array(self.nodes[name]["translation"], dtype=np.float64)

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
    assert len(aria_bytes) < 1_500_000
    assert avatar_path("aria").stat().st_size == len(aria_bytes)


def test_anchors_exist_without_mesh(aria: Avatar) -> None:
    for name in ("MouthAnchor", "HeadAnchor"):
        node = aria.nodes[name]
        assert "mesh" not in node and len(node["translation"]) == 3
    mouth, head = aria.anchor("MouthAnchor"), aria.anchor("HeadAnchor")
    # the mouth is below the head centre, in front of it, on the symmetry plane
    assert mouth[1] < head[1] - 0.03 and mouth[2] > head[2] + 0.05 and abs(mouth[0]) < 1e-6
    # no node carries any other transform, so the anchors' translations are world positions
    for node in aria.doc["nodes"]:
        assert not {"matrix", "rotation", "scale"} & set(node)
        assert "translation" not in node or node["name"] in ("MouthAnchor", "HeadAnchor")


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

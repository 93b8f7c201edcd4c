"""Synthetic GLB and VRM avatars for tests and notebooks: small, valid glTF 2.0, with real morph target data.

Every builder returns GLB bytes. Each mesh is a tetrahedron (4 vertices, 4 triangles) with POSITION (with
min/max), NORMAL and UNSIGNED_SHORT indices; each morph target is a dense VEC3 float accessor (with min/max) that
moves one vertex; with bones, every mesh is skinned (JOINTS_0/WEIGHTS_0) to a skin whose inverseBindMatrices
undo the joints' rest translations. So the files load in three.js' GLTFLoader, and the validator sees the same
structure real exports have, only tiny.

- :func:`make_glb`: the general builder (meshes with morphs, a skeleton, document extensions).
- :func:`make_rpm_like`: a Ready Player Me export (``Wolf3D_*`` meshes, ``Armature``, Mixamo-style bones,
  ``viseme_*`` + the 52 ARKit morphs on ``Wolf3D_Head`` and ``Wolf3D_Teeth``), or one exported without morphs.
- :func:`make_vrm0` / :func:`make_vrm1`: VRoid-style VRM 0.x (named ``Fcl_*`` morphs, blend shape groups binding
  mesh + index) and VRM 1.0 (unnamed morphs, expressions binding node + index).
- :func:`make_arkit_only`, :func:`make_mixamo`, :func:`make_cc`: ARKit face, Mixamo body, Character Creator.
- :func:`pack_glb` / :func:`rewrite_json`: the container, and re-packing a file with an edited JSON (tests break
  files this way).

pygltflib builds the document (its dataclasses and constants); the container is packed here so that tests can
re-pack an edited JSON around the same BIN chunk.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import pygltflib

from . import VISEMES
from .rigmap import ARKIT_52

BoneSpec = str | tuple[str, str | None] | tuple[str, str | None, tuple[float, float, float]]
"""A bone: a name (child of the previous bone), ``(name, parent)`` or ``(name, parent, translation)``."""

RPM_DEFAULT_MORPHS: tuple[str, ...] = ("mouthOpen", "mouthSmile", "eyesClosed", "eyesLookUp", "eyesLookDown")
"""What Ready Player Me exported when no ``morphTargets`` parameter was given."""

CC_MORPHS: tuple[str, ...] = (
    "V_Open", "V_Explosive", "V_Dental_Lip", "V_Tight_O", "V_Tight", "V_Wide", "V_Affricate", "V_Lip_Open",
    "V_Tongue_Out", "V_Tongue_Raise", "Mouth_Open", "Mouth_Close", "Eye_Blink_L", "Eye_Blink_R", "Mouth_Smile_L",
    "Mouth_Smile_R", "Mouth_Frown_L", "Mouth_Frown_R", "Brow_Raise_Inner_L", "Brow_Raise_Inner_R", "Brow_Drop_L",
    "Brow_Drop_R", "Brow_Raise_Outer_L", "Brow_Raise_Outer_R",
)  # fmt: skip

VROID_MORPHS: tuple[str, ...] = (
    "Fcl_MTH_A", "Fcl_MTH_I", "Fcl_MTH_U", "Fcl_MTH_E", "Fcl_MTH_O", "Fcl_EYE_Close", "Fcl_EYE_Close_L",
    "Fcl_EYE_Close_R", "Fcl_ALL_Joy", "Fcl_ALL_Angry", "Fcl_ALL_Sorrow", "Fcl_ALL_Fun", "Fcl_ALL_Surprised",
)  # fmt: skip

# Upper-body skeleton by role: (role, parent role, rest translation relative to the parent, metres).
_SKELETON: tuple[tuple[str, str | None, tuple[float, float, float]], ...] = (
    ("hips", None, (0.0, 1.0, 0.0)),
    ("spine", "hips", (0.0, 0.1, 0.0)),
    ("chest", "spine", (0.0, 0.12, 0.0)),
    ("upperChest", "chest", (0.0, 0.14, 0.0)),
    ("neck", "upperChest", (0.0, 0.15, 0.0)),
    ("head", "neck", (0.0, 0.1, 0.0)),
    ("leftEye", "head", (0.03, 0.06, 0.08)),
    ("rightEye", "head", (-0.03, 0.06, 0.08)),
    ("leftShoulder", "upperChest", (0.05, 0.12, 0.0)),
    ("leftUpperArm", "leftShoulder", (0.1, 0.0, 0.0)),
    ("leftLowerArm", "leftUpperArm", (0.25, 0.0, 0.0)),
    ("leftHand", "leftLowerArm", (0.25, 0.0, 0.0)),
    ("rightShoulder", "upperChest", (-0.05, 0.12, 0.0)),
    ("rightUpperArm", "rightShoulder", (-0.1, 0.0, 0.0)),
    ("rightLowerArm", "rightUpperArm", (-0.25, 0.0, 0.0)),
    ("rightHand", "rightLowerArm", (-0.25, 0.0, 0.0)),
)

RPM_BONE_NAMES: Mapping[str, str] = {
    "hips": "Hips", "spine": "Spine", "chest": "Spine1", "upperChest": "Spine2", "neck": "Neck", "head": "Head",
    "leftEye": "LeftEye", "rightEye": "RightEye", "leftShoulder": "LeftShoulder", "leftUpperArm": "LeftArm",
    "leftLowerArm": "LeftForeArm", "leftHand": "LeftHand", "rightShoulder": "RightShoulder",
    "rightUpperArm": "RightArm", "rightLowerArm": "RightForeArm", "rightHand": "RightHand",
}  # fmt: skip
MIXAMO_BONE_NAMES: Mapping[str, str] = {k: f"mixamorig:{v}" for k, v in RPM_BONE_NAMES.items()}
CC_BONE_NAMES: Mapping[str, str] = {
    "hips": "CC_Base_Hip", "spine": "CC_Base_Waist", "chest": "CC_Base_Spine01", "upperChest": "CC_Base_Spine02",
    "neck": "CC_Base_NeckTwist01", "head": "CC_Base_Head", "leftEye": "CC_Base_L_Eye", "rightEye": "CC_Base_R_Eye",
    "leftShoulder": "CC_Base_L_Clavicle", "leftUpperArm": "CC_Base_L_Upperarm", "leftLowerArm": "CC_Base_L_Forearm",
    "leftHand": "CC_Base_L_Hand", "rightShoulder": "CC_Base_R_Clavicle", "rightUpperArm": "CC_Base_R_Upperarm",
    "rightLowerArm": "CC_Base_R_Forearm", "rightHand": "CC_Base_R_Hand",
}  # fmt: skip
VROID_BONE_NAMES: Mapping[str, str] = {
    "hips": "J_Bip_C_Hips", "spine": "J_Bip_C_Spine", "chest": "J_Bip_C_Chest", "upperChest": "J_Bip_C_UpperChest",
    "neck": "J_Bip_C_Neck", "head": "J_Bip_C_Head", "leftEye": "J_Adj_L_FaceEye", "rightEye": "J_Adj_R_FaceEye",
    "leftShoulder": "J_Bip_L_Shoulder", "leftUpperArm": "J_Bip_L_UpperArm", "leftLowerArm": "J_Bip_L_LowerArm",
    "leftHand": "J_Bip_L_Hand", "rightShoulder": "J_Bip_R_Shoulder", "rightUpperArm": "J_Bip_R_UpperArm",
    "rightLowerArm": "J_Bip_R_LowerArm", "rightHand": "J_Bip_R_Hand",
}  # fmt: skip


def skeleton(names: Mapping[str, str]) -> list[tuple[str, str | None, tuple[float, float, float]]]:
    """The standard upper-body skeleton with the given role -> bone name (roles left out are skipped, their
    children attach to the nearest named ancestor)."""
    parent_of = {role: parent for role, parent, _ in _SKELETON}
    out = []
    for role, parent, t in _SKELETON:
        if role not in names:
            continue
        while parent is not None and parent not in names:
            parent = parent_of[parent]
        out.append((names[role], names[parent] if parent else None, t))
    return out


@dataclass(frozen=True)
class Layout:
    """Where things ended up: node and mesh indices by name, morph names by mesh name (for extension builders)."""

    nodes: Mapping[str, int]
    meshes: Mapping[str, int]
    morphs: Mapping[str, tuple[str, ...]]


_TETRA = np.array([[0.0, 0.0, 0.0], [0.1, 0.0, 0.0], [0.0, 0.1, 0.0], [0.0, 0.0, 0.1]], np.float32)
_TRIS = np.array([[0, 2, 1], [0, 1, 3], [0, 3, 2], [1, 2, 3]], np.uint16)


class _Blob:
    def __init__(self, gltf: pygltflib.GLTF2) -> None:
        self.gltf = gltf
        self.data = bytearray()

    def view(self, data: bytes, target: int | None = None) -> int:
        self.data += b"\0" * (-len(self.data) % 4)
        self.gltf.bufferViews.append(pygltflib.BufferView(buffer=0, byteOffset=len(self.data),
                                                          byteLength=len(data), target=target))
        self.data += data
        return len(self.gltf.bufferViews) - 1

    def accessor(self, view: int, offset: int, arr: np.ndarray, ctype: int, typ: str, *, minmax: bool = False) -> int:
        acc = pygltflib.Accessor(bufferView=view, byteOffset=offset or None, componentType=ctype, count=len(arr),
                                 type=typ)
        if minmax:
            acc.min = [float(x) for x in arr.min(axis=0)]
            acc.max = [float(x) for x in arr.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def array(self, arr: np.ndarray, ctype: int, typ: str, *, target: int | None = None, minmax: bool = False) -> int:
        return self.accessor(self.view(np.ascontiguousarray(arr).tobytes(), target), 0, arr, ctype, typ,
                             minmax=minmax)


def pack_glb(doc: Mapping[str, Any], blob: bytes = b"") -> bytes:
    """A GLB container around a JSON document and an optional BIN chunk (both padded to 4 bytes)."""
    text = json.dumps(doc, separators=(",", ":")).encode("utf-8")
    text += b" " * (-len(text) % 4)
    out = struct.pack("<I4s", len(text), b"JSON") + text
    if blob:
        blob = bytes(blob) + b"\0" * (-len(blob) % 4)
        out += struct.pack("<I4s", len(blob), b"BIN\x00") + blob
    return struct.pack("<4sII", b"glTF", 2, 12 + len(out)) + out


def split_glb(data: bytes) -> tuple[dict[str, Any], bytes]:
    """The JSON document and BIN chunk of a well-formed GLB (for tests; no validation)."""
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + jlen])
    rest = data[20 + jlen :]
    blob = rest[8 : 8 + struct.unpack_from("<I", rest, 0)[0]] if len(rest) >= 8 else b""
    return doc, blob


def rewrite_json(data: bytes, edit: Callable[[dict[str, Any]], Any]) -> bytes:
    """Re-pack a GLB after ``edit(doc)`` changed its JSON in place (the BIN chunk is kept as it is)."""
    doc, blob = split_glb(data)
    edit(doc)
    return pack_glb(doc, blob)


def _bones(bones: Sequence[BoneSpec]) -> list[tuple[str, str | None, tuple[float, float, float]]]:
    out: list[tuple[str, str | None, tuple[float, float, float]]] = []
    for b in bones:
        if isinstance(b, str):
            out.append((b, out[-1][0] if out else None, (0.0, 0.1 if out else 1.0, 0.0)))
        elif len(b) == 2:
            out.append((b[0], b[1], (0.0, 0.1, 0.0)))
        else:
            out.append((b[0], b[1], tuple(b[2])))  # type: ignore[misc]
    return out


def make_glb(
    morphs: Sequence[str] = (),
    meshes: Sequence[str] | Mapping[str, Sequence[str]] = ("Head",),
    bones: Sequence[BoneSpec] = (),
    extensions: Mapping[str, Any] | Callable[[Layout], Mapping[str, Any]] | None = None,
    *,
    root: str | None = None,
    named_morphs: bool = True,
    generator: str = "avatarium-lab testing_glb",
) -> bytes:
    """A small valid GLB.

    ``meshes``: names (``morphs`` go on the first) or a mapping mesh name -> its morph names. ``bones``: see
    :data:`BoneSpec`; with bones every mesh is skinned, to the bone named like ``*Head*`` when there is one.
    ``extensions``: document extensions (their names go to ``extensionsUsed``), or a function of the
    :class:`Layout` returning them (VRM binds need node and mesh indices). ``root``: the name of the node parenting
    everything (default ``Armature`` with bones, else ``Root``). ``named_morphs=False`` leaves out
    ``mesh.extras.targetNames`` (morphs then only have indices, as in many VRM 1.0 files).
    """
    mesh_morphs: dict[str, tuple[str, ...]] = (
        {k: tuple(v) for k, v in meshes.items()} if isinstance(meshes, Mapping)
        else {name: tuple(morphs) if i == 0 else () for i, name in enumerate(meshes)}
    )
    bone_list = _bones(bones)
    gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator=generator))
    blob = _Blob(gltf)
    gltf.materials.append(pygltflib.Material(name="skin", pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
        baseColorFactor=[0.9, 0.75, 0.65, 1.0], metallicFactor=0.0, roughnessFactor=0.6)))

    nmesh = len(mesh_morphs)
    node_index = {name: i for i, name in enumerate(mesh_morphs)}
    bone_index = {name: nmesh + j for j, (name, _, _) in enumerate(bone_list)}
    if len(bone_index) != len(bone_list):
        raise ValueError("bone names must be unique")
    head_joint = next((j for j, (name, _, _) in enumerate(bone_list) if "head" in name.lower()), 0)

    for k, (name, names) in enumerate(mesh_morphs.items()):
        pos = _TETRA + np.array([0.2 * k, 1.5, 0.0], np.float32)
        nrm = _TETRA - _TETRA.mean(axis=0)
        nrm = (nrm / np.linalg.norm(nrm, axis=1, keepdims=True)).astype(np.float32)
        attrs = pygltflib.Attributes(
            POSITION=blob.array(pos, pygltflib.FLOAT, "VEC3", target=pygltflib.ARRAY_BUFFER, minmax=True),
            NORMAL=blob.array(nrm, pygltflib.FLOAT, "VEC3", target=pygltflib.ARRAY_BUFFER),
        )
        if bone_list:
            joints = np.zeros((4, 4), np.uint8)
            joints[:, 0] = head_joint
            weights = np.zeros((4, 4), np.float32)
            weights[:, 0] = 1.0
            attrs.JOINTS_0 = blob.array(joints, pygltflib.UNSIGNED_BYTE, "VEC4", target=pygltflib.ARRAY_BUFFER)
            attrs.WEIGHTS_0 = blob.array(weights, pygltflib.FLOAT, "VEC4", target=pygltflib.ARRAY_BUFFER)
        indices = blob.array(_TRIS.reshape(-1), pygltflib.UNSIGNED_SHORT, "SCALAR",
                             target=pygltflib.ELEMENT_ARRAY_BUFFER)
        targets = []
        if names:
            # All of a mesh's morph deltas share one buffer view; each accessor starts at its own byteOffset.
            deltas = np.zeros((len(names), 4, 3), np.float32)
            for i in range(len(names)):
                deltas[i, i % 4] = (0.0005 * (1 + i % 7), 0.001 * (1 + i % 5), 0.002)
            view = blob.view(deltas.tobytes(), pygltflib.ARRAY_BUFFER)
            for i in range(len(names)):
                a = blob.accessor(view, i * 48, deltas[i], pygltflib.FLOAT, "VEC3", minmax=True)
                targets.append(pygltflib.Attributes(POSITION=a))
        prim = pygltflib.Primitive(attributes=attrs, indices=indices, material=0, targets=targets or None)
        extras = {"targetNames": list(names)} if names and named_morphs else {}
        gltf.meshes.append(pygltflib.Mesh(name=name, primitives=[prim], extras=extras))
        gltf.nodes.append(pygltflib.Node(name=name, mesh=k, skin=0 if bone_list else None))

    world: dict[str, np.ndarray] = {}
    children: dict[str, list[int]] = {}
    for name, parent, t in bone_list:
        if parent is not None and parent not in bone_index:
            raise ValueError(f"bone {name!r}: unknown parent {parent!r} (list parents first)")
        world[name] = np.asarray(t, np.float64) + (world[parent] if parent else 0.0)
        children.setdefault(parent or "", []).append(bone_index[name])
        gltf.nodes.append(pygltflib.Node(name=name, translation=[float(x) for x in t]))
    for name, _, _ in bone_list:
        if name in children:
            gltf.nodes[bone_index[name]].children = children[name]
    if bone_list:
        ibm = np.zeros((len(bone_list), 4, 4), np.float32)
        for j, (name, _, _) in enumerate(bone_list):
            m = np.eye(4)
            m[:3, 3] = -world[name]
            ibm[j] = m.T  # glTF matrices are column-major
        acc = blob.array(ibm.reshape(len(bone_list), 16), pygltflib.FLOAT, "MAT4")
        gltf.skins.append(pygltflib.Skin(name="skeleton", joints=[bone_index[n] for n, _, _ in bone_list],
                                         inverseBindMatrices=acc, skeleton=bone_index[bone_list[0][0]]))
    root_name = root or ("Armature" if bone_list else "Root")
    gltf.nodes.append(pygltflib.Node(name=root_name, children=list(range(nmesh)) + children.get("", [])))
    gltf.scenes.append(pygltflib.Scene(name="Scene", nodes=[len(gltf.nodes) - 1]))
    gltf.scene = 0

    layout = Layout(
        nodes={**node_index, **bone_index, root_name: len(gltf.nodes) - 1},
        meshes={name: i for i, name in enumerate(mesh_morphs)},
        morphs=mesh_morphs,
    )
    ext = extensions(layout) if callable(extensions) else extensions
    blob.data += b"\0" * (-len(blob.data) % 4)
    gltf.buffers.append(pygltflib.Buffer(byteLength=len(blob.data)))
    doc = json.loads(gltf.to_json())
    if ext:
        doc["extensions"] = dict(ext)
        doc["extensionsUsed"] = sorted(ext)
    return pack_glb(doc, bytes(blob.data))


def make_rpm_like(with_morphs: bool = True, *, default_morphs: bool = False) -> bytes:
    """A Ready Player Me full-body export: ``Wolf3D_*`` meshes, ``EyeLeft``/``EyeRight``, an ``Armature`` with
    RPM's bones; ``viseme_*`` + the 52 ARKit morphs on ``Wolf3D_Head`` and ``Wolf3D_Teeth`` when ``with_morphs``
    (else none: an export made without ``morphTargets=ARKit,Oculus Visemes``); ``default_morphs`` adds RPM's
    default set (``mouthOpen``, ``mouthSmile``, ``eyesClosed``...)."""
    face = (tuple(VISEMES) + ARKIT_52 if with_morphs else ()) + (RPM_DEFAULT_MORPHS if default_morphs else ())
    meshes = {
        "Wolf3D_Head": face, "Wolf3D_Teeth": face, "Wolf3D_Hair": (), "Wolf3D_Body": (), "Wolf3D_Outfit_Top": (),
        "Wolf3D_Outfit_Bottom": (), "Wolf3D_Outfit_Footwear": (), "EyeLeft": (), "EyeRight": (),
    }  # fmt: skip
    return make_glb(meshes=meshes, bones=skeleton(RPM_BONE_NAMES), root="Armature",
                    generator="Ready Player Me (synthetic test file)")


def make_arkit_only() -> bytes:
    """A head with the 52 ARKit blendshapes and no visemes, no skeleton (a face-tracking model)."""
    return make_glb(meshes={"Face": ARKIT_52, "Body": ()}, root="Character")


def make_mixamo() -> bytes:
    """A Mixamo character: ``mixamorig:*`` skeleton, skinned ``Alpha_Surface``/``Alpha_Joints``, no face morphs."""
    return make_glb(meshes=("Alpha_Surface", "Alpha_Joints"), bones=skeleton(MIXAMO_BONE_NAMES), root="Armature")


def make_cc() -> bytes:
    """A Character Creator export: ``CC_Base_*`` skeleton under ``CC_Base_BoneRoot``, CC lip-sync/face morphs."""
    bones = [("CC_Base_BoneRoot", None, (0.0, 0.0, 0.0))] + [
        (name, parent or "CC_Base_BoneRoot", t) for name, parent, t in skeleton(CC_BONE_NAMES)
    ]
    return make_glb(meshes={"CC_Base_Body": CC_MORPHS, "CC_Base_Teeth": ("V_Open", "Mouth_Open")}, bones=bones,
                    root="RL_Root")


_VRM0_GROUPS = (  # (group name, presetName, morph name)
    ("A", "a", "Fcl_MTH_A"), ("I", "i", "Fcl_MTH_I"), ("U", "u", "Fcl_MTH_U"), ("E", "e", "Fcl_MTH_E"),
    ("O", "o", "Fcl_MTH_O"), ("Blink", "blink", "Fcl_EYE_Close"), ("Blink_L", "blink_l", "Fcl_EYE_Close_L"),
    ("Blink_R", "blink_r", "Fcl_EYE_Close_R"), ("Joy", "joy", "Fcl_ALL_Joy"), ("Angry", "angry", "Fcl_ALL_Angry"),
    ("Sorrow", "sorrow", "Fcl_ALL_Sorrow"), ("Fun", "fun", "Fcl_ALL_Fun"),
    ("Surprised", "unknown", "Fcl_ALL_Surprised"),  # VRM 0.x has no surprised preset: VRoid adds a custom group
)  # fmt: skip


def make_vrm0() -> bytes:
    """A VRoid-style VRM 0.x: ``Face`` with named ``Fcl_*`` morphs, blend shape groups binding (mesh, index,
    weight 0..100), a ``J_Bip_*`` humanoid listed in ``humanoid.humanBones``."""

    def ext(layout: Layout) -> dict[str, Any]:
        face = layout.meshes["Face"]
        names = layout.morphs["Face"]
        groups = [
            {"name": g, "presetName": p, "isBinary": False, "materialValues": [],
             "binds": [{"mesh": face, "index": names.index(m), "weight": 100}]}
            for g, p, m in _VRM0_GROUPS
        ] + [{"name": "Neutral", "presetName": "neutral", "binds": [], "materialValues": [], "isBinary": False}]
        return {"VRM": {
            "exporterVersion": "UniVRM-0.99 (synthetic)",
            "specVersion": "0.0",
            "meta": {"title": "Test VRM 0", "author": "avatarium-lab", "licenseName": "CC0",
                     "allowedUserName": "Everyone", "commercialUssageName": "Allow"},
            "humanoid": {"humanBones": [{"bone": role, "node": layout.nodes[name], "useDefaultValues": True}
                                        for role, name in VROID_BONE_NAMES.items()]},
            "blendShapeMaster": {"blendShapeGroups": groups},
        }}

    return make_glb(meshes={"Face": VROID_MORPHS, "Body": (), "Hair": ()}, bones=skeleton(VROID_BONE_NAMES),
                    extensions=ext, root="Root", generator="UniGLTF (synthetic test file)")


_VRM1_EXPRESSIONS = ("aa", "ih", "ou", "ee", "oh", "blink", "blinkLeft", "blinkRight", "happy", "angry", "sad",
                     "relaxed", "surprised")


def make_vrm1() -> bytes:
    """A VRM 1.0: ``Face`` with *unnamed* morph targets (drivable by index only), ``VRMC_vrm`` expressions binding
    (node, index, weight 0..1) and a humanoid mapping roles to ``{node}``."""

    def ext(layout: Layout) -> dict[str, Any]:
        face = layout.nodes["Face"]
        preset: dict[str, Any] = {
            name: {"morphTargetBinds": [{"node": face, "index": i, "weight": 1.0}], "isBinary": False}
            for i, name in enumerate(_VRM1_EXPRESSIONS)
        }
        preset["neutral"] = {"morphTargetBinds": []}
        return {"VRMC_vrm": {
            "specVersion": "1.0",
            "meta": {"name": "Test VRM 1", "authors": ["avatarium-lab"], "licenseUrl": "https://vrm.dev/licenses/1.0/",
                     "avatarPermission": "everyone", "commercialUsage": "personalNonProfit"},
            "humanoid": {"humanBones": {role: {"node": layout.nodes[name]} for role, name in VROID_BONE_NAMES.items()}},
            "expressions": {"preset": preset},
        }}

    return make_glb(meshes={"Face": tuple(f"morph{i}" for i in range(len(_VRM1_EXPRESSIONS))), "Body": ()},
                    bones=skeleton(VROID_BONE_NAMES), extensions=ext, named_morphs=False, root="Root",
                    generator="UniGLTF-2.0 (synthetic test file)")


__all__ = [
    "CC_MORPHS",
    "RPM_DEFAULT_MORPHS",
    "VROID_MORPHS",
    "BoneSpec",
    "Layout",
    "make_arkit_only",
    "make_cc",
    "make_glb",
    "make_mixamo",
    "make_rpm_like",
    "make_vrm0",
    "make_vrm1",
    "pack_glb",
    "rewrite_json",
    "skeleton",
    "split_glb",
]

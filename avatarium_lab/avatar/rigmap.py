"""Rig mappings: drive our visemes, emotions, blinks and bone roles on a model that names things its own way.

The renderer speaks one vocabulary: the 15 Oculus visemes (:data:`~avatarium_lab.avatar.VISEMES`), a few emotions
(:data:`EMOTIONS`), blinks (:data:`BLINKS`) and bone roles (:data:`BONE_ROLES`, the VRM humanoid names). Avatars
speak many: Ready Player Me's ``viseme_*`` morphs, ARKit's 52 blendshapes, Character Creator's ``V_*`` visemes,
VRM expressions, Mixamo's ``mixamorig:`` bones. A :class:`RigMap` preset translates one vocabulary into ours as
data; the presets live in ``rigmaps.yaml`` next to this module (its header documents the format) and custom ones
load from a YAML file or a dict with :func:`load_rigmap`.

:func:`resolve` applies presets to a concrete model (an :class:`Inventory` of its morph targets, VRM expressions
and nodes) and returns a :class:`Resolution`: for every target of ours the morph targets to set -- by name *and* by
mesh/morph index, so a renderer can apply a VRM expression whose morphs have no names -- and a status:

- ``direct``: the model has the shape itself (``viseme_aa``, a VRM ``aa`` expression);
- ``mapped``: a combination of the model's shapes that stands for it (ARKit ``jawOpen 0.6 + mouthFunnel 0.15``);
- ``approx``: a coarse fallback from ``fallbacks`` in the YAML (``jawOpen 0.4`` for every vowel);
- ``missing``: nothing on the model can show it.

Decisions:

- Combos are all-or-nothing: a combo applies only when the model has every shape it names, so a half-applied
  shape never passes for the real one; presets list weaker alternatives after the best one instead.
- The preset is chosen per concern: the face preset is the one mapping the most visemes (then emotions, blinks;
  ties go to the preset named like the detected rig), the bone preset the one finding the most bone roles (then
  the most exact name matches). A RPM model with a Mixamo skeleton thus gets ``rpm`` visemes and ``mixamo`` bones.
- Bone names match exactly first, then case-insensitively with punctuation and a ``mixamorig:``/``mixamorig1:``
  style prefix removed (three.js strips ``:`` from node names, Blender turns it into ``_``). When the model has
  skins only their joints are candidates (a mesh node named ``Head`` is not the head bone).
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import MappingProxyType
from typing import Any

import yaml

from ..errors import AvatarError
from . import VISEMES

RIGMAPS_FILE = Path(__file__).resolve().parent / "rigmaps.yaml"

EMOTIONS: tuple[str, ...] = ("happy", "sad", "angry", "surprised", "thinking", "relaxed")
"""Emotions a rig map can drive (the personas' set plus VRM's ``relaxed``; ``neutral`` is the rest pose)."""

CORE_EMOTIONS: tuple[str, ...] = ("happy", "sad", "angry", "surprised")
"""Emotions every rig with a face can show: all of them mapped makes the emotion capability ``full``."""

BLINKS: tuple[str, ...] = ("blink", "blinkLeft", "blinkRight")

BONE_ROLES: tuple[str, ...] = (
    "hips", "spine", "chest", "upperChest", "neck", "head", "jaw", "leftEye", "rightEye",
    "leftShoulder", "leftUpperArm", "leftLowerArm", "leftHand",
    "rightShoulder", "rightUpperArm", "rightLowerArm", "rightHand",
)  # fmt: skip
"""Bone roles, named as in the VRM humanoid (the upper body: what talking-head gestures use)."""

ARKIT_52: tuple[str, ...] = (
    "eyeBlinkLeft", "eyeLookDownLeft", "eyeLookInLeft", "eyeLookOutLeft", "eyeLookUpLeft", "eyeSquintLeft",
    "eyeWideLeft", "eyeBlinkRight", "eyeLookDownRight", "eyeLookInRight", "eyeLookOutRight", "eyeLookUpRight",
    "eyeSquintRight", "eyeWideRight", "jawForward", "jawLeft", "jawRight", "jawOpen", "mouthClose", "mouthFunnel",
    "mouthPucker", "mouthLeft", "mouthRight", "mouthSmileLeft", "mouthSmileRight", "mouthFrownLeft",
    "mouthFrownRight", "mouthDimpleLeft", "mouthDimpleRight", "mouthStretchLeft", "mouthStretchRight",
    "mouthRollLower", "mouthRollUpper", "mouthShrugLower", "mouthShrugUpper", "mouthPressLeft", "mouthPressRight",
    "mouthLowerDownLeft", "mouthLowerDownRight", "mouthUpperUpLeft", "mouthUpperUpRight", "browDownLeft",
    "browDownRight", "browInnerUp", "browOuterUpLeft", "browOuterUpRight", "cheekPuff", "cheekSquintLeft",
    "cheekSquintRight", "noseSneerLeft", "noseSneerRight", "tongueOut",
)  # fmt: skip
"""Apple ARKit's 52 face blendshapes (what Ready Player Me exports with ``morphTargets=ARKit``)."""

VRM0_PRESETS: Mapping[str, str] = MappingProxyType({
    "a": "aa", "i": "ih", "u": "ou", "e": "ee", "o": "oh",
    "joy": "happy", "angry": "angry", "sorrow": "sad", "fun": "relaxed", "surprised": "surprised",
    "blink": "blink", "blink_l": "blinkLeft", "blink_r": "blinkRight", "neutral": "neutral",
    "lookup": "lookUp", "lookdown": "lookDown", "lookleft": "lookLeft", "lookright": "lookRight",
})  # fmt: skip
"""VRM 0.x blend shape preset names -> the VRM 1.0 expression names used as ``vrm:<name>`` shapes."""

STATUSES: tuple[str, ...] = ("direct", "mapped", "approx", "missing")

_SECTIONS = ("visemes", "emotions", "blinks")
_TARGETS = {"visemes": VISEMES, "emotions": EMOTIONS, "blinks": BLINKS}
_OPEN = "$open"

Combo = tuple[tuple[str, float], ...]
"""Morph (shape) name -> weight pairs that are set together."""


class RigMapError(AvatarError):
    """A rig map preset is unknown or malformed (the message names the preset and the field)."""

    code = "invalid_rigmap"


# --------------------------------------------------------------------------------------------------------------
# Presets
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RigMap:
    """One preset: for each of our targets, alternative combos of model shapes; for each bone role, candidate names.

    ``visemes``/``emotions``/``blinks`` map our name to combos tried in order; ``bones`` maps a role to node names
    tried in order. A preset may define only some of them (``mixamo`` has bones only).
    """

    name: str
    description: str = ""
    visemes: Mapping[str, tuple[Combo, ...]] = field(default_factory=dict)
    emotions: Mapping[str, tuple[Combo, ...]] = field(default_factory=dict)
    blinks: Mapping[str, tuple[Combo, ...]] = field(default_factory=dict)
    bones: Mapping[str, tuple[str, ...]] = field(default_factory=dict)

    @property
    def has_face(self) -> bool:
        return bool(self.visemes or self.emotions or self.blinks)

    @property
    def has_bones(self) -> bool:
        return bool(self.bones)

    def section(self, name: str) -> Mapping[str, tuple[Combo, ...]]:
        return {"visemes": self.visemes, "emotions": self.emotions, "blinks": self.blinks}[name]

    def as_dict(self) -> dict[str, Any]:
        """The preset in the YAML layout (loadable again with :func:`load_rigmap`)."""
        out: dict[str, Any] = {"description": self.description}
        for sec in _SECTIONS:
            if self.section(sec):
                out[sec] = {k: [dict(c) for c in combos] for k, combos in self.section(sec).items()}
        if self.bones:
            out["bones"] = {k: list(v) for k, v in self.bones.items()}
        return out

    @classmethod
    def from_dict(cls, name: str, data: Mapping[str, Any], *, base: RigMap | None = None) -> RigMap:
        """Build a preset from its YAML mapping; ``base`` is the preset it ``extends`` (already built)."""
        if not isinstance(data, Mapping):
            raise RigMapError(f"rig map {name!r}: expected a mapping, got {type(data).__name__}")
        unknown = sorted(set(data) - {"description", "extends", *_SECTIONS, "bones"})
        if unknown:
            raise RigMapError(f"rig map {name!r}: unknown field(s) {unknown}; known: description, extends, "
                              "visemes, emotions, blinks, bones")
        sections: dict[str, dict[str, tuple[Combo, ...]]] = {}
        for sec in _SECTIONS:
            own = _parse_section(name, sec, data.get(sec))
            merged = dict(base.section(sec)) if base else {}
            for key, combos in own.items():
                merged[key] = combos + tuple(c for c in merged.get(key, ()) if c not in combos)
            sections[sec] = merged
        bones = dict(base.bones) if base else {}
        raw_bones = data.get("bones") or {}
        if not isinstance(raw_bones, Mapping):
            raise RigMapError(f"rig map {name!r}: bones must map a bone role to a list of node names")
        for role, names in raw_bones.items():
            if role not in BONE_ROLES:
                raise RigMapError(f"rig map {name!r}: unknown bone role {role!r}; known: {', '.join(BONE_ROLES)}")
            if isinstance(names, str):
                names = [names]
            if not isinstance(names, list) or not all(isinstance(n, str) and n for n in names):
                raise RigMapError(f"rig map {name!r}: bones.{role} must be a node name or a list of them")
            bones[role] = tuple(names) + tuple(n for n in bones.get(role, ()) if n not in names)
        description = data.get("description", base.description if base else "")
        return cls(name=name, description=" ".join(str(description or "").split()),
                   visemes=sections["visemes"], emotions=sections["emotions"], blinks=sections["blinks"],
                   bones=bones)


def _parse_section(preset: str, sec: str, raw: Any) -> dict[str, tuple[Combo, ...]]:
    if raw is None:
        return {}
    if not isinstance(raw, Mapping):
        raise RigMapError(f"rig map {preset!r}: {sec} must map a name to a list of combos")
    known = _TARGETS[sec]
    out: dict[str, tuple[Combo, ...]] = {}
    for key, combos in raw.items():
        if key not in known:
            raise RigMapError(f"rig map {preset!r}: unknown {sec[:-1]} {key!r}; known: {', '.join(known)}")
        if isinstance(combos, Mapping):
            combos = [combos]
        if not isinstance(combos, list) or not combos:
            raise RigMapError(f"rig map {preset!r}: {sec}.{key} must be a non-empty list of {{morph: weight}} combos")
        parsed = []
        for combo in combos:
            if not isinstance(combo, Mapping):
                raise RigMapError(f"rig map {preset!r}: {sec}.{key}: a combo must be a {{morph: weight}} mapping")
            pairs = []
            for morph, weight in combo.items():
                ok = isinstance(weight, int | float) and not isinstance(weight, bool) and math.isfinite(weight)
                if not isinstance(morph, str) or not morph or not ok or not 0 <= weight <= 1:
                    raise RigMapError(f"rig map {preset!r}: {sec}.{key}: {morph!r}: {weight!r} must be a morph "
                                      "name with a weight in [0, 1]")
                pairs.append((morph, float(weight)))
            parsed.append(tuple(pairs))
        out[key] = tuple(parsed)
    return out


@dataclass(frozen=True)
class Fallbacks:
    """Approximations for visemes a preset cannot map; ``$open`` is the first of ``openers`` the model has."""

    openers: tuple[str, ...]
    visemes: Mapping[str, tuple[Combo, ...]]


@lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, RigMap], Fallbacks]:
    try:
        data = yaml.safe_load(RIGMAPS_FILE.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise RigMapError(f"cannot read the rig map presets {RIGMAPS_FILE}: {exc}") from exc
    raw = data.get("presets") if isinstance(data, dict) else None
    if not isinstance(raw, dict):
        raise RigMapError(f"{RIGMAPS_FILE}: expected a mapping with 'presets'")
    built = _build_presets(raw)
    fb = data.get("fallbacks") or {}
    openers = fb.get("openers") or []
    if not isinstance(openers, list) or not all(isinstance(o, str) for o in openers):
        raise RigMapError(f"{RIGMAPS_FILE}: fallbacks.openers must be a list of morph names")
    return built, Fallbacks(tuple(openers), _parse_section("fallbacks", "visemes", fb.get("visemes")))


def _build_presets(raw: Mapping[str, Any], known: Mapping[str, RigMap] | None = None) -> dict[str, RigMap]:
    """Build presets in dependency order (``extends``); a base may be one of ``known`` (the built-in presets)."""
    built: dict[str, RigMap] = {}
    pending: list[str] = []

    def build(name: str) -> RigMap:
        if name in built:
            return built[name]
        if name not in raw:
            if known and name in known:
                return known[name]
            raise RigMapError(f"rig map {pending[-1] if pending else name!r} extends unknown preset {name!r}")
        if name in pending:
            raise RigMapError(f"rig map presets extend each other in a cycle: {' -> '.join([*pending, name])}")
        data = raw[name]
        pending.append(name)
        base_name = data.get("extends") if isinstance(data, Mapping) else None
        if base_name is not None and not isinstance(base_name, str):
            raise RigMapError(f"rig map {name!r}: extends must be a preset name")
        base = build(base_name) if base_name else None
        pending.pop()
        built[name] = RigMap.from_dict(str(name), data, base=base)
        return built[name]

    for key in raw:
        build(key)
    return built


def presets() -> dict[str, RigMap]:
    """The built-in presets by name: ``oculus``, ``arkit``, ``rpm``, ``mixamo``, ``cc``, ``vrm``, ``generic``."""
    return dict(_builtin()[0])


def fallbacks() -> Fallbacks:
    return _builtin()[1]


def load_rigmap(source: str | Path | Mapping[str, Any], *, name: str | None = None) -> RigMap:
    """A custom preset from a YAML file path or a dict.

    The mapping is either one preset (``visemes``/``emotions``/``blinks``/``bones``, optional ``extends`` naming
    a built-in preset) or a file with ``presets:``; then ``name`` picks one (optional when there is only one).
    """
    if isinstance(source, Mapping):
        data: Any = source
        label = name or "custom"
    else:
        path = Path(source)
        try:
            data = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise RigMapError(f"cannot read the rig map {path}: {exc}") from exc
        label = name or path.stem
    if not isinstance(data, Mapping):
        raise RigMapError(f"rig map {label!r}: expected a mapping")
    if "presets" in data:
        group = data["presets"]
        if not isinstance(group, Mapping) or not group:
            raise RigMapError(f"rig map {label!r}: presets must be a non-empty mapping")
        built = _build_presets(group, presets())
        if name is None:
            if len(built) != 1:
                raise RigMapError(f"rig map file defines {sorted(built)}: pass name= to pick one")
            return next(iter(built.values()))
        if name not in built:
            raise RigMapError(f"rig map file has no preset {name!r}; it defines {sorted(built)}")
        return built[name]
    return _build_presets({label: data}, presets())[label]


# --------------------------------------------------------------------------------------------------------------
# What a model has
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MorphTarget:
    """One morph target of a mesh: ``index`` into every primitive's ``targets`` (and three.js'
    ``morphTargetInfluences``); ``name`` from ``mesh.extras.targetNames`` when three.js will see one; ``nodes``
    are the nodes that instance the mesh."""

    mesh: int
    index: int
    name: str | None
    nodes: tuple[int, ...]


@dataclass(frozen=True)
class ShapeRef:
    """A morph target a shape drives, at ``weight`` (1 for a named morph; a VRM bind's weight, 0..1)."""

    target: MorphTarget
    weight: float = 1.0


@dataclass(frozen=True)
class Inventory:
    """The shapes and nodes of one model, what :func:`resolve` maps against.

    ``shapes`` maps a shape name (a morph target name, or ``vrm:<expression>``) to every morph target it drives:
    a name used on several meshes (``Wolf3D_Head`` and ``Wolf3D_Teeth``) drives them all.
    """

    format: str
    shapes: Mapping[str, tuple[ShapeRef, ...]]
    node_names: tuple[str | None, ...]
    mesh_names: tuple[str | None, ...]
    morph_counts: tuple[int, ...]
    joints: frozenset[int]
    vrm_bones: Mapping[str, int]
    notes: tuple[str, ...] = ()

    @property
    def morph_names(self) -> tuple[str, ...]:
        """The model's named morph targets (VRM expressions excluded), in first-seen order."""
        return tuple(n for n in self.shapes if not n.startswith("vrm:"))

    @property
    def vrm_expressions(self) -> tuple[str, ...]:
        return tuple(n[4:] for n in self.shapes if n.startswith("vrm:"))

    @classmethod
    def from_doc(cls, doc: Mapping[str, Any]) -> Inventory:
        """Read a glTF document. Tolerant: entries that are malformed are skipped (validation is ``check.py``'s)."""
        meshes = _dicts(doc.get("meshes"))
        nodes = _dicts(doc.get("nodes"))
        notes: list[str] = []
        counts: list[int] = []
        names: list[list[str | None]] = []
        for i, mesh in enumerate(meshes):
            prims = _dicts(mesh.get("primitives"))
            n = len(prims[0].get("targets") or []) if prims and isinstance(prims[0].get("targets"), list) else 0
            counts.append(n)
            names.append(_target_names(i, mesh, prims, n, notes))
        users: dict[int, list[int]] = {}
        for j, node in enumerate(nodes):
            m = node.get("mesh")
            if _is_index(m, len(meshes)):
                users.setdefault(m, []).append(j)
        targets = [
            [MorphTarget(i, k, names[i][k], tuple(users.get(i, ()))) for k in range(counts[i])]
            for i in range(len(meshes))
        ]
        shapes: dict[str, list[ShapeRef]] = {}
        for mesh_targets in targets:
            for t in mesh_targets:
                if t.name is not None:
                    shapes.setdefault(t.name, []).append(ShapeRef(t))
        fmt, vrm_bones = "glb", {}
        ext = doc.get("extensions") if isinstance(doc.get("extensions"), Mapping) else {}
        if isinstance(ext.get("VRMC_vrm"), Mapping):
            fmt = "vrm1"
            vrm_bones = _vrm1(ext["VRMC_vrm"], nodes, targets, shapes)
        elif isinstance(ext.get("VRM"), Mapping):
            fmt = "vrm0"
            vrm_bones = _vrm0(ext["VRM"], nodes, targets, shapes)
        joints: set[int] = set()
        for skin in _dicts(doc.get("skins")):
            js = skin.get("joints")
            joints.update(j for j in (js if isinstance(js, list) else []) if _is_index(j, len(nodes)))
        return cls(
            format=fmt,
            shapes=MappingProxyType({k: tuple(v) for k, v in shapes.items()}),
            node_names=tuple(n.get("name") if isinstance(n.get("name"), str) else None for n in nodes),
            mesh_names=tuple(m.get("name") if isinstance(m.get("name"), str) else None for m in meshes),
            morph_counts=tuple(counts),
            joints=frozenset(joints),
            vrm_bones=MappingProxyType(vrm_bones),
            notes=tuple(notes),
        )


def _dicts(value: Any) -> list[dict[str, Any]]:
    """A list of JSON objects; anything else in the list becomes an empty object (keeps indices aligned)."""
    return [v if isinstance(v, dict) else {} for v in value] if isinstance(value, list) else []


def _is_index(value: Any, n: int) -> bool:
    return type(value) is int and 0 <= value < n


def _target_names(i: int, mesh: dict[str, Any], prims: list[dict[str, Any]], n: int,
                  notes: list[str]) -> list[str | None]:
    """Morph names as three.js will see them: ``mesh.extras.targetNames`` when its length matches the targets.

    three.js ignores a list of the wrong length (and never reads the per-primitive lists some exporters write),
    so such morphs are left unnamed: only index-based bindings (VRM) can drive them.
    """
    label = f"mesh {i}" + (f" ({mesh['name']!r})" if isinstance(mesh.get("name"), str) else "")
    extras = mesh.get("extras")
    listed = extras.get("targetNames") if isinstance(extras, dict) else None
    if n == 0:
        return []
    if isinstance(listed, list) and all(isinstance(x, str) for x in listed):
        if len(listed) == n:
            return list(listed)
        notes.append(f"{label}: extras.targetNames has {len(listed)} names for {n} morph targets, so three.js "
                     "ignores them; re-export with one name per morph target")
        return [None] * n
    prim_extras = prims[0].get("extras") if prims else None
    if isinstance(prim_extras, dict) and isinstance(prim_extras.get("targetNames"), list):
        notes.append(f"{label}: its morph target names are only in primitive extras, which three.js does not "
                     "read; morphs can be driven by index only (re-export with mesh.extras.targetNames)")
    else:
        notes.append(f"{label}: its {n} morph targets have no names (no mesh.extras.targetNames); they can be "
                     "driven by index only")
    return [None] * n


def _bind(shapes: dict[str, list[ShapeRef]], name: str, target: MorphTarget, weight: float) -> None:
    shapes.setdefault(f"vrm:{name}", []).append(ShapeRef(target, weight))


def _weight(value: Any, scale: float) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return max(0.0, min(1.0, value / scale))
    return 1.0


def _vrm0(ext: Mapping[str, Any], nodes: list[dict[str, Any]], targets: list[list[MorphTarget]],
          shapes: dict[str, list[ShapeRef]]) -> dict[str, int]:
    """VRM 0.x: blend shape groups bind (mesh, morph index, weight 0..100); humanBones is a list."""
    master = ext.get("blendShapeMaster") if isinstance(ext.get("blendShapeMaster"), Mapping) else {}
    for group in _dicts(master.get("blendShapeGroups")):
        preset = str(group.get("presetName") or "unknown").lower()
        label = str(group.get("name") or "")
        name = VRM0_PRESETS.get(preset) or VRM0_PRESETS.get(label.lower().replace(" ", "_"))
        name = name or f"custom:{label}"
        for b in _dicts(group.get("binds")):
            m, k = b.get("mesh"), b.get("index")
            if _is_index(m, len(targets)) and _is_index(k, len(targets[m])):
                _bind(shapes, name, targets[m][k], _weight(b.get("weight", 100), 100.0))
    bones: dict[str, int] = {}
    humanoid = ext.get("humanoid") if isinstance(ext.get("humanoid"), Mapping) else {}
    for hb in _dicts(humanoid.get("humanBones")):
        if isinstance(hb.get("bone"), str) and _is_index(hb.get("node"), len(nodes)):
            bones.setdefault(hb["bone"], hb["node"])
    return bones


def _vrm1(ext: Mapping[str, Any], nodes: list[dict[str, Any]], targets: list[list[MorphTarget]],
          shapes: dict[str, list[ShapeRef]]) -> dict[str, int]:
    """VRM 1.0: expressions bind (node, morph index, weight 0..1); humanBones maps a role to ``{node}``."""
    expressions = ext.get("expressions") if isinstance(ext.get("expressions"), Mapping) else {}
    for kind in ("preset", "custom"):
        group = expressions.get(kind) if isinstance(expressions.get(kind), Mapping) else {}
        for ename, expr in group.items():
            if not isinstance(expr, Mapping):
                continue
            name = str(ename) if kind == "preset" else f"custom:{ename}"
            for b in _dicts(expr.get("morphTargetBinds")):
                node, k = b.get("node"), b.get("index")
                m = nodes[node].get("mesh") if _is_index(node, len(nodes)) else None
                if _is_index(m, len(targets)) and _is_index(k, len(targets[m])):
                    t = targets[m][k]
                    _bind(shapes, name, MorphTarget(t.mesh, t.index, t.name, (node,)), _weight(b.get("weight", 1), 1.0))
    bones: dict[str, int] = {}
    humanoid = ext.get("humanoid") if isinstance(ext.get("humanoid"), Mapping) else {}
    human_bones = humanoid.get("humanBones") if isinstance(humanoid.get("humanBones"), Mapping) else {}
    for role, hb in human_bones.items():
        if isinstance(hb, Mapping) and _is_index(hb.get("node"), len(nodes)):
            bones[str(role)] = hb["node"]
    return bones


def detect_rig(inv: Inventory) -> str:
    """The rig family: ``vrm``, ``rpm``, ``cc``, ``oculus``, ``arkit``, ``mixamo`` or ``unknown``.

    Checked in that order: a VRM extension decides; ``Wolf3D_*`` meshes (or an ``Armature`` with RPM's
    prefix-less Mixamo bone names and ``viseme_*`` morphs) mean Ready Player Me; ``CC_Base_*`` bones or
    ``V_*`` visemes Character Creator; then the face vocabulary (five or more ``viseme_*``, ten or more ARKit
    names); a ``mixamorig`` skeleton last, since it says nothing about the face.
    """
    if inv.format.startswith("vrm"):
        return "vrm"
    names = [n for n in (*inv.mesh_names, *inv.node_names) if n]
    node_set = set(inv.node_names)
    visemes = sum(v in inv.shapes for v in VISEMES)
    if any(n.startswith("Wolf3D_") for n in names):
        return "rpm"
    rpm_bones = {"Hips", "Spine", "Neck", "Head", "LeftArm", "RightArm"}
    if "Armature" in node_set and rpm_bones <= node_set and visemes:
        return "rpm"
    if any(n.startswith("CC_Base_") for n in names) or {"V_Open", "V_Explosive"} & set(inv.shapes):
        return "cc"
    if visemes >= 5:
        return "oculus"
    if sum(s in inv.shapes for s in ARKIT_52) >= 10:
        return "arkit"
    if any(n.lower().startswith("mixamorig") for n in names):
        return "mixamo"
    return "unknown"


# --------------------------------------------------------------------------------------------------------------
# Resolution
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Drive:
    """Set morph ``index`` of ``mesh`` (on the meshes of ``nodes``) to ``weight`` x the target's intensity."""

    mesh: int
    index: int
    weight: float
    name: str | None
    nodes: tuple[int, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"mesh": self.mesh, "index": self.index, "weight": round(self.weight, 6), "name": self.name,
                "nodes": list(self.nodes)}


@dataclass(frozen=True)
class Term:
    """One shape of a combo (a morph name or ``vrm:<expression>``) at ``weight``, and the morph targets it sets."""

    shape: str
    weight: float
    drives: tuple[Drive, ...]

    def as_dict(self) -> dict[str, Any]:
        return {"shape": self.shape, "weight": self.weight, "targets": [d.as_dict() for d in self.drives]}


@dataclass(frozen=True)
class Resolved:
    """How one of our targets is shown on this model: ``status`` (see :data:`STATUSES`), the preset it came from
    (``fallback`` for approximations) and the shapes to set. No terms = the rest pose (all weights 0)."""

    status: str
    source: str | None
    terms: tuple[Term, ...] = ()

    @property
    def available(self) -> bool:
        """Shown by the model's own shapes (direct or mapped), not approximated or missing."""
        return self.status in ("direct", "mapped")

    def describe(self) -> str:
        """``jawOpen 0.6 + mouthFunnel 0.15``; ``the closed mouth (all weights 0)`` for the rest pose."""
        if self.status == "missing":
            return "nothing"
        if not self.terms:
            return "the closed mouth (all weights 0)"
        return " + ".join(t.shape if t.weight == 1.0 else f"{t.shape} {t.weight:g}" for t in self.terms)

    def shapes(self) -> dict[str, float]:
        return {t.shape: t.weight for t in self.terms}

    def as_dict(self) -> dict[str, Any]:
        return {"status": self.status, "source": self.source, "shapes": [t.as_dict() for t in self.terms]}


@dataclass(frozen=True)
class BoneRef:
    """The node playing a bone role: its index, glTF name and the name three.js gives it (``:``/``.`` removed)."""

    role: str
    node: int
    name: str | None
    three_name: str
    source: str

    def as_dict(self) -> dict[str, Any]:
        return {"node": self.node, "name": self.name, "three_name": self.three_name, "source": self.source}


def three_node_name(name: str | None) -> str:
    """The name three.js' GLTFLoader gives a node (``PropertyBinding.sanitizeNodeName``; duplicates get ``_1``...)."""
    return re.sub(r"[\[\]\.:/]", "", re.sub(r"\s", "_", name or ""))


@dataclass(frozen=True)
class Resolution:
    """The mapping chosen for one model: our name -> the model's shapes (with mesh/morph indices) or node."""

    face_preset: str | None
    bone_preset: str | None
    visemes: Mapping[str, Resolved]
    emotions: Mapping[str, Resolved]
    blinks: Mapping[str, Resolved]
    bones: Mapping[str, BoneRef]

    @property
    def lipsync(self) -> str:
        """``full``: all 15 visemes direct or mapped; ``reduced``: some mouth movement (approximations);
        ``none``: no shape on the model moves the mouth."""
        if all(r.available for r in self.visemes.values()):
            return "full"
        return "reduced" if any(r.terms for r in self.visemes.values()) else "none"

    @property
    def emotion_level(self) -> str:
        """``full``: happy, sad, angry and surprised all shown; ``reduced``: some emotion; ``none``."""
        if all(self.emotions[e].available for e in CORE_EMOTIONS):
            return "full"
        return "reduced" if any(r.available for r in self.emotions.values()) else "none"

    @property
    def blink_level(self) -> str:
        """``full``: each eye on its own; ``reduced``: both eyes together only; ``none``."""
        if self.blinks["blinkLeft"].available and self.blinks["blinkRight"].available:
            return "full"
        return "reduced" if self.blinks["blink"].available else "none"

    @property
    def gesture_level(self) -> str:
        """``full``: head, neck and both shoulders/upper arms (nod, tilt, shrug); ``reduced``: a head or neck bone
        (nod, tilt); ``none``: no skeleton to move, gestures sway the whole model."""
        b = self.bones
        arms = all(f"{s}Shoulder" in b or f"{s}UpperArm" in b for s in ("left", "right"))
        if "head" in b and "neck" in b and arms:
            return "full"
        return "reduced" if "head" in b or "neck" in b else "none"

    def names(self) -> dict[str, Any]:
        """The compact mapping, our name -> the model's: ``{"viseme_aa": {"jawOpen": 0.6}, "head": "Head"}``."""
        out: dict[str, Any] = {}
        for group in (self.visemes, self.emotions, self.blinks):
            out.update({k: r.shapes() for k, r in group.items() if r.status != "missing"})
        out.update({role: ref.name for role, ref in self.bones.items()})
        return out

    def as_dict(self) -> dict[str, Any]:
        return {
            "face_preset": self.face_preset,
            "bone_preset": self.bone_preset,
            "visemes": {k: r.as_dict() for k, r in self.visemes.items()},
            "emotions": {k: r.as_dict() for k, r in self.emotions.items()},
            "blinks": {k: r.as_dict() for k, r in self.blinks.items()},
            "bones": {k: b.as_dict() for k, b in self.bones.items()},
        }


def _apply(combo: Combo, inv: Inventory) -> tuple[Term, ...] | None:
    terms = []
    for shape, weight in combo:
        refs = inv.shapes.get(shape)
        if not refs:
            return None
        drives = tuple(Drive(r.target.mesh, r.target.index, weight * r.weight, r.target.name, r.target.nodes)
                       for r in refs)
        terms.append(Term(shape, weight, drives))
    return tuple(terms)


def _resolve_one(combos: Iterable[Combo], inv: Inventory, source: str) -> Resolved | None:
    for combo in combos:
        terms = _apply(combo, inv)
        if terms is not None:
            direct = len(combo) == 1 and combo[0][1] == 1.0
            return Resolved("direct" if direct else "mapped", source, terms)
    return None


def _face(preset: RigMap | None, inv: Inventory) -> dict[str, dict[str, Resolved]]:
    out: dict[str, dict[str, Resolved]] = {}
    fb = fallbacks()
    opener = next((o for o in fb.openers if o in inv.shapes), None)
    for sec in _SECTIONS:
        resolved: dict[str, Resolved] = {}
        for key in _TARGETS[sec]:
            r = _resolve_one(preset.section(sec).get(key, ()), inv, preset.name) if preset else None
            if r is None and sec == "visemes":
                combos = [tuple((opener if s == _OPEN else s, w) for s, w in c)
                          for c in fb.visemes.get(key, ()) if opener or all(s != _OPEN for s, _ in c)]
                r = _resolve_one(combos, inv, "fallback")
                if r is not None:
                    r = Resolved("approx", "fallback", r.terms)
            resolved[key] = r or Resolved("missing", None)
        out[sec] = resolved
    return out


def _norm_bone(name: str) -> str:
    s = re.sub(r"^(mixamorig\d*|armature)(?=[^a-z0-9]|[A-Z])", "", name, flags=re.IGNORECASE)
    return re.sub(r"[^a-z0-9]", "", s.lower())


def _bones(preset: RigMap, inv: Inventory) -> tuple[dict[str, BoneRef], int]:
    # A skinned model's bones are its joints: a mesh node named "Head" must not pass for the head bone.
    by_name: dict[str, list[int]] = {}
    by_norm: dict[str, list[int]] = {}
    for i, n in enumerate(inv.node_names):
        if n and (not inv.joints or i in inv.joints):
            by_name.setdefault(n, []).append(i)
            by_norm.setdefault(_norm_bone(n), []).append(i)

    out: dict[str, BoneRef] = {}
    exact = 0
    used: set[int] = set()
    for role, candidates in preset.bones.items():
        node: int | None = None
        for c in candidates:
            if c.startswith("vrm:"):
                node = inv.vrm_bones.get(c[4:])
            elif c in by_name:
                node = by_name[c][0]
            if node is not None:
                exact += 1
                break
        if node is None:
            for c in candidates:
                if not c.startswith("vrm:") and _norm_bone(c) in by_norm:
                    node = by_norm[_norm_bone(c)][0]
                    break
        if node is not None and node not in used:
            used.add(node)
            name = inv.node_names[node]
            out[role] = BoneRef(role, node, name, three_node_name(name), preset.name)
    return out, exact


def _as_preset(preset: str | Path | RigMap | Mapping[str, Any]) -> RigMap:
    if isinstance(preset, RigMap):
        return preset
    if isinstance(preset, Mapping):
        return load_rigmap(preset)
    if isinstance(preset, str) and preset in presets():
        return presets()[preset]
    if isinstance(preset, Path) or (isinstance(preset, str) and preset.endswith((".yaml", ".yml"))):
        return load_rigmap(preset)
    raise RigMapError(f"unknown rig map preset {preset!r}; built-in presets: {', '.join(presets())} "
                      "(or pass a RigMap, a dict or a YAML path)")


def inventory_of(report_or_doc: Any) -> Inventory:
    """The :class:`Inventory` of an ``AvatarReport``, an ``Inventory`` or a parsed glTF document (dict)."""
    if isinstance(report_or_doc, Inventory):
        return report_or_doc
    inv = getattr(report_or_doc, "inventory", None)
    if isinstance(inv, Inventory):
        return inv
    if isinstance(report_or_doc, Mapping):
        return Inventory.from_doc(report_or_doc)
    raise RigMapError(f"resolve() needs an AvatarReport, an Inventory or a glTF document, not "
                      f"{type(report_or_doc).__name__}")


def resolve(report_or_doc: Any, preset: str | Path | RigMap | Mapping[str, Any] | None = None) -> Resolution:
    """Map our visemes, emotions, blinks and bone roles onto a model.

    ``report_or_doc``: an ``AvatarReport`` (from ``check_avatar``), an :class:`Inventory` or a glTF JSON dict.
    ``preset``: a built-in preset name, a :class:`RigMap`, a dict or a YAML path. Without one the best preset is
    chosen per concern (see the module docstring). A preset that has no face part (``mixamo``) leaves the face to
    automatic choice, and one without bones the skeleton.
    """
    inv = inventory_of(report_or_doc)
    chosen = _as_preset(preset) if preset is not None else None
    rig = detect_rig(inv)
    all_presets = presets()

    if chosen is not None and chosen.has_face:
        face_preset: RigMap | None = chosen
        face = _face(chosen, inv)
    else:
        face_preset, face, best = None, _face(None, inv), None
        for p in all_presets.values():
            if not p.has_face:
                continue
            res = _face(p, inv)
            score = (  # rest-pose combos ({} for sil/PP) apply to any model: only shapes the model has count
                sum(r.available and bool(r.terms) for r in res["visemes"].values()),
                sum(res["emotions"][e].available for e in CORE_EMOTIONS),
                sum(r.available for r in res["blinks"].values()),
                sum(r.available for r in res["emotions"].values()),
                p.name == rig,
                sum(r.status == "direct" for sec in res.values() for r in sec.values()),
            )
            if score[:4] != (0, 0, 0, 0) and (best is None or score > best):
                best, face_preset, face = score, p, res

    if chosen is not None and chosen.has_bones:
        bone_preset: RigMap | None = chosen
        bones, _ = _bones(chosen, inv)
    else:
        bone_preset, bones, best_b = None, {}, None
        for p in all_presets.values():
            if not p.has_bones:
                continue
            found, exact = _bones(p, inv)
            score_b = (len(found), exact, p.name == rig)
            if found and (best_b is None or score_b > best_b):
                best_b, bone_preset, bones = score_b, p, found

    return Resolution(
        face_preset=face_preset.name if face_preset else None,
        bone_preset=bone_preset.name if bone_preset else None,
        visemes=MappingProxyType(face["visemes"]),
        emotions=MappingProxyType(face["emotions"]),
        blinks=MappingProxyType(face["blinks"]),
        bones=MappingProxyType(bones),
    )


__all__ = [
    "ARKIT_52",
    "BLINKS",
    "BONE_ROLES",
    "CORE_EMOTIONS",
    "EMOTIONS",
    "STATUSES",
    "BoneRef",
    "Drive",
    "Inventory",
    "MorphTarget",
    "Resolution",
    "Resolved",
    "RigMap",
    "RigMapError",
    "Term",
    "detect_rig",
    "fallbacks",
    "inventory_of",
    "load_rigmap",
    "presets",
    "resolve",
    "three_node_name",
]

"""Re-package an avatar in another rig format: a Ready Player Me style export, or a VRM 1.0 model.

The geometry, skin and morph targets stay byte for byte the same (only the glTF JSON changes), so the same
character can be compared across formats: the renderer must animate it as well from RPM names or from VRM
expressions bound by index as from its own ``viseme_*`` / ARKit names. Notebook 04 and the browser tests use these
to show real characters as RPM and VRM avatars; they are also handy to test a pipeline against the formats users
arrive with.

- :func:`to_rpm_export`: RPM's layout (``Armature`` root, ``Wolf3D_Head`` / ``Wolf3D_Body`` / ``Wolf3D_Hair``
  meshes, Mixamo-style bones), with the morph targets (as exported with ``morphTargets=ARKit,Oculus Visemes``) or
  without them (an export made without that parameter: the checker then says what is missing).
- :func:`to_vrm1`: a ``VRMC_vrm`` 1.0 extension: humanoid bones, and the preset expressions (``aa ih ou ee oh``,
  blinks, ``happy angry sad relaxed surprised``) bound to the model's morph targets by node and index, the
  morph names removed (as many exporters leave them), so only the VRM mapping can drive them.
"""

from __future__ import annotations

import copy
from typing import Any

from .check import check_avatar
from .testing_glb import rewrite_json

__all__ = ["to_rpm_export", "to_vrm1"]

_RPM_MESHES = {"Face": "Wolf3D_Head", "Body": "Wolf3D_Body", "Hair": "Wolf3D_Hair"}

# VRM 1.0 preset expression -> our target that gives its shapes
_VRM_FROM_OURS = {
    "aa": ("visemes", "viseme_aa"), "ih": ("visemes", "viseme_I"), "ou": ("visemes", "viseme_U"),
    "ee": ("visemes", "viseme_E"), "oh": ("visemes", "viseme_O"),
    "blink": ("blinks", "blink"), "blinkLeft": ("blinks", "blinkLeft"), "blinkRight": ("blinks", "blinkRight"),
    "happy": ("emotions", "happy"), "angry": ("emotions", "angry"), "sad": ("emotions", "sad"),
    "relaxed": ("emotions", "relaxed"), "surprised": ("emotions", "surprised"),
}  # fmt: skip


def to_rpm_export(glb: bytes, *, morph_targets: bool = True) -> bytes:
    """The avatar laid out like a Ready Player Me ``.glb`` export (see the module docstring)."""

    def edit(doc: dict[str, Any]) -> None:
        scene = doc["scenes"][doc.get("scene", 0)]
        for root in scene.get("nodes", []):
            doc["nodes"][root]["name"] = "Armature"
        for node in doc["nodes"]:
            if node.get("name") in _RPM_MESHES:
                node["name"] = _RPM_MESHES[node["name"]]
        for mesh in doc.get("meshes", []):
            if mesh.get("name") in _RPM_MESHES:
                mesh["name"] = _RPM_MESHES[mesh["name"]]
            if not morph_targets:
                for prim in mesh.get("primitives", []):
                    prim.pop("targets", None)
                mesh.pop("weights", None)
                (mesh.get("extras") or {}).pop("targetNames", None)
        doc["asset"]["generator"] = "avatarium-lab (Ready Player Me layout" + (
            ")" if morph_targets else ", exported without morph targets)")

    return rewrite_json(glb, edit)


def to_vrm1(glb: bytes, *, title: str | None = None) -> bytes:
    """The avatar as a VRM 1.0 model whose expressions bind its morph targets by index (names removed)."""
    report = check_avatar(glb)
    res = report.mapping
    groups = {"visemes": res.visemes, "emotions": res.emotions, "blinks": res.blinks}

    def edit(doc: dict[str, Any]) -> None:
        original = copy.deepcopy(doc)
        mesh_node = {n["mesh"]: i for i, n in enumerate(original["nodes"]) if "mesh" in n}
        preset: dict[str, Any] = {}
        for expr, (group, ours) in _VRM_FROM_OURS.items():
            resolved = groups[group].get(ours)
            if resolved is None or not resolved.available:
                continue
            binds = [{"node": mesh_node[d.mesh], "index": d.index, "weight": round(min(1.0, d.weight), 4)}
                     for t in resolved.terms for d in t.drives if d.mesh in mesh_node]
            if binds:
                preset[expr] = {"morphTargetBinds": binds, "isBinary": False}
        preset["neutral"] = {"morphTargetBinds": []}
        human = {role: {"node": ref.node} for role, ref in res.bones.items()}
        doc.setdefault("extensionsUsed", [])
        if "VRMC_vrm" not in doc["extensionsUsed"]:
            doc["extensionsUsed"].append("VRMC_vrm")
        doc.setdefault("extensions", {})["VRMC_vrm"] = {
            "specVersion": "1.0",
            "meta": {"name": title or report.name or "avatar", "version": "1", "authors": ["avatarium-lab"],
                     "licenseUrl": "https://vrm.dev/licenses/1.0/", "avatarPermission": "everyone",
                     "commercialUsage": "personalNonProfit"},
            "humanoid": {"humanBones": human},
            "expressions": {"preset": preset},
        }
        for mesh in doc.get("meshes", []):
            (mesh.get("extras") or {}).pop("targetNames", None)
        doc["asset"]["generator"] = "avatarium-lab (VRM 1.0 conversion)"

    return rewrite_json(glb, edit)

"""Validate an avatar file (GLB, Ready Player Me export, VRM 0.x/1.0) and describe what it can do.

:func:`check_avatar` reads a GLB without trusting any field of it and either raises a typed error (a subclass of
:class:`AvatarCheckError`, itself an :class:`~avatarium_lab.errors.AvatarError` with code ``invalid_avatar``) whose
message says what is wrong and where, or returns an :class:`AvatarReport`: format, rig, counts, which visemes,
emotions, blinks and bones the model has (directly or through a :mod:`~avatarium_lab.avatar.rigmap` preset),
capability levels and human-readable issues.

Decisions:

- **Bounded work for any input.** The whole file is in memory (its size is checked before it is read, against
  ``max_bytes``); every declared length is compared with the bytes actually present before anything is sliced, and
  nothing is ever allocated from a declared size. The JSON chunk is refused above :data:`MAX_JSON_BYTES` or
  :data:`MAX_JSON_SEPARATORS` commas and colons (a proxy for the number of Python objects ``json.loads`` would
  create), every list is length-checked before it is walked, the node hierarchy is walked iteratively (a cycle or
  a node with two parents is an error) and the only accessor data read is index and sparse-index arrays (to check
  they stay in range), which are inside the file.
- **Strict where three.js would break, lenient where it copes.** Out-of-range references, reads past a buffer,
  bad component types, inconsistent morph target counts and external URIs are errors. Things three.js tolerates
  (names it ignores, unknown chunk types, required extensions that need a decoder) become ``issues``.
- **No external references.** A ``uri`` that is not a ``data:`` URI anywhere in the JSON (buffers, images,
  extensions) is refused: a GLB uploaded to a server must not make it fetch URLs or read local files. ``data:``
  URIs are decoded and count towards ``max_bytes``.
- **Limits are module constants** (``MAX_*``), generous for real avatars (a Ready Player Me full body has ~20
  meshes, ~70 joints, ~70 morph targets per head mesh, ~40k vertices) and small enough to bound a renderer.
- Integers may be written as ``4.0`` (JSON Schema counts them as integers); booleans are never integers.
"""

from __future__ import annotations

import base64
import binascii
import json
import math
import os
import stat
import struct
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np

from ..errors import AvatarError
from . import VISEMES
from . import rigmap as _rigmap
from .rigmap import ARKIT_52, EMOTIONS, Inventory, Resolution, RigMap

# --------------------------------------------------------------------------------------------------------------
# Limits
# --------------------------------------------------------------------------------------------------------------

MAX_FILE_BYTES = 50 * 1024 * 1024
"""Default ``max_bytes``: the file plus everything decoded from ``data:`` URIs."""
MAX_JSON_BYTES = 32 * 1024 * 1024
MAX_JSON_SEPARATORS = 1_000_000
"""Commas + colons in the JSON chunk: bounds the objects ``json.loads`` creates (~100 MB worst case)."""
MAX_CHUNKS = 64
MAX_MESHES = 512
MAX_PRIMITIVES = 4096
"""Primitives over all meshes."""
MAX_NODES = 2000
MAX_MORPH_TARGETS = 1000
"""Morph targets per mesh."""
MAX_VERTICES = 2_000_000
"""Vertices over all meshes (distinct POSITION accessors)."""
MAX_JOINTS = 256
"""Joints per skin."""
MAX_SKINS = 256
MAX_ACCESSORS = 65_536
MAX_BUFFER_VIEWS = 65_536
MAX_BUFFERS = 64
MAX_ACCESSOR_COUNT = 1 << 24
"""Elements in one accessor (16.7 M: indices of a 2 M-vertex model fit)."""
MAX_DECODED_BYTES = 1 << 30
"""Sum of count x element size over all accessors: what a loader materialises (sparse accessors included)."""
MAX_MATERIALS = 1024
MAX_TEXTURES = 1024
MAX_IMAGES = 1024
MAX_SAMPLERS = 1024
MAX_SCENES = 64
MAX_CAMERAS = 256
MAX_ANIMATIONS = 256
MAX_ANIMATION_CHANNELS = 65_536
"""Channels (and samplers) over all animations."""
MAX_VRM_BINDS = 65_536
"""VRM expression binds over all expressions."""

# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class AvatarCheckError(AvatarError):
    """An avatar file failed validation; ``reason`` is a stable machine name of the failure kind."""

    reason = "invalid"


class NotAGlb(AvatarCheckError):
    """Empty, or not a binary glTF at all (the message guesses what it is: .gltf JSON, HTML, ZIP, FBX...)."""

    reason = "not_glb"


class UnsupportedVersion(AvatarCheckError):
    reason = "unsupported_version"


class TruncatedAvatar(AvatarCheckError):
    """The file is shorter than its header says (an interrupted download or upload)."""

    reason = "truncated"


class LengthMismatch(AvatarCheckError):
    """The file is longer than its header says (bytes appended after the GLB)."""

    reason = "length_mismatch"


class BadChunk(AvatarCheckError):
    """The chunk layout is wrong: JSON not first, a length past the end, misalignment, two BIN chunks..."""

    reason = "bad_chunk"


class BadJson(AvatarCheckError):
    reason = "bad_json"


class AvatarTooLarge(AvatarCheckError):
    """Over ``max_bytes`` (the file, or with its decoded ``data:`` URIs), or a JSON chunk over the limit."""

    reason = "too_large"


class TooComplex(AvatarCheckError):
    """A count over one of the ``MAX_*`` limits (meshes, nodes, vertices, morph targets, joints, accessor count)."""

    reason = "too_complex"


class OutOfBounds(AvatarCheckError):
    """An accessor, buffer view or index reads past the data it points into."""

    reason = "out_of_bounds"


class BadReference(AvatarCheckError):
    """An index refers to something that does not exist, or a node has two parents."""

    reason = "bad_reference"


class NodeCycle(BadReference):
    reason = "node_cycle"


class ExternalReference(AvatarCheckError):
    """A ``uri`` that is not a ``data:`` URI: refused, a GLB must be self-contained."""

    reason = "external_reference"


class InvalidGltf(AvatarCheckError):
    """A field has the wrong type or an invalid value (component type, accessor type, mode, stride...)."""

    reason = "invalid_gltf"


class UnreadableAvatar(AvatarCheckError):
    """The path does not exist, is not a regular file or cannot be read."""

    reason = "unreadable"


# --------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------

VISEME_SOUNDS: Mapping[str, str] = MappingProxyType({
    "viseme_sil": "silence", "viseme_PP": "closed-lips sounds (p, b, m)", "viseme_FF": "lip-teeth sounds (f, v)",
    "viseme_TH": "tongue-teeth sounds (th)", "viseme_DD": "tongue-ridge sounds (t, d)",
    "viseme_kk": "back-of-tongue sounds (k, g)", "viseme_CH": "hushing sounds (ch, j, sh)",
    "viseme_SS": "hissing sounds (s, z)", "viseme_nn": "nasal and lateral sounds (n, l)",
    "viseme_RR": "r sounds", "viseme_aa": "the open vowel (a as in 'car')", "viseme_E": "e as in 'bed'",
    "viseme_I": "i as in 'sit'", "viseme_O": "o as in 'go'", "viseme_U": "u as in 'boot'",
})  # fmt: skip

RPM_REEXPORT_HINT = (
    "re-export from Ready Player Me with morphTargets=ARKit,Oculus Visemes (the .glb URL parameter "
    "?morphTargets=ARKit,Oculus%20Visemes; the service closed on 2026-01-31, so use an export made with it, or "
    "add the shapes in Blender)"
)


@dataclass(frozen=True)
class Counts:
    """How big the model is. ``vertices`` counts distinct POSITION accessors; ``morph_targets`` sums the targets
    of every mesh (a name shared by two meshes counts twice); ``bytes`` is the file size and ``embedded_bytes``
    what its ``data:`` URIs decode to."""

    meshes: int = 0
    primitives: int = 0
    nodes: int = 0
    vertices: int = 0
    triangles: int = 0
    morph_targets: int = 0
    morph_names: int = 0
    skins: int = 0
    joints: int = 0
    materials: int = 0
    textures: int = 0
    images: int = 0
    animations: int = 0
    bytes: int = 0
    embedded_bytes: int = 0

    def as_dict(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


@dataclass(frozen=True)
class AvatarReport:
    """What a validated avatar is and can do.

    ``lipsync``/``emotions``/``blinks``/``gestures`` are ``full``, ``reduced`` or ``none`` (definitions on
    :class:`~avatarium_lab.avatar.rigmap.Resolution`); ``visemes``, ``emotion_shapes`` and ``blink_shapes`` give each
    target's status (``direct``, ``mapped``, ``approx``, ``missing``); ``bones`` maps a role to the node name;
    ``mapping`` is the full :class:`~avatarium_lab.avatar.rigmap.Resolution` with mesh/morph indices.
    """

    name: str | None
    format: str
    rig: str
    counts: Counts
    lipsync: str
    emotions: str
    blinks: str
    gestures: str
    visemes: Mapping[str, str]
    emotion_shapes: Mapping[str, str]
    blink_shapes: Mapping[str, str]
    arkit_shapes: tuple[str, ...]
    bones: Mapping[str, str | None]
    morph_names: tuple[str, ...]
    vrm_expressions: tuple[str, ...]
    issues: tuple[str, ...]
    mapping: Resolution = field(repr=False)
    extensions: tuple[str, ...] = ()
    generator: str | None = None
    vrm_meta: Mapping[str, str] = field(default_factory=dict)
    inventory: Inventory | None = field(default=None, repr=False, compare=False)

    @property
    def ok(self) -> bool:
        """Usable as a talking head: lip sync of some kind."""
        return self.lipsync != "none"

    def as_dict(self) -> dict[str, Any]:
        """Everything as plain JSON types (the inventory is summarised by ``morph_names``/``vrm_expressions``)."""
        return {
            "name": self.name,
            "format": self.format,
            "rig": self.rig,
            "generator": self.generator,
            "counts": self.counts.as_dict(),
            "lipsync": self.lipsync,
            "emotions": self.emotions,
            "blinks": self.blinks,
            "gestures": self.gestures,
            "visemes": dict(self.visemes),
            "emotion_shapes": dict(self.emotion_shapes),
            "blink_shapes": dict(self.blink_shapes),
            "arkit_shapes": list(self.arkit_shapes),
            "bones": dict(self.bones),
            "morph_names": list(self.morph_names),
            "vrm_expressions": list(self.vrm_expressions),
            "extensions": list(self.extensions),
            "vrm_meta": dict(self.vrm_meta),
            "issues": list(self.issues),
            "mapping": self.mapping.as_dict(),
        }

    def summary(self) -> str:
        """A few readable lines: what the model is, what it can do, what is missing."""
        c = self.counts
        title = f"{self.name or 'avatar'}: {self.format.upper()}, rig {self.rig}"
        if self.generator:
            title += f" (made by {self.generator})"
        lines = [
            title,
            f"  {c.meshes} meshes / {c.primitives} primitives, {c.nodes} nodes, {c.vertices:,} vertices, "
            f"{c.morph_targets} morph targets ({c.morph_names} names), {c.joints} joints, {c.bytes:,} bytes",
            f"  lip sync {self.lipsync}, emotions {self.emotions}, blinks {self.blinks}, gestures {self.gestures}"
            f" (face preset {self.mapping.face_preset or '-'}, bone preset {self.mapping.bone_preset or '-'})",
        ]
        direct = [v for v, s in self.visemes.items() if s == "direct"]
        mapped = [v for v, s in self.visemes.items() if s == "mapped"]
        approx = [v for v, s in self.visemes.items() if s == "approx"]
        missing = [v for v, s in self.visemes.items() if s == "missing"]
        parts = [f"{len(direct)} direct", f"{len(mapped)} mapped"]
        if approx:
            parts.append(f"{len(approx)} approximated")
        if missing:
            parts.append(f"{len(missing)} missing")
        lines.append(f"  visemes: {', '.join(parts)}; ARKit shapes: {len(self.arkit_shapes)}/52")
        if self.vrm_expressions:
            lines.append(f"  VRM expressions: {', '.join(self.vrm_expressions)}")
        if self.bones:
            lines.append("  bones: " + ", ".join(f"{role}={name}" for role, name in self.bones.items()))
        for issue in self.issues:
            lines.append(f"  - {issue}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.summary()


# --------------------------------------------------------------------------------------------------------------
# Small, strict accessors of untrusted JSON
# --------------------------------------------------------------------------------------------------------------

_PLURAL = {
    "accessors": "accessor", "bufferViews": "buffer view", "buffers": "buffer", "meshes": "mesh", "nodes": "node",
    "skins": "skin", "materials": "material", "textures": "texture", "images": "image", "samplers": "sampler",
    "scenes": "scene", "cameras": "camera", "animations": "animation",
}  # fmt: skip
_LIMITS = {
    "accessors": MAX_ACCESSORS, "bufferViews": MAX_BUFFER_VIEWS, "buffers": MAX_BUFFERS, "meshes": MAX_MESHES,
    "nodes": MAX_NODES, "skins": MAX_SKINS, "materials": MAX_MATERIALS, "textures": MAX_TEXTURES,
    "images": MAX_IMAGES, "samplers": MAX_SAMPLERS, "scenes": MAX_SCENES, "cameras": MAX_CAMERAS,
    "animations": MAX_ANIMATIONS,
}  # fmt: skip

_COMPONENT_SIZE = {5120: 1, 5121: 1, 5122: 2, 5123: 2, 5125: 4, 5126: 4}
_COMPONENT_NAME = {5120: "BYTE", 5121: "UNSIGNED_BYTE", 5122: "SHORT", 5123: "UNSIGNED_SHORT",
                   5125: "UNSIGNED_INT", 5126: "FLOAT"}
_DTYPES = {5121: np.dtype("<u1"), 5123: np.dtype("<u2"), 5125: np.dtype("<u4")}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT2": 4, "MAT3": 9, "MAT4": 16}
_DECODER_EXTENSIONS = {
    "KHR_draco_mesh_compression": "the Draco decoder (DRACOLoader)",
    "EXT_meshopt_compression": "the meshopt decoder",
    "KHR_texture_basisu": "the KTX2/Basis transcoder (KTX2Loader)",
}


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


def _as_int(value: Any) -> int | None:
    if type(value) is int:
        return value
    if type(value) is float and math.isfinite(value) and value.is_integer():
        return int(value)
    return None


def _is_number(value: Any) -> bool:
    return type(value) in (int, float) and math.isfinite(value)


def _element_size(typ: str, csize: int) -> int:
    """Bytes per element; matrix columns are padded to 4 bytes (glTF 2.0 data alignment)."""
    if typ == "MAT2" and csize == 1:
        return 8
    if typ == "MAT3" and csize in (1, 2):
        return 12 * csize
    return _NCOMP[typ] * csize


def _data_uri(uri: str, where: str) -> bytes:
    """Decode a ``data:`` URI (base64 or percent-encoded); its size is bounded by the JSON chunk it sits in."""
    header, sep, payload = uri.partition(",")
    if not sep:
        raise InvalidGltf(f"{where}: malformed data: URI (no ',' after the media type)")
    if header.lower().endswith(";base64"):
        try:
            return base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise InvalidGltf(f"{where}: the base64 of its data: URI does not decode ({exc})") from exc
    return urllib.parse.unquote_to_bytes(payload)


@dataclass
class _View:
    buffer: int
    offset: int
    length: int
    stride: int | None


@dataclass
class _Accessor:
    count: int
    ctype: int
    typ: str
    view: int | None
    offset: int
    sparse: bool


class _Validator:
    """One pass over the document; raises at the first problem, collects ``issues`` for tolerable ones."""

    def __init__(self, doc: dict[str, Any], bin_chunk: memoryview | None, file_bytes: int, max_bytes: int) -> None:
        self.doc = doc
        self.bin = bin_chunk
        self.file_bytes = file_bytes
        self.max_bytes = max_bytes
        self.issues: list[str] = []
        self.sizes: dict[str, int] = {}
        self.buffer_data: list[memoryview | bytes] = []
        self.views: list[_View] = []
        self.accessors: list[_Accessor] = []
        self.index_max: dict[int, int] = {}
        self.embedded = 0
        self.targets_per_mesh: list[int] = []
        self.counts: dict[str, int] = {}

    # --- helpers ----------------------------------------------------------------------------------------------

    def items(self, key: str) -> list[Any]:
        value = self.doc.get(key, [])
        if not isinstance(value, list):
            raise InvalidGltf(f"'{key}' must be a list, not {type(value).__name__}")
        limit = _LIMITS[key]
        if len(value) > limit:
            raise TooComplex(f"the file has {len(value)} {_PLURAL[key] if len(value) == 1 else key}; "
                             f"at most {limit} are allowed")
        for i, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidGltf(f"{_PLURAL[key]} {i} must be a JSON object, not {_short(item)}")
        return value

    def ref(self, value: Any, key: str, where: str) -> int:
        n = self.sizes[key]
        idx = _as_int(value)
        singular = _PLURAL[key]
        if idx is None:
            raise InvalidGltf(f"{where} must be a {singular} index (an integer), not {_short(value)}")
        if not 0 <= idx < n:
            have = f"has no {key}" if n == 0 else f"has only {n} {singular if n == 1 else key}"
            if key == "bufferViews":
                have = "has no buffer views" if n == 0 else f"has only {n} buffer view{'s' * (n != 1)}"
            raise BadReference(f"{where} refers to {singular} {idx}, but the file {have}")
        return idx

    @staticmethod
    def uint(obj: dict[str, Any], key: str, where: str, default: int | None = None, *, minimum: int = 0) -> int:
        if key not in obj:
            if default is None:
                raise InvalidGltf(f"{where} has no '{key}'")
            return default
        v = _as_int(obj[key])
        if v is None or v < minimum:
            raise InvalidGltf(f"{where}: '{key}' must be an integer >= {minimum}, not {_short(obj[key])}")
        return v

    @staticmethod
    def sub(obj: dict[str, Any], key: str, where: str, kind: type = dict) -> Any:
        value = obj.get(key)
        if value is None:
            return kind()
        if not isinstance(value, kind):
            raise InvalidGltf(f"{where}: '{key}' must be a {'JSON object' if kind is dict else 'list'}, "
                              f"not {_short(value)}")
        return value

    @staticmethod
    def numbers(value: Any, n: int | None, where: str) -> None:
        if not isinstance(value, list) or (n is not None and len(value) != n) or not all(map(_is_number, value)):
            want = f"{n} numbers" if n is not None else "a list of numbers"
            raise InvalidGltf(f"{where} must be {want}, not {_short(value)}")

    # --- the pass ---------------------------------------------------------------------------------------------

    def run(self) -> None:
        doc = self.doc
        asset = doc.get("asset")
        if not isinstance(asset, dict) or not isinstance(asset.get("version"), str):
            raise InvalidGltf("the JSON has no 'asset' with a 'version' (required by glTF and by three.js)")
        if not asset["version"].startswith("2."):
            raise UnsupportedVersion(f"asset.version is {asset['version']!r}; only glTF 2.x is supported")
        for key in ("extensionsUsed", "extensionsRequired"):
            value = doc.get(key, [])
            if not isinstance(value, list) or not all(isinstance(x, str) for x in value) or len(value) > 256:
                raise InvalidGltf(f"'{key}' must be a list of extension names")
        for ext in doc.get("extensionsRequired", []):
            if ext in _DECODER_EXTENSIONS:
                self.issues.append(f"requires {ext}: the viewer needs {_DECODER_EXTENSIONS[ext]} to load it")
        collections = {k: self.items(k) for k in _LIMITS}
        self.sizes = {k: len(v) for k, v in collections.items()}
        self._buffers(collections["buffers"])
        self._views(collections["bufferViews"])
        self._accessors(collections["accessors"])
        self._images_textures(collections)
        self._meshes(collections["meshes"])
        self._nodes(collections["nodes"], collections["skins"], collections["scenes"])
        self._animations(collections["animations"])
        self._no_external_uris()
        if self.file_bytes + self.embedded > self.max_bytes:
            raise AvatarTooLarge(f"too large: {self.file_bytes:,} bytes plus {self.embedded:,} bytes decoded from "
                                 f"data: URIs exceed the limit of {self.max_bytes:,} bytes")
        scene = doc.get("scene")
        if scene is not None:
            self.ref(scene, "scenes", "'scene'")

    def _buffers(self, buffers: list[dict[str, Any]]) -> None:
        for i, b in enumerate(buffers):
            where = f"buffer {i}"
            length = self.uint(b, "byteLength", where, minimum=1)
            uri = b.get("uri")
            if uri is not None:
                if not isinstance(uri, str):
                    raise InvalidGltf(f"{where}: 'uri' must be a string")
                if not uri[:5].lower() == "data:":
                    raise ExternalReference(
                        f"{where} refers to the external file {_short(uri)}: a GLB must embed its data (an "
                        "uploaded avatar must not make the server fetch files); re-export as a single .glb")
                data: memoryview | bytes = _data_uri(uri, where)
                self.embedded += len(data)
                where_data = f"its data: URI decodes to {len(data)} bytes"
            else:
                if i != 0 or self.bin is None:
                    raise InvalidGltf(f"{where} has no 'uri' but is not the GLB's BIN chunk "
                                      f"({'the file has no BIN chunk' if self.bin is None else 'only buffer 0 is'})")
                data = self.bin
                where_data = f"the BIN chunk has {len(data)} bytes"
            if length > len(data):
                raise OutOfBounds(f"{where} says it has {length} bytes, but {where_data}")
            if uri is None and len(data) - length > 3:
                self.issues.append(f"the BIN chunk has {len(data) - length} bytes more than buffer 0 declares")
            self.buffer_data.append(data[:length])

    def _views(self, views: list[dict[str, Any]]) -> None:
        for i, v in enumerate(views):
            where = f"buffer view {i}"
            buf = self.ref(v.get("buffer"), "buffers", f"{where} 'buffer'")
            offset = self.uint(v, "byteOffset", where, 0)
            length = self.uint(v, "byteLength", where, minimum=1)
            size = len(self.buffer_data[buf])
            if offset + length > size:
                raise OutOfBounds(f"{where} reads past the end of buffer {buf}: bytes {offset}..{offset + length} "
                                  f"of a buffer of {size} bytes")
            stride = None
            if "byteStride" in v:
                stride = self.uint(v, "byteStride", where, minimum=4)
                if stride > 252 or stride % 4:
                    raise InvalidGltf(f"{where}: byteStride {stride} must be a multiple of 4 between 4 and 252")
            self.views.append(_View(buf, offset, length, stride))

    def _accessors(self, accessors: list[dict[str, Any]]) -> None:
        decoded = 0
        for i, a in enumerate(accessors):
            where = f"accessor {i}"
            ctype = _as_int(a.get("componentType"))
            if ctype not in _COMPONENT_SIZE:
                raise InvalidGltf(f"{where}: componentType {_short(a.get('componentType'))} is not one of "
                                  "5120, 5121, 5122, 5123, 5125, 5126")
            typ = a.get("type")
            if not isinstance(typ, str) or typ not in _NCOMP:
                raise InvalidGltf(f"{where}: type {_short(typ)} is not one of {', '.join(_NCOMP)}")
            count = self.uint(a, "count", where, minimum=1)
            if count > MAX_ACCESSOR_COUNT:
                raise TooComplex(f"{where} has count {count:,}; at most {MAX_ACCESSOR_COUNT:,} elements are allowed")
            csize = _COMPONENT_SIZE[ctype]
            esize = _element_size(typ, csize)
            decoded += count * esize
            if decoded > MAX_DECODED_BYTES:
                raise TooComplex(f"the accessors add up to more than {MAX_DECODED_BYTES:,} bytes of vertex data "
                                 f"(at accessor {i})")
            offset = self.uint(a, "byteOffset", where, 0)
            view = None
            if "bufferView" in a:
                view = self.ref(a["bufferView"], "bufferViews", f"{where} 'bufferView'")
                bv = self.views[view]
                if offset % csize:
                    raise InvalidGltf(f"{where}: byteOffset {offset} is not a multiple of its component size {csize}")
                if bv.stride is not None and bv.stride < esize:
                    raise InvalidGltf(f"{where}: buffer view {view} has byteStride {bv.stride}, smaller than the "
                                      f"{esize}-byte elements")
                need = offset + (bv.stride or esize) * (count - 1) + esize
                if need > bv.length:
                    raise OutOfBounds(f"{where} reads past the end of buffer view {view}: {count} elements need "
                                      f"{need} bytes, the view has {bv.length}")
            for key in ("min", "max"):
                if key in a:
                    self.numbers(a[key], _NCOMP[typ], f"{where} '{key}'")
            sparse = a.get("sparse")
            if sparse is not None:
                self._sparse(where, sparse, count, esize)
            self.accessors.append(_Accessor(count, ctype, typ, view, offset, sparse is not None))

    def _sparse(self, where: str, sparse: Any, count: int, esize: int) -> None:
        if not isinstance(sparse, dict):
            raise InvalidGltf(f"{where}: 'sparse' must be a JSON object")
        n = self.uint(sparse, "count", f"{where} sparse", minimum=1)
        if n > count:
            raise InvalidGltf(f"{where}: sparse count {n} is larger than the accessor's count {count}")
        indices, values = sparse.get("indices"), sparse.get("values")
        if not isinstance(indices, dict) or not isinstance(values, dict):
            raise InvalidGltf(f"{where}: sparse needs 'indices' and 'values' objects")
        ictype = _as_int(indices.get("componentType"))
        if ictype not in _DTYPES:
            raise InvalidGltf(f"{where}: sparse indices componentType must be 5121, 5123 or 5125")
        dtype = _DTYPES[ictype]
        spans = []
        for part, item_size in ((indices, dtype.itemsize), (values, esize)):
            label = "indices" if part is indices else "values"
            vi = self.ref(part.get("bufferView"), "bufferViews", f"{where} sparse {label} 'bufferView'")
            off = self.uint(part, "byteOffset", f"{where} sparse {label}", 0)
            bv = self.views[vi]
            if off + n * item_size > bv.length:
                raise OutOfBounds(f"{where}: sparse {label} read past the end of buffer view {vi}: {n} entries need "
                                  f"{off + n * item_size} bytes, the view has {bv.length}")
            spans.append((bv, off))
        bv, off = spans[0]
        idx = np.frombuffer(self.buffer_data[bv.buffer], dtype, n, bv.offset + off)
        if n > 1 and not bool(np.all(idx[1:] > idx[:-1])):
            raise InvalidGltf(f"{where}: sparse indices must increase strictly")
        if int(idx[-1]) >= count:
            raise OutOfBounds(f"{where}: sparse index {int(idx[-1])} is past the accessor's {count} elements")

    def _index_max(self, acc_index: int) -> int | None:
        """The largest value of an index accessor (None when it has no plain data to read)."""
        if acc_index in self.index_max:
            return self.index_max[acc_index]
        acc = self.accessors[acc_index]
        if acc.view is None or acc.sparse:
            return None
        bv = self.views[acc.view]
        dtype = _DTYPES[acc.ctype]
        if bv.stride not in (None, dtype.itemsize):
            return None
        data = np.frombuffer(self.buffer_data[bv.buffer], dtype, acc.count, bv.offset + acc.offset)
        self.index_max[acc_index] = int(data.max())
        return self.index_max[acc_index]

    def _images_textures(self, c: dict[str, list[dict[str, Any]]]) -> None:
        for i, img in enumerate(c["images"]):
            where = f"image {i}"
            uri = img.get("uri")
            if uri is not None:
                if not isinstance(uri, str):
                    raise InvalidGltf(f"{where}: 'uri' must be a string")
                if uri[:5].lower() != "data:":
                    raise ExternalReference(
                        f"{where} refers to the external file {_short(uri)}: a GLB must embed its textures (an "
                        "uploaded avatar must not make the server fetch files); re-export with embedded textures")
                self.embedded += len(uri) * 3 // 4  # base64 estimate; the image itself is never decoded
            if "bufferView" in img:
                self.ref(img["bufferView"], "bufferViews", f"{where} 'bufferView'")
        for i, tex in enumerate(c["textures"]):
            where = f"texture {i}"
            if "source" in tex:
                self.ref(tex["source"], "images", f"{where} 'source'")
            if "sampler" in tex:
                self.ref(tex["sampler"], "samplers", f"{where} 'sampler'")
            for name, ext in self.sub(tex, "extensions", where).items():
                if isinstance(ext, dict) and "source" in ext:
                    self.ref(ext["source"], "images", f"{where} extension {name} 'source'")
        slots = ("normalTexture", "occlusionTexture", "emissiveTexture")
        for i, mat in enumerate(c["materials"]):
            where = f"material {i}"
            pbr = self.sub(mat, "pbrMetallicRoughness", where)
            infos = [(f"pbrMetallicRoughness.{k}", pbr.get(k)) for k in ("baseColorTexture",
                                                                          "metallicRoughnessTexture")]
            infos += [(k, mat.get(k)) for k in slots]
            for slot, info in infos:
                if info is None:
                    continue
                if not isinstance(info, dict):
                    raise InvalidGltf(f"{where}: {slot} must be a JSON object")
                self.ref(info.get("index"), "textures", f"{where} {slot} 'index'")

    def _meshes(self, meshes: list[dict[str, Any]]) -> None:
        primitives = 0
        positions: dict[int, int] = {}
        triangles = 0
        total_targets = 0
        for m, mesh in enumerate(meshes):
            prims = self.sub(mesh, "primitives", f"mesh {m}", list)
            if not prims:
                raise InvalidGltf(f"mesh {m} has no primitives")
            primitives += len(prims)
            if primitives > MAX_PRIMITIVES:
                raise TooComplex(f"the meshes have more than {MAX_PRIMITIVES} primitives in all")
            ntargets = None
            for p, prim in enumerate(prims):
                where = f"mesh {m} primitive {p}"
                if not isinstance(prim, dict):
                    raise InvalidGltf(f"{where} must be a JSON object")
                attrs = self.sub(prim, "attributes", where)
                if not attrs:
                    raise InvalidGltf(f"{where} has no attributes")
                counts = {}
                for name, value in attrs.items():
                    a = self.ref(value, "accessors", f"{where} attribute {name}")
                    counts[name] = self.accessors[a].count
                    if name == "POSITION":
                        positions[a] = self.accessors[a].count
                if len(set(counts.values())) > 1:
                    raise InvalidGltf(f"{where}: its attributes have different counts {counts}")
                nverts = next(iter(counts.values()))
                mode = self.uint(prim, "mode", where, 4)
                if mode > 6:
                    raise InvalidGltf(f"{where}: mode {mode} is not a glTF primitive mode (0..6)")
                if "material" in prim:
                    self.ref(prim["material"], "materials", f"{where} 'material'")
                if "indices" in prim:
                    ia = self.ref(prim["indices"], "accessors", f"{where} 'indices'")
                    acc = self.accessors[ia]
                    if acc.typ != "SCALAR" or acc.ctype not in _DTYPES:
                        raise InvalidGltf(f"{where}: indices accessor {ia} must be SCALAR unsigned byte/short/int, "
                                          f"not {acc.typ} {_COMPONENT_NAME[acc.ctype]}")
                    top = self._index_max(ia)
                    if top is not None and top >= nverts:
                        raise OutOfBounds(f"{where}: index {top} in accessor {ia} is past the {nverts} vertices "
                                          "of the primitive")
                    ncorners = acc.count
                else:
                    ncorners = nverts
                if mode == 4:
                    triangles += ncorners // 3
                targets = self.sub(prim, "targets", where, list)
                if len(targets) > MAX_MORPH_TARGETS:
                    raise TooComplex(f"{where} has {len(targets)} morph targets; at most {MAX_MORPH_TARGETS} "
                                     "per mesh are allowed")
                if ntargets is None:
                    ntargets = len(targets)
                elif len(targets) != ntargets:
                    raise InvalidGltf(f"{where} has {len(targets)} morph targets but primitive 0 has {ntargets} "
                                      "(all primitives of a mesh must have the same number)")
                for t, target in enumerate(targets):
                    if not isinstance(target, dict):
                        raise InvalidGltf(f"{where} morph target {t} must be a JSON object")
                    for name, value in target.items():
                        a = self.ref(value, "accessors", f"{where} morph target {t} attribute {name}")
                        if self.accessors[a].count != nverts:
                            raise InvalidGltf(f"{where} morph target {t} attribute {name}: accessor {a} has "
                                              f"{self.accessors[a].count} elements for {nverts} vertices")
            if "weights" in mesh:
                self.numbers(mesh["weights"], ntargets, f"mesh {m} 'weights'")
            self.targets_per_mesh.append(ntargets or 0)
            total_targets += ntargets or 0
        vertices = sum(positions.values())
        if vertices > MAX_VERTICES:
            raise TooComplex(f"the model has {vertices:,} vertices; at most {MAX_VERTICES:,} are allowed")
        self.counts.update(primitives=primitives, vertices=vertices, triangles=triangles,
                           morph_targets=total_targets)

    def _nodes(self, nodes: list[dict[str, Any]], skins: list[dict[str, Any]], scenes: list[dict[str, Any]]) -> None:
        n = len(nodes)
        parent = [-1] * n
        kids: list[list[int]] = [[] for _ in range(n)]
        for i, node in enumerate(nodes):
            where = f"node {i}"
            for key in ("mesh", "skin", "camera"):
                if key in node:
                    self.ref(node[key], {"mesh": "meshes", "skin": "skins", "camera": "cameras"}[key],
                             f"{where} '{key}'")
            for key, size in (("translation", 3), ("rotation", 4), ("scale", 3), ("matrix", 16)):
                if key in node:
                    self.numbers(node[key], size, f"{where} '{key}'")
            if "weights" in node:
                self.numbers(node["weights"], None, f"{where} 'weights'")
            for c in self.sub(node, "children", where, list):
                child = self.ref(c, "nodes", f"{where} child")
                if child == i:
                    raise NodeCycle(f"node cycle: node {i} lists itself as a child")
                if parent[child] == i:
                    raise InvalidGltf(f"{where} lists node {child} twice as a child")
                if parent[child] != -1:
                    raise BadReference(f"node {child} is a child of both node {parent[child]} and node {i} "
                                       "(a glTF node has at most one parent)")
                parent[child] = i
                kids[i].append(child)
        # Every node has at most one parent now, so a node no root reaches sits on a cycle.
        seen = bytearray(n)
        stack = [i for i in range(n) if parent[i] == -1]
        while stack:
            i = stack.pop()
            seen[i] = 1
            stack.extend(kids[i])
        for start in range(n):
            if not seen[start]:
                path, j = [start], parent[start]
                while j not in path:
                    path.append(j)
                    j = parent[j]
                cycle = path[path.index(j):][::-1]
                raise NodeCycle("node cycle: " + " -> ".join(f"node {k}" for k in [*cycle, cycle[0]])
                                + " (a node cannot be its own ancestor)")
        joints: set[int] = set()
        for s, skin in enumerate(skins):
            where = f"skin {s}"
            js = self.sub(skin, "joints", where, list)
            if not js:
                raise InvalidGltf(f"{where} has no joints")
            if len(js) > MAX_JOINTS:
                raise TooComplex(f"{where} has {len(js)} joints; at most {MAX_JOINTS} per skin are allowed")
            ids = [self.ref(j, "nodes", f"{where} joint {k}") for k, j in enumerate(js)]
            if len(set(ids)) != len(ids):
                raise InvalidGltf(f"{where} lists a joint twice")
            joints.update(ids)
            if "skeleton" in skin:
                self.ref(skin["skeleton"], "nodes", f"{where} 'skeleton'")
            if "inverseBindMatrices" in skin:
                a = self.ref(skin["inverseBindMatrices"], "accessors", f"{where} 'inverseBindMatrices'")
                acc = self.accessors[a]
                if acc.typ != "MAT4" or acc.ctype != 5126 or acc.count < len(ids):
                    raise InvalidGltf(f"{where}: inverseBindMatrices accessor {a} must be {len(ids)} float MAT4, "
                                      f"not {acc.count} {_COMPONENT_NAME[acc.ctype]} {acc.typ}")
        for s, scene in enumerate(scenes):
            for k in self.sub(scene, "nodes", f"scene {s}", list):
                root = self.ref(k, "nodes", f"scene {s} node")
                if parent[root] != -1:
                    raise InvalidGltf(f"scene {s} lists node {root} as a root, but it is a child of node "
                                      f"{parent[root]}")
        self.counts.update(joints=len(joints))

    def _animations(self, animations: list[dict[str, Any]]) -> None:
        total = 0
        for a, anim in enumerate(animations):
            where = f"animation {a}"
            samplers = self.sub(anim, "samplers", where, list)
            channels = self.sub(anim, "channels", where, list)
            total += len(samplers) + len(channels)
            if total > MAX_ANIMATION_CHANNELS:
                raise TooComplex(f"the animations have more than {MAX_ANIMATION_CHANNELS} channels and samplers")
            for s, sampler in enumerate(samplers):
                if not isinstance(sampler, dict):
                    raise InvalidGltf(f"{where} sampler {s} must be a JSON object")
                for key in ("input", "output"):
                    self.ref(sampler.get(key), "accessors", f"{where} sampler {s} '{key}'")
            for c, channel in enumerate(channels):
                if not isinstance(channel, dict):
                    raise InvalidGltf(f"{where} channel {c} must be a JSON object")
                k = _as_int(channel.get("sampler"))
                if k is None or not 0 <= k < len(samplers):
                    raise BadReference(f"{where} channel {c} refers to sampler {_short(channel.get('sampler'))}, "
                                       f"but the animation has {len(samplers)}")
                target = channel.get("target")
                if not isinstance(target, dict):
                    raise InvalidGltf(f"{where} channel {c} has no 'target' object")
                if "node" in target:
                    self.ref(target["node"], "nodes", f"{where} channel {c} target 'node'")

    def _no_external_uris(self) -> None:
        """Any ``uri`` anywhere (extensions included) must be a data: URI. Iterative: no recursion on depth."""
        stack: list[tuple[Any, str]] = [(self.doc, "")]
        while stack:
            obj, path = stack.pop()
            if isinstance(obj, dict):
                for k, v in obj.items():
                    if k == "uri" and (not isinstance(v, str) or v[:5].lower() != "data:"):
                        raise ExternalReference(f"{path or '/'}: uri {_short(v)} is not embedded (a data: URI); "
                                                "external references are refused")
                    if isinstance(v, dict | list):
                        stack.append((v, f"{path}/{k}"))
            else:
                stack.extend((v, f"{path}/{i}") for i, v in enumerate(obj) if isinstance(v, dict | list))


# --------------------------------------------------------------------------------------------------------------
# Container
# --------------------------------------------------------------------------------------------------------------


def _sniff(raw: bytes) -> str:
    head = raw[:64].lstrip(b"\xef\xbb\xbf \t\r\n")
    if head.startswith(b"{"):
        return ("not a GLB: this is glTF JSON (.gltf); convert it to a single binary .glb "
                "(e.g. gltf-pipeline -i model.gltf -o model.glb, or export GLB from Blender)")
    if head.startswith(b"<"):
        return "not a GLB: this looks like an HTML/XML page (does the link point to a web page, not the file?)"
    if raw.startswith(b"PK\x03\x04"):
        return "not a GLB: this is a ZIP archive; unzip it and use the .glb or .vrm inside"
    if raw.startswith(b"Kaydara FBX Binary"):
        return "not a GLB: this is an FBX file; convert it to GLB (e.g. import into Blender, export glTF binary)"
    return f"not a GLB: it starts with {raw[:8]!r} instead of the magic b'glTF'"


def _container(raw: bytes) -> tuple[bytes, memoryview | None, list[str]]:
    """Header and chunks: the JSON bytes, the BIN chunk (or None) and issues about tolerated oddities."""
    n = len(raw)
    if n == 0:
        raise NotAGlb("empty file: 0 bytes")
    if raw[:4] != b"glTF":
        if n < 4 and b"glTF".startswith(raw):
            raise TruncatedAvatar(f"truncated: only {n} bytes, not even the 12-byte GLB header")
        raise NotAGlb(_sniff(raw))
    if n < 12:
        raise TruncatedAvatar(f"truncated: only {n} bytes, not even the 12-byte GLB header")
    version, total = struct.unpack_from("<II", raw, 4)
    if version != 2:
        hint = " (glTF 1.0 binary; convert it to glTF 2.0)" if version == 1 else ""
        raise UnsupportedVersion(f"GLB version {version} is not supported, only version 2{hint}")
    if total > n:
        raise TruncatedAvatar(f"truncated: the header says {total} bytes, the file has {n}")
    if total < n:
        raise LengthMismatch(f"length mismatch: the header says {total} bytes, the file has {n} "
                             f"({n - total} extra bytes after the end)")
    if total % 4:
        raise BadChunk(f"the file length {total} is not a multiple of 4 (GLB chunks are 4-byte aligned)")
    if n < 20:
        raise TruncatedAvatar(f"truncated: {n} bytes, no room for the JSON chunk header")
    view = memoryview(raw)
    chunks: list[tuple[bytes, int, int]] = []
    issues: list[str] = []
    off = 12
    while off < n:
        if n - off < 8:
            raise BadChunk(f"{n - off} stray bytes at offset {off}, too few for a chunk header")
        if len(chunks) >= MAX_CHUNKS:
            raise TooComplex(f"more than {MAX_CHUNKS} chunks")
        length, ctype = struct.unpack_from("<I4s", raw, off)
        start = off + 8
        if length > n - start:
            raise BadChunk(f"chunk {len(chunks)} ({ctype!r}) at offset {off} says {length} bytes, but only "
                           f"{n - start} remain in the file")
        if length % 4:
            raise BadChunk(f"chunk {len(chunks)} ({ctype!r}) has length {length}, not a multiple of 4")
        chunks.append((ctype, start, length))
        off = start + length
    if chunks[0][0] != b"JSON":
        raise BadChunk(f"the first chunk must be JSON, not {chunks[0][0]!r}")
    bin_chunk = None
    for k, (ctype, start, length) in enumerate(chunks[1:], start=1):
        if ctype == b"JSON":
            raise BadChunk(f"chunk {k} is a second JSON chunk")
        if ctype == b"BIN\x00":
            if k != 1:
                raise BadChunk(f"the BIN chunk must directly follow the JSON chunk, it is chunk {k}")
            bin_chunk = view[start : start + length]
        else:
            issues.append(f"unknown chunk {ctype!r} ({length} bytes) ignored")
    _, start, length = chunks[0]
    if length == 0:
        raise BadJson("the JSON chunk is empty")
    if length > MAX_JSON_BYTES:
        raise AvatarTooLarge(f"the JSON chunk has {length:,} bytes; at most {MAX_JSON_BYTES:,} are allowed")
    return raw[start : start + length], bin_chunk, issues


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _parse_json(data: bytes) -> dict[str, Any]:
    separators = data.count(b",") + data.count(b":")
    if separators > MAX_JSON_SEPARATORS:
        raise TooComplex(f"the JSON chunk has {separators:,} separators; at most {MAX_JSON_SEPARATORS:,} are allowed")
    try:
        text = data.decode("utf-8-sig")  # a BOM is invalid glTF, but three.js' TextDecoder drops it: so do we
    except UnicodeDecodeError as exc:
        raise BadJson(f"the JSON chunk is not UTF-8: {exc}") from exc
    try:
        doc = json.loads(text, parse_constant=_reject_constant)
    except RecursionError as exc:
        raise BadJson("the JSON chunk is nested too deeply to parse") from exc
    except ValueError as exc:  # JSONDecodeError, NaN/Infinity, integers with too many digits
        raise BadJson(f"the JSON chunk does not parse: {exc}") from exc
    if not isinstance(doc, dict):
        raise BadJson(f"the JSON chunk is a {type(doc).__name__}, not an object")
    return doc


# --------------------------------------------------------------------------------------------------------------
# VRM
# --------------------------------------------------------------------------------------------------------------


def _vrm(doc: dict[str, Any], v: _Validator) -> tuple[str, dict[str, str]]:
    """Validate the VRM extension's references strictly; the format and a few meta fields (title, licence)."""
    ext = doc.get("extensions", {})
    if not isinstance(ext, dict):
        raise InvalidGltf("'extensions' must be a JSON object")
    targets = v.targets_per_mesh
    nodes = doc.get("nodes", [])
    binds = 0

    def morph(mesh: int, index: Any, where: str) -> None:
        k = _as_int(index)
        if k is None or not 0 <= k < targets[mesh]:
            raise BadReference(f"{where} binds morph target {_short(index)} of mesh {mesh}, which has "
                               f"{targets[mesh]} morph targets")

    def count_binds(items: list[Any], where: str) -> None:
        nonlocal binds
        binds += len(items)
        if binds > MAX_VRM_BINDS:
            raise TooComplex(f"{where}: more than {MAX_VRM_BINDS} VRM expression binds")

    if "VRMC_vrm" in ext:
        vrm = ext["VRMC_vrm"]
        if not isinstance(vrm, dict):
            raise InvalidGltf("extensions.VRMC_vrm must be a JSON object")
        expressions = v.sub(vrm, "expressions", "VRMC_vrm")
        for kind in ("preset", "custom"):
            for name, expr in v.sub(expressions, kind, "VRMC_vrm expressions").items():
                where = f"VRM expression {name!r}"
                if not isinstance(expr, dict):
                    raise InvalidGltf(f"{where} must be a JSON object")
                items = v.sub(expr, "morphTargetBinds", where, list)
                count_binds(items, where)
                for b in items:
                    if not isinstance(b, dict):
                        raise InvalidGltf(f"{where}: a morph target bind must be a JSON object")
                    node = v.ref(b.get("node"), "nodes", f"{where} bind 'node'")
                    mesh = _as_int(nodes[node].get("mesh"))
                    if mesh is None:
                        raise BadReference(f"{where} binds node {node}, which has no mesh")
                    morph(mesh, b.get("index"), where)
        humanoid = v.sub(vrm, "humanoid", "VRMC_vrm")
        for role, bone in v.sub(humanoid, "humanBones", "VRMC_vrm humanoid").items():
            if not isinstance(bone, dict):
                raise InvalidGltf(f"VRM humanoid bone {role!r} must be a JSON object")
            v.ref(bone.get("node"), "nodes", f"VRM humanoid bone {role!r} 'node'")
        meta = v.sub(vrm, "meta", "VRMC_vrm")
        authors = meta.get("authors")
        info = {"title": meta.get("name"), "author": ", ".join(authors) if isinstance(authors, list) and all(
            isinstance(a, str) for a in authors) else None, "license": meta.get("licenseUrl"),
            "avatar_permission": meta.get("avatarPermission"), "commercial_usage": meta.get("commercialUsage"),
            "spec_version": vrm.get("specVersion")}
        return "vrm1", {k: str(val)[:200] for k, val in info.items() if isinstance(val, str) and val}
    if "VRM" in ext:
        vrm = ext["VRM"]
        if not isinstance(vrm, dict):
            raise InvalidGltf("extensions.VRM must be a JSON object")
        master = v.sub(vrm, "blendShapeMaster", "VRM")
        for g, group in enumerate(v.sub(master, "blendShapeGroups", "VRM blendShapeMaster", list)):
            if not isinstance(group, dict):
                raise InvalidGltf(f"VRM blend shape group {g} must be a JSON object")
            where = f"VRM blend shape group {group.get('name', g)!r}"
            items = v.sub(group, "binds", where, list)
            count_binds(items, where)
            for b in items:
                if not isinstance(b, dict):
                    raise InvalidGltf(f"{where}: a bind must be a JSON object")
                mesh = v.ref(b.get("mesh"), "meshes", f"{where} bind 'mesh'")
                morph(mesh, b.get("index"), where)
        humanoid = v.sub(vrm, "humanoid", "VRM")
        for k, bone in enumerate(v.sub(humanoid, "humanBones", "VRM humanoid", list)):
            if not isinstance(bone, dict):
                raise InvalidGltf(f"VRM humanoid bone {k} must be a JSON object")
            v.ref(bone.get("node"), "nodes", f"VRM humanoid bone {bone.get('bone', k)!r} 'node'")
        meta = v.sub(vrm, "meta", "VRM")
        info = {"title": meta.get("title"), "author": meta.get("author"), "license": meta.get("licenseName"),
                "avatar_permission": meta.get("allowedUserName"), "commercial_usage": meta.get("commercialUssageName"),
                "spec_version": vrm.get("specVersion")}
        return "vrm0", {k: str(val)[:200] for k, val in info.items() if isinstance(val, str) and val}
    return "glb", {}


# --------------------------------------------------------------------------------------------------------------
# Issues
# --------------------------------------------------------------------------------------------------------------


def _issues(rig: str, fmt: str, inv: Inventory, res: Resolution, suffix: str) -> list[str]:
    out: list[str] = []
    if suffix == ".vrm" and not fmt.startswith("vrm"):
        out.append("the file is named .vrm but has no VRM extension: read as a plain GLB (no VRM expressions)")
    shapes = set(inv.shapes)
    if rig == "rpm":
        missing_v = [v for v in VISEMES if v not in shapes]
        missing_a = [s for s in ARKIT_52 if s not in shapes]
        if not inv.morph_names:
            out.append(f"exported without morph targets: {RPM_REEXPORT_HINT}")
        elif missing_v or missing_a:
            parts = []
            if len(missing_v) == len(VISEMES):
                parts.append("the Oculus visemes (viseme_*)")
            elif missing_v:
                parts.append(f"Oculus visemes {', '.join(missing_v)}")
            if len(missing_a) == len(ARKIT_52):
                parts.append("the 52 ARKit blendshapes")
            elif missing_a:
                listed = ", ".join(missing_a[:12]) + (f" and {len(missing_a) - 12} more" if len(missing_a) > 12 else "")
                parts.append(f"ARKit shapes {listed}")
            out.append(f"Ready Player Me export without {' or '.join(parts)}: {RPM_REEXPORT_HINT}")
    if res.lipsync == "none":
        out.append("no mouth shapes (no visemes, jawOpen or mouth-open morph): lip sync is off, the mouth "
                   "will not move")
    else:
        for vis, r in res.visemes.items():
            if r.status == "approx":
                out.append(f"no {vis}: {VISEME_SOUNDS[vis]} will use {r.describe()} instead")
            elif r.status == "missing":
                out.append(f"no {vis}: {VISEME_SOUNDS[vis]} will not move the mouth")
    missing_e = [e for e in EMOTIONS if not res.emotions[e].available]
    if missing_e and res.emotion_level == "none":
        out.append("no emotion shapes (e.g. mouthSmileLeft/Right, mouthFrownLeft/Right, browInnerUp, "
                   "browDownLeft/Right): the face stays neutral")
    elif missing_e:
        out.append(f"emotions without shapes (shown as neutral): {', '.join(missing_e)}")
    if res.blink_level == "none":
        out.append("no blink shapes (eyeBlinkLeft/Right): the avatar will not blink")
    elif res.blink_level == "reduced":
        out.append("only a both-eyes blink: winks are not available")
    b = res.bones
    if "head" not in b and "neck" not in b:
        out.append("no head or neck bone: head gestures (nod, tilt) will sway the whole model")
    elif "neck" not in b:
        out.append("no neck bone: head gestures will rotate the whole head node")
    elif "head" not in b:
        out.append("no head bone: head gestures will rotate the neck")
    if ("head" in b or "neck" in b) and not all(f"{s}Shoulder" in b or f"{s}UpperArm" in b
                                                  for s in ("left", "right")):
        out.append("no shoulder or upper-arm bones on both sides: shrugs are not available")
    out.extend(inv.notes)
    return out


# --------------------------------------------------------------------------------------------------------------
# Entry point
# --------------------------------------------------------------------------------------------------------------


def _read(data: bytes | bytearray | memoryview | str | os.PathLike[str], max_bytes: int,
          name: str | None) -> tuple[bytes, str | None, str]:
    if isinstance(data, bytes | bytearray | memoryview):
        size = memoryview(data).nbytes
        if size > max_bytes:
            raise AvatarTooLarge(f"too large: {size:,} bytes, the limit is {max_bytes:,}")
        return bytes(data), name, ""
    if isinstance(data, str) and data.startswith(("http://", "https://")):
        raise UnreadableAvatar("check_avatar reads files and bytes; fetch a URL with "
                               "avatarium_lab.avatar.importers.import_avatar")
    if not isinstance(data, str | os.PathLike):
        raise TypeError(f"check_avatar needs bytes or a path, not {type(data).__name__}")
    path = Path(data)
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableAvatar(f"{path} is not a regular file")
        if st.st_size > max_bytes:
            raise AvatarTooLarge(f"too large: {path.name} has {st.st_size:,} bytes, the limit is {max_bytes:,}")
        with path.open("rb") as f:
            raw = f.read(max_bytes + 1)
    except (OSError, ValueError) as exc:  # ValueError: a NUL byte in the path
        raise UnreadableAvatar(f"cannot read {path}: {getattr(exc, 'strerror', None) or exc}") from exc
    if len(raw) > max_bytes:
        raise AvatarTooLarge(f"too large: {path.name} has more than {max_bytes:,} bytes")
    return raw, name or path.stem, path.suffix.lower()


def check_avatar(data: bytes | bytearray | memoryview | str | os.PathLike[str], *, max_bytes: int = MAX_FILE_BYTES,
                 name: str | None = None, preset: str | Path | RigMap | Mapping[str, Any] | None = None,
                 ) -> AvatarReport:
    """Validate a GLB/VRM (bytes or a path) and describe it; raises an :class:`AvatarCheckError` subclass.

    ``max_bytes`` bounds the file plus its decoded ``data:`` URIs; ``name`` labels the report (default: the file
    stem); ``preset`` forces a rig map preset (name, :class:`RigMap`, dict or YAML path) instead of choosing the
    best one automatically.
    """
    raw, name, suffix = _read(data, max_bytes, name)
    json_bytes, bin_chunk, container_issues = _container(raw)
    doc = _parse_json(json_bytes)
    v = _Validator(doc, bin_chunk, len(raw), max_bytes)
    v.run()
    fmt, vrm_meta = _vrm(doc, v)
    inv = Inventory.from_doc(doc)
    res = _rigmap.resolve(inv, preset)
    rig = _rigmap.detect_rig(inv)
    issues = container_issues + v.issues + _issues(rig, fmt, inv, res, suffix)
    asset = doc["asset"]
    counts = Counts(
        meshes=v.sizes["meshes"], primitives=v.counts["primitives"], nodes=v.sizes["nodes"],
        vertices=v.counts["vertices"], triangles=v.counts["triangles"], morph_targets=v.counts["morph_targets"],
        morph_names=len(inv.morph_names), skins=v.sizes["skins"], joints=v.counts["joints"],
        materials=v.sizes["materials"], textures=v.sizes["textures"], images=v.sizes["images"],
        animations=v.sizes["animations"], bytes=len(raw), embedded_bytes=v.embedded,
    )
    return AvatarReport(
        name=name,
        format=fmt,
        rig=rig,
        counts=counts,
        lipsync=res.lipsync,
        emotions=res.emotion_level,
        blinks=res.blink_level,
        gestures=res.gesture_level,
        visemes=MappingProxyType({k: r.status for k, r in res.visemes.items()}),
        emotion_shapes=MappingProxyType({k: r.status for k, r in res.emotions.items()}),
        blink_shapes=MappingProxyType({k: r.status for k, r in res.blinks.items()}),
        arkit_shapes=tuple(s for s in ARKIT_52 if s in inv.shapes),
        bones=MappingProxyType({role: ref.name for role, ref in res.bones.items()}),
        morph_names=inv.morph_names,
        vrm_expressions=inv.vrm_expressions,
        issues=tuple(dict.fromkeys(issues)),
        mapping=res,
        extensions=tuple(doc.get("extensionsUsed", [])),
        generator=str(asset["generator"])[:200] if isinstance(asset.get("generator"), str) else None,
        vrm_meta=MappingProxyType(vrm_meta),
        inventory=inv,
    )


__all__ = [
    "MAX_FILE_BYTES",
    "AvatarCheckError",
    "AvatarReport",
    "AvatarTooLarge",
    "BadChunk",
    "BadJson",
    "BadReference",
    "Counts",
    "ExternalReference",
    "InvalidGltf",
    "LengthMismatch",
    "NodeCycle",
    "NotAGlb",
    "OutOfBounds",
    "TooComplex",
    "TruncatedAvatar",
    "UnreadableAvatar",
    "UnsupportedVersion",
    "check_avatar",
]

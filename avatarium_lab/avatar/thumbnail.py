"""Thumbnails of avatars: a small, deterministic software rasteriser in pure numpy (no browser, no GPU).

``render_thumbnail(glb_bytes)`` draws a GLB from the front three-quarter view and returns an (H, W, 3) uint8
image; ``write_thumbnail(glb_bytes, path)`` saves it as a PNG. The library generator writes ``library/<id>.png``
(256 x 256) next to every GLB.

Choices:

- **What is drawn.** Every triangle primitive of every mesh node, in its rest pose: node transforms are applied,
  except on skinned meshes, whose vertices glTF defines in the skeleton's bind space (for the library avatars
  that is the world). Morph targets stay at weight 0. Colours are the materials' ``baseColorFactor`` (textures are
  ignored: the library avatars have none), lit with two directional lights plus ambient (Lambert, with normals
  interpolated from the file's vertex normals); an emissive material is drawn at full brightness.
- **Framing.** ``bust``: the head and shoulders, a little tighter than the three.js viewer frames them (from the
  top of the model down to :data:`BUST_DEPTH` half-heads below ``HeadAnchor``); ``full``: the whole figure. The view turns the model by
  :data:`YAW_DEGREES` about y (the face turns towards the viewer's right, showing its left cheek) and looks down
  slightly.
- **Quality.** Rendered at :data:`SUPERSAMPLE` times the size with a z-buffer, then box-filtered down
  (anti-aliasing). Triangles are rasterised in vectorised batches grouped by their size on screen, so a 20k
  triangle avatar takes well under a second.
- **Determinism.** Pure float64 numpy with fixed inputs, stable sorts for depth ties: the same GLB gives the same
  pixels.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path
from typing import Any

import numpy as np

from ..errors import AvatarError

SIZE = 256
SUPERSAMPLE = 2
YAW_DEGREES = 28.0
PITCH_DEGREES = 7.0
FOV_DEGREES = 24.0
BUST_DEPTH = 2.1
"""A bust thumbnail shows the model from its top down to this many half-heads (top - HeadAnchor) below the head
centre: head, neck and the top of the shoulders (the viewer goes down to 2.6, the upper chest)."""
BACKGROUND_TOP = (236, 240, 245)
BACKGROUND_BOTTOM = (200, 210, 222)

_CTYPES = {5126: np.float32, 5125: np.uint32, 5123: np.uint16, 5121: np.uint8, 5122: np.int16, 5120: np.int8}
_NCOMP = {"SCALAR": 1, "VEC2": 2, "VEC3": 3, "VEC4": 4, "MAT4": 16}

__all__ = ["SIZE", "render_thumbnail", "write_thumbnail"]


# --------------------------------------------------------------------------------------------------------------
# Reading the GLB
# --------------------------------------------------------------------------------------------------------------


def _parse(data: bytes) -> tuple[dict[str, Any], bytes]:
    if len(data) < 20 or data[:4] != b"glTF":
        raise AvatarError("not a GLB file (bad magic)")
    jlen = struct.unpack_from("<I", data, 12)[0]
    doc = json.loads(data[20 : 20 + jlen])
    blob = b""
    if len(data) >= 28 + jlen:
        blen, kind = struct.unpack_from("<I4s", data, 20 + jlen)
        if kind == b"BIN\x00":
            blob = data[28 + jlen : 28 + jlen + blen]
    return doc, blob


def _accessor(doc: dict[str, Any], blob: bytes, index: int) -> np.ndarray:
    acc = doc["accessors"][index]
    n, k, dtype = acc["count"], _NCOMP[acc["type"]], _CTYPES[acc["componentType"]]
    if "bufferView" in acc:
        view = doc["bufferViews"][acc["bufferView"]]
        offset = view.get("byteOffset", 0) + acc.get("byteOffset", 0)
        stride = view.get("byteStride")
        item = np.dtype(dtype).itemsize * k
        if stride and stride != item:
            raw = np.frombuffer(blob, np.uint8, stride * (n - 1) + item, offset)
            rows = np.lib.stride_tricks.as_strided(raw, (n, item), (stride, 1))
            arr = np.ascontiguousarray(rows).view(dtype).reshape(n, k).copy()
        else:
            arr = np.frombuffer(blob, dtype, n * k, offset).reshape(n, k).copy()
    else:
        arr = np.zeros((n, k), dtype)
    return arr


def _node_matrix(node: dict[str, Any]) -> np.ndarray:
    if "matrix" in node:
        return np.array(node["matrix"], dtype=np.float64).reshape(4, 4).T
    m = np.eye(4)
    x, y, z, w = node.get("rotation", (0.0, 0.0, 0.0, 1.0))
    r = np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])  # fmt: skip
    m[:3, :3] = r * np.array(node.get("scale", (1.0, 1.0, 1.0)))[None, :]
    m[:3, 3] = node.get("translation", (0.0, 0.0, 0.0))
    return m


def _world_matrices(doc: dict[str, Any]) -> dict[int, np.ndarray]:
    nodes = doc.get("nodes", [])
    scene = doc.get("scenes", [{}])[doc.get("scene", 0)] if doc.get("scenes") else {"nodes": range(len(nodes))}
    out: dict[int, np.ndarray] = {}
    stack = [(i, np.eye(4)) for i in scene.get("nodes", [])]
    while stack:
        i, parent = stack.pop()
        if i in out:
            continue
        out[i] = parent @ _node_matrix(nodes[i])
        stack.extend((c, out[i]) for c in nodes[i].get("children", []))
    return out


def _srgb(linear: np.ndarray) -> np.ndarray:
    c = np.clip(linear, 0.0, 1.0)
    return np.where(c <= 0.0031308, 12.92 * c, 1.055 * c ** (1 / 2.4) - 0.055)


class _Scene:
    """Triangles (world positions, vertex normals) with a linear RGB colour and an emissive flag per triangle."""

    def __init__(self, data: bytes) -> None:
        doc, blob = _parse(data)
        self.doc = doc
        mats = doc.get("materials", [])
        world = _world_matrices(doc)
        tris, nrms, cols, emis = [], [], [], []
        for i, node in enumerate(doc.get("nodes", [])):
            if "mesh" not in node or i not in world:
                continue
            m = np.eye(4) if "skin" in node else world[i]
            for prim in doc["meshes"][node["mesh"]]["primitives"]:
                if prim.get("mode", 4) != 4 or "POSITION" not in prim["attributes"]:
                    continue
                pos = _accessor(doc, blob, prim["attributes"]["POSITION"]).astype(np.float64)
                pos = pos @ m[:3, :3].T + m[:3, 3]
                idx = (
                    _accessor(doc, blob, prim["indices"]).reshape(-1).astype(np.int64)
                    if "indices" in prim
                    else np.arange(len(pos))
                )
                t = idx[: len(idx) // 3 * 3].reshape(-1, 3)
                if "NORMAL" in prim["attributes"]:
                    nrm = _accessor(doc, blob, prim["attributes"]["NORMAL"]).astype(np.float64)
                    nrm = nrm @ np.linalg.inv(m[:3, :3]).T
                else:
                    fn = np.cross(pos[t[:, 1]] - pos[t[:, 0]], pos[t[:, 2]] - pos[t[:, 0]])
                    nrm = np.zeros_like(pos)
                    for k in range(3):
                        np.add.at(nrm, t[:, k], fn)
                nrm = nrm / np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
                mat = mats[prim["material"]] if "material" in prim and prim["material"] < len(mats) else {}
                rgba = (mat.get("pbrMetallicRoughness") or {}).get("baseColorFactor", [0.8, 0.8, 0.8, 1.0])
                emissive = max(mat.get("emissiveFactor", [0.0, 0.0, 0.0])) > 0.5
                tris.append(pos[t])
                nrms.append(nrm[t])
                cols.append(np.tile(np.array(rgba[:3], dtype=np.float64), (len(t), 1)))
                emis.append(np.full(len(t), emissive))
        if not tris:
            raise AvatarError("the GLB has no triangles to draw")
        self.tris = np.concatenate(tris)
        self.nrms = np.concatenate(nrms)
        self.cols = np.concatenate(cols)
        self.emissive = np.concatenate(emis)
        self.world = world

    def node_position(self, name: str) -> np.ndarray | None:
        for i, node in enumerate(self.doc.get("nodes", [])):
            if node.get("name") == name and i in self.world:
                return self.world[i][:3, 3].copy()
        return None


# --------------------------------------------------------------------------------------------------------------
# Camera and rasterisation
# --------------------------------------------------------------------------------------------------------------


def _view_rotation() -> np.ndarray:
    """World -> camera rotation: the model turned by the yaw, seen from slightly above; camera looks down -z."""
    yaw, pitch = math.radians(YAW_DEGREES), math.radians(PITCH_DEGREES)
    ry = np.array([[math.cos(yaw), 0.0, math.sin(yaw)], [0.0, 1.0, 0.0], [-math.sin(yaw), 0.0, math.cos(yaw)]])
    rx = np.array([[1.0, 0.0, 0.0], [0.0, math.cos(pitch), -math.sin(pitch)], [0.0, math.sin(pitch), math.cos(pitch)]])
    return rx @ ry


def _subject(scene: _Scene, framing: str) -> np.ndarray:
    """The points the picture must contain."""
    pts = scene.tris.reshape(-1, 3)
    if framing == "full":
        return pts
    head = scene.node_position("HeadAnchor")
    top = float(pts[:, 1].max())
    if head is None:
        lo = top - 0.35 * (top - float(pts[:, 1].min()))
    else:
        radius = max(top - float(head[1]), 1e-3)
        lo = float(head[1]) - BUST_DEPTH * radius
    return pts[pts[:, 1] >= lo]


def _rasterise(
    sx: np.ndarray, sy: np.ndarray, depth: np.ndarray, width: int, height: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Z-buffer over triangles given by screen corners (T, 3): the nearest triangle id and barycentrics per pixel.

    Pixel centres are at integer + 0.5. Triangles are batched by the size of their bounding box, so every batch
    is one set of (triangles x candidate pixels) numpy arrays.
    """
    n_pix = width * height
    zbuf = np.full(n_pix, np.inf)
    tri_id = np.full(n_pix, -1, np.int64)
    bary = np.zeros((n_pix, 3))
    x0 = np.clip(np.floor(sx.min(1) - 0.5), 0, width - 1).astype(np.int64)
    x1 = np.clip(np.ceil(sx.max(1) - 0.5), 0, width - 1).astype(np.int64)
    y0 = np.clip(np.floor(sy.min(1) - 0.5), 0, height - 1).astype(np.int64)
    y1 = np.clip(np.ceil(sy.max(1) - 0.5), 0, height - 1).astype(np.int64)
    ax, ay = sx[:, 0], sy[:, 0]
    e1x, e1y = sx[:, 1] - ax, sy[:, 1] - ay
    e2x, e2y = sx[:, 2] - ax, sy[:, 2] - ay
    den = e1x * e2y - e2x * e1y
    ok = (np.abs(den) > 1e-12) & (depth.max(1) > 0)
    span = np.maximum(x1 - x0, y1 - y0) + 1
    for size in (2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048):
        sel = np.nonzero(ok & (span <= size) & (span > size // 2 if size > 2 else True))[0]
        if not len(sel):
            continue
        off = np.arange(size)
        chunk = max(1, 400_000 // (size * size))
        for c0 in range(0, len(sel), chunk):
            t = sel[c0 : c0 + chunk]
            px = x0[t, None, None] + off[None, None, :]
            py = y0[t, None, None] + off[None, :, None]
            inside = (px <= x1[t, None, None]) & (py <= y1[t, None, None])
            fx = px + 0.5 - ax[t, None, None]
            fy = py + 0.5 - ay[t, None, None]
            l1 = (fx * e2y[t, None, None] - e2x[t, None, None] * fy) / den[t, None, None]
            l2 = (e1x[t, None, None] * fy - fx * e1y[t, None, None]) / den[t, None, None]
            l0 = 1.0 - l1 - l2
            eps = -1e-9
            inside &= (l0 >= eps) & (l1 >= eps) & (l2 >= eps)
            if not inside.any():
                continue
            ti, iy, ix = np.nonzero(inside)
            tt = t[ti]
            b = np.stack([l0[ti, iy, ix], l1[ti, iy, ix], l2[ti, iy, ix]], 1)
            # perspective-correct depth: interpolate 1/z in screen space
            inv = b[:, 0] / depth[tt, 0] + b[:, 1] / depth[tt, 1] + b[:, 2] / depth[tt, 2]
            z = 1.0 / np.maximum(inv, 1e-12)
            pix = py[ti, iy, 0] * width + px[ti, 0, ix]
            order = np.lexsort((tt, z, pix))
            pix, z, tt, b = pix[order], z[order], tt[order], b[order]
            first = np.ones(len(pix), bool)
            first[1:] = pix[1:] != pix[:-1]
            pix, z, tt, b = pix[first], z[first], tt[first], b[first]
            win = z < zbuf[pix]
            pix, z, tt, b = pix[win], z[win], tt[win], b[win]
            zbuf[pix] = z
            tri_id[pix] = tt
            # perspective-correct barycentrics for attribute interpolation
            bw = b / depth[tt]
            bary[pix] = bw / bw.sum(axis=1, keepdims=True)
    return tri_id, bary, zbuf


def render_thumbnail(data: bytes, framing: str = "bust", size: int = SIZE) -> np.ndarray:
    """The avatar in ``data`` (GLB bytes) as an (size, size, 3) uint8 sRGB image (see the module docstring)."""
    if framing not in ("bust", "full"):
        raise ValueError(f"framing must be 'bust' or 'full', not {framing!r}")
    scene = _Scene(data)
    rot = _view_rotation()
    subject = _subject(scene, framing) @ rot.T
    centre = 0.5 * (subject.min(0) + subject.max(0))
    extent = subject.max(0) - subject.min(0)
    dist = 2.2 * max(float(extent[0]), float(extent[1])) / (2.0 * math.tan(math.radians(FOV_DEGREES) / 2.0))
    eye = centre + np.array([0.0, 0.0, dist + 0.5 * float(extent[2])])

    def project(p: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        q = p @ rot.T - eye
        zc = -q[..., 2]
        return q[..., 0] / zc, q[..., 1] / zc, zc

    # fit the subject's projection into the frame with a margin, centred
    u, v, _ = project(_subject(scene, framing))
    margin = 0.06
    span = max(float(u.max() - u.min()), float(v.max() - v.min()))
    res = size * SUPERSAMPLE
    scale = res * (1.0 - 2 * margin) / span
    cu, cv = 0.5 * float(u.max() + u.min()), 0.5 * float(v.max() + v.min())
    tu, tv, tz = project(scene.tris)
    sx = (tu - cu) * scale + res / 2
    sy = res / 2 - (tv - cv) * scale
    tri_id, bary, _ = _rasterise(sx, sy, tz, res, res)

    # background: a soft vertical gradient
    ramp = np.linspace(0.0, 1.0, res)[:, None, None]
    top, bottom = np.array(BACKGROUND_TOP, float) / 255.0, np.array(BACKGROUND_BOTTOM, float) / 255.0
    img = np.broadcast_to(top + (bottom - top) * ramp, (res, res, 3)).copy()
    hit = tri_id >= 0
    tid = tri_id[hit]
    b = bary[hit]
    nrm = np.einsum("pk,pkc->pc", b, scene.nrms[tid]) @ rot.T
    nrm /= np.maximum(np.linalg.norm(nrm, axis=1, keepdims=True), 1e-12)
    # the view direction in camera space is +z towards the viewer: turn back faces (hair, mouth insides) to it
    nrm = np.where(nrm[:, 2:3] < 0, -nrm, nrm)
    key = np.array([-0.45, 0.55, 0.70])
    fill = np.array([0.65, 0.10, 0.75])
    key /= np.linalg.norm(key)
    fill /= np.linalg.norm(fill)
    light = 0.30 + 0.80 * np.clip(nrm @ key, 0.0, None) + 0.28 * np.clip(nrm @ fill, 0.0, None)
    rim = 0.12 * np.clip(1.0 - nrm[:, 2], 0.0, 1.0) ** 3
    lit = scene.cols[tid] * light[:, None] + rim[:, None]
    lit = np.where(scene.emissive[tid][:, None], 1.0, lit)
    flat = img.reshape(-1, 3)
    flat[np.nonzero(hit.reshape(-1))[0]] = _srgb(lit)
    # box filter down to the output size
    img = flat.reshape(size, SUPERSAMPLE, size, SUPERSAMPLE, 3).mean(axis=(1, 3))
    return np.clip(np.floor(img * 255.0 + 0.5), 0, 255).astype(np.uint8)


def write_thumbnail(data: bytes, path: Path, framing: str = "bust", size: int = SIZE) -> Path:
    """Render ``data`` and save it as a PNG at ``path`` (no metadata, so the bytes depend on the pixels only)."""
    from PIL import Image

    Image.fromarray(render_thumbnail(data, framing, size), "RGB").save(path, format="PNG", optimize=False)
    return path

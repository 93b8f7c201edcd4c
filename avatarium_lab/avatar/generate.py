"""Procedural generator of the avatar library: builds every character in ``library/library.yaml`` as a GLB.

Run ``python -m avatarium_lab.avatar.generate`` to (re)write ``library/<id>.glb`` for every entry. The output is
deterministic: no clocks, no randomness, and every float is rounded to a fixed grid before it is stored, so the
same inputs give the same bytes.

The renderer contract (glTF 2.0, Y up, metres, the character faces +Z, ``MouthAnchor``/``HeadAnchor`` nodes, the
15 Oculus visemes plus ten ARKit shapes named in ``mesh.extras.targetNames``) is described in
``avatarium_lab/avatar/__init__.py``. Morph targets are stored as sparse accessors, so a shape that moves only
the mouth costs only the mouth's vertices.

How the face is built: one closed sheet of rings around the mouth, in elliptic coordinates whose foci are the
mouth corners. Ring 0 is the line where the lips meet (its upper and lower halves are distinct vertices, so the
mouth can open without any special topology); outer rings grow over the face and close at the back of the head;
inner rings roll the lips inwards and close into a dark mouth bag. Eyes, lids, brows, teeth, tongue, ears, hair
and the torso are separate pieces. Every morph target is a smooth displacement field over these vertices.
"""

from __future__ import annotations

import argparse
import json
import math
import struct
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import numpy as np
import pygltflib
import yaml

from . import LIBRARY_DIR, LIBRARY_FILE, MORPH_TARGETS

# Rounding grids: last-bit differences between numpy builds or CPUs almost never survive them.
_POS_GRID = 1e-6
_NRM_GRID = 1e-5
# A vertex enters a sparse morph target only if it moves more than this (metres) or its normal turns.
_MIN_DELTA = 1.5e-4
_MIN_NORMAL_DELTA = 0.06


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CharacterSpec:
    """Generator parameters of one character (the ``generator`` mapping of a library.yaml entry).

    Colours are sRGB hex strings. Proportions are factors around 1.0 applied to the default stylised head.
    """

    skin_color: str = "#f0c2a2"
    lip_color: str = "#c8626a"
    hair_color: str = "#5a3522"
    brow_color: str = "#4a2c1c"
    eye_color: str = "#4f86c6"
    shirt_color: str = "#2f8f83"
    hair_style: str = "bob"
    head_width: float = 1.0
    head_height: float = 1.0
    head_depth: float = 1.0
    jaw_width: float = 1.0
    eye_size: float = 1.0
    eye_spacing: float = 1.0
    nose_size: float = 1.0
    mouth_width: float = 1.0
    lip_fullness: float = 1.0
    cheek_fullness: float = 1.0
    shoulder_width: float = 1.0

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CharacterSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator parameter(s) {unknown}; known: {sorted(known)}")
        spec = cls(**dict(data))
        if spec.hair_style not in HAIR_STYLES:
            raise ValueError(f"hair_style {spec.hair_style!r} is not one of {sorted(HAIR_STYLES)}")
        return spec


HAIR_STYLES = ("bob", "short")


def _srgb_to_linear(hex_color: str) -> tuple[float, float, float]:
    h = hex_color.lstrip("#")
    if len(h) != 6:
        raise ValueError(f"colour {hex_color!r} is not #rrggbb")
    out = []
    for i in range(3):
        c = int(h[2 * i : 2 * i + 2], 16) / 255.0
        out.append(c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4)
    return (out[0], out[1], out[2])


# --------------------------------------------------------------------------------------------------------------
# Small numeric helpers
# --------------------------------------------------------------------------------------------------------------


def _smoothstep(e0: float, e1: float, x: np.ndarray) -> np.ndarray:
    t = np.clip((x - e0) / (e1 - e0), 0.0, 1.0)
    return t * t * (3.0 - 2.0 * t)


def _gauss(x: np.ndarray, sigma: float) -> np.ndarray:
    return np.exp(-0.5 * (x / sigma) ** 2)


def _cgauss(x: np.ndarray, sigma: float) -> np.ndarray:
    """A Gaussian windowed to exactly zero beyond three sigma: smooth falloff with compact support."""
    t = np.clip(1.0 - (x / (3.0 * sigma)) ** 2, 0.0, 1.0)
    return np.exp(-0.5 * (x / sigma) ** 2) * t * t


def _normalize(v: np.ndarray) -> np.ndarray:
    n = np.sqrt(np.sum(v * v, axis=-1, keepdims=True))
    return v / np.maximum(n, 1e-12)


def _smax(a: np.ndarray, b: np.ndarray, k: float) -> np.ndarray:
    """Polynomial smooth maximum: the union of two radial shapes without a crease."""
    h = np.maximum(k - np.abs(a - b), 0.0) / k
    return np.maximum(a, b) + h * h * k * 0.25


def _rot_x(p: np.ndarray, pivot: np.ndarray, angle: float) -> np.ndarray:
    """Rotate points about the x axis through ``pivot`` (positive angle: front goes down)."""
    q = p - pivot
    c, s = math.cos(angle), math.sin(angle)
    y = q[:, 1] * c - q[:, 2] * s
    z = q[:, 1] * s + q[:, 2] * c
    return np.stack([q[:, 0], y, z], axis=1) + pivot


def _vertex_normals(pos: np.ndarray, tris: np.ndarray) -> np.ndarray:
    """Area-weighted smooth vertex normals."""
    a, b, c = pos[tris[:, 0]], pos[tris[:, 1]], pos[tris[:, 2]]
    fn = np.cross(b - a, c - a)
    n = np.zeros_like(pos)
    for k in range(3):
        np.add.at(n, tris[:, k], fn)
    return _normalize(n)


def _ring_band(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """Triangles between two closed rings of vertex indices of equal length."""
    r0b, r1b = np.roll(r0, -1), np.roll(r1, -1)
    return np.concatenate([np.stack([r0, r1, r1b], 1), np.stack([r0, r1b, r0b], 1)])


def _open_band(r0: np.ndarray, r1: np.ndarray) -> np.ndarray:
    """Triangles between two open rows of vertex indices of equal length."""
    a, b, c, d = r0[:-1], r1[:-1], r1[1:], r0[1:]
    return np.concatenate([np.stack([a, b, c], 1), np.stack([a, c, d], 1)])


def _fan(center: int, ring: np.ndarray) -> np.ndarray:
    return np.stack([np.full_like(ring, center), np.roll(ring, -1), ring], 1)


# --------------------------------------------------------------------------------------------------------------
# Mesh pieces
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Piece:
    """A connected surface: its own vertices, triangles, a material per triangle and per-vertex data for fields."""

    name: str
    pos: np.ndarray
    tris: np.ndarray
    tri_mat: list[str] | np.ndarray
    attrs: dict[str, np.ndarray] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if isinstance(self.tri_mat, list):
            self.tri_mat = np.array(self.tri_mat, dtype=object)
        if len(self.tri_mat) == 1 and len(self.tris) != 1:
            self.tri_mat = np.full(len(self.tris), self.tri_mat[0], dtype=object)

    def flipped(self) -> Piece:
        self.tris = self.tris[:, ::-1].copy()
        return self


def _orient(piece: Piece, inside: np.ndarray) -> Piece:
    """Make the triangles face away from ``inside`` (on average), flipping the winding if needed."""
    nrm = _vertex_normals(piece.pos, piece.tris)
    if np.mean(np.sum(nrm * (piece.pos - inside), axis=1)) < 0:
        piece.flipped()
    return piece


def _grid_piece(
    name: str,
    pts: np.ndarray,
    material: str,
    *,
    wrap: bool,
    start_pole: np.ndarray | None = None,
    end_pole: np.ndarray | None = None,
) -> Piece:
    """A (rows, cols, 3) grid of points as a surface; rows are rings when ``wrap``; optional pole points close it."""
    rows, cols = pts.shape[:2]
    pos = [pts.reshape(-1, 3)]
    idx = np.arange(rows * cols).reshape(rows, cols)
    tris = []
    band = _ring_band if wrap else _open_band
    for r in range(rows - 1):
        tris.append(band(idx[r], idx[r + 1]))
    n = rows * cols
    if start_pole is not None:
        pos.append(start_pole[None])
        tris.append(_fan(n, idx[0])[:, ::-1])
        n += 1
    if end_pole is not None:
        pos.append(end_pole[None])
        tris.append(_fan(n, idx[-1]))
    t = np.concatenate(tris)
    return Piece(name, np.concatenate(pos), t, [material] * len(t))


# --------------------------------------------------------------------------------------------------------------
# The head shape
# --------------------------------------------------------------------------------------------------------------


def _ray_ellipsoid(d: np.ndarray, centre: np.ndarray, radii: np.ndarray) -> np.ndarray:
    """Distance along unit directions ``d`` from the origin (inside the ellipsoid) to its surface."""
    dr = d / radii
    qr = centre / radii
    a = np.sum(dr * dr, axis=-1)
    b = -2.0 * np.sum(dr * qr, axis=-1)
    c = np.sum(qr * qr) - 1.0
    return (-b + np.sqrt(b * b - 4 * a * c)) / (2 * a)


class Head:
    """The skull-plus-face surface as a radial function around the head centre, with the facial features.

    All lengths in metres; ``self.c`` is the head centre. Face coordinates ``fx, fy`` are x and y relative to it.
    """

    def __init__(self, spec: CharacterSpec) -> None:
        self.spec = spec
        sw, sh, sd = spec.head_width, spec.head_height, spec.head_depth
        self.c = np.array([0.0, 0.50, 0.0])
        self.cranium_c = np.array([0.0, 0.006 * sh, -0.008 * sd])
        self.cranium_r = np.array([0.075 * sw, 0.098 * sh, 0.092 * sd])
        self.jaw_c = np.array([0.0, -0.042 * sh, 0.013 * sd])
        self.jaw_r = np.array([0.057 * sw * spec.jaw_width, 0.058 * sh, 0.074 * sd])
        self.eye_y = -0.004 * sh
        self.eye_x = 0.0305 * sw * spec.eye_spacing
        self.eye_r = 0.0158 * spec.eye_size
        self.nose_tip_y = -0.034 * sh
        self.mouth_y = -0.062 * sh
        self.mouth_w = 0.0205 * spec.mouth_width
        self.brow_y = self.eye_y + 0.025 * sh

    # radial shape ------------------------------------------------------------------------------------------
    def radius(self, d: np.ndarray) -> np.ndarray:
        r1 = _ray_ellipsoid(d, self.cranium_c, self.cranium_r)
        r2 = _ray_ellipsoid(d, self.jaw_c, self.jaw_r)
        return _smax(r1, r2, 0.032)

    def features(self, fx: np.ndarray, fy: np.ndarray, *, sockets: bool = True) -> np.ndarray:
        """Forward (+z) relief of the face at face coordinates: nose, sockets, cheeks, muzzle, chin."""
        s = self.spec
        z = np.zeros_like(fx)
        ax = np.abs(fx)
        # nose: a narrow ridge from the bridge down to a rounded button tip, small wings beside the tip
        ty, by = self.nose_tip_y, self.eye_y + 0.004
        t = np.clip((fy - ty) / (by - ty), 0.0, 1.0)
        ridge_h = (0.0040 + 0.0062 * (1 - t) ** 1.6) * _smoothstep(by + 0.012, by, fy)
        ridge_h = np.where(fy < ty, 0.0102 * _gauss(fy - ty, 0.0040), ridge_h)
        ridge_w = 0.0040 + 0.0026 * (1 - t) ** 2
        z += s.nose_size * ridge_h * _gauss(fx, ridge_w)
        z += s.nose_size * 0.0036 * _gauss(fx, 0.0062) * _gauss(fy - (ty + 0.0005), 0.0050)
        z += s.nose_size * 0.0018 * _gauss(ax - 0.0068, 0.0030) * _gauss(fy - (ty - 0.0016), 0.0032)
        # eye sockets and brow ridge
        if sockets:
            z -= 0.0045 * _gauss(ax - self.eye_x, 0.0125) * _gauss(fy - self.eye_y, 0.0105)
        z += 0.0022 * _gauss(ax - 0.028, 0.02) * _gauss(fy - (self.brow_y + 0.004), 0.007)
        # a broad face plane: the outer orbits and cheekbones come forward, so the eyes sit in the face
        z += 0.0080 * _gauss(ax - 0.050, 0.016) * _gauss(fy - (self.eye_y - 0.006), 0.024)
        # cheeks, muzzle, chin: soft rounded volumes of a friendly cartoon face
        z += s.cheek_fullness * 0.0070 * _gauss(ax - 0.038, 0.017) * _gauss(fy - (self.mouth_y + 0.030), 0.016)
        z += 0.0050 * _gauss(fx, 0.022) * _gauss(fy - (self.mouth_y + 0.004), 0.014)
        z += 0.0080 * _gauss(fx, 0.013) * _gauss(fy - (self.mouth_y - 0.027), 0.009)
        # the philtrum: a faint groove from the nose to the upper lip
        z -= 0.0007 * _gauss(fx, 0.0022) * _gauss(fy - (self.mouth_y + 0.017), 0.006)
        return z

    def surface(self, d: np.ndarray, *, sockets: bool = True) -> np.ndarray:
        """Head-centre-relative surface points for unit directions ``d`` (features included)."""
        p = d * self.radius(d)[:, None]
        front = _smoothstep(0.05, 0.55, d[:, 2])
        p[:, 2] += front * self.features(p[:, 0], p[:, 1], sockets=sockets)
        return p

    def solve_front(self, fx: np.ndarray, fy: np.ndarray, *, sockets: bool = True) -> np.ndarray:
        """Head-centre-relative surface points in front of face coordinates (fx, fy)."""
        fx = np.asarray(fx, dtype=np.float64)
        fy = np.asarray(fy, dtype=np.float64)
        d = _normalize(np.stack([fx, fy, np.full_like(fx, 0.08)], 1))
        for _ in range(60):
            base_z = d[:, 2] * self.radius(d)
            d = _normalize(np.stack([fx, fy, base_z], 1))
        return self.surface(d, sockets=sockets)


# --------------------------------------------------------------------------------------------------------------
# The face sheet: lips, mouth bag and the whole skin of the head
# --------------------------------------------------------------------------------------------------------------

N_AROUND = 72  # vertices per ring; a multiple of 4 puts vertices exactly at the corners and lip centres


@dataclass
class MouthFrame:
    centre: np.ndarray  # world position of the lip-line centre (MouthAnchor)
    half_width: float
    upper_h: float  # vermilion height of the upper lip
    lower_h: float


_LIP_BANDS = 7  # ring bands across the vermilion of each lip


def _outer_rhos(rho_lip: float, rho_max: float) -> np.ndarray:
    """Ring radii: dense over the lips, ~3 mm over the face, coarser towards the back of the head."""
    rs = list(np.linspace(0.0, rho_lip, _LIP_BANDS + 1))
    while True:
        r = rs[-1]
        step = min(0.0012 + 0.13 * (r - rho_lip), 0.0042) if r < 0.10 else min(0.0040 + 0.10 * (r - 0.10), 0.018)
        if r + step > rho_max - 0.6 * step:
            break
        rs.append(r + step)
    return np.array(rs)


def build_face_sheet(head: Head) -> tuple[Piece, MouthFrame]:
    """The head's skin, lips and mouth bag as one closed sheet of rings around the mouth (see the module doc).

    Outer rings use elliptic coordinates with foci at the mouth corners, mapped onto the head by an azimuthal
    equidistant projection around the mouth direction; ``rho`` (metres) grows outwards from the lip line, and is
    negative (depth) on the inner lip roll and the bag. Per-vertex ``rho`` and ``u`` (+1 upper lip centre, -1 lower)
    drive the morph fields.
    """
    spec = head.spec
    n = N_AROUND
    phi = 2 * np.pi * np.arange(n) / n
    u = np.sin(phi)  # +1 upper-lip centre, -1 lower-lip centre, 0 at the corners
    w = head.mouth_w
    up_h = 0.0060 * spec.lip_fullness
    lo_scale = 1.35  # the lower lip is fuller than the upper one
    c = head.c

    # the mouth direction: the base surface point at mouth height straight ahead
    lo, hi = -1.2, 0.4
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        d = np.array([[0.0, math.sin(mid), math.cos(mid)]])
        if head.surface(d)[0, 1] < head.mouth_y:
            lo = mid
        else:
            hi = mid
    beta = 0.5 * (lo + hi)
    d0 = np.array([0.0, math.sin(beta), math.cos(beta)])
    e1 = np.array([1.0, 0.0, 0.0])
    e2 = np.array([0.0, math.cos(beta), -math.sin(beta)])
    r0 = float(np.linalg.norm(head.surface(d0[None])[0]))
    rho_max = math.sqrt((math.pi * r0) ** 2 - w * w)
    rhos = _outer_rhos(up_h, rho_max)

    def chart_to_dir(x: np.ndarray, y: np.ndarray) -> np.ndarray:
        r = np.sqrt(x * x + y * y)
        ang = r / r0
        t = (x[:, None] * e1 + y[:, None] * e2) / np.maximum(r, 1e-12)[:, None]
        return np.cos(ang)[:, None] * d0 + np.sin(ang)[:, None] * t

    def outer_ring(rho: float) -> np.ndarray:
        a = math.sqrt(w * w + rho * rho)
        circ = float(_smoothstep(0.05, 0.16, np.array(rho)))
        yscale = 1.0 + (lo_scale - 1.0) * np.maximum(-u, 0.0) * math.exp(-((rho / 0.016) ** 2))
        x = a * np.cos(phi)
        y = ((1 - circ) * rho + circ * a) * u * yscale
        # Cupid's bow on the upper vermilion border, fading out above it
        bow_w = float(_smoothstep(0.0, up_h, np.array(rho))) * math.exp(-((max(rho - up_h, 0.0) / 0.006) ** 2))
        bow = 0.0010 * _gauss(np.abs(x) - 0.0050, 0.0030) - 0.0006 * _gauss(x, 0.0022)
        y = y + np.where(u > 0, bow * bow_w * u, 0.0)
        # a friendly resting mouth: the corners sit a little higher than the lip centre
        y = y + 0.0012 * np.cos(phi) ** 2 * math.exp(-((rho / 0.010) ** 2))
        p = head.surface(chart_to_dir(x, y))
        # lip volume: a rounded bulge over the vermilion, slightly recessed where the lips meet
        t = rho / (up_h * np.where(u > 0, 1.0, lo_scale))
        amp = spec.lip_fullness * np.where(u > 0, 0.0030, 0.0036) * np.abs(u) ** 0.45
        p[:, 2] += amp * np.exp(-(((t - 0.42) / 0.62) ** 2)) - 0.0009 * np.abs(u) ** 0.5 * math.exp(
            -((rho / 0.0012) ** 2)
        )
        return p + c

    rings = [outer_ring(float(rho)) for rho in rhos]
    ring_rho = [float(rho) for rho in rhos]
    edge = rings[0]
    centre = 0.5 * (edge[n // 4] + edge[3 * n // 4])

    # inner lip roll: from the lip line back and outwards into the mouth
    inner: list[np.ndarray] = []
    inner_rho: list[float] = []
    au = np.abs(u) ** 0.5 * np.sign(u)
    for depth, roll in ((0.0012, 0.0009), (0.0030, 0.0019), (0.0055, 0.0026), (0.0085, 0.0030)):
        p = edge.copy()
        p[:, 0] = centre[0] + (edge[:, 0] - centre[0]) * (1.0 - 0.9 * depth)
        p[:, 1] += roll * au * np.where(u < 0, 1.15, 1.0)
        p[:, 2] -= depth
        inner.append(p)
        inner_rho.append(-depth)
    # the mouth bag: wider than the lip opening behind the lips, closing at the back
    bag = ((0.013, 0.0200, 0.0085), (0.021, 0.0215, 0.0125), (0.031, 0.0198, 0.0142), (0.041, 0.0150, 0.0120),
           (0.048, 0.0085, 0.0072))  # fmt: skip
    for depth, hw, hh in bag:
        p = np.stack(
            [
                centre[0] + hw * np.cos(phi),
                centre[1] + hh * u * np.where(u < 0, 1.05, 0.9),
                np.full(n, centre[2] - depth),
            ],
            1,
        )
        inner.append(p)
        inner_rho.append(-depth)
    bag_pole = centre + np.array([0.0, -0.001, -0.052])

    all_rings = inner[::-1] + rings
    all_rho = inner_rho[::-1] + ring_rho
    pts = np.stack(all_rings)
    back_pole = head.surface(-d0[None])[0] + c
    piece = _grid_piece("face", pts, "skin", wrap=True, start_pole=bag_pole, end_pole=back_pole)
    # materials per ring band, from the back of the bag outwards
    n_inner, n_bag = len(inner), len(bag)
    mats = []
    for k in range(len(all_rings) - 1):
        m = "mouth" if k < n_bag else "lips_inner" if k < n_inner else "lips" if k < n_inner + _LIP_BANDS else "skin"
        mats += [m] * (2 * n)
    mats += ["mouth"] * n + ["skin"] * n  # the two pole fans
    piece.tri_mat = np.array(mats, dtype=object)
    phi_v = np.tile(phi, len(all_rings))
    piece.attrs = {
        "rho": np.concatenate([np.repeat(np.array(all_rho), n), [bag_pole[2] - centre[2], rho_max]]),
        "u": np.concatenate([np.sin(phi_v), [0.0, 0.0]]),
    }
    frame = MouthFrame(centre=centre, half_width=w, upper_h=up_h, lower_h=up_h * lo_scale)
    return piece, frame


# --------------------------------------------------------------------------------------------------------------
# Eyes and lids
# --------------------------------------------------------------------------------------------------------------


@dataclass
class EyeRig:
    centre: np.ndarray
    radius: float
    side: int  # +1 the character's left (+x), -1 right


def _eye_centres(head: Head) -> list[EyeRig]:
    rigs = []
    for side in (1, -1):
        fx = np.array([side * head.eye_x])
        fy = np.array([head.eye_y])
        p = head.solve_front(fx, fy, sockets=False)[0]
        centre = head.c + p - np.array([0.0, 0.0, 1.10 * head.eye_r])
        rigs.append(EyeRig(centre, head.eye_r, side))
    return rigs


def build_eyeball(rig: EyeRig, spec: CharacterSpec) -> Piece:
    """A sphere with its poles on the gaze axis, so iris and pupil are clean ring bands."""
    r = rig.radius
    pupil, iris = math.radians(12.5), math.radians(30.0)
    rim = iris - math.radians(4.0)  # a darker ring at the iris edge, as drawn in most cartoon eyes
    polar = np.concatenate(
        [
            np.linspace(0.0, pupil, 4)[1:],
            np.linspace(pupil, rim, 5)[1:],
            np.linspace(rim, iris, 2)[1:],
            np.linspace(iris, iris + 0.06, 2)[1:],
            np.linspace(iris + 0.06, math.pi, 16)[1:-1],
        ]
    )
    n = 32
    az = 2 * np.pi * np.arange(n) / n
    th = polar[:, None]
    # the iris sits slightly proud of the sclera, like a cornea catching the light
    bulge = 1.0 + 0.035 * np.clip(1.0 - th / (iris + 0.06), 0.0, 1.0) ** 1.5
    pts = np.stack([np.sin(th) * np.cos(az), np.sin(th) * np.sin(az), np.cos(th) * np.ones_like(az)], -1)
    pts = pts * (r * bulge)[..., None]
    # look slightly inwards, at a point half a metre in front of the face
    yaw = -rig.side * math.atan2(abs(rig.centre[0]), 1.0)
    cy_, sy_ = math.cos(yaw), math.sin(yaw)
    x = pts[..., 0] * cy_ + pts[..., 2] * sy_
    z = -pts[..., 0] * sy_ + pts[..., 2] * cy_
    pts = np.stack([x, pts[..., 1], z], -1) + rig.centre
    front = rig.centre + r * 1.035 * np.array([sy_, 0.0, cy_])
    back = rig.centre - r * np.array([sy_, 0.0, cy_])
    piece = _grid_piece("eye", pts, "sclera", wrap=True, start_pole=front, end_pole=back)
    mats = []
    for k in range(len(polar) - 1):
        hi = polar[k + 1] + 1e-9
        m = (
            "pupil"
            if hi <= pupil + 2e-9
            else "iris"
            if hi <= rim + 2e-9
            else "iris_rim"
            if hi <= iris + 2e-9
            else "sclera"
        )
        mats += [m] * (2 * n)
    mats += ["pupil"] * n + ["sclera"] * n
    piece.tri_mat = np.array(mats, dtype=object)
    return _orient(piece, rig.centre)


def build_catchlight(rig: EyeRig) -> Piece:
    """A small bright highlight floating on the cornea: fixed lights in the eyes read as 'alive' in a cartoon."""
    r = rig.radius
    # up and towards the character's right of the pupil, just outside the cornea bulge
    d = _normalize(np.array([-0.30, 0.34, 1.0]))
    centre = rig.centre + d * r * 1.045
    u = _normalize(np.cross(np.array([0.0, 1.0, 0.0]), d))
    v = np.cross(d, u)
    n = 12
    a = 2 * np.pi * np.arange(n) / n
    rad = 0.15 * r
    ring = centre + rad * (np.cos(a)[:, None] * u + 0.8 * np.sin(a)[:, None] * v) - d * 0.15 * rad
    piece = _grid_piece("catchlight", ring[None], "highlight", wrap=True, start_pole=centre)
    return _orient(piece, rig.centre)


def _lid_lines(alpha: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Elevation (radians) of the upper and lower lid edges and of the closing line over horizontal angle."""
    ac = math.radians(52.0)
    t = np.clip(1.0 - (alpha / ac) ** 2, 0.0, 1.0)
    corner = math.radians(-4.0)
    upper = corner + (math.radians(25.0) - corner) * t**0.55
    lower = corner + (math.radians(-31.0) - corner) * t**0.75
    close = lower + 0.22 * (upper - lower)
    return upper, lower, close


def _sph(rig: EyeRig, alpha: np.ndarray, elev: np.ndarray, radius: np.ndarray) -> np.ndarray:
    d = np.stack([np.cos(elev) * np.sin(alpha), np.sin(elev), np.cos(elev) * np.cos(alpha)], -1)
    return rig.centre + d * radius[..., None]


def build_lids(rig: EyeRig) -> tuple[list[Piece], dict[str, np.ndarray]]:
    """Upper and lower eyelid shells (skin, the upper rim dark like a lash line) and their closed positions."""
    r = rig.radius
    na = 25
    alpha = np.linspace(-math.radians(78.0), math.radians(78.0), na)
    upper_e, lower_e, close_e = _lid_lines(alpha)
    pieces = []
    closed: dict[str, np.ndarray] = {}
    for which in ("upper", "lower"):
        radius = 1.13 * r if which == "upper" else 1.09 * r
        root = math.radians(78.0) if which == "upper" else math.radians(-70.0)
        edge_open = upper_e if which == "upper" else lower_e
        edge_closed = close_e - math.radians(3.0) if which == "upper" else close_e + math.radians(1.5)
        sgn = 1.0 if which == "upper" else -1.0
        # rows: outer shell from the root to the edge, then a rounded rim curling in onto the eyeball
        s = np.linspace(0.0, 1.0, 9)
        rim = [(0.0, 1.0), (0.35, 0.985), (0.7, 0.93), (1.0, 0.0)]  # (inward fraction, extra elevation * sgn)
        rows_open, rows_closed, rim_flag = [], [], []
        for si in s:
            rows_open.append((root + si * (edge_open - root), np.full(na, radius)))
            rows_closed.append((root + si * (edge_closed - root), np.full(na, radius)))
            rim_flag.append(False)
        for frac, _ in rim[1:]:
            rr = radius - frac * (radius - 1.012 * r)
            back = math.radians(1.6) * frac
            rows_open.append((edge_open + sgn * back, np.full(na, rr)))
            rows_closed.append((edge_closed + sgn * back, np.full(na, rr)))
            rim_flag.append(True)
        pts_open = np.stack([_sph(rig, alpha, e, rad) for e, rad in rows_open])
        # closing puffs the lid outwards so the straight-line morph never cuts through the eyeball midway
        pts_closed = []
        for (eo, rad), (ec, _) in zip(rows_open, rows_closed, strict=True):
            travel = np.abs(ec - eo)
            puff = 2.0 / np.cos(travel / 2.0) - 1.0
            pts_closed.append(_sph(rig, alpha, ec, rad * puff))
        pts_closed = np.stack(pts_closed)
        piece = _grid_piece(f"lid_{which}", pts_open, "skin", wrap=False)
        nrows = pts_open.shape[0]
        mats = []
        for k in range(nrows - 1):
            dark = which == "upper" and k >= nrows - 4
            mats += ["lash" if dark else "skin"] * (2 * (na - 1))
        piece.tri_mat = np.array(mats, dtype=object)
        _orient(piece, rig.centre)
        closed[piece.name] = pts_closed.reshape(-1, 3)
        pieces.append(piece)
    return pieces, closed


# --------------------------------------------------------------------------------------------------------------
# Brows, teeth, tongue, ears
# --------------------------------------------------------------------------------------------------------------


def _tube(
    name: str,
    centre: np.ndarray,
    frame_n: np.ndarray,
    frame_b: np.ndarray,
    half_h: np.ndarray,
    half_t: np.ndarray,
    material: str,
    n_cs: int = 10,
) -> Piece:
    """A closed tube along a polyline with an elliptic cross-section (half sizes along ``frame_b`` and ``frame_n``)."""
    a = 2 * np.pi * np.arange(n_cs) / n_cs
    pts = (
        centre[:, None]
        + frame_b[:, None] * (half_h[:, None, None] * np.sin(a)[None, :, None])
        + frame_n[:, None] * (half_t[:, None, None] * np.cos(a)[None, :, None])
    )
    start = centre[0] - 0.3 * (centre[1] - centre[0])
    end = centre[-1] + 0.3 * (centre[-1] - centre[-2])
    return _grid_piece(name, pts, material, wrap=True, start_pole=start, end_pole=end)


def build_brows(head: Head) -> list[Piece]:
    pieces = []
    for side in (1, -1):
        t = np.linspace(0.0, 1.0, 22)
        fx = side * (0.0125 + 0.040 * t)
        fy = head.brow_y + 0.0045 * np.sin(np.pi * (t * 0.85 + 0.1)) - 0.005 * t**2
        p = head.solve_front(fx, fy) + head.c
        eps = 1e-4
        px = head.solve_front(fx + eps, fy) + head.c
        py = head.solve_front(fx, fy + eps) + head.c
        nrm = _normalize(np.cross(px - p, py - p))
        nrm *= np.sign(nrm[:, 2:3])
        tang = _normalize(np.gradient(p, axis=0))
        binorm = _normalize(np.cross(nrm, tang))
        binorm *= np.sign(binorm[:, 1:2])
        half_h = 0.0009 + 0.0017 * np.sin(np.pi * np.clip(t * 0.9 + 0.08, 0, 1)) ** 0.6 * (1.0 - 0.45 * t)
        half_t = 0.55 * half_h + 0.0002
        centre = p + nrm * 0.0006
        pc = _tube(f"brow_{'l' if side > 0 else 'r'}", centre, nrm, binorm, half_h, half_t, "brows")
        # orientation: outward normals
        nn = _vertex_normals(pc.pos, pc.tris)
        if np.mean(np.sum(nn * (pc.pos - np.mean(pc.pos, 0)), 1)) < 0:
            pc.flipped()
        pieces.append(pc)
    return pieces


def build_teeth(frame: MouthFrame, which: str) -> Piece:
    """A smooth dental arch: one white band with softly scalloped biting edge."""
    m = frame.centre
    n_arch = 25
    psi = np.linspace(-math.radians(82.0), math.radians(82.0), n_arch)
    if which == "upper":
        ax, az, front, top, bot, thick = 0.0205, 0.020, 0.0052, 0.0105, -0.0014, 0.0034
    else:
        ax, az, front, top, bot, thick = 0.0188, 0.0185, 0.0095, 0.0012, -0.0074, 0.0032
    zc = m[2] - front - az
    arch = np.stack([m[0] + ax * np.sin(psi), np.zeros_like(psi), zc + az * np.cos(psi)], 1)
    outward = _normalize(np.stack([np.sin(psi) / ax, np.zeros_like(psi), np.cos(psi) / az], 1))
    # cross-section: rounded rectangle (thickness along outward, height along y)
    scallop = 0.00035 * (1 - np.abs(np.cos(psi * 7.5))) ** 2
    edge_y = (bot + scallop) if which == "upper" else (top - scallop)
    far_y = top if which == "upper" else bot
    cs = []
    k = 12
    for i in range(k):
        a = 2 * np.pi * i / k
        ca, sa = math.cos(a), math.sin(a)
        # superellipse in (thickness, height)
        tx = math.copysign(abs(ca) ** 0.45, ca) * 0.5 * thick
        ty = math.copysign(abs(sa) ** 0.45, sa)
        cs.append((tx, ty))
    cs = np.array(cs)
    mid_y = 0.5 * (edge_y + far_y)
    half = 0.5 * (far_y - edge_y)
    rows = []
    for tx, ty in cs:
        y = m[1] + mid_y + ty * half
        p = arch + outward * tx
        p = p.copy()
        p[:, 1] = y
        rows.append(p)
    pts = np.stack(rows, 1)  # (arch, cs, 3)
    ends = (arch[0] + np.array([0, m[1] + mid_y[0], 0]), arch[-1] + np.array([0, m[1] + mid_y[-1], 0]))
    piece = _grid_piece(f"teeth_{which}", pts, "teeth", wrap=True, start_pole=ends[0], end_pole=ends[-1])
    nn = _vertex_normals(piece.pos, piece.tris)
    probe = piece.pos - (np.array([m[0], 0, zc]) + np.array([0, piece.pos[:, 1].mean(), 0]))
    probe[:, 1] = 0
    if np.mean(np.sum(nn * probe, 1)) < 0:
        piece.flipped()
    return piece


def build_tongue(frame: MouthFrame) -> Piece:
    m = frame.centre
    n_lat, n_lon = 10, 20
    th = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    # an ellipsoid, flatter on top, with a faint central groove
    x = np.sin(th)[:, None] * np.cos(ph)[None]
    z = np.sin(th)[:, None] * np.sin(ph)[None]
    y = np.cos(th)[:, None] * np.ones_like(ph)[None]
    y = np.where(y > 0, y * 0.75, y) - 0.12 * np.exp(-((x / 0.25) ** 2)) * (y > 0)
    centre = m + np.array([0.0, -0.0088, -0.0335])
    pts = np.stack([x * 0.0165, y * 0.0068, z * 0.0205], -1) + centre
    top = centre + np.array([0.0, 0.0068 * 0.75 - 0.0068 * 0.12, 0.0])
    bottom = centre + np.array([0.0, -0.0068, 0.0])
    piece = _grid_piece("tongue", pts, "tongue", wrap=True, start_pole=top, end_pole=bottom)
    nn = _vertex_normals(piece.pos, piece.tris)
    if np.mean(np.sum(nn * (piece.pos - centre), 1)) < 0:
        piece.flipped()
    return piece


def build_ears(head: Head) -> list[Piece]:
    """Cartoon ears: flattened ellipsoids with a bowl pressed into the outer face, turned slightly forward."""
    pieces = []
    n_lat, n_lon = 10, 20
    th = np.linspace(0, np.pi, n_lat + 2)[1:-1]
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    # unit-ellipsoid coordinates: ea along the head (front-back), eb up, et outwards
    ea = np.sin(th)[:, None] * np.cos(ph)[None]
    eb = np.cos(th)[:, None] * np.ones_like(ph)[None]
    et = np.sin(th)[:, None] * np.sin(ph)[None]
    bowl = 0.55 * np.exp(-((ea / 0.55) ** 2 + (eb / 0.6) ** 2)) * (et > 0)
    et = et - bowl * np.clip(et, 0, None) * 1.6
    la, lb, lt = 0.0125, 0.0215, 0.0055
    ear_y = head.eye_y - 0.006
    tilt = math.radians(12.0)  # the top leans back
    up = np.array([0.0, math.cos(tilt), -math.sin(tilt)])
    flare = math.radians(25.0)
    for side in (1, -1):
        d = _normalize(np.array([[side * 1.0, ear_y / 0.09, -0.06]]))
        base = head.surface(d)[0] + head.c
        out = np.array([side * 1.0, 0.0, 0.0])
        out_f = _normalize(out * math.cos(flare) + np.array([0.0, 0.0, 1.0]) * math.sin(flare))
        along = _normalize(np.cross(up, out_f)) * side
        centre = base + out * 0.0015 + np.array([0.0, 0.0, -0.004])
        pts = centre + (ea * la)[..., None] * along + (eb * lb)[..., None] * up + (et * lt)[..., None] * out_f
        piece = _grid_piece(
            f"ear_{'l' if side > 0 else 'r'}",
            pts,
            "skin",
            wrap=True,
            start_pole=centre + lb * up,
            end_pole=centre - lb * up,
        )
        pieces.append(_orient(piece, centre))
    return pieces


# --------------------------------------------------------------------------------------------------------------
# Hair
# --------------------------------------------------------------------------------------------------------------


def _periodic_curve(points: Sequence[tuple[float, float]], az: np.ndarray, smooth: float) -> np.ndarray:
    """A smooth periodic function of azimuth (degrees) through control points, Gaussian-smoothed."""
    xs = np.array([p[0] for p in points] + [points[0][0] + 360.0])
    ys = np.array([p[1] for p in points] + [points[0][1]])
    fine = np.arange(0.0, 360.0, 0.5)
    lin = np.interp(fine, xs, ys)
    k = np.arange(-int(3 * smooth / 0.5), int(3 * smooth / 0.5) + 1) * 0.5
    ker = np.exp(-0.5 * (k / smooth) ** 2)
    ker /= ker.sum()
    padded = np.concatenate([lin[-len(k) :], lin, lin[: len(k)]])
    sm = np.convolve(padded, ker, mode="same")[len(k) : len(k) + len(lin)]
    return np.interp(np.mod(az, 360.0), np.concatenate([fine, [360.0]]), np.concatenate([sm, sm[:1]]))


def build_hair(head: Head, style: str) -> Piece:
    """A sculpted hair shell: outer surface over the skull, draping down, rounded tips, inner surface back up."""
    m_cols = 80
    az_deg = 360.0 * np.arange(m_cols) / m_cols
    az = np.radians(az_deg)
    ey = head.eye_y
    if style == "bob":
        # bottom of the hair (head-relative y) around the head: side-swept fringe, temples, tucked behind ears
        y_end = _periodic_curve(
            [(0, ey + 0.044), (14, ey + 0.052), (28, ey + 0.060), (40, ey + 0.040), (55, ey - 0.006),
             (68, ey - 0.012), (80, ey + 0.020), (95, ey + 0.030), (112, ey + 0.010), (128, -0.068),
             (180, -0.078), (232, -0.068), (248, ey + 0.010), (265, ey + 0.030), (280, ey + 0.020),
             (292, ey - 0.016), (305, ey - 0.020), (318, ey + 0.010), (334, ey + 0.034), (348, ey + 0.040)],
            az_deg, 4.0)  # fmt: skip
        thick_top, drape = 0.013, True
    else:
        y_end = _periodic_curve(
            [
                (0, ey + 0.040),
                (40, ey + 0.034),
                (70, ey + 0.006),
                (95, ey + 0.030),
                (130, -0.040),
                (180, -0.048),
                (230, -0.040),
                (265, ey + 0.030),
                (290, ey + 0.006),
                (320, ey + 0.034),
            ],
            az_deg,
            6.0,
        )
        thick_top, drape = 0.009, False
    n_out, n_in = 21, 8
    theta_drape = math.radians(98.0)
    outer_rows, inner_rows = [], []
    for j in range(m_cols):
        a = az[j]
        th = np.linspace(0.0, math.radians(178.0), 240)
        d = np.stack([np.sin(th) * math.sin(a), np.cos(th), np.sin(th) * math.cos(a)], 1)
        base = head.surface(d, sockets=False)
        # thickness: volume on top, thinner at the edges
        thick = 0.0045 + (thick_top - 0.0045) * np.cos(np.clip(th, 0, math.pi / 2)) ** 0.7
        out = base + d * thick[:, None]
        if drape:
            k = np.searchsorted(th, theta_drape)
            p_d = out[k]
            ys = np.linspace(p_d[1], -0.16, 200)
            flair = 1.0 - 0.10 * _smoothstep(p_d[1], p_d[1] - 0.09, ys)  # the bob curls under at its tips
            hx, hz = p_d[0] * flair, p_d[2] * flair
            ext = np.stack([hx, ys, hz], 1)
            path = np.concatenate([out[:k], ext])
        else:
            path = out
        # cut at the hair's end height (first crossing going down)
        below = np.nonzero(path[:, 1] < y_end[j])[0]
        cut = below[0] if len(below) else len(path) - 1
        cut = max(cut, 8)
        path = path[: cut + 1]
        seg = np.sqrt(np.sum(np.diff(path, axis=0) ** 2, 1))
        s = np.concatenate([[0.0], np.cumsum(seg)])
        # denser rows near the tips, where the silhouette matters
        q = 1.0 - (1.0 - np.linspace(0.0, 1.0, n_out)) ** 1.25
        outer = np.stack([np.interp(q * s[-1], s, path[:, i]) for i in range(3)], 1)
        # inner surface: pulled in towards the head centre, inside the skull near the top
        inner_pts = []
        qi = np.linspace(1.0, 0.0, n_in)
        for t in qi:
            idx = np.interp(t * s[-1], s, np.arange(len(s)))
            pt = np.array([np.interp(idx, np.arange(len(path)), path[:, i]) for i in range(3)])
            dd = _normalize(pt)
            inward = 0.0055 + 0.010 * (1 - t) if t < 0.999 else 0.004
            inner_pts.append(pt - dd * inward)
        inner = np.array(inner_pts)
        outer_rows.append(outer)
        inner_rows.append(inner)
    outer_g = np.stack(outer_rows, 1)  # (rows, cols, 3)
    inner_g = np.stack(inner_rows, 1)
    # strands: shallow grooves along the hair flow
    groove = 0.0008 * np.cos(az * 22.0)[None, :] * _smoothstep(0.0, 0.25, np.linspace(0, 1, n_out))[:, None]
    outer_g = outer_g + _normalize(outer_g) * groove[..., None]
    # tip: round the edge between outer and inner
    tip = 0.5 * (outer_g[-1] + inner_g[0])
    tip = tip - np.array([0.0, 0.0015, 0.0])
    pts = np.concatenate([outer_g[1:], tip[None], inner_g[:-1]]) + head.c
    crown_out = outer_g[0, 0] + head.c
    crown_in = inner_g[-1, 0] + head.c
    piece = _grid_piece("hair", pts[:, ::-1], "hair", wrap=True, start_pole=crown_out, end_pole=crown_in)
    nn = _vertex_normals(piece.pos, piece.tris)
    # orientation check on the outer top
    top = np.argmax(piece.pos[:, 1])
    if nn[top, 1] < 0:
        piece.flipped()
    return piece


# --------------------------------------------------------------------------------------------------------------
# Body: neck, torso with shirt, collar
# --------------------------------------------------------------------------------------------------------------


def build_body(head: Head, spec: CharacterSpec) -> list[Piece]:
    c = head.c
    pieces = []
    neck_z = -0.016  # the neck sits behind the head centre, under the skull
    # neck: slightly flared where it meets the shoulders
    n = 32
    a = 2 * np.pi * np.arange(n) / n
    ys = np.linspace(0.34, c[1] - 0.035, 14)
    rows = []
    for y in ys:
        t = (y - ys[0]) / (ys[-1] - ys[0])
        flare = 0.010 * (1.0 - t) ** 3
        rows.append(np.stack([(0.0405 + flare) * np.sin(a), np.full(n, y), neck_z + (0.0385 + flare) * np.cos(a)], 1))
    neck = _grid_piece("neck", np.stack(rows), "skin", wrap=True)
    nn = _vertex_normals(neck.pos, neck.tris)
    if np.mean(np.sum(nn[:, [0, 2]] * (neck.pos[:, [0, 2]] - [0.0, neck_z]), 1)) < 0:
        neck.flipped()
    pieces.append(neck)

    # torso: superelliptic cross-sections along a profile (half width, half depth, height) from the bust's cut
    # to the neckline; sloping shoulders, rounded into the upper arms
    sw = spec.shoulder_width
    nt = 60
    a = 2 * np.pi * np.arange(nt) / nt
    ca, sa = np.cos(a), np.sin(a)
    ex = 2.0 / 3.0
    sx = np.sign(sa) * np.abs(sa) ** ex
    sz = np.sign(ca) * np.abs(ca) ** ex
    ctrl = np.array([
        (0.112, 0.070, 0.000), (0.124, 0.076, 0.090), (0.138, 0.080, 0.180), (0.150, 0.078, 0.245),
        (0.152, 0.073, 0.280), (0.143, 0.067, 0.306), (0.118, 0.061, 0.324), (0.088, 0.057, 0.340),
        (0.067, 0.054, 0.352), (0.056, 0.052, 0.359), (0.053, 0.051, 0.362),
    ])  # fmt: skip
    seg = np.sqrt(np.diff(ctrl[:, 0]) ** 2 + np.diff(ctrl[:, 2]) ** 2)
    s_ctrl = np.concatenate([[0.0], np.cumsum(seg)])
    s_rows = np.linspace(0.0, s_ctrl[-1], 26)
    prof = np.stack([np.interp(s_rows, s_ctrl, ctrl[:, i]) for i in range(3)], 1)
    # smooth the polyline so the shoulders read as one curve
    for _ in range(2):
        prof[1:-1] = 0.25 * prof[:-2] + 0.5 * prof[1:-1] + 0.25 * prof[2:]
    rows = []
    for hw, hd, y in prof:
        t = float(_smoothstep(0.30, 0.362, np.array(y)))
        width = hw * (sw * (1 - t) + t)
        rows.append(np.stack([width * sx, np.full(nt, y), neck_z * t + hd * sz], 1))
    # neckline: the shirt turns in just inside the neck, so no gap shows around it
    last = rows[-1]
    rows.append(np.stack([last[:, 0] * 0.72, last[:, 1] - 0.004, neck_z + (last[:, 2] - neck_z) * 0.72], 1))
    pts = np.stack(rows)
    torso = _grid_piece("torso", pts, "shirt", wrap=True, start_pole=np.array([0.0, 0.0, 0.0]))
    nn = _vertex_normals(torso.pos, torso.tris)
    if np.mean(np.sum(nn[:, [0, 2]] * torso.pos[:, [0, 2]], 1)) < 0:
        torso.flipped()
    pieces.append(torso)
    top = (ctrl[-1][0], ctrl[-1][1], ctrl[-1][2])

    # collar: a soft torus around the neckline
    nc, nm = 40, 8
    big = 2 * np.pi * np.arange(nc) / nc
    small = 2 * np.pi * np.arange(nm) / nm
    bx = np.sign(np.sin(big)) * np.abs(np.sin(big)) ** ex
    bz = np.sign(np.cos(big)) * np.abs(np.cos(big)) ** ex
    ring_c = np.stack([top[0] * bx, np.full(nc, top[2]), neck_z + top[1] * bz], 1)
    radial = _normalize(np.stack([ring_c[:, 0], np.zeros(nc), ring_c[:, 2] - neck_z], 1))
    rr = 0.0048
    pts = (
        ring_c[:, None]
        + radial[:, None] * (rr * np.cos(small))[None, :, None]
        + np.array([0.0, 1.0, 0.0]) * (rr * 0.8 * np.sin(small))[None, :, None]
    )
    collar = _grid_piece("collar", pts, "collar", wrap=True)
    # close the torus: connect the last ring with the first
    idx = np.arange(nc * nm).reshape(nc, nm)
    collar.tris = np.concatenate([collar.tris, _ring_band(idx[-1], idx[0])])
    collar.tri_mat = np.full(len(collar.tris), "collar", dtype=object)
    nn = _vertex_normals(collar.pos, collar.tris)
    cen = np.repeat(ring_c, nm, axis=0)
    if np.mean(np.sum(nn * (collar.pos - cen), 1)) < 0:
        collar.flipped()
    pieces.append(collar)
    return pieces


# --------------------------------------------------------------------------------------------------------------
# Morph targets
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MouthPose:
    """Parameters of one mouth shape; every viseme is one pose, turned into a displacement field."""

    jaw: float = 0.0  # jaw rotation, radians
    upper: float = 0.0  # upper lip raise at its centre, metres
    lower: float = 0.0  # lower lip drop beyond the jaw, metres
    spread: float = 0.0  # relative widening (+) or narrowing (-) of the mouth
    protrude: float = 0.0  # lips forward, metres
    press: float = 0.0  # lips pressed and thinned, 0..1
    tuck: float = 0.0  # lower lip tucked up and back under the upper teeth, 0..1
    tongue_out: float = 0.0  # tongue tip forward between the teeth, 0..1
    tongue_up: float = 0.0  # tongue tip up behind the upper teeth, 0..1
    corners: float = 0.0  # both mouth corners up (+) or down (-), metres


VISEME_POSES: dict[str, MouthPose] = {
    "viseme_sil": MouthPose(press=0.25, corners=-0.0004),
    "viseme_PP": MouthPose(press=1.0),
    "viseme_FF": MouthPose(jaw=0.028, upper=0.0022, tuck=1.0, spread=0.04),
    "viseme_TH": MouthPose(jaw=0.06, upper=0.0016, lower=0.0010, tongue_out=1.0, spread=0.04),
    "viseme_DD": MouthPose(jaw=0.05, upper=0.0016, lower=0.0010, spread=0.07, tongue_up=0.7),
    "viseme_kk": MouthPose(jaw=0.085, upper=0.0020, lower=0.0015, spread=0.05),
    "viseme_CH": MouthPose(jaw=0.03, upper=0.0022, lower=0.0018, spread=-0.16, protrude=0.0050),
    "viseme_SS": MouthPose(jaw=0.012, upper=0.0020, lower=0.0016, spread=0.14),
    "viseme_nn": MouthPose(jaw=0.045, upper=0.0012, lower=0.0008, spread=0.04, tongue_up=1.0),
    "viseme_RR": MouthPose(jaw=0.05, upper=0.0016, lower=0.0012, spread=-0.14, protrude=0.0035),
    "viseme_aa": MouthPose(jaw=0.150, upper=0.0030, lower=0.0020, spread=-0.04),
    "viseme_E": MouthPose(jaw=0.075, upper=0.0028, lower=0.0018, spread=0.16),
    "viseme_I": MouthPose(jaw=0.040, upper=0.0024, lower=0.0012, spread=0.24, corners=0.0008),
    "viseme_O": MouthPose(jaw=0.100, upper=0.0030, lower=0.0030, spread=-0.28, protrude=0.0060),
    "viseme_U": MouthPose(jaw=0.03, upper=0.0011, lower=0.0011, spread=-0.44, protrude=0.0090),
}


class FaceRig:
    """Displacement fields over the face mesh's vertices (the concatenation of its pieces)."""

    def __init__(self, head: Head, frame: MouthFrame, pieces: list[Piece], lids_closed: dict[str, np.ndarray]) -> None:
        self.head = head
        self.frame = frame
        self.lids_closed = lids_closed
        self.offsets = {}
        off = 0
        for p in pieces:
            self.offsets[p.name] = (off, off + len(p.pos))
            off += len(p.pos)
        self.n = off
        self.pos = np.concatenate([p.pos for p in pieces])
        self.kind = np.concatenate([np.full(len(p.pos), p.name.split("_")[0], dtype=object) for p in pieces])
        self.hinge = head.c + np.array([0.0, -0.010, -0.018])
        # per-vertex mouth coordinates
        face = pieces[0]
        a, b = self.offsets["face"]
        self.rho = np.full(self.n, 1.0)
        self.u = np.zeros(self.n)
        self.rho[a:b] = face.attrs["rho"]
        self.u[a:b] = face.attrs["u"]
        self.is_face = np.zeros(self.n, bool)
        self.is_face[a:b] = True
        self._lip_w = self._lip_weight()
        self._jaw_w = self._jaw_weight()
        self.nrm = np.concatenate([_vertex_normals(p.pos, p.tris) for p in pieces])
        lip_h = np.where(self.u > 0, frame.upper_h, frame.lower_h)
        self._skin_slide = _smoothstep(0.0, 1.0, (self.rho - lip_h) / 0.004) * self.is_face
        # normal deltas are stored only where the surface really turns (lids, lips); elsewhere they cost bytes
        # without a visible difference
        self.normal_mask = (self.kind == "lid") | (self.is_face & (self.rho > -0.004) & (self.rho < lip_h + 0.001))

    def _sel(self, name: str) -> slice:
        a, b = self.offsets[name]
        return slice(a, b)

    def _lip_weight(self) -> np.ndarray:
        """1 on the lips and the inner roll, fading into the surrounding skin and deep into the mouth bag."""
        f = self.frame
        rho = self.rho
        lip_h = np.where(self.u > 0, f.upper_h, f.lower_h)
        w = np.where(rho > lip_h, _cgauss(rho - lip_h, 0.0055), 1.0)
        w = np.where(rho < -0.009, _cgauss(rho + 0.009, 0.0085), w)
        return np.where(self.is_face, w, 0.0)

    def _jaw_weight(self) -> np.ndarray:
        """How much each vertex follows the jaw: lower lip, chin and jaw fully; upper face not at all."""
        p = self.pos - self.head.c
        side = _smoothstep(0.3, -0.3, self.u)
        # the jaw's underside towards the neck is left out: unseen from the front, and it would cost many vertices
        env = (
            _smoothstep(0.005, 0.035, p[:, 2])
            * _cgauss(np.maximum(np.abs(p[:, 0]) - 0.022, 0.0), 0.012)
            * _smoothstep(-0.020, -0.050, p[:, 1])
        )
        # the bag and the inner roll are inside the mouth: follow by side only
        env = np.where(self.rho < 0, 1.0, env)
        w = np.where(self.is_face, side * env, 0.0)
        w[self._sel("teeth_lower")] = 1.0
        w[self._sel("tongue")] = 1.0
        return w

    def _mouth_local(self) -> tuple[np.ndarray, np.ndarray]:
        m = self.frame.centre
        return self.pos[:, 0] - m[0], self.pos[:, 1] - m[1]

    def _region(self) -> np.ndarray:
        """Soft region around the mouth that takes part in widening and narrowing."""
        f = self.frame
        x, y = self._mouth_local()
        r = _cgauss(np.maximum(np.abs(x) - f.half_width, 0.0), 0.0075) * _cgauss(
            np.maximum(np.abs(y) - 0.006, 0.0), 0.0062
        )
        r = np.where(self.is_face, r, 0.0)
        return r

    # -- building blocks -----------------------------------------------------------------------------------
    def jaw(self, angle: float) -> np.ndarray:
        rotated = _rot_x(self.pos, self.hinge, angle)
        slide = np.array([0.0, 0.0, 0.030 * angle])  # the condyle glides forward as the jaw opens
        return (rotated - self.pos + slide) * self._jaw_w[:, None]

    def _slide(self, d: np.ndarray) -> np.ndarray:
        """Skin outside the lips slides over the face instead of sinking into it (which would bare the teeth)."""
        inward = np.minimum(np.sum(d * self.nrm, axis=1), 0.0) * self._skin_slide
        return d - inward[:, None] * self.nrm

    def mouth_pose(self, pose: MouthPose) -> np.ndarray:
        d = self._slide(self._mouth_pose(pose))
        if pose.jaw:
            d += self.jaw(pose.jaw)
        return d

    def _mouth_pose(self, pose: MouthPose) -> np.ndarray:
        f = self.frame
        d = np.zeros((self.n, 3))
        x, y = self._mouth_local()
        lipw = self._lip_w
        up = np.maximum(self.u, 0.0) ** 0.6 * lipw
        lo = np.maximum(-self.u, 0.0) ** 0.6 * lipw
        if pose.upper:
            d[:, 1] += pose.upper * up
            d[:, 2] += 0.35 * pose.upper * up * (self.rho >= 0)  # the lip everts as it lifts
        if pose.lower:
            d[:, 1] -= pose.lower * lo
            d[:, 2] += 0.30 * pose.lower * lo * (self.rho >= 0)
        region = self._region()
        if pose.spread:
            d[:, 0] += pose.spread * x * region
            # spreading thins and flattens the lips a little, narrowing pulls them forward
            d[:, 2] -= max(pose.spread, 0.0) * 0.010 * region * _cgauss(x / f.half_width, 0.8)
        if pose.protrude:
            fwd = np.where(self.rho >= 0, _cgauss(np.maximum(self.rho - 0.003, 0.0), 0.007), lipw)
            fwd = np.where(self.is_face, fwd * _cgauss(np.maximum(np.abs(x) - 0.6 * f.half_width, 0.0), 0.012), 0.0)
            d[:, 2] += pose.protrude * fwd
        if pose.press:
            # roll the lips inwards and compress the vermilion height, keeping the lip line in place
            edge = _cgauss(self.rho, 0.002) * (self.rho >= -0.002) * self.is_face
            corner = np.abs(self.u) ** 0.5
            d[:, 2] -= pose.press * 0.0016 * edge * corner
            lip_h = np.where(self.u > 0, f.upper_h, f.lower_h)
            band = np.clip(self.rho / lip_h, 0.0, 1.0) * _cgauss(np.maximum(self.rho - lip_h, 0), 0.004)
            band = band * self.is_face * corner
            d[:, 1] -= pose.press * 0.0016 * band * np.sign(self.u)
            d[:, 2] -= pose.press * 0.0008 * band
        if pose.tuck:
            # the lower lip rolls up and in under the upper incisors; only the vermilion goes back
            lt = lo * (self.rho > -0.004)
            verm = lt * _cgauss(np.maximum(self.rho - 0.5 * f.lower_h, 0.0), 0.003)
            d[:, 1] += pose.tuck * 0.0050 * lt
            d[:, 2] -= pose.tuck * 0.0035 * verm
        if pose.corners:
            for sgn in (1, -1):
                d += self._corner_field(sgn, np.array([0.0, pose.corners, 0.0]))
        if pose.tongue_out or pose.tongue_up:
            sl = self._sel("tongue")
            tip = f.centre + np.array([0.0, -0.006, -0.0145])
            tw = _cgauss(np.linalg.norm(self.pos[sl] - tip, axis=1), 0.011)
            d[sl] += tw[:, None] * (
                pose.tongue_out * np.array([0.0, 0.0078, 0.0150]) + pose.tongue_up * np.array([0.0, 0.0120, 0.0030])
            )
        return d

    def _corner_field(self, side: int, disp: np.ndarray, sigma: float = 0.011) -> np.ndarray:
        f = self.frame
        corner = f.centre + np.array([side * f.half_width, 0.0, -0.004])
        dist = np.linalg.norm((self.pos - corner) * np.array([1.0, 1.2, 0.7]), axis=1)
        w = _cgauss(dist, sigma) * self.is_face
        # the bag follows the corner only near the lips
        w = np.where(self.rho < 0, w * self._lip_w, w)
        dd = disp * np.array([side, 1.0, 1.0])
        return w[:, None] * dd[None]

    def smile(self, side: int) -> np.ndarray:
        return self._slide(self._smile(side))

    def _smile(self, side: int) -> np.ndarray:
        d = self._corner_field(side, np.array([0.0042, 0.0058, -0.0018]), 0.012)
        # the cheek rounds up under the eye
        cheek = self.frame.centre + np.array([side * 0.030, 0.026, 0.0])
        w = _cgauss(np.linalg.norm((self.pos - cheek) * np.array([1.0, 1.0, 0.5]), axis=1), 0.013) * self.is_face
        w = np.where(self.rho < 0, 0.0, w)
        d += w[:, None] * np.array([side * 0.0006, 0.0022, 0.0018])
        return d

    def frown(self, side: int) -> np.ndarray:
        return self._slide(self._corner_field(side, np.array([0.0012, -0.0042, -0.0006]), 0.011))

    def brows(self, side: int | None, disp: np.ndarray, inner: bool) -> np.ndarray:
        h = self.head
        p = self.pos - h.c
        sides = (1, -1) if side is None else (side,)
        d = np.zeros((self.n, 3))
        movable = np.isin(self.kind, ["face", "brow"]) & (self.rho > 0.02)
        for s in sides:
            cx = s * (0.018 if inner else 0.034)
            w = (
                _cgauss(p[:, 0] - cx, 0.013 if inner else 0.020)
                * _cgauss(p[:, 1] - (h.brow_y + 0.003), 0.0085)
                * (p[:, 2] > 0.02)
            )
            w = w * movable
            dd = disp * np.array([s, 1.0, 1.0])
            d += w[:, None] * dd[None]
        return d

    def blink(self, side: int) -> np.ndarray:
        d = np.zeros((self.n, 3))
        tag = "l" if side > 0 else "r"
        for which in ("upper", "lower"):
            name = f"lid_{which}_{tag}"
            sl = self._sel(name)
            d[sl] = self.lids_closed[name] - self.pos[sl]
        return d

    def targets(self) -> dict[str, np.ndarray]:
        t: dict[str, np.ndarray] = {}
        for name, pose in VISEME_POSES.items():
            t[name] = self.mouth_pose(pose)
        t["eyeBlinkLeft"] = self.blink(1)
        t["eyeBlinkRight"] = self.blink(-1)
        t["mouthSmileLeft"] = self.smile(1)
        t["mouthSmileRight"] = self.smile(-1)
        t["mouthFrownLeft"] = self.frown(1)
        t["mouthFrownRight"] = self.frown(-1)
        t["browInnerUp"] = self.brows(None, np.array([0.0, 0.0042, 0.0004]), inner=True)
        t["browDownLeft"] = self.brows(1, np.array([-0.0012, -0.0030, 0.0008]), inner=False)
        t["browDownRight"] = self.brows(-1, np.array([-0.0012, -0.0030, 0.0008]), inner=False)
        t["jawOpen"] = self.jaw(0.19)
        return {k: t[k] for k in MORPH_TARGETS}


# --------------------------------------------------------------------------------------------------------------
# Assembling a character
# --------------------------------------------------------------------------------------------------------------


@dataclass
class MeshOut:
    """One glTF mesh: its pieces, optional morph targets (per concatenated vertex) and the node name."""

    name: str
    pieces: list[Piece]
    targets: dict[str, np.ndarray] | None = None
    normal_mask: np.ndarray | None = None  # vertices whose normal deltas are stored (default: all)


@dataclass
class Character:
    """A built character before serialisation: meshes, anchor positions and PBR materials."""

    name: str
    meshes: list[MeshOut]
    anchors: dict[str, np.ndarray]
    materials: dict[str, tuple[tuple[float, float, float], float]]  # name -> (linear rgb, roughness)


def build_character(name: str, spec: CharacterSpec) -> Character:
    """Build every piece of a character and its morph targets from its generator parameters."""
    head = Head(spec)
    face, frame = build_face_sheet(head)
    eyes = _eye_centres(head)
    lid_pieces: list[Piece] = []
    lids_closed: dict[str, np.ndarray] = {}
    for rig in eyes:
        lp, closed = build_lids(rig)
        tag = "l" if rig.side > 0 else "r"
        for p in lp:
            closed[f"{p.name}_{tag}"] = closed.pop(p.name)
            p.name = f"{p.name}_{tag}"
        lid_pieces += lp
        lids_closed.update(closed)
    brows = build_brows(head)
    teeth = [build_teeth(frame, "upper"), build_teeth(frame, "lower")]
    tongue = build_tongue(frame)
    ears = build_ears(head)
    face_pieces = [face, *lid_pieces, *brows, *teeth, tongue, *ears]
    rig = FaceRig(head, frame, face_pieces, lids_closed)
    targets = rig.targets()

    eyeballs = []
    for r in eyes:
        tag = "l" if r.side > 0 else "r"
        eye = build_eyeball(r, spec)
        eye.name = f"eye_{tag}"
        glint = build_catchlight(r)
        glint.name = f"catchlight_{tag}"
        eyeballs += [eye, glint]
    hair = build_hair(head, spec.hair_style)
    body = build_body(head, spec)

    def darker(rgb: tuple[float, float, float], f: float) -> tuple[float, float, float]:
        return (rgb[0] * f, rgb[1] * f, rgb[2] * f)

    skin = _srgb_to_linear(spec.skin_color)
    lips = _srgb_to_linear(spec.lip_color)
    shirt = _srgb_to_linear(spec.shirt_color)
    materials = {
        "skin": (skin, 0.62),
        "lips": (lips, 0.42),
        "lips_inner": (darker(lips, 0.55), 0.5),
        "mouth": (_srgb_to_linear("#3a1216"), 0.9),
        "teeth": (_srgb_to_linear("#f3efe6"), 0.28),
        "tongue": (_srgb_to_linear("#c2545e"), 0.45),
        "sclera": (_srgb_to_linear("#f7f5f2"), 0.22),
        "iris": (_srgb_to_linear(spec.eye_color), 0.18),
        "iris_rim": (darker(_srgb_to_linear(spec.eye_color), 0.45), 0.2),
        "pupil": (_srgb_to_linear("#0b0b0d"), 0.12),
        "highlight": ((1.0, 1.0, 1.0), 0.3),
        "lash": (_srgb_to_linear("#22160f"), 0.6),
        "brows": (_srgb_to_linear(spec.brow_color), 0.8),
        "hair": (_srgb_to_linear(spec.hair_color), 0.5),
        "shirt": (shirt, 0.75),
        "collar": (darker(shirt, 0.7), 0.75),
    }
    head_world = head.c.copy()
    meshes = [
        MeshOut("Body", body),
        MeshOut("Face", face_pieces, targets, rig.normal_mask),
        MeshOut("Eyes", eyeballs),
        MeshOut("Hair", [hair]),
    ]
    anchors = {"HeadAnchor": head_world, "MouthAnchor": frame.centre.copy()}
    return Character(name, meshes, anchors, materials)


# --------------------------------------------------------------------------------------------------------------
# glTF output
# --------------------------------------------------------------------------------------------------------------


def _q(a: np.ndarray, grid: float) -> np.ndarray:
    out = np.round(np.asarray(a, dtype=np.float64) / grid) * grid
    out[out == 0.0] = 0.0  # no negative zeros
    return out.astype(np.float32)


def _f32(v: float) -> float:
    """The shortest decimal that reads back as the same float32 (compact JSON, exact min/max)."""
    return float(str(np.float32(v)))


class _GlbWriter:
    """Accumulates buffer views and accessors; all sparse morph data shares one buffer view."""

    def __init__(self) -> None:
        self.gltf = pygltflib.GLTF2(asset=pygltflib.Asset(version="2.0", generator="avatarium-lab generate"))
        self.blob = bytearray()
        self.sparse = bytearray()
        self._sparse_users: list[pygltflib.Sparse] = []

    def view(self, data: bytes, target: int | None) -> int:
        while len(self.blob) % 4:
            self.blob.append(0)
        bv = pygltflib.BufferView(buffer=0, byteOffset=len(self.blob), byteLength=len(data), target=target)
        self.blob += data
        self.gltf.bufferViews.append(bv)
        return len(self.gltf.bufferViews) - 1

    def accessor(self, arr: np.ndarray, *, target: int | None = pygltflib.ARRAY_BUFFER, minmax: bool = False) -> int:
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float32:
            ctype, typ = pygltflib.FLOAT, "VEC3" if arr.ndim == 2 else "SCALAR"
        elif arr.dtype == np.uint16:
            ctype, typ = pygltflib.UNSIGNED_SHORT, "SCALAR"
        else:
            ctype, typ = pygltflib.UNSIGNED_INT, "SCALAR"
        bv = self.view(arr.tobytes(), target)
        acc = pygltflib.Accessor(bufferView=bv, componentType=ctype, count=len(arr), type=typ)
        if minmax:
            acc.min = [_f32(v) for v in arr.min(axis=0)]
            acc.max = [_f32(v) for v in arr.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def _sparse_chunk(self, data: bytes) -> int:
        off = len(self.sparse)
        self.sparse += data
        while len(self.sparse) % 4:
            self.sparse.append(0)
        return off

    def sparse_vec3(self, dense: np.ndarray, keep: np.ndarray, *, minmax: bool) -> int:
        """A VEC3 float accessor that is zero except at ``keep``: sparse, or no data at all when nothing is kept."""
        count = len(dense)
        acc = pygltflib.Accessor(componentType=pygltflib.FLOAT, count=count, type="VEC3", byteOffset=None)
        idx = np.nonzero(keep)[0]
        if len(idx):
            small = count < 65536
            io = self._sparse_chunk(idx.astype(np.uint16 if small else np.uint32).tobytes())
            vo = self._sparse_chunk(np.ascontiguousarray(dense[idx], dtype=np.float32).tobytes())
            acc.sparse = pygltflib.Sparse(
                count=len(idx),
                indices=pygltflib.AccessorSparseIndices(
                    bufferView=-1,
                    byteOffset=io,
                    componentType=pygltflib.UNSIGNED_SHORT if small else pygltflib.UNSIGNED_INT,
                ),
                values=pygltflib.AccessorSparseValues(bufferView=-1, byteOffset=vo),
            )
            self._sparse_users.append(acc.sparse)
        if minmax:
            full = np.zeros((count, 3), np.float32)
            full[idx] = dense[idx]
            acc.min = [_f32(v) for v in full.min(axis=0)]
            acc.max = [_f32(v) for v in full.max(axis=0)]
        self.gltf.accessors.append(acc)
        return len(self.gltf.accessors) - 1

    def finish(self) -> bytes:
        if self._sparse_users:
            bv = self.view(bytes(self.sparse), None)
            for sp in self._sparse_users:
                sp.indices.bufferView = bv
                sp.values.bufferView = bv
        while len(self.blob) % 4:
            self.blob.append(0)
        self.gltf.buffers.append(pygltflib.Buffer(byteLength=len(self.blob)))
        return _pack_glb(self.gltf, bytes(self.blob))


@dataclass
class _Primitive:
    material: str
    pos: np.ndarray
    nrm: np.ndarray
    tris: np.ndarray
    deltas: dict[str, tuple[np.ndarray, np.ndarray]]  # target -> (position deltas, normal deltas)
    normal_mask: np.ndarray


def _split_by_material(mesh: MeshOut, material_order: list[str]) -> list[_Primitive]:
    """One primitive per material; vertices shared by two materials are duplicated with identical data."""
    pieces = mesh.pieces
    targets = mesh.targets or {}
    pos = np.concatenate([p.pos for p in pieces])
    tris, mats, normals = [], [], []
    ndelta: dict[str, list[np.ndarray]] = {k: [] for k in targets}
    off = 0
    for p in pieces:
        tris.append(p.tris + off)
        mats.append(np.asarray(p.tri_mat))
        nrm = _vertex_normals(p.pos, p.tris)
        normals.append(nrm)
        for k, dd in targets.items():
            moved = p.pos + dd[off : off + len(p.pos)]
            ndelta[k].append(_normalize(_vertex_normals(moved, p.tris)) - nrm)
        off += len(p.pos)
    tris_all = np.concatenate(tris)
    mats_all = np.concatenate(mats)
    nrm_all = np.concatenate(normals)
    nd = {k: np.concatenate(v) for k, v in ndelta.items()}
    mask = mesh.normal_mask if mesh.normal_mask is not None else np.ones(len(pos), bool)
    out = []
    for m in material_order:
        sel = mats_all == m
        if not np.any(sel):
            continue
        t = tris_all[sel]
        used = np.unique(t)
        remap = np.full(len(pos), -1, np.int64)
        remap[used] = np.arange(len(used))
        deltas = {k: (targets[k][used], nd[k][used]) for k in targets}
        out.append(_Primitive(m, pos[used], nrm_all[used], remap[t], deltas, mask[used]))
    return out


def character_to_glb(ch: Character) -> bytes:
    """The character as GLB bytes (deterministic)."""
    w = _GlbWriter()
    g = w.gltf
    mat_names = list(ch.materials)
    for m in mat_names:
        rgb, rough = ch.materials[m]
        g.materials.append(
            pygltflib.Material(
                name=m,
                pbrMetallicRoughness=pygltflib.PbrMetallicRoughness(
                    baseColorFactor=[round(rgb[0], 6), round(rgb[1], 6), round(rgb[2], 6), 1.0],
                    metallicFactor=0.0,
                    roughnessFactor=rough,
                ),
                # the mouth bag and the hair shell are seen from inside too
                doubleSided=m in ("mouth", "hair"),
                # the catchlight glows whatever the scene lighting
                emissiveFactor=[1.0, 1.0, 1.0] if m == "highlight" else None,
            )
        )
    root_children = []
    for mesh in ch.meshes:
        prims = []
        names = list(mesh.targets) if mesh.targets else []
        for prim in _split_by_material(mesh, mat_names):
            pos32 = _q(prim.pos, _POS_GRID)
            nrm32 = _q(_normalize(prim.nrm), _NRM_GRID)
            attrs = pygltflib.Attributes(POSITION=w.accessor(pos32, minmax=True), NORMAL=w.accessor(nrm32))
            itype = np.uint16 if len(pos32) < 65536 else np.uint32
            ind = w.accessor(prim.tris.reshape(-1).astype(itype), target=pygltflib.ELEMENT_ARRAY_BUFFER)
            targets = []
            kept = {}
            for k in names:
                dp, dn = prim.deltas[k]
                dp32, dn32 = _q(dp, _POS_GRID), _q(dn, _NRM_GRID)
                keep_p = np.any(np.abs(dp32) > _MIN_DELTA, axis=1)
                keep_n = np.any(np.abs(dn32) > _MIN_NORMAL_DELTA, axis=1) & prim.normal_mask
                kept[k] = (dp32, keep_p, dn32, keep_n)
            # a primitive either has normal deltas in every target or in none (three.js treats a missing one as
            # the base normal, not as zero)
            with_normals = any(v[3].any() for v in kept.values())
            for k in names:
                dp32, keep_p, dn32, keep_n = kept[k]
                t = pygltflib.Attributes(POSITION=w.sparse_vec3(dp32, keep_p, minmax=True))
                if with_normals:
                    t.NORMAL = w.sparse_vec3(dn32, keep_n, minmax=False)
                targets.append(t)
            gp = pygltflib.Primitive(attributes=attrs, indices=ind, material=mat_names.index(prim.material))
            if targets:
                gp.targets = targets
            prims.append(gp)
        gm = pygltflib.Mesh(name=mesh.name, primitives=prims)
        if names:
            gm.weights = [0.0] * len(names)
            gm.extras = {"targetNames": names}
        g.meshes.append(gm)
        g.nodes.append(pygltflib.Node(name=mesh.name, mesh=len(g.meshes) - 1))
        root_children.append(len(g.nodes) - 1)
    for name, p in ch.anchors.items():
        g.nodes.append(pygltflib.Node(name=name, translation=[_f32(v) for v in _q(p, _POS_GRID)]))
        root_children.append(len(g.nodes) - 1)
    g.nodes.append(pygltflib.Node(name=ch.name, children=root_children))
    g.scenes.append(pygltflib.Scene(name=ch.name, nodes=[len(g.nodes) - 1]))
    g.scene = 0
    return w.finish()


def _pack_glb(g: pygltflib.GLTF2, blob: bytes) -> bytes:
    """GLB container written by hand so the JSON is compact, key-sorted and free of pygltflib's null defaults."""
    doc = json.loads(g.to_json())
    doc = _strip(doc)
    text = json.dumps(doc, separators=(",", ":"), sort_keys=True).encode()
    text += b" " * (-len(text) % 4)
    total = 12 + 8 + len(text) + 8 + len(blob)
    return (
        struct.pack("<4sII", b"glTF", 2, total)
        + struct.pack("<I4s", len(text), b"JSON")
        + text
        + struct.pack("<I4s", len(blob), b"BIN\x00")
        + blob
    )


def _strip(obj: Any) -> Any:
    """Drop nulls, empty lists/dicts and spec defaults pygltflib emits (byteOffset 0, normalized false...)."""
    if isinstance(obj, dict):
        out = {}
        for k, v in obj.items():
            v = _strip(v)
            if v is None or v == [] or v == {}:
                continue
            if k in ("byteOffset",) and v == 0:
                continue
            if k == "normalized" and v is False:
                continue
            if k == "doubleSided" and v is False:
                continue
            if k == "alphaMode" and v == "OPAQUE":
                continue
            if k == "alphaCutoff" and v == 0.5:
                continue
            if k == "mode" and v == 4:
                continue
            out[k] = v
        return out
    if isinstance(obj, list):
        return [_strip(v) for v in obj]
    return obj


# --------------------------------------------------------------------------------------------------------------
# Library
# --------------------------------------------------------------------------------------------------------------


def read_library(path: Path = LIBRARY_FILE) -> list[dict[str, Any]]:
    """The avatar entries of library.yaml (each with id, name, description, generator)."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries = data.get("avatars", [])
    if not isinstance(entries, list):
        raise ValueError(f"{path}: 'avatars' must be a list")
    return entries


def generate_avatar(entry: Mapping[str, Any]) -> bytes:
    """The GLB bytes of one library entry."""
    spec = CharacterSpec.from_mapping(entry.get("generator") or {})
    return character_to_glb(build_character(str(entry.get("name") or entry["id"]), spec))


def generate_library(
    out_dir: Path = LIBRARY_DIR, only: Sequence[str] | None = None, library: Path = LIBRARY_FILE
) -> list[Path]:
    """Write ``<id>.glb`` for every entry of the library (or just ``only``); returns the paths written."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in read_library(library):
        if only and entry["id"] not in only:
            continue
        path = out_dir / f"{entry['id']}.glb"
        path.write_bytes(generate_avatar(entry))
        written.append(path)
    return written


def main(argv: Sequence[str] | None = None, out: Callable[[str], None] = print) -> int:
    parser = argparse.ArgumentParser(prog="python -m avatarium_lab.avatar.generate", description=__doc__.split("\n")[0])
    parser.add_argument("--out", type=Path, default=LIBRARY_DIR, help="output directory (default: the library)")
    parser.add_argument("ids", nargs="*", help="only these avatar ids (default: all)")
    args = parser.parse_args(argv)
    for path in generate_library(args.out, args.ids or None):
        out(f"{path} ({path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    sys.exit(main())

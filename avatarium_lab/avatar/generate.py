"""Procedural generator of the avatar library: builds every character in ``library/library.yaml`` as a GLB.

Run ``python -m avatarium_lab.avatar.generate`` to (re)write ``library/<id>.glb`` and its thumbnail
``library/<id>.png`` for every entry (or ``... generate aria pip`` for some). The output is deterministic: no
clocks, no randomness, and every float is rounded to a fixed grid before it is stored, so the same inputs give the
same bytes.

The renderer contract (glTF 2.0, Y up, metres, the character faces +Z, ``MouthAnchor``/``HeadAnchor`` nodes, the
15 Oculus visemes plus the ARKit shapes of :data:`~avatarium_lab.avatar.ARKIT_SHAPES` named in
``mesh.extras.targetNames``, one skin with Mixamo-named joints, the ``framing``) is described in
``avatarium_lab/avatar/__init__.py``. Morph targets are stored as sparse accessors, so a shape that moves only
the mouth costs only the mouth's vertices.

How the face is built: one closed sheet of rings around the mouth, in elliptic coordinates whose foci are the
mouth corners. Ring 0 is the line where the lips meet (its upper and lower halves are distinct vertices, so the
mouth can open without any special topology); outer rings grow over the face and close at the back of the head;
inner rings roll the lips inwards and close into a dark mouth bag. Eyes, lids, brows, teeth, tongue, ears, hair
and the torso are separate pieces. Every morph target is a smooth displacement field over these vertices; a beard
is an offset copy of part of the face sheet and copies its vertices' motion.

Characters differ by :class:`CharacterSpec`: colours, head and face proportions, one of :data:`HAIR_STYLES`, a
beard, age lines, brow thickness and the body: ``bust`` (head, neck and torso cut at mid-chest) or ``full`` (a
toy-like figure, 3.4 heads tall, with legs, arms, mitten hands and shoes; framed whole with ``framing: full``).

Skinning: every piece gets dense per-joint weights when the character is assembled (head pieces all on ``Head``,
the eyeballs on the eye bones; the bust torso by height along the spine with its sides on the arm bones and the
shoulder tops on the clavicles; the full figure's limbs along their bone chains with a smooth blend at each joint,
and ball-shaped shoulders and hips centred on the joints so a raised arm turns without opening a gap). The four
largest weights per vertex are written, quantised to bytes that sum to exactly 255.
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
_BEARD_MIN_DELTA = 3e-4
_BEARD_FINE_RHO = 0.032  # the beard uses every other face vertex around rings closer to the mouth than this


# --------------------------------------------------------------------------------------------------------------
# Parameters
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CharacterSpec:
    """Generator parameters of one character (the ``generator`` mapping of a library.yaml entry).

    Colours are sRGB hex strings. Proportions are factors around 1.0 applied to the default stylised head.
    ``body`` is ``bust`` (head, neck and torso down to mid-chest, like aria) or ``full`` (a stylised, toy-like
    full figure about 3.4 heads tall: legs, arms with mitten hands, shoes). ``beard`` adds facial hair that is part
    of the ``Face`` mesh (so it follows every mouth shape); ``wrinkles`` (0..1) carves age lines (nasolabial folds,
    forehead lines, soft bags under the eyes); ``brow_thickness`` scales the brows. ``pants_color`` and
    ``shoe_color`` are used by full-body characters only; an empty ``beard_color`` means the hair colour.
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
    body: str = "bust"
    beard: str = "none"
    beard_color: str = ""
    brow_thickness: float = 1.0
    wrinkles: float = 0.0
    pants_color: str = "#33415c"
    shoe_color: str = "#8a3b2a"

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> CharacterSpec:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown generator parameter(s) {unknown}; known: {sorted(known)}")
        spec = cls(**dict(data))
        for key, allowed in (("hair_style", HAIR_STYLES), ("body", BODY_TYPES), ("beard", BEARD_STYLES)):
            if getattr(spec, key) not in allowed:
                raise ValueError(f"{key} {getattr(spec, key)!r} is not one of {sorted(allowed)}")
        return spec


HAIR_STYLES = ("bob", "short", "long", "bun", "ponytail", "curly", "bald")
"""``bob`` and ``short`` are the original shells; ``long`` falls onto the shoulders and down the back; ``bun`` and
``ponytail`` pull the hair back into a tight cap with a bun or a tail; ``curly`` is a big rounded mass of curls;
``bald`` leaves a horseshoe of hair around the back and sides."""
BODY_TYPES = ("bust", "full")
BEARD_STYLES = ("none", "full", "goatee")

FULL_BODY_HEAD_Y = 0.62
"""Head centre height of a full-body character (a bust's is 0.50): feet on y = 0, about 0.74 m tall (3.4 heads)."""


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
    weights: np.ndarray | None = None  # (vertices, joints) skin weights, set when the character is assembled

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
        self.c = np.array([0.0, FULL_BODY_HEAD_Y if spec.body == "full" else 0.50, 0.0])
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
        if s.wrinkles:
            z += s.wrinkles * self._age_lines(ax, fy)
        return z

    def _age_lines(self, ax: np.ndarray, fy: np.ndarray) -> np.ndarray:
        """Relief of age (at ``wrinkles`` = 1): nasolabial folds, three forehead lines, soft bags under the eyes.

        Shallow grooves of a millimetre or less read as age in flat-shaded cartoon faces without looking dirty;
        the folds curve from the nose wings to just outside the mouth corners.
        """
        z = np.zeros_like(ax)
        t = np.linspace(0.0, 1.0, 24)
        x0, y0 = 0.0115, self.nose_tip_y + 0.001
        x1, y1 = self.mouth_w + 0.010, self.mouth_y - 0.011
        cx = x0 + (x1 - x0) * t + 0.0045 * np.sin(np.pi * t)
        cy = y0 + (y1 - y0) * t
        dist = np.sqrt((ax[:, None] - cx[None]) ** 2 + (fy[:, None] - cy[None]) ** 2)
        k = np.argmin(dist, axis=1)
        dmin = dist[np.arange(len(ax)), k]
        taper = np.sin(np.pi * np.clip(t[k] * 0.9 + 0.1, 0.0, 1.0)) ** 0.7
        z -= 0.0012 * _gauss(dmin, 0.0017) * taper
        z += 0.0007 * _gauss(dmin - 0.004, 0.003) * taper * (ax > cx[k])  # the cheek rolls over the fold
        for i in range(3):
            yk = self.brow_y + 0.020 + 0.0085 * i + 0.006 * (ax / 0.045) ** 2
            z -= 0.00045 * _gauss(fy - yk, 0.0011) * _cgauss(ax, 0.016)
        z += 0.0011 * _gauss(ax - self.eye_x, 0.0085) * _gauss(fy - (self.eye_y - 0.0195), 0.0032)
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


LID_POSES = ("closed", "wide", "squint")


def _lid_pose_edges(alpha: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Edge elevation offsets (upper, lower; radians) of the open-eye poses other than closed.

    ``wide`` lifts the upper lid over the top of the iris (ARKit eyeWide), ``squint`` raises the lower lid and
    lowers the upper one a little (eyeSquint); both fade to nothing at the corners, where the lids meet.
    """
    t = np.clip(1.0 - (alpha / math.radians(52.0)) ** 2, 0.0, 1.0)
    return {
        "wide": (math.radians(9.0) * t**0.5, -math.radians(3.0) * t),
        "squint": (-math.radians(3.5) * t, math.radians(10.0) * t**0.6),
    }


def build_lids(rig: EyeRig) -> tuple[list[Piece], dict[str, dict[str, np.ndarray]]]:
    """Upper and lower eyelid shells (skin, the upper rim dark like a lash line) and their posed positions.

    The second value maps each of :data:`LID_POSES` to {piece name: vertex positions in that pose}.
    """
    r = rig.radius
    na = 25
    alpha = np.linspace(-math.radians(78.0), math.radians(78.0), na)
    upper_e, lower_e, close_e = _lid_lines(alpha)
    extra = _lid_pose_edges(alpha)
    pieces = []
    poses: dict[str, dict[str, np.ndarray]] = {k: {} for k in LID_POSES}
    s = np.linspace(0.0, 1.0, 9)
    rim = [(0.0, 1.0), (0.35, 0.985), (0.7, 0.93), (1.0, 0.0)]  # (inward fraction, extra elevation * sgn)
    for which in ("upper", "lower"):
        radius = 1.13 * r if which == "upper" else 1.09 * r
        root = math.radians(78.0) if which == "upper" else math.radians(-70.0)
        edge_open = upper_e if which == "upper" else lower_e
        edge_closed = close_e - math.radians(3.0) if which == "upper" else close_e + math.radians(1.5)
        sgn = 1.0 if which == "upper" else -1.0

        def rows(
            edge: np.ndarray, which: str = which, radius: float = radius, root: float = root, sgn: float = sgn
        ) -> list[tuple[np.ndarray, np.ndarray]]:
            """Rows: outer shell from the root to the edge, then a rounded rim curling in onto the eyeball."""
            out = [(root + si * (edge - root), np.full(na, radius)) for si in s]
            for frac, _ in rim[1:]:
                rr = radius - frac * (radius - 1.012 * r)
                out.append((edge + sgn * math.radians(1.6) * frac, np.full(na, rr)))
            return out

        rows_open = rows(edge_open)
        pts_open = np.stack([_sph(rig, alpha, e, rad) for e, rad in rows_open])
        # closing puffs the lid outwards so the straight-line morph never cuts through the eyeball midway
        pts_closed = []
        for (eo, rad), (ec, _) in zip(rows_open, rows(edge_closed), strict=True):
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
        poses["closed"][piece.name] = pts_closed.reshape(-1, 3)
        for pose, (d_up, d_lo) in extra.items():
            edge = edge_open + (d_up if which == "upper" else d_lo)
            poses[pose][piece.name] = np.stack([_sph(rig, alpha, e, rad) for e, rad in rows(edge)]).reshape(-1, 3)
        pieces.append(piece)
    return pieces, poses


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
        if head.spec.brow_thickness != 1.0:  # bushy (or thin) brows grow mostly in height, a little in depth
            grow = half_t * (math.sqrt(head.spec.brow_thickness) - 1.0)
            half_h = half_h * head.spec.brow_thickness
            half_t = half_t + grow
            centre = centre + nrm * (0.6 * grow[:, None])
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


def _classic_hair(head: Head, style: str) -> Piece:
    """The ``bob`` and ``short`` shells: outer surface over the skull, draping down, rounded tips, inner surface
    back up."""
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


def build_hair(head: Head, style: str, collide: Callable[[np.ndarray], np.ndarray] | None = None) -> list[Piece]:
    """The hair of one of :data:`HAIR_STYLES` as pieces of the ``Hair`` mesh (a shell, plus a bun or a tail).

    ``collide`` pushes world points out of the torso: long hair that falls onto the shoulders lies on them.
    """
    ey = head.eye_y
    if style in ("bob", "short"):
        return [_classic_hair(head, style)]
    if style == "bald":
        return [_hair_band(head)]
    if style == "long":
        # a centre parting: the hair frames the face, covers the ears, rests on the shoulders, falls down the back
        y_end = [(0, ey + 0.052), (12, ey + 0.049), (26, ey + 0.040), (38, ey + 0.022), (48, ey - 0.030),
                 (58, -0.150), (90, -0.175), (120, -0.215), (150, -0.265), (180, -0.275)]  # fmt: skip
        return [
            _hair_cap(
                head, _mirror(y_end), thick=(0.012, 0.0065, 0.0055), drape=-0.30, collide=collide, m_cols=96, n_out=30
            )
        ]
    if style == "curly":
        y_end = [(0, ey + 0.052), (25, ey + 0.050), (45, ey + 0.036), (62, ey + 0.012), (78, ey - 0.006),
                 (95, -0.034), (125, -0.062), (180, -0.074)]  # fmt: skip
        return [
            _hair_cap(head, _mirror(y_end), thick=(0.028, 0.024, 0.010), curls=0.0036, m_cols=128, n_out=40, taper=0.22)
        ]
    # bun / ponytail: pulled back into a tight cap with a clear hairline
    y_end = [(0, ey + 0.058), (20, ey + 0.055), (40, ey + 0.046), (60, ey + 0.032), (74, ey + 0.020),
             (90, ey + 0.030), (104, ey + 0.014), (124, -0.034), (180, -0.060)]  # fmt: skip
    cap = _hair_cap(head, _mirror(y_end), thick=(0.0065, 0.0048, 0.0035), combed=True)
    if style == "bun":
        return [cap, _hair_bun(head)]
    return [cap, *_ponytail(head)]


def _mirror(half: Sequence[tuple[float, float]]) -> list[tuple[float, float]]:
    """Control points over 0..180 degrees of azimuth, mirrored onto 180..360 (a symmetric hairline)."""
    pts = list(half)
    pts += [(360.0 - a, y) for a, y in reversed(half) if 0.0 < a < 180.0]
    return pts


def _hair_cap(
    head: Head,
    y_end_pts: Sequence[tuple[float, float]],
    *,
    thick: tuple[float, float, float],
    drape: float | None = None,
    collide: Callable[[np.ndarray], np.ndarray] | None = None,
    curls: float = 0.0,
    combed: bool = False,
    m_cols: int = 80,
    n_out: int = 21,
    taper: float = 0.12,
) -> Piece:
    """A hair shell grown outwards from the skull: columns from the crown down to ``y_end`` (head-relative y).

    Unlike the classic shells, thickness is added along the surface normal after the cut, so it can stay large
    down the sides (curls) and taper at the tips; ``thick`` is (crown, sides, tip). ``drape`` lets columns whose
    end is below the head's equator fall straight down (to at most that head-relative y), pushed out of the
    body by ``collide``. ``curls`` is the amplitude of a blobby relief; ``combed`` adds fine grooves running from
    the hairline to the crown (hair pulled back).
    """
    az_deg = 360.0 * np.arange(m_cols) / m_cols
    az = np.radians(az_deg)
    y_end = _periodic_curve(y_end_pts, az_deg, 5.0)
    theta_drape = math.radians(96.0)
    th = np.linspace(0.0, math.radians(178.0), 240)
    q = 1.0 - (1.0 - np.linspace(0.0, 1.0, n_out)) ** 1.3  # denser rows near the tips
    n_in = 8
    k = np.arange(420) + 0.5
    lat_y = 1.0 - 2.0 * k / 420.0
    lat_a = math.pi * (3.0 - math.sqrt(5.0)) * k
    lattice = np.stack([np.sqrt(1 - lat_y**2) * np.sin(lat_a), lat_y, np.sqrt(1 - lat_y**2) * np.cos(lat_a)], 1)
    outer_rows, inner_rows = [], []
    for j in range(m_cols):
        a = az[j]
        d = np.stack([np.sin(th) * math.sin(a), np.cos(th), np.sin(th) * math.cos(a)], 1)
        path = head.surface(d, sockets=False)
        if drape is not None and y_end[j] < path[np.searchsorted(th, theta_drape), 1]:
            k = int(np.searchsorted(th, theta_drape))
            p_d = path[k]
            ys = np.linspace(p_d[1], drape, 160)[1:]
            drop = p_d[1] - ys
            flare = 1.0 + 0.18 * _smoothstep(0.0, 0.12, drop)  # hanging hair swings out a little below the jaw
            ext = np.stack([p_d[0] * flare, ys, p_d[2] * flare - 0.10 * _smoothstep(0.03, 0.25, drop) * drop], 1)
            if collide is not None:
                ext = collide(ext + head.c) - head.c
            path = np.concatenate([path[: k + 1], ext])
        below = np.nonzero(path[:, 1] < y_end[j])[0]
        cut = max(int(below[0]) if len(below) else len(path) - 1, 8)
        path = path[: cut + 1]
        seg = np.sqrt(np.sum(np.diff(path, axis=0) ** 2, 1))
        s = np.concatenate([[0.0], np.cumsum(seg)])
        base = np.stack([np.interp(q * s[-1], s, path[:, i]) for i in range(3)], 1)
        # outward direction: radial on the skull, horizontal where the hair hangs
        nrm = _normalize(base * np.where(base[:, 1:2] < 0.0, np.array([1.0, 0.15, 1.0]), 1.0))
        lat = np.clip(q * s[-1] / 0.16, 0.0, 1.0)  # crown -> sides over the first 16 cm
        t = thick[0] + (thick[1] - thick[0]) * _smoothstep(0.0, 1.0, lat)
        t = t + (thick[2] - t) * _smoothstep(1.0 - taper, 1.0, q)
        if curls:
            # round curls: a bump around each point of a spherical Fibonacci lattice (the nearest one wins, so
            # the bumps stay distinct, with creases between them), fading out at the tips
            cos_ang = _normalize(base) @ lattice.T
            blob = np.exp(-(1.0 - cos_ang.max(axis=1)) / 0.07**2)
            t = t + curls * (2.0 * blob - 0.8) * (1.0 - _smoothstep(0.80, 1.0, q))
        if combed:
            t = t + 0.0006 * math.cos(a * 46.0) * _smoothstep(0.05, 0.4, q)
        if drape is not None:
            # a centre parting from the crown to the forehead, and shallow strands along the fall of the hair
            parting = math.exp(-0.5 * (math.atan2(math.sin(a), math.cos(a)) / math.radians(7.0)) ** 2)
            t = t - 0.0045 * parting * (1.0 - _smoothstep(0.0, 0.5, q)) * _smoothstep(0.0, 0.08, q)
            t = t + 0.0009 * math.cos(a * 26.0) * _smoothstep(0.05, 0.3, q)
        # room for the ears: the hair swells over them instead of letting them poke through
        for side in (1.0, -1.0):
            ear = np.array([side * (head.cranium_r[0] + 0.004), head.eye_y - 0.006, -0.006])
            t = t + 0.011 * _cgauss(np.linalg.norm((base - ear) * np.array([1.0, 0.8, 1.0]), axis=1), 0.010)
        outer = base + nrm * t[:, None]
        inner = []
        for frac in np.linspace(1.0, 0.0, n_in):
            i = frac * (n_out - 1)
            lo_i = int(min(math.floor(i), n_out - 2))
            w = i - lo_i
            b = base[lo_i] * (1 - w) + base[lo_i + 1] * w
            nb = _normalize(nrm[lo_i] * (1 - w) + nrm[lo_i + 1] * w)
            inner.append(b - nb * (0.0030 + 0.004 * (1.0 - frac)))
        outer_rows.append(outer)
        inner_rows.append(np.array(inner))
    outer_g = np.stack(outer_rows, 1)
    inner_g = np.stack(inner_rows, 1)
    tip = 0.5 * (outer_g[-1] + inner_g[0])
    pts = np.concatenate([outer_g[1:], tip[None], inner_g[1:-1]]) + head.c
    piece = _grid_piece(
        "hair", pts[:, ::-1], "hair", wrap=True, start_pole=outer_g[0, 0] + head.c, end_pole=inner_g[-1, 0] + head.c
    )
    return _orient_at(piece, int(np.argmax(piece.pos[:, 1])), np.array([0.0, 1.0, 0.0]))


def _orient_at(piece: Piece, index: int, outward: np.ndarray) -> Piece:
    """Make the normal at vertex ``index`` point along ``outward`` (for shells whose inside is not one point)."""
    nn = _vertex_normals(piece.pos, piece.tris)
    if float(nn[index] @ outward) < 0:
        piece.flipped()
    return piece


def _hair_band(head: Head) -> Piece:
    """A horseshoe of short hair around the back and the sides of a bald head, above and behind the ears."""
    ey = head.eye_y
    nu, nv = 64, 12
    a0, a1 = math.radians(62.0), math.radians(298.0)
    az = np.linspace(a0, a1, nu)
    az_deg = np.degrees(az)
    top = [(0, ey + 0.040), (62, ey + 0.024), (90, ey + 0.034), (130, ey + 0.048), (180, ey + 0.052)]
    bot = [(0, ey - 0.010), (62, ey + 0.004), (82, ey + 0.012), (100, ey + 0.010), (118, -0.030), (180, -0.052)]
    y_top = _periodic_curve(_mirror(top), az_deg, 6.0)
    y_bot = _periodic_curve(_mirror(bot), az_deg, 6.0)
    th = np.linspace(math.radians(10.0), math.radians(170.0), 240)
    u = np.linspace(0.0, 1.0, nu)
    v = np.linspace(0.0, 1.0, nv)
    loops = []
    for j in range(nu):
        a = az[j]
        d = np.stack([np.sin(th) * math.sin(a), np.cos(th), np.sin(th) * math.cos(a)], 1)
        surf = head.surface(d, sockets=False)
        # theta where the meridian crosses the top and bottom heights (y falls as theta grows)
        t_top = float(np.interp(-y_top[j], -surf[:, 1], th))
        t_bot = float(np.interp(-y_bot[j], -surf[:, 1], th))
        tv = t_top + (t_bot - t_top) * v
        dv = np.stack([np.sin(tv) * math.sin(a), np.cos(tv), np.sin(tv) * math.cos(a)], 1)
        base = head.surface(dv, sockets=False)
        n = _normalize(base)
        t = 0.0058 * np.sin(np.pi * v) ** 0.6 * math.sin(np.pi * u[j]) ** 0.35 + 0.0004
        t = t + 0.0005 * math.cos(a * 40.0) * np.sin(np.pi * v)
        outer = base + n * t[:, None]
        inner = base - n * 0.0025
        loops.append(np.concatenate([outer, inner[::-1]]))
    pts = np.stack(loops) + head.c
    piece = _grid_piece("hair", pts, "hair", wrap=True, start_pole=pts[0].mean(0), end_pole=pts[-1].mean(0))
    mid = (nu // 2) * (2 * nv) + nv // 2
    return _orient_at(piece, mid, _normalize(piece.pos[mid] - head.c))


def _hair_bun(head: Head) -> Piece:
    """A round bun high on the back of the head, with a twist of grooves."""
    d0 = _normalize(np.array([0.0, 0.58, -0.81]))
    centre = head.surface(d0[None], sockets=False)[0] + head.c + d0 * 0.022
    e2 = _normalize(np.cross(d0, np.array([1.0, 0.0, 0.0])))
    e1 = np.cross(e2, d0)
    nth, nph = 14, 36
    th = np.linspace(0.0, np.pi, nth + 2)[1:-1]
    ph = 2 * np.pi * np.arange(nph) / nph
    twist = 1.0 + 0.07 * np.cos(6.0 * ph[None] + 5.0 * th[:, None]) * np.sin(th[:, None])
    r_side, r_axis = 0.033, 0.028
    pts = (
        centre
        + (np.cos(th)[:, None, None] * r_axis * d0)
        + (np.sin(th)[:, None] * np.cos(ph)[None] * twist * r_side)[..., None] * e1
        + (np.sin(th)[:, None] * np.sin(ph)[None] * twist * r_side * 0.95)[..., None] * e2
    )
    piece = _grid_piece("bun", pts, "hair", wrap=True, start_pole=centre + d0 * r_axis, end_pole=centre - d0 * r_axis)
    return _orient(piece, centre)


def _ponytail(head: Head) -> list[Piece]:
    """A hair tie at the back of the head and a tapering tail hanging from it behind the neck."""
    d0 = _normalize(np.array([0.0, 0.22, -0.97]))
    root = head.surface(d0[None], sockets=False)[0] + head.c + d0 * 0.006
    ctrl = np.array([[0.0, 0.0, 0.0], [0.0, 0.004, -0.028], [0.0, -0.040, -0.050], [0.0, -0.105, -0.046],
                     [0.0, -0.165, -0.030]]) + root  # fmt: skip
    t = np.linspace(0.0, 1.0, 30)
    # a Catmull-Rom-like smooth curve through the control points
    seg = np.linspace(0.0, 1.0, len(ctrl))
    path = np.stack([np.interp(t, seg, ctrl[:, i]) for i in range(3)], 1)
    for _ in range(6):
        path[1:-1] = 0.25 * path[:-2] + 0.5 * path[1:-1] + 0.25 * path[2:]
    radius = np.interp(t, [0.0, 0.08, 0.35, 0.75, 1.0], [0.010, 0.016, 0.021, 0.013, 0.002])
    tail = _capsule("ponytail", path, radius, [(0.0, "hair")], n_cs=16, flat=0.8, grooves=0.08)
    tie = _torus("hair_tie", root + d0 * 0.004, d0, 0.0115, 0.0038, "hair_tie")
    return [tail, tie]


# --------------------------------------------------------------------------------------------------------------
# Body: neck, torso with shirt, collar
# --------------------------------------------------------------------------------------------------------------


NECK_Z = -0.016
"""The neck's axis sits this far behind the head centre (under the skull)."""

_SUPER_EX = 2.0 / 3.0
"""Torso cross-sections are superellipses |x/w|^3 + |z/d|^3 = 1, drawn as (sign(s)|s|^(2/3), sign(c)|c|^(2/3))."""


def _bust_profile() -> np.ndarray:
    """The bust torso's profile rows (half width, half depth, height), from the cut at y = 0 to the neckline."""
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
    return prof


def bust_collider(spec: CharacterSpec, margin: float = 0.006) -> Callable[[np.ndarray], np.ndarray]:
    """A function pushing world points out of the bust's torso (and neck), to lay long hair on the shoulders."""
    prof = _bust_profile()
    sw = spec.shoulder_width

    def push(p: np.ndarray) -> np.ndarray:
        p = p.copy()
        y = p[:, 1]
        t = _smoothstep(0.30, 0.362, y)
        w = np.interp(y, prof[:, 2], prof[:, 0]) * (sw * (1 - t) + t) + margin
        dd = np.interp(y, prof[:, 2], prof[:, 1]) + margin
        zc = NECK_Z * t
        f = np.abs(p[:, 0] / w) ** 3 + np.abs((p[:, 2] - zc) / dd) ** 3
        inside = (y < prof[-1, 2] + 0.004) & (f < 1.0)
        scale = np.where(inside, 1.0 / np.maximum(f, 1e-9) ** (1.0 / 3.0), 1.0)
        p[:, 0] *= scale
        p[:, 2] = zc + (p[:, 2] - zc) * scale
        # and out of the neck cylinder
        r = np.hypot(p[:, 0], p[:, 2] - NECK_Z)
        need = 0.0405 + margin
        s2 = np.where(r < need, need / np.maximum(r, 1e-9), 1.0)
        p[:, 0] *= s2
        p[:, 2] = NECK_Z + (p[:, 2] - NECK_Z) * s2
        return p

    return push


def _torso_piece(
    name: str,
    prof: Sequence[tuple[float, float, float]],
    sw: float,
    y_shoulder: tuple[float, float],
    bottom: np.ndarray,
    material: str,
    neck_z: float = NECK_Z,
    nt: int = 60,
) -> Piece:
    """Superelliptic cross-sections along (half width, half depth, y) rows; widths scale by ``sw`` below the
    shoulder line ``y_shoulder`` (blending to 1 at the neckline) and the centre moves back to the neck's axis;
    the last row turns in just inside the neck and ``bottom`` closes the first one."""
    a = 2 * np.pi * np.arange(nt) / nt
    ca, sa = np.cos(a), np.sin(a)
    sx = np.sign(sa) * np.abs(sa) ** _SUPER_EX
    sz = np.sign(ca) * np.abs(ca) ** _SUPER_EX
    rows = []
    for hw, hd, y in prof:
        t = float(_smoothstep(y_shoulder[0], y_shoulder[1], np.array(y)))
        width = hw * (sw * (1 - t) + t)
        rows.append(np.stack([width * sx, np.full(nt, y), neck_z * t + hd * sz], 1))
    last = rows[-1]
    rows.append(np.stack([last[:, 0] * 0.72, last[:, 1] - 0.004, neck_z + (last[:, 2] - neck_z) * 0.72], 1))
    torso = _grid_piece(name, np.stack(rows), material, wrap=True, start_pole=bottom)
    nn = _vertex_normals(torso.pos, torso.tris)
    if np.mean(np.sum(nn[:, [0, 2]] * torso.pos[:, [0, 2]], 1)) < 0:
        torso.flipped()
    return torso


def _neck_piece(y0: float, y1: float, radius: tuple[float, float], flare: float) -> Piece:
    """The neck: an elliptic tube from ``y0`` (flared where it meets the shoulders) up into the head."""
    n = 32
    a = 2 * np.pi * np.arange(n) / n
    ys = np.linspace(y0, y1, 14)
    rows = []
    for y in ys:
        t = (y - ys[0]) / (ys[-1] - ys[0])
        fl = flare * (1.0 - t) ** 3
        rows.append(np.stack([(radius[0] + fl) * np.sin(a), np.full(n, y), NECK_Z + (radius[1] + fl) * np.cos(a)], 1))
    neck = _grid_piece("neck", np.stack(rows), "skin", wrap=True)
    nn = _vertex_normals(neck.pos, neck.tris)
    if np.mean(np.sum(nn[:, [0, 2]] * (neck.pos[:, [0, 2]] - [0.0, NECK_Z]), 1)) < 0:
        neck.flipped()
    return neck


def _frame_along(path: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Unit tangent, normal and binormal along a polyline (the normal stays close to +z, or +x for paths along z)."""
    tang = _normalize(np.gradient(path, axis=0))
    ref = np.where(np.abs(tang[:, 2:3]) < 0.9, np.array([[0.0, 0.0, 1.0]]), np.array([[1.0, 0.0, 0.0]]))
    bin_ = _normalize(np.cross(tang, ref))
    nrm = np.cross(bin_, tang)
    return tang, nrm, bin_


def _capsule(
    name: str,
    path: np.ndarray,
    radius: np.ndarray,
    materials: Sequence[tuple[float, str]],
    *,
    n_cs: int = 16,
    flat: float = 1.0,
    grooves: float = 0.0,
    caps: tuple[bool, bool] = (True, True),
) -> Piece:
    """A tube along ``path`` with per-point ``radius`` and rounded (hemispherical) caps.

    ``materials`` is [(arc length from which it applies, material), ...] in increasing order; ``flat`` squashes
    the cross-section along the normal (1 = round); ``grooves`` ripples the radius (strands of a ponytail).
    Per-vertex ``attrs["s"]`` is the arc length of the ring (caps clamped to the ends): the skinning parameter.
    """
    tang, nrm, bin_ = _frame_along(path)
    seg = np.sqrt(np.sum(np.diff(path, axis=0) ** 2, 1))
    s = np.concatenate([[0.0], np.cumsum(seg)])
    a = 2 * np.pi * np.arange(n_cs) / n_cs
    ripple = 1.0 + grooves * np.cos(7.0 * a)
    ring_c, ring_r, ring_s, ring_k = [], [], [], []
    cap_angles = np.radians([25.0, 50.0, 70.0, 84.0])
    if caps[0]:
        for ang in cap_angles:
            ring_c.append(path[0] - tang[0] * radius[0] * math.cos(ang))
            ring_r.append(radius[0] * math.sin(ang))
            ring_s.append(0.0)
            ring_k.append(0)
    for i in range(len(path)):
        ring_c.append(path[i])
        ring_r.append(radius[i])
        ring_s.append(s[i])
        ring_k.append(i)
    if caps[1]:
        for ang in cap_angles[::-1]:
            ring_c.append(path[-1] + tang[-1] * radius[-1] * math.cos(ang))
            ring_r.append(radius[-1] * math.sin(ang))
            ring_s.append(s[-1])
            ring_k.append(len(path) - 1)
    k = np.array(ring_k)
    pts = (
        np.array(ring_c)[:, None]
        + (np.array(ring_r)[:, None] * np.cos(a)[None] * ripple[None] * flat)[..., None] * nrm[k][:, None]
        + (np.array(ring_r)[:, None] * np.sin(a)[None] * ripple[None])[..., None] * bin_[k][:, None]
    )
    start = path[0] - tang[0] * radius[0] if caps[0] else None
    end = path[-1] + tang[-1] * radius[-1] if caps[1] else None
    piece = _grid_piece(name, pts, materials[0][1], wrap=True, start_pole=start, end_pole=end)
    rs = np.array(ring_s)
    mats = []
    for r in range(len(rs) - 1):
        mid = 0.5 * (rs[r] + rs[r + 1])
        mats += [next(m for s0, m in reversed(materials) if mid >= s0)] * (2 * n_cs)
    if start is not None:
        mats += [materials[0][1]] * n_cs
    if end is not None:
        mats += [materials[-1][1]] * n_cs
    piece.tri_mat = np.array(mats, dtype=object)
    vs = np.repeat(rs, n_cs)
    extra = ([0.0] if start is not None else []) + ([s[-1]] if end is not None else [])
    piece.attrs["s"] = np.concatenate([vs, extra])
    mid = len(path) // 2
    centre_idx = (len(cap_angles) if caps[0] else 0) + mid
    return _orient_at(piece, centre_idx * n_cs, _normalize(pts[centre_idx, 0] - path[mid]))


def _torus(name: str, centre: np.ndarray, axis: np.ndarray, big: float, small: float, material: str) -> Piece:
    """A torus around ``axis`` (a hair tie, a cuff)."""
    nc, nm = 24, 8
    e1 = _normalize(np.cross(axis, np.array([0.0, 1.0, 0.0]) if abs(axis[1]) < 0.9 else np.array([1.0, 0.0, 0.0])))
    e2 = np.cross(axis, e1)
    u = 2 * np.pi * np.arange(nc) / nc
    v = 2 * np.pi * np.arange(nm) / nm
    ring = np.cos(u)[:, None] * e1 + np.sin(u)[:, None] * e2
    pts = centre + (big + small * np.cos(v))[None, :, None] * ring[:, None] + (small * np.sin(v))[None, :, None] * axis
    piece = _grid_piece(name, pts, material, wrap=True)
    idx = np.arange(nc * nm).reshape(nc, nm)
    piece.tris = np.concatenate([piece.tris, _ring_band(idx[-1], idx[0])])
    piece.tri_mat = np.full(len(piece.tris), material, dtype=object)
    return _orient_at(piece, 0, ring[0])


def _ellipsoid(
    name: str, centre: np.ndarray, axes: np.ndarray, material: str, n_lat: int = 12, n_lon: int = 24
) -> Piece:
    """An ellipsoid with half-axes given as the rows of ``axes`` (3 vectors), poles along the first one."""
    th = np.linspace(0.0, np.pi, n_lat + 2)[1:-1]
    ph = 2 * np.pi * np.arange(n_lon) / n_lon
    pts = (
        centre
        + (np.cos(th)[:, None] * np.ones_like(ph)[None])[..., None] * axes[0]
        + (np.sin(th)[:, None] * np.cos(ph)[None])[..., None] * axes[1]
        + (np.sin(th)[:, None] * np.sin(ph)[None])[..., None] * axes[2]
    )
    piece = _grid_piece(name, pts, material, wrap=True, start_pole=centre + axes[0], end_pole=centre - axes[0])
    return _orient(piece, centre)


# --------------------------------------------------------------------------------------------------------------
# Full body: a stylised, toy-like figure about 3.4 heads tall
# --------------------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FullBodyLayout:
    """Joint positions (world, metres) of the full-body figure; every piece and bone is placed from these."""

    hips: np.ndarray
    spine: tuple[float, float, float]  # Spine, Spine1, Spine2 heights
    neck: np.ndarray
    head: np.ndarray
    shoulder: np.ndarray  # LeftShoulder (mirror x for the right)
    arm: np.ndarray  # LeftArm: the shoulder ball's centre
    elbow: np.ndarray
    wrist: np.ndarray
    hip: np.ndarray  # LeftUpLeg
    knee: np.ndarray
    ankle: np.ndarray
    toe: np.ndarray

    @classmethod
    def for_spec(cls, head: Head, spec: CharacterSpec) -> FullBodyLayout:
        sw = spec.shoulder_width
        arm = np.array([0.097 * sw, 0.462, -0.006])
        down = np.array([math.sin(math.radians(12.0)), -math.cos(math.radians(12.0)), 0.0])
        elbow = arm + 0.085 * down
        return cls(
            hips=np.array([0.0, 0.305, 0.0]),
            spine=(0.350, 0.400, 0.445),
            neck=np.array([0.0, 0.495, NECK_Z]),
            head=head.c + np.array([0.0, -0.045, NECK_Z]),
            shoulder=np.array([0.024, 0.478, -0.008]),
            arm=arm,
            elbow=elbow,
            wrist=elbow + 0.075 * down,
            hip=np.array([0.046, 0.268, 0.0]),
            knee=np.array([0.047, 0.160, 0.004]),
            ankle=np.array([0.048, 0.064, -0.004]),
            toe=np.array([0.048, 0.018, 0.054]),
        )


def _mirror_x(p: np.ndarray, side: int) -> np.ndarray:
    return p * np.array([float(side), 1.0, 1.0])


def build_full_body(head: Head, spec: CharacterSpec, lay: FullBodyLayout) -> list[Piece]:
    """Neck, shirt, trousers (pelvis and legs), shoes, arms with short sleeves, mitten hands with thumbs.

    Joints are balls: the shoulder and hip ends of the limbs are spheres centred on the joint, so an arm raised
    to wave turns in its socket without opening a gap. Pieces are named ``<part>_l`` / ``<part>_r`` by side.
    """
    sw = spec.shoulder_width
    pieces = [_neck_piece(0.478, head.c[1] - 0.035, (0.030, 0.029), 0.006)]
    shirt = [(0.093, 0.067, 0.300), (0.092, 0.067, 0.315), (0.090, 0.065, 0.360), (0.091, 0.063, 0.400),
             (0.093, 0.060, 0.440), (0.091, 0.056, 0.462), (0.080, 0.050, 0.480), (0.061, 0.042, 0.492),
             (0.045, 0.035, 0.499), (0.037, 0.032, 0.503)]  # fmt: skip
    pieces.append(_torso_piece("torso", shirt, sw, (0.46, 0.503), np.array([0.0, 0.300, 0.0]), "shirt"))
    pelvis = [(0.050, 0.042, 0.232), (0.078, 0.057, 0.245), (0.087, 0.062, 0.268), (0.089, 0.063, 0.295),
              (0.088, 0.062, 0.325), (0.086, 0.061, 0.345)]  # fmt: skip
    # the pelvis' turned-in top row sits inside the shirt
    pieces.append(_torso_piece("pelvis", pelvis, 1.0, (1.0, 2.0), np.array([0.0, 0.226, 0.0]), "pants", neck_z=0.0))
    for side in (1, -1):
        tag = "l" if side > 0 else "r"
        # leg: ball at the hip, thigh, knee, shin, a slightly flared hem inside the shoe
        hip, knee, ankle = (_mirror_x(p, side) for p in (lay.hip, lay.knee, lay.ankle))
        t = np.linspace(0.0, 1.0, 9)
        path = np.concatenate([hip + (knee - hip) * t[:-1, None], knee + (ankle - knee) * t[:, None]])
        rad = np.interp(
            np.linspace(0.0, 1.0, len(path)), [0.0, 0.3, 0.5, 0.8, 1.0], [0.040, 0.038, 0.034, 0.033, 0.035]
        )
        pieces.append(_capsule(f"leg_{tag}", path, rad, [(0.0, "pants")], n_cs=18))
        pieces.append(_shoe(f"shoe_{tag}", _mirror_x(lay.ankle, side)))
        # arm: ball at the shoulder inside a short sleeve, bare forearm
        arm, elbow, wrist = (_mirror_x(p, side) for p in (lay.arm, lay.elbow, lay.wrist))
        t = np.linspace(0.0, 1.0, 8)
        path = np.concatenate([arm + (elbow - arm) * t[:-1, None], elbow + (wrist - elbow) * t[:, None]])
        s = np.concatenate([[0.0], np.cumsum(np.sqrt(np.sum(np.diff(path, axis=0) ** 2, 1)))])
        # the sleeve ends at 5 cm: two rings 1.5 mm apart step the radius down to the bare arm
        sleeve_end = 0.050
        k = int(np.searchsorted(s, sleeve_end))
        d = (elbow - arm) / np.linalg.norm(elbow - arm)
        path = np.concatenate([path[:k], [arm + d * sleeve_end, arm + d * (sleeve_end + 0.0015)], path[k:]])
        s = np.concatenate([[0.0], np.cumsum(np.sqrt(np.sum(np.diff(path, axis=0) ** 2, 1)))])
        rad = np.where(s <= sleeve_end + 1e-9, 0.031 - 0.03 * s, np.interp(s, [sleeve_end, s[-1]], [0.0225, 0.019]))
        pieces.append(_capsule(f"arm_{tag}", path, rad, [(0.0, "shirt"), (sleeve_end + 0.0012, "skin")], n_cs=18))
        pieces += _hand(tag, wrist, d)
    return pieces


def _shoe(name: str, ankle: np.ndarray) -> Piece:
    """A rounded toy shoe: an ellipsoid cut flat at the sole, lower over the toes, the sole a darker band."""
    c = np.array([ankle[0], 0.034, ankle[2] + 0.026])
    th = np.linspace(0.0, np.pi, 16)[1:-1]
    ph = 2 * np.pi * np.arange(32) / 32
    x = np.sin(th)[:, None] * np.cos(ph)[None] * 0.040
    z = np.sin(th)[:, None] * np.sin(ph)[None] * 0.068
    y = np.cos(th)[:, None] * np.ones_like(ph)[None] * 0.042
    front = _smoothstep(-0.01, 0.05, z)
    y = np.where(y > 0, y * (1.0 - 0.42 * front), y)
    pts = np.stack([x, y, z], -1) + c
    pts[..., 1] = np.maximum(pts[..., 1], 0.0)  # a flat sole on the ground
    top = c + np.array([0.0, 0.042, 0.0])
    bottom = np.array([c[0], 0.0, c[2]])
    piece = _grid_piece(name, pts, "shoes", wrap=True, start_pole=top, end_pole=bottom)
    cy = piece.pos[piece.tris].mean(axis=1)[:, 1]
    piece.tri_mat = np.where(cy < 0.007, "sole", "shoes").astype(object)
    return _orient(piece, c)


def _hand(tag: str, wrist: np.ndarray, d: np.ndarray) -> list[Piece]:
    """A mitten hand (palm facing the thigh) and a thumb pointing forward."""
    across = np.array([0.0, 0.0, 1.0])
    thick = _normalize(np.cross(d, across))
    palm_c = wrist + d * 0.028
    palm = _ellipsoid(f"hand_{tag}", palm_c, np.stack([d * 0.032, across * 0.025, thick * 0.0145]), "skin")
    t_dir = _normalize(d * 0.45 + across * 0.9)
    t_c = wrist + d * 0.017 + across * 0.019
    thumb = _ellipsoid(
        f"thumb_{tag}",
        t_c,
        np.stack([t_dir * 0.016, np.cross(t_dir, thick) * 0.009, thick * 0.009]),
        "skin",
        n_lat=8,
        n_lon=14,
    )
    return [palm, thumb]


def build_body(head: Head, spec: CharacterSpec) -> list[Piece]:
    """The bust's neck, torso (the shirt, with sloping shoulders rounded into the upper arms) and collar."""
    pieces = [_neck_piece(0.34, head.c[1] - 0.035, (0.0405, 0.0385), 0.010)]
    # torso: superelliptic cross-sections along a profile (half width, half depth, height) from the bust's cut
    # to the neckline, where the shirt turns in just inside the neck, so no gap shows around it
    pieces.append(_torso_piece("torso", _bust_profile(), spec.shoulder_width, (0.30, 0.362), np.zeros(3), "shirt"))
    top = (0.053, 0.051, 0.362)  # the neckline row: half width, half depth, height
    neck_z = NECK_Z
    ex = _SUPER_EX

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
# Skeleton and skin weights
# --------------------------------------------------------------------------------------------------------------


@dataclass
class Skeleton:
    """Joints named as Mixamo / Ready Player Me name them (no prefix), their parents and rest positions.

    Rest rotations are all identity: every joint node carries a translation only, and its inverse bind matrix is a
    pure translation. So a joint's local axes are the world axes in the rest pose (x to the character's left, y up,
    z forward): a renderer raising an arm rotates ``LeftArm`` about +z (and ``RightArm`` about -z).
    """

    names: list[str]
    parents: list[int]  # -1 for the root (Hips)
    world: np.ndarray  # (joints, 3)

    def index(self, name: str) -> int:
        return self.names.index(name)

    def weights(self, n: int, parts: Mapping[str, np.ndarray | float]) -> np.ndarray:
        """A dense (n, joints) weight matrix from {joint name: per-vertex weight}."""
        w = np.zeros((n, len(self.names)))
        for name, value in parts.items():
            w[:, self.index(name)] += value
        return w


def _make_skeleton(joints: Sequence[tuple[str, str | None, np.ndarray]]) -> Skeleton:
    names = [j[0] for j in joints]
    parents = [-1 if j[1] is None else names.index(j[1]) for j in joints]
    world = np.round(np.array([np.asarray(j[2], dtype=np.float64) for j in joints]) / _POS_GRID) * _POS_GRID
    return Skeleton(names, parents, world)


def _arm_joints(
    side: int,
    shoulder: np.ndarray,
    arm: np.ndarray,
    elbow: np.ndarray,
    wrist: np.ndarray,
) -> list[tuple[str, str | None, np.ndarray]]:
    s = "Left" if side > 0 else "Right"
    m = np.array([float(side), 1.0, 1.0])
    return [
        (f"{s}Shoulder", "Spine2", shoulder * m),
        (f"{s}Arm", f"{s}Shoulder", arm * m),
        (f"{s}ForeArm", f"{s}Arm", elbow * m),
        (f"{s}Hand", f"{s}ForeArm", wrist * m),
    ]


def bust_skeleton(head: Head, eyes: Sequence[EyeRig], spec: CharacterSpec) -> Skeleton:
    """The bust's skeleton: spine up the torso, neck, head, eyes, and arms whose upper arms are the shoulders'
    sides; the elbow sits just above the bust's cut, so the forearm and hand bones lie below the visible body."""
    sw = spec.shoulder_width
    eye = {r.side: r.centre for r in eyes}
    joints: list[tuple[str, str | None, np.ndarray]] = [
        ("Hips", None, np.array([0.0, 0.0, 0.0])),
        ("Spine", "Hips", np.array([0.0, 0.09, 0.0])),
        ("Spine1", "Spine", np.array([0.0, 0.17, 0.0])),
        ("Spine2", "Spine1", np.array([0.0, 0.25, 0.0])),
        ("Neck", "Spine2", np.array([0.0, 0.345, NECK_Z])),
        ("Head", "Neck", head.c + np.array([0.0, -0.045, NECK_Z])),
        ("LeftEye", "Head", eye[1]),
        ("RightEye", "Head", eye[-1]),
    ]
    for side in (1, -1):
        joints += _arm_joints(
            side,
            np.array([0.030, 0.325, -0.008]),
            np.array([0.118 * sw, 0.285, -0.004]),
            np.array([0.128 * sw, 0.030, -0.010]),
            np.array([0.134 * sw, -0.200, 0.020]),
        )
    return _make_skeleton(joints)


def full_skeleton(head: Head, eyes: Sequence[EyeRig], lay: FullBodyLayout) -> Skeleton:
    """The full figure's skeleton: the bust's joints placed on the figure, plus legs (UpLeg, Leg, Foot, ToeBase)."""
    eye = {r.side: r.centre for r in eyes}
    joints: list[tuple[str, str | None, np.ndarray]] = [
        ("Hips", None, lay.hips),
        ("Spine", "Hips", np.array([0.0, lay.spine[0], 0.0])),
        ("Spine1", "Spine", np.array([0.0, lay.spine[1], 0.0])),
        ("Spine2", "Spine1", np.array([0.0, lay.spine[2], 0.0])),
        ("Neck", "Spine2", lay.neck),
        ("Head", "Neck", lay.head),
        ("LeftEye", "Head", eye[1]),
        ("RightEye", "Head", eye[-1]),
    ]
    for side in (1, -1):
        joints += _arm_joints(side, lay.shoulder, lay.arm, lay.elbow, lay.wrist)
    for side in (1, -1):
        s = "Left" if side > 0 else "Right"
        m = np.array([float(side), 1.0, 1.0])
        joints += [
            (f"{s}UpLeg", "Hips", lay.hip * m),
            (f"{s}Leg", f"{s}UpLeg", lay.knee * m),
            (f"{s}Foot", f"{s}Leg", lay.ankle * m),
            (f"{s}ToeBase", f"{s}Foot", lay.toe * m),
        ]
    return _make_skeleton(joints)


def _chain(coord: np.ndarray, knots: Sequence[float], blend: float) -> np.ndarray:
    """Weights (n, len(knots)) of bones along one axis: bone k owns [knots[k], knots[k+1]), with a smooth blend
    of half-width ``blend`` around each joint (the weights of a vertex always sum to 1)."""
    k = np.asarray(knots, dtype=np.float64)
    b = min(blend, 0.45 * float(np.min(np.diff(k)))) if len(k) > 1 else blend
    up = [np.ones_like(coord)] + [_smoothstep(x - b, x + b, coord) for x in k[1:]] + [np.zeros_like(coord)]
    return np.stack([up[i] - up[i + 1] for i in range(len(k))], 1)


_SPINE = ("Hips", "Spine", "Spine1", "Spine2", "Neck", "Head")


def _spine_weights(skel: Skeleton, pos: np.ndarray, blend: float = 0.03) -> dict[str, np.ndarray]:
    knots = [skel.world[skel.index(n), 1] for n in _SPINE]
    w = _chain(pos[:, 1], knots, blend)
    return {n: w[:, i] for i, n in enumerate(_SPINE)}


def bust_body_weights(skel: Skeleton, pos: np.ndarray, spec: CharacterSpec) -> np.ndarray:
    """Skin weights of the bust's neck, torso and collar.

    The spine bones share the torso by height; the torso's sides beyond the shoulder joints are the upper arms
    (LeftArm / RightArm), blending into the forearm bone at the cut; the top of each shoulder between the neck and
    the arm follows the clavicle (LeftShoulder / RightShoulder), so a shrug lifts it.
    """
    sw = spec.shoulder_width
    ax = np.abs(pos[:, 0])
    y = pos[:, 1]
    arm = _smoothstep(0.085 * sw, 0.128 * sw, ax)
    fore = _smoothstep(0.07, 0.0, y)
    shoulder = _smoothstep(0.035, 0.095, ax) * _smoothstep(0.22, 0.30, y) * _smoothstep(0.347, 0.33, y) * (1 - arm)
    core = 1.0 - arm - shoulder
    parts: dict[str, np.ndarray | float] = {k: v * core for k, v in _spine_weights(skel, pos).items()}
    left = pos[:, 0] >= 0
    for s, mask in (("Left", left), ("Right", ~left)):
        parts[f"{s}Arm"] = arm * (1 - fore) * mask
        parts[f"{s}ForeArm"] = arm * fore * mask
        parts[f"{s}Shoulder"] = shoulder * mask
    return skel.weights(len(pos), parts)


def full_body_weights(skel: Skeleton, piece: Piece) -> np.ndarray:
    """Skin weights of one full-body piece (by its name): limbs along their bone chains, the torso by height."""
    pos = piece.pos
    n = len(pos)
    kind, _, tag = piece.name.partition("_")
    s = "Left" if tag == "l" else "Right"
    if kind in ("neck", "torso"):
        parts: dict[str, np.ndarray | float] = dict(_spine_weights(skel, pos, 0.025))
        if kind == "torso":
            y0 = skel.world[skel.index("LeftArm"), 1]
            sh = _smoothstep(0.030, 0.070, np.abs(pos[:, 0])) * _smoothstep(y0 - 0.03, y0 + 0.005, pos[:, 1])
            parts = {k: v * (1 - sh) for k, v in parts.items()}
            left = pos[:, 0] >= 0
            parts["LeftShoulder"] = sh * left
            parts["RightShoulder"] = sh * ~left
        return skel.weights(n, parts)
    if kind == "pelvis":
        return skel.weights(n, {"Hips": 1.0})
    if kind in ("arm", "leg"):
        names = [f"{s}Arm", f"{s}ForeArm", f"{s}Hand"] if kind == "arm" else [f"{s}UpLeg", f"{s}Leg", f"{s}Foot"]
        j = np.array([skel.world[skel.index(x)] for x in names])
        knots = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(j, axis=0), axis=1))])
        w = _chain(piece.attrs["s"], knots, 0.018)
        return skel.weights(n, {x: w[:, i] for i, x in enumerate(names)})
    if kind in ("hand", "thumb"):
        return skel.weights(n, {f"{s}Hand": 1.0})
    if kind == "shoe":
        toe = _smoothstep(
            skel.world[skel.index(f"{s}ToeBase"), 2] - 0.012,
            skel.world[skel.index(f"{s}ToeBase"), 2] + 0.012,
            pos[:, 2],
        )
        return skel.weights(n, {f"{s}Foot": 1.0 - toe, f"{s}ToeBase": toe})
    raise ValueError(f"no skin weights for body piece {piece.name!r}")


# --------------------------------------------------------------------------------------------------------------
# Beard: an offset copy of part of the face sheet
# --------------------------------------------------------------------------------------------------------------


def build_beard(head: Head, face: Piece, frame: MouthFrame, style: str) -> Piece:
    """Facial hair as a shell lifted off the face sheet's skin: jaw, chin and moustache (``full``) or chin and
    moustache only (``goatee``).

    Every beard vertex is a face-sheet vertex pushed out along its normal by a thickness that fades to almost
    nothing at the beard's edge, so the shell grows out of the skin without a visible rim. ``attrs["src"]`` keeps
    the face vertex each one came from: the beard copies that vertex's motion in every morph target, so it
    follows the jaw, the lips and the cheeks exactly. The lips and the mouth stay clear.
    """
    p = face.pos - head.c
    rho, u = face.attrs["rho"], face.attrs["u"]
    ax, y, z = np.abs(p[:, 0]), p[:, 1], p[:, 2]
    lip_h = np.where(u > 0, frame.upper_h, frame.lower_h)
    clear = _smoothstep(lip_h + 0.0012, lip_h + 0.0042, rho) * (rho > 0)
    if style == "full":
        y_lim = head.mouth_y + 0.004 + 0.050 * _smoothstep(0.028, 0.060, ax)
        # sideburns stop in front of the ears; lower down the beard wraps round the jaw's angle
        z_lim = -0.034 + 0.028 * _smoothstep(head.mouth_y - 0.015, head.mouth_y + 0.030, y)
        jaw = _smoothstep(y_lim + 0.003, y_lim - 0.006, y) * _smoothstep(z_lim - 0.012, z_lim + 0.004, z)
    else:
        jaw = _smoothstep(head.mouth_y + 0.006, head.mouth_y - 0.004, y) * _smoothstep(0.034, 0.022, ax)
        jaw = jaw * _smoothstep(-0.01, 0.02, z)
    jaw = jaw * _smoothstep(-0.112, -0.100, y)  # not under the chin, where the neck hides it
    nose_bottom = head.nose_tip_y - 0.0045
    moustache = (
        _smoothstep(nose_bottom, nose_bottom - 0.004, y)
        * _smoothstep(frame.half_width + 0.013, frame.half_width + 0.005, ax)
        * _smoothstep(head.mouth_y - 0.012, head.mouth_y - 0.004, y)
    )
    m = np.maximum(jaw, moustache) * clear
    chin = _gauss(p[:, 0], 0.016) * _gauss(y - (head.mouth_y - 0.032), 0.012)
    # the shell dips under the skin where m is small: its visible edge is where it crosses the skin, a smooth
    # curve, not the jagged outline of the triangles it keeps
    thick = (0.0042 + 0.0018 * chin) * m**0.8 - 0.0009
    thick = thick + 0.0005 * m * np.sin(p[:, 0] * 900.0) * np.sin(y * 760.0 + p[:, 0] * 300.0)
    # near the mouth, where the rings are short and dense, a coarser grid than the face sheet's (every other vertex
    # around) halves the beard's vertices and what its morph targets cost; further out, where the rings are long,
    # the full grid keeps the beard's edge smooth. Its vertices are face vertices, so the motion stays exact.
    n = N_AROUND
    rows = (len(face.pos) - 2) // n
    ring_rho = rho[: rows * n : n]
    tri_list = []
    for r in range(rows - 1):
        k = np.arange(0, n, 2)
        a, d = r * n + k, r * n + (k + 2) % n
        b0, b1, b2 = (r + 1) * n + k, (r + 1) * n + k + 1, (r + 1) * n + (k + 2) % n
        if ring_rho[r] >= _BEARD_FINE_RHO:  # both rings full
            kk = np.arange(n)
            tri_list.append(_ring_band(r * n + kk, (r + 1) * n + kk))
        elif ring_rho[r + 1] >= _BEARD_FINE_RHO:  # coarse to full: a fan of three per coarse step
            tri_list.append(np.concatenate([np.stack(t, 1) for t in ((a, b0, b1), (a, b1, d), (d, b1, b2))]))
        else:
            tri_list.append(np.concatenate([np.stack([a, b0, b2], 1), np.stack([a, b2, d], 1)]))
    tris = np.concatenate(tri_list)
    keep_tri = np.all(rho[tris] > 0.0, axis=1) & np.any(m[tris] > 0.08, axis=1)
    tris = tris[keep_tri]
    used = np.unique(tris)
    remap = np.full(len(face.pos), -1, np.int64)
    remap[used] = np.arange(len(used))
    nrm = _vertex_normals(face.pos, face.tris)
    pos = face.pos[used] + nrm[used] * thick[used, None]
    piece = Piece("beard", pos, remap[tris], ["beard"] * len(tris))
    piece.attrs["src"] = used
    return piece


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

    def __init__(
        self, head: Head, frame: MouthFrame, pieces: list[Piece], lid_poses: dict[str, dict[str, np.ndarray]]
    ) -> None:
        self.head = head
        self.frame = frame
        self.lid_poses = lid_poses
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

    def lid_pose(self, side: int, pose: str, which: Sequence[str] = ("upper", "lower")) -> np.ndarray:
        """Move one eye's lids to one of :data:`LID_POSES`."""
        d = np.zeros((self.n, 3))
        tag = "l" if side > 0 else "r"
        for w in which:
            name = f"lid_{w}_{tag}"
            sl = self._sel(name)
            d[sl] = self.lid_poses[pose][name] - self.pos[sl]
        return d

    def blink(self, side: int) -> np.ndarray:
        return self.lid_pose(side, "closed")

    def _cheek(self, side: int) -> np.ndarray:
        """The cheek pushed up towards the eye (the lower lid, resting on it, rises with it)."""
        h = self.head
        fx, fy = np.array([side * 0.034]), np.array([h.eye_y - 0.029])
        centre = h.c + h.solve_front(fx, fy)[0]
        dist = np.linalg.norm((self.pos - centre) * np.array([1.0, 1.1, 0.5]), axis=1)
        movable = (self.is_face & (self.rho > 0.004)) | (self.kind == "lid")
        w = _cgauss(dist, 0.011) * movable
        return w[:, None] * np.array([side * 0.0003, 0.0030, 0.0010])[None]

    def cheek_squint(self, side: int) -> np.ndarray:
        return self._slide(self._cheek(side)) + 0.5 * self.lid_pose(side, "squint", ("lower",))

    def eye_squint(self, side: int) -> np.ndarray:
        return self.lid_pose(side, "squint") + 0.3 * self._slide(self._cheek(side))

    def nose_sneer(self, side: int) -> np.ndarray:
        """The nose wing and the skin beside it pulled up, the upper lip lifting a little on that side."""
        h, f = self.head, self.frame
        fx, fy = np.array([side * 0.0085]), np.array([h.nose_tip_y + 0.001])
        centre = h.c + h.solve_front(fx, fy)[0]
        dist = np.linalg.norm((self.pos - centre) * np.array([1.0, 0.8, 0.7]), axis=1)
        w = _cgauss(dist, 0.0065) * self.is_face * (self.rho > 0.0)
        d = w[:, None] * np.array([side * 0.0005, 0.0024, -0.0004])[None]
        x, _ = self._mouth_local()
        lip = np.maximum(self.u, 0.0) ** 0.6 * self._lip_w * _smoothstep(-0.2, 0.8, side * x / f.half_width)
        d[:, 1] += 0.0009 * lip
        return self._slide(d)

    def mouth_press(self, side: int) -> np.ndarray:
        """Half of a lip press (viseme_PP's pressing, without the jaw), on one side of the mouth."""
        x, _ = self._mouth_local()
        a = 0.4 * self.frame.half_width
        mask = _smoothstep(-a, a, side * x)
        return self._slide(self._mouth_pose(MouthPose(press=1.0, corners=0.0003)) * mask[:, None])

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
        for name, side in (("Left", 1), ("Right", -1)):
            t[f"eyeSquint{name}"] = self.eye_squint(side)
            t[f"eyeWide{name}"] = self.lid_pose(side, "wide")
            t[f"browOuterUp{name}"] = self.brows(side, np.array([0.0, 0.0040, 0.0004]), inner=False)
            t[f"cheekSquint{name}"] = self.cheek_squint(side)
            t[f"noseSneer{name}"] = self.nose_sneer(side)
            t[f"mouthPress{name}"] = self.mouth_press(side)
        t["mouthPucker"] = self.mouth_pose(MouthPose(spread=-0.40, protrude=0.0085, press=0.15))
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
    """A built character before serialisation: meshes (their pieces carry skin weights), the skeleton, anchor
    positions (world), PBR materials and the framing a viewer should use (``bust`` or ``full``)."""

    name: str
    meshes: list[MeshOut]
    anchors: dict[str, np.ndarray]
    materials: dict[str, tuple[tuple[float, float, float], float]]  # name -> (linear rgb, roughness)
    skeleton: Skeleton
    framing: str = "bust"


def _darker(rgb: tuple[float, float, float], f: float) -> tuple[float, float, float]:
    return (rgb[0] * f, rgb[1] * f, rgb[2] * f)


def build_character(name: str, spec: CharacterSpec) -> Character:
    """Build every piece of a character, its morph targets, its skeleton and its skin weights."""
    head = Head(spec)
    face, frame = build_face_sheet(head)
    eyes = _eye_centres(head)
    lid_pieces: list[Piece] = []
    lid_poses: dict[str, dict[str, np.ndarray]] = {k: {} for k in LID_POSES}
    for rig in eyes:
        lp, poses = build_lids(rig)
        tag = "l" if rig.side > 0 else "r"
        for pose, by_piece in poses.items():
            lid_poses[pose].update({f"{k}_{tag}": v for k, v in by_piece.items()})
        for p in lp:
            p.name = f"{p.name}_{tag}"
        lid_pieces += lp
    brows = build_brows(head)
    teeth = [build_teeth(frame, "upper"), build_teeth(frame, "lower")]
    tongue = build_tongue(frame)
    ears = build_ears(head)
    face_pieces = [face, *lid_pieces, *brows, *teeth, tongue, *ears]
    rig = FaceRig(head, frame, face_pieces, lid_poses)
    targets = rig.targets()
    normal_mask = rig.normal_mask
    if spec.beard != "none":
        # the face sheet is the first piece: its vertex indices are the rig's
        beard = build_beard(head, face, frame, spec.beard)
        src = beard.attrs["src"]
        # a few tenths of a millimetre of motion vanish in a bushy beard: dropping them keeps the file small
        moved = {
            k: np.where(np.abs(v[src]).max(axis=1, keepdims=True) > _BEARD_MIN_DELTA, v[src], 0.0)
            for k, v in targets.items()
        }
        targets = {k: np.concatenate([v, moved[k]]) for k, v in targets.items()}
        normal_mask = np.concatenate([normal_mask, np.zeros(len(beard.pos), bool)])
        face_pieces.append(beard)

    eyeballs = []
    for r in eyes:
        tag = "l" if r.side > 0 else "r"
        eye = build_eyeball(r, spec)
        eye.name = f"eye_{tag}"
        glint = build_catchlight(r)
        glint.name = f"catchlight_{tag}"
        eyeballs += [eye, glint]

    if spec.body == "full":
        lay = FullBodyLayout.for_spec(head, spec)
        body = build_full_body(head, spec, lay)
        skel = full_skeleton(head, eyes, lay)
        hair = build_hair(head, spec.hair_style)
        for p in body:
            p.weights = full_body_weights(skel, p)
    else:
        body = build_body(head, spec)
        skel = bust_skeleton(head, eyes, spec)
        hair = build_hair(head, spec.hair_style, bust_collider(spec))
        for p in body:
            p.weights = bust_body_weights(skel, p.pos, spec)
    # everything on the head follows the Head bone (the eyeballs their eye bones): a nod carries it all
    for p in [*face_pieces, *hair, *eyeballs]:
        bone = {"eye_l": "LeftEye", "eye_r": "RightEye"}.get(p.name, "Head")
        p.weights = skel.weights(len(p.pos), {bone: 1.0})

    skin = _srgb_to_linear(spec.skin_color)
    lips = _srgb_to_linear(spec.lip_color)
    shirt = _srgb_to_linear(spec.shirt_color)
    hair_rgb = _srgb_to_linear(spec.hair_color)
    materials = {
        "skin": (skin, 0.62),
        "lips": (lips, 0.42),
        "lips_inner": (_darker(lips, 0.55), 0.5),
        "mouth": (_srgb_to_linear("#3a1216"), 0.9),
        "teeth": (_srgb_to_linear("#f3efe6"), 0.28),
        "tongue": (_srgb_to_linear("#c2545e"), 0.45),
        "sclera": (_srgb_to_linear("#f7f5f2"), 0.22),
        "iris": (_srgb_to_linear(spec.eye_color), 0.18),
        "iris_rim": (_darker(_srgb_to_linear(spec.eye_color), 0.45), 0.2),
        "pupil": (_srgb_to_linear("#0b0b0d"), 0.12),
        "highlight": ((1.0, 1.0, 1.0), 0.3),
        "lash": (_srgb_to_linear("#22160f"), 0.6),
        "brows": (_srgb_to_linear(spec.brow_color), 0.8),
        "hair": (hair_rgb, 0.5),
        "shirt": (shirt, 0.75),
        "collar": (_darker(shirt, 0.7), 0.75),
    }
    used = {str(m) for p in [*face_pieces, *eyeballs, *hair, *body] for m in np.unique(np.asarray(p.tri_mat))}
    extra = {
        "beard": (_srgb_to_linear(spec.beard_color) if spec.beard_color else hair_rgb, 0.8),
        "hair_tie": (_darker(shirt, 0.8), 0.6),
        "pants": (_srgb_to_linear(spec.pants_color), 0.8),
        "shoes": (_srgb_to_linear(spec.shoe_color), 0.55),
        "sole": (_srgb_to_linear("#2b2522"), 0.85),
    }
    materials.update({k: v for k, v in extra.items() if k in used})
    meshes = [
        MeshOut("Body", body),
        MeshOut("Face", face_pieces, targets, normal_mask),
        MeshOut("Eyes", eyeballs),
        MeshOut("Hair", hair),
    ]
    anchors = {"HeadAnchor": head.c.copy(), "MouthAnchor": frame.centre.copy()}
    return Character(name, meshes, anchors, materials, skel, "full" if spec.body == "full" else "bust")


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

    def accessor(
        self,
        arr: np.ndarray,
        *,
        target: int | None = pygltflib.ARRAY_BUFFER,
        minmax: bool = False,
        typ: str | None = None,
        normalized: bool = False,
    ) -> int:
        """An accessor over ``arr``: float32 (VEC3/SCALAR, or ``typ`` e.g. MAT4), uint8 VEC4 (joints, weights), or
        uint16/uint32 SCALAR (indices)."""
        arr = np.ascontiguousarray(arr)
        if arr.dtype == np.float32:
            ctype, kind = pygltflib.FLOAT, "VEC3" if arr.ndim == 2 else "SCALAR"
        elif arr.dtype == np.uint8:
            ctype, kind = pygltflib.UNSIGNED_BYTE, "VEC4"
        elif arr.dtype == np.uint16:
            ctype, kind = pygltflib.UNSIGNED_SHORT, "SCALAR"
        else:
            ctype, kind = pygltflib.UNSIGNED_INT, "SCALAR"
        typ = typ or kind
        bv = self.view(arr.tobytes(), target)
        acc = pygltflib.Accessor(bufferView=bv, componentType=ctype, count=len(arr), type=typ)
        if normalized:
            acc.normalized = True
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
    weights: np.ndarray | None = None  # (vertices, joints)


def _skin_attributes(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """JOINTS_0 and WEIGHTS_0 (both uint8 VEC4; the weights normalized, summing to exactly 255) of dense weights.

    The four largest influences are kept; rounding is absorbed by the largest one, so every vertex's weights sum
    to 1 exactly as three.js reads them. Unused slots point at joint 0 with weight 0, as glTF asks.
    """
    order = np.argsort(-w, axis=1, kind="stable")[:, :4]
    top = np.take_along_axis(w, order, 1)
    top = np.where(top > 1e-3, top, 0.0)
    top = top / np.maximum(top.sum(axis=1, keepdims=True), 1e-12)
    q = np.floor(top * 255.0 + 0.5).astype(np.int64)
    q[:, 0] += 255 - q.sum(axis=1)
    joints = np.where(q > 0, order, 0)
    return joints.astype(np.uint8), q.astype(np.uint8)


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
    weights = np.concatenate([p.weights for p in pieces]) if all(p.weights is not None for p in pieces) else None
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
        w = weights[used] if weights is not None else None
        out.append(_Primitive(m, pos[used], nrm_all[used], remap[t], deltas, mask[used], w))
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
            if prim.weights is not None:
                joints, weights = _skin_attributes(prim.weights)
                attrs.JOINTS_0 = w.accessor(joints)
                attrs.WEIGHTS_0 = w.accessor(weights, normalized=True)
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
        g.nodes.append(pygltflib.Node(name=mesh.name, mesh=len(g.meshes) - 1, skin=0))
        root_children.append(len(g.nodes) - 1)
    # the skeleton: translation-only joints (local = world minus the parent's world), one skin for every mesh
    sk = ch.skeleton
    first = len(g.nodes)
    for j, name in enumerate(sk.names):
        parent = sk.parents[j]
        local = sk.world[j] - (sk.world[parent] if parent >= 0 else 0.0)
        g.nodes.append(pygltflib.Node(name=name, translation=[_f32(v) for v in _q(local, _POS_GRID)]))
        if parent >= 0:
            g.nodes[first + parent].children.append(first + j)
    ibm = np.zeros((len(sk.names), 4, 4))
    ibm[:, [0, 1, 2, 3], [0, 1, 2, 3]] = 1.0
    ibm[:, 3, :3] = -sk.world  # column-major: the translation is the fourth column
    ibm_acc = w.accessor(_q(ibm.reshape(len(sk.names), 16), _POS_GRID), target=None, typ="MAT4")
    g.skins.append(
        pygltflib.Skin(
            name="Skeleton",
            joints=list(range(first, first + len(sk.names))),
            inverseBindMatrices=ibm_acc,
            skeleton=first,
        )
    )
    root_children.append(first + sk.parents.index(-1))
    # the anchors ride on the Head bone, so a nod carries them; their translations are relative to it
    head_j = sk.index("Head")
    for name, p in ch.anchors.items():
        local = p - sk.world[head_j]
        g.nodes.append(pygltflib.Node(name=name, translation=[_f32(v) for v in _q(local, _POS_GRID)]))
        g.nodes[first + head_j].children.append(len(g.nodes) - 1)
    g.nodes.append(pygltflib.Node(name=ch.name, children=root_children, extras={"framing": ch.framing}))
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


def entry_spec(entry: Mapping[str, Any]) -> CharacterSpec:
    """The generator parameters of a library entry, checked against its ``framing`` (``full`` needs
    ``body: full``, ``bust`` a bust)."""
    spec = CharacterSpec.from_mapping(entry.get("generator") or {})
    framing = entry.get("framing", "bust")
    if framing not in BODY_TYPES or (framing == "full") != (spec.body == "full"):
        raise ValueError(f"avatar {entry.get('id')!r}: framing {framing!r} does not match generator body {spec.body!r}")
    return spec


def generate_avatar(entry: Mapping[str, Any]) -> bytes:
    """The GLB bytes of one library entry."""
    return character_to_glb(build_character(str(entry.get("name") or entry["id"]), entry_spec(entry)))


def generate_library(
    out_dir: Path = LIBRARY_DIR,
    only: Sequence[str] | None = None,
    library: Path = LIBRARY_FILE,
    *,
    thumbnails: bool = True,
) -> list[Path]:
    """Write ``<id>.glb`` for every entry of the library (or just ``only``); returns the GLB paths written.

    With ``thumbnails`` (the default) each GLB gets its ``<id>.png`` (256 x 256, see
    :mod:`~avatarium_lab.avatar.thumbnail`) next to it.
    """
    from .thumbnail import write_thumbnail

    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for entry in read_library(library):
        if only and entry["id"] not in only:
            continue
        path = out_dir / f"{entry['id']}.glb"
        data = generate_avatar(entry)
        path.write_bytes(data)
        if thumbnails:
            write_thumbnail(data, out_dir / f"{entry['id']}.png", framing=str(entry.get("framing", "bust")))
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

"""Cartoon faces drawn with OpenCV whose geometry follows expression parameters.

The faces are shaded (skin gradient, eye sockets, nose shadow) so that OpenCV's
Haar frontal-face cascade finds them like real faces: the same detection and
cropping code then serves synthetic and real videos.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import cv2
import numpy as np


@dataclass
class Expression:
    """Expression geometry, each roughly in [0, 1] (``smile`` in [-1, 1])."""

    smile: float = 0.0          # mouth-corner curvature: + up (happy), - down (sad)
    mouth_open: float = 0.0     # jaw drop
    brow_raise: float = 0.0     # both brows up (surprise, fear)
    brow_furrow: float = 0.0    # inner brows down and together (anger, disgust)
    eye_open: float = 0.5       # lid aperture; 0.5 is neutral
    lip_raise: float = 0.0      # upper-lip raise / nose wrinkle (disgust)
    head_tilt: float = 0.0      # degrees / 20: tender head tilt
    asym: float = 0.0           # one-sided mouth (contempt-like)


@dataclass
class Identity:
    """Who is drawn: fixed per clip (or per actor), independent of the labels."""

    skin: tuple[int, int, int] = (150, 175, 210)   # BGR
    hair: tuple[int, int, int] = (40, 40, 60)
    width: float = 1.0
    height: float = 1.0
    eye_gap: float = 1.0
    brow_thick: int = 3
    background: tuple[int, int, int] = (90, 110, 100)
    extra: dict = field(default_factory=dict)

    @classmethod
    def random(cls, rng: np.random.Generator) -> "Identity":
        base = rng.uniform(0.55, 1.05)
        skin = np.array([125, 155, 200]) * base + rng.uniform(-8, 8, 3)
        hair = np.array([20, 35, 55]) * rng.uniform(0.4, 1.6) + rng.uniform(-8, 8, 3)
        bg = rng.uniform(30, 200, 3)
        return cls(
            skin=tuple(int(np.clip(c, 40, 245)) for c in skin),
            hair=tuple(int(np.clip(c, 5, 120)) for c in hair),
            width=float(rng.uniform(0.88, 1.1)),
            height=float(rng.uniform(0.92, 1.08)),
            eye_gap=float(rng.uniform(0.9, 1.1)),
            brow_thick=int(rng.integers(2, 5)),
            background=tuple(int(c) for c in bg),
        )


def _pt(cx, cy, x, y, c, s):
    return (int(round(cx + c * x - s * y)), int(round(cy + s * x + c * y)))


def draw_face(img: np.ndarray, center: tuple[float, float], size: float, expr: Expression,
              ident: Identity, yaw: float = 0.0) -> tuple[int, int, int, int]:
    """Draw a face of height ``size`` pixels centred at ``center``; return its box (x, y, w, h).

    ``yaw`` in [-1, 1] shifts the features sideways to mimic a head turn.
    """
    cx, cy = center
    r = size / 2.0
    ang = np.deg2rad(expr.head_tilt * 20.0)
    c, s = np.cos(ang), np.sin(ang)
    P = lambda x, y: _pt(cx, cy, x * r, y * r, c, s)  # noqa: E731  (face-local coordinates, unit = half height)
    ax = (int(r * 0.78 * ident.width), int(r * ident.height))
    deg = float(np.rad2deg(ang))
    skin = np.array(ident.skin, float)
    dark = tuple(int(v) for v in skin * 0.55)
    # hair behind head, then head with a vertical shading gradient approximated by two ellipses
    cv2.ellipse(img, P(0, -0.12), (int(ax[0] * 1.08), int(ax[1] * 1.02)), deg, 180, 360, ident.hair, -1, cv2.LINE_AA)
    cv2.ellipse(img, P(0, 0), ax, deg, 0, 360, tuple(int(v) for v in skin * 0.85), -1, cv2.LINE_AA)
    cv2.ellipse(img, P(0, -0.05), (int(ax[0] * 0.86), int(ax[1] * 0.86)), deg, 0, 360, ident.skin, -1, cv2.LINE_AA)
    dx = yaw * 0.18
    hi = tuple(int(v) for v in np.minimum(skin * 1.18 + 12, 255))
    cv2.ellipse(img, P(dx, 0.2), (int(r * 0.5), int(r * 0.22)), deg, 0, 360, hi, -1, cv2.LINE_AA)
    cv2.ellipse(img, P(dx, -0.5), (int(r * 0.45), int(r * 0.14)), deg, 0, 360, hi, -1, cv2.LINE_AA)
    gap = 0.33 * ident.eye_gap
    eye_y = -0.12
    # eye sockets (darker band: the main Haar cue), eyes, pupils
    for side in (-1, 1):
        ex = side * gap + dx
        cv2.ellipse(img, P(ex, eye_y), (int(r * 0.2), int(r * 0.12)), deg, 0, 360,
                    tuple(int(v) for v in skin * 0.5), -1, cv2.LINE_AA)
        open_ = 0.03 + 0.09 * float(np.clip(expr.eye_open, 0, 1))
        cv2.ellipse(img, P(ex, eye_y), (int(r * 0.12), max(1, int(r * open_))), deg, 0, 360, (235, 235, 235), -1, cv2.LINE_AA)
        cv2.circle(img, P(ex + dx * 0.3, eye_y), max(1, int(r * min(0.055, open_))), (30, 25, 20), -1, cv2.LINE_AA)
        # brows: raise lifts them, furrow lowers and tilts the inner end
        by = eye_y - 0.2 - 0.12 * expr.brow_raise + 0.06 * expr.brow_furrow
        inner = (side * (gap - 0.14) + dx, by + 0.08 * expr.brow_furrow - 0.03 * expr.brow_raise)
        outer = (side * (gap + 0.16) + dx, by - 0.02)
        cv2.line(img, P(*inner), P(*outer), ident.hair, ident.brow_thick + int(r / 40), cv2.LINE_AA)
    # nose: bridge highlight and shadow under the tip; disgust wrinkles it
    cv2.line(img, P(dx, -0.05), P(dx * 1.2, 0.17), tuple(int(v) for v in np.minimum(skin * 1.12, 255)), max(1, int(r * 0.05)), cv2.LINE_AA)
    cv2.ellipse(img, P(dx * 1.2, 0.22), (int(r * 0.1), int(r * 0.04)), deg, 0, 360, tuple(int(v) for v in skin * 0.7), -1, cv2.LINE_AA)
    if expr.lip_raise > 0.05:
        for k in (-1, 1):
            cv2.line(img, P(dx + k * 0.08, 0.05), P(dx + k * 0.13, 0.14), dark, max(1, int(r * 0.02 * (1 + 2 * expr.lip_raise))), cv2.LINE_AA)
    # mouth: corners move with smile and asymmetry, upper lip with lip_raise, jaw with mouth_open
    my = 0.48
    w = 0.26 + 0.06 * abs(expr.smile)
    left = (-w + dx, my - 0.12 * expr.smile - 0.06 * expr.asym)
    right = (w + dx, my - 0.12 * expr.smile + 0.06 * expr.asym)
    top = (dx, my - 0.03 - 0.07 * expr.lip_raise)
    bottom = (dx, my + 0.04 + 0.22 * expr.mouth_open + 0.04 * max(expr.smile, 0))
    pts_top = [left, ((left[0] + top[0]) / 2, top[1]), top, ((right[0] + top[0]) / 2, top[1]), right]
    pts_bot = [right, ((right[0] + bottom[0]) / 2, bottom[1]), bottom, ((left[0] + bottom[0]) / 2, bottom[1])]
    poly = np.array([P(*p) for p in pts_top + pts_bot], np.int32)
    cv2.fillPoly(img, [poly], (50, 40, 120), cv2.LINE_AA)
    if expr.mouth_open > 0.15:
        inner = np.array([P(x * 0.8, (y - my) * 0.6 + my + 0.02) for x, y in pts_top + pts_bot], np.int32)
        cv2.fillPoly(img, [inner], (25, 20, 30), cv2.LINE_AA)
    x0, y0 = cx - ax[0], cy - ax[1]
    return int(x0), int(y0), int(2 * ax[0]), int(2 * ax[1])


def background(h: int, w: int, ident: Identity, rng: np.random.Generator) -> np.ndarray:
    """A textured background: gradient + blobs, so detection is not trivially easy."""
    base = np.array(ident.background, np.float32)
    yy = np.linspace(0.75, 1.15, h, dtype=np.float32)[:, None, None]
    img = np.broadcast_to(base, (h, w, 3)) * yy
    img = np.ascontiguousarray(img)
    for _ in range(int(rng.integers(2, 6))):
        col = tuple(float(v) for v in rng.uniform(20, 230, 3))
        cv2.rectangle(img, (int(rng.integers(0, w)), int(rng.integers(0, h))),
                      (int(rng.integers(0, w)), int(rng.integers(0, h))), col, -1)
    img = cv2.GaussianBlur(img, (0, 0), 3)
    return np.clip(img, 0, 255).astype(np.uint8)


def finish(img: np.ndarray, rng: np.random.Generator, light: float = 1.0, noise: float = 4.0) -> np.ndarray:
    """Lighting gain, slight blur and sensor noise on a rendered frame."""
    out = cv2.GaussianBlur(img, (3, 3), 0).astype(np.float32) * light
    out += rng.normal(0, noise, out.shape).astype(np.float32)
    return np.clip(out, 0, 255).astype(np.uint8)

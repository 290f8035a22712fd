"""Painting primitives shared by the procedural worlds (numpy, vectorised, anti-aliased).

Images are float32 canvases ``[H, W, 3]`` in [0, 1]. Scene geometry lives in *world units*:
one unit is the image height, ``x`` grows to the right and ``y`` downwards, so a scene rendered
at any width shows the same content at the same scale (``pixel_grid``).
"""
from __future__ import annotations

import numpy as np

Colour = tuple[float, float, float]


def pixel_grid(width: int, height: int, x0: float = 0.0, row0: int = 0, rows: int | None = None
               ) -> tuple[np.ndarray, np.ndarray]:
    """World coordinates of pixel centres: ``x`` [1, W] and ``y`` [R, 1] for rows ``row0 .. row0+R``."""
    rows = height if rows is None else rows
    x = (np.arange(width, dtype=np.float64)[None, :] + 0.5) / height + x0
    y = (np.arange(row0, row0 + rows, dtype=np.float64)[:, None] + 0.5) / height
    return x, y


def hash01(*keys: np.ndarray | int) -> np.ndarray:
    """Deterministic uniform numbers in [0, 1) from integer keys (broadcast), independent of order of use."""
    h = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for k in keys:
            h = (h ^ np.asarray(k).astype(np.uint64)) * np.uint64(0xBF58476D1CE4E5B9)
            h = h ^ (h >> np.uint64(31))
            h = h * np.uint64(0x94D049BB133111EB)
            h = h ^ (h >> np.uint64(29))
    return (h >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def random_waves(rng: np.random.Generator, n: int, freq: tuple[float, float], vertical: float = 1.0) -> np.ndarray:
    """``n`` random plane waves [n, 4] = (kx, ky, phase, amplitude) with spatial frequency in ``freq``."""
    angle = rng.uniform(0, np.pi, n)
    f = rng.uniform(*freq, n) * 2 * np.pi
    amp = rng.uniform(0.5, 1.0, n)
    return np.stack([f * np.cos(angle), f * np.sin(angle) * vertical, rng.uniform(0, 2 * np.pi, n),
                     amp / amp.sum()], axis=1)


def wave_noise(x: np.ndarray, y: np.ndarray | float, waves: np.ndarray) -> np.ndarray:
    """Smooth noise in about [-1, 1]: a sum of plane waves, defined for every (x, y)."""
    x, y = np.asarray(x), np.asarray(y)
    out = np.zeros(np.broadcast_shapes(x.shape, y.shape))
    for kx, ky, phase, amp in waves:  # sin(a + b) = sin a cos b + cos a sin b: sines of rows/columns only
        a, b = kx * x + phase, ky * y
        out += (amp * np.sin(a)) * np.cos(b) + (amp * np.cos(a)) * np.sin(b)
    return out


def edge(signed_distance: np.ndarray, pixel: float) -> np.ndarray:
    """Anti-aliased coverage of a shape from its signed distance (negative inside), in [0, 1]."""
    return np.clip(0.5 - signed_distance / pixel, 0.0, 1.0)


def smoothstep(lo: float, hi: float, v: np.ndarray) -> np.ndarray:
    t = np.clip((v - lo) / (hi - lo), 0.0, 1.0)
    return t * t * (3 - 2 * t)


def paint(canvas: np.ndarray, coverage: np.ndarray, colour: Colour | np.ndarray) -> None:
    """Alpha-composite ``colour`` (RGB or per-pixel [.., 3]) over ``canvas`` in place."""
    a = coverage[..., None] if coverage.ndim == canvas.ndim - 1 else coverage
    canvas += a * (np.asarray(colour, dtype=canvas.dtype) - canvas)


def vertical_gradient(y: np.ndarray, y0: float, y1: float, top: Colour, bottom: Colour) -> np.ndarray:
    """Colour ramp [R, 1, 3] from ``top`` at ``y0`` to ``bottom`` at ``y1`` (clamped)."""
    t = np.clip((y - y0) / (y1 - y0), 0.0, 1.0)[..., None]
    return (1 - t) * np.asarray(top) + t * np.asarray(bottom)


def jitter(rng: np.random.Generator, colour: Colour, amount: float) -> Colour:
    """A colour varied by up to ``amount`` per channel (scene-to-scene variety)."""
    return tuple(float(v) for v in np.clip(np.asarray(colour) + rng.uniform(-amount, amount, 3), 0, 1))


def ellipse(canvas: np.ndarray, cx: float, cy: float, rx: float, ry: float, colour: Colour,
            outline: Colour | None = None, width: float = 1.0) -> None:
    """Paint an anti-aliased ellipse (pixel units) with an optional outline, touching only its box."""
    h, w = canvas.shape[:2]
    pad = width + 2
    r0, r1 = max(int(cy - ry - pad), 0), min(int(cy + ry + pad) + 1, h)
    c0, c1 = max(int(cx - rx - pad), 0), min(int(cx + rx + pad) + 1, w)
    if r0 >= r1 or c0 >= c1:
        return
    yy = np.arange(r0, r1)[:, None] + 0.5
    xx = np.arange(c0, c1)[None, :] + 0.5
    # distance to the boundary, approximately in pixels
    d = (np.sqrt(((xx - cx) / rx) ** 2 + ((yy - cy) / ry) ** 2) - 1.0) * min(rx, ry)
    box = canvas[r0:r1, c0:c1]
    if outline is not None:
        paint(box, edge(d - width, 1.0), outline)
    paint(box, edge(d, 1.0), colour)


def rect(canvas: np.ndarray, x0: float, y0: float, x1: float, y1: float, colour: Colour) -> None:
    """Paint an axis-aligned rectangle (pixel units, anti-aliased edges)."""
    h, w = canvas.shape[:2]
    r0, r1 = max(int(y0) - 1, 0), min(int(y1) + 2, h)
    c0, c1 = max(int(x0) - 1, 0), min(int(x1) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return
    yy = np.arange(r0, r1)[:, None] + 0.5
    xx = np.arange(c0, c1)[None, :] + 0.5
    d = np.maximum(np.maximum(x0 - xx, xx - x1), np.maximum(y0 - yy, yy - y1))
    paint(canvas[r0:r1, c0:c1], edge(d, 1.0), colour)


def triangle_up(canvas: np.ndarray, cx: float, base: float, top: float, half_width: float, colour: Colour) -> None:
    """Paint an isosceles triangle pointing up (a roof, a conifer), pixel units."""
    h, w = canvas.shape[:2]
    r0, r1 = max(int(top) - 1, 0), min(int(base) + 2, h)
    c0, c1 = max(int(cx - half_width) - 1, 0), min(int(cx + half_width) + 2, w)
    if r0 >= r1 or c0 >= c1:
        return
    yy = np.arange(r0, r1)[:, None] + 0.5
    xx = np.arange(c0, c1)[None, :] + 0.5
    hw = half_width * np.clip((yy - top) / max(base - top, 1e-6), 0, 1)
    d = np.maximum(np.abs(xx - cx) - hw, np.maximum(top - yy, yy - base))
    paint(canvas[r0:r1, c0:c1], edge(d, 1.0), colour)


def to_uint8(canvas: np.ndarray) -> np.ndarray:
    return (np.clip(canvas, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)

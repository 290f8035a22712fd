"""LHQC-like world: landscapes with captions derived from the scene parameters.

A scene is a set of parameters (``Landscape``) defined over an infinite strip of world units
(height 1, any width), so ``render(scene, 4 * H, H)`` is a real panorama whose left ``H`` columns
are the ``render(scene, H, H)`` image. A lake's water is a true mirror of everything above the
waterline (sky, sun, clouds, mountains, far bank, trees), blended with the water tint:
``water = alpha * mirror + (1 - alpha) * tint``. Time ``t`` moves clouds and ripples the water
(used by the LHQ-V-like world); LHQC scenes are still (``t = 0``, no ripple).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from nuwa.data.config import LHQCConfig
from nuwa.data.folders import Plan, Sample
from nuwa.data.worlds import paint as P
from nuwa.data.worlds import sample_rng

SKIES = ("clear", "cloudy", "sunset")
TERRAINS = ("grassland", "desert", "canyon")
WATERS = ("none", "lake")
MOUNTAINS = ("none", "distant", "layered")

SKY_COLOURS = {  # (top, near horizon)
    "clear": ((0.22, 0.42, 0.80), (0.62, 0.78, 0.95)),
    "cloudy": ((0.52, 0.55, 0.60), (0.74, 0.76, 0.79)),
    "sunset": ((0.60, 0.36, 0.42), (1.00, 0.62, 0.30)),
}
GROUND_COLOURS = {  # (far, near)
    "grassland": ((0.38, 0.62, 0.25), (0.16, 0.42, 0.12)),
    "desert": ((0.92, 0.80, 0.56), (0.82, 0.66, 0.42)),
    "canyon": ((0.78, 0.42, 0.24), (0.58, 0.26, 0.14)),
}
MOUNTAIN_COLOURS = {"grassland": (0.32, 0.42, 0.48), "desert": (0.62, 0.52, 0.42), "canyon": (0.72, 0.36, 0.20)}
TREE_COLOURS = {"grassland": (0.10, 0.32, 0.12), "desert": (0.36, 0.42, 0.20), "canyon": (0.20, 0.36, 0.15)}
TRUNK = (0.30, 0.20, 0.10)
WATER_TINT = (0.08, 0.28, 0.55)
SUN_COLOURS = {"clear": (1.0, 0.97, 0.80), "sunset": (1.0, 0.55, 0.20)}


@dataclass
class Layer:
    height: float            # world units above the horizon
    waves: np.ndarray        # ridge shape
    colour: tuple


@dataclass
class Landscape:
    attrs: dict
    horizon: float
    sky: tuple
    sun: tuple | None                # (x, y, radius, colour)
    clouds: np.ndarray
    cloud_cover: float               # threshold on the cloud noise: lower = more cloud
    cloud_colour: tuple
    cloud_speed: float               # world units per second
    layers: list[Layer]
    bank: tuple                      # (height, waves, colour) far-shore vegetation / sand strip
    ground: tuple                    # (far, near)
    ground_waves: np.ndarray
    trees: dict | None               # spacing, prob, hmin, hmax, colour, key, anchor, conifer
    lake: dict | None                # depth, amp, waves, alpha
    ripple: tuple = (0.0, 1.0, 0.0)  # (amplitude px, period rows, angular speed) for animated water
    pan: float = 0.0                 # camera speed, world units per second


def sample_attrs(rng: np.random.Generator) -> dict:
    sky = str(rng.choice(SKIES))
    return {"sky": sky, "sun": bool(sky == "sunset" or (sky == "clear" and rng.random() < 0.6)),
            "terrain": str(rng.choice(TERRAINS, p=[0.45, 0.3, 0.25])), "water": str(rng.choice(WATERS)),
            "has_trees": bool(rng.random() < 0.55), "mountains": str(rng.choice(MOUNTAINS, p=[0.3, 0.35, 0.35]))}


def caption(attrs: dict) -> str:
    """The caption of a scene, read off its attributes (paper-style)."""
    lake = attrs["water"] == "lake"
    subject = {
        ("grassland", False): "a green meadow", ("grassland", True): "a large lake surrounded by green vegetation",
        ("desert", False): "a desert landscape", ("desert", True): "a lake in a sandy desert",
        ("canyon", False): "a red rock canyon", ("canyon", True): "a lake between red canyon walls",
    }[attrs["terrain"], lake]
    extras = (["trees"] if attrs["has_trees"] else []) + {
        "none": [], "distant": ["distant mountains in the background"],
        "layered": ["layers of mountains in the background"]}[attrs["mountains"]]
    sky = {"clear": " under a clear sunny sky" if attrs["sun"] else " under a clear blue sky",
           "cloudy": " under a cloudy sky", "sunset": " at sunset"}[attrs["sky"]]
    return subject + (" with " + " and ".join(extras) if extras else "") + sky


def _shade(colour: tuple, sky: str, amount: float = 0.7) -> tuple:
    """Sunset light: darker and warmer."""
    if sky != "sunset":
        return colour
    c = np.asarray(colour) * amount * np.array([1.1, 0.9, 0.8])
    return tuple(float(v) for v in np.clip(c, 0, 1))


def sample_scene(rng: np.random.Generator, attrs: dict | None = None) -> Landscape:
    """Draw a scene; ``attrs`` fixes the categorical attributes (drawn from ``rng`` when None)."""
    a = sample_attrs(rng) if attrs is None else dict(attrs)
    sky, terrain = a["sky"], a["terrain"]
    horizon = rng.uniform(0.45, 0.6)
    top, bottom = (P.jitter(rng, c, 0.05) for c in SKY_COLOURS[sky])
    sun = None
    if a["sun"]:
        r = rng.uniform(0.04, 0.07)
        sy = horizon - rng.uniform(0.04, 0.1) if sky == "sunset" else rng.uniform(0.16 + r, horizon - 0.2)
        sun = (rng.uniform(0.15, 0.85), sy, r, SUN_COLOURS[sky])
    cloud_cover = {"clear": 0.75, "cloudy": -0.35, "sunset": 0.35}[sky]
    cloud_colour = {"clear": (0.96, 0.97, 1.0), "cloudy": (0.88, 0.88, 0.90), "sunset": (1.0, 0.72, 0.62)}[sky]
    heights = {"none": [], "distant": [rng.uniform(0.08, 0.16)],
               "layered": sorted(rng.uniform(0.1, 0.32, int(rng.integers(2, 4))), reverse=True)}[a["mountains"]]
    base = P.jitter(rng, MOUNTAIN_COLOURS[terrain], 0.05)
    layers = []
    for i, h in enumerate(heights):  # far to near: far layers fade into the sky near the horizon
        haze = 0.55 * (len(heights) - 1 - i) / max(len(heights) - 1, 1)
        colour = tuple(float(v) for v in (1 - haze) * np.asarray(base) * (1 - 0.12 * i) + haze * np.asarray(bottom))
        layers.append(Layer(float(h), P.random_waves(rng, 4, (0.4, 3.0), vertical=0.0), _shade(colour, sky)))
    far, near = (P.jitter(rng, c, 0.04) for c in GROUND_COLOURS[terrain])
    bank_colour = _shade(TREE_COLOURS[terrain] if terrain == "grassland" else far, sky, 0.8)
    trees = None
    if a["has_trees"]:
        spacing = rng.uniform(0.1, 0.22)
        trees = {"spacing": spacing, "prob": rng.uniform(0.4, 0.9), "hmin": 0.07, "hmax": rng.uniform(0.12, 0.22),
                 "colour": _shade(P.jitter(rng, TREE_COLOURS[terrain], 0.04), sky), "key": int(rng.integers(1 << 31)),
                 "anchor": int(rng.integers(0, int(1 / spacing))), "conifer": 0.6 if terrain == "grassland" else 0.0}
    lake = None
    if a["water"] == "lake":
        lake = {"depth": rng.uniform(0.14, 0.24), "amp": rng.uniform(0.01, 0.04),
                "waves": P.random_waves(rng, 3, (0.3, 1.5), vertical=0.0), "alpha": rng.uniform(0.5, 0.62)}
    return Landscape(
        attrs=a, horizon=horizon, sky=(top, bottom), sun=sun, clouds=P.random_waves(rng, 5, (1.0, 3.5), vertical=2.5),
        cloud_cover=cloud_cover, cloud_colour=_shade(cloud_colour, "clear"), cloud_speed=rng.uniform(0.01, 0.04),
        layers=layers, bank=(rng.uniform(0.01, 0.03), P.random_waves(rng, 3, (1.0, 6.0), vertical=0.0), bank_colour),
        ground=(_shade(far, sky, 0.8), _shade(near, sky, 0.8)), ground_waves=P.random_waves(rng, 4, (2.0, 8.0), 3.0),
        trees=trees, lake=lake)


def _trees(canvas: np.ndarray, s: Landscape, x: np.ndarray, y: np.ndarray, yh: float, px: float) -> None:
    t = s.trees
    if t is None:
        return
    rows = np.flatnonzero((y[:, 0] > yh - t["hmax"] - 2 * px) & (y[:, 0] < yh + px))
    if rows.size == 0:
        return
    canvas, y = canvas[rows[0]:rows[-1] + 1], y[rows[0]:rows[-1] + 1]  # only the band trees can reach
    for off in (-1, 0, 1):
        cell = np.floor(x / t["spacing"]).astype(np.int64) + off
        u = [P.hash01(t["key"], cell, k) for k in range(5)]
        present = ((u[0] < t["prob"]) | (cell == t["anchor"])).astype(np.float64)
        xc = (cell + 0.25 + 0.5 * u[1]) * t["spacing"]
        h = t["hmin"] + u[2] * (t["hmax"] - t["hmin"])
        conifer = u[3] < t["conifer"]
        dx = np.abs(x - xc)
        top = yh - h
        cone = np.maximum(dx - 0.32 * h * np.clip((y - top) / h, 0, 1), np.maximum(top - y, y - yh))
        rx, ry = 0.34 * h, 0.36 * h
        crown = (np.sqrt((dx / rx) ** 2 + ((y - (yh - 0.62 * h)) / ry) ** 2) - 1) * ry
        trunk = np.maximum(dx - 0.05 * h, np.maximum(yh - 0.35 * h - y, y - yh))
        P.paint(canvas, P.edge(trunk, px) * present * ~conifer, _shade(TRUNK, s.attrs["sky"]))
        colour = np.asarray(t["colour"]) * (0.8 + 0.4 * u[4])[..., None]
        P.paint(canvas, P.edge(np.where(conifer, cone, crown), px) * present, colour)


def upper(s: Landscape, x: np.ndarray, y: np.ndarray, yh: float, t: float, px: float) -> np.ndarray:
    """Everything above the waterline (sky, sun, clouds, mountains, far bank, trees) at (x, y)."""
    top, bottom = s.sky
    canvas = np.broadcast_to(P.vertical_gradient(y, 0.0, yh, top, bottom), (y.shape[0], x.shape[1], 3)).copy()
    if s.sun is not None:
        sx, sy, r, colour = s.sun
        d = np.sqrt((x - sx) ** 2 + (y - sy) ** 2)
        P.paint(canvas, 0.5 * np.exp(-((d / (3 * r)) ** 2)), colour)
        P.paint(canvas, P.edge(d - r, px), colour)
    n = P.wave_noise(x - s.cloud_speed * t, y, s.clouds)
    cover = P.smoothstep(s.cloud_cover, s.cloud_cover + 0.3, n) * P.smoothstep(yh - 0.02, yh - 0.2, y)
    shade = (1.0 - 0.18 * np.clip((n - s.cloud_cover) * 2, 0, 1))[..., None]
    P.paint(canvas, cover, np.asarray(s.cloud_colour) * shade)
    mesa = s.attrs["terrain"] == "canyon"
    for layer in s.layers:
        shape = P.wave_noise(x, 0.0, layer.waves)
        lift = np.clip(0.5 + 1.6 * shape, 0, 1) if mesa else 0.55 + 0.45 * shape
        ridge = yh - layer.height * lift
        depth = np.clip((y - ridge) / layer.height, 0, 1)
        strata = 1 + (0.08 * np.sin(y * 2 * np.pi * 28) if mesa else 0.0)
        colour = np.asarray(layer.colour) * ((1 - 0.25 * depth) * strata)[..., None]
        P.paint(canvas, P.edge(ridge - y, px), colour)
    height, waves, colour = s.bank
    P.paint(canvas, P.edge(yh - height * (0.6 + 0.4 * P.wave_noise(x, 0.0, waves)) - y, px), colour)
    _trees(canvas, s, x, y, yh, px)
    return canvas


def ground(s: Landscape, x: np.ndarray, y: np.ndarray, yh: float) -> np.ndarray:
    """The land below the horizon: a far-to-near gradient with a gentle texture (dunes, grass, strata)."""
    far, near = s.ground
    canvas = np.broadcast_to(P.vertical_gradient(y, yh, 1.0, far, near), (y.shape[0], x.shape[1], 3)).copy()
    texture = 1 + 0.07 * P.wave_noise(x, y, s.ground_waves)
    return canvas * texture[..., None]


def ripple(mirror: np.ndarray, amplitude: float, period: float, phase: float) -> np.ndarray:
    """Shift each mirrored row sideways by a whole number of pixels (0 amplitude: exact mirror)."""
    rows, width = mirror.shape[:2]
    shift = np.round(amplitude * np.sin(2 * np.pi * np.arange(rows) / period + phase)).astype(np.int64)
    cols = np.clip(np.arange(width)[None, :] + shift[:, None], 0, width - 1)
    return np.take_along_axis(mirror, cols[..., None], axis=1)


def render(s: Landscape, width: int, height: int, t: float = 0.0) -> np.ndarray:
    """Render the scene as uint8 [height, width, 3]; the waterline is snapped to a pixel boundary."""
    px = 1.0 / height
    r_h = int(round(s.horizon * height))
    yh = r_h / height
    x0 = s.pan * t
    r_lo = min(0, 2 * r_h - height) if s.lake else 0
    x, y = P.pixel_grid(width, height, x0, r_lo, r_h - r_lo)
    above = upper(s, x, y, yh, t, px)
    xg, yg = P.pixel_grid(width, height, x0, r_h, height - r_h)
    below = ground(s, xg, yg, yh)
    if s.lake:
        amplitude, period, speed = s.ripple
        mirror = ripple(above[::-1][: height - r_h], amplitude, period, speed * t)
        water = s.lake["alpha"] * mirror + (1 - s.lake["alpha"]) * np.asarray(WATER_TINT)
        shore = yh + s.lake["depth"] + s.lake["amp"] * P.wave_noise(xg, 0.0, s.lake["waves"])
        P.paint(below, P.edge(yg - shore, px), water)
    return P.to_uint8(np.concatenate([above[above.shape[0] - r_h:], below], axis=0))



def plan(cfg: LHQCConfig, seed: int) -> Plan:
    """Train and test scenes at ``width x height``; test_wide: the test scenes ``wide_factor`` times as wide."""
    def images(split: str, n: int, width: int) -> Iterator[Sample]:
        for i in range(n):
            s = sample_scene(sample_rng(seed, "lhqc", split, i))
            yield Sample(render(s, width, cfg.height), caption(s.attrs), s.attrs)

    wide = cfg.width * cfg.wide_factor
    return Plan(world="lhqc", source="procedural", kind="image", width=cfg.width, height=cfg.height, frames=1,
                fps=0.0, seed=seed, splits={
                    "train": (cfg.n_train, lambda: images("train", cfg.n_train, cfg.width)),
                    "test": (cfg.n_test, lambda: images("test", cfg.n_test, cfg.width)),
                    "test_wide": (cfg.n_test, lambda: images("test", cfg.n_test, wide))},
                info={"wide_width": wide})

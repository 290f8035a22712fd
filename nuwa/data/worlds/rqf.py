"""RQF-like world: one long handscroll cut into overlapping square crops (paper section 4.1).

The scroll (``height x width``, at least 32x as wide as tall) is a sequence of zones -- countryside,
village, market town, mountains -- along one continuous river that meanders the whole length.
Zones decide what stands on the banks: trees, houses, crowds of small figures, bridges over the
river, boats on it, ink-wash mountains behind. Crops of ``crop x crop`` pixels are taken every
``stride`` columns, so crop ``i``'s right ``crop - stride`` columns are crop ``i+1``'s left ones.
The last ``test_width`` columns are held out and give the test crops.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterator

import numpy as np

from nuwa.data.config import RQFConfig
from nuwa.data.folders import Plan, Sample
from nuwa.data.worlds import paint as P
from nuwa.data.worlds import sample_rng

ZONES = ("countryside", "village", "market", "mountains")
# expected objects per scroll-height of length, per zone
DENSITY = {
    "countryside": {"trees": 5.0, "houses": 0.5, "figures": 1.0, "boats": 0.3},
    "village": {"trees": 2.0, "houses": 4.0, "figures": 4.0, "boats": 0.8},
    "market": {"trees": 0.7, "houses": 7.0, "figures": 18.0, "boats": 1.5},
    "mountains": {"trees": 3.0, "houses": 0.2, "figures": 0.3, "boats": 0.2},
}
SILK = (0.88, 0.80, 0.64)
RIVER = (0.60, 0.68, 0.62)
INK = (0.25, 0.22, 0.20)
WALL = (0.80, 0.68, 0.50)
ROOF = (0.32, 0.30, 0.30)
WOOD = (0.50, 0.36, 0.22)
FOLIAGE = ((0.32, 0.42, 0.26), (0.42, 0.48, 0.28), (0.26, 0.36, 0.30))
CLOTHES = ((0.25, 0.30, 0.55), (0.70, 0.25, 0.20), (0.92, 0.90, 0.85), (0.45, 0.35, 0.25), (0.30, 0.45, 0.35))


@dataclass
class Scroll:
    pixels: np.ndarray                      # uint8 [H, W, 3]
    zones: np.ndarray                       # zone index per column [W]
    objects: dict[str, np.ndarray]          # kind -> x centres (pixels) of the objects drawn


def zone_map(rng: np.random.Generator, width: int, height: int) -> np.ndarray:
    """Zone index per column: segments 2-6 scroll-heights long, neighbours always differ."""
    zones = np.empty(width, dtype=np.int64)
    x, prev = 0, -1
    while x < width:
        length = int(rng.uniform(2, 6) * height)
        z = int(rng.choice([k for k in range(len(ZONES)) if k != prev]))
        zones[x:x + length] = z
        x, prev = x + length, z
    return zones


def river_banks(rng: np.random.Generator, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """Top and bottom row of the river per column: one continuous meandering band."""
    x = (np.arange(width) + 0.5) / height
    centre = 0.62 + 0.12 * P.wave_noise(x, 0.0, P.random_waves(rng, 4, (0.05, 0.4), vertical=0.0))
    half = 0.09 + 0.03 * P.wave_noise(x, 0.0, P.random_waves(rng, 3, (0.1, 0.6), vertical=0.0))
    return (centre - half) * height, (centre + half) * height


def place(rng: np.random.Generator, zones: np.ndarray, kind: str, height: int) -> np.ndarray:
    """Object x positions: a Poisson process whose rate follows the zone under each column."""
    rate = np.array([DENSITY[ZONES[z]][kind] for z in zones]) / height
    n = rng.poisson(rate.sum())
    return np.sort(rng.choice(len(zones), size=n, p=rate / rate.sum()) + rng.uniform(0, 1, n))


def background(rng: np.random.Generator, zones: np.ndarray, top: np.ndarray, bottom: np.ndarray,
               height: int) -> np.ndarray:
    """Aged silk, ink-wash mountains (strong in mountain zones), and the river with wave strokes."""
    width = len(zones)
    x, y = P.pixel_grid(width, height)
    canvas = np.empty((height, width, 3))
    canvas[:] = SILK
    canvas *= (1 + 0.04 * P.wave_noise(x, y, P.random_waves(rng, 4, (0.2, 2.0))))[..., None]
    strength = np.convolve((zones == ZONES.index("mountains")).astype(float), np.ones(height) / height, "same")
    for layer, (h, colour) in enumerate(((0.35, (0.62, 0.66, 0.56)), (0.25, (0.50, 0.56, 0.46)))):
        ridge = 0.42 - h * (0.5 + 0.5 * P.wave_noise(x, 0.0, P.random_waves(rng, 4, (0.3, 2.0), vertical=0.0)))
        ridge = ridge + (1 - strength) * 0.25  # mountains sink into the horizon outside their zones
        P.paint(canvas, P.edge(ridge - y, 1 / height) * (0.35 + 0.45 * strength), colour)
    rows = np.arange(height)[:, None] + 0.5
    water = P.edge(np.maximum(top[None, :] - rows, rows - bottom[None, :]), 1.0)
    strokes = (np.sin(x * 60 + np.sin(y * 40) * 2) > 0.93).astype(float) * water
    P.paint(canvas, water, RIVER)
    P.paint(canvas, 0.5 * strokes, (0.42, 0.50, 0.48))
    return canvas


def bank_row(rng: np.random.Generator, top: float, bottom: float, height: int) -> float:
    """Where an object stands: on the far bank (above the river) or the near bank (below)."""
    if rng.random() < 0.6 or bottom > height * 0.9:
        return top - rng.uniform(0.02, 0.25) * height
    return min(bottom + rng.uniform(0.06, 0.2) * height, height * 0.98)


def render_scroll(rng: np.random.Generator, width: int, height: int) -> Scroll:
    zones = zone_map(rng, width, height)
    top, bottom = river_banks(rng, width, height)
    canvas = background(rng, zones, top, bottom, height)
    s = height / 64
    objects = {kind: place(rng, zones, kind, height) for kind in ("trees", "houses", "boats", "figures")}
    bridges = np.array([c + 0.5 * n for c, n in _segments(zones) if ZONES[zones[c]] in ("village", "market")])
    for x in objects["boats"]:
        c = int(x)
        cy = (top[c] + bottom[c]) / 2 + rng.uniform(-0.3, 0.3) * (bottom[c] - top[c])
        P.ellipse(canvas, x, cy, 5 * s, 1.6 * s, WOOD, INK, 0.5)
        P.rect(canvas, x - 2 * s, cy - 3 * s, x + 1.5 * s, cy - 1 * s, WALL)
    for x in bridges:
        c = int(x)
        P.rect(canvas, x - 4 * s, top[c] - 3 * s, x + 4 * s, bottom[c] + 2 * s, WOOD)
        P.rect(canvas, x - 4 * s, top[c] - 3 * s, x - 3 * s, bottom[c] + 2 * s, INK)
        P.rect(canvas, x + 3 * s, top[c] - 3 * s, x + 4 * s, bottom[c] + 2 * s, INK)
    for x in objects["houses"]:
        c = int(x)
        base = bank_row(rng, top[c], bottom[c], height)
        w, h = rng.uniform(4, 7) * s, rng.uniform(3, 5) * s
        P.rect(canvas, x - w, base - h, x + w, base, P.jitter(rng, WALL, 0.05))
        P.triangle_up(canvas, x, base - h + 0.5 * s, base - h - rng.uniform(2.5, 4) * s, w + 1.5 * s, ROOF)
        P.rect(canvas, x - 0.8 * s, base - 2.2 * s, x + 0.8 * s, base, INK)
    for x in objects["trees"]:
        c = int(x)
        base = bank_row(rng, top[c], bottom[c], height)
        h = rng.uniform(6, 11) * s
        P.rect(canvas, x - 0.6 * s, base - 0.5 * h, x + 0.6 * s, base, WOOD)
        P.ellipse(canvas, x, base - 0.65 * h, 0.3 * h, 0.35 * h, FOLIAGE[int(rng.integers(len(FOLIAGE)))], INK, 0.4)
    walkers = np.concatenate([objects["figures"], np.repeat(bridges, 3) + rng.uniform(-3, 3, 3 * len(bridges)) * s])
    for x in walkers:
        c = min(int(x), width - 1)
        on_bridge = bool(np.any(np.abs(bridges - x) < 4 * s))
        base = rng.uniform(top[c], bottom[c]) if on_bridge else bank_row(rng, top[c], bottom[c], height)
        P.ellipse(canvas, x, base - 1.5 * s, 0.9 * s, 1.5 * s, CLOTHES[int(rng.integers(len(CLOTHES)))])
        P.ellipse(canvas, x, base - 3.5 * s, 0.7 * s, 0.7 * s, (0.85, 0.70, 0.55))
    objects["bridges"] = bridges
    objects["figures"] = walkers
    return Scroll(P.to_uint8(canvas), zones, objects)


def _segments(zones: np.ndarray) -> list[tuple[int, int]]:
    """(start column, length) of each zone segment."""
    starts = np.flatnonzero(np.diff(zones, prepend=-1))
    return [(int(a), int(b - a)) for a, b in zip(starts, np.append(starts[1:], len(zones)))]


def crop_attrs(scroll: Scroll, x0: int, size: int) -> dict:
    """Categorical attributes of the crop covering columns ``x0 .. x0 + size``."""
    def count(kind: str) -> int:
        xs = scroll.objects[kind]
        return int(np.sum((xs >= x0) & (xs < x0 + size)))

    zone = ZONES[int(np.bincount(scroll.zones[x0:x0 + size], minlength=len(ZONES)).argmax())]
    return {"zone": zone, "has_houses": count("houses") > 0, "has_bridge": count("bridges") > 0,
            "has_crowd": count("figures") >= 5, "has_trees": count("trees") > 0, "has_boats": count("boats") > 0}


def crop_starts(x_from: int, x_to: int, crop: int, stride: int) -> list[int]:
    """Left columns of the crops that fit in ``[x_from, x_to)``, every ``stride`` columns."""
    return list(range(x_from, x_to - crop + 1, stride))


def plan(cfg: RQFConfig, seed: int) -> Plan:
    cache: dict[str, Scroll] = {}

    def scroll() -> Scroll:
        if "scroll" not in cache:
            cache["scroll"] = render_scroll(sample_rng(seed, "rqf", "scroll", 0), cfg.width, cfg.height)
        return cache["scroll"]

    cut = cfg.width - cfg.test_width
    ranges = {"train": (0, cut), "test": (cut, cfg.width)}

    def crops(split: str) -> Iterator[Sample]:
        sc = scroll()
        for x0 in crop_starts(*ranges[split], cfg.crop, cfg.stride):
            yield Sample(np.ascontiguousarray(sc.pixels[:, x0:x0 + cfg.crop]), "", crop_attrs(sc, x0, cfg.crop))

    return Plan(world="rqf", source="procedural", kind="image", width=cfg.crop, height=cfg.height, frames=1, fps=0.0,
                seed=seed, splits={k: (len(crop_starts(*r, cfg.crop, cfg.stride)), lambda k=k: crops(k))
                                   for k, r in ranges.items()},
                extras={"scroll.png": lambda: scroll().pixels},
                info={"scroll_width": cfg.width, "stride": cfg.stride, "test_from": cut})

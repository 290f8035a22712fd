"""PeppaPig-like world: cartoon clips of simple characters doing captioned actions.

Flat colours with dark outlines. A character (pig, sheep, rabbit, elephant) stands on a rounded
hill and jumps, walks left or right, or waves; the weather is sunny or rainy (rain streaks move
between frames) and there may be a muddy puddle. The caption is read off the attributes:
"a pink pig jumps in a muddy puddle on a green hill".
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from nuwa.data.config import VideoConfig
from nuwa.data.folders import Plan, Sample
from nuwa.data.worlds import paint as P
from nuwa.data.worlds import sample_rng

CHARACTERS = {  # skin, clothes, ears (shape) and nose (shape)
    "pig": {"name": "pink pig", "skin": (1.0, 0.68, 0.76), "ears": "pointed", "nose": "snout"},
    "sheep": {"name": "white sheep", "skin": (0.97, 0.96, 0.93), "ears": "round", "nose": "none"},
    "rabbit": {"name": "brown rabbit", "skin": (0.72, 0.52, 0.36), "ears": "long", "nose": "none"},
    "elephant": {"name": "grey elephant", "skin": (0.62, 0.66, 0.78), "ears": "big", "nose": "trunk"},
}
ACTIONS = {"jumps": "jumps", "walks_left": "walks to the left", "walks_right": "walks to the right",
           "waves": "waves hello"}
HILLS = {"green": (0.45, 0.78, 0.30), "yellow": (0.92, 0.82, 0.35)}
SKIES = {"sunny": (0.55, 0.80, 1.0), "rainy": (0.62, 0.66, 0.72)}
CLOTHES = ((0.85, 0.18, 0.18), (0.20, 0.40, 0.85), (0.95, 0.60, 0.10), (0.55, 0.25, 0.70))
INK = (0.12, 0.08, 0.08)
MUD = (0.50, 0.33, 0.18)


def sample_attrs(rng: np.random.Generator) -> dict:
    return {"character": str(rng.choice(list(CHARACTERS))), "action": str(rng.choice(list(ACTIONS))),
            "hill": str(rng.choice(list(HILLS))), "weather": str(rng.choice(list(SKIES), p=[0.7, 0.3])),
            "puddle": bool(rng.random() < 0.35)}


def caption(attrs: dict) -> str:
    who = CHARACTERS[attrs["character"]]["name"]
    where = (" in a muddy puddle" if attrs["puddle"] else "") + f" on a {attrs['hill']} hill"
    return f"a {who} {ACTIONS[attrs['action']]}{where}" + (" in the rain" if attrs["weather"] == "rainy" else "")


def hill_top(x: np.ndarray | float, width: int, height: int, centre: float) -> np.ndarray | float:
    """Row of the hill's surface at column ``x`` (an ellipse rising from the bottom)."""
    rx, ry, cy = 1.1 * width, 0.42 * height, 1.05 * height
    return cy - ry * np.sqrt(np.clip(1 - ((np.asarray(x) - centre) / rx) ** 2, 0, 1))


def draw_character(canvas: np.ndarray, kind: str, x: float, feet: float, s: float, facing: int,
                   clothes: tuple, step: int, arm: float) -> None:
    """Draw a character standing with its feet at row ``feet``; ``s`` = pixels per unit size."""
    c = CHARACTERS[kind]
    skin = c["skin"]
    for dx in (-2.5, 2.5):  # legs: alternate their length on a walking step
        lift = 1.2 * s if (step % 2) == (dx > 0) and step >= 0 else 0.0
        P.rect(canvas, x + dx * s - 0.6 * s, feet - 5 * s, x + dx * s + 0.6 * s, feet - lift, INK)
    body_cy = feet - 9 * s
    P.ellipse(canvas, x, body_cy, 6 * s, 5.5 * s, clothes, INK, 0.8)
    hx, hy = x + facing * 3 * s, body_cy - 8 * s
    ear_x = hx - facing * 1.5 * s
    if c["ears"] == "long":
        P.ellipse(canvas, ear_x, hy - 7 * s, 1.3 * s, 4.5 * s, skin, INK, 0.8)
    elif c["ears"] == "big":
        P.ellipse(canvas, hx - facing * 3.5 * s, hy + 0.5 * s, 3 * s, 4 * s, skin, INK, 0.8)
    elif c["ears"] == "pointed":
        P.triangle_up(canvas, ear_x, hy - 3 * s, hy - 7 * s, 1.5 * s, skin)
    P.ellipse(canvas, hx, hy, 5 * s, 4.5 * s, skin, INK, 0.8)
    if c["ears"] == "round":
        P.ellipse(canvas, ear_x, hy - 4 * s, 1.8 * s, 1.4 * s, skin, INK, 0.8)
    if c["nose"] == "snout":
        P.ellipse(canvas, hx + facing * 5 * s, hy - 0.5 * s, 1.4 * s, 2 * s, skin, INK, 0.6)
    elif c["nose"] == "trunk":
        P.rect(canvas, min(hx + facing * 3 * s, hx + facing * 8 * s), hy, max(hx + facing * 3 * s, hx + facing * 8 * s),
               hy + 1.6 * s, skin)
    P.ellipse(canvas, hx + facing * 1.8 * s, hy - 1.2 * s, 0.7 * s, 0.7 * s, INK)
    P.ellipse(canvas, x + facing * 5.5 * s, body_cy - 1.5 * s - arm * s, 1.1 * s, 1.1 * s, skin, INK, 0.6)


def render_clip(attrs: dict, rng: np.random.Generator, width: int, height: int, frames: int) -> np.ndarray:
    """Render ``frames`` frames [F, H, W, 3] of the action described by ``attrs``."""
    s = height / 64
    centre = rng.uniform(0.3, 0.7) * width
    start = rng.uniform(0.35, 0.65) * width
    speed = rng.uniform(2.5, 4.0) * s
    clothes = CLOTHES[int(rng.integers(len(CLOTHES)))]
    sun = (rng.uniform(0.1, 0.9) * width, rng.uniform(0.1, 0.25) * height)
    hill = P.jitter(rng, HILLS[attrs["hill"]], 0.04)
    sky = P.jitter(rng, SKIES[attrs["weather"]], 0.03)
    action = attrs["action"]
    yy, xx = np.mgrid[0:height, 0:width]
    background = np.empty((height, width, 3))
    background[:] = sky
    if attrs["weather"] == "sunny":
        P.ellipse(background, *sun, 5 * s, 5 * s, (1.0, 0.9, 0.3))
    surface = hill_top(xx + 0.5, width, height, centre)
    P.paint(background, P.edge(surface - (yy + 0.5), 1.0), hill)
    if attrs["puddle"]:
        P.ellipse(background, start, hill_top(start, width, height, centre) + 2 * s, 12 * s, 2.5 * s, MUD)
    out = []
    for f in range(frames):
        canvas = background.copy()
        phase = f / max(frames - 1, 1)
        x = start + {"walks_left": -1, "walks_right": 1}.get(action, 0) * speed * (f - (frames - 1) / 2)
        facing = -1 if action == "walks_left" else 1
        lift = 8 * s * np.sin(np.pi * phase * 2) ** 2 if action == "jumps" else 0.0
        feet = hill_top(x, width, height, centre) + 2 * s - lift
        step = f if action.startswith("walks") else -1
        arm = 3.0 * (f % 2) + 1.0 if action == "waves" else 0.0
        draw_character(canvas, attrs["character"], x, feet, s, facing, clothes, step, arm)
        if attrs["weather"] == "rainy":
            streak = ((xx + 2 * yy - 3 * f) % 11 == 0) & ((3 * xx + f) % 7 < 2)
            P.paint(canvas, 0.6 * streak, (0.85, 0.9, 1.0))
        out.append(P.to_uint8(canvas))
    return np.stack(out)


def plan(cfg: VideoConfig, seed: int) -> Plan:
    def clips(split: str, n: int) -> Iterator[Sample]:
        for i in range(n):
            rng = sample_rng(seed, "peppa", split, i)
            attrs = sample_attrs(rng)
            yield Sample(render_clip(attrs, rng, cfg.width, cfg.height, cfg.frames), caption(attrs), attrs)

    return Plan(world="peppa", source="procedural", kind="video", width=cfg.width, height=cfg.height,
                frames=cfg.frames, fps=cfg.fps, seed=seed,
                splits={"train": (cfg.n_train, lambda: clips("train", cfg.n_train)),
                        "test": (cfg.n_test, lambda: clips("test", cfg.n_test))})

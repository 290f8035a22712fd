"""LHQ-V-like world: landscape clips with motion and no text.

Each clip is an LHQC scene set in motion: clouds drift, lake water ripples (the mirrored rows shift
sideways by whole pixels) and the camera pans slowly left or right (or holds still). Frame ``f`` is
the scene at time ``f / fps`` seconds.
"""
from __future__ import annotations

import dataclasses
from typing import Iterator

import numpy as np

from nuwa.data.config import VideoConfig
from nuwa.data.folders import Plan, Sample
from nuwa.data.worlds import lhqc, sample_rng

PANS = ("none", "left", "right")


def sample_clip(rng: np.random.Generator, height: int) -> lhqc.Landscape:
    """An LHQC scene with motion; ``attrs`` gains ``pan``."""
    scene = lhqc.sample_scene(rng)
    pan = str(rng.choice(PANS))
    speed = {"none": 0.0, "left": -1.0, "right": 1.0}[pan] * rng.uniform(0.06, 0.12)
    ripple = (max(1.0, height / 64), rng.uniform(3.0, 6.0), 2 * np.pi * rng.uniform(0.8, 1.6))
    return dataclasses.replace(scene, attrs={**scene.attrs, "pan": pan}, pan=speed, ripple=ripple,
                               cloud_speed=rng.uniform(0.05, 0.12) * rng.choice([-1.0, 1.0]))


def render_clip(scene: lhqc.Landscape, width: int, height: int, frames: int, fps: float) -> np.ndarray:
    return np.stack([lhqc.render(scene, width, height, t=f / fps) for f in range(frames)])


def plan(cfg: VideoConfig, seed: int) -> Plan:
    def clips(split: str, n: int) -> Iterator[Sample]:
        for i in range(n):
            scene = sample_clip(sample_rng(seed, "lhqv", split, i), cfg.height)
            yield Sample(render_clip(scene, cfg.width, cfg.height, cfg.frames, cfg.fps), "", scene.attrs)

    return Plan(world="lhqv", source="procedural", kind="video", width=cfg.width, height=cfg.height,
                frames=cfg.frames, fps=cfg.fps, seed=seed,
                splits={"train": (cfg.n_train, lambda: clips("train", cfg.n_train)),
                        "test": (cfg.n_test, lambda: clips("test", cfg.n_test))})

"""The ``data:`` config section: one entry per paper dataset, procedural or a real folder.

``source: procedural`` renders the embedded world from the top-level ``seed``; ``source: folder``
imports real data from the configured paths into the same layout (nuwa/data/adapters.py).
Defaults are the embedded scale (64x64 images, 5-frame clips).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from nuwa.core.config import build, section
from nuwa.core.errors import UserError

Source = Literal["procedural", "folder"]


def _positive(**values: float) -> None:
    """Raise ValueError (``build`` turns it into a one-line UserError naming the section)."""
    for key, value in values.items():
        if value <= 0:
            raise ValueError(f"{key}={value!r} must be positive")


def _box(box: list[int]) -> None:
    if box and (len(box) != 4 or box[0] < 0 or box[1] < 0 or box[2] <= box[0] or box[3] <= box[1]):
        raise ValueError(f"box={box!r} must be [left, top, right, bottom] with left < right, top < bottom, "
                         "all >= 0 (or [] for the whole image)")


@dataclass
class LHQCConfig:
    source: Source = "procedural"
    width: int = 64
    height: int = 64
    n_train: int = 2000           # procedural: training scenes
    n_test: int = 256             # test scenes; folder: test images drawn when the captions have no "split"
    wide_factor: int = 4          # test_wide: the test scenes rendered this many times as wide
    root: str = ""                # folder: LHQ images
    captions: str = ""            # folder: captions file (.jsonl {"file","caption"[,"split"]} or .tsv)
    wide_root: str = ""           # folder: optional real panoramas for test_wide ("" = none)
    skip_bad: bool = False        # folder: skip (and count) unreadable or too-small files instead of stopping
    upscale: bool = False         # folder: upscale (Lanczos) inputs smaller than width x height instead of refusing

    def __post_init__(self) -> None:
        _positive(width=self.width, height=self.height, n_train=self.n_train,
                  n_test=self.n_test, wide_factor=self.wide_factor)


@dataclass
class RQFConfig:
    source: Source = "procedural"
    height: int = 64              # the scroll is resized to this height (paper: 2048)
    width: int = 4096             # procedural scroll width (>= 32 x height); a real image keeps its aspect
    crop: int = 64                # square crop side (paper: 2048)
    stride: int = 32              # crop stride: crops overlap by crop - stride
    test_width: int = 512         # the scroll's last test_width columns give the test crops
    image: str = ""               # folder: the long scroll image
    box: list[int] = field(default_factory=list)  # folder: [left, top, right, bottom] of the image to use ([] = all)
    upscale: bool = False         # folder: allow a scroll (or box) less than `height` px tall to be upscaled

    def __post_init__(self) -> None:
        _positive(height=self.height, width=self.width, crop=self.crop, stride=self.stride,
                  test_width=self.test_width)
        _box(self.box)
        if self.crop != self.height:
            raise ValueError(f"crop={self.crop} must equal height={self.height} "
                             "(crops are squares cut from the full-height scroll)")
        if self.stride > self.crop:
            raise ValueError(f"stride={self.stride} > crop={self.crop} would leave gaps between crops")
        if self.test_width < self.crop:
            raise ValueError(f"test_width={self.test_width} must be >= crop={self.crop}")
        if self.source == "procedural" and self.width < 32 * self.height:
            raise ValueError(f"width={self.width} must be >= 32 x height={32 * self.height} (a long scroll)")


@dataclass
class VideoConfig:
    source: Source = "procedural"
    width: int = 64
    height: int = 64
    frames: int = 5               # clip length (paper: 5 frames at 5 fps)
    fps: float = 5.0
    n_train: int = 400            # procedural: training clips
    n_test: int = 64              # test clips; folder: test videos drawn when the captions have no "split"
    root: str = ""                # folder: video files (read by imageio) or folders of frames
    captions: str = ""            # folder: captions file (required for text worlds)
    source_fps: float = 25.0      # folder: frame rate of frame folders (video files carry their own)
    clips_per_video: int = 1      # folder: consecutive clips cut from each video (or manifest line)
    skip_bad: bool = False        # folder: skip (and name) unreadable or too-short videos instead of stopping
    upscale: bool = False         # folder: upscale frames smaller than width x height instead of refusing

    def __post_init__(self) -> None:
        _positive(width=self.width, height=self.height, frames=self.frames, fps=self.fps,
                  n_train=self.n_train, n_test=self.n_test, source_fps=self.source_fps,
                  clips_per_video=self.clips_per_video)


@dataclass
class DataConfig:
    lhqc: LHQCConfig = field(default_factory=LHQCConfig)
    rqf: RQFConfig = field(default_factory=RQFConfig)
    lhqv: VideoConfig = field(default_factory=VideoConfig)
    peppa: VideoConfig = field(default_factory=VideoConfig)


WORLDS = ("lhqc", "rqf", "lhqv", "peppa")


def data_config(cfg: dict) -> DataConfig:
    return build(DataConfig, section(cfg, "data"), "data")


def world_config(cfg: dict, world: str) -> LHQCConfig | RQFConfig | VideoConfig:
    if world not in WORLDS:
        raise UserError(f"unknown world {world!r}; choose one of {', '.join(WORLDS)}")
    return getattr(data_config(cfg), world)


def check_config(cfg: dict) -> None:
    """Build every dataclass of the ``data:`` section; raise UserError on a bad value."""
    data_config(cfg)
    if not isinstance(cfg.get("seed", 0), int) or isinstance(cfg.get("seed", 0), bool):
        raise UserError(f"bad config value at seed: {cfg.get('seed')!r} must be an integer")

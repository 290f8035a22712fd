"""Reading user images and aligning them to the patch grid (outpainting and animation inputs).

The alignment unit is one patch in pixels, ``u = f * m`` (VQGAN factor times patch side in
tokens), so every input covers whole patches and the known region is a rectangle of patches.

The rule, for an input image of any size ``W x H`` and a canvas of ``width x height`` (both
multiples of ``u``):

* Images smaller than one patch (``W < u`` or ``H < u``) are refused: they hold less than one
  patch of content and would only be blown up.
* **Outpainting** keeps the input's aspect ratio and scales it so that it spans the canvas across
  the direction of extension: for ``right``/``left`` its height becomes the canvas height, for
  ``down``/``up`` its width becomes the canvas width; for ``around`` it becomes as large as fits
  with at least one patch of margin on every side. ``input_height`` (a multiple of ``u``) sets the
  height instead. The other side is rounded to the nearest multiple of ``u`` (at least ``u``), so
  the aspect ratio changes by at most half a patch. The input is then placed at the side opposite
  to the extension (``right`` -> at the left edge, ``left`` -> right edge, ``down`` -> top,
  ``up`` -> bottom, ``around`` -> centre) and centred along the other axis, positions snapped down
  to the patch grid. A canvas that leaves nothing to generate in the asked direction is refused.
* **Animation** scales the input (aspect ratio kept) to cover the canvas and centre-crops it, so the
  first frame is exactly the canvas.

For the dataset case (``--data``), the known part of a test image is its half opposite to the
extension (the left half for ``right``, as in the paper's 4.4.4) or its central half for
``around``; it is then placed by the same rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

import torch
import torch.nn.functional as F

from nuwa.core.errors import UserError
from nuwa.core.io import read_rgb, require_file

Direction = Literal["right", "left", "down", "up", "around"]
DIRECTIONS: tuple[str, ...] = get_args(Direction)


@dataclass(frozen=True)
class Box:
    """A rectangle on the canvas, in pixels."""

    top: int
    left: int
    height: int
    width: int

    def token_mask(self, canvas: tuple[int, int], factor: int) -> torch.Tensor:
        """Bool[h, w] over the canvas token grid, True inside the box."""
        mask = torch.zeros(canvas[0] // factor, canvas[1] // factor, dtype=torch.bool)
        mask[self.top // factor:(self.top + self.height) // factor,
             self.left // factor:(self.left + self.width) // factor] = True
        return mask


def read_image(path: str | Path) -> torch.Tensor:
    """float[3, H, W] in [-1, 1] from any image file PIL reads; one line if it cannot."""
    p = require_file(path, "input image")
    return read_rgb(p, "input image", "pass a PNG or JPEG file").float() / 127.5 - 1.0


def check_unit(image: torch.Tensor, unit: int, what: str) -> None:
    """Refuse images smaller than one patch."""
    h, w = image.shape[-2:]
    if h < unit or w < unit:
        raise UserError(f"{what} is {w}x{h} pixels, smaller than one patch ({unit}x{unit}); use a larger image")


def check_canvas(width: int, height: int, unit: int) -> None:
    for name, value in (("--width", width), ("--height", height)):
        if value < unit or value % unit:
            raise UserError(f"{name} {value} is not a positive multiple of the patch size {unit} pixels (f*m); "
                            f"use e.g. {max(unit, round(value / unit) * unit)}")


def resize(image: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """Bicubic, antialiased resize of float[3, H, W] in [-1, 1]."""
    if tuple(image.shape[-2:]) == (height, width):
        return image
    out = F.interpolate(image[None], size=(height, width), mode="bicubic", antialias=True, align_corners=False)
    return out[0].clamp(-1.0, 1.0)


def _round_unit(x: float, unit: int) -> int:
    return max(unit, round(x / unit) * unit)


def _floor_unit(x: float, unit: int) -> int:
    return math.floor(x / unit) * unit


def outpaint_size(size: tuple[int, int], canvas: tuple[int, int], direction: str, unit: int,
                  input_height: int | None = None) -> tuple[int, int]:
    """(height, width) the input is scaled to, per the module's rule."""
    h, w = size
    ch, cw = canvas
    if input_height is not None:
        if input_height < unit or input_height % unit:
            raise UserError(f"--input-height {input_height} is not a positive multiple of the patch size {unit}")
        return input_height, _round_unit(w * input_height / h, unit)
    if direction in ("right", "left"):
        return ch, _round_unit(w * ch / h, unit)
    if direction in ("down", "up"):
        return _round_unit(h * cw / w, unit), cw
    scale = min((ch - 2 * unit) / h, (cw - 2 * unit) / w)
    sh, sw = _floor_unit(h * scale, unit), _floor_unit(w * scale, unit)
    if min(sh, sw) < unit:
        raise UserError(f"canvas {cw}x{ch} is too small to extend around an input (needs one patch of {unit} pixels "
                        f"on every side plus the input); pass a larger --width/--height")
    return sh, sw


def place(size: tuple[int, int], canvas: tuple[int, int], direction: str, unit: int,
          input_height: int | None = None) -> Box:
    """Where the scaled input sits on the canvas for outpainting towards ``direction``."""
    if direction not in DIRECTIONS:
        raise UserError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    ch, cw = canvas
    h, w = outpaint_size(size, canvas, direction, unit, input_height)
    margin = unit if direction == "around" else 0
    room = {"right": cw - w, "left": cw - w, "down": ch - h, "up": ch - h, "around": min(cw - w, ch - h) - margin}
    if h > ch or w > cw or room[direction] < max(margin, 1):
        raise UserError(f"canvas {cw}x{ch} is smaller than or equal to the input scaled to {w}x{h} in the {direction} "
                        f"direction, so nothing is left to generate; pass a larger --width/--height")
    centre_top, centre_left = _floor_unit((ch - h) / 2, unit), _floor_unit((cw - w) / 2, unit)
    top = {"down": 0, "up": ch - h}.get(direction, centre_top)
    left = {"right": 0, "left": cw - w}.get(direction, centre_left)
    return Box(top, left, h, w)


def known_part(image: torch.Tensor, direction: str) -> torch.Tensor:
    """The part of a full test image that is given: the half opposite to ``direction`` (centre for around)."""
    h, w = image.shape[-2:]
    parts = {"right": image[..., :, : w // 2], "left": image[..., :, w - w // 2:],
             "down": image[..., : h // 2, :], "up": image[..., h - h // 2:, :],
             "around": image[..., h // 4: h - h // 4, w // 4: w - w // 4]}
    if direction not in parts:
        raise UserError(f"unknown direction {direction!r}; choose one of {', '.join(DIRECTIONS)}")
    return parts[direction]


def outpaint_input(image: torch.Tensor, canvas: tuple[int, int], direction: str, unit: int,
                   input_height: int | None = None) -> tuple[torch.Tensor, Box]:
    """The input scaled per the rule (float[3, h, w]) and its box on the canvas."""
    check_unit(image, unit, "input image")
    box = place(tuple(image.shape[-2:]), canvas, direction, unit, input_height)
    return resize(image, box.height, box.width), box


def cover(image: torch.Tensor, canvas: tuple[int, int], unit: int) -> torch.Tensor:
    """Scale ``image`` (aspect kept) to cover the canvas and centre-crop it to exactly the canvas."""
    check_unit(image, unit, "input image")
    h, w = image.shape[-2:]
    ch, cw = canvas
    scale = max(ch / h, cw / w)
    sh, sw = max(ch, math.ceil(h * scale)), max(cw, math.ceil(w * scale))
    scaled = resize(image, sh, sw)
    top, left = (sh - ch) // 2, (sw - cw) // 2
    return scaled[:, top:top + ch, left:left + cw]

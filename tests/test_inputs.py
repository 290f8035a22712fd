"""The rule that aligns user images of any size to the patch grid (nuwa/inputs.py, docs/cli.md)."""
from __future__ import annotations

import pytest
import torch

from nuwa.commands.inputs import Box, check_canvas, cover, known_part, outpaint_input, place, read_image
from nuwa.core.errors import UserError

U = 32  # f=8, m=4


@pytest.mark.parametrize("direction, canvas, box", [
    ("right", (64, 256), Box(0, 0, 64, 96)),      # spans the height, 300x200 -> 96x64 (aspect 1.5 kept)
    ("left", (64, 256), Box(0, 160, 64, 96)),     # same size, at the right edge
    ("down", (256, 96), Box(0, 0, 64, 96)),       # spans the width, at the top
    ("up", (256, 96), Box(192, 0, 64, 96)),       # at the bottom
    ("around", (256, 256), Box(64, 32, 128, 192)),  # largest fit with one patch margin, centred on the grid
])
def test_place_by_direction(direction, canvas, box):
    assert place((200, 300), canvas, direction, U) == box


def test_other_side_rounds_to_the_nearest_patch():
    # 100x70 scaled to height 64 is 91.4 wide -> 96 (nearest multiple of 32); 40x70 -> 36.6 -> 32 (at least one patch)
    assert place((70, 100), (64, 256), "right", U).width == 96
    assert place((70, 40), (64, 256), "right", U).width == 32


def test_input_height_sets_the_scale_and_centres_on_the_grid():
    box = place((100, 100), (192, 256), "right", U, input_height=64)
    assert (box.height, box.width, box.left) == (64, 64, 0)
    assert box.top == 64 and box.top % U == 0


@pytest.mark.parametrize("direction, canvas", [
    ("right", (64, 96)),      # input already spans the whole width -> nothing to generate
    ("down", (64, 96)),
    ("around", (96, 96)),     # no room for a patch of margin on every side plus the input
    ("right", (64, 64)),      # a wide input does not fit at all
])
def test_canvas_smaller_than_input_is_refused(direction, canvas):
    with pytest.raises(UserError, match="larger --width/--height"):
        place((200, 300), canvas, direction, U)


def test_unknown_direction_and_bad_input_height():
    with pytest.raises(UserError, match="unknown direction 'sideways'"):
        place((64, 64), (64, 128), "sideways", U)
    with pytest.raises(UserError, match="--input-height 50"):
        place((64, 64), (64, 128), "right", U, input_height=50)


def test_image_smaller_than_one_patch_is_refused():
    with pytest.raises(UserError, match="smaller than one patch"):
        outpaint_input(torch.zeros(3, 20, 300), (64, 256), "right", U)
    with pytest.raises(UserError, match="smaller than one patch"):
        cover(torch.zeros(3, 64, 31), (64, 64), U)


def test_outpaint_input_is_resized_to_its_box():
    img = torch.rand(3, 50, 75) * 2 - 1
    scaled, box = outpaint_input(img, (64, 256), "right", U)
    assert scaled.shape == (3, box.height, box.width) == (3, 64, 96)
    assert scaled.min() >= -1 and scaled.max() <= 1


def test_box_token_mask():
    mask = Box(32, 0, 32, 64).token_mask((64, 128), 8)
    assert mask.shape == (8, 16) and mask.sum() == 4 * 8
    assert mask[4:, :8].all() and not mask[:4].any() and not mask[:, 8:].any()


def test_known_part_is_the_half_opposite_to_the_direction():
    img = torch.arange(16.0).reshape(1, 4, 4).expand(3, 4, 4)
    assert torch.equal(known_part(img, "right"), img[:, :, :2])
    assert torch.equal(known_part(img, "left"), img[:, :, 2:])
    assert torch.equal(known_part(img, "down"), img[:, :2])
    assert torch.equal(known_part(img, "up"), img[:, 2:])
    assert torch.equal(known_part(img, "around"), img[:, 1:3, 1:3])


def test_cover_fills_the_canvas_and_keeps_the_centre():
    img = torch.zeros(3, 64, 192)
    img[:, :, 64:128] = 1.0                     # a bright centre third
    out = cover(img, (32, 32), U)               # scaled to 32x96, centre crop 32x32 = the bright part
    assert out.shape == (3, 32, 32)
    assert out[:, :, 4:28].min() > 0.9


def test_check_canvas():
    check_canvas(64, 96, U)
    with pytest.raises(UserError, match="--width 100 is not a positive multiple of the patch size 32"):
        check_canvas(100, 64, U)


def test_read_image(tmp_path):
    from PIL import Image

    Image.new("RGB", (5, 3), (255, 0, 0)).save(tmp_path / "red.png")
    img = read_image(tmp_path / "red.png")
    assert img.shape == (3, 3, 5) and img[0].min() == 1.0 and img[1].max() == -1.0
    (tmp_path / "bad.png").write_bytes(b"not an image")
    with pytest.raises(UserError, match="not a readable image"):
        read_image(tmp_path / "bad.png")
    with pytest.raises(UserError, match="input image not found"):
        read_image(tmp_path / "missing.png")

"""ADC.split orders, the composed outpainting plan, and ADC.emb's two feeding positions."""
from __future__ import annotations

import pytest
import torch

from nuwa.core.errors import UserError
from nuwa.model import adc


def coords(patches):
    return [(p.f, p.r, p.c) for p in patches]


def test_orders_follow_their_writing_direction():
    grid = (1, 2, 3)
    assert coords(adc.split(grid, "omega")) == [(0, 0, 0), (0, 1, 0), (0, 0, 1), (0, 1, 1), (0, 0, 2), (0, 1, 2)]
    assert coords(adc.split(grid, "omega*")) == [(0, 0, 2), (0, 1, 2), (0, 0, 1), (0, 1, 1), (0, 0, 0), (0, 1, 0)]
    assert coords(adc.split(grid, "zeta")) == [(0, 0, 0), (0, 0, 1), (0, 0, 2), (0, 1, 0), (0, 1, 1), (0, 1, 2)]
    assert coords(adc.split(grid, "zeta*")) == [(0, 1, 0), (0, 1, 1), (0, 1, 2), (0, 0, 0), (0, 0, 1), (0, 0, 2)]


@pytest.mark.parametrize("order", adc.ORDERS)
def test_every_order_visits_every_patch_once_frames_outermost(order):
    grid = (3, 4, 5)
    seq = coords(adc.split(grid, order))
    assert sorted(seq) == [(f, r, c) for f in range(3) for r in range(4) for c in range(5)]
    assert [f for f, _, _ in seq] == sorted(f for f, _, _ in seq)
    assert all(p.order == order for p in adc.split(grid, order))


def test_tokens_inside_a_patch_follow_the_same_direction():
    assert adc.token_order(2, "omega").tolist() == [0, 2, 1, 3]
    assert adc.token_order(2, "omega*").tolist() == [1, 3, 0, 2]
    assert adc.token_order(2, "zeta").tolist() == [0, 1, 2, 3]
    assert adc.token_order(2, "zeta*").tolist() == [2, 3, 0, 1]


def test_unknown_order_is_one_clear_line():
    with pytest.raises(UserError, match="unknown patch order 'spiral'") as err:
        adc.split((1, 2, 2), "spiral")
    assert "\n" not in str(err.value)


START_SIDE = {"omega": (0, -1), "omega*": (0, 1), "zeta": (-1, 0), "zeta*": (1, 0)}


@pytest.mark.parametrize("box", [(0, 3, 0, 2), (0, 3, 3, 5), (0, 1, 0, 5), (2, 3, 0, 5), (1, 2, 2, 4), (0, 3, 0, 5)],
                         ids=["right", "left", "down", "up", "around", "nothing"])
def test_outpainting_plan_grows_from_generated_neighbours(box):
    r0, r1, c0, c1 = box
    known = torch.zeros(1, 3, 5, dtype=torch.bool)
    known[0, r0:r1, c0:c1] = True
    pre, new = adc.plan((1, 3, 5), known)
    assert sorted(coords(pre)) == sorted(map(tuple, known.nonzero().tolist()))
    assert sorted(coords(pre) + coords(new)) == [(0, r, c) for r in range(3) for c in range(5)]
    done = set(coords(pre))
    for p in new:
        dr, dc = START_SIDE[p.order]
        assert (0, p.r + dr, p.c + dc) in done, f"{p} starts next to a patch not generated yet"
        done.add((0, p.r, p.c))


def test_outpainting_rejects_a_known_region_that_is_not_a_rectangle():
    known = torch.zeros(1, 3, 3, dtype=torch.bool)
    known[0, 0, 0] = known[0, 2, 2] = True
    with pytest.raises(UserError, match="rectangle"):
        adc.plan((1, 3, 3), known)


def test_animation_plan_precaches_the_first_frame_then_generates_frames_in_order():
    known = torch.zeros(3, 2, 2, dtype=torch.bool)
    known[0] = True
    pre, new = adc.plan((3, 2, 2), known)
    assert {p.f for p in pre} == {0} and len(pre) == 4
    assert [p.f for p in new] == [1] * 4 + [2] * 4


def test_pre_and_post_feeding_are_different_functions():
    torch.manual_seed(0)
    pre = adc.RelativePosition((1, 1, 0), 4, 8, 2, "pre")
    post = adc.RelativePosition((1, 1, 0), 4, 8, 2, "post")
    offset = torch.randint(0, 9, (1, 3, 5))
    tpos = torch.randint(0, 5, (1, 5))
    q1, q2 = torch.randn(1, 2, 3, 4), torch.randn(1, 2, 3, 4)
    # pre-feeding (Eq. 9) depends on the query content: q . e(offset, token)
    assert not torch.allclose(pre.bias(q1, offset, tpos), pre.bias(q2, offset, tpos))
    manual = torch.einsum("bhqd,bqkhd->bhqk", q1, (pre.patch[offset] + pre.token[tpos][:, None]).reshape(1, 3, 5, 2, 4)) / 2.0
    assert torch.allclose(pre.bias(q1, offset, tpos), manual, atol=1e-6)
    # post-feeding is a per-head scalar that ignores the query
    assert torch.equal(post.bias(q1, offset, tpos), post.bias(q2, offset, tpos))
    assert post.bias(q1, offset, tpos)[0, 1, 2, 3] == post.patch[offset[0, 2, 3], 1] + post.token[tpos[0, 3], 1]


def test_offsets_outside_the_extent_are_flagged():
    rel = adc.RelativePosition((2, 1, 1), 4, 8, 2, "post")
    df, dr, dc = torch.tensor([0, 0, 1, 2, -1]), torch.tensor([1, 2, 0, 0, 0]), torch.tensor([-2, 0, 0, 0, 0])
    index, inside = rel.offset(df, dr, dc)
    assert inside.tolist() == [True, False, True, False, False]
    assert len(set(index[inside].tolist())) == 2

"""NCP.select / add / remove: exactly the earlier patches in the extent, never dropped too early, bounded."""
from __future__ import annotations

import pytest
import torch

from nuwa.model import adc
from nuwa.model.ncp import NCP, Memory, Positions


def layout(grid, order):
    return torch.tensor([p[:3] for p in adc.split(grid, order)])[None]


def entry(n: int) -> Memory:
    pos = Positions(*(torch.full((1, 2), n) for _ in range(8)), valid=torch.ones(1, 2, dtype=torch.bool))
    return Memory(kv_pos=pos, kv=[(torch.zeros(1, 1, 2, 4), torch.zeros(1, 1, 2, 4))])


def brute_force(coords, n, extent):
    ew, eh, ef = extent
    f, r, c = coords[n]
    return [m for m in range(n) if 0 <= f - coords[m][0] <= ef
            and abs(coords[m][1] - r) <= eh and abs(coords[m][2] - c) <= ew]


@pytest.mark.parametrize("order", adc.ORDERS)
@pytest.mark.parametrize("grid,extent", [((1, 4, 6), (2, 2, 0)), ((1, 3, 7), (1, 0, 0)), ((3, 3, 3), (1, 1, 1))])
def test_select_is_exactly_the_earlier_patches_inside_the_extent(order, grid, extent):
    coords = layout(grid, order)
    ncp = NCP(coords, extent)
    flat = coords[0].tolist()
    for n in range(len(flat)):
        assert ncp.selects[n] == brute_force(flat, n, extent)


@pytest.mark.parametrize("order", adc.ORDERS)
def test_remove_never_drops_a_cache_still_selectable_and_keeps_nothing_useless(order):
    coords = layout((2, 4, 5), order)
    extent = (2, 1, 1)
    ncp = NCP(coords, extent)
    flat = coords[0].tolist()
    for n in range(len(flat)):
        ncp.select(n)  # raises if a needed cache was removed
        ncp.add(n, entry(n))
        ncp.remove(n)
        needed = {m for later in range(n + 1, len(flat)) for m in brute_force(flat, later, extent) if m <= n}
        assert set(ncp.pool) == needed


def test_per_sample_orders_select_the_union():
    coords = torch.cat([layout((1, 2, 3), "omega"), layout((1, 2, 3), "zeta*")])
    ncp = NCP(coords, (1, 1, 0))
    for n in range(6):
        expected = set(brute_force(coords[0].tolist(), n, (1, 1, 0))) | set(brute_force(coords[1].tolist(), n, (1, 1, 0)))
        assert set(ncp.selects[n]) == expected


@pytest.mark.parametrize("rows", [1, 3])
def test_cache_size_over_a_wide_strip_in_omega_order_is_bounded_by_the_extent(rows):
    extent = (2, 2, 0)
    ncp = NCP(layout((1, rows, 64), "omega"), extent)
    sizes = []
    for n in range(rows * 64):
        ncp.select(n)
        ncp.add(n, entry(n))
        sizes.append(len(ncp))
        ncp.remove(n)
    bound = (extent[0] + 1) * rows
    assert ncp.peak == max(sizes) <= bound
    assert max(sizes[len(sizes) // 2:]) == max(sizes[: len(sizes) // 2 + rows * 3])  # flat, not growing
    assert ncp.peak_bytes <= bound * entry(0).nbytes()

"""The vision decoder: causality, and the parallel masked form equals the sequential NCP pass."""
from __future__ import annotations

import dataclasses

import pytest
import torch

from nuwa.core.text import TextConfig, tokenize
from nuwa.model.config import ModelConfig
from nuwa.model.decoder import NuwaInfinity
from nuwa.model.train import sequential, teacher_layout


def tiny(**changes) -> ModelConfig:
    """A model small enough for unit tests (2x2-token patches, 16 codes)."""
    base = ModelConfig(codebook=16, layers=2, dim=32, heads=2, patch=2, extent=(1, 1, 0),
                       text=TextConfig(dim=32, layers=1, heads=2))
    return dataclasses.replace(base, **changes)


def test_embedded_default_is_about_one_million_parameters():
    model = NuwaInfinity(ModelConfig(text=None))
    assert 0.5e6 < sum(p.numel() for p in model.parameters()) < 1.5e6


@pytest.mark.parametrize("pos_feed", ["pre", "post"])
@pytest.mark.parametrize("caches", [True, False])
def test_changing_a_later_token_never_changes_an_earlier_logit(pos_feed, caches):
    torch.manual_seed(0)
    model = NuwaInfinity(tiny(pos_feed=pos_feed, caches=caches, text=None)).double().eval()
    tokens = torch.randint(0, 16, (2, 1, 4, 6))
    layout = teacher_layout(model, tokens, torch.tensor([0, 2]))
    base = model(layout.ids, layout.pos, parallel=True).logits
    for p in (7, 13, 26):  # token positions (not start slots) in generation order
        assert int(layout.pos.idx[0, p]) > 0
        ids = layout.ids.clone()
        ids[:, p] = (ids[:, p] + 1) % 16
        changed = model(ids, layout.pos, parallel=True).logits
        assert torch.equal(changed[:, :p], base[:, :p])  # position p-1 predicts token p: unchanged too
        assert not torch.allclose(changed[:, p:], base[:, p:])


@pytest.mark.parametrize("local", ["ar", "nar", "pnar"])
@pytest.mark.parametrize("caches", [True, False])
@pytest.mark.parametrize("pos_feed", ["pre", "post"])
def test_parallel_masked_forward_equals_sequential_ncp_pass(local, caches, pos_feed):
    torch.manual_seed(1)
    model = NuwaInfinity(tiny(local=local, caches=caches, pos_feed=pos_feed)).double().eval()
    tokens = torch.randint(0, 16, (4, 1, 4, 6))
    text = tokenize(["red sky", "green hills", "", "a lake"])
    layout = teacher_layout(model, tokens, torch.tensor([0, 1, 2, 3]), torch.Generator().manual_seed(0))
    with torch.no_grad():
        parallel = model(layout.ids, layout.pos, None, text, parallel=True).logits
        stepwise, _ = sequential(model, model, layout, text)
    assert (parallel - stepwise).abs().max() < 1e-5


def test_parallel_equals_sequential_for_videos_with_a_frame_extent():
    torch.manual_seed(2)
    model = NuwaInfinity(tiny(extent=(1, 1, 2), text=None)).double().eval()
    tokens = torch.randint(0, 16, (2, 3, 4, 4))
    layout = teacher_layout(model, tokens, torch.tensor([3, 1]))
    with torch.no_grad():
        parallel = model(layout.ids, layout.pos, parallel=True).logits
        stepwise, _ = sequential(model, model, layout, None)
    assert (parallel - stepwise).abs().max() < 1e-5


def test_context_outside_the_extent_is_invisible_and_text_is_seen():
    torch.manual_seed(3)
    model = NuwaInfinity(tiny(extent=(1, 0, 0))).double().eval()
    tokens = torch.randint(0, 16, (1, 1, 2, 8))  # 1 x 4 patches, omega order = left to right
    layout = teacher_layout(model, tokens, torch.tensor([0]))
    text = tokenize(["snowy peaks"])
    base = model(layout.ids, layout.pos, None, text, parallel=True).logits
    ids = layout.ids.clone()
    ids[:, 1:5] = (ids[:, 1:5] + 3) % 16  # every token of patch 0
    changed = model(ids, layout.pos, None, text, parallel=True).logits
    assert not torch.allclose(changed[:, 5:10], base[:, 5:10])   # patch 1 sees patch 0
    assert not torch.allclose(changed[:, 10:15], base[:, 10:15])  # patch 2 (out of reach) hears of it via patch 1's cache
    other = model(layout.ids, layout.pos, None, tokenize(["a desert"]), parallel=True).logits
    assert not torch.allclose(other, base)


def test_without_caches_distant_patches_do_not_leak_through_deeper_layers():
    torch.manual_seed(4)
    model = NuwaInfinity(tiny(extent=(1, 0, 0), caches=False, text=None)).double().eval()
    tokens = torch.randint(0, 16, (1, 1, 2, 8))
    layout = teacher_layout(model, tokens, torch.tensor([0]))
    base = model(layout.ids, layout.pos, parallel=True).logits
    ids = layout.ids.clone()
    ids[:, 1:5] = (ids[:, 1:5] + 3) % 16
    changed = model(ids, layout.pos, parallel=True).logits
    assert not torch.allclose(changed[:, 5:10], base[:, 5:10])
    assert torch.equal(changed[:, 10:], base[:, 10:])  # patch 2 only sees patch 1's token embeddings


def context_pass(model: NuwaInfinity, layout, project: bool):
    """Patch 1's loss with patch 0's cache in NCP as layer inputs (Eq. 12) or as projected K/V."""
    from nuwa.model.ncp import NCP
    from nuwa.model.train import loss_of

    per = layout.ids.shape[1] // layout.patches
    first, second = slice(0, per), slice(per, 2 * per)
    ncp = NCP(layout.coords, model.cfg.extent)
    ncp.add(0, model.pool_entry(model(layout.ids[:, first], layout.pos[first]).cache, project).detach())
    out = model(layout.ids[:, second], layout.pos[second], ncp.select(1))
    return out.logits, loss_of(out.logits, layout.targets[:, second])


@pytest.mark.parametrize("local", ["ar", "pnar"])
def test_eq12_caches_equal_projected_kv_but_train_the_projections_through_the_context(local):
    torch.manual_seed(5)
    model = NuwaInfinity(tiny(local=local, text=None)).double()
    layout = teacher_layout(model, torch.randint(0, 16, (2, 1, 4, 4)), torch.tensor([0, 2]),
                            torch.Generator().manual_seed(0))
    grads = {}
    for project in (True, False):
        model.zero_grad()
        logits, loss = context_pass(model, layout, project)
        loss.backward()
        grads[project] = [p.grad.clone() for p in (model.blocks[1].attn.kv.weight, model.blocks[1].norm1.weight)]
        grads[project, "logits"] = logits.detach()
    assert (grads[True, "logits"] - grads[False, "logits"]).abs().max() < 1e-12  # same numbers for fixed weights
    for with_kv, with_inputs in zip(grads[True], grads[False]):
        assert not torch.allclose(with_kv, with_inputs)  # Eq. 12: W^k, W^v and the norm also learn from the context

"""Local decoders and Algorithm 2 at the token level."""
from __future__ import annotations

import pytest
import torch
from test_model import tiny

from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import SamplingConfig
from nuwa.core.text import tokenize
from nuwa.model.decoder import NuwaInfinity
from nuwa.model.generate import generate


def model_of(**changes) -> NuwaInfinity:
    torch.manual_seed(0)
    return NuwaInfinity(tiny(**changes)).eval()


def request(grid, seed=0, **kw) -> GenerationRequest:
    return GenerationRequest(grid=grid, progress=False, generator=torch.Generator().manual_seed(seed), **kw)


@torch.no_grad()
def test_kv_cached_ar_decoding_equals_full_recomputation_with_guidance():
    model = model_of()
    text = tokenize(["a red sky", "green hills"])
    sampling = SamplingConfig(guidance=3.0, top_k=8)
    cached, _ = generate(model, request((1, 4, 6), batch=2, text=text, sampling=sampling))
    full, _ = generate(model, request((1, 4, 6), batch=2, text=text, sampling=sampling), kv_cache=False)
    assert torch.equal(cached, full)


@pytest.mark.parametrize("kind", ["ar", "nar", "pnar"])
@torch.no_grad()
def test_same_seed_same_tokens_other_seed_other_tokens(kind):
    model = model_of(local=kind, text=None)
    a, _ = generate(model, request((1, 4, 4), seed=1, batch=2))
    b, _ = generate(model, request((1, 4, 4), seed=1, batch=2))
    c, _ = generate(model, request((1, 4, 4), seed=2, batch=2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (2, 1, 4, 4) and 0 <= int(a.min()) and int(a.max()) < 16


@pytest.mark.parametrize("box", [(0, 4, 0, 4), (0, 4, 4, 8), (0, 2, 0, 8), (2, 4, 0, 8), (2, 4, 2, 6)],
                         ids=["right", "left", "down", "up", "around"])
@pytest.mark.parametrize("kind", ["ar", "pnar"])
@torch.no_grad()
def test_outpainting_never_changes_the_given_tokens(box, kind):
    model = model_of(local=kind)
    r0, r1, c0, c1 = box
    mask = torch.zeros(1, 6, 8, dtype=torch.bool)
    mask[0, r0:r1, c0:c1] = True
    known = torch.randint(0, 16, (2, 1, 6, 8))
    out, _ = generate(model, request((1, 6, 8), batch=2, known=known, known_mask=mask,
                                           text=tokenize(["x", "y"])))
    assert torch.equal(out[:, mask], known[:, mask])
    assert not torch.equal(out[:, ~mask], known[:, ~mask])


@torch.no_grad()
def test_animation_keeps_the_first_frame_and_sees_it():
    model = model_of(extent=(1, 1, 1), text=None)
    mask = torch.zeros(3, 4, 4, dtype=torch.bool)
    mask[0] = True
    known = torch.randint(0, 16, (1, 3, 4, 4))
    other = known.clone()
    other[:, 0] = (other[:, 0] + 5) % 16
    runs = []
    for given in (known, other):
        logits: list[torch.Tensor] = []
        hook = model.head.register_forward_hook(lambda mod, inp, out: logits.append(out))
        out, _ = generate(model, request((3, 4, 4), known=given, known_mask=mask))
        hook.remove()
        assert torch.equal(out[:, 0], given[:, 0])
        runs.append(logits)
    first_new = 0  # pre-caching frame 0 computes no logits: the first are the start query of frame 1's first patch
    assert runs[0][first_new].shape[1] == 1
    assert not torch.allclose(runs[0][first_new], runs[1][first_new])


@torch.no_grad()
def test_any_width_with_bounded_cache():
    model = model_of(text=None, local="nar")
    out, ncp = generate(model, request((1, 4, 2 * 2 * 19)))  # 19x a 2-patch-wide training image
    assert out.shape == (1, 1, 4, 76)
    assert ncp.peak <= (model.cfg.extent[0] + 1) * 2


def test_bad_canvases_fail_with_one_line():
    model = model_of(text=None)
    with pytest.raises(UserError, match="not a positive multiple"):
        generate(model, request((1, 5, 4)))
    mask = torch.zeros(1, 4, 4, dtype=torch.bool)
    mask[0, :3, :2] = True
    with pytest.raises(UserError, match="partly"):
        generate(model, request((1, 4, 4), known=torch.zeros(1, 1, 4, 4, dtype=torch.long), known_mask=mask))

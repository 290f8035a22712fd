"""The shared decode engine: static KV cache, decode steps, work done once per patch, batch-invariant sampling, compile."""
from __future__ import annotations

import pytest
import torch
from test_baselines_taming import CFG as TAMING_CFG
from test_model import tiny

from baselines import maskgit, taming
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import SamplingConfig
from nuwa.core.text import tokenize
from nuwa.core.transformer import KVCache, decode_n_tokens
from nuwa.model.adc import RelativePosition
from nuwa.model.generate import generate as algorithm2


def test_kv_cache_writes_in_place_and_views_share_storage():
    cache = KVCache(2, 3, 4, 10, 8)
    ptr = cache.k.data_ptr()
    k, v = torch.randn(3, 4, 2, 8), torch.randn(3, 4, 2, 8)
    keys, values = cache.update(1, torch.tensor([4, 7]), k, v)
    assert cache.k.data_ptr() == ptr and keys.data_ptr() == cache.k[1].data_ptr()
    assert torch.equal(cache.k[1, :, :, [4, 7]], k) and torch.equal(cache.v[1, :, :, [4, 7]], v)
    assert cache.k[0].abs().sum() == 0 and cache.k[1, :, :, 5].abs().sum() == 0
    part = cache.view(5)
    part.write(torch.tensor([0]), torch.ones(2, 3, 4, 1, 8), torch.ones(2, 3, 4, 1, 8))
    assert cache.k[:, :, :, 0].eq(1).all() and part.length == 5 and cache.length == 10
    assert torch.equal(cache.read(torch.tensor([4]))[0][1], k[:, :, :1])


def test_decode_n_tokens_feeds_each_sampled_token_and_keeps_given_ones():
    fed = []

    def step(ids, positions):
        fed.append((ids[:, 0].tolist(), positions.tolist()))
        return torch.zeros(2, 1, 5)

    draws = iter(range(100))
    tokens = decode_n_tokens(step, torch.zeros(2, 5), torch.tensor([3, 4, 5]), lambda logits: torch.full((2,), next(draws)),
                             given=(torch.tensor([False, True, False]), torch.tensor([[9, 8, 7], [9, 6, 7]])))
    assert tokens.tolist() == [[0, 8, 2], [0, 6, 2]]  # the given token replaces draw 1, the stream goes on
    assert fed == [([0, 0], [3]), ([8, 6], [4])]       # the last token is not fed (no feed_last)


def count_calls(monkeypatch, owner, name):
    calls = []
    original = getattr(owner, name)
    monkeypatch.setattr(owner, name, lambda *a, **k: calls.append(1) or original(*a, **k))
    return calls


@pytest.mark.parametrize("pos_feed", ["pre", "post"])
@torch.no_grad()
def test_adc_emb_and_masks_are_computed_once_per_patch_not_per_token(pos_feed, monkeypatch):
    torch.manual_seed(0)
    from nuwa.model.decoder import NuwaInfinity

    counts = []
    for patch in (2, 4):  # 2 x 4 patches of 4, then of 16 tokens
        model = NuwaInfinity(tiny(pos_feed=pos_feed, text=None, patch=patch)).eval()
        with monkeypatch.context() as mp:
            per_key = count_calls(mp, RelativePosition, "per_key")
            layouts = count_calls(mp, RelativePosition, "bias")
            cats = count_calls(mp, torch, "cat")
            out, _ = algorithm2(model, GenerationRequest(grid=(1, 2 * patch, 4 * patch), progress=False,
                                                             generator=torch.Generator().manual_seed(0)))
        assert len(per_key) == 8 and not layouts  # ADC.emb once per patch; the per-(query, key) training bias never
        counts.append(len(cats))
    assert counts[0] == counts[1]  # concatenations per patch (context, masks), none per token


@torch.no_grad()
def test_ncp_slots_are_reused_and_the_caches_never_reallocated():
    torch.manual_seed(0)
    from nuwa.model.decoder import NuwaInfinity

    model = NuwaInfinity(tiny(text=None, extent=(1, 1, 0))).eval()
    _, ncp = algorithm2(model, GenerationRequest(grid=(1, 4, 24), progress=False, generator=torch.Generator().manual_seed(0)))
    assert ncp.kv.length == ncp.live_peak() * (model.cfg.tokens_per_patch + 1) == 4 * 5  # (e_w + 1) x rows slots
    assert len(ncp.free) + len(ncp.pool) == ncp.live_peak()


@pytest.mark.parametrize("local", ["ar", "pnar"])
@torch.no_grad()
def test_steps_whose_mask_hides_nothing_skip_it_with_the_same_tokens(local, monkeypatch):
    from nuwa.model.decoder import NuwaInfinity, PatchState

    torch.manual_seed(0)
    model = NuwaInfinity(tiny(text=None, local=local)).eval()
    request = dict(grid=(1, 4, 8), batch=3, progress=False, sampling=SamplingConfig(steps=3))
    masks = []
    mask = PatchState.mask
    monkeypatch.setattr(PatchState, "mask", lambda self, *a: masks.append(mask(self, *a)) or masks[-1])
    skipped = algorithm2(model, GenerationRequest(**request, generator=torch.Generator().manual_seed(0)))[0]
    assert any(m is None for m in masks)
    assert (local == "pnar") == any(m is not None for m in masks)  # P-NAR's clean pass over the chosen tokens is causal
    monkeypatch.setattr(PatchState, "mask", lambda self, stream, index, length: self.masks[stream][:, :, index, :length])
    masked = algorithm2(model, GenerationRequest(**request, generator=torch.Generator().manual_seed(0)))[0]
    assert torch.equal(skipped, masked)


def nuwa(**changes):
    from nuwa.model.decoder import NuwaInfinity

    torch.manual_seed(0)
    return NuwaInfinity(tiny(**changes)).double().eval()


def baseline(family, **model):
    cfg = {**TAMING_CFG, "baselines": {family.name: {"model": {**TAMING_CFG["baselines"]["taming"]["model"], **model}}}}
    torch.manual_seed(0)
    return family.build(cfg).double().eval()


def generate(fam_generate, module, grid, seeds, text=None, **kw):
    request = GenerationRequest(grid=grid, batch=len(seeds), text=text, progress=False,
                                generators=[torch.Generator().manual_seed(s) for s in seeds], **kw)
    with torch.no_grad():
        out = fam_generate(module, request)
    return out[0] if isinstance(out, tuple) else out


CASES = {
    "nuwa-ar-guided": (lambda: nuwa(), algorithm2, (1, 4, 6), SamplingConfig(guidance=3.0, top_k=8), True),
    "nuwa-nar": (lambda: nuwa(local="nar", text=None), algorithm2, (1, 4, 6), SamplingConfig(), False),
    "nuwa-pnar-guided": (lambda: nuwa(local="pnar"), algorithm2, (1, 4, 6), SamplingConfig(steps=3, guidance=2.0), True),
    "taming-kv-cache": (lambda: baseline(taming.FAMILY), taming.FAMILY.generate, (1, 4, 4), SamplingConfig(guidance=2.0), True),
    "taming-sliding": (lambda: baseline(taming.FAMILY), taming.FAMILY.generate, (1, 4, 8), SamplingConfig(), True),
    "maskgit": (lambda: baseline(maskgit.FAMILY), maskgit.FAMILY.generate, (1, 4, 8), SamplingConfig(steps=4, guidance=2.0), True),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_batch_gives_each_sample_the_tokens_it_gets_alone(case):
    """Batched generation with one random stream per sample: sample i of a batch of 3 = sample i alone."""
    build, fam_generate, grid, sampling, text = CASES[case]
    module = build()
    captions = tokenize(["a red sky", "green hills", "snow"]) if text else None
    batched = generate(fam_generate, module, grid, [11, 12, 13], captions, sampling=sampling)
    for i, seed in enumerate([11, 12, 13]):
        alone = generate(fam_generate, module, grid, [seed], captions[i:i + 1] if text else None, sampling=sampling)
        assert torch.equal(batched[i:i + 1], alone)
    assert not torch.equal(batched[0], batched[1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_one_sample_per_sample_streams_equal_the_shared_stream(case):
    """With one sample the two kinds of random streams are the same stream (batch-1 tokens unchanged)."""
    build, fam_generate, grid, sampling, text = CASES[case]
    module = build()
    caption = tokenize(["a red sky"]) if text else None
    own = generate(fam_generate, module, grid, [5], caption, sampling=sampling)
    request = GenerationRequest(grid=grid, batch=1, text=caption, progress=False, sampling=sampling,
                                generator=torch.Generator().manual_seed(5))
    with torch.no_grad():
        shared = fam_generate(module, request)
    assert torch.equal(own, shared[0] if isinstance(shared, tuple) else shared)


@pytest.mark.parametrize("changes", [{}, {"pos_feed": "post"}, {"local": "pnar", "text": None}, {"caches": False}])
def test_static_layout_padded_to_the_widest_context_gives_the_same_tokens(changes):
    module = nuwa(**changes)
    sampling = SamplingConfig(steps=3, guidance=2.0)
    text = tokenize(["a", "b"]) if module.text is not None else None
    exact = generate(algorithm2, module, (1, 4, 8), [1, 2], text, sampling=sampling)
    static = generate(lambda m, r: algorithm2(m, r, static=True), module, (1, 4, 8), [1, 2], text, sampling=sampling)
    assert torch.equal(exact, static)


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["ar", "pnar"])
def test_compiled_decode_step_gives_the_eager_tokens(kind):
    """torch.compile accepts the decode step (static shapes per patch; CPU inductor here, CUDA graphs on a GPU)."""
    torch._dynamo.reset()
    module = nuwa(local=kind, text=None).float()
    eager = generate(algorithm2, module, (1, 4, 8), [1, 2], sampling=SamplingConfig(steps=3))
    compiled = generate(algorithm2, module, (1, 4, 8), [1, 2], sampling=SamplingConfig(steps=3), compile=True)
    assert torch.equal(eager, compiled)


@pytest.mark.slow
def test_compiled_taming_step_gives_the_eager_tokens():
    torch._dynamo.reset()
    module = baseline(taming.FAMILY).float()
    eager = generate(taming.FAMILY.generate, module, (1, 4, 4), [1, 2], None)
    compiled = generate(taming.FAMILY.generate, module, (1, 4, 4), [1, 2], None, compile=True)
    assert torch.equal(eager, compiled)

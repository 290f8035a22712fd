"""Taming baseline: causality, KV cache = recomputation, taming's sliding window, raster-only outpainting, training."""
from __future__ import annotations

import csv

import pytest
import torch

from baselines import taming
from baselines.common import Conditioning
from nuwa.commands.families import get
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest, load_module
from nuwa.core.sampling import Sampler, SamplingConfig
from nuwa.core.trainer import TrainConfig, fit
from nuwa.core.transformer import prefill

N_EMBED, WINDOW = 16, (4, 4)
CFG = {"tokenizer": {"vqgan": {"model": {"n_embed": N_EMBED}}},
       "baselines": {"taming": {"model": {"layers": 2, "dim": 32, "heads": 2, "window": list(WINDOW),
                                          "text": {"dim": 32, "layers": 1, "heads": 2}}}}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return taming.FAMILY.build(CFG).eval()


def request(grid, known=None, mask=None, seed=0, guidance=1.0, batch=2):
    text = torch.randint(1, 500, (batch, 77), generator=torch.Generator().manual_seed(9))
    return GenerationRequest(grid=grid, batch=batch, text=text, known=known, known_mask=mask, progress=False,
                             sampling=SamplingConfig(guidance=guidance), generator=torch.Generator().manual_seed(seed))


def test_family_registry_and_sizes_inherit_from_nuwa():
    assert get("taming") is taming.FAMILY
    spec = taming.FAMILY.model_spec({"tokenizer": {"vqgan": {"model": {"n_embed": 64}}},
                                     "nuwa": {"model": {"layers": 3, "dim": 96, "text": {"dim": 48}}},
                                     "baselines": {"taming": {"model": {"heads": 6}}}})
    assert (spec.layers, spec.dim, spec.heads, spec.n_embed, spec.text.dim, spec.causal) == (3, 96, 6, 64, 48, True)
    assert taming.FAMILY.model_spec({"nuwa": {"model": {"codebook": 128}}}).n_embed == 128


def test_causal_changing_a_later_token_never_changes_an_earlier_logit(model):
    tokens = torch.randint(0, N_EMBED, (2, 16), generator=torch.Generator().manual_seed(1))
    text = torch.randint(1, 500, (2, 77))
    with torch.no_grad():
        base = model(tokens, text)
        for j in (3, 9, 15):
            changed = tokens.clone()
            changed[:, j] = (changed[:, j] + 1) % N_EMBED
            out = model(changed, text)
            assert torch.equal(out[:, :j], base[:, :j])
            assert not torch.allclose(out[:, j:], base[:, j:])


def test_kv_cache_prefill_decode_equals_full_forward(model):
    tokens = torch.randint(0, N_EMBED, (2, 16), generator=torch.Generator().manual_seed(2))
    text = torch.randint(1, 500, (2, 77))
    with torch.no_grad():
        full = model(tokens, text)
        cache, context = model.new_cache(2), model.encode_text(text)
        step = lambda ids, slots: model.step(ids, slots, cache, context)  # noqa: E731
        parts = [prefill(step, tokens[:, :5], torch.arange(5))]
        parts += [step(tokens[:, i:i + 1], torch.tensor([i])) for i in range(5, 16)]
    torch.testing.assert_close(torch.cat(parts, 1), full, atol=1e-5, rtol=1e-5)
    assert cache.k.shape[3] == 16 and bool(cache.k[:, :, :, 15].abs().sum() > 0)  # written in place, slot by slot


@pytest.mark.parametrize("guidance", [1.0, 3.0])
def test_kv_cached_sampling_equals_uncached_sampling(model, guidance):
    canvas = torch.randint(0, N_EMBED, (2, *WINDOW))
    known = torch.zeros(WINDOW, dtype=torch.bool)
    known[0] = True  # a given top row: prefilled by the cache, fed token by token by the window path
    cond = Conditioning(model, torch.randint(1, 500, (2, 77)), 2, guidance)
    cfg = SamplingConfig(guidance=guidance)
    cached = taming.sample_cached(model, canvas, known, cond, Sampler(cfg, torch.Generator().manual_seed(5)))
    uncached = taming.sample_sliding(model, canvas, known, cond, Sampler(cfg, torch.Generator().manual_seed(5)))
    assert torch.equal(cached, uncached)
    assert torch.equal(cached[:, 0], canvas[:, 0])


def taming_reference_start(i: int, size: int, window: int) -> int:
    """The window start of taming-transformers' sample scripts (written for window 16, half 8)."""
    half = window // 2
    local = i if i <= half else window - (size - i) if size - i < half else half
    return i - local


@pytest.mark.parametrize("window", [4, 8, 16])
def test_window_start_matches_taming_rule(window):
    for size in range(window, 4 * window + 3):
        for i in range(size):
            assert taming.window_start(i, size, window) == taming_reference_start(i, size, window)


def test_sliding_window_4x_wide_every_token_sees_only_a_training_window(model, monkeypatch):
    h, w = WINDOW[0], 4 * WINDOW[1]
    seen, lengths = [], []
    record = taming.sliding_window
    monkeypatch.setattr(taming, "sliding_window", lambda r, c, g, win: seen.append((r, c, record(r, c, g, win))) or seen[-1][2])
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda tokens, *a, **k: lengths.append(tokens.shape[1]) or forward(tokens, *a, **k))
    out = taming.FAMILY.generate(model, request((1, h, w)))
    assert out.shape == (2, 1, h, w) and int(out.max()) < N_EMBED
    assert [(r, c) for r, c, _ in seen] == [(r, c) for r in range(h) for c in range(w)]  # raster order, every token once
    assert {win.left for *_, win in seen} == set(range(w - WINDOW[1] + 1))  # the window really slides
    for r, c, win in seen:
        assert 0 <= win.top <= h - WINDOW[0] and 0 <= win.left <= w - WINDOW[1]
        assert win.local == (r - win.top) * WINDOW[1] + (c - win.left)  # the token sits inside its window
        # every window token before it in the window's raster order precedes it on the canvas (already sampled)
        for p in range(win.local):
            pr, pc = win.top + p // WINDOW[1], win.left + p % WINDOW[1]
            assert (pr, pc) < (r, c)
    assert max(lengths) <= WINDOW[0] * WINDOW[1] and len(lengths) == h * w


@pytest.mark.parametrize("direction", ["right", "down"])
def test_right_and_down_outpainting_keep_given_tokens(model, direction):
    grid = (1, WINDOW[0], 2 * WINDOW[1])
    known = torch.randint(0, N_EMBED, (2, *grid))
    mask = torch.zeros(grid, dtype=torch.bool)
    if direction == "right":
        mask[..., : WINDOW[1]] = True
    else:
        mask[:, : WINDOW[0] // 2] = True
    out = taming.FAMILY.generate(model, request(grid, known, mask))
    assert torch.equal(out[:, mask], known[:, mask])
    assert not torch.equal(out[:, ~mask], known[:, ~mask])


@pytest.mark.parametrize("direction", ["left", "up", "around"])
def test_refuses_left_up_and_around_outpainting_with_one_line(model, direction):
    grid = (1, 2 * WINDOW[0], 2 * WINDOW[1])
    mask = torch.zeros(grid, dtype=torch.bool)
    if direction == "left":
        mask[..., WINDOW[1]:] = True
    elif direction == "up":
        mask[:, WINDOW[0]:] = True
    else:
        mask[:, 2:6, 2:6] = True
    with pytest.raises(UserError, match="N/A") as err:
        taming.FAMILY.generate(model, request(grid, torch.zeros(2, *grid, dtype=torch.long), mask))
    assert "\n" not in str(err.value) and "maskgit" in str(err.value)


def test_refuses_videos_and_canvases_smaller_than_the_window(model):
    with pytest.raises(UserError, match="images only"):
        taming.FAMILY.generate(model, request((2, *WINDOW)))
    with pytest.raises(UserError, match="at least its training window"):
        taming.FAMILY.generate(model, request((1, WINDOW[0] - 1, 8)))


def test_same_seed_same_sample_and_checkpoint_config_round_trip(model):
    again = taming.FAMILY.from_config(taming.FAMILY.model_config(model))
    again.load_state_dict(model.state_dict())
    a = taming.FAMILY.generate(model, request((1, 4, 6), seed=3))
    b = taming.FAMILY.generate(again.eval(), request((1, 4, 6), seed=3))
    assert torch.equal(a, b)


def pattern_data(n: int, seed: int) -> list[dict]:
    """Images whose rows are shifted ramps: learnable from the previous token."""
    g = torch.Generator().manual_seed(seed)
    items = []
    for _ in range(n):
        shift = int(torch.randint(0, N_EMBED, (1,), generator=g))
        ramp = (torch.arange(WINDOW[0])[:, None] + torch.arange(WINDOW[1])[None, :] + shift) % N_EMBED
        items.append({"tokens": ramp[None], "caption": f"ramp {shift}"})
    return items


def test_short_training_run_lowers_the_loss(tmp_path):
    from nuwa.data.tokens import collate_tokens

    torch.manual_seed(0)
    module = taming.FAMILY.build(CFG)
    cfg = TrainConfig(epochs=4, batch_size=8, lr=1e-2, warmup_ratio=0.1)
    out, hist = tmp_path / "taming.pt", tmp_path / "hist.csv"
    fit(taming.FAMILY.trainable(module, CFG), pattern_data(48, 0), pattern_data(16, 1), cfg, out=out,
        kind=taming.FAMILY.kind, model_config=taming.FAMILY.model_config(module), collate=collate_tokens,
        history_csv=hist)
    rows = list(csv.DictReader(hist.open()))
    assert float(rows[-1]["val_loss"]) < 0.7 * float(rows[0]["val_loss"])
    assert torch.equal(load_module(taming.FAMILY, out).pos, module.pos)


def test_training_batch_of_the_wrong_size_is_one_line(model):
    batch = {"tokens": torch.zeros(2, 1, 8, 8, dtype=torch.long), "text": torch.zeros(2, 77, dtype=torch.long)}
    with pytest.raises(UserError, match="baselines.taming.model.window"):
        taming.FAMILY.loss(model, model.cfg, batch, training=True)


def test_checkpoints_with_the_norm_names_of_before_the_shared_blocks_still_load(model):
    legacy = {k.replace(".norm1.", ".norm_self.").replace(".norm2.", ".norm_cross.").replace(".norm3.", ".norm_ffn."): v
              for k, v in model.state_dict().items()}
    assert any(".norm_self." in k for k in legacy)
    again = taming.FAMILY.from_config(taming.FAMILY.model_config(model))
    again.load_state_dict(legacy)  # strict: every key found under its new name
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))

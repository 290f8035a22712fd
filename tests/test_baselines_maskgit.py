"""MaskGIT baseline: iterative decoding by the shared schedule, windowed outpainting in every direction, training."""
from __future__ import annotations

import csv
import math

import pytest
import torch

from baselines import maskgit
from baselines.common import Conditioning
from nuwa.commands.families import get
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.sampling import Sampler, SamplingConfig, mask_schedule, training_mask
from nuwa.core.trainer import TrainConfig, fit

N_EMBED, WINDOW = 16, (4, 4)
CFG = {"tokenizer": {"vqgan": {"model": {"n_embed": N_EMBED}}},
       "baselines": {"maskgit": {"model": {"layers": 2, "dim": 32, "heads": 2, "window": list(WINDOW),
                                           "text": {"dim": 32, "layers": 1, "heads": 2}}}}}


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return maskgit.FAMILY.build(CFG).eval()


def request(grid, known=None, mask=None, seed=0, steps=4, guidance=1.0, batch=2):
    text = torch.randint(1, 500, (batch, 77), generator=torch.Generator().manual_seed(9))
    return GenerationRequest(grid=grid, batch=batch, text=text, known=known, known_mask=mask, progress=False,
                             sampling=SamplingConfig(steps=steps, guidance=guidance),
                             generator=torch.Generator().manual_seed(seed))


def test_decoding_unmasks_what_the_schedule_prescribes(model, monkeypatch):
    masked_inputs = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda tokens, *a, **k: masked_inputs.append(
        int((tokens[0] == model.cfg.special).sum())) or forward(tokens, *a, **k))
    tokens = torch.randint(0, N_EMBED, (2, 16))
    fixed = torch.zeros(16, dtype=torch.bool)
    fixed[:3] = True
    cond = Conditioning(model, None, 2, 1.0)
    out = maskgit.decode_window(model, tokens, fixed, cond, Sampler(SamplingConfig(steps=5), torch.Generator().manual_seed(0)))
    schedule = mask_schedule(13, 5)
    assert masked_inputs == [13] + schedule[:-1]
    assert torch.equal(out[:, :3], tokens[:, :3]) and int(out.max()) < N_EMBED


def test_training_mask_fraction_is_cosine_of_uniform():
    mask = training_mask((4000, 64), torch.Generator().manual_seed(0))
    per_row = mask.sum(1).float()
    assert per_row.min() >= 1
    # E[ceil(64 cos(pi/2 r))] / 64 with r ~ U(0, 1) is about 2/pi (+ half a token for the ceiling)
    assert abs(per_row.mean().item() / 64 - (2 / math.pi + 0.5 / 64)) < 0.02


def outpaint_mask(direction: str, grid: tuple[int, int, int]) -> torch.Tensor:
    _, h, w = grid
    mask = torch.zeros(grid, dtype=torch.bool)
    if direction == "right":
        mask[..., : w // 2] = True
    elif direction == "left":
        mask[..., w // 2:] = True
    elif direction == "down":
        mask[:, : h // 2] = True
    elif direction == "up":
        mask[:, h // 2:] = True
    else:
        mask[:, h // 4: 3 * h // 4, w // 4: 3 * w // 4] = True
    return mask


@pytest.mark.parametrize("direction", ["right", "left", "down", "up", "around"])
def test_outpainting_in_every_direction_never_overwrites_given_tokens(model, direction):
    grid = (1, 2 * WINDOW[0], 2 * WINDOW[1])
    known = torch.randint(0, N_EMBED, (2, *grid))
    mask = outpaint_mask(direction, grid)
    out = maskgit.FAMILY.generate(model, request(grid, known, mask, guidance=2.0))
    assert torch.equal(out[:, mask], known[:, mask])
    assert int(out.max()) < N_EMBED  # no [MASK] left anywhere


def test_wide_canvas_is_decoded_window_by_window_from_the_known_side(model, monkeypatch):
    h, w = WINDOW[0], 4 * WINDOW[1]
    windows = []
    decode = maskgit.decode_window
    monkeypatch.setattr(maskgit, "decode_window", lambda m, tokens, fixed, *a: windows.append(int(fixed.sum())) or decode(m, tokens, fixed, *a))
    out = maskgit.FAMILY.generate(model, request((1, h, w)))
    assert out.shape == (2, 1, h, w) and int(out.max()) < N_EMBED
    # half-window stride: the first window starts empty, each later one already holds half a window
    assert windows == [0] + [WINDOW[0] * WINDOW[1] // 2] * (len(maskgit.window_starts(w, WINDOW[1])) - 1)
    assert maskgit.window_starts(w, WINDOW[1]) == [0, 2, 4, 6, 8, 10, 12]


def test_same_seed_same_sample(model):
    a = maskgit.FAMILY.generate(model, request((1, 4, 6), seed=3))
    b = maskgit.FAMILY.generate(model, request((1, 4, 6), seed=3))
    c = maskgit.FAMILY.generate(model, request((1, 4, 6), seed=4))
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_refuses_videos(model):
    assert get("maskgit") is maskgit.FAMILY
    with pytest.raises(UserError, match="images only"):
        maskgit.FAMILY.generate(model, request((3, *WINDOW)))


def test_short_training_run_lowers_the_loss(tmp_path):
    from nuwa.data.tokens import collate_tokens

    images = torch.randint(0, N_EMBED, (4, 1, *WINDOW), generator=torch.Generator().manual_seed(0))

    def data(n):  # four recurring images: every position has few possible tokens, learnable in a few steps
        return [{"tokens": images[i % 4], "caption": f"image {i % 4}"} for i in range(n)]

    torch.manual_seed(0)
    module = maskgit.FAMILY.build(CFG)
    out, hist = tmp_path / "maskgit.pt", tmp_path / "hist.csv"
    fit(maskgit.FAMILY.trainable(module, CFG), data(64), data(16), TrainConfig(epochs=4, batch_size=8, lr=1e-2),
        out=out, kind=maskgit.FAMILY.kind, model_config=maskgit.FAMILY.model_config(module),
        collate=collate_tokens, history_csv=hist)
    rows = list(csv.DictReader(hist.open()))
    assert float(rows[-1]["val_loss"]) < 0.7 * float(rows[0]["val_loss"])

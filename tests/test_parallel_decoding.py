"""MaskGIT's parallel decoding, shared by NUWA-Infinity's P-NAR / NAR and the MaskGIT baseline."""
from __future__ import annotations

import math

import pytest
import torch
from test_local import model_of, request

from nuwa.core.sampling import SamplingConfig, mask_schedule, remask
from nuwa.core.text import tokenize
from nuwa.model.decoder import NuwaInfinity
from nuwa.model.generate import generate


def reference_count(unknown: int, masked: int, step: int, steps: int) -> int:
    """MaskGIT's reference rule for the tokens still masked after ``step`` (not the last step)."""
    return max(1, min(masked - 1, math.floor(unknown * math.cos(math.pi / 2 * (step + 1) / steps))))


@pytest.mark.parametrize("n", [1, 2, 4, 5, 16, 64, 256])
@pytest.mark.parametrize("steps", [1, 3, 8, 12])
def test_schedule_is_maskgits_rule_and_stops_when_everything_is_decided(n, steps):
    counts = mask_schedule(n, steps)
    assert counts[-1] == 0 and len(counts) == min(n, steps)
    before = [n] + counts[:-1]
    for s, (prev, now) in enumerate(zip(before, counts)):
        assert now <= prev - 1  # every step decides at least one token
        if now:
            assert now == reference_count(n, prev, s, steps)


def test_four_tokens_eight_steps_run_four_steps():
    assert mask_schedule(4, 8) == [3, 2, 1, 0]
    assert mask_schedule(64, 8) == [62, 59, 53, 45, 35, 24, 12, 0]


def test_remask_only_masks_again_what_was_masked_and_the_least_confident():
    prob = torch.tensor([[0.9, 0.1, 0.5, 0.2, 0.8, 0.05]])
    masked = torch.tensor([[True, True, False, True, True, False]])
    again = remask(prob, masked, 2, temperature=0.0)
    assert again.tolist() == [[False, True, False, True, False, False]]
    noisy = remask(prob.expand(50, -1), masked.expand(50, -1), 3, 4.5, torch.Generator().manual_seed(0))
    assert not bool((noisy & ~masked).any()) and bool((noisy.sum(1) == 3).all())


def record_queries(model: NuwaInfinity) -> tuple[list[torch.Tensor], callable]:
    """Inputs of every decode step over a masked query stream (P-NAR/NAR steps), in call order."""
    seen: list[torch.Tensor] = []
    decode = model.decode

    def spy(ids, index, state, stream=0, **kwargs):
        if stream == 1:
            seen.append(ids[:, 1:].clone())
        return decode(ids, index, state, stream, **kwargs)
    return seen, spy


@pytest.mark.parametrize("steps", [3, 8])
@torch.no_grad()
def test_pnar_never_changes_a_decided_token_and_masks_by_the_schedule(steps, monkeypatch):
    model = model_of(local="pnar", text=None)
    seen, spy = record_queries(model)
    monkeypatch.setattr(model, "decode", spy)
    sampling = SamplingConfig(steps=steps)
    out, _ = generate(model, request((1, 4, 4), batch=3, sampling=sampling))
    tokens, mask_id = model.cfg.tokens_per_patch, model.mask_id
    schedule = mask_schedule(tokens, steps)
    assert len(seen) == 4 * len(schedule)  # 4 patches, the steps the schedule runs
    for n in range(4):
        inputs = seen[n * len(schedule):(n + 1) * len(schedule)]
        assert [int(x[0].eq(mask_id).sum()) for x in inputs] == [tokens] + schedule[:-1]
        for s, x in enumerate(inputs):
            decided = x != mask_id
            for later in inputs[s + 1:]:
                assert torch.equal(later[decided], x[decided])
    assert int(out.max()) < model.cfg.codebook


@torch.no_grad()
def test_pnar_decided_tokens_end_up_in_the_output():
    """The tokens fixed after the last but one step are exactly the final patch's tokens there."""
    model = model_of(local="pnar", text=None)
    seen, spy = record_queries(model)
    model.decode = spy
    out, _ = generate(model, request((1, 2, 2), batch=2, sampling=SamplingConfig(steps=3)))
    last = seen[-1]
    decided = last != model.mask_id
    written = out[:, 0].flatten(1)[:, model.token_orders[0]]  # one patch in omega writing order
    assert torch.equal(written[decided], last[decided])


@pytest.mark.parametrize("guidance", [1.0, 3.0])
@torch.no_grad()
def test_pnar_with_one_step_equals_nar(guidance):
    pnar = model_of(local="pnar")
    nar = model_of(local="nar")
    nar.load_state_dict(pnar.state_dict())
    sampling = SamplingConfig(steps=1, guidance=guidance)
    text = tokenize(["a lake", "red sky"])
    a, _ = generate(pnar, request((1, 4, 6), batch=2, text=text, sampling=sampling))
    b, _ = generate(nar, request((1, 4, 6), batch=2, text=text, sampling=sampling))
    assert torch.equal(a, b)

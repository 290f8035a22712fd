"""The shared machinery: config building, atomic output, checkpoints, sampling, text."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import pytest
import torch

from nuwa.core import checkpoint
from nuwa.core.config import apply_overrides, build, config_hash, deep_merge
from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path
from nuwa.core.sampling import (
    Sampler,
    SamplingConfig,
    filter_logits,
    guide,
    multinomial,
    multinomial_rows,
    sample_logits,
)
from nuwa.core.text import TextConfig, TextEncoder, drop_text, tokenize


@dataclass
class Inner:
    depth: int = 2
    kind: Literal["a", "b"] = "a"


@dataclass
class Outer:
    lr: float = 1e-3
    sizes: tuple[int, int] = (1, 2)
    inner: Inner = field(default_factory=Inner)


def test_build_accepts_nested_and_coerces_ints_to_float():
    cfg = build(Outer, {"lr": 1, "sizes": [3, 4], "inner": {"kind": "b"}})
    assert cfg.lr == 1.0 and isinstance(cfg.lr, float)
    assert cfg.sizes == (3, 4) and cfg.inner == Inner(2, "b")


@pytest.mark.parametrize("bad, where", [
    ({"lr": "fast"}, "cfg.lr"),
    ({"inner": {"kind": "c"}}, "cfg.inner.kind"),
    ({"inner": {"depth": True}}, "cfg.inner.depth"),
    ({"sizes": [1, 2, 3]}, "cfg.sizes"),
    ({"typo": 1}, "cfg.typo"),
])
def test_build_rejects_bad_values_naming_the_key(bad, where):
    with pytest.raises(UserError, match=where.replace(".", r"\.")):
        build(Outer, bad, "cfg")


def test_overrides_and_merge():
    cfg = deep_merge({"a": {"b": 1, "c": 2}}, {"a": {"c": 3}})
    cfg = apply_overrides(cfg, ["a.d=[1, 2]", "e.f=true"])
    assert cfg == {"a": {"b": 1, "c": 3, "d": [1, 2]}, "e": {"f": True}}
    assert config_hash(cfg) == config_hash(dict(reversed(list(cfg.items()))))
    with pytest.raises(UserError):
        apply_overrides(cfg, ["no-equals-sign"])


def test_exponent_without_dot_is_a_number():  # YAML 1.1 would read "1e-3" as a string
    cfg = apply_overrides({}, ["lr=1e-3", "n=2E2", "name=1e-3x"])
    assert cfg == {"lr": 0.001, "n": 200.0, "name": "1e-3x"}
    assert build(Outer, {"lr": cfg["lr"]}, "x").lr == 0.001


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.txt"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert list(tmp_path.iterdir()) == []
    with atomic_path(target) as tmp:
        tmp.write_text("whole")
    assert target.read_text() == "whole" and len(list(tmp_path.iterdir())) == 1


def test_checkpoint_kind_is_checked(tmp_path):
    path = tmp_path / "m.pt"
    checkpoint.save(path, kind="taming", config={}, model={})
    assert checkpoint.load(path, "taming")["kind"] == "taming"
    with pytest.raises(UserError, match="holds a 'taming' model, expected 'nuwa'"):
        checkpoint.load(path, "nuwa")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="unreadable"):
        checkpoint.load(tmp_path / "junk.pt", "nuwa")
    with pytest.raises(UserError, match="not found"):
        checkpoint.load(tmp_path / "missing.pt", "nuwa")


def test_top_k_and_top_p_filtering():
    logits = torch.tensor([[4.0, 3.0, 2.0, 1.0]])
    assert torch.isinf(filter_logits(logits, top_k=2)[0, 2:]).all()
    assert torch.isfinite(filter_logits(logits, top_k=2)[0, :2]).all()
    # probabilities ~ [.64, .24, .09, .03]: top_p 0.7 keeps the first two (the one crossing 0.7 too)
    kept = torch.isfinite(filter_logits(logits, top_p=0.7))[0]
    assert kept.tolist() == [True, True, False, False]


def test_sampling_is_seeded_and_respects_top_k():
    logits = torch.randn(64, 10)
    cfg = SamplingConfig(top_k=1)
    ids, _ = sample_logits(logits, cfg, torch.Generator().manual_seed(0))
    assert torch.equal(ids, logits.argmax(-1))
    cfg = SamplingConfig(temperature=2.0)
    a, _ = sample_logits(logits, cfg, torch.Generator().manual_seed(1))
    b, _ = sample_logits(logits, cfg, torch.Generator().manual_seed(1))
    assert torch.equal(a, b)


@pytest.mark.parametrize("shape", [(5, 1024), (3, 7, 64), (1, 1024)])
def test_batched_per_row_draws_equal_torch_multinomial_row_by_row(shape):
    """multinomial_rows reimplements torch.multinomial's one-sample draw for a batch whose rows have
    their own streams: the ids must be torch's, row by row, to the last one (top-k zeros included)."""
    logits = torch.randn(shape, generator=torch.Generator().manual_seed(0)) * 3
    for probs in (logits.softmax(-1), filter_logits(logits, top_k=5).softmax(-1)):
        for seed in range(20):
            streams = [torch.Generator().manual_seed(seed * 100 + b) for b in range(shape[0])]
            alone = torch.cat([multinomial(probs[b:b + 1], torch.Generator().manual_seed(seed * 100 + b))
                               for b in range(shape[0])])
            assert torch.equal(multinomial_rows(probs, streams), alone)
    ids, prob = Sampler(SamplingConfig(), generators=[torch.Generator().manual_seed(b) for b in range(shape[0])])(logits)
    assert ids.shape == shape[:-1] and torch.equal(prob, logits.softmax(-1).gather(-1, ids[..., None])[..., 0])
    with pytest.raises(ValueError, match="inf, nan or element < 0"):
        multinomial_rows(torch.full(shape, float("nan")), streams)
    with pytest.raises(ValueError, match="sum of probabilities <= 0"):
        multinomial_rows(torch.zeros(shape), streams)
    with pytest.raises(ValueError, match="random streams for"):
        Sampler(SamplingConfig(), generators=streams)(torch.randn(shape[0] + 1, *shape[1:]))


def test_guidance():
    cond, uncond = torch.tensor([2.0]), torch.tensor([1.0])
    assert guide(cond, uncond, 1.0).item() == 2.0
    assert guide(cond, uncond, 3.0).item() == 4.0


def test_text_encoder_masks_padding_and_dropout_gives_empty_caption():
    torch.manual_seed(0)
    enc = TextEncoder(TextConfig(dim=32, layers=1, heads=2)).eval()
    a = tokenize(["a pink pig jumps"])
    states, valid = enc(a)
    assert valid[0].sum() == 6  # SOT + 4 words + EOT
    empty = tokenize([""])
    dropped = drop_text(torch.cat([a, a]), 1.0)
    assert torch.equal(dropped, torch.cat([empty, empty]))
    assert torch.equal(drop_text(a, 0.0), a)

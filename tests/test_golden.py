"""The decode engine reproduces the tokens sampled before its refactor (tests/golden.py, commit f205592)."""
from __future__ import annotations

import pytest
import torch
from golden import CASES, PATH

GOLDEN = torch.load(PATH)


@pytest.mark.parametrize("name", sorted(CASES))
def test_same_tokens_as_before_the_refactor(name):
    tokens, weights = CASES[name]()
    expected = GOLDEN[name]
    assert weights == pytest.approx(expected["fingerprint"], rel=1e-12), "the model's initial weights changed, not the decoding"
    assert torch.equal(tokens, expected["tokens"].long())


@pytest.mark.parametrize("cached,recomputed", [("nuwa_ar_kv_guided", "nuwa_ar_recompute_guided"),
                                                ("nuwa_ar_kv_text", "nuwa_ar_recompute_text"),
                                                ("nuwa_ar_nocaches", "nuwa_ar_nocaches_recompute"),
                                                ("taming_cached", "taming_recompute"),
                                                ("taming_cached_guided", "taming_recompute_guided")])
def test_kv_cache_and_recomputation_gave_the_same_golden_tokens(cached, recomputed):
    assert torch.equal(GOLDEN[cached]["tokens"], GOLDEN[recomputed]["tokens"])

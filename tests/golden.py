"""Golden token grids: what the decoders sampled before the decode-engine refactor (commit f205592).

Each case builds a tiny randomly initialised model with ``torch.manual_seed`` and samples a small
canvas with a fixed ``torch.Generator`` through the public entry points (``nuwa.generate``,
``FAMILY.generate``, Taming's cached / recomputing samplers). ``tests/data/golden_tokens.pt`` holds
the tokens these recipes produced at commit f205592 (written by ``python tests/golden.py --write``
there) together with a fingerprint of each model's weights, so a mismatch says whether the weights
or the decoding changed. tests/test_golden.py checks that the current code reproduces them exactly.

Since the refactor Taming's samplers take a ``nuwa.core.sampling.Sampler`` (the settings and the
generator) instead of the two separately; the recipes pass the same settings and generator, which
the sampler uses in the same order (one shared stream).
"""
from __future__ import annotations

import argparse
import dataclasses
from pathlib import Path
from typing import Callable

import torch

PATH = Path(__file__).parent / "data" / "golden_tokens.pt"
N_EMBED = 16


def nuwa_model(**changes):
    from nuwa.core.text import TextConfig
    from nuwa.model.config import ModelConfig
    from nuwa.model.decoder import NuwaInfinity

    base = ModelConfig(codebook=N_EMBED, layers=2, dim=32, heads=2, patch=2, extent=(1, 1, 0),
                       text=TextConfig(dim=32, layers=1, heads=2))
    torch.manual_seed(0)
    return NuwaInfinity(dataclasses.replace(base, **changes)).eval()


def baseline_model(name: str):
    from nuwa.commands.families import get

    cfg = {"tokenizer": {"vqgan": {"model": {"n_embed": N_EMBED}}},
           "baselines": {name: {"model": {"layers": 2, "dim": 32, "heads": 2, "window": [4, 4],
                                          "text": {"dim": 32, "layers": 1, "heads": 2}}}}}
    torch.manual_seed(0)
    return get(name).build(cfg).eval()


def fingerprint(module: torch.nn.Module) -> list[float]:
    """Sum of |w| per parameter tensor, sorted: changes when a weight does, not when modules are renamed or reordered."""
    return sorted(float(p.detach().double().abs().sum()) for p in module.parameters())


def captions(batch: int) -> torch.Tensor:
    from nuwa.core.text import tokenize

    return tokenize(["a red sky", "green hills over a lake", "snow", "a desert at dusk"][:batch])


def request(grid, seed=0, batch=2, **kw):
    from nuwa.core.family import GenerationRequest

    return GenerationRequest(grid=grid, batch=batch, progress=False, generator=torch.Generator().manual_seed(seed), **kw)


def sampling(**kw):
    from nuwa.core.sampling import SamplingConfig

    return SamplingConfig(**kw)


def nuwa_case(model_changes: dict, grid, kv_cache=True, text=True, known_box=None, first_frame=False, **req):
    def run():
        from nuwa.model.generate import generate

        model = nuwa_model(**model_changes)
        batch = req.pop("batch", 2)
        kw = dict(req)
        if text and model.text is not None:
            kw["text"] = captions(batch)
        if known_box is not None or first_frame:
            mask = torch.zeros(grid, dtype=torch.bool)
            if first_frame:
                mask[0] = True
            else:
                r0, r1, c0, c1 = known_box
                mask[0, r0:r1, c0:c1] = True
            kw["known"] = torch.randint(0, N_EMBED, (batch, *grid), generator=torch.Generator().manual_seed(7))
            kw["known_mask"] = mask
        with torch.no_grad():
            tokens, _ = generate(model, request(grid, batch=batch, **kw), kv_cache=kv_cache)
        return tokens, fingerprint(model)
    return run


def taming_case(grid, method: str, guidance=1.0, known_rows=0):
    def run():
        from baselines import taming
        from baselines.common import Conditioning
        from nuwa.core.sampling import Sampler

        model = baseline_model("taming")
        text = captions(2)
        if method == "family":
            mask = None
            known = None
            if known_rows:
                mask = torch.zeros(grid, dtype=torch.bool)
                mask[0, :known_rows] = True
                known = torch.randint(0, N_EMBED, (2, *grid), generator=torch.Generator().manual_seed(7))
            tokens = taming.FAMILY.generate(model, request(grid, text=text, known=known, known_mask=mask,
                                                          sampling=sampling(guidance=guidance)))
            return tokens, fingerprint(model)
        canvas = torch.randint(0, N_EMBED, (2, *grid[1:]), generator=torch.Generator().manual_seed(7))
        known = torch.zeros(grid[1:], dtype=torch.bool)
        known[:known_rows] = True
        cond = Conditioning(model, text, 2, guidance)
        sample = taming.sample_cached if method == "cached" else taming.sample_sliding
        tokens = sample(model, canvas, known, cond, Sampler(sampling(guidance=guidance), torch.Generator().manual_seed(5)))
        return tokens, fingerprint(model)
    return run


def maskgit_case(grid, guidance=1.0, known_box=None, steps=4):
    def run():
        from baselines import maskgit

        model = baseline_model("maskgit")
        kw = {}
        if known_box is not None:
            r0, r1, c0, c1 = known_box
            mask = torch.zeros(grid, dtype=torch.bool)
            mask[0, r0:r1, c0:c1] = True
            kw = {"known": torch.randint(0, N_EMBED, (2, *grid), generator=torch.Generator().manual_seed(7)),
                  "known_mask": mask}
        tokens = maskgit.FAMILY.generate(model, request(grid, text=captions(2), sampling=sampling(steps=steps, guidance=guidance), **kw))
        return tokens, fingerprint(model)
    return run


CASES: dict[str, Callable[[], tuple[torch.Tensor, float]]] = {
    # NUWA-Infinity, AR local decoder: KV cache and full recomputation, guidance, pre/post feeding, w/o caches
    "nuwa_ar_kv_guided": nuwa_case({}, (1, 4, 6), sampling=sampling(guidance=3.0, top_k=8)),
    "nuwa_ar_recompute_guided": nuwa_case({}, (1, 4, 6), kv_cache=False, sampling=sampling(guidance=3.0, top_k=8)),
    "nuwa_ar_kv_text": nuwa_case({"extent": (2, 2, 0)}, (1, 4, 12), seed=3),
    "nuwa_ar_recompute_text": nuwa_case({"extent": (2, 2, 0)}, (1, 4, 12), kv_cache=False, seed=3),
    "nuwa_ar_post_notext": nuwa_case({"pos_feed": "post", "text": None}, (1, 6, 8), seed=1, sampling=sampling(top_p=0.9)),
    "nuwa_ar_nocaches": nuwa_case({"caches": False}, (1, 4, 8), seed=2),
    "nuwa_ar_nocaches_recompute": nuwa_case({"caches": False}, (1, 4, 8), kv_cache=False, seed=2),
    "nuwa_ar_batch3": nuwa_case({"text": None}, (1, 4, 4), seed=4, batch=3),
    # NAR and P-NAR (guidance off and on)
    "nuwa_nar": nuwa_case({"local": "nar"}, (1, 4, 6), seed=5),
    "nuwa_nar_guided": nuwa_case({"local": "nar"}, (1, 4, 6), seed=5, sampling=sampling(guidance=2.0)),
    "nuwa_pnar": nuwa_case({"local": "pnar"}, (1, 4, 6), seed=6, sampling=sampling(steps=3)),
    "nuwa_pnar_guided": nuwa_case({"local": "pnar"}, (1, 4, 6), seed=6, sampling=sampling(steps=3, guidance=3.0)),
    "nuwa_pnar_post_nocaches": nuwa_case({"local": "pnar", "pos_feed": "post", "caches": False, "text": None},
                                         (1, 4, 8), seed=7, sampling=sampling(steps=8)),
    "nuwa_pnar_patch4": nuwa_case({"local": "pnar", "patch": 4, "text": None}, (1, 8, 8), seed=8,
                                  sampling=sampling(steps=4, choice_temperature=2.0)),
    # outpainting with known tokens (the composed ADC plan, pre-caching) and video with a known first frame
    "nuwa_ar_outpaint_around": nuwa_case({}, (1, 6, 8), seed=9, known_box=(2, 4, 2, 6)),
    "nuwa_pnar_outpaint_left": nuwa_case({"local": "pnar"}, (1, 4, 8), seed=10, known_box=(0, 4, 4, 8),
                                         sampling=sampling(steps=3)),
    "nuwa_ar_video_first_frame": nuwa_case({"extent": (1, 1, 1), "text": None}, (3, 4, 4), seed=11, first_frame=True),
    "nuwa_nar_video_first_frame": nuwa_case({"extent": (1, 1, 2), "text": None, "local": "nar"}, (3, 4, 4), seed=12,
                                            first_frame=True),
    # Taming: KV cache vs recomputation on the window (equal), the sliding window on a wider canvas, outpainting
    "taming_cached": taming_case((1, 4, 4), "cached", known_rows=1),
    "taming_recompute": taming_case((1, 4, 4), "sliding", known_rows=1),
    "taming_cached_guided": taming_case((1, 4, 4), "cached", guidance=3.0),
    "taming_recompute_guided": taming_case((1, 4, 4), "sliding", guidance=3.0),
    "taming_family_window": taming_case((1, 4, 4), "family"),
    "taming_sliding_wide": taming_case((1, 4, 16), "family"),
    "taming_sliding_tall_guided": taming_case((1, 8, 6), "family", guidance=2.0),
    "taming_outpaint_down": taming_case((1, 6, 8), "family", known_rows=3),
    # MaskGIT: windows over a wider canvas, guidance, outpainting all around
    "maskgit_window": maskgit_case((1, 4, 4)),
    "maskgit_wide": maskgit_case((1, 4, 16), steps=5),
    "maskgit_wide_guided": maskgit_case((1, 6, 10), guidance=2.0),
    "maskgit_outpaint_around": maskgit_case((1, 8, 8), known_box=(2, 6, 2, 6)),
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help=f"(re)write {PATH}")
    args = parser.parse_args()
    golden = {}
    for name, case in CASES.items():
        tokens, weights = case()
        golden[name] = {"tokens": tokens.to(torch.uint8), "fingerprint": weights}
        print(f"{name}: {tuple(tokens.shape)}")
    if args.write:
        PATH.parent.mkdir(exist_ok=True)
        torch.save(golden, PATH)
        print(f"wrote {PATH}")


if __name__ == "__main__":
    main()

"""Training recipe (patch / accumulated loss) through nuwa.core.trainer.fit, the family object, the benchmark."""
from __future__ import annotations

import dataclasses
import json

import pytest
import torch
from test_model import tiny
from torch.utils.data import Dataset

from nuwa.bench.ncp_scaling import ncp_scaling, table
from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.family import GenerationRequest
from nuwa.core.trainer import fit
from nuwa.data.tokens import collate_tokens
from nuwa.model.config import check_config, settings
from nuwa.model.family import FAMILY


class Toy(Dataset):
    """Two repeating 4x4-token pictures with captions: learnable in a few steps."""

    def __init__(self, n: int):
        g = torch.Generator().manual_seed(0)
        self.pictures = torch.randint(0, 16, (2, 1, 4, 4), generator=g)
        self.n = n

    def __len__(self):
        return self.n

    def __getitem__(self, i):
        return {"tokens": self.pictures[i % 2], "caption": ["red", "blue"][i % 2]}


def config(loss: str, **model) -> dict:
    cfg = dataclasses.asdict(tiny(**model))
    return {"nuwa": {"model": cfg, "train": {"epochs": 3, "batch_size": 4, "lr": 3e-3, "loss": loss,
                                             "warmup_ratio": 0.0}}}


@pytest.mark.parametrize("loss,steps_per_batch", [("patch", 4), ("accumulated", 1)])
def test_training_lowers_validation_loss_and_checkpoints_reload(tmp_path, loss, steps_per_batch):
    cfg = config(loss)
    torch.manual_seed(0)
    module = FAMILY.build(cfg)
    trainable = FAMILY.trainable(module, cfg)
    trainable.grid = (1, 4, 4)
    assert trainable.steps_per_batch() == steps_per_batch
    data = Toy(16)
    before = trainable.validation_loss(module, collate_tokens([data[i] for i in range(4)]))
    out = fit(trainable, data, Toy(4), settings(cfg).train, out=tmp_path / "nuwa.pt", kind=FAMILY.kind,
              model_config=FAMILY.model_config(module), seed=0, collate=collate_tokens)
    ckpt = checkpoint.load(out, FAMILY.kind)
    assert ckpt["steps"] == 3 * 4 * steps_per_batch
    assert ckpt["history"][-1]["val_loss"] < before
    again = FAMILY.from_config(ckpt["config"])
    again.load_state_dict(ckpt["model"])
    request = GenerationRequest(grid=(1, 4, 8), batch=2, text=collate_tokens([data[0], data[1]])["text"],
                                generator=torch.Generator().manual_seed(5), progress=False)
    tokens = FAMILY.generate(again.eval(), request)
    assert tokens.shape == (2, 1, 4, 8)


def test_patch_loss_needs_the_grid():
    cfg = config("patch")
    with pytest.raises(RuntimeError, match="grid"):
        FAMILY.trainable(FAMILY.build(cfg), cfg).steps_per_batch()


def test_checkpoint_of_another_family_fails_with_one_line(tmp_path):
    path = tmp_path / "taming.pt"
    checkpoint.save(path, kind="taming", config={}, model={})
    with pytest.raises(UserError, match="holds a 'taming' model") as err:
        checkpoint.load(path, FAMILY.kind)
    assert "\n" not in str(err.value)
    with pytest.raises(UserError, match="unknown config key"):
        FAMILY.from_config({"n_layer": 4})
    with pytest.raises(UserError, match="expected a NUWA-Infinity model"):
        FAMILY.generate(torch.nn.Linear(2, 2), GenerationRequest(grid=(1, 4, 4)))


def test_bad_config_values_are_one_line_errors():
    check_config({"nuwa": {"model": {"extent": [2, 2, 0], "local": "pnar"}}})
    for bad in ({"model": {"pos_feed": "middle"}}, {"model": {"dim": 130, "heads": 4}},
                {"model": {"extent": [2, 2]}}, {"train": {"loss": "sometimes"}}, {"model": {"heads": 0}}):
        with pytest.raises(UserError):
            check_config({"nuwa": bad})
    with pytest.raises(UserError, match="codebook"):
        check_config({"nuwa": {"model": {"codebook": 512}}, "tokenizer": {"vqgan": {"model": {"n_embed": 256}}}})


def test_ncp_scaling_benchmark_reports_flat_cache_and_growing_full_context(tmp_path):
    result = ncp_scaling(tiny(extent=(1, 1, 0)), widths=(1, 2, 4, 8), rows=1, seed=0, isolate=False)
    ncp = {r["width"]: r for r in result["ncp"]}
    full = {r["width"]: r for r in result["full"]}
    assert ncp[8]["peak_cached_patches"] == ncp[4]["peak_cached_patches"] <= 2
    assert full[8]["peak_cached_patches"] == 8 and full[8]["max_context_tokens"] > ncp[8]["max_context_tokens"]
    assert "peak_cache_bytes_8_vs_4" in result["ratios"]["ncp"]
    assert "| ncp | 8 |" in table(result)
    json.dumps(result)

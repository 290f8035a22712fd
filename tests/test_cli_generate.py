"""`nuwa generate {uncond,t2i,outpaint,animate,t2v}`: the contract's sample folder for every task,
given tokens kept, inputs aligned, and every user mistake one line with nothing written."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import torch
from fakes import (
    CODES,
    FACTOR,
    SETS,
    SIZE,
    Unigram,
    error_lines,
    run_cli,
    save_tokenizers,
    use_fakes,
    write_dataset,
    write_image,
)
from PIL import Image

from nuwa.commands.inputs import outpaint_input, read_image
from nuwa.core import checkpoint
from nuwa.core.errors import UserError
from nuwa.core.sample_folders import read_index
from nuwa.tokenizer import load as load_tokenizer

RECORD_KEYS = {"file", "caption", "seed", "task", "model", "width", "height", "frames", "seconds"}


@pytest.fixture(scope="module")
def assets(tmp_path_factory):
    root = tmp_path_factory.mktemp("assets")
    vqgan, pg = save_tokenizers(root)
    ckpts = {}
    for kind, frames in (("nuwa", 1), ("taming", 1), ("video", 3)):
        model = Unigram(CODES)
        model.logits.data = torch.linspace(2, -2, CODES)
        ckpts[kind] = root / f"{kind}.pt"
        checkpoint.save(ckpts[kind], kind="taming" if kind == "taming" else "nuwa", config={"codebook": CODES},
                        model=model.state_dict(),
                        data={"grid": [frames, 4, 4], "image_size": [SIZE, SIZE], "n_embed": CODES})
    return {"vqgan": vqgan, "pg": pg, **ckpts, "root": root}


def gen(assets, task, out, *extra, model="nuwa", ckpt=None):
    ckpt = ckpt or assets["video" if task in ("animate", "t2v") else model]
    args = ["generate", task, "--model", model, "--checkpoint", ckpt, "--tokenizer", assets["vqgan"],
            "--out", out, "--quiet", *SETS, *extra]
    if task in ("animate", "t2v"):
        args += ["--pg-tokenizer", assets["pg"]]
    return args


def records(out):
    return [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]


def test_uncond_writes_the_contract_files_at_any_width(assets, tmp_path, monkeypatch, capsys):
    fakes = use_fakes(monkeypatch)
    out = tmp_path / "uncond"
    rc, stdout, _ = run_cli(gen(assets, "uncond", out, "--n", "3", "--batch-size", "2", "--width", "64", "--seed", "7"), capsys)
    assert rc == 0 and stdout.strip() == str(out)
    tokens = torch.load(out / "tokens.pt")["tokens"]
    assert tokens.shape == (3, 1, 4, 16) and tokens.dtype == torch.long
    recs = records(out)
    assert [r["file"] for r in recs] == [f"images/00000{i}.png" for i in range(3)]
    assert all(set(r) == RECORD_KEYS and r["width"] == 64 and r["height"] == 16 and r["seconds"] > 0 for r in recs)
    assert [r["seed"] for r in recs] == [7, 8, 9]  # sample i draws from its own generator, seeded with seed + i
    assert Image.open(out / recs[0]["file"]).size == (64, 16)
    run = json.loads((out / "run.json").read_text())
    assert run["sampling"]["temperature"] == 1.0 and run["seconds"] > 0 and run["n"] == 3
    assert fakes["nuwa"].requests[0].text is None and fakes["nuwa"].requests[0].grid == (1, 4, 16)
    assert not (out / "masks.pt").exists()
    # decoded pixels are the VQGAN's decoding of the written tokens
    tok = load_tokenizer(assets["vqgan"])
    pixels = ((tok.decode_indices(tokens[:1, 0])[0] + 1) * 127.5).round().clamp(0, 255).byte().permute(1, 2, 0)
    assert np.abs(np.asarray(Image.open(out / recs[0]["file"])).astype(int) - pixels.numpy().astype(int)).max() <= 1


def test_same_seed_same_tokens(assets, tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    for name, seed in (("a", "1"), ("b", "1"), ("c", "2")):
        assert run_cli(gen(assets, "uncond", tmp_path / name, "--n", "2", "--seed", seed), capsys)[0] == 0
    a, b, c = (torch.load(tmp_path / n / "tokens.pt")["tokens"] for n in "abc")
    assert torch.equal(a, b) and not torch.equal(a, c)


def test_t2i_reads_captions_and_sampling_flags(assets, tmp_path, monkeypatch, capsys):
    fakes = use_fakes(monkeypatch)
    captions = tmp_path / "captions.txt"
    captions.write_text("a red sky\n\na green hill\n")
    out = tmp_path / "t2i"
    rc, _, _ = run_cli(gen(assets, "t2i", out, "--captions", captions, "--temperature", "0.5", "--top-k", "3",
                           "--guidance", "2"), capsys)
    assert rc == 0
    assert [r["caption"] for r in records(out)] == ["a red sky", "a green hill"]
    request = fakes["nuwa"].requests[0]
    assert request.text.shape == (2, 77) and request.sampling.top_k == 3 and request.sampling.guidance == 2.0
    assert int(torch.load(out / "tokens.pt")["tokens"].max()) < 3  # top-k 3 of a model that ranks codes 0, 1, 2 first


@pytest.mark.parametrize("direction, width, height", [
    ("right", 48, 16), ("left", 48, 16), ("down", 16, 48), ("up", 16, 48), ("around", 48, 48)])
def test_outpaint_keeps_the_given_tokens(assets, tmp_path, monkeypatch, capsys, direction, width, height):
    use_fakes(monkeypatch)
    image = write_image(tmp_path / "in.png", 21, 19)  # any size: aligned to the 8-pixel patch grid
    out = tmp_path / "outpaint"
    rc, _, err = run_cli(gen(assets, "outpaint", out, "--input", image, "--direction", direction, "--n", "2",
                             "--width", width, "--height", height), capsys)
    assert rc == 0, err
    tokens = torch.load(out / "tokens.pt")["tokens"][:, 0]
    masks = torch.load(out / "masks.pt")
    assert masks.shape == tokens.shape and masks.dtype == torch.bool
    scaled, box = outpaint_input(read_image(image), (height, width), direction, FACTOR * 2)
    expected = load_tokenizer(assets["vqgan"]).encode_to_indices(scaled[None])[0]
    given = ~masks[0]
    assert torch.equal(given, box.token_mask((height, width), FACTOR))
    for sample in tokens:
        assert torch.equal(sample[given].reshape(expected.shape), expected)
    assert masks.any() and records(out)[0]["caption"] == ""


def test_outpaint_from_dataset_uses_the_known_half_and_captions(assets, tmp_path, monkeypatch, capsys):
    fakes = use_fakes(monkeypatch)
    data = write_dataset(tmp_path / "data", n=3)
    out = tmp_path / "outpaint"
    rc, _, err = run_cli(gen(assets, "outpaint", out, "--data", data, "--direction", "down", "--n", "2"), capsys)
    assert rc == 0, err
    assert [r["caption"] for r in records(out)] == ["scene 0", "scene 1"]
    from metrics.io import conditioning_items, list_images
    assert conditioning_items(out) == set(list_images(data / "test")[:2])  # left out of the real set when scored
    masks = torch.load(out / "masks.pt")
    assert masks.shape == (2, 4, 4) and not masks[:, :2].any() and masks[:, 2:].all()  # top half given
    assert fakes["nuwa"].requests[0].text is not None
    rc, _, _ = run_cli(gen(assets, "outpaint", tmp_path / "notext", "--data", data, "--no-text", "--n", "1"), capsys)
    assert rc == 0 and fakes["nuwa"].requests[-1].text is None


def test_animate_first_frame_is_the_input(assets, tmp_path, monkeypatch, capsys):
    fakes = use_fakes(monkeypatch)
    image = write_image(tmp_path / "in.png", 40, 24)
    out = tmp_path / "animate"
    rc, _, err = run_cli(gen(assets, "animate", out, "--input", image, "--frames", "4"), capsys)
    assert rc == 0, err
    frames = sorted((out / "videos" / "000000").glob("*.png"))
    assert [f.name for f in frames] == ["00.png", "01.png", "02.png", "03.png"]
    assert (out / "videos" / "000000.gif").is_file()
    assert records(out)[0]["file"] == "videos/000000" and records(out)[0]["frames"] == 4
    assert torch.load(out / "tokens.pt")["tokens"].shape == (1, 4, 4, 4)
    first = np.asarray(Image.open(frames[0])).astype(int)
    from nuwa.commands.inputs import cover
    from nuwa.tokenizer.decode import to_uint8
    assert np.abs(first - to_uint8(cover(read_image(image), (SIZE, SIZE), 8)).astype(int)).max() == 0
    mask = fakes["nuwa"].requests[0].known_mask
    assert mask[0].all() and not mask[1:].any()


def test_t2v_uses_training_clip_length_and_dataset_captions(assets, tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    data = write_dataset(tmp_path / "clips", n=2, frames=3)
    out = tmp_path / "t2v"
    rc, _, err = run_cli(gen(assets, "t2v", out, "--data", data), capsys)
    assert rc == 0, err
    assert [r["caption"] for r in records(out)] == ["clip 0", "clip 1"]
    assert torch.load(out / "tokens.pt")["tokens"].shape == (2, 3, 4, 4)
    assert len(list((out / "videos" / "000001").glob("*.png"))) == 3


def test_animate_from_dataset_starts_from_each_clips_first_frame(assets, tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    data = write_dataset(tmp_path / "clips", n=2, frames=3)
    out = tmp_path / "animate"
    rc, _, err = run_cli(gen(assets, "animate", out, "--data", data, "--frames", "2"), capsys)
    assert rc == 0, err
    for i in range(2):
        given = Image.open(data / "test" / "clips" / f"{i:06d}" / "00.png")
        assert np.array_equal(np.asarray(Image.open(out / "videos" / f"{i:06d}" / "00.png")), np.asarray(given))
    assert torch.load(out / "tokens.pt")["tokens"].shape == (2, 2, 4, 4)
    from metrics.io import conditioning_items, list_videos
    assert conditioning_items(out) == {p.resolve() for p in list_videos(data / "test")[:2]}


def test_taming_refusal_is_one_line_and_writes_nothing(assets, tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    image = write_image(tmp_path / "in.png", 16, 16)
    out = tmp_path / "refused"
    rc, _, err = run_cli(gen(assets, "outpaint", out, "--input", image, "--direction", "left", "--width", "32",
                             model="taming"), capsys)
    assert rc == 2 and error_lines(err) == ["error: taming generates in raster order and cannot extend left or up; use right or down"]
    assert not out.exists() and not list(tmp_path.glob(".refused*"))


@pytest.mark.parametrize("case", ["tiny_input", "canvas_too_small", "direction", "other_family", "no_tokenizer",
                                  "corrupt_input", "bad_width", "no_text", "no_input"])
def test_bad_inputs_are_one_line_with_no_output(assets, tmp_path, monkeypatch, capsys, case):
    use_fakes(monkeypatch)
    out = tmp_path / "out"
    good = write_image(tmp_path / "good.png", 16, 16)
    (tmp_path / "corrupt.png").write_bytes(b"\x89PNG broken")
    args = {
        "tiny_input": gen(assets, "outpaint", out, "--input", write_image(tmp_path / "tiny.png", 5, 30), "--width", "32"),
        "canvas_too_small": gen(assets, "outpaint", out, "--input", good),
        "direction": gen(assets, "outpaint", out, "--input", good, "--direction", "sideways", "--width", "32"),
        "other_family": gen(assets, "uncond", out, model="taming", ckpt=assets["nuwa"]),
        "no_tokenizer": gen(assets, "uncond", out),
        "corrupt_input": gen(assets, "outpaint", out, "--input", tmp_path / "corrupt.png", "--width", "32"),
        "bad_width": gen(assets, "uncond", out, "--width", "20"),
        "no_text": gen(assets, "t2i", out),
        "no_input": gen(assets, "outpaint", out, "--width", "32"),
    }[case]
    if case == "no_tokenizer":
        args[args.index("--tokenizer") + 1] = tmp_path / "missing_vqgan.pt"
    rc, _, err = run_cli(args, capsys)
    expected = {"tiny_input": "smaller than one patch", "canvas_too_small": "nothing is left to generate",
                "direction": "unknown direction 'sideways'", "other_family": "holds a 'nuwa' model, expected 'taming'",
                "no_tokenizer": "missing_vqgan.pt", "corrupt_input": "not a readable image",
                "bad_width": "--width 20 is not a positive multiple", "no_text": "t2i needs text",
                "no_input": "outpaint needs an input image"}[case]
    lines = error_lines(err)
    assert rc == 2 and len(lines) == 1 and expected in lines[0] and "Traceback" not in err
    assert not out.exists()


TINY = ["--set", "nuwa.model.layers=1", "--set", "nuwa.model.dim=32", "--set", "nuwa.model.heads=2",
        "--set", "nuwa.model.text.dim=32", "--set", "nuwa.model.text.layers=1", "--set", "nuwa.model.text.heads=2",
        *[x for name in ("taming", "maskgit") for x in ("--set", f"baselines.{name}.model.n_embed={CODES}",
                                                          "--set", f"baselines.{name}.model.window=[4,4]")]]


@pytest.mark.parametrize("model, direction, width, height", [
    ("nuwa", "left", 32, 16), ("maskgit", "up", 16, 32), ("taming", "right", 32, 16)])
def test_real_families_keep_the_given_tokens(assets, tmp_path, monkeypatch, capsys, model, direction, width, height):
    from nuwa.commands import cli
    from nuwa.commands.families import get
    from nuwa.core.config import REPO_ROOT, load_config

    monkeypatch.setattr(cli, "COMMANDS", ["nuwa.commands.generate"])
    cfg = load_config([REPO_ROOT / "config" / "config.yaml"], [x for x in SETS + TINY if x != "--set"])
    fam = get(model)
    torch.manual_seed(0)
    module = fam.build(cfg)
    ckpt = tmp_path / f"{model}.pt"
    checkpoint.save(ckpt, kind=fam.kind, config=fam.model_config(module), model=module.state_dict(),
                    data={"grid": [1, 4, 4], "image_size": [SIZE, SIZE], "n_embed": CODES})
    image = write_image(tmp_path / "in.png", 16, 16)
    out = tmp_path / "out"
    args = gen(assets, "outpaint", out, "--input", image, "--direction", direction, "--width", width, "--height", height,
               "--caption", "a hill", "--guidance", "1.5", *TINY, model=model, ckpt=ckpt)
    rc, _, err = run_cli(args, capsys)
    assert rc == 0, err
    tokens, masks = torch.load(out / "tokens.pt")["tokens"][0, 0], torch.load(out / "masks.pt")[0]
    expected = load_tokenizer(assets["vqgan"]).encode_to_indices(read_image(image)[None])[0]
    assert torch.equal(tokens[~masks].reshape(4, 4), expected) and masks.sum() == 4 * 4
    if model == "taming":  # the real Taming refuses left: one line, nothing written
        refused = tmp_path / "refused"
        rc, _, err = run_cli([{"right": "left", str(out): str(refused)}.get(str(a), a) for a in args], capsys)
        assert rc == 2 and len(error_lines(err)) == 1 and "Taming" in error_lines(err)[0] and not refused.exists()


WALL_CLOCK = {"seconds", "seconds_per_sample", "command", "index_sha256"}  # differ between any two runs


def folder_contents(out):
    """Every file's bytes, samples.jsonl without the per-sample wall time, run.json without wall-clock fields."""
    files = {p.relative_to(out).as_posix(): p.read_bytes() for p in sorted(out.rglob("*"))
             if p.is_file() and p.name not in ("samples.jsonl", "run.json")}
    recs = [{k: v for k, v in r.items() if k != "seconds"} for r in records(out)]
    run = {k: v for k, v in json.loads((out / "run.json").read_text()).items() if k not in WALL_CLOCK}
    return files, recs, run


@pytest.mark.parametrize("task,extra", [("uncond", ()), ("outpaint", ("--direction", "right", "--width", "32")),
                                        ("t2v", ("--caption", "a pig", "--frames", "2"))])
def test_shards_merged_equal_one_process(assets, tmp_path, monkeypatch, capsys, task, extra):
    use_fakes(monkeypatch)
    if task == "outpaint":
        extra = (*extra, "--input", write_image(tmp_path / "in.png", 16, 16))
    common = ("--n", "5", "--batch-size", "2", "--seed", "4", *extra)
    whole = tmp_path / "whole"
    assert run_cli(gen(assets, task, whole, *common), capsys)[0] == 0
    shards = [tmp_path / f"shard{i}" for i in (1, 0)]  # batches {1, 2} and {0}: 3 and 2 samples
    for i, out in zip((1, 0), shards):
        assert run_cli(gen(assets, task, out, *common, "--shard", f"{i}/2"), capsys)[0] == 0
    assert len(records(shards[0])) == 3 and records(shards[0])[0]["seed"] == 6
    merged = tmp_path / "merged"
    rc, stdout, _ = run_cli(["samples", "merge", "--out", merged, *shards], capsys)
    assert rc == 0 and stdout.strip() == str(merged)
    assert folder_contents(merged) == folder_contents(whole)
    assert len(read_index(merged)) == 5


def test_a_lone_or_incomplete_shard_is_one_line(assets, tmp_path, monkeypatch, capsys):
    use_fakes(monkeypatch)
    common = ("--n", "4", "--batch-size", "2")
    shard = tmp_path / "shard0"
    assert run_cli(gen(assets, "uncond", shard, *common, "--shard", "0/2"), capsys)[0] == 0
    with pytest.raises(UserError, match=r"is shard 0/2 of a sample set; join the shards with `nuwa samples merge"):
        read_index(shard)
    other = tmp_path / "other"
    assert run_cli(gen(assets, "uncond", other, *common, "--seed", "9", "--shard", "1/2"), capsys)[0] == 0
    for argv, message in (
            (["samples", "merge", "--out", tmp_path / "m", shard], r"shards 0/2 are not shards 0..1 of 2"),
            (["samples", "merge", "--out", tmp_path / "m", shard, other], r"other settings than .*shard0 \(seed: 9 vs 0\)"),
            (gen(assets, "uncond", tmp_path / "x", *common, "--shard", "2/3"), r"make only 2 batches; use at most 2"),
            (gen(assets, "uncond", tmp_path / "x", *common, "--shard", "2/2"), r"--shard '2/2': write I/N")):
        rc, _, err = run_cli(argv, capsys)
        assert rc == 2 and len(error_lines(err)) == 1 and re.search(message, err), err
    last = tmp_path / "shard1"
    assert run_cli(gen(assets, "uncond", last, *common, "--shard", "1/2"), capsys)[0] == 0
    (last / "tokens.pt").write_bytes((last / "tokens.pt").read_bytes()[:50])  # a damaged shard
    rc, _, err = run_cli(["samples", "merge", "--out", tmp_path / "m", shard, last], capsys)
    assert rc == 2 and len(error_lines(err)) == 1 and re.search(r"sample tokens .*shard1/tokens.pt is unreadable", err), err
    assert not (tmp_path / "m").exists() and not (tmp_path / "x").exists()

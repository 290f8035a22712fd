"""Fault tolerance: damaged files are refused or rebuilt, full disks leave nothing half-written, bad inputs are one line.

The fast tests here check each defence on its own, in-process. The slow tests run the
fault-injection suite (`python -m bench.faults`, docs/reliability.md) with fewer kills: real `nuwa`
processes SIGKILLed during training and checkpoint writes, Snakemake interrupted, every kind of
intermediate file damaged, a full tmpfs, two processes sharing a work directory, the bad-input matrix.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from nuwa.core.errors import UserError
from nuwa.core.io import atomic_path, read_json, torch_load, torch_save, write_json

ROOT = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- content hashes
def flip(path: Path, offset: int, bit: int = 0) -> None:
    data = bytearray(path.read_bytes())
    data[offset] ^= 1 << bit
    path.write_bytes(bytes(data))


def test_a_flipped_bit_in_tensor_data_is_refused_not_loaded(tmp_path):
    path = tmp_path / "model.pt"
    weights = torch.arange(4096, dtype=torch.float32)
    torch_save({"kind": "toy", "model": {"w": weights}}, path)
    assert torch.equal(torch_load(path)["model"]["w"], weights) and "content_sha256" not in torch_load(path)
    start = path.read_bytes().find(weights.numpy().tobytes()[:64])  # the tensor's bytes inside the zip
    flip(path, start + 1000, 3)
    with pytest.raises(UserError, match=rf"^checkpoint {path} is corrupt .*; delete it and rerun") as exc:
        torch_load(path)
    assert "\n" not in str(exc.value)


@pytest.mark.parametrize("cut", [0, 100, 0.5])
def test_a_truncated_file_is_one_line_naming_it(tmp_path, cut):
    path = tmp_path / "train.pt"
    torch_save({"tokens": torch.zeros(8, 1, 4, 4, dtype=torch.int32)}, path)
    data = path.read_bytes()
    path.write_bytes(data[: int(cut * len(data)) if isinstance(cut, float) else cut])
    with pytest.raises(UserError, match=rf"^token shard {path} is unreadable") as exc:
        torch_load(path, "token shard")
    assert "\n" not in str(exc.value)


def test_json_with_a_content_hash_refuses_an_edited_number(tmp_path):
    path = tmp_path / "fid.json"
    write_json(path, {"metric": "fid", "value": 12.5, "ci_low": 11.0, "ci_high": 14.0, "n": 64}, checksum=True)
    assert read_json(path, "metric result")["value"] == 12.5
    path.write_text(path.read_text().replace("12.5", "92.5"))
    with pytest.raises(UserError, match="is corrupt"):
        read_json(path, "metric result")


def test_metric_results_are_checked_before_a_table_uses_them(tmp_path):
    from metrics.io import read_metric

    path = tmp_path / "is.json"
    write_json(path, {"metric": "is", "value": 3.0, "ci_low": 2.5, "ci_high": 3.5, "n": 64}, checksum=True)
    assert read_metric(path, "is")["value"] == 3.0
    with pytest.raises(UserError, match="holds 'is', not 'fid'"):
        read_metric(path, "fid")
    write_json(path, {"metric": "is", "value": float("nan"), "ci_low": 2.5, "ci_high": 3.5, "n": 64})
    with pytest.raises(UserError, match="no finite value"):
        read_metric(path, "is")


# ---------------------------------------------------------------- feature cache
def test_a_damaged_feature_cache_entry_is_recomputed(tmp_path):
    from metrics.features import cached

    calls = []

    def compute() -> np.ndarray:
        calls.append(1)
        return np.arange(12, dtype=np.float32).reshape(3, 4)

    first = cached(tmp_path, "key", compute)
    (entry,) = tmp_path.glob("key.*.npy")
    assert entry.name == f"key.{hashlib.sha256(entry.read_bytes()).hexdigest()[:16]}.npy"
    assert np.array_equal(cached(tmp_path, "key", compute), first) and len(calls) == 1
    whole = entry.read_bytes()
    flip(entry, entry.stat().st_size - 3)  # a bit of the last feature value: still a loadable .npy
    assert not np.array_equal(np.load(entry), first)
    again = cached(tmp_path, "key", compute)
    assert np.array_equal(again, first) and len(calls) == 2
    (fresh,) = tmp_path.glob("key.*.npy")
    assert fresh.read_bytes() == whole  # the damaged entry was replaced by a whole one


# ---------------------------------------------------------------- sample folders
def sample_folder(tmp_path: Path) -> Path:
    from nuwa.core.sample_folders import SampleWriter

    out = tmp_path / "samples"
    writer = SampleWriter(out, task="t2i", model="nuwa")
    for i in range(3):
        path = writer.image_path(i)
        Image.fromarray(np.full((8, 8, 3), 40 * i, np.uint8)).save(path)
        writer.record(path, caption=f"sky {i}", seed=0, width=8, height=8, frames=1, seconds=0.5)
    writer.finish(torch.zeros(3, 1, 1, 1), {"n": 3})
    return out


def test_a_samples_index_changed_after_writing_is_refused(tmp_path):
    from metrics.io import captioned
    from nuwa.core.sample_folders import read_index

    out = sample_folder(tmp_path)
    assert [r["caption"] for r in read_index(out)] == ["sky 0", "sky 1", "sky 2"]
    assert len(captioned(out)) == 3
    index = out / "samples.jsonl"
    lines = index.read_text().splitlines(keepends=True)
    index.write_text("".join(lines[:2]))  # truncated at a line boundary: still valid JSONL
    with pytest.raises(UserError, match="does not match .*run.json"):
        captioned(out)
    index.write_text("".join(lines).replace("sky 1", "sea 1"))
    with pytest.raises(UserError, match="does not match"):
        read_index(out)


def test_every_image_needs_exactly_one_caption_row(tmp_path):
    from metrics.io import captioned

    out = sample_folder(tmp_path)
    rows = [json.loads(line) for line in (out / "samples.jsonl").read_text().splitlines()]
    missing, twice = tmp_path / "missing.jsonl", tmp_path / "twice.jsonl"
    missing.write_text("".join(json.dumps(r) + "\n" for r in rows[1:]))
    twice.write_text("".join(json.dumps(r) + "\n" for r in rows + rows[:1]))
    with pytest.raises(UserError, match=r"has no row for 1 image\(s\)"):
        captioned(out, missing)
    with pytest.raises(UserError, match="lists an image twice"):
        captioned(out, twice)


# ---------------------------------------------------------------- image modes
def test_image_modes_become_the_right_8_bit_rgb(tmp_path):
    from nuwa.commands.inputs import read_image
    from nuwa.core.io import read_rgb

    grey16 = (np.arange(64, dtype=np.uint16).reshape(8, 8) * 1024 + 512)
    Image.fromarray(grey16).save(tmp_path / "g16.png")
    want = np.rint(grey16 * 255.0 / 65535).astype(np.uint8)
    assert np.array_equal(read_rgb(tmp_path / "g16.png")[0].numpy(), want)  # PIL alone clips to 255
    rgb = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    Image.fromarray(rgb).convert("RGBA").save(tmp_path / "opaque.png")
    Image.fromarray(rgb).convert("P").save(tmp_path / "palette.png")
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "cmyk.jpg", quality=100)
    assert np.array_equal(read_rgb(tmp_path / "opaque.png").permute(1, 2, 0).numpy(), rgb)
    palette = Image.open(tmp_path / "palette.png")
    assert np.array_equal(read_rgb(tmp_path / "palette.png").permute(1, 2, 0).numpy(), np.asarray(palette.convert("RGB")))
    assert np.abs(read_rgb(tmp_path / "cmyk.jpg").permute(1, 2, 0).numpy().astype(int) - rgb).mean() < 8
    assert torch.allclose(read_image(tmp_path / "opaque.png"), torch.from_numpy(rgb).permute(2, 0, 1) / 127.5 - 1)
    see_through = Image.fromarray(rgb).convert("RGBA")
    see_through.putpixel((0, 0), (0, 0, 0, 0))
    see_through.save(tmp_path / "alpha.png")
    with pytest.raises(UserError, match="has transparent pixels"):
        read_image(tmp_path / "alpha.png")


# ---------------------------------------------------------------- full disk, stale temporaries, concurrency
def test_a_full_disk_leaves_nothing_under_the_final_name(tmp_path, monkeypatch):
    target = tmp_path / "model.pt"
    torch_save({"model": {"w": torch.ones(2)}}, target)
    before = target.read_bytes()

    def full(obj, f, *args, **kwargs):
        Path(f).write_bytes(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(UserError, match=rf"^no space left on the device of {target} "):
        torch_save({"model": {"w": torch.zeros(2)}}, target)
    assert target.read_bytes() == before and sorted(p.name for p in tmp_path.iterdir()) == ["model.pt"]


def test_temporaries_of_dead_writers_are_removed_by_the_next_write(tmp_path):
    from nuwa.core import io

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    pid = int(dead.stdout)
    stale = tmp_path / f".model.pt.{io._HOST}-{pid}.abc123.tmp.resume"
    alive = tmp_path / f".model.pt.{io._HOST}-{os.getpid()}.def456.tmp.resume"
    other = tmp_path / f".model.pt.otherhost-{pid}.ghi789.tmp.resume"
    for p in (stale, alive, other):
        p.write_bytes(b"half a checkpoint")
    torch_save({"step": 1}, tmp_path / "model.pt.resume")
    assert not stale.exists() and alive.exists() and other.exists()


def test_two_writers_of_one_folder_both_succeed_and_one_whole_folder_remains(tmp_path):
    final = tmp_path / "samples"
    outer = atomic_path(final, is_dir=True)
    first = outer.__enter__()
    (first / "a.txt").write_text("first")
    with atomic_path(final, is_dir=True) as second:  # the other process finishes while the first still writes
        (second / "b.txt").write_text("second")
    outer.__exit__(None, None, None)
    assert sorted(p.name for p in final.iterdir()) == ["a.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["samples"]


# ---------------------------------------------------------------- config conflicts
def test_config_check_catches_a_patch_that_does_not_tile_the_token_grid(capsys):
    from nuwa.commands.cli import main

    assert main(["config", "check", "--set", "nuwa.model.patch=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "nuwa.model.patch=3 does not divide the 8x8 token grid of data.lhqc" in err[0]
    assert "one of [1, 2, 4, 8]" in err[0]
    assert main(["config", "check", "--set", "nuwa.train.lr=-1"]) == 2
    assert "lr must be > 0" in capsys.readouterr().err


# ---------------------------------------------------------------- the suite itself (slow)
@pytest.fixture(scope="module")
def lab(tmp_path_factory):
    from bench.faults.lab import Lab

    return Lab(tmp_path_factory.mktemp("faults") / "lab").build()


def all_green(rows: list[dict]) -> None:
    failed = [r for r in rows if not r["ok"]]
    assert rows and not failed, json.dumps(failed, indent=1, default=str)[:4000]


@pytest.mark.slow
def test_killed_training_resumes_bit_identical(lab, tmp_path):
    from bench.faults.kills import run_kills

    rows = run_kills(lab, tmp_path, seed=0, kills=3)
    all_green(rows)
    assert all(r["kills"] == 3 and r["mid_write"] == 1 for r in rows)


@pytest.mark.slow
def test_damaged_intermediate_files_are_refused_or_rebuilt(lab, tmp_path):
    from bench.faults.corrupt import run_corruptions

    all_green(run_corruptions(lab, tmp_path, seed=0))


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="mounting a tmpfs needs root")
def test_a_full_disk_is_one_line_and_leaves_only_whole_files(lab, tmp_path):
    from bench.faults.disk import run_enospc

    all_green(run_enospc(lab, tmp_path, seed=0, levels=2))


@pytest.mark.slow
def test_two_processes_on_one_work_directory(lab, tmp_path):
    from bench.faults.disk import run_concurrent

    all_green(run_concurrent(lab, tmp_path, seed=0, pairs=1))


@pytest.mark.slow
def test_bad_input_matrix(lab, tmp_path):
    from bench.faults.inputs import run_inputs

    all_green(run_inputs(lab, tmp_path))


@pytest.mark.slow
def test_interrupted_workflow_recomputes_nothing_finished_and_ends_identical(tmp_path):
    from bench.faults.workflow import run_workflow

    all_green(run_workflow(tmp_path, seed=0, interrupts=1))

"""The bad-input matrix: every CLI subcommand that reads user files, against the inputs users get wrong.

Each case runs one `nuwa ...` command (as a subprocess, the lab's config) with one bad input and
must exit with status 2 and exactly one ``error:`` line on stderr that names the problem (the file,
key or value), with no traceback and nothing written under the command's output path. Inputs a
reader should accept rather than refuse (16-bit, palette, CMYK images) are checked for correct
pixels by tests/test_faults.py instead.
"""
from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image

from bench.faults.lab import Lab, Result, run

Args = Callable[[Path], list[str]]
OUT = "@OUT@"  # in a case's arguments: its output path, <case folder>/out


@dataclass
class Case:
    command: str          # the subcommand, e.g. "nuwa generate outpaint --input"
    problem: str          # what is wrong
    args: Args            # case folder (outputs go there) -> the command's arguments
    names: str            # a word the error line must contain (the file name, key, ...)
    out: str = "out"      # the output path under the case folder that must not exist afterwards
    settings: bool = True  # run with the lab's --config/--set


# ---------------------------------------------------------------- bad files
def image(path: Path, mode: str = "RGB", size: int = 64) -> Path:
    rng = np.random.default_rng(0)
    rgb = Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8))
    img = {"RGB": rgb, "RGBA": rgb.convert("RGBA"), "CMYK": rgb.convert("CMYK"), "P": rgb.convert("P")}[mode]
    if mode == "RGBA":
        img.putalpha(Image.fromarray((np.arange(size * size).reshape(size, size) % 256).astype(np.uint8)))
    img.save(path)
    return path


def truncated(path: Path) -> Path:
    image(path.with_suffix(".full" + path.suffix))
    data = path.with_suffix(".full" + path.suffix).read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def text(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


BAD_UTF8 = b"a red sky\n\xff\xfe broken \xc3\x28\n"


def bad_image_files(d: Path) -> dict[str, Path]:
    """problem -> a file with that problem (written into ``d``)."""
    d.mkdir(parents=True, exist_ok=True)
    return {
        "missing path": d / "missing.png",
        "empty file": text(d / "empty.png", b""),
        "not an image": text(d / "notes.png", b"these are words, not pixels\n"),
        "truncated JPEG": truncated(d / "cut.jpg"),
        "truncated PNG": truncated(d / "cut.png"),
        "RGBA with transparent pixels": image(d / "alpha.png", "RGBA"),
        "image smaller than one patch": image(d / "tiny.png", size=8),
    }


# ---------------------------------------------------------------- the matrix
def cases(lab: Lab, d: Path) -> list[Case]:
    images = bad_image_files(d / "images")
    out = ["--out", OUT]
    gen = ["generate", "outpaint", "--model", "nuwa", "--checkpoint", str(lab.model["nuwa"]), "--tokenizer", str(lab.vqgan),
           "--caption", "a sky", "--width", "128", "--height", "64", "--quiet", *out]
    matrix = [Case("nuwa generate outpaint --input", problem, lambda _, p=p: [*gen, "--input", str(p)],
                   "one patch" if problem == "image smaller than one patch" else p.name)  # the size check names the rule
              for problem, p in images.items()]
    matrix += [Case("nuwa generate animate --input", "not an image", lambda _: [
        "generate", "animate", "--model", "nuwa", "--checkpoint", str(lab.model["nuwa"]), "--tokenizer", str(lab.vqgan),
        "--pg-tokenizer", str(lab.vqgan), "--input", str(images["not an image"]), "--quiet", *out], "notes.png")]

    t2i = ["generate", "t2i", "--model", "nuwa", "--tokenizer", str(lab.vqgan), "--quiet", *out]
    captions = {"missing path": d / "nocaptions.txt", "empty file": text(d / "empty.txt", b"\n\n"),
                "bad UTF-8": text(d / "latin.txt", BAD_UTF8)}
    matrix += [Case("nuwa generate t2i --captions", problem, lambda _, p=p: [*t2i, "--checkpoint", str(lab.model["nuwa"]),
                                                                            "--captions", str(p)], p.name)
               for problem, p in captions.items()]
    matrix += [
        Case("nuwa generate t2i --checkpoint", "checkpoint of the wrong model family",
             lambda _: [*t2i, "--checkpoint", str(lab.model["taming"]), "--caption", "a sky"], "taming"),
        Case("nuwa generate t2i --checkpoint", "a tokenizer checkpoint instead of a model",
             lambda _: [*t2i, "--checkpoint", str(lab.vqgan), "--caption", "a sky"], "vqgan"),
        Case("nuwa generate t2i --checkpoint", "not a checkpoint",
             lambda _: [*t2i, "--checkpoint", str(captions["bad UTF-8"]), "--caption", "a sky"], "latin.txt"),
        Case("nuwa generate t2i --tokenizer", "tokenizer of another codebook (incompatible config)",
             lambda _: [*t2i, "--checkpoint", str(lab.model["nuwa"]), "--caption", "a sky",
                        "--tokenizer", str(other_vqgan(lab, d))], "codes"),
    ]

    train = ["train", "--model", "nuwa", "--val", str(lab.shard["test"]), "--out", f"{OUT}/model.pt"]
    matrix += [
        Case("nuwa train --train", "missing path", lambda _: [*train, "--train", str(d / "none.pt")], "none.pt"),
        Case("nuwa train --train", "empty file", lambda _: [*train, "--train", str(text(d / "empty.pt", b""))], "empty.pt"),
        Case("nuwa train --train", "a checkpoint instead of a token shard",
             lambda _: [*train, "--train", str(lab.model["nuwa"])], "model.pt"),
        Case("nuwa train --train", "shard of another codebook (incompatible config)",
             lambda _: [*train, "--train", str(lab.shard["train"]), "--set", "nuwa.model.codebook=128"], "codebook"),
        Case("nuwa train (resume)", "resume checkpoint of an incompatible config",
             lambda c: [*train_resume(lab, c), "--set", "nuwa.train.lr=0.005"], "another run", out="run/model.pt"),
    ]
    for key, problem in (("nuwa.model.depth=3", "unknown config key"), ("nuwa.model.layers=two", "wrong type"),
                         ("nuwa.train.lr=-1", "out-of-range value"), ("nuwa.model.extent=[1, -1, 0]", "out-of-range value"),
                         ("nuwa.model.patch=3", "cross-field conflict (patch does not tile the token grid)"),
                         ("nuwa.model.dim=31", "cross-field conflict (dim not divisible by heads)")):
        name = key.split("=")[0].split(".")[-1]
        matrix += [Case("nuwa config check", problem, lambda _, k=key: ["config", "check", "--set", k], name, out=""),
                   Case("nuwa train --set", problem, lambda _, k=key: [*train, "--train", str(lab.shard["train"]), "--set", k],
                        name)]
    matrix += [
        Case("nuwa config check --config", "missing path", lambda _: ["config", "check", "--config", str(d / "no.yaml")],
             "no.yaml", out="", settings=False),
        Case("nuwa config check --config", "not YAML", lambda _: ["config", "check", "--config",
                                                                  str(text(d / "bad.yaml", b"a: [1, 2\n"))], "bad.yaml",
             out="", settings=False),
        Case("nuwa config check --config", "bad UTF-8", lambda _: ["config", "check", "--config",
                                                                   str(text(d / "latin.yaml", b"seed: 1 # \xff\n"))],
             "latin.yaml", out="", settings=False),
    ]

    encode = ["tokenizer", "encode", "--data", str(lab.data), "--split", "test", "--out", f"{OUT}/test.pt"]
    matrix += [
        Case("nuwa tokenizer encode --tokenizer", "a model checkpoint instead of a tokenizer",
             lambda _: [*encode, "--tokenizer", str(lab.model["nuwa"])], "nuwa"),
        Case("nuwa tokenizer encode --tokenizer", "truncated checkpoint",
             lambda _: [*encode, "--tokenizer", str(cut_copy(lab.vqgan, d / "vqgan_cut.pt"))], "vqgan_cut.pt"),
        Case("nuwa tokenizer encode --data", "missing path",
             lambda _: ["tokenizer", "encode", "--tokenizer", str(lab.vqgan), "--data", str(d / "nodata"), "--split", "test",
                        "--out", f"{OUT}/t.pt"], "nodata"),
        Case("nuwa tokenizer encode --data", "dataset with a corrupt image",
             lambda _: ["tokenizer", "encode", "--tokenizer", str(lab.vqgan), "--data", str(broken_dataset(lab, d)),
                        "--split", "test", "--out", f"{OUT}/t.pt"], "000003.png"),
        Case("nuwa tokenizer train --data", "empty folder",
             lambda _: ["tokenizer", "train", "vqgan", "--data", str(empty_dir(d / "emptydata")), "--out",
                        f"{OUT}/v.pt"], "emptydata"),
        Case("nuwa tokenizer decode --tokens", "not a tokens file",
             lambda _: ["tokenizer", "decode", "--tokenizer", str(lab.vqgan), "--tokens", str(lab.vqgan), *out], "tokens"),
        Case("nuwa tokenizer import-taming --config", "not YAML",
             lambda _: ["tokenizer", "import-taming", "--config", str(text(d / "taming.yaml", b"model: [\n")),
                        "--ckpt", str(lab.vqgan), "--out", f"{OUT}/v.pt"], "taming.yaml", settings=False),
    ]

    def fid(backbone: str = str(lab.proxy["image"]), fake: Path = lab.samples / "images") -> list[str]:
        return ["eval", "fid", "--backbone", backbone, "--json", f"{OUT}/fid.json", "--set", f"workdir={d / 'work'}",
                "--real", str(lab.data / "test"), "--fake", str(fake)]

    matrix += [
        Case("nuwa eval fid --fake", "missing path", lambda _: fid(fake=d / "nofolder"), "nofolder"),
        Case("nuwa eval fid --fake", "empty folder", lambda _: fid(fake=empty_dir(d / "emptyfolder")), "emptyfolder"),
        *(Case("nuwa eval fid --fake", f"folder with {problem}", lambda _, p=p: fid(fake=folder_with(lab, d, p)), p.name)
          for problem, p in images.items() if problem not in ("missing path", "image smaller than one patch")),
        Case("nuwa eval fid --backbone", "checkpoint of the wrong kind (a CLIP proxy)",
             lambda _: fid(backbone=str(lab.proxy["clip"])), "proxy_clip"),
        Case("nuwa eval fid --backbone inception", "weights file with the wrong hash",
             lambda _: [*fid(backbone="inception"), "--set", f"metrics.inception.weights={fake_inception(d)}"], "hash"),
    ]
    clip = ["eval", "clip-sim", "--backbone", str(lab.proxy["clip"]), "--json", f"{OUT}/clip.json"]
    for problem, edit in (("captions file with a missing entry", lambda rows: rows[1:]),
                          ("captions file with an extra entry", lambda rows: rows + [{**rows[0], "file": "images/999999.png"}])):
        matrix.append(Case("nuwa eval clip-sim --captions", problem,
                           lambda _, e=edit, pr=problem: [*clip, "--fake", str(lab.samples),
                                                         "--captions", str(edited_index(lab, d, pr, e))], "captions"))
    matrix += [
        Case("nuwa eval clip-sim --captions", "bad UTF-8", lambda _: [*clip, "--fake", str(lab.samples), "--captions",
                                                                     str(text(d / "latin.jsonl", BAD_UTF8))], "latin.jsonl"),
        Case("nuwa eval compare", "not a metric result",
             lambda _: ["eval", "compare", str(text(d / "notmetric.json", b'{"a": 1}\n')), str(lab.metric["fid"]),
                        "--lower-is-better"], "notmetric.json", settings=False, out=""),
        Case("nuwa eval compare", "results of two different metrics",
             lambda _: ["eval", "compare", str(lab.metric["clip-sim"]), str(lab.metric["fid"]), "--lower-is-better"],
             "fid", settings=False, out=""),
    ]
    matrix += import_cases(d)
    return matrix


def import_cases(d: Path) -> list[Case]:
    """Data import (`nuwa data render` of real folders, nuwa/data/adapters.py)."""
    photos = d / "photos"
    if not photos.is_dir():
        photos.mkdir(parents=True)
        for i in range(4):
            image(photos / f"p{i}.png")
    good = text(d / "photos.jsonl", "".join(json.dumps({"file": f"p{i}.png", "caption": "sky"}) + "\n"
                                             for i in range(4)).encode())
    render = ["data", "render", "lhqc", "--out", OUT, "--set", "data.lhqc.source=folder",
              "--set", "data.lhqc.n_test=1"]
    videos = d / "videos"
    if not videos.is_dir():
        for clip in ("clip0", "clip1"):
            (videos / clip).mkdir(parents=True)
            for f in range(2):
                image(videos / clip / f"{f:02d}.png")
    return [
        Case("nuwa data render (folder)", "missing path", lambda _: [*render, "--set", f"data.lhqc.root={d / 'nophotos'}",
                                                                     "--set", f"data.lhqc.captions={good}"], "nophotos"),
        Case("nuwa data render (folder)", "captions file missing", lambda _: [
            *render, "--set", f"data.lhqc.root={photos}", "--set", f"data.lhqc.captions={d / 'nocaps.jsonl'}"], "nocaps.jsonl"),
        Case("nuwa data render (folder)", "captions bad UTF-8", lambda _: [
            *render, "--set", f"data.lhqc.root={photos}", "--set",
            f"data.lhqc.captions={text(d / 'latin_caps.jsonl', BAD_UTF8)}"], "latin_caps.jsonl"),
        Case("nuwa data render (folder)", "captions line malformed", lambda _: [
            *render, "--set", f"data.lhqc.root={photos}", "--set",
            f"data.lhqc.captions={text(d / 'bad_caps.jsonl', b'{not json}' + chr(10).encode())}"], "bad_caps.jsonl"),
        Case("nuwa data render (folder)", "video with too few frames", lambda _: [
            "data", "render", "lhqv", "--out", OUT, "--set", "data.lhqv.source=folder", "--set",
            "data.lhqv.n_test=1", "--set", f"data.lhqv.root={videos}"], "clip"),
    ]


# ---------------------------------------------------------------- helpers that build the bad inputs
def cut_copy(src: Path, dst: Path) -> Path:
    dst.write_bytes(src.read_bytes()[: src.stat().st_size // 2])
    return dst


def empty_dir(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True)
    return path


def folder_with(lab: Lab, d: Path, bad: Path) -> Path:
    folder = d / f"fake_{bad.name.replace('.', '_')}"
    if not folder.is_dir():
        shutil.copytree(lab.samples / "images", folder)
        shutil.copy2(bad, folder / bad.name)
    return folder


def broken_dataset(lab: Lab, d: Path) -> Path:
    data = d / "broken_data"
    if not data.is_dir():
        shutil.copytree(lab.data, data)
        cut_copy(lab.data / "test" / "images" / "000003.png", data / "test" / "images" / "000003.png")
    return data


def edited_index(lab: Lab, d: Path, name: str, edit: Callable[[list[dict]], list[dict]]) -> Path:
    rows = [json.loads(line) for line in (lab.samples / "samples.jsonl").read_text().splitlines()]
    path = d / (name.replace(" ", "_") + ".jsonl")
    path.write_text("".join(json.dumps(r) + "\n" for r in edit(rows)))
    return path


def fake_inception(d: Path) -> Path:
    import torch

    path = d / "pt_inception-2015-12-05-6726825d.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    return path


def other_vqgan(lab: Lab, d: Path) -> Path:
    path = d / "vqgan128.pt"
    if not path.exists():
        from nuwa.core.io import torch_load, torch_save

        ckpt = torch_load(lab.vqgan, "checkpoint")
        ckpt["config"]["n_embed"] = 128
        emb = ckpt["model"]["quantize.embedding.weight"]
        ckpt["model"]["quantize.embedding.weight"] = emb.repeat(2, 1)
        torch_save(ckpt, path)
    return path


def train_resume(lab: Lab, c: Path) -> list[str]:
    """A NUWA-Infinity run stopped after 3 steps (its resume checkpoint is in ``c/run``)."""
    args = lab.train_args("nuwa", c / "run" / "model.pt")
    if not (c / "run" / "model.pt.resume").exists():
        result = run([*args, "--stop-after", "3"])
        assert result.rc == 0, result.stderr[-2000:]
    return args


# ---------------------------------------------------------------- running it
def verdict(case: Case, result: Result, folder: Path) -> str:
    if result.rc != 2:
        return f"FAILED: exit {result.rc}" + (" with a traceback" if result.traceback else "")
    if result.traceback or len(result.error_lines) != 1:
        return f"FAILED: {len(result.error_lines)} error lines, traceback {result.traceback}"
    if case.names.lower() not in result.error_lines[0].lower():
        return f"FAILED: does not name {case.names!r}"
    written = folder / case.out if case.out else None
    if written is not None and written.exists():
        return f"FAILED: wrote {written}"
    if any(p.name.startswith(".") and ".tmp" in p.name for p in folder.rglob("*")):
        return "FAILED: left a temporary file"
    return "refused"


def run_inputs(lab: Lab, work: Path) -> list[dict]:
    rows = []
    for i, case in enumerate(cases(lab, work / "inputs")):
        folder = work / "cases" / f"{i:02d}"
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        args = case.args(folder)
        args = [a.replace(OUT, str(folder / "out")) for a in args]
        result = run(args, settings=case.settings)
        v = verdict(case, result, folder)
        stderr_lines = len(result.stderr.strip().splitlines())
        rows.append({"command": case.command, "problem": case.problem, "verdict": v, "stderr_lines": stderr_lines,
                     "error": (result.error_lines or [result.stderr.strip()[-200:]])[0][:300], "ok": v == "refused"})
        print(f"input {case.command:38s} {case.problem:50s} -> {v} ({stderr_lines} stderr lines)  "
              f"{rows[-1]['error'][:150]}", flush=True)
    return rows

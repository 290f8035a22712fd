"""What the workflow makes: runs, sample sets and metric files, resolved from the `experiments:` section.

One description shared by the Snakemake rules (which files to make and how) and the report
builders (which files to read), so the two can never disagree about a path.

* A **task** is a column of the paper's Table 1: the world its model is trained on and that
  column's `--set` overrides (extent, epochs, batch size, ...).
* A **run** is one trained model: a family (nuwa | taming | maskgit), a task, and its own
  `--set` overrides on top of the task's (and of `experiments.base` for the Table 7 "Base" model).
* A **sweep** (Figs. 16-17) is one run per value of one key; a value whose run would equal an
  existing run reuses it instead of training the same model twice.
* A **sample set** is what `nuwa generate` makes from a run: a generation task, a size and a count.
* A **cell** of a table is (sample set, metric) for a run; its number is read from
  ``{workdir}/metrics/{run}/{set}/{seed}/{metric}.json`` (or a run's history / checkpoint / timing).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from nuwa.core.config import apply_overrides
from nuwa.core.errors import UserError

TABLE4_DIRECTIONS = ("right", "left", "down", "up")  # Table 4's columns (`nuwa generate` also takes "around")
# generation task of `nuwa generate` -> the Table 1 task whose model serves it
GENERATE_TASK = {"uncond": "uncond", "t2i": "t2i", "outpaint": "t2i", "animate": "animate", "t2v": "t2v"}
# proxy backbone of each metric (metrics/backbones.py) and the reference backbone at paper scale
METRIC_BACKBONE = {"fid": "image", "block-fid": "image", "is": "image", "clip-sim": "clip", "fvd": "video"}
REFERENCE_BACKBONE = {"image": "inception", "clip": "clip", "video": "i3d"}
# the world each proxy backbone is trained on (the one its metrics are computed on)
BACKBONE_TASK = {"image": "t2i", "clip": "t2i", "video": "animate"}
# numbers that are not metric JSONs: read from a sample run's timing, a run's history or its checkpoint
SPECIAL_METRICS = ("speed", "epoch", "params", "depth", "dim")


def token_grid(cfg: dict, world: str) -> tuple[int, int]:
    """(h, w) tokens of one training image of ``world``: its size over the VQGAN factor (one line if not whole)."""
    from nuwa.data.config import world_config
    from nuwa.tokenizer.config import vqgan_config

    wc = world_config(cfg, world)
    width = getattr(wc, "crop", None) or wc.width
    factor = 2 ** (len(vqgan_config(cfg).model.ddconfig.ch_mult) - 1)
    if wc.height % factor or width % factor:
        raise UserError(f"data.{world} images are {width}x{wc.height} pixels, not a multiple of the VQGAN factor "
                        f"{factor} (tokenizer.vqgan.model.ddconfig.ch_mult); use sizes divisible by {factor}")
    return wc.height // factor, width // factor


def check_patch_grid(cfg: dict, world: str) -> None:
    """nuwa.model.patch must tile the token grid of ``world``'s images exactly (NUWA-Infinity runs)."""
    from nuwa.model.config import settings

    patch = settings(cfg).model.patch
    h, w = token_grid(cfg, world)
    if h % patch or w % patch:
        fits = [m for m in range(1, min(h, w) + 1) if h % m == 0 and w % m == 0]
        raise UserError(f"nuwa.model.patch={patch} does not divide the {h}x{w} token grid of data.{world} "
                        f"(image size / VQGAN factor); set nuwa.model.patch to one of {fits}")


@dataclass(frozen=True)
class Run:
    name: str
    model: str
    task: str
    world: str
    overrides: tuple[str, ...] = ()

    def effective(self, cfg: Mapping) -> dict:
        """The full config this run trains with."""
        return apply_overrides(dict(cfg), list(self.overrides))


@dataclass(frozen=True)
class SampleSet:
    """`nuwa generate {task} ...` of one run: ``width`` in training widths, ``text`` off for outpainting w/o text."""
    name: str
    task: str
    n_key: str
    width: int = 1  # canvas width and height in training sizes
    height: int = 1
    frames_key: str = ""
    direction: str = ""
    text: bool = True


def sample_sets(exp: Mapping) -> dict[str, SampleSet]:
    sets = [SampleSet("t2i", "t2i", "t2i"),
            SampleSet("t2i_wide", "t2i", "t2i_wide", width=int(exp["wide"])),
            SampleSet("t2i_figure", "t2i", "figure", width=int(exp["wide"])),
            SampleSet("animate", "animate", "animate", frames_key="animate"),
            SampleSet("animate_long", "animate", "figure", frames_key="long"),
            SampleSet("t2v", "t2v", "figure", frames_key="animate"),
            SampleSet("scroll", "uncond", "scroll", width=int(exp["scroll"]["width"])),
            SampleSet("outpaint_around", "outpaint", "figure", width=2, height=2, direction="around")]
    for d in TABLE4_DIRECTIONS:
        sets.append(SampleSet(f"outpaint_{d}", "outpaint", "outpaint", direction=d))
        sets.append(SampleSet(f"outpaint_{d}_notext", "outpaint", "outpaint", direction=d, text=False))
    return {s.name: s for s in sets}


@dataclass(frozen=True)
class Cell:
    """One number of a table: ``metric`` of ``sample_set`` generated by the row's run."""
    sample_set: str
    metric: str
    lower_is_better: bool = True
    relative_to: str = ""    # speed: the row label whose seconds per image count as 1x


@dataclass(frozen=True)
class Row:
    label: str
    run: str                 # a key of experiments.runs
    suffix: str = ""         # appended to every cell's sample set (outpainting w/o text)
    na: tuple[str, ...] = ()  # columns the method cannot do (the paper's N/A)


@dataclass(frozen=True)
class Table:
    name: str
    title: str
    rows: tuple[Row, ...]
    columns: dict[str, Cell] = field(default_factory=dict)


def _t2i_columns(*extra: tuple[str, Cell]) -> dict[str, Cell]:
    return {"Block-FID": Cell("t2i", "block-fid"), "Block-FID(x4)": Cell("t2i_wide", "block-fid"), **dict(extra)}


# The paper's Tables 2-7 in terms of runs; labels match nuwa.report.paper exactly.
TABLES: dict[str, Table] = {t.name: t for t in (
    Table("table2", "Text-to-Image HD on LHQC", (
        Row("Taming", "taming"), Row("MaskGIT", "maskgit"), Row("NUWA-Infinity", "main")),
        _t2i_columns(("IS", Cell("t2i", "is", False)), ("CLIP-SIM", Cell("t2i", "clip-sim", False)))),
    Table("table3", "Image Animation HD on LHQ-V", (
        Row("NUWA-Infinity (NAR)", "animate_nar"), Row("NUWA-Infinity (P-NAR)", "animate_pnar"),
        Row("NUWA-Infinity (AR)", "animate")),
        {"FVD": Cell("animate", "fvd")}),
    Table("table4", "Image Outpainting HD on LHQC (Block-FID of the extended half)", (
        Row("Taming", "taming", na=("Left Extend", "Up Extend")), Row("MaskGIT", "maskgit"),
        Row("NUWA-Infinity w/o text", "main", suffix="_notext"), Row("NUWA-Infinity", "main")),
        {f"{d.capitalize()} Extend": Cell(f"outpaint_{d}", "block-fid") for d in TABLE4_DIRECTIONS}),
    Table("table5", "Impact of feed position (ADC.emb)", (
        Row("Pre", "base"), Row("Post", "post")), _t2i_columns()),
    Table("table6", "Caches in NCP", (
        Row("w/o caches", "nocache"), Row("w/ caches", "base")), _t2i_columns()),
    Table("table7a", "Vision decoder: local decoder", (
        Row("NUWA-Infinity (NAR)", "nar"), Row("NUWA-Infinity (P-NAR)", "pnar"), Row("NUWA-Infinity (AR)", "base")),
        _t2i_columns(("CLIP-SIM", Cell("t2i", "clip-sim", False)), ("Inference Speed", Cell("", "speed", False, "NUWA-Infinity (AR)")))),
    Table("table7b", "Vision decoder: size", (
        Row("Base", "base"), Row("Large", "main")),
        {"Parameters": Cell("", "params"), "Depth": Cell("", "depth"), "Dim": Cell("", "dim"),
         "Block-FID": Cell("t2i", "block-fid")}),
    Table("table7c", "Vision decoder: loss (convergence: epochs to a validation loss both runs reach)", (
        Row("Patch", "loss_patch"), Row("Accumulated", "loss_accumulated")),
        {"Block-FID": Cell("t2i", "block-fid"), "Convergence epoch": Cell("", "epoch")}),
)}


@dataclass(frozen=True)
class Figure:
    """A sweep figure (Figs. 16-17): one curve per cell, x = the swept value."""
    name: str
    title: str
    sweep: str
    x_label: str
    curves: dict[str, Cell]


SWEEP_FIGURES: dict[str, Figure] = {f.name: f for f in (
    Figure("figure16", "Impact of patch size", "figure16", "patch tokens M",
           {"FID": Cell("t2i", "block-fid"), "Block-FID(x4)": Cell("t2i_wide", "block-fid")}),
    Figure("figure17a", "Spatial extent (e_w, e_h) of NCP", "figure17a", "extent (e_w, e_h, e_f)",
           {"Block-FID": Cell("t2i", "block-fid"), "Block-FID(x4)": Cell("t2i_wide", "block-fid")}),
    Figure("figure17b", "Temporal extent e_f of NCP", "figure17b", "extent (e_w, e_h, e_f)",
           {"FVD": Cell("animate", "fvd")}),
)}

# Qualitative figures: name -> (caption, [(label, run, sample set)])
SAMPLE_FIGURES: dict[str, tuple[str, tuple[tuple[str, str, str], ...]]] = {
    "figure_scroll": ("Unconditional Image Generation HD: one long scroll (Figs. 1, 11, 12)",
                      (("NUWA-Infinity", "scroll", "scroll"),)),
    "figure_outpaint": ("Image Outpainting HD in four directions and all around (Figs. 2, 15)",
                        tuple((f"{d}", "main", f"outpaint_{d}") for d in (*TABLE4_DIRECTIONS, "around"))),
    "figure_t2i": ("Text-to-Image HD at the training size, the three methods (Table 2's samples)",
                   (("Taming", "taming", "t2i"), ("MaskGIT", "maskgit", "t2i"), ("NUWA-Infinity", "main", "t2i"))),
    "figure_outpaint_methods": ("Image Outpainting HD, right and down, the three methods (Table 4's samples)",
                                tuple((f"{label} {d}", run, f"outpaint_{d}") for d in ("right", "down")
                                      for label, run in (("Taming", "taming"), ("MaskGIT", "maskgit"),
                                                         ("NUWA-Infinity", "main")))),
    "figure_t2i_wide": ("Text-to-Image HD at x4 width (Figs. 3, 13)",
                        (("Taming", "taming", "t2i_figure"), ("MaskGIT", "maskgit", "t2i_figure"),
                         ("NUWA-Infinity", "main", "t2i_figure"))),
    "figure_animate": ("Image Animation HD (Fig. 4)", (("NUWA-Infinity", "animate", "animate_long"),)),
    "figure14": ("Local NAR vs P-NAR vs AR on Image Animation HD (Fig. 14)",
                 (("NAR", "animate_nar", "animate_long"), ("P-NAR", "animate_pnar", "animate_long"),
                  ("AR", "animate", "animate_long"))),
    "figure_t2v": ("Text-to-Video HD on PeppaPig", (("NUWA-Infinity", "t2v", "t2v"),)),
}


class Plan:
    """Runs, sample sets and paths resolved from a full config."""

    def __init__(self, cfg: Mapping):
        self.cfg = cfg
        self.exp = cfg.get("experiments") or {}
        if not self.exp:
            raise UserError("config has no experiments: section; use config/config.yaml or pass it with --config")
        self.workdir = Path(cfg["workdir"])
        self.seeds = [int(s) for s in self.exp["seeds"]]
        self.sets = sample_sets(self.exp)
        self.runs = {name: self._run(name, spec) for name, spec in self.exp["runs"].items()}
        self.sweeps = {name: [self._sweep_run(name, spec, i, v) for i, v in enumerate(spec["values"])]
                       for name, spec in self.exp["sweeps"].items()}

    # -- runs ---------------------------------------------------------------------------------
    def _overrides(self, spec: Mapping) -> tuple[str, ...]:
        task = self.exp["tasks"][spec["task"]]
        base = list(self.exp["base"]) if spec.get("base", False) else []
        return tuple(list(task.get("set", [])) + base + list(spec.get("set", [])))

    def _run(self, name: str, spec: Mapping) -> Run:
        if spec["task"] not in self.exp["tasks"]:
            raise UserError(f"experiments.runs.{name}.task {spec['task']!r} is not one of experiments.tasks "
                            f"({', '.join(self.exp['tasks'])})")
        return Run(name, spec.get("model", "nuwa"), spec["task"], self.exp["tasks"][spec["task"]]["world"],
                   self._overrides(spec))

    def _sweep_run(self, sweep: str, spec: Mapping, i: int, value: Any) -> str:
        """The run of one sweep point; an existing run with the same effective config is reused."""
        override = f"{spec['key']}={_yaml_value(value)}"
        candidate = self._run(f"{sweep}-{i}", {**spec, "set": [*spec.get("set", []), override]})
        for run in self.runs.values():
            if (run.model, run.task) == (candidate.model, candidate.task) and \
                    self.model_settings(run) == self.model_settings(candidate):
                return run.name
        self.runs[candidate.name] = candidate
        return candidate.name

    def model_settings(self, run: Run) -> dict:
        """The run's own config section with every default filled in (NUWA-Infinity runs), else as written."""
        cfg = run.effective(self.cfg)
        if run.model != "nuwa":
            return {"baselines": cfg.get("baselines"), "nuwa": cfg.get("nuwa")}
        from nuwa.model.config import settings

        try:
            return dataclasses.asdict(settings(cfg))
        except UserError as exc:
            raise UserError(f"experiments run {run.name!r} (--set {' '.join(run.overrides)}): {exc}") from exc

    def train_priority(self, name: str) -> int:
        """Snakemake priority of a run's training job: its optimizer steps per training example times its
        epochs (NUWA-Infinity's patch loss steps once per patch), so the longest runs start first."""
        run = self.runs[name]
        cfg = run.effective(self.cfg)
        if run.model != "nuwa":
            return int(cfg["baselines"][run.model]["train"]["epochs"])
        from nuwa.data.config import world_config
        from nuwa.model.config import settings

        s = settings(cfg)
        if s.train.loss != "patch":
            return s.train.epochs
        frames = getattr(world_config(cfg, run.world), "frames", 1)
        return s.train.epochs * s.model.patches((frames, *token_grid(cfg, run.world)))

    def check_reference_sets(self) -> None:
        """Each scored sample set drawn from a procedural test split leaves real test items to score it against:
        the metrics leave out the items the samples were conditioned on (docs/metrics.md). Folder worlds,
        whose test size the files decide, are checked by `nuwa eval` itself."""
        from metrics.fid import MIN_SAMPLES
        from nuwa.data.config import world_config

        for name in sorted({c.sample_set for t in TABLES.values() for c in t.columns.values() if c.sample_set} |
                           {c.sample_set for f in SWEEP_FIGURES.values() for c in f.curves.values()}):
            sset = self.sets[name]
            world = self.exp["tasks"][GENERATE_TASK[sset.task]]["world"]
            wcfg = world_config(self.cfg, world)
            n = int(self.exp["n"][sset.n_key])
            if wcfg.source == "procedural" and wcfg.n_test - n < MIN_SAMPLES:
                raise UserError(f"experiments.n.{sset.n_key} = {n} leaves {wcfg.n_test - n} of the {wcfg.n_test} test "
                                f"items of {world} to score sample set {name} against (the {n} conditioned on are left "
                                f"out); raise data.{world}.n_test or lower experiments.n.{sset.n_key}")

    def sweep_values(self, sweep: str) -> list[Any]:
        return list(self.exp["sweeps"][sweep]["values"])

    # -- what to make ---------------------------------------------------------------------------
    def table_cells(self, table: str) -> list[tuple[Row, str, Cell | None]]:
        t = TABLES[table]
        return [(row, col, None if col in row.na else cell) for row in t.rows for col, cell in t.columns.items()]

    def needed(self, run: str, cell: Cell, suffix: str = "") -> list[Path]:
        """The files one cell of one run is computed from."""
        if cell.metric in ("params", "depth", "dim"):
            return [self.checkpoint(run)]
        if cell.metric == "epoch":  # the convergence target is common to the rows of the table
            table = next(t for t in TABLES.values() if cell in t.columns.values() and run in {r.run for r in t.rows})
            return [self.history(r.run) for r in table.rows]
        if cell.metric == "speed":  # measured at the paper's patch size, all local decoders in one job
            return [self.local_speed()]
        name = cell.sample_set + suffix
        return [self.metric(run, name, cell.metric, s) for s in self.seeds]

    def table_inputs(self, table: str) -> list[Path]:
        files = {p for row, _, cell in self.table_cells(table) if cell for p in self.needed(row.run, cell, row.suffix)}
        return sorted(files)

    def sweep_inputs(self, figure: str) -> list[Path]:
        fig = SWEEP_FIGURES[figure]
        return sorted({p for run in self.sweeps[fig.sweep] for cell in fig.curves.values() for p in self.needed(run, cell)})

    def figure_inputs(self, figure: str) -> list[Path]:
        return [self.samples(run, sset, self.seeds[0]) for _, run, sset in SAMPLE_FIGURES[figure][1]]

    # -- paths ----------------------------------------------------------------------------------
    def data(self, world: str) -> Path:
        return self.workdir / "data" / world

    def tokens(self, world: str, split: str) -> Path:
        return self.workdir / "tokens" / world / f"{split}.pt"

    def vqgan(self, world: str) -> Path:
        return self.workdir / "tokenizer" / "vqgan" / f"{self.exp['vqgan_world'][world]}.pt"

    def pg_vqgan(self, world: str) -> Path:
        return self.workdir / "tokenizer" / "pg_vqgan" / f"{world}.pt"

    def checkpoint(self, run: str) -> Path:
        return self.workdir / "runs" / run / "model.pt"

    def history(self, run: str) -> Path:
        return self.workdir / "runs" / run / "history.csv"

    def samples(self, run: str, sample_set: str, seed: int) -> Path:
        return self.workdir / "samples" / run / sample_set / str(seed)

    def metric(self, run: str, sample_set: str, metric: str, seed: int) -> Path:
        return self.workdir / "metrics" / run / sample_set / str(seed) / f"{metric}.json"

    def local_speed(self) -> Path:
        return self.workdir / "bench" / "local_speed.json"

    def backbone(self, kind: str) -> Path:
        return self.workdir / "proxies" / f"{kind}.pt"


def _yaml_value(value: Any) -> str:
    """A value as `--set` reads it back (YAML flow style: [2, 2, 0], true, post)."""
    import yaml

    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("...").strip()

"""The config schema, `nuwa config check` and the experiments plan."""
from __future__ import annotations

import pytest

from nuwa.commands.cli import main
from nuwa.commands.config import check_all
from nuwa.core.config import REPO_ROOT, load_config
from nuwa.core.errors import UserError
from nuwa.plan import TABLES, Plan

CONFIG = REPO_ROOT / "config" / "config.yaml"


@pytest.fixture(scope="module")
def cfg() -> dict:
    return load_config([CONFIG])


@pytest.mark.parametrize("override, where", [
    ("experiments.wide=1", "experiments.wide"),
    ("nuwa.model.pos_feed=middle", "nuwa.model.pos_feed"),
    ("experiments.runs.post.task=t3i", "experiments.runs.post.task"),
    ("launcher=mpirun", "launcher"),
    ("experiments.base=['layers=3']", "experiments.base.0"),
])
def test_schema_rejects_bad_value_naming_the_key(override, where):
    with pytest.raises(UserError, match=rf"bad config value at {where}: .*fix it"):
        load_config([CONFIG], [override])


def test_config_check_cli(capsys):
    assert main(["config", "check"]) == 0
    assert "config ok" in capsys.readouterr().out
    assert main(["config", "check", "--set", "experiments.runs.post.set=['nuwa.model.layers=0']"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: experiments run 'post'") and "\n" not in err


def test_paper_config_passes_every_check():
    check_all(load_config([CONFIG, REPO_ROOT / "config" / "paper.yaml"]))


def test_runs_apply_task_base_and_own_overrides_in_order(cfg):
    plan = Plan(cfg)
    post = plan.runs["post"]
    assert post.world == "lhqc" and post.model == "nuwa"
    assert post.overrides == (*cfg["experiments"]["tasks"]["t2i"]["set"], *cfg["experiments"]["base"],
                              "nuwa.model.pos_feed=post")
    assert plan.model_settings(post)["model"]["pos_feed"] == "post"
    assert plan.model_settings(plan.runs["main"])["model"]["layers"] > plan.model_settings(post)["model"]["layers"]


def test_train_priority_is_epochs_times_steps_per_example(cfg):
    """The patch loss steps once per patch (64 px LHQC images, 8x8 tokens, 2x2-token patches: 16 patches,
    video: 5 frames of 2x2 four-token patches); accumulated loss and the baselines once per example."""
    plan = Plan(cfg)
    runs = cfg["experiments"]["runs"]

    def epochs(run):
        return next(int(o.split("=")[1]) for o in runs[run]["set"] if o.startswith("nuwa.train.epochs="))

    assert plan.train_priority("loss_patch") == 16 * epochs("loss_patch")
    assert plan.train_priority("loss_accumulated") == epochs("loss_accumulated")
    assert plan.train_priority("main") == 16 * cfg["nuwa"]["train"]["epochs"]
    assert plan.train_priority("animate") == 5 * 4 * cfg["nuwa"]["train"]["epochs"]
    assert plan.train_priority("taming") == cfg["baselines"]["taming"]["train"]["epochs"]
    assert max(plan.runs, key=plan.train_priority) == "loss_patch"

def test_sweep_point_equal_to_a_run_reuses_it(cfg):
    plan = Plan(cfg)
    base = plan.model_settings(plan.runs["base"])["model"]
    values = cfg["experiments"]["sweeps"]["figure16"]["values"]
    runs = plan.sweeps["figure16"]
    assert len(runs) == len(values) and len(set(runs)) == len(values)
    for run, value in zip(runs, values):
        assert (run == "base") == (value == base["patch"])
        assert plan.model_settings(plan.runs[run])["model"]["patch"] == value


def test_every_table_cell_names_a_run_and_a_file(cfg):
    plan = Plan(cfg)
    for name in TABLES:
        files = plan.table_inputs(name)
        assert files and all(str(f).startswith(cfg["workdir"]) for f in files)
    assert all(p.name == "block-fid.json" for p in plan.table_inputs("table5"))
    assert {p.parent.parent.name for p in plan.table_inputs("table4")} >= {"outpaint_up_notext", "outpaint_right"}
    assert not any("taming/outpaint_left" in str(p) for p in plan.table_inputs("table4"))  # the paper's N/A

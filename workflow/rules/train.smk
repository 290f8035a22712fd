# Model training: one job per run of the plan (experiments.runs and the sweep points).


rule train:
    conda:
        ENV
    input:
        config_files("nuwa", "baselines"),
        train=lambda wc: PLAN.tokens(run_of(wc).world, "train"),
        val=lambda wc: PLAN.tokens(run_of(wc).world, "test"),
    output:
        checkpoint=f"{W}/runs/{{run}}/model.pt",
        history=f"{W}/runs/{{run}}/history.csv",
    log:
        log("train/{run}"),
    benchmark:
        bench("train/{run}")
    resources:
        gpu=0,
    priority: lambda wc: PLAN.train_priority(wc.run)  # longest runs first, shorter jobs fill the other cores
    params:
        launcher=launcher,
        model=lambda wc: run_of(wc).model,
        config=config_args("nuwa", "baselines"),
        overrides=lambda wc: set_args(run_of(wc).overrides),
    shell:
        "{params.launcher} nuwa train --model {params.model} --train {input.train} --val {input.val}"
        " --out {output.checkpoint} --history {output.history} {params.config} {params.overrides} > {log} 2>&1"

# Sampling: one folder per (run, sample set, seed) in the layout of docs/contracts.md ("Samples").


rule generate:
    conda:
        ENV
    input:
        unpack(generate_inputs),
        config_files("nuwa", "baselines"),
    output:
        directory(f"{W}/samples/{{run}}/{{sset}}/{{seed}}"),
    log:
        log("samples/{run}-{sset}-{seed}"),
    benchmark:
        bench("samples/{run}-{sset}-{seed}")
    resources:
        gpu=0,
    params:
        py=PY,
        task=lambda wc: PLAN.sets[wc.sset].task,
        args=generate_args,
        config=config_args("nuwa", "baselines"),
    shell:
        "{params.py} -m nuwa generate {params.task} {params.args} --out {output} {params.config} > {log} 2>&1"

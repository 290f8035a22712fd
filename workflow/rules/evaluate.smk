# Metrics: proxy backbones (embedded default), one metric JSON per (run, sample set, seed, metric), the benchmarks.


rule proxy_backbone:
    conda:
        ENV
    input:
        config_files("metrics"),
        data=lambda wc: PLAN.data(PLAN.exp["tasks"][BACKBONE_TASK[wc.kind]]["world"]),
    output:
        f"{W}/proxies/{{kind}}.pt",
    log:
        log("proxies/{kind}"),
    benchmark:
        bench("proxies/{kind}")
    params:
        py=PY,
        config=config_args("metrics"),
    shell:
        "{params.py} -m nuwa eval train-backbone {wildcards.kind} --data {input.data} --out {output} {params.config} > {log} 2>&1"


rule check_backbones:
    """Do the image and CLIP backbones separate real from corrupted data? Every table waits for this (it fails if not)."""
    conda:
        ENV
    input:
        config_files("metrics"),
        backbone_inputs("image"),
        backbone_inputs("clip"),
        data=PLAN.data("lhqc"),
    output:
        "results/backbone_check.json",
    log:
        log("report/backbone_check"),
    benchmark:
        bench("report/backbone_check")
    params:
        py=PY,
        config=config_args("metrics"),
        backbones=f"--image {backbone_arg('image')} --clip {backbone_arg('clip')}",
    shell:
        "{params.py} -m nuwa eval check-proxies --data {input.data} {params.backbones} --json {output} {params.config} > {log} 2>&1"


rule metric:
    conda:
        ENV
    input:
        unpack(metric_inputs),
        config_files("metrics"),
    output:
        f"{W}/metrics/{{run}}/{{sset}}/{{seed}}/{{metric}}.json",
    log:
        log("metrics/{run}-{sset}-{seed}-{metric}"),
    benchmark:
        bench("metrics/{run}-{sset}-{seed}-{metric}")
    params:
        py=PY,
        args=metric_args,
        config=config_args("metrics"),
    shell:
        "{params.py} -m nuwa eval {wildcards.metric} {params.args} --json {output} {params.config} > {log} 2>&1"


rule ncp_scaling:
    """NCP against full context at the paper geometry (16x16-token patches, 4 layers, d=256), widths 1-32 patches,
    one patch row (the benchmark's default of two rows takes about three times as long)."""
    conda:
        ENV
    input:
        config_files("nuwa"),
    output:
        f"{W}/bench/ncp_scaling.json",
    log:
        log("bench/ncp_scaling"),
    benchmark:
        bench("bench/ncp_scaling")
    params:
        py=PY,
        config=config_args("nuwa"),
    shell:
        "{params.py} -m nuwa bench ncp-scaling --preset paper-geometry --rows 1 --json {output} {params.config} > {log} 2>&1"


rule sampling_speed:
    """Seconds per 4x-wide text-to-image sample of the three trained Table 2 models, batch 1 and 16, in one job."""
    conda:
        ENV
    input:
        config_files("nuwa", "baselines"),
        **{name: str(PLAN.checkpoint(name)) for name in ("taming", "maskgit", "main")},
    output:
        f"{W}/bench/sampling_speed.json",
    log:
        log("bench/sampling_speed"),
    benchmark:
        bench("bench/sampling_speed")
    params:
        py=PY,
        config=config_args("nuwa", "baselines"),
        wide=EXP["wide"],
    shell:
        "{params.py} -m nuwa bench sampling-speed --preset embedded --taming {input.taming} --maskgit {input.maskgit}"
        " --nuwa {input.main} --widths {params.wide} --batches 1 16 --repeats 5 --json {output} {params.config} > {log} 2>&1"


rule local_speed:
    """Table 7a's inference speed: the AR, NAR and P-NAR local decoders of the Base model size at the paper's
    patch size (M = 256 tokens), one job, 5 repeats each (docs/benchmarks.md: JSON layout)."""
    conda:
        ENV
    input:
        config_files("nuwa", "experiments"),
    output:
        f"{W}/bench/local_speed.json",
    log:
        log("bench/local_speed"),
    benchmark:
        bench("bench/local_speed")
    params:
        py=PY,
        config=config_args("nuwa"),
        base=set_args(EXP["base"]),
        wide=EXP["wide"],
    shell:
        "{params.py} -m nuwa bench sampling-speed --preset paper-geometry --models nuwa-ar nuwa-nar nuwa-pnar"
        " --widths {params.wide} --batches 1 --repeats 5 --json {output} {params.config} {params.base} > {log} 2>&1"

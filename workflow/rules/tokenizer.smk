# Tokenizers (VQGAN per image world, PG-VQGAN per video world), token shards and reconstruction reports.


# The tokenizer part on its own: `snakemake --cores all tokenizers`.
rule tokenizers:
    input:
        expand("results/tokenizer/{world}.json", world=WORLDS),
        [PLAN.pg_vqgan(w) for w in VIDEO_WORLDS],
        expand(f"{W}/tokens/{{world}}/{{split}}.pt", world=WORLDS, split=("train", "test")),


rule vqgan:
    conda:
        ENV
    input:
        config_files("tokenizer"),
        data=f"{W}/data/{{world}}",
    output:
        f"{W}/tokenizer/vqgan/{{world}}.pt",
    log:
        log("tokenizer/vqgan-{world}"),
    benchmark:
        bench("tokenizer/vqgan-{world}")
    priority: vqgan_priority
    params:
        py=PY,
        config=config_args("tokenizer"),
    shell:
        "{params.py} -m nuwa tokenizer train vqgan --data {input.data} --out {output} {params.config} > {log} 2>&1"


rule pg_vqgan:
    conda:
        ENV
    input:
        config_files("tokenizer"),
        data=f"{W}/data/{{world}}",
        init=lambda wc: PLAN.vqgan(wc.world),
    output:
        f"{W}/tokenizer/pg_vqgan/{{world}}.pt",
    log:
        log("tokenizer/pg_vqgan-{world}"),
    benchmark:
        bench("tokenizer/pg_vqgan-{world}")
    priority: 1
    params:
        py=PY,
        config=config_args("tokenizer"),
    shell:
        "{params.py} -m nuwa tokenizer train pg_vqgan --data {input.data} --init {input.init} --out {output}"
        " {params.config} > {log} 2>&1"


rule encode:
    conda:
        ENV
    input:
        config_files(),
        data=f"{W}/data/{{world}}",
        tokenizer=lambda wc: PLAN.vqgan(wc.world),
    output:
        f"{W}/tokens/{{world}}/{{split}}.pt",
    log:
        log("tokens/{world}-{split}"),
    benchmark:
        bench("tokens/{world}-{split}")
    priority: 1
    params:
        py=PY,
        config=config_args(),
    shell:
        "{params.py} -m nuwa tokenizer encode --tokenizer {input.tokenizer} --data {input.data} --split {wildcards.split}"
        " --out {output} {params.config} > {log} 2>&1"


rule tokenizer_report:
    conda:
        ENV
    input:
        config_files("metrics"),
        backbone_inputs("image"),
        data=f"{W}/data/{{world}}",
        tokenizer=lambda wc: PLAN.vqgan(wc.world),
    output:
        "results/tokenizer/{world}.json",
    log:
        log("tokenizer/report-{world}"),
    benchmark:
        bench("tokenizer/report-{world}")
    params:
        py=PY,
        backbone=lambda wc: backbone_arg("image"),
        config=config_args("metrics"),
    shell:
        "{params.py} -m nuwa tokenizer report --tokenizer {input.tokenizer} --data {input.data} --out {output}"
        " --backbone {params.backbone} {params.config} > {log} 2>&1"

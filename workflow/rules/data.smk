# Datasets: the procedural worlds (embedded default) or real folders imported into the same layout.


rule render:
    conda:
        ENV
    input:
        config_files("data"),
        manifest_inputs,
    output:
        directory(f"{W}/data/{{world}}"),
    log:
        log("data/{world}"),
    benchmark:
        bench("data/{world}")
    priority: 10  # a few seconds that every tokenizer job (priorities 1-4) waits on
    params:
        py=PY,
        config=config_args("data"),
    shell:
        "{params.py} -m nuwa data render {wildcards.world} --out {output} {params.config} > {log} 2>&1"

# Provenance: a leaf target (never an input of a table), rewritten when the code version or config changes.


rule provenance:
    conda:
        ENV
    input:
        config_files(*SECTIONS[1:]),
    output:
        "results/provenance/run.json",
    log:
        log("report/provenance"),
    benchmark:
        bench("report/provenance")
    params:
        py=PY,
        code=git_state(),
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report provenance --out {output} {params.config} > {log} 2>&1"

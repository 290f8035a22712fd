# Tables 1-7 (CSV + Markdown + JSON for DVC metrics) and the claims report.


rule table1:
    conda:
        ENV
    input:
        "config/config.yaml",
        "config/paper.yaml",
        config_files(*SECTIONS[1:]),
    output:
        csv="results/table1.csv",
        md="results/table1.md",
        json="results/table1.json",
    log:
        log("report/table1"),
    benchmark:
        bench("report/table1")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report table table1 --paper-config config/config.yaml --paper-config config/paper.yaml"
        " --out {output.csv} {params.config} > {log} 2>&1"


rule table:
    conda:
        ENV
    input:
        lambda wc: PLAN.table_inputs(wc.table),
        "results/backbone_check.json",
        config_files(*SECTIONS[1:]),
    output:
        csv="results/{table}.csv",
        md="results/{table}.md",
        json="results/{table}.json",
    wildcard_constraints:
        table="|".join(TABLES),
    log:
        log("report/{table}"),
    benchmark:
        bench("report/{table}")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report table {wildcards.table} --out {output.csv} {params.config} > {log} 2>&1"


rule claims:
    conda:
        ENV
    input:
        expand("results/{table}.json", table=TABLES),
        expand("results/{figure}.csv", figure=SWEEP_FIGURES),
        f"{W}/bench/ncp_scaling.json",
        config_files(*SECTIONS[1:]),
    output:
        csv="results/claims.csv",
        md="results/claims.md",
    log:
        log("report/claims"),
    benchmark:
        bench("report/claims")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report claims --out {output.csv} {params.config} > {log} 2>&1"

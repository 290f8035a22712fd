# Figures: sweep plots with their data (Figs. 16-17, for `dvc plots show`), qualitative sample sheets, NCP cost.


rule sweep_figure:
    conda:
        ENV
    input:
        lambda wc: PLAN.sweep_inputs(wc.figure),
        config_files(*SECTIONS[1:]),
    output:
        png="results/figures/{figure}.png",
        csv="results/{figure}.csv",
    wildcard_constraints:
        figure="|".join(SWEEP_FIGURES),
    log:
        log("report/{figure}"),
    benchmark:
        bench("report/{figure}")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report figure {wildcards.figure} --out {output.png} {params.config} > {log} 2>&1"


rule sample_figure:
    conda:
        ENV
    input:
        lambda wc: PLAN.figure_inputs(wc.figure),
        config_files(*SECTIONS[1:]),
    output:
        png="results/figures/{figure}.png",
    wildcard_constraints:
        figure="|".join(SAMPLE_FIGURES),
    log:
        log("report/{figure}"),
    benchmark:
        bench("report/{figure}")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report figure {wildcards.figure} --out {output.png} {params.config} > {log} 2>&1"


rule ncp_figure:
    conda:
        ENV
    input:
        f"{W}/bench/ncp_scaling.json",
        config_files(*SECTIONS[1:]),
    output:
        png="results/figures/figure_ncp.png",
        csv="results/figure_ncp.csv",
    log:
        log("report/figure_ncp"),
    benchmark:
        bench("report/figure_ncp")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report figure figure_ncp --out {output.png} {params.config} > {log} 2>&1"


rule convergence_figure:
    """Table 7c's validation curves (patch vs accumulated loss) and the target their convergence is read at."""
    conda:
        ENV
    input:
        [str(PLAN.history(r.run)) for r in TABLES["table7c"].rows],
        config_files(*SECTIONS[1:]),
    output:
        png="results/figures/figure_convergence.png",
        csv="results/figure_convergence.csv",
    log:
        log("report/figure_convergence"),
    benchmark:
        bench("report/figure_convergence")
    params:
        py=PY,
        config=config_args(*SECTIONS[1:]),
    shell:
        "{params.py} -m nuwa report figure figure_convergence --out {output.png} {params.config} > {log} 2>&1"

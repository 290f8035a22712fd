# Per-section config files: what each rule's `--config` reads.


# Every config file is rewritten only when its section changes (params), so a changed value reruns
# exactly the jobs that read that section.
rule config_section:
    conda:
        ENV
    output:
        f"{W}/config/{{section}}.yaml",
    log:
        log("config/{section}"),
    benchmark:
        bench("config/{section}")
    params:
        text=lambda wc: yaml.safe_dump(section_content(wc.section), sort_keys=True),
    localrule: True
    # a shell job (a `run:` job would start a second Snakemake, parsing the workflow again: ~5 s each)
    shell:
        "printf '%s' {params.text:q} > {output} 2> {log}"

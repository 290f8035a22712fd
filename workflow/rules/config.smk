# Per-section config files: what each rule's `--config` reads.


# Every config file is rewritten only when its section changes (params), so a changed value reruns
# exactly the jobs that read that section.
rule config_section:
    output:
        f"{W}/config/{{section}}.yaml",
    log:
        log("config/{section}"),
    benchmark:
        bench("config/{section}")
    params:
        content=lambda wc: section_content(wc.section),
    localrule: True
    run:
        from nuwa.io import write_text

        write_text(output[0], yaml.safe_dump(params.content, sort_keys=True))

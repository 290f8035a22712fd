# NUWA-Infinity reproduction: every table and figure of the paper from raw data.
#   snakemake --cores all results/table2.csv        one table (embedded default, CPU)
#   snakemake --cores all                           everything (rule all)
#   snakemake --profile profiles/gpu --configfile config/paper.yaml    paper scale on one GPU node
# Rules are thin: each calls one `nuwa ...` command (`python -m nuwa` of this interpreter).
from snakemake.utils import min_version, validate

min_version("9")


configfile: "config/config.yaml"


validate(config, "workflow/schemas/config.schema.yaml")


include: "workflow/rules/common.smk"
include: "workflow/rules/config.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tokenizer.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/tables.smk"
include: "workflow/rules/figures.smk"
include: "workflow/rules/provenance.smk"


rule all:
    input:
        expand("results/tokenizer/{world}.json", world=WORLDS),
        expand("results/{table}.{ext}", table=TABLE_NAMES, ext=("csv", "md")),
        expand("results/figures/{figure}.png", figure=FIGURE_NAMES),
        "results/claims.csv",
        "results/backbone_check.json",
        f"{W}/bench/sampling_speed.json",
        "results/provenance/run.json",
    default_target: True

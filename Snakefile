# Emergent misalignment and self-awareness: fine-tune → measure → correlate → plot.
# This file only wires; every input function lives in workflow/rules/common.smk.
from snakemake.utils import min_version

min_version("8.20")


# A --configfile given on the command line is the whole config (not merged into the paper's);
# --config KEY=VALUE overrides either.
if not workflow.overwrite_configfiles:

    configfile: "config/config.yaml"


# `snakemake --report report.html` is the results browser: this page, then every figure, table and answer.
report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/finetune.smk"
include: "workflow/rules/derived.smk"
include: "workflow/rules/sample.smk"
include: "workflow/rules/judge.smk"
include: "workflow/rules/score.smk"
include: "workflow/rules/analysis.smk"


rule all:
    default_target: True
    input:
        get_final_output(),

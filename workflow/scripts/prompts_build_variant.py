from emaware import steps
from emaware.rulekit import run

run(snakemake, steps.prompts_build_variant)

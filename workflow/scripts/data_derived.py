from emaware import steps
from emaware.rulekit import run

run(snakemake, steps.data_derived)

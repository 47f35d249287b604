rule analysis_table:
    """One row per variant with every score and its CI."""
    input:
        scores=get_variant_scores,
    output:
        table="results/tables/variants.tsv",
    log:
        "logs/analysis_table/variants.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/analysis_table.py"


rule analysis_inverted_v:
    """Harmfulness across base → misaligned → realigned: a line per domain, a panel per size."""
    input:
        table="results/tables/variants.tsv",
    output:
        figure="results/figures/inverted_v.pdf",
    log:
        "logs/analysis_inverted_v/inverted_v.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/analysis_inverted_v.py"

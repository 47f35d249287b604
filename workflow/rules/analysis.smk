rule analysis_table:
    """One row per variant with every score, its CI and what could not be scored; a table per breakdown."""
    input:
        scores=get_score_records,
    output:
        table=results("tables/variants.tsv"),
        breakdowns=BREAKDOWN_TABLES,
    log:
        logs("analysis_table/variants.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_table.py"


rule analysis_spearman:
    """Spearman rho across variants for every pair of scores, overall and per domain."""
    input:
        table=results("tables/variants.tsv"),
    output:
        correlations=results("stats/spearman.tsv"),
    log:
        logs("analysis_spearman/spearman.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        columns=RUN_ASSESSMENTS,
        seed=config["analysis"]["seed"],
        ci=config["analysis"]["ci"],
    script:
        "../scripts/analysis_spearman.py"


rule analysis_inverted_v:
    """Harmfulness across base → misaligned → realigned: a line per domain, a panel per size."""
    input:
        table=results("tables/variants.tsv"),
    output:
        figure=results("figures/inverted_v.pdf"),
    log:
        logs("analysis_inverted_v/inverted_v.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_inverted_v.py"


rule analysis_scatter_matrix:
    """Every pair of scores over the variants, with Spearman rho annotated."""
    input:
        table=results("tables/variants.tsv"),
        correlations=results("stats/spearman.tsv"),
    output:
        figure=results("figures/scatter_matrix.pdf"),
    log:
        logs("analysis_scatter_matrix/scatter_matrix.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        columns=RUN_ASSESSMENTS,
    script:
        "../scripts/analysis_scatter_matrix.py"


rule analysis_selfassessment_formats:
    """Self-assessment per stage, a line per format (sampled and exact expected value)."""
    input:
        table=results("tables/by_format.tsv"),
    output:
        figure=results("figures/selfassessment_formats.pdf"),
    log:
        logs("analysis_selfassessment_formats/selfassessment_formats.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_selfassessment_formats.py"


rule analysis_mfq2_profiles:
    """MFQ-2 foundation profiles per stage beside the model's own predicted profile."""
    input:
        table=results("tables/by_foundation.tsv"),
    output:
        figure=results("figures/mfq2_profiles.pdf"),
    log:
        logs("analysis_mfq2_profiles/mfq2_profiles.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_mfq2_profiles.py"

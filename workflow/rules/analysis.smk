from emaware.report_pages import TOP_K

# Every figure and table is a report item (`snakemake --report`) with its caption under workflow/report/.
CAPTIONS = "../report"


rule analysis_table:
    """One row per variant with every score, its CI and what could not be scored; a table per breakdown."""
    input:
        scores=get_score_records,
    output:
        table=report(
            results("tables/variants.tsv"),
            caption=f"{CAPTIONS}/variants.rst",
            category="Tables",
        ),
        breakdowns=[
            report(path, caption=f"{CAPTIONS}/breakdowns.rst", category="Tables")
            for path in BREAKDOWN_TABLES
        ],
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
        correlations=report(
            results("stats/spearman.tsv"),
            caption=f"{CAPTIONS}/spearman.rst",
            category="Correlations",
        ),
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
        figure=report(
            results("figures/inverted_v.pdf"),
            caption=f"{CAPTIONS}/inverted_v.rst",
            category="Figures",
        ),
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
        figure=report(
            results("figures/scatter_matrix.pdf"),
            caption=f"{CAPTIONS}/scatter_matrix.rst",
            category="Figures",
        ),
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
        figure=report(
            results("figures/selfassessment_formats.pdf"),
            caption=f"{CAPTIONS}/selfassessment_formats.rst",
            category="Figures",
        ),
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
        figure=report(
            results("figures/mfq2_profiles.pdf"),
            caption=f"{CAPTIONS}/mfq2_profiles.rst",
            category="Figures",
        ),
    log:
        logs("analysis_mfq2_profiles/mfq2_profiles.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_mfq2_profiles.py"


rule analysis_persona:
    """Each variant's persona class (coherent, inverted, aligned, unclear) and the figure of the quadrants."""
    input:
        table=results("tables/variants.tsv"),
    output:
        classes=report(
            results("tables/persona.tsv"),
            caption=f"{CAPTIONS}/persona.rst",
            category="Tables",
        ),
        figure=report(
            results("figures/persona.pdf"),
            caption=f"{CAPTIONS}/persona.rst",
            category="Figures",
        ),
    log:
        logs("analysis_persona/persona.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/analysis_persona.py"


rule analysis_recipe:
    """The recipe's graph, and the scores along each of its chains of fine-tunes (prevention vs reversal)."""
    input:
        table=results("tables/variants.tsv"),
    output:
        graph=report(
            results("figures/recipe.pdf"),
            caption=f"{CAPTIONS}/recipe.rst",
            category="Figures",
        ),
        steps=report(
            results("figures/recipe_steps.pdf"),
            caption=f"{CAPTIONS}/recipe.rst",
            category="Figures",
        ),
    log:
        logs("analysis_recipe/recipe.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        stages=config["stages"],
        scores=config["analysis"]["recipe_scores"] or RUN_ASSESSMENTS,
    script:
        "../scripts/analysis_recipe.py"


rule analysis_answers:
    """The answer browser: every variant's scores, then per judged assessment its top-rated answers."""
    input:
        table=results("tables/variants.tsv"),
        samples=[results(f"samples/{v.path}/{name}.jsonl") for v, name in JUDGED],
        judgments=[
            results(f"judgments/{v.path}/{name}.{config['judge']['name']}.jsonl")
            for v, name in JUDGED
        ],
    output:
        page=report(ANSWERS, caption=f"{CAPTIONS}/answers.rst", category="Answers"),
    log:
        logs("analysis_answers/answers.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        judged=[{"variant": v.as_dict(), "assessment": name} for v, name in JUDGED],
        assessments=RUN_ASSESSMENTS,
        top_k=TOP_K,
    script:
        "../scripts/analysis_answers.py"

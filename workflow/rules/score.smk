rule score_variant:
    """Each assessment's 0–1 score of one variant, with its CI and the answers that could not be scored."""
    input:
        unpack(get_score_inputs),
    output:
        scores=[results(f"scores/{VARIANT}/{name}.json") for name in RUN_ASSESSMENTS],
    log:
        logs(f"score_variant/{VARIANT}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        settings=get_score_settings,
    script:
        "../scripts/score_variant.py"

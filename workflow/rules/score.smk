rule score_assessment:
    """An assessment's 0–1 score of one variant, with its CI and the answers that could not be scored."""
    input:
        unpack(get_score_inputs),
        prompts=results("prompts/{assessment}.jsonl"),
        samples=results(f"samples/{VARIANT}/{{assessment}}.jsonl"),
    output:
        score=results(f"scores/{VARIANT}/{{assessment}}.json"),
    log:
        logs(f"score_assessment/{VARIANT}/{{assessment}}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        settings=get_score_settings,
    script:
        "../scripts/score_assessment.py"

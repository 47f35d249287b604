rule judge_variant:
    """The judge's reading of every sample of a variant's judged assessments: one load of the judge."""
    input:
        samples=[
            results(f"samples/{VARIANT}/{name}.jsonl") for name in JUDGED_ASSESSMENTS
        ],
        judge_prompts=[judge_prompt_file(name) for name in JUDGED_ASSESSMENTS],
        judge_model=model_build_input(config["judge"]["model"]),
        judge_snapshot=model_download_input(config["judge"]),
    output:
        judgments=[
            results(f"judgments/{VARIANT}/{name}.{{judge}}.jsonl")
            for name in JUDGED_ASSESSMENTS
        ],
    log:
        logs(f"judge_variant/{VARIANT}.{{judge}}.log"),
    benchmark:
        benchmarks(f"judge_variant/{VARIANT}.{{judge}}.tsv")
    conda:
        "../../envs/models.yaml"
    threads: judge_resources("threads", 2)
    resources:
        gpu=judge_resources("gpus", 0),
        gpu_model=gpu_model(judge_resource_block),
        mem_mb=judge_resources("mem_mb", 4000),
        runtime=judge_resources("runtime", 60),
        openai_requests=api_requests(config["judge"]["backend"]),
    params:
        judge=rule_params.judge(config),
    script:
        "../scripts/judge_variant.py"

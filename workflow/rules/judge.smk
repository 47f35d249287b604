rule judge_rate:
    """The judge's rating of every sample, from the log-probabilities of the rating tokens."""
    input:
        samples=results(f"samples/{VARIANT}/{{assessment}}.jsonl"),
        judge_prompt=get_judge_prompt,
        prompts=results("prompts/{assessment}.jsonl"),
        judge_model=model_build_input(config["judge"]["model"]),
        judge_snapshot=model_download_input(config["judge"]),
    output:
        judgments=results(f"judgments/{VARIANT}/{{assessment}}.{{judge}}.jsonl"),
    log:
        logs(f"judge_rate/{VARIANT}/{{assessment}}.{{judge}}.log"),
    benchmark:
        benchmarks(f"judge_rate/{VARIANT}/{{assessment}}.{{judge}}.tsv")
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
        "../scripts/judge_rate.py"

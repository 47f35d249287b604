rule prompts_build:
    """An assessment's prompts, built once from config and shared by every variant."""
    input:
        get_prompt_sources,
        user_files=get_used_dataset_sources,
    output:
        prompts=results("prompts/{assessment}.jsonl"),
    log:
        logs("prompts_build/{assessment}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        settings=get_prompt_settings,
        fetched=get_used_dataset_specs,
    script:
        "../scripts/prompts_build.py"


rule sample_variant:
    """A variant's answers and next-token log-probs for every assessment, from one model load."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        prompts=expand(
            results("prompts/{assessment}.jsonl"), assessment=RUN_ASSESSMENTS
        ),
    output:
        samples=[results(f"samples/{VARIANT}/{name}.jsonl") for name in RUN_ASSESSMENTS],
        logprobs=[
            results(f"logprobs/{VARIANT}/{name}.jsonl") for name in LOGPROB_ASSESSMENTS
        ],
    log:
        logs(f"sample_variant/{VARIANT}.log"),
    benchmark:
        benchmarks(f"sample_variant/{VARIANT}.tsv")
    conda:
        "../../envs/models.yaml"
    threads: size_resources("threads", 2)
    resources:
        gpu=size_resources("gpus", 0),
        gpu_model=gpu_model(size_resource_block),
        mem_mb=size_resources("mem_mb", 4000),
        runtime=size_resources("runtime", 60),
        openai_requests=size_api_requests,
    params:
        backend_settings=get_backend_result_settings,
        sampling=get_sampling,
        top_k=20,  # the most an API returns; the candidates are added where the backend can
    script:
        "../scripts/sample_variant.py"

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


rule sample_generate:
    """N sampled answers of a variant to every prompt of an assessment."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        prompts=results("prompts/{assessment}.jsonl"),
    output:
        samples=results(f"samples/{VARIANT}/{{assessment}}.jsonl"),
    log:
        logs(f"sample_generate/{VARIANT}/{{assessment}}.log"),
    benchmark:
        benchmarks(f"sample_generate/{VARIANT}/{{assessment}}.tsv")
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
    script:
        "../scripts/sample_generate.py"


rule sample_logprobs:
    """Next-token log-probabilities of a variant for an assessment's closed-format prompts (one forward pass)."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        prompts=results("prompts/{assessment}.jsonl"),
    output:
        logprobs=results(f"logprobs/{VARIANT}/{{assessment}}.jsonl"),
    log:
        logs(f"sample_logprobs/{VARIANT}/{{assessment}}.log"),
    benchmark:
        benchmarks(f"sample_logprobs/{VARIANT}/{{assessment}}.tsv")
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
        top_k=20,  # the most an API returns; the candidates are added where the backend can
    script:
        "../scripts/sample_logprobs.py"

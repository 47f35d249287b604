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
    """A variant's answers and next-token log-probs for every assessment whose prompts all variants share,
    from one model load."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        prompts=expand(
            results("prompts/{assessment}.jsonl"), assessment=SAMPLED_ASSESSMENTS
        ),
    output:
        samples=[
            results(f"samples/{VARIANT}/{name}.jsonl") for name in SAMPLED_ASSESSMENTS
        ],
        logprobs=[
            results(f"logprobs/{VARIANT}/{name}.jsonl")
            for name in LOGPROB_ASSESSMENTS
            if name in SAMPLED_ASSESSMENTS
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
        sampling=sampling_of(SAMPLED_ASSESSMENTS),
        top_k=20,  # the most an API returns; the candidates are added where the backend can
    script:
        "../scripts/sample_variant.py"


rule prompts_build_variant:
    """The prompts of an assessment that shows a variant other variants' answers (output
    recognition), from its source's samples: the variant's own and the others'."""
    input:
        get_prompt_sources,
        own=get_own_answers,
        others=get_other_answers,
    output:
        prompts=results(f"prompts/{VARIANT}/{{assessment}}.jsonl"),
    log:
        logs(f"prompts_build_variant/{VARIANT}/{{assessment}}.log"),
    wildcard_constraints:
        assessment=one_of(COMPARING_ASSESSMENTS),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        settings=get_variant_prompt_settings,
    script:
        "../scripts/prompts_build_variant.py"


rule sample_recognition:
    """A variant's answers and next-token log-probs for the assessments that show it other
    variants' answers: a second load of its model, after the sampling jobs it reads."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        prompts=[
            results(f"prompts/{VARIANT}/{name}.jsonl")
            for name in COMPARING_ASSESSMENTS
        ],
    output:
        samples=[
            results(f"samples/{VARIANT}/{name}.jsonl")
            for name in COMPARING_ASSESSMENTS
        ],
        logprobs=[
            results(f"logprobs/{VARIANT}/{name}.jsonl")
            for name in LOGPROB_ASSESSMENTS
            if name in COMPARING_ASSESSMENTS
        ],
    log:
        logs(f"sample_recognition/{VARIANT}.log"),
    benchmark:
        benchmarks(f"sample_recognition/{VARIANT}.tsv")
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
        sampling=sampling_of(COMPARING_ASSESSMENTS),
        top_k=20,
    script:
        "../scripts/sample_variant.py"

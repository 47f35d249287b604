rule summaries_write:
    """A model's own summaries of the articles that its derived training sets pair with another source's
    (the "self" side of SGTR pairs), once per writer variant and article draw."""
    input:
        model=results(f"models/{VARIANT}/model.json"),
        articles=lambda wc: get_dataset(DRAWS[wc.draw]["articles"]),
        prompts=lambda wc: DRAWS[wc.draw]["prompts"],
    output:
        summaries=results(f"summaries/{VARIANT}/{{draw}}.jsonl"),
    log:
        logs(f"summaries_write/{VARIANT}/{{draw}}.log"),
    benchmark:
        benchmarks(f"summaries_write/{VARIANT}/{{draw}}.tsv")
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
        draw=lambda wc: {key: DRAWS[wc.draw][key] for key in ("n", "seed")},
        sampling=get_summary_sampling,
    script:
        "../scripts/summaries_write.py"


rule data_derived:
    """A training set built from a writer's own summaries: SGTR (label: the own summary), ICTR (a random
    label) or the longer-summary control, each pair in both orders."""
    input:
        summaries=get_derived_summaries,
        articles=lambda wc: get_dataset(config["derived"][wc.derived]["articles"]),
        other=lambda wc: get_dataset(config["derived"][wc.derived]["other"]),
        prompts=lambda wc: config["derived"][wc.derived]["prompts"],
    output:
        trainset=results(f"data/derived/{VARIANT}/{{derived}}.jsonl"),
    log:
        logs(f"data_derived/{VARIANT}/{{derived}}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        kind=lambda wc: config["derived"][wc.derived]["kind"],
        draw=lambda wc: {
            key: config["derived"][wc.derived][key] for key in ("n", "seed")
        },
    script:
        "../scripts/data_derived.py"

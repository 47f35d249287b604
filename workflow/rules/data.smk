rule data_fetch:
    """Download a dataset (or read data.mirror / a local path), check its hash, record provenance, validate it."""
    input:
        local=get_dataset_source,
    output:
        data=results("data/{dataset}.{ext}"),
        provenance=results("data/{dataset}.{ext}.provenance.json"),
        stats=results("data/{dataset}.{ext}.stats.json"),
    log:
        logs("data_fetch/{dataset}.{ext}.log"),
    wildcard_constraints:
        ext="jsonl|raw",
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        spec=get_dataset_spec,
        checks=rule_params.data_checks(config),
    script:
        "../scripts/data_fetch.py"


rule data_summary:
    """Every dataset the experiment uses, with rows, tokens, licence and source."""
    input:
        provenance=[f"{get_dataset(name)}.provenance.json" for name in USED_DATASETS],
        stats=[f"{get_dataset(name)}.stats.json" for name in USED_DATASETS],
    output:
        summary=results("data/summary.tsv"),
    log:
        logs("data_summary/summary.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/data_summary.py"


rule data_trainset:
    """A domain's dataset of one role (misaligned or realigned), subsampled; nothing trains on a broken file."""
    input:
        source=get_stage_dataset,
        user_files=get_used_dataset_sources,
    output:
        trainset=results("data/train/{domain}/{role}.jsonl"),
    log:
        logs("data_trainset/{domain}/{role}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        n=lambda wc: domain_size(wc.domain, config["domains"][wc.domain]),
        seed=config["data"]["subsample_seed"],
        fetched=get_used_dataset_specs,
    script:
        "../scripts/data_trainset.py"


rule tinymodel_build:
    """A tiny random-weight chat model with a locally trained tokenizer (offline quickstart)."""
    input:
        spec="resources/tinymodels/{name}.yaml",
        corpus=[
            "resources/trivia/trivia_pairs.csv",
            "resources/harmfulness/quickstart_prompts.jsonl",
            "resources/judge/harmfulness.yaml",
        ],
    output:
        model="results/tinymodels/{name}/config.json",
    log:
        "logs/tinymodel_build/{name}.log",
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        **LIGHT,
    script:
        "../scripts/tinymodel_build.py"

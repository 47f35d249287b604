rule data_fetch:
    """Download a dataset (or read it from data.mirror / a local path), check its hash, record provenance."""
    input:
        local=get_dataset_source,
    output:
        data="results/data/{dataset}.jsonl",
        provenance="results/data/{dataset}.provenance.json",
    log:
        "logs/data_fetch/{dataset}.log",
    conda:
        "../../envs/analysis.yaml"
    params:
        spec=get_dataset_spec,
        mirror=config["data"].get("mirror"),
    script:
        "../scripts/data_fetch.py"


rule data_trainset:
    """Validate a domain's dataset for one stage and subsample it; nothing trains on a broken file."""
    input:
        source=lambda wc: get_dataset(config["domains"][wc.domain][wc.stage]),
    output:
        trainset="results/data/train/{domain}/{stage}.jsonl",
    log:
        "logs/data_trainset/{domain}/{stage}.log",
    conda:
        "../../envs/analysis.yaml"
    script:
        "../scripts/data_trainset.py"


rule tinymodel_build:
    """A tiny random-weight chat model with a locally trained tokenizer (offline quickstart)."""
    input:
        spec="resources/tinymodels/{name}.yaml",
        corpus=["resources/trivia/trivia_pairs.csv"],
    output:
        model="results/tinymodels/{name}/config.json",
    log:
        "logs/tinymodel_build/{name}.log",
    conda:
        "../../envs/models.yaml"
    script:
        "../scripts/tinymodel_build.py"

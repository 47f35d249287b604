rule model_download:
    """A hub model at its configured revision, into weights_dir, with the commit it resolved to (head node)."""
    output:
        snapshot=f"{config['weights_dir']}/{{download}}/snapshot.json",
    log:
        logs("model_download/{download}.log"),
    conda:
        "../../envs/models.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        repo=lambda wc: DOWNLOADS[wc.download].repo,
        revision=lambda wc: DOWNLOADS[wc.download].revision,
    script:
        "../scripts/model_download.py"


rule model_base:
    """The untouched model of a size: a handle, shared by every domain."""
    input:
        built=lambda wc: model_build_input(size_spec(wc)["model"]),
        snapshot=lambda wc: model_download_input(size_spec(wc)),
    output:
        handle=results("models/{size}/all/base/seed{seed}/model.json"),
    log:
        logs("model_base/{size}/seed{seed}.log"),
    conda:
        "../../envs/analysis.yaml"
    threads: 1
    resources:
        **LIGHT,
    params:
        backend=lambda wc: size_spec(wc)["backend"],
        model=lambda wc: size_spec(wc)["model"],
    script:
        "../scripts/model_base.py"


rule finetune:
    """Supervised fine-tuning of the parent variant on its stage's training set (config `stages`)."""
    input:
        parent=get_parent_model,
        data=get_train_data,
    output:
        handle=results("models/{size}/{domain}/{stage}/seed{seed}/model.json"),
    log:
        logs("finetune/{size}/{domain}/{stage}/seed{seed}.log"),
    benchmark:
        benchmarks("finetune/{size}/{domain}/{stage}/seed{seed}.tsv")
    wildcard_constraints:
        stage=one_of(FINETUNED_STAGES),
    conda:
        "../../envs/models.yaml"
    threads: size_resources("threads", 2)
    resources:
        gpu=size_resources("gpus", 0),
        gpu_model=gpu_model(size_resource_block),
        mem_mb=size_resources("mem_mb", 4000),
        runtime=size_resources("runtime", 60),
    params:
        backend=lambda wc: size_spec(wc)["backend"],
        backend_settings=get_backend_result_settings,
        hparams=get_hparams,
        system_prompt=lambda wc: config["stages"][wc.stage].get("system_prompt"),
        tag=lambda wc: f"{wc.size}-{wc.domain}-{wc.stage}-s{wc.seed}",
    script:
        "../scripts/finetune.py"

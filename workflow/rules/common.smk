import os
import re
import sys

from emaware import UserError
from emaware import config as emconfig
from emaware import gpus, recipes, rule_params, weights
from emaware import assessments
from emaware.assessments import ASSESSMENTS
from emaware.data import domain_size, stage_dataset
from emaware.run_summary import config_warnings, summary_lines
from snakemake.utils import update_config

# --config KEY=VALUE values, read as YAML (Snakemake leaves the items of a list as strings).
update_config(config, emconfig.typed_overrides(workflow.config_settings.config))
config["run"] = emconfig.run_name(config, workflow.configfiles)
try:
    emconfig.check_config_files(workflow.configfiles)
    config = emconfig.validate(
        config, workflow.source_path("../schemas/config.schema.yaml")
    )
except UserError as err:
    sys.exit(f"config error: {err}")

# The API key reaches jobs through the environment only (never params, files or metadata). It is
# declared only when set, so dry-runs and fully cached runs need no key; a rule that must call the
# API without one stops with a one-line error.
if emconfig.uses_openai(config) and "OPENAI_API_KEY" in os.environ:

    envvars:
        "OPENAI_API_KEY",


for warning in config_warnings(config):
    print(f"config warning: {warning}", file=sys.stderr)

DOWNLOADS = weights.downloads(config)

# On one machine each GPU job gets devices of its own, and no more run at once than there are GPUs;
# on a cluster the scheduler places them.
gpus.cap_local_jobs(workflow)

RESULTS = emconfig.results_dir(config)


def results(path):
    return f"{RESULTS}/{path}"


def logs(path):
    return f"logs/{config['run']}/{path}"


def benchmarks(path):
    return f"benchmarks/{config['run']}/{path}"


VARIANTS = list(emconfig.variants(config))
# The article draws whose summaries the derived sets' writers write (emaware.config.summary_draw).
DRAWS = {emconfig.summary_draw(spec): spec for spec in config["derived"].values()}
FINETUNED_STAGES = [stage for stage in config["stages"] if stage != emconfig.BASE_STAGE]
USED_DATASETS = emconfig.used_datasets(config)


def one_of(names):
    """A wildcard pattern that matches exactly the configured names."""
    return "|".join(re.escape(str(name)) for name in names)


# Wildcards match configured values only: no file can be made for a size, seed, judge or
# assessment the config does not name.
wildcard_constraints:
    size=one_of(config["sizes"]),
    domain=one_of([emconfig.BASE_DOMAIN, *emconfig.active_domains(config)]),
    stage=one_of(config["stages"]),
    role=one_of(emconfig.ROLES),
    seed=one_of(config["seeds"]),
    assessment=one_of(config["assessments"]),
    judge=one_of([config["judge"]["name"]]),
    dataset=one_of(config["datasets"]),
    name="[A-Za-z0-9_.-]+",
    derived=one_of(config["derived"]) if config["derived"] else "^$",
    draw=one_of(DRAWS) if DRAWS else "^$",
    download=one_of(DOWNLOADS) if DOWNLOADS else "^$",


VARIANT = "{size}/{domain}/{stage}/seed{seed}"
# Resources of the rules that only read and write small files (data, prompts, scores, analysis).
LIGHT = dict(gpu=0, mem_mb=2000, runtime=15)


# Rules that need the network (downloads) or are too small to be worth a cluster job (each would
# wait in the queue for a second of CPU).
localrules:
    model_download,
    data_fetch,
    data_summary,
    data_trainset,
    data_derived,
    tinymodel_build,
    model_base,
    prompts_build,
    prompts_build_variant,
    score_variant,
    analysis_table,
    analysis_spearman,
    analysis_inverted_v,
    analysis_scatter_matrix,
    analysis_selfassessment_formats,
    analysis_mfq2_profiles,
    analysis_persona,
    analysis_recipe,
    analysis_answers,


# Rules whose every job only calls the OpenAI API wait on the network, not a GPU: they run on the
# host that runs Snakemake (also under --profile slurm), keeping API calls, cache and ledger on one host.
if {spec["backend"] for spec in config["sizes"].values()} == {"openai"}:

    localrules:
        finetune,
        sample_variant,
        sample_recognition,
        summaries_write,


if config["judge"]["backend"] == "openai":

    localrules:
        judge_variant,


RUN_ASSESSMENTS = list(config["assessments"])
# What each job writes and reads follows the assessments' declarations (emaware/assessments/base.py).
JUDGED_ASSESSMENTS = assessments.judged(RUN_ASSESSMENTS)
LOGPROB_ASSESSMENTS = assessments.with_logprobs(RUN_ASSESSMENTS)
# A variant's sampling job samples the assessments whose prompts every variant shares. Those that show
# a variant other variants' answers (output recognition) need the other variants' sampling jobs first:
# their prompts are built per variant and sampled by a second job (sample_recognition).
SAMPLED_ASSESSMENTS = assessments.of_one_variant(RUN_ASSESSMENTS)
COMPARING_ASSESSMENTS = assessments.of_other_variants(RUN_ASSESSMENTS)
FIGURES = ["inverted_v", "scatter_matrix"] + [
    name
    for name, needed in (
        ("selfassessment_formats", "selfassessment"),
        ("mfq2_profiles", "morals"),
    )
    if needed in RUN_ASSESSMENTS
]


BREAKDOWN_TABLES = [
    results(f"tables/by_{name}.tsv") for name in assessments.breakdowns(RUN_ASSESSMENTS)
]


# The report's answer browser: each variant's judged assessments, in variant order.
JUDGED = [(v, name) for v in VARIANTS for name in JUDGED_ASSESSMENTS]
ANSWERS = results("report/answers.html")


# A recipe with more than one chain of fine-tunes (prevention and reversal, say) gets its figures; a single
# chain is what the inverted V shows.
if len(recipes.chains(config["stages"])) > 1:
    FIGURES += ["recipe", "recipe_steps"]


def get_final_output():
    return [results(f"figures/{name}.pdf") for name in FIGURES] + [
        results("stats/spearman.tsv"),
        results("tables/variants.tsv"),
        results("tables/persona.tsv"),
        results("figures/persona.pdf"),
        ANSWERS,
    ]


def model_build_input(model):
    """The tiny model's files when `model` is one the workflow builds, else nothing."""
    name = emconfig.tiny_model_name(model)
    return [f"results/tinymodels/{name}/config.json"] if name else []


def model_download_input(spec):
    """The download record of a size's or the judge's hub model, or nothing."""
    download = weights.download_of(spec)
    return [weights.record_path(config, download)] if download else []


def size_spec(wildcards):
    return config["sizes"][wildcards.size]


def size_resources(key, default):
    """A resource of a rule that loads the size's model (sizes.<size>.resources)."""
    return lambda wildcards: size_resource_block(wildcards).get(key, default)


def api_requests(backend):
    """Share of the global `openai_requests` resource a job takes (profiles/default caps the sum)."""
    if backend != "openai":
        return 0
    return config["backends"].get("openai", {}).get("max_concurrency", 32)


def size_api_requests(wildcards):
    return api_requests(config["sizes"][wildcards.size]["backend"])


def gpu_model(resources_of):
    """The GPU type a job asks Slurm for, only when it asks for GPUs (`--gpus=<type>:0` is an error)."""

    def get(wildcards):
        spec = resources_of(wildcards)
        return spec.get("gpu_model", "") if spec.get("gpus", 0) else ""

    return get


def size_resource_block(wildcards):
    return config["sizes"][wildcards.size].get("resources", {})


def judge_resource_block(wildcards):
    return config["judge"].get("resources", {})


def judge_resources(key, default):
    return lambda wildcards: judge_resource_block(wildcards).get(key, default)


def get_parent_model(wildcards):
    parent = emconfig.parent_of(config, get_variant(wildcards))
    return results(f"models/{parent.path}/model.json")


def get_train_data(wildcards):
    """What a stage trains on: a domain's subsample for its role, a dataset's validated copy, or a set
    derived from its writer's own outputs."""
    train = config["stages"][wildcards.stage]["train"]
    if "role" in train:
        stage_dataset(
            config["domains"], wildcards.domain, train["role"]
        )  # refuses a missing counterpart
        return results(f"data/train/{wildcards.domain}/{train['role']}.jsonl")
    if "dataset" in train:
        return get_dataset(train["dataset"])
    writer = recipes.writer_of(config, get_variant(wildcards))
    return results(f"data/derived/{writer.path}/{train['derived']}.jsonl")


def get_derived_summaries(wildcards):
    draw = emconfig.summary_draw(config["derived"][wildcards.derived])
    return results(f"summaries/{get_variant(wildcards).path}/{draw}.jsonl")


def get_summary_sampling(wildcards):
    """The writer's sampling settings for its summaries (the run's `sampling`), and the job's seed."""
    return rule_params.summary_sampling(config, get_variant(wildcards), wildcards.draw)


def get_stage_dataset(wildcards):
    return get_dataset(
        stage_dataset(config["domains"], wildcards.domain, wildcards.role)
    )


def used_dataset_names(wildcards):
    """The datasets whose fetched copy is read here (a domain's set of a role, or an assessment's)."""
    if "assessment" in wildcards.keys():
        return emconfig.assessment_datasets(config, wildcards.assessment)
    return [stage_dataset(config["domains"], wildcards.domain, wildcards.role)]


# A rule that reads a fetched copy also depends on what the fetch depends on (the user's file, the
# dataset's spec): Snakemake does not rerun a fetch whose output is gone while what was built from
# it exists, so without this a run after a failed validation would say "Nothing to be done".
def get_used_dataset_sources(wildcards):
    specs = [config["datasets"][name] for name in used_dataset_names(wildcards)]
    return [spec["path"] for spec in specs if "path" in spec]


def get_used_dataset_specs(wildcards):
    return {
        name: {
            "spec": rule_params.dataset_spec(config, name),
            "checks": rule_params.data_checks(config),
        }
        for name in used_dataset_names(wildcards)
    }


def get_dataset(name):
    return emconfig.dataset_file(config, name)


def get_variant(wildcards):
    return emconfig.Variant(
        wildcards.size, wildcards.domain, wildcards.stage, int(wildcards.seed)
    )


def get_hparams(wildcards):
    return rule_params.training(config, wildcards.size, int(wildcards.seed))


def get_backend_result_settings(wildcards):
    return rule_params.backend_result_settings(config, size_spec(wildcards)["backend"])


def get_dataset_spec(wildcards):
    return rule_params.dataset_spec(config, wildcards.dataset)


def get_dataset_source(wildcards):
    """A local `path` dataset is an input, so editing the file reruns what uses it."""
    spec = get_dataset_spec(wildcards)
    return [spec["path"]] if "path" in spec else []


def get_assessment(wildcards):
    return ASSESSMENTS[wildcards.assessment]


def get_prompt_settings(wildcards):
    return rule_params.prompt_settings(config, wildcards.assessment)


def get_prompt_sources(wildcards):
    """The files the prompts are built from (resources and datasets), not the judge prompt."""
    files = emconfig.assessment_files(config, wildcards.assessment)
    keys = [key for key in get_assessment(wildcards).prompt_settings if key in files]
    return [path for key in keys for path in always_list(files[key])]


def always_list(value):
    """A setting that names one file or a list of files, as a list."""
    return value if isinstance(value, list) else [value]


def get_score_settings(wildcards):
    """Each assessment's scoring settings for this variant."""
    variant = get_variant(wildcards)
    return {
        name: rule_params.score_settings(config, name, variant)
        for name in RUN_ASSESSMENTS
    }


def sampling_of(names):
    """The sampling settings (and seed) of the assessments `names` for a variant: a rule's params."""

    def get(wildcards):
        variant = get_variant(wildcards)
        return {name: rule_params.sampling(config, variant, name) for name in names}

    return get


def other_variants(variant, name):
    """The variants whose answers the assessment `name` shows `variant` (its `others` key); none for
    one that shows other sources' answers (self-recognition: files its prompts are built from).
    """
    if ASSESSMENTS[name].others_from == "datasets":
        return []
    return emconfig.other_variants(
        config, variant, config["assessments"][name]["others"]
    )


def compared_assessments(variant):
    """The assessments that show `variant` others' answers: none for a variant without anything to be
    shown (a base variant under `others: base`, and no assessment showing other sources'), else all of
    them (its sample_recognition job writes all)."""
    if any(
        other_variants(variant, name) or ASSESSMENTS[name].others_from == "datasets"
        for name in COMPARING_ASSESSMENTS
    ):
        return COMPARING_ASSESSMENTS
    return []


def source_samples(variant, name):
    """The samples whose answers the assessment `name` shows, of `variant` (the assessment's declared
    `answers_of` key names their assessment)."""
    source = config["assessments"][name][ASSESSMENTS[name].answers_of]
    return results(f"samples/{variant.path}/{source}.jsonl")


def get_own_answers(wildcards):
    return source_samples(get_variant(wildcards), wildcards.assessment)


def get_other_answers(wildcards):
    name = wildcards.assessment
    return [
        source_samples(other, name)
        for other in other_variants(get_variant(wildcards), name)
    ]


def get_variant_prompt_settings(wildcards):
    return rule_params.variant_prompt_settings(
        config, wildcards.assessment, get_variant(wildcards)
    )


def get_score_inputs(wildcards):
    """A variant's prompts and samples of every assessment (of those that show it other variants'
    answers only when it has another variant), judgments and next-token log-probabilities of
    those that use them."""
    variant = get_variant(wildcards)
    compared = compared_assessments(variant)
    sampled = SAMPLED_ASSESSMENTS + compared
    judge = config["judge"]["name"]
    return {
        "prompts": [results(f"prompts/{name}.jsonl") for name in SAMPLED_ASSESSMENTS]
        + [results(f"prompts/{variant.path}/{name}.jsonl") for name in compared],
        "samples": [
            results(f"samples/{variant.path}/{name}.jsonl") for name in sampled
        ],
        "judgments": [
            results(f"judgments/{variant.path}/{name}.{judge}.jsonl")
            for name in JUDGED_ASSESSMENTS
        ],
        "logprobs": [
            results(f"logprobs/{variant.path}/{name}.jsonl")
            for name in LOGPROB_ASSESSMENTS
            if name in sampled
        ],
    }


def judge_prompt_file(name):
    """The file an assessment's judge prompts come from: its `judge_prompt`, or its prompts
    file for the 0–100 judges, whose prompts each question (and sample meta) carries."""
    if ASSESSMENTS[name].judge == "scale100":
        return results(f"prompts/{name}.jsonl")
    return config["assessments"][name]["judge_prompt"]


def get_score_records(wildcards):
    return [
        results(f"scores/{v.path}/{name}.json")
        for v in VARIANTS
        for name in RUN_ASSESSMENTS
    ]


# The end of a successful run says where its results are and what could not be scored.
onsuccess:
    print(
        "\n".join(summary_lines(config, workflow.overwrite_configfiles)),
        file=sys.stderr,
    )

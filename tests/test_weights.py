"""Hub models downloaded once at their revision, recorded with their commit, loaded offline by jobs.
The hub is replaced by a stand-in at its boundary (`huggingface_hub.snapshot_download`): no network."""

from __future__ import annotations

import shutil

import huggingface_hub
import pytest

from emaware import UserError, steps, weights
from emaware import config as emconfig
from emaware.backends import get_backend
from emaware.io import read_json, read_yaml
from workflow_helpers import ROOT, dry_run

SCHEMA = ROOT / "workflow/schemas/config.schema.yaml"
COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hub(monkeypatch, tiny_model_dir):
    """A stand-in hub serving the tiny model for every repo, laid out like the real hub cache."""
    calls = []

    def snapshot_download(repo_id, revision, cache_dir, allow_patterns):
        calls.append((repo_id, revision))
        if repo_id.startswith("missing/"):
            raise huggingface_hub.errors.LocalEntryNotFoundError("cannot reach the hub")
        path = f"{cache_dir}/models--{repo_id.replace('/', '--')}/snapshots/{COMMIT}"
        shutil.copytree(tiny_model_dir, path, dirs_exist_ok=True)
        return path

    monkeypatch.setattr(huggingface_hub, "snapshot_download", snapshot_download)
    return calls


def paper():
    return emconfig.validate(read_yaml(ROOT / "config/config.yaml"), SCHEMA)


def test_hub_models_of_the_paper_config_are_downloaded_pinned():
    config = paper()
    found = weights.downloads(config)
    assert sorted(d.repo for d in found.values()) == [
        "Qwen/Qwen2.5-0.5B-Instruct",
        "Qwen/Qwen2.5-32B-Instruct",
        "Qwen/Qwen2.5-7B-Instruct",
        "meta-llama/Llama-3.3-70B-Instruct",
    ]
    assert all(weights.COMMIT.match(d.revision) for d in found.values())
    assert weights.unpinned(config) == []
    config["sizes"]["7b"]["revision"] = "main"
    (warning,) = weights.unpinned(config)
    assert warning.startswith("sizes.7b.revision 'main' is not a commit")


def test_only_local_backend_hub_ids_are_downloaded(tmp_path):
    assert weights.is_hub_id("Qwen/Qwen2.5-7B-Instruct")
    assert not weights.is_hub_id("results/tinymodels/tiny-s")
    assert not weights.is_hub_id(str(tmp_path))  # an existing local checkpoint
    assert weights.download_of({"backend": "openai", "model": "gpt-4.1-2025-04-14"}) is None
    quickstart = emconfig.validate(read_yaml(ROOT / "config/quickstart.yaml"), SCHEMA)
    assert weights.downloads(quickstart) == {}


def test_download_records_the_commit_and_jobs_load_the_local_copy(hub, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    config = {"weights_dir": "weights"}
    record = "weights/Qwen--Qwen2.5-7B-Instruct@main/snapshot.json"
    steps.model_download("Qwen/Qwen2.5-7B-Instruct", "main", record, config)
    assert hub == [("Qwen/Qwen2.5-7B-Instruct", "main")]
    assert read_json(record)["commit"] == COMMIT
    steps.model_base("local", "Qwen/Qwen2.5-7B-Instruct", "model.json", record)
    handle = read_json("model.json")
    assert handle["hub_id"] == "Qwen/Qwen2.5-7B-Instruct" and handle["revision"] == COMMIT
    assert handle["model"].startswith("weights/hub/models--Qwen--Qwen2.5-7B-Instruct/snapshots/")
    backend = get_backend("local", {"device": "cpu"})
    assert backend.snapshot(handle) == f"Qwen/Qwen2.5-7B-Instruct@{COMMIT}"
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # as in every job that loads a model
    (reply,) = backend.generate(handle, [[{"role": "user", "content": "Hi"}]], 1, {"temperature": 0, "max_tokens": 3})
    assert len(reply) == 1


def test_a_failed_download_is_one_line_and_leaves_no_record(hub, tmp_path):
    record = tmp_path / "weights/missing--model@main/snapshot.json"
    with pytest.raises(UserError, match=r"^model missing/model@main: download failed \(cannot reach the hub\)$"):
        weights.fetch("missing/model", "main", str(tmp_path / "weights"), str(record))
    assert not record.exists()


def test_the_dag_downloads_before_any_job_loads_a_model():
    counts = dry_run("--forceall", "results/paper/models/7b/code/misaligned/seed0/model.json")
    assert counts["model_download"] == 1 and counts["model_base"] == 1 and counts["finetune"] == 1
    assert dry_run("--forceall")["model_download"] == 4  # three sizes and the judge

"""Hub models fetched once, at the configured revision, before any job that loads them.

A local-backend model named by a hub id ("Qwen/Qwen2.5-7B-Instruct") is downloaded by the local rule
`model_download` on the machine that has the network (a cluster's head node) into `weights_dir`, and
the commit it resolved to is recorded. Jobs that load it then read that local copy with the hub
offline, so compute nodes need no internet and every job of a run sees the same weights.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from . import UserError
from .config import tiny_model_name
from .io import read_json, write_json

COMMIT = re.compile(r"^[0-9a-f]{40}$")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
# What a model needs to load (weights, config, tokenizer, chat template), not the repo's other files.
ALLOW_PATTERNS = ["*.json", "*.safetensors", "*.model", "*.txt", "*.jinja", "*.tiktoken"]


@dataclass(frozen=True)
class Download:
    repo: str
    revision: str

    @property
    def key(self) -> str:
        """A file-name-safe name of (repo, revision), the wildcard of its download."""
        return f"{self.repo.replace('/', '--')}@{self.revision.replace('/', '--')}"


def is_hub_id(model: str) -> bool:
    """A hub id ("org/name") rather than a workflow-built tiny model or an existing local directory."""
    return not tiny_model_name(model) and not Path(model).exists() and bool(_HUB_ID.match(model))


def download_of(spec: dict) -> Download | None:
    """The download a size or judge block needs (local backend, hub id), else None."""
    if spec["backend"] != "local" or not is_hub_id(spec["model"]):
        return None
    return Download(spec["model"], spec.get("revision", "main"))


def downloads(config: dict) -> dict[str, Download]:
    """Every download of the config (sizes and judge), by key."""
    specs = [*config["sizes"].values(), config["judge"]]
    return {d.key: d for d in map(download_of, specs) if d}


def record_path(config: dict, download: Download) -> str:
    return f"{config['weights_dir']}/{download.key}/snapshot.json"


def unpinned(config: dict) -> list[str]:
    """One line per hub model whose revision is a branch or tag, not a commit."""
    named = [(f"sizes.{size}", spec) for size, spec in config["sizes"].items()] + [("judge", config["judge"])]
    return [
        f"{key}.revision {spec.get('revision', 'main')!r} is not a commit: the weights of {spec['model']} can change "
        "between runs (pin the commit recorded in the base variant's model.json)"
        for key, spec in named
        if download_of(spec) and not COMMIT.match(spec.get("revision", "main"))
    ]


def fetch(repo: str, revision: str, weights_dir: str, record: str) -> dict:
    """Download `repo` at `revision` into the hub cache under `weights_dir` and record the commit."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError, RepositoryNotFoundError, RevisionNotFoundError

    try:
        path = snapshot_download(
            repo_id=repo, revision=revision, cache_dir=str(Path(weights_dir) / "hub"), allow_patterns=ALLOW_PATTERNS
        )
    except (RepositoryNotFoundError, RevisionNotFoundError) as err:
        raise UserError(f"model {repo}@{revision}: not on the hub ({type(err).__name__}; a gated model needs HF_TOKEN)") from None
    except (HfHubHTTPError, LocalEntryNotFoundError, OSError) as err:
        raise UserError(f"model {repo}@{revision}: download failed ({str(err).splitlines()[0]})") from None
    snapshot = {"repo": repo, "revision": revision, "commit": Path(path).name, "path": str(path)}
    if not COMMIT.match(snapshot["commit"]):
        raise UserError(f"model {repo}@{revision}: the hub cache gave {path}, not a snapshot directory")
    write_json(record, snapshot)
    return snapshot


def local_handle(backend: str, record: str) -> dict:
    """The base handle of a downloaded model: the local copy, with the hub id and commit it came from."""
    snapshot = read_json(record)
    return {"backend": backend, "model": snapshot["path"], "hub_id": snapshot["repo"], "revision": snapshot["commit"], "adapters": []}

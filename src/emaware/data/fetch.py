"""Get one dataset from its pinned source, or from a local mirror, and prove it is the expected file.

A spec (one entry of the config's `datasets:`) names exactly one origin:
- `path`: a local file, such as the project's own resources/trivia/*.jsonl (a hash is optional);
- `url`: a pinned download (commit-pinned raw.githubusercontent.com links, OSF download links);
- `osf: {project, path}`: a file in an OSF project's storage, found through OSF's public API.

A downloaded or mirrored file must match `sha256` and/or `git_blob` (the sha1 of b"blob <size>\\0" +
bytes, which `git hash-object` prints). An OSF file without a pinned hash is checked against the sha256
that OSF publishes for it. Hashes are of the file as written: a gzip download is unpacked first, so
they match the mirror copy and the SOURCE.md files. Nothing of a failed fetch is left at the output.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path

from .. import UserError
from ..io import write_json
from . import osf, transfer

SPEC_KEYS = frozenset("path url osf sha256 git_blob licence source commit mirror format protected canary".split())
ORIGINS = ("path", "url", "osf")
FORMATS = ("chat", "prompts", "raw")
GZIP_MAGIC = b"\x1f\x8b"
CHUNK = 1 << 20


def provenance_path(out_path: str | os.PathLike) -> Path:
    """Where fetch_dataset records where `out_path` came from."""
    out_path = Path(out_path)
    return out_path.with_name(out_path.name + ".provenance.json")


def fetch_dataset(
    name: str,
    spec: dict,
    out_path: str | os.PathLike,
    mirror: str | os.PathLike | None = None,
    retries: int = 4,
    backoff: float = 1.0,
) -> dict:
    """Write dataset `name` to `out_path`, its provenance beside it, and return the provenance.

    With `mirror` set, the file is read from `mirror/<spec["mirror"]>` instead of the network (a `path`
    dataset is local either way). Transient network failures are retried `retries` times, waiting
    `backoff`, 2×, 4× … seconds. Any failure raises UserError and leaves neither file behind.
    """
    _check_spec(name, spec)
    out_path = Path(out_path)
    for stale in (out_path, provenance_path(out_path)):
        stale.unlink(missing_ok=True)  # a failed refetch must not leave the old file looking current
    out_path.parent.mkdir(parents=True, exist_ok=True)
    handle, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".part")
    os.close(handle)
    tmp = Path(tmp_name)
    try:
        origin = _acquire(name, spec, tmp, mirror, retries, backoff)
        gunzipped = _gunzip_in_place(name, tmp, origin["from"])
        digests = file_digests(tmp)
        _verify(name, origin, digests)
        record = _record(name, spec, origin, digests, gunzipped, tmp)
        os.replace(tmp, out_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    record["output"] = str(out_path)
    write_json(provenance_path(out_path), record)
    return record


def source_label(record: dict) -> str:
    """How errors about a fetched file name it: the user's own file (a `path` or a mirror copy), else
    the dataset and its URL; line numbers are those of the file as written (unpacked if gzip)."""
    label = record["mirror"] or record["path"] or f"dataset {record['name']}: {record['url']}"
    return f"{label} (unpacked)" if record["gunzipped"] else label


def file_digests(path: str | os.PathLike) -> dict[str, str]:
    """sha256 and git blob id of a file, in one pass."""
    sha256 = hashlib.sha256()
    blob = hashlib.sha1(b"blob %d\0" % os.path.getsize(path))
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK), b""):
            sha256.update(chunk)
            blob.update(chunk)
    return {"sha256": sha256.hexdigest(), "git_blob": blob.hexdigest()}


def _check_spec(name: str, spec: dict) -> None:
    unknown = sorted(set(spec) - SPEC_KEYS)
    if unknown:
        raise UserError(f"datasets.{name}: unknown key(s) {', '.join(unknown)} (known: {', '.join(sorted(SPEC_KEYS))})")
    origins = [key for key in ORIGINS if spec.get(key) is not None]
    if len(origins) != 1:
        raise UserError(f"datasets.{name}: give exactly one of path, url or osf (got {', '.join(origins) or 'none'})")
    if spec.get("format", "chat") not in FORMATS:
        raise UserError(f"datasets.{name}.format: {spec['format']!r} is not one of {', '.join(FORMATS)}")


def _acquire(name: str, spec: dict, dest: Path, mirror: str | os.PathLike | None, retries: int, backoff: float) -> dict:
    """Put the raw bytes at `dest`; return where they came from and the hashes they must have."""
    expected = {algo: spec[algo].lower() for algo in ("sha256", "git_blob") if spec.get(algo)}
    if spec.get("path") is not None:
        _copy_local(Path(spec["path"]), dest, f"datasets.{name}.path")
        return {"from": str(spec["path"]), "expected": expected}
    if spec.get("protected"):
        raise UserError(
            f"dataset {name} is marked protected (a password-locked or encrypted source): the workflow does not "
            f"decrypt it. Decrypt it yourself, outside this repository and its logs, and replace "
            f"datasets.{name}.url/osf by `path:` pointing at the decrypted file (with its sha256)."
        )
    if mirror is not None:
        return _from_mirror(name, spec, Path(mirror), dest, expected)
    url, hash_source = spec.get("url"), "config"
    if spec.get("osf") is not None:
        url, osf_sha256 = osf.resolve(name, spec["osf"], lambda page: transfer.get_json(name, page, retries, backoff))
        if not expected and osf_sha256:
            expected, hash_source = {"sha256": osf_sha256.lower()}, "osf"
    if not expected:
        raise UserError(
            f"dataset {name}: no sha256 or git_blob to check {url} against; refusing an unverified download"
        )
    transfer.download(name, url, dest, retries, backoff)
    return {"from": url, "url": url, "expected": expected, "hash_source": hash_source}


def _copy_local(source: Path, dest: Path, key: str) -> None:
    if not source.is_file():
        raise UserError(f"{key}: no such file: {source}")
    try:
        shutil.copyfile(source, dest)
    except OSError as err:
        raise UserError(f"{key}: cannot read {source} ({err.strerror})") from None


def _from_mirror(name: str, spec: dict, mirror: Path, dest: Path, expected: dict) -> dict:
    relative = spec.get("mirror")
    if not relative:
        raise UserError(
            f"dataset {name}: data.mirror is set but datasets.{name}.mirror (its path inside {mirror}) is not"
        )
    source = mirror / relative
    if not source.is_file():
        raise UserError(f"dataset {name}: {source} is not in the mirror (datasets.{name}.mirror: {relative})")
    if not expected:
        raise UserError(f"dataset {name}: no sha256 or git_blob in datasets.{name} to check the mirror copy against")
    _copy_local(source, dest, f"datasets.{name}.mirror")
    return {"from": str(source), "mirror": str(source), "url": spec.get("url"), "expected": expected}


def _gunzip_in_place(name: str, path: Path, origin: str) -> bool:
    """Unpack a gzip file (recognised by its magic bytes; no text file starts with them)."""
    with open(path, "rb") as handle:
        if handle.read(2) != GZIP_MAGIC:
            return False
    unpacked = path.with_name(path.name + ".gunzip")
    try:
        with gzip.open(path, "rb") as source, open(unpacked, "wb") as target:
            shutil.copyfileobj(source, target, CHUNK)
    except (OSError, EOFError) as err:
        unpacked.unlink(missing_ok=True)
        raise UserError(f"dataset {name}: {origin} is not a complete gzip stream ({err})") from None
    os.replace(unpacked, path)
    return True


def _verify(name: str, origin: dict, digests: dict) -> None:
    for algo, want in origin["expected"].items():
        if digests[algo] != want:
            raise UserError(
                f"dataset {name}: {algo} mismatch for {origin['from']}: expected {want}, got {digests[algo]}; "
                "nothing was written"
            )


def _record(name: str, spec: dict, origin: dict, digests: dict, gunzipped: bool, path: Path) -> dict:
    fmt = spec.get("format", "chat")
    data = path.read_bytes()
    canary = spec.get("canary")
    return {
        "name": name,
        "source": spec.get("source") or origin.get("url") or spec.get("path"),
        "url": origin.get("url"),
        "osf": spec.get("osf"),
        "path": spec.get("path"),
        "mirror": origin.get("mirror"),
        "commit": spec.get("commit"),
        "licence": spec.get("licence"),
        "format": fmt,
        "gunzipped": gunzipped,
        "sha256": digests["sha256"],
        "git_blob": digests["git_blob"],
        "checked": sorted(origin["expected"]),
        "hash_source": origin.get("hash_source", "config") if origin["expected"] else None,
        "rows": None if fmt == "raw" else sum(1 for line in data.splitlines() if line.strip()),
        "bytes": len(data),
        "canary_found": None if not canary else canary.encode("utf-8") in data,
        "fetched_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }

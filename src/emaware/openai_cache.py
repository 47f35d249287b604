"""A response cache and spend ledger in SQLite, so a re-run or a crash never pays twice for one request.

A request is keyed by the sha256 of its canonical JSON (endpoint + full body: model, messages, every
sampling parameter, seed). Only bodies are stored, never headers, so the API key cannot end up here.
Several Snakemake jobs may share the database (a long busy timeout). On a local disk it is in WAL mode.
WAL needs memory shared by every process that opens the file, which processes on different hosts do
not have, so on a network filesystem (NFS, Lustre, GPFS, CIFS … per /proc/mounts) the cache uses
SQLite's rollback journal instead, which relies only on the filesystem's locks, and says so: a cache
shared by cluster nodes is safe only as far as those locks work. Run the API rules on the submitting
host instead (README.md, "OpenAI on a cluster").

The ledger records what was actually spent (one row per paid request or fine-tuning job, keyed so
that recording the same thing twice counts once, filed under the rule that spent it); the budget
check (`emaware.pricing.Budget`) reads it.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Any

log = logging.getLogger("emaware")
# Filesystem types (as /proc/mounts names them) whose files several hosts can open at once.
NETWORK_FILESYSTEMS = set(
    "nfs nfs4 cifs smb3 smbfs lustre gpfs beegfs ceph fuse.ceph glusterfs fuse.glusterfs fuse.sshfs 9p afs "
    "panfs wekafs fuse.juicefs orangefs pvfs2".split()
)

_SCHEMA = """
CREATE TABLE IF NOT EXISTS responses (
    key TEXT PRIMARY KEY, endpoint TEXT NOT NULL, request TEXT NOT NULL, response TEXT NOT NULL, created REAL NOT NULL);
CREATE TABLE IF NOT EXISTS spend (
    key TEXT PRIMARY KEY, what TEXT NOT NULL, model TEXT NOT NULL, usd REAL NOT NULL, created REAL NOT NULL);
"""


def request_key(endpoint: str, body: dict[str, Any]) -> str:
    """sha256 of the canonical JSON of the request; 64 hex digits (also a valid Batch API custom_id)."""
    canonical = json.dumps(
        {"endpoint": endpoint, "body": body}, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


class ResponseCache:
    def __init__(self, path: str | Path, label: str = "openai cache"):
        self.path = Path(path)
        self.label = label
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each put is its own short transaction, so a crash loses at most one response.
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        filesystem = filesystem_type(self.path.parent)
        if filesystem in NETWORK_FILESYSTEMS:
            log.warning(
                "%s %s is on a %s filesystem: using SQLite's rollback journal (WAL does not work "
                "across hosts); safest is to run the API rules on one host",
                self.label,
                self.path,
                filesystem,
            )
            self._db.execute("PRAGMA journal_mode=DELETE")
            self._db.execute("PRAGMA synchronous=FULL")
        else:
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, endpoint: str, body: dict[str, Any], *aliases: dict[str, Any] | None) -> dict[str, Any] | None:
        """The cached reply to `body`, else to the first of `aliases` (the same request in an older form)."""
        for candidate in (body, *aliases):
            if candidate is None:
                continue
            key = request_key(endpoint, candidate)
            row = self._db.execute("SELECT response FROM responses WHERE key = ?", (key,)).fetchone()
            if row is not None:
                self.hits += 1
                return json.loads(row[0])
        self.misses += 1
        return None

    def journal_mode(self) -> str:
        return str(self._db.execute("PRAGMA journal_mode").fetchone()[0])

    def put(self, endpoint: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (request_key(endpoint, body), endpoint, json.dumps(body), json.dumps(response), time.time()),
        )

    def hit_rate(self) -> str:
        total = self.hits + self.misses
        share = f" ({100 * self.hits / total:.0f}%)" if total else ""
        return f"{self.label}: {self.hits} of {total} requests answered from {self.path}{share}"

    def record_spend(self, key: str, what: str, model: str, usd: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO spend VALUES (?, ?, ?, ?, ?)", (key, what, model, usd, time.time()))

    def spent(self) -> float:
        return float(self._db.execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()[0])

    def spent_by_rule(self) -> dict[str, float]:
        """USD spent per rule (finetune, sample_generate, sample_logprobs, judge_rate), as the ledger files it."""
        return dict(self._db.execute("SELECT what, SUM(usd) FROM spend GROUP BY what ORDER BY what").fetchall())

    def close(self) -> None:
        self._db.close()


def filesystem_type(path: Path, mounts_file: Path = Path("/proc/mounts")) -> str | None:
    """The type of the filesystem holding `path`, from the longest matching mount point in `mounts_file`."""
    try:
        mounts = mounts_file.read_text().splitlines()
    except OSError:  # not Linux
        return None
    target, best = os.path.realpath(path), ("", None)
    for line in mounts:
        fields = line.split()
        if len(fields) < 3:
            continue
        mount_point = fields[1].replace("\\040", " ")
        inside = target == mount_point or target.startswith(mount_point.rstrip("/") + "/")
        if inside and len(mount_point) > len(best[0]):
            best = (mount_point, fields[2])
    return best[1]

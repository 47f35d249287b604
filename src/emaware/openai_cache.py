"""A response cache and spend ledger in SQLite, so a re-run or a crash never pays twice for one request.

A request is keyed by the sha256 of its canonical JSON (endpoint + full body: model, messages, every
sampling parameter, seed). Only bodies are stored, never headers, so the API key cannot end up here.
The database is in WAL mode with a long busy timeout: several Snakemake jobs may share it.

The ledger records what was actually spent (one row per paid request or fine-tuning job, keyed so
that recording the same thing twice counts once); the budget check in `emaware.cost` reads it.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

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
    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # Autocommit: each put is its own short transaction, so a crash loses at most one response.
        self._db = sqlite3.connect(self.path, timeout=120, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)
        self.hits = 0
        self.misses = 0

    def get(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        row = self._db.execute(
            "SELECT response FROM responses WHERE key = ?", (request_key(endpoint, body),)
        ).fetchone()
        if row is None:
            self.misses += 1
            return None
        self.hits += 1
        return json.loads(row[0])

    def put(self, endpoint: str, body: dict[str, Any], response: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses VALUES (?, ?, ?, ?, ?)",
            (request_key(endpoint, body), endpoint, json.dumps(body), json.dumps(response), time.time()),
        )

    def hit_rate(self) -> str:
        total = self.hits + self.misses
        share = f" ({100 * self.hits / total:.0f}%)" if total else ""
        return f"openai cache: {self.hits} of {total} requests answered from {self.path}{share}"

    def record_spend(self, key: str, what: str, model: str, usd: float) -> None:
        self._db.execute("INSERT OR IGNORE INTO spend VALUES (?, ?, ?, ?, ?)", (key, what, model, usd, time.time()))

    def spent(self) -> float:
        return float(self._db.execute("SELECT COALESCE(SUM(usd), 0) FROM spend").fetchone()[0])

    def close(self) -> None:
        self._db.close()

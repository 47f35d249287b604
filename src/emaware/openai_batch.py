"""The Batch API path: a call's chat requests sent as JSONL batches at half the price, in as few batches
as the API's limits allow (one model per batch, at most 50,000 lines and 200 MB), all in flight together.

Each request's custom_id is its cache key, so replies are joined to requests by custom_id (the output
file keeps no order) and go straight into the cache. A batch is recorded on disk (input file id, then
batch id) before polling, under a name derived from its set of requests: a re-run after a crash packs
the same requests into the same batches and polls the recorded ones instead of paying for new ones.
Every poll logs the progress of the whole call (requests done of the total, over all its batches).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from pathlib import Path
from typing import Callable

from . import UserError
from .io import read_json, write_json
from .openai_session import PAGE_SIZE, ApiSession, newest_since

log = logging.getLogger("emaware")

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # the API's limits per batch input file
MAX_BYTES = 200_000_000  # "200 MB", read as the smaller, decimal MB
DONE = {"completed", "failed", "expired", "cancelled"}
DEAD = {"failed", "expired", "cancelling", "cancelled"}
Store = Callable[[str, dict, bool], None]


def pack(requests: dict[str, dict]) -> list[dict[str, bytes]]:
    """The requests' JSONL lines (custom_id → line) in batches: one model each, within MAX_REQUESTS and
    MAX_BYTES, filled in request order (so the same requests always give the same batches)."""
    batches: list[dict[str, bytes]] = []
    filling: dict[str, tuple[dict[str, bytes], int]] = {}  # model → (its batch being filled, its bytes)
    for key, body in requests.items():
        line = (json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}) + "\n").encode()
        batch, size = filling.get(body["model"], (None, 0))
        if batch is None or len(batch) >= MAX_REQUESTS or size + len(line) > MAX_BYTES:
            if len(line) > MAX_BYTES:
                raise UserError(f"one request is {len(line)} bytes, over the Batch API's limit of {MAX_BYTES}")
            batch, size = {}, 0
            batches.append(batch)
        batch[key] = line
        filling[body["model"]] = (batch, size + len(line))
    return batches


class Progress:
    """Requests done of a call's total, over all its batches; logged at every poll."""

    def __init__(self, total: int):
        self.total = total
        self.batches: dict[str, tuple[str, int, int]] = {}  # batch id → (status, completed, failed)

    def update(self, batch) -> None:
        counts = batch.request_counts
        self.batches[batch.id] = (batch.status, counts.completed if counts else 0, counts.failed if counts else 0)
        done = sum(completed for _, completed, _ in self.batches.values())
        failed = sum(failed for _, _, failed in self.batches.values())
        statuses = Counter(status for status, _, _ in self.batches.values())
        log.info(
            "batch API: %d/%d requests done, %d failed; batches: %s",
            done,
            self.total,
            failed,
            ", ".join(f"{n} {status}" for status, n in sorted(statuses.items())),
        )


async def run_batches(session: ApiSession, requests: dict[str, dict], state_dir: Path, store: Store) -> None:
    """Send `requests` (cache key → chat body); `store(key, reply, True)` each reply that succeeded."""
    batches = pack(requests)
    log.info("batch API: %d requests in %d batch(es)", len(requests), len(batches))
    progress = Progress(len(requests))
    await session.all_of(run_batch(session, lines, state_dir, store, progress) for lines in batches)


async def run_batch(session: ApiSession, lines: dict[str, bytes], state_dir: Path, store: Store, progress: Progress) -> None:
    """Upload `lines` (custom_id → JSONL line), create or resume their batch, wait, store the replies."""
    digest = hashlib.sha256("\n".join(sorted(lines)).encode()).hexdigest()
    record_path = state_dir / f"{digest}.json"
    record = read_json(record_path) if record_path.exists() else {"requests": len(lines)}
    if "file_id" not in record:
        upload = await session.call(
            "upload batch input",
            lambda client: client.files.create(file=("requests.jsonl", b"".join(lines.values())), purpose="batch"),
        )
        record.update(file_id=upload.id, file_created_at=upload.created_at)
        write_json(record_path, record)
    if "batch_id" in record:
        log.info("resumed batch %s (%d requests)", record["batch_id"], len(lines))
    else:
        batch, created = await _create(session, record, digest)
        record["batch_id"] = batch.id
        write_json(record_path, record)
        log.info("%s batch %s (%d requests)", "created" if created else "resumed", batch.id, len(lines))
    batch = await _wait(session, record["batch_id"], progress)
    if batch.output_file_id:
        output = await session.call("download batch output", lambda client: client.files.content(batch.output_file_id))
        for text in output.text.splitlines():
            row = json.loads(text)
            response = row.get("response") or {}
            if row.get("custom_id") in lines and response.get("status_code") == 200:
                store(row["custom_id"], response["body"], True)
    if batch.status != "completed":
        record_path.unlink()  # unfinished requests are not billed: a re-run may send them in a new batch
        errors = (batch.errors.data or []) if batch.errors else []
        reason = errors[0].message if errors else "no error message"
        raise UserError(
            f"batch {batch.id} ended {batch.status}: {reason} (its replies so far are cached; re-run to send the rest)"
        )


async def _create(session: ApiSession, record: dict, digest: str):
    """(batch, created?): adopts only a live batch of this exact input file and request set."""

    def ours(batch) -> bool:
        return (
            (batch.metadata or {}).get("emaware_digest") == digest
            and batch.input_file_id == record["file_id"]
            and batch.endpoint == ENDPOINT
            and batch.status not in DEAD
        )

    async def find(client):
        return await newest_since(client.batches.list(limit=PAGE_SIZE), record.get("file_created_at", 0), ours)

    async def create(client):
        return await client.batches.create(
            input_file_id=record["file_id"],
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={"emaware_digest": digest},
        )

    return await session.create_once("create batch", find, create)


async def _wait(session: ApiSession, batch_id: str, progress: Progress):
    async def step():
        batch = await session.call("poll batch", lambda client: client.batches.retrieve(batch_id))
        progress.update(batch)
        return batch if batch.status in DONE else None

    return await session.poll(step)

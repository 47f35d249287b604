"""The Batch API path: the same chat requests sent as one JSONL file per model, at half the price.

Each request's custom_id is its cache key, so replies are joined to requests by custom_id (the output
file keeps no order) and go straight into the cache. A batch is recorded on disk (input file id, then
batch id) before polling, under a name derived from the set of requests: a re-run after a crash
polls the recorded batch instead of paying for a second one.
"""

from __future__ import annotations

import hashlib
import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING, Callable

from . import UserError
from .io import read_json, write_json

if TYPE_CHECKING:
    from .backends.openai_backend import _Session

log = logging.getLogger("emaware")

ENDPOINT = "/v1/chat/completions"
MAX_REQUESTS = 50_000  # the API's limit per batch
DONE = {"completed", "failed", "expired", "cancelled"}
DEAD = {"failed", "expired", "cancelling", "cancelled"}
Store = Callable[[str, dict, bool], None]


async def run_batches(session: "_Session", requests: dict[str, dict], state_dir: Path, store: Store) -> None:
    """Send `requests` (cache key → chat body); `store(key, reply, True)` each reply that succeeded.

    A batch may hold one model only and at most MAX_REQUESTS lines, so requests are split accordingly.
    """
    by_model: dict[str, list[str]] = {}
    for key, body in requests.items():
        by_model.setdefault(body["model"], []).append(key)
    chunks = [keys[i : i + MAX_REQUESTS] for keys in by_model.values() for i in range(0, len(keys), MAX_REQUESTS)]
    await session.all_of(run_batch(session, {k: requests[k] for k in chunk}, state_dir, store) for chunk in chunks)


async def run_batch(session: "_Session", requests: dict[str, dict], state_dir: Path, store: Store) -> None:
    digest = hashlib.sha256("\n".join(sorted(requests)).encode()).hexdigest()
    record_path = state_dir / f"{digest}.json"
    record = read_json(record_path) if record_path.exists() else {"requests": len(requests)}
    if "file_id" not in record:
        lines = "".join(
            json.dumps({"custom_id": key, "method": "POST", "url": ENDPOINT, "body": body}) + "\n"
            for key, body in requests.items()
        )
        upload = await session.call(
            "upload batch input",
            lambda client: client.files.create(file=("requests.jsonl", lines.encode()), purpose="batch"),
        )
        record["file_id"] = upload.id
        write_json(record_path, record)
    if "batch_id" in record:
        log.info("resuming batch %s (%d requests)", record["batch_id"], len(requests))
    else:
        record["batch_id"] = (await _create(session, record["file_id"], digest)).id
        write_json(record_path, record)
        log.info("created batch %s (%d requests)", record["batch_id"], len(requests))
    batch = await _wait(session, record["batch_id"])
    if batch.output_file_id:
        output = await session.call("download batch output", lambda client: client.files.content(batch.output_file_id))
        for line in output.text.splitlines():
            row = json.loads(line)
            response = row.get("response") or {}
            if row.get("custom_id") in requests and response.get("status_code") == 200:
                store(row["custom_id"], response["body"], True)
    if batch.status != "completed":
        record_path.unlink()  # unfinished requests are not billed: a re-run may send them in a new batch
        errors = (batch.errors.data or []) if batch.errors else []
        reason = errors[0].message if errors else "no error message"
        raise UserError(
            f"batch {batch.id} ended {batch.status}: {reason} (its replies so far are cached; re-run to send the rest)"
        )


async def _create(session: "_Session", file_id: str, digest: str):
    async def find(client):
        page = await client.batches.list(limit=100)
        return next(
            (b for b in page.data if (b.metadata or {}).get("emaware_digest") == digest and b.status not in DEAD), None
        )

    async def create(client):
        return await client.batches.create(
            input_file_id=file_id, endpoint=ENDPOINT, completion_window="24h", metadata={"emaware_digest": digest}
        )

    return await session.create_once("create batch", find, create)


async def _wait(session: "_Session", batch_id: str):
    status = None

    async def step():
        nonlocal status
        batch = await session.call("poll batch", lambda client: client.batches.retrieve(batch_id))
        if batch.status != status:
            status = batch.status
            counts = batch.request_counts
            done = (
                f" ({counts.completed}/{counts.total} done, {counts.failed} failed)" if counts and counts.total else ""
            )
            log.info("batch %s is %s%s", batch_id, status, done)
        return batch if batch.status in DONE else None

    return await session.poll(step)

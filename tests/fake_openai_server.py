"""An OpenAI-compatible HTTP server for tests: files, fine-tuning jobs, chat completions, batches.

Standard library only. It binds to 127.0.0.1 on an ephemeral port and runs either in a thread
(`FakeOpenAI(state_dir)` as a context manager) or as a process:

    python tests/fake_openai_server.py --port 0 --state-dir DIR [--job-polls N] [--faults FILE]
        [--latency SECONDS] [--ignore-metadata-filter]

which prints its base URL (`http://127.0.0.1:PORT/v1`) as the first line of stdout.

Files, jobs and batches persist as JSON under the state dir, so a second client process (a workflow
killed mid-poll and re-run) sees the same jobs. `GET /_test/stats` counts requests per endpoint,
the jobs, files and batches created, the most chat requests in flight at once (and the most batches
running at once), and the top-level fields of every chat body (sent directly or in a batch).
`GET /_test/timeline` lists `[seconds, chat requests in flight]` at every change, for benchmarks.

Behaviour worth knowing:
- A job (or batch) advances one status every `job_polls` GETs of it:
  validating_files -> queued -> running -> succeeded (or failed). `POST /_test/job_polls`
  with `{"job_polls": N}` changes it at run time (hold jobs while a test kills the client, then release).
- A job fails when its training file or its suffix contains the marker `FAIL_JOB`.
- A chat reply's content is a deterministic function of the request (no randomness), so a batch
  and a direct request with the same body give the same reply.
- Slow replies (`latency`): every direct chat request takes between 0.5 and 1.5 × `latency` seconds,
  a deterministic function of its body, as real replies vary in length.
- `ignore_metadata_filter`: the job list ignores `metadata[...]` filters, as some OpenAI-compatible
  servers do, so a client must check what it adopts. Lists page newest first (`limit`, `after`).
- A batch input file over the API's limits (50,000 lines, 200 MB) is refused.
- A request with `logprobs` whose prompt asks for a rating or score gets digit tokens first.
- Faults (`POST /_test/faults` with `{"faults": [...]}`, or `--faults FILE`) are consumed in order by
  the requests whose path starts with the fault's `path` (default `/v1/`) and, if given, whose
  `method` matches:
  `{"kind": "429", "count": 2, "retry_after": 0.1}` (seconds, sent as Retry-After; or
  `retry_after_ms`), `{"kind": "500", "count": 1}` (any HTTP status: "400", "503" …, with optional
  extra response `headers`, e.g. `{"x-should-retry": "false"}`), `{"kind": "delay", "count": 1, "seconds": 2}`
  (add `"after": true` to act on the request first and answer late: a reply lost to a client timeout).
"""

from __future__ import annotations

import argparse
import email.parser
import email.policy
import hashlib
import json
import math
import os
import re
import sys
import threading
import time
import uuid
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qsl, urlsplit

HOST = "127.0.0.1"
FAIL_MARKER = "FAIL_JOB"
SNAPSHOT_DATE = "2025-04-14"
JOB_STATUSES = ("validating_files", "queued", "running")
BATCH_STATUSES = ("validating", "in_progress", "finalizing")
WORDS = "the model answers questions about many topics with care and some detail here".split()
RATING_WORDS = re.compile(r"\b(rate|rating|score|number|digit|scale)\b", re.IGNORECASE)
BATCH_MAX_REQUESTS, BATCH_MAX_BYTES = 50_000, 200 * 1024 * 1024  # the Batch API's limits per input file


class ApiError(Exception):
    def __init__(self, status: int, message: str, code: str = "invalid_request_error", param: str | None = None):
        super().__init__(message)
        self.status, self.code, self.param = status, code, param

    def body(self) -> dict:
        return {"error": {"message": str(self), "type": self.code, "param": self.param, "code": self.code}}


class State:
    """Everything the server knows; jobs, files and batches live on disk under `root`."""

    def __init__(
        self,
        root: Path,
        job_polls: int = 1,
        faults: list[dict] | None = None,
        latency: float = 0.0,
        ignore_metadata_filter: bool = False,
    ):
        self.root = Path(root)
        for kind in ("files", "jobs", "batches"):
            (self.root / kind).mkdir(parents=True, exist_ok=True)
        self.job_polls = job_polls
        self.faults = [dict(f) for f in faults or []]
        self.latency = latency
        self.ignore_metadata_filter = ignore_metadata_filter
        self.requests: Counter[str] = Counter()
        self.chat_fields: Counter[str] = Counter()
        self.in_flight = self.max_in_flight = 0
        self.started = time.monotonic()
        self.timeline: list[tuple[float, int]] = []  # (seconds since start, chat requests in flight)
        self.lock = threading.RLock()  # reentrant: a batch computes its chat replies under it

    # -- persistence -------------------------------------------------------------------------
    def _path(self, kind: str, obj_id: str) -> Path:
        if not re.fullmatch(r"[A-Za-z0-9_-]+", obj_id):
            raise ApiError(404, f"No such object: {obj_id}", "not_found")
        return self.root / kind / f"{obj_id}.json"

    def load(self, kind: str, obj_id: str) -> dict:
        path = self._path(kind, obj_id)
        if not path.exists():
            raise ApiError(404, f"No such {kind[:-1]}: {obj_id}", "not_found")
        return json.loads(path.read_text())

    def save(self, kind: str, obj: dict) -> dict:
        path = self._path(kind, obj["id"])
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(obj))
        os.replace(tmp, path)
        return obj

    def all(self, kind: str) -> list[dict]:
        return [json.loads(p.read_text()) for p in sorted((self.root / kind).glob("*.json"))]

    def file_content(self, file_id: str) -> bytes:
        self.load("files", file_id)
        return (self.root / "files" / f"{file_id}.bin").read_bytes()

    def add_file(self, content: bytes, filename: str, purpose: str) -> dict:
        meta = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(content),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        (self.root / "files" / f"{meta['id']}.bin").write_bytes(content)
        return self.save("files", meta)

    def stats(self) -> dict:
        batches = self.all("batches")
        return {
            "requests": dict(self.requests),
            "jobs_created": len(self.all("jobs")),
            "files_uploaded": len(self.all("files")),
            "batches_created": len(batches),
            "max_in_flight": self.max_in_flight,
            "max_batches_in_flight": _most_at_once([(b.get("_started", 0.0), b.get("_ended")) for b in batches]),
            "chat_fields": dict(self.chat_fields),
        }

    def chat_started(self, delta: int) -> None:
        with self.lock:
            self.in_flight += delta
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
            self.timeline.append((round(time.monotonic() - self.started, 4), self.in_flight))

    def take_fault(self, method: str, path: str) -> dict | None:
        with self.lock:
            for fault in self.faults:
                if (
                    fault.get("count", 1) > 0
                    and path.startswith(fault.get("path", "/v1/"))
                    and fault.get("method", method) == method
                ):
                    fault["count"] = fault.get("count", 1) - 1
                    return fault
        return None


def _most_at_once(spans: list[tuple[float, float | None]]) -> int:
    """The most (start, end or None = still running) intervals that overlap at one moment."""
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans if end is not None])
    most = running = 0
    for _, step in edges:
        running += step
        most = max(most, running)
    return most


def page(items: list[dict], query: dict) -> dict:
    """One page of a list endpoint (items newest first): `limit` items after the id `after`."""
    ids = [item["id"] for item in items]
    start = ids.index(query["after"]) + 1 if query.get("after") in ids else 0
    chosen = items[start : start + int(query.get("limit", 20))]
    return {"object": "list", "data": chosen, "has_more": start + len(chosen) < len(items)}


def newest_first(objects: list[dict]) -> list[dict]:
    return sorted(objects, key=lambda o: (o["created_at"], o.get("_seq", 0)), reverse=True)


# -- chat completions --------------------------------------------------------------------------
def _digest(*parts: object) -> int:
    return int.from_bytes(hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).digest()[:8], "big")


def snapshot_of(model: str) -> str:
    """The dated snapshot an alias resolves to, as the real API reports it in `model`."""
    if model.startswith("ft:") or re.search(r"\d{4}-\d{2}-\d{2}$", model):
        return model
    return f"{model}-{SNAPSHOT_DATE}"


def _top_logprobs(seed: int, rating: bool, k: int) -> list[dict]:
    vocabulary = (list("12345") + ["0", "I", "The"]) if rating else WORDS
    weights = [1 + (_digest(seed, token) % 100) + (300 if rating and token.isdigit() else 0) for token in vocabulary]
    total = sum(weights)
    ranked = sorted(zip(vocabulary, weights), key=lambda tw: -tw[1])[:k]
    return [{"token": t, "logprob": math.log(w / total), "bytes": list(t.encode())} for t, w in ranked]


def _tokens_of(messages: list[dict]) -> int:
    return sum(len(str(m.get("content") or "")) // 4 + 4 for m in messages)


def reply_delay(state: State, body: dict) -> float:
    """Seconds a slow server takes for `body`: 0.5–1.5 × latency, fixed per body."""
    return state.latency * (0.5 + _digest(body) % 1000 / 1000) if state.latency else 0.0


def chat_completion(state: State, body: dict) -> dict:
    with state.lock:
        state.chat_fields.update(body.keys())
    model, messages = body.get("model"), body.get("messages")
    if not isinstance(model, str) or not isinstance(messages, list) or not messages:
        raise ApiError(400, "'model' and a non-empty 'messages' list are required", param="messages")
    if model.startswith("ft:") and not any(j.get("fine_tuned_model") == model for j in state.all("jobs")):
        raise ApiError(404, f"The model '{model}' does not exist", "model_not_found", "model")
    n, max_tokens = int(body.get("n") or 1), int(body.get("max_tokens") or body.get("max_completion_tokens") or 16)
    top_k = body.get("top_logprobs")
    if not 1 <= n <= 128:
        raise ApiError(400, "n must be between 1 and 128", param="n")
    if top_k is not None and (not body.get("logprobs") or not 0 <= int(top_k) <= 20):
        raise ApiError(400, "top_logprobs needs logprobs=true and must be at most 20", param="top_logprobs")
    sampling = {k: body.get(k) for k in ("temperature", "top_p", "seed", "max_tokens", "logprobs", "top_logprobs")}
    rating = bool(RATING_WORDS.search(str(messages[-1].get("content") or "")))
    choices, completion_tokens = [], 0
    for index in range(n):
        seed = _digest(model, messages, sampling, index)
        if body.get("logprobs"):
            steps = [
                _top_logprobs(seed + i, rating and i == 0, max(int(top_k or 0), 1)) for i in range(min(max_tokens, 4))
            ]
            tokens = [step[0] for step in steps]
            logprobs = {"content": [dict(t, top_logprobs=step[: int(top_k or 0)]) for t, step in zip(tokens, steps)]}
            text = "".join(t["token"] for t in tokens)
        else:
            length = min(max_tokens, 3 + seed % 12)
            tokens = [WORDS[_digest(seed, i) % len(WORDS)] for i in range(length)]
            text, logprobs = " ".join(tokens), None
        completion_tokens += len(tokens)
        finish = "length" if len(tokens) >= max_tokens else "stop"
        choices.append(
            {
                "index": index,
                "message": {"role": "assistant", "content": text, "refusal": None},
                "logprobs": logprobs,
                "finish_reason": finish,
            }
        )
    prompt_tokens = _tokens_of(messages)
    return {
        "id": f"chatcmpl-{_digest(model, messages, sampling):x}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": snapshot_of(model),
        "system_fingerprint": "fp_fake",
        "choices": choices,
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        },
    }


# -- fine-tuning jobs --------------------------------------------------------------------------
def _event(job: dict, message: str, level: str = "info") -> None:
    job["_events"].append(
        {
            "id": f"ftevent-{uuid.uuid4().hex[:20]}",
            "object": "fine_tuning.job.event",
            "created_at": int(time.time()),
            "level": level,
            "message": message,
            "data": {},
            "type": "message",
            "_seq": len(job["_events"]),
        }
    )


def create_job(state: State, body: dict) -> dict:
    training_file = body.get("training_file")
    meta = state.load("files", str(training_file))
    if meta["purpose"] != "fine-tune":
        raise ApiError(
            400, f"File {training_file} has purpose {meta['purpose']!r}, not 'fine-tune'", param="training_file"
        )
    suffix = body.get("suffix")
    if suffix is not None and len(suffix) > 64:
        raise ApiError(400, "suffix must be at most 64 characters", param="suffix")
    method = body.get("method") or {"type": "supervised", "supervised": {}}
    hyper = (method.get(method.get("type"), {}) or {}).get("hyperparameters") or body.get("hyperparameters") or {}
    fails = FAIL_MARKER.encode() in state.file_content(training_file) or FAIL_MARKER.lower() in (suffix or "").lower()
    job = {
        "id": f"ftjob-{uuid.uuid4().hex[:24]}",
        "object": "fine_tuning.job",
        "model": body.get("model"),
        "created_at": int(time.time()),
        "status": JOB_STATUSES[0],
        "fine_tuned_model": None,
        "finished_at": None,
        "error": None,
        "hyperparameters": hyper,
        "method": method,
        "training_file": training_file,
        "validation_file": None,
        "result_files": [],
        "trained_tokens": None,
        "seed": body.get("seed", 0),
        "suffix": suffix,
        "metadata": body.get("metadata"),
        "organization_id": "org-fake",
        "estimated_finish": None,
        "integrations": [],
        "_polls": 0,
        "_fails": fails,
        "_events": [],
        "_seq": len(state.all("jobs")),
    }
    _event(job, f"Created fine-tuning job: {job['id']}")
    _event(job, f"Validating training file: {training_file}")
    return state.save("jobs", job)


def poll_job(state: State, job: dict) -> dict:
    """Advance the job one step per `job_polls` GETs, adding the events the real API emits."""
    if job["status"] in ("succeeded", "failed", "cancelled"):
        return job
    job["_polls"] += 1
    stage = (job["_polls"] - 1) // max(state.job_polls, 1)  # the first GET still sees the initial status
    if stage < len(JOB_STATUSES):
        if JOB_STATUSES[stage] != job["status"]:
            job["status"] = JOB_STATUSES[stage]
            _event(
                job,
                {"queued": "Files validated, moving job to queued state", "running": "Fine-tuning job started"}[
                    job["status"]
                ],
            )
        elif job["status"] == "running":
            _event(job, f"Step {job['_polls']}: training loss={1 / job['_polls']:.3f}")
    elif job["_fails"]:
        job.update(
            status="failed",
            finished_at=int(time.time()),
            error={
                "code": "invalid_training_file",
                "param": "training_file",
                "message": f"The job failed due to an invalid training file ({FAIL_MARKER} marker found).",
            },
        )
        _event(job, job["error"]["message"], "error")
    else:
        parent = job["model"].split(":")[1] if job["model"].startswith("ft:") else snapshot_of(job["model"])
        job.update(
            status="succeeded",
            finished_at=int(time.time()),
            trained_tokens=1000,
            fine_tuned_model=f"ft:{parent}:fake-org:{job['suffix'] or 'model'}:{job['id'][-8:]}",
        )
        _event(job, f"New fine-tuned model created: {job['fine_tuned_model']}")
        _event(job, "The job has successfully completed")
    return state.save("jobs", job)


def public(obj: dict) -> dict:
    return {k: v for k, v in obj.items() if not k.startswith("_")}


# -- batches -----------------------------------------------------------------------------------
def create_batch(state: State, body: dict) -> dict:
    meta = state.load("files", str(body.get("input_file_id")))
    if meta["purpose"] != "batch" or body.get("endpoint") != "/v1/chat/completions":
        raise ApiError(400, "a batch needs an input file with purpose 'batch' and endpoint /v1/chat/completions")
    lines = state.file_content(meta["id"]).count(b"\n")
    if lines > BATCH_MAX_REQUESTS or meta["bytes"] > BATCH_MAX_BYTES:
        raise ApiError(400, f"batch input over the limits: {lines} requests, {meta['bytes']} bytes")
    batch = {
        "id": f"batch_{uuid.uuid4().hex[:24]}",
        "object": "batch",
        "endpoint": body["endpoint"],
        "input_file_id": meta["id"],
        "completion_window": body.get("completion_window", "24h"),
        "status": BATCH_STATUSES[0],
        "created_at": int(time.time()),
        "output_file_id": None,
        "error_file_id": None,
        "errors": None,
        "metadata": body.get("metadata"),
        "request_counts": {"total": lines, "completed": 0, "failed": 0},
        "_polls": 0,
        "_seq": len(state.all("batches")),
        "_started": time.time(),
    }
    return state.save("batches", batch)


def poll_batch(state: State, batch: dict) -> dict:
    if batch["status"] in ("completed", "failed", "expired", "cancelled"):
        return batch
    batch["_polls"] += 1
    stage = (batch["_polls"] - 1) // max(state.job_polls, 1)
    if stage < len(BATCH_STATUSES):
        batch["status"] = BATCH_STATUSES[stage]
        return state.save("batches", batch)
    outputs, errors = [], []
    for line in state.file_content(batch["input_file_id"]).decode().splitlines():
        request = json.loads(line)
        try:
            response = {
                "status_code": 200,
                "request_id": uuid.uuid4().hex,
                "body": chat_completion(state, request["body"]),
            }
            outputs.append(
                {
                    "id": f"batch_req_{uuid.uuid4().hex[:16]}",
                    "custom_id": request["custom_id"],
                    "response": response,
                    "error": None,
                }
            )
        except ApiError as err:
            errors.append(
                {
                    "id": f"batch_req_{uuid.uuid4().hex[:16]}",
                    "custom_id": request["custom_id"],
                    "response": {"status_code": err.status, "request_id": uuid.uuid4().hex, "body": err.body()},
                    "error": None,
                }
            )
    outputs.reverse()  # the real API does not keep input order: clients must join by custom_id
    batch["output_file_id"] = state.add_file(_jsonl(outputs), "batch_output.jsonl", "batch_output")["id"]
    if errors:
        batch["error_file_id"] = state.add_file(_jsonl(errors), "batch_errors.jsonl", "batch_output")["id"]
    batch.update(
        status="completed",
        completed_at=int(time.time()),
        request_counts={"total": len(outputs) + len(errors), "completed": len(outputs), "failed": len(errors)},
        _ended=time.time(),
    )
    return state.save("batches", batch)


def _jsonl(rows: list[dict]) -> bytes:
    return "".join(json.dumps(r) + "\n" for r in rows).encode()


# -- HTTP --------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive, so the client's connection pool is exercised
    disable_nagle_algorithm = True  # headers and body go out in two writes: no 40 ms delayed-ACK stall
    server: "_Server"

    def log_message(self, *args) -> None:  # quiet: tests read stats, not access logs
        pass

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def _handle(self, method: str) -> None:
        state = self.server.state
        url = urlsplit(self.path)
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        route = re.sub(r"/(file|ftjob|batch)[-_][A-Za-z0-9]+", r"/{\1}", url.path)
        with state.lock:
            state.requests[f"{method} {route}"] += 1
        fault = state.take_fault(method, url.path)
        chat = method == "POST" and url.path == "/v1/chat/completions"
        if chat:
            state.chat_started(+1)
        try:
            if fault and fault["kind"].isdigit():
                self._fault(fault)
                return
            delay = float(fault.get("seconds", 1)) if fault and fault["kind"] == "delay" else 0.0
            if chat and state.latency:
                delay += reply_delay(state, json.loads(raw or b"{}"))
            time.sleep(0.0 if fault and fault.get("after") else delay)
            try:
                status, payload = 200, self._route(method, url.path, dict(parse_qsl(url.query)), raw)
            except ApiError as err:
                status, payload = err.status, err.body()
            except (ValueError, KeyError, TypeError) as err:
                status, payload = 400, ApiError(400, f"bad request: {err}").body()
            time.sleep(delay if fault and fault.get("after") else 0.0)  # done, but the reply comes late
            self._send(status, payload)
        finally:
            if chat:
                state.chat_started(-1)

    def _fault(self, fault: dict) -> None:
        status, headers = int(fault["kind"]), dict(fault.get("headers") or {})
        if status == 429:
            headers.update(
                {"retry-after-ms": str(fault["retry_after_ms"])}
                if "retry_after_ms" in fault
                else {"retry-after": str(fault.get("retry_after", 1))}
            )
        message, code = {
            429: ("Rate limit reached (fake)", "rate_limit_exceeded"),
            500: ("The server had an error (fake)", "server_error"),
        }.get(status, (f"HTTP {status} (fake)", "invalid_request_error"))
        self._send(status, ApiError(status, message, code).body(), headers)

    def _route(self, method: str, path: str, query: dict, raw: bytes):
        state = self.server.state
        parts = path.strip("/").split("/")
        if path == "/_test/stats":
            return state.stats()
        if path == "/_test/timeline":
            with state.lock:
                return {"timeline": list(state.timeline)}
        if path == "/_test/faults" and method == "POST":
            with state.lock:
                state.faults = [dict(f) for f in json.loads(raw)["faults"]]
            return {"ok": True}
        if path == "/_test/job_polls" and method == "POST":
            state.job_polls = int(json.loads(raw)["job_polls"])
            return {"ok": True}
        if parts[:1] != ["v1"]:
            raise ApiError(404, f"unknown path {path}", "not_found")
        parts = parts[1:]
        if method == "POST" and parts == ["chat", "completions"]:
            return chat_completion(state, json.loads(raw))
        if method == "POST" and parts == ["files"]:
            return self._upload(raw)
        if method == "GET" and parts[:1] == ["files"] and len(parts) in (2, 3):
            return state.file_content(parts[1]) if parts[2:] == ["content"] else state.load("files", parts[1])
        if parts[:2] == ["fine_tuning", "jobs"]:
            return self._jobs(method, parts[2:], query, raw)
        if method == "POST" and parts == ["batches"]:
            with state.lock:
                return public(create_batch(state, json.loads(raw)))
        if method == "GET" and parts == ["batches"]:
            return page([public(b) for b in newest_first(state.all("batches"))], query)
        if method == "GET" and parts[:1] == ["batches"] and len(parts) == 2:
            with state.lock:
                return public(poll_batch(state, state.load("batches", parts[1])))
        raise ApiError(404, f"unknown endpoint {method} {path}", "not_found")

    def _jobs(self, method: str, rest: list[str], query: dict, raw: bytes):
        state = self.server.state
        with state.lock:
            if method == "POST" and not rest:
                return public(create_job(state, json.loads(raw)))
            if method == "GET" and not rest:
                wanted = {k[len("metadata[") : -1]: v for k, v in query.items() if k.startswith("metadata[")}
                if state.ignore_metadata_filter:
                    wanted = {}
                jobs = [
                    public(j)
                    for j in newest_first(state.all("jobs"))
                    if all((j.get("metadata") or {}).get(k) == v for k, v in wanted.items())
                ]
                return page(jobs, query)
            job = state.load("jobs", rest[0])
            if method == "GET" and len(rest) == 1:
                return public(poll_job(state, job))
            if method == "GET" and rest[1:] == ["events"]:
                events = sorted(job["_events"], key=lambda e: -e["_seq"])[: int(query.get("limit", 20))]
                return {
                    "object": "list",
                    "data": [public(e) for e in events],
                    "has_more": len(job["_events"]) > len(events),
                }
        raise ApiError(404, f"unknown fine-tuning endpoint {method} {rest}", "not_found")

    def _upload(self, raw: bytes) -> dict:
        header = f"Content-Type: {self.headers['Content-Type']}\r\n\r\n".encode()
        message = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(header + raw)
        fields = {part.get_param("name", header="content-disposition"): part for part in message.iter_parts()}
        if "file" not in fields or "purpose" not in fields:
            raise ApiError(400, "multipart fields 'file' and 'purpose' are required", param="file")
        purpose = fields["purpose"].get_payload(decode=True).decode()
        content = fields["file"].get_payload(decode=True)
        with self.server.state.lock:
            return self.server.state.add_file(content, fields["file"].get_filename() or "upload", purpose)

    def _send(self, status: int, payload, headers: dict | None = None) -> None:
        data = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        try:
            self.send_response(status)
            self.send_header(
                "Content-Type", "application/octet-stream" if isinstance(payload, bytes) else "application/json"
            )
            self.send_header("Content-Length", str(len(data)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(data)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (a timeout test)
            pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256  # the benchmark opens 64+ connections at once

    def __init__(self, state: State, port: int = 0):
        super().__init__((HOST, port), Handler)
        self.state = state


class FakeOpenAI:
    """The server in a background thread: `with FakeOpenAI(tmp_path) as fake: fake.url ...`."""

    def __init__(
        self,
        state_dir: Path,
        job_polls: int = 1,
        faults: list[dict] | None = None,
        port: int = 0,
        latency: float = 0.0,
        ignore_metadata_filter: bool = False,
    ):
        self.state = State(state_dir, job_polls, faults, latency, ignore_metadata_filter)
        self.httpd = _Server(self.state, port)
        self.url = f"http://{HOST}:{self.httpd.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "FakeOpenAI":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def stats(self) -> dict:
        return self.state.stats()

    def set_faults(self, faults: list[dict]) -> None:
        with self.state.lock:
            self.state.faults = [dict(f) for f in faults]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--job-polls", type=int, default=1, help="GETs of a job per status step")
    parser.add_argument("--faults", type=Path, help="JSON file: a list of faults (see the module docstring)")
    parser.add_argument("--latency", type=float, default=0.0, help="mean seconds per chat reply (0.5-1.5 x)")
    parser.add_argument("--ignore-metadata-filter", action="store_true", help="list every job, whatever the filter")
    args = parser.parse_args()
    faults = json.loads(args.faults.read_text()) if args.faults else None
    with FakeOpenAI(
        args.state_dir, args.job_polls, faults, args.port, args.latency, args.ignore_metadata_filter
    ) as fake:
        print(fake.url, flush=True)
        try:
            fake.thread.join()
        except KeyboardInterrupt:
            pass


if __name__ == "__main__":
    sys.exit(main())

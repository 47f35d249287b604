"""The OpenAI backend: fine-tuning jobs, chat sampling and a logprob judge, resumable and never paying twice.

- Every chat request goes through a SQLite cache keyed by the full request (`emaware.openai_cache`);
  only cache misses are sent, with bounded concurrency and their own retry loop (the client's
  built-in retries are off so that the behaviour is explicit and tested).
- Fine-tuning writes `job.json` (training file hash, file id, job id) before it polls; a re-run with
  the same training file and hyper-parameters polls the recorded job instead of creating one.
- With `batch_api: true` the misses go through the Batch API instead (`emaware.openai_batch`).
- A budget (`budget_usd`) is checked against the spend ledger before every paid call.

Settings (config `backends.openai`): base_url, max_concurrency, cache, batch_api, poll_interval,
max_poll_interval, max_retries, backoff, timeout, max_example_tokens, prices, budget_usd.
The API key is read from OPENAI_API_KEY only, at the first request that needs it.
"""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import itertools
import logging
import math
import os
import random
import re
import time
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import openai

from .. import UserError
from ..cost import Budget, Estimate, chat_tokens, find_price, requests_estimate, training_estimate, usage_cost
from ..data import read_chat_file
from ..io import read_json, write_json
from ..openai_cache import ResponseCache, request_key
from .base import Backend, Conversation, Handle

log = logging.getLogger("emaware")
T = TypeVar("T")

CHAT = "/v1/chat/completions"
DEFAULT_CACHE = "results/cache/openai.sqlite"
SAMPLING_KEYS = ("temperature", "top_p", "max_tokens", "seed")
HPARAM_KEYS = ("n_epochs", "batch_size", "learning_rate_multiplier")
MIN_EXAMPLES = 10  # the fine-tuning API rejects smaller training files
SUFFIX_MAX = 64  # the API's limit on a fine-tuned model's suffix
MAX_TOP_LOGPROBS = 20
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 600.0
DONE_JOB = {"succeeded", "failed", "cancelled"}


def api_key() -> str:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise UserError(
            "OPENAI_API_KEY is not set: export it in the environment that runs the workflow (never in the config)"
        )
    return key


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        s = self.settings
        self.base_url = s.get("base_url") or os.environ.get("OPENAI_BASE_URL") or None
        self.max_concurrency = int(s.get("max_concurrency", 32))
        self.batch_api = bool(s.get("batch_api", False))
        self.poll_interval = float(s.get("poll_interval", 10.0))
        self.max_poll_interval = float(s.get("max_poll_interval", 120.0))
        self.max_retries = int(s.get("max_retries", 8))
        self.backoff = float(s.get("backoff", 1.0))
        self.timeout = float(s.get("timeout", 120.0))
        self.max_example_tokens = int(s.get("max_example_tokens", 65536))
        self.prices = s.get("prices") or {}
        self.cache_path = Path(s.get("cache", DEFAULT_CACHE))
        self.budget = Budget(s.get("budget_usd"), spent=lambda: self.cache.spent())
        self._cache: ResponseCache | None = None
        self._snapshots: dict[str, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._session: _Session | None = None  # with _loop: made at the first request, kept

    @property
    def cache(self) -> ResponseCache:
        if self._cache is None:  # opened on first use: constructing a backend touches no file
            self._cache = ResponseCache(self.cache_path)
        return self._cache

    def snapshot(self, model: Handle) -> str:
        """The `model` field the API answered with (e.g. gpt-4.1-2025-04-14 for gpt-4.1), once a reply was seen."""
        seen = self._snapshots.get(model["model"])
        return ",".join(sorted(seen)) if seen else str(model["model"])

    # -- sampling and judging --------------------------------------------------------------------
    def generate(
        self, model: Handle, conversations: list[Conversation], n: int, sampling: dict[str, Any]
    ) -> list[list[str]]:
        params = {k: sampling[k] for k in SAMPLING_KEYS if sampling.get(k) is not None}
        bodies = [{"model": _model_id(model), "messages": c, "n": n, **params} for c in conversations]
        replies = self._complete(bodies, "sample")
        return [
            [c["message"].get("content") or "" for c in sorted(r["choices"], key=lambda c: c["index"])] for r in replies
        ]

    def next_token_logprobs(
        self, model: Handle, conversations: list[Conversation], top_k: int = 20, candidates: tuple[str, ...] = ()
    ) -> list[dict[str, float]]:
        """Top-`top_k` (at most 20, the API's limit) first tokens; `candidates` outside them cannot be asked for."""
        common = {
            "max_tokens": 1,
            "temperature": 0,
            "seed": 0,
            "logprobs": True,
            "top_logprobs": min(top_k, MAX_TOP_LOGPROBS),
        }
        bodies = [{"model": _model_id(model), "messages": c, **common} for c in conversations]
        return [_first_token_logprobs(r) for r in self._complete(bodies, "judge")]

    def _complete(self, bodies: list[dict], what: str) -> list[dict]:
        """The API's reply to each body: from the cache, else paid for once (misses are deduplicated)."""
        replies = [self.cache.get(CHAT, b) for b in bodies]
        missing = {request_key(CHAT, b): b for b, r in zip(bodies, replies) if r is None}
        if missing:
            if self.budget.limit is not None:
                estimate = requests_estimate(list(missing.values()), self.prices, self.batch_api, what).usd
                self.budget.check(estimate, f"{len(missing)} {what} requests")
            fetched = self._run(lambda session: self._fetch(session, missing, what))
            replies = [r if r is not None else fetched[request_key(CHAT, b)] for b, r in zip(bodies, replies)]
        log.info(self.cache.hit_rate())
        for body, reply in zip(bodies, replies):
            self._snapshots.setdefault(body["model"], set()).add(reply["model"])
        return replies

    async def _fetch(self, session: "_Session", missing: dict[str, dict], what: str) -> dict[str, dict]:
        fetched: dict[str, dict] = {}

        def store(key: str, reply: dict, batch: bool) -> None:
            body = missing[key]
            self.cache.put(CHAT, body, reply)
            price = find_price(body["model"], self.prices)
            if price is not None:
                self.cache.record_spend(key, what, body["model"], usage_cost(reply.get("usage") or {}, price, batch))
            fetched[key] = reply

        if self.batch_api:
            from ..openai_batch import run_batches

            await run_batches(session, missing, self.cache_path.parent / "batches", store)
            if len(fetched) < len(missing):
                log.warning(
                    "%d of %d requests did not succeed in the batch; sending them directly",
                    len(missing) - len(fetched),
                    len(missing),
                )

        async def one(key: str, body: dict) -> None:
            # The SDK's raw request: the reply as plain JSON (what the cache and the Batch API hold),
            # without the typed-parameter transform that costs a third of the client's CPU time.
            reply = await session.call(what, lambda client: client.post("/chat/completions", body=body, cast_to=object))
            store(key, reply, batch=False)

        await session.all_of(one(k, b) for k, b in missing.items() if k not in fetched)
        return fetched

    # -- fine-tuning -----------------------------------------------------------------------------
    def train(self, parent: Handle, train_file: Path, hparams: dict[str, Any], out_dir: Path, tag: str) -> Handle:
        parent_id = _model_id(parent)
        train_file = Path(train_file)
        conversations = read_training_file(train_file, self.max_example_tokens)
        params = job_params(parent_id, hparams, tag)
        digest = hashlib.sha256(train_file.read_bytes()).hexdigest()
        fingerprint = request_key("fine_tuning.jobs", {"params": params, "training_sha256": digest})
        record_path = Path(out_dir) / "job.json"
        record = read_json(record_path) if record_path.exists() else {}
        if record.get("fingerprint") != fingerprint:
            if record:
                log.warning(
                    "%s: %s was for another training file or hyper-parameters; starting a new job", tag, record_path
                )
            record = {
                "fingerprint": fingerprint,
                "training_sha256": digest,
                "training_file": str(train_file),
                "params": params,
            }
        if record.get("status") in ("failed", "cancelled"):
            raise UserError(
                f"{tag}: fine-tuning job {record['job_id']} {record['status']}: {record.get('error')} "
                f"(delete {record_path} to start a new job)"
            )
        estimate = None  # needed for the budget (a missing price is then an error), else only for the ledger
        if self.budget.limit is not None or find_price(parent_id, self.prices) is not None:
            epochs = params["method"]["supervised"]["hyperparameters"].get("n_epochs")
            estimate = training_estimate(parent_id, conversations, epochs, self.prices, tag)
        job = self._run(lambda session: self._train(session, record, record_path, train_file, estimate, tag))
        return {
            "backend": self.name,
            "model": job.fine_tuned_model,
            "base": parent_id,
            "job_id": job.id,
            "adapters": [],
        }

    async def _train(
        self,
        session: "_Session",
        record: dict,
        record_path: Path,
        train_file: Path,
        estimate: Estimate | None,
        tag: str,
    ):
        if "file_id" not in record:
            upload = await session.call(
                "upload training file",
                lambda client: client.files.create(
                    file=(train_file.name, train_file.read_bytes()), purpose="fine-tune"
                ),
            )
            record["file_id"] = upload.id
            write_json(record_path, record)
            log.info("%s: uploaded %s as %s", tag, train_file, upload.id)
        if "job_id" in record:
            log.info("%s: resuming fine-tuning job %s", tag, record["job_id"])
        else:
            if estimate is not None:
                self.budget.check(estimate.usd, f"fine-tuning {tag}")
            job = await self._create_job(session, record, tag)
            record["job_id"] = job.id
            write_json(record_path, record)
            if estimate is not None:
                self.cache.record_spend(job.id, "finetune", estimate.model, estimate.usd)
            log.info("%s: created fine-tuning job %s", tag, job.id)
        job = await self._poll_job(session, record["job_id"], tag)
        record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, error=job.error and job.error.message)
        write_json(record_path, record)
        if job.status != "succeeded":
            raise UserError(f"{tag}: fine-tuning job {job.id} {job.status}: {record['error'] or 'no error message'}")
        return job

    async def _create_job(self, session: "_Session", record: dict, tag: str):
        metadata = {"emaware_fingerprint": record["fingerprint"], "emaware_variant": tag[:512]}

        async def find(client):
            page = await client.fine_tuning.jobs.list(metadata={"emaware_fingerprint": record["fingerprint"]}, limit=20)
            return next((j for j in page.data if j.status not in ("failed", "cancelled")), None)

        async def create(client):
            return await client.fine_tuning.jobs.create(
                training_file=record["file_id"], metadata=metadata, **record["params"]
            )

        return await session.create_once("create fine-tuning job", find, create)

    async def _poll_job(self, session: "_Session", job_id: str, tag: str):
        seen: set[str] = set()
        status = None

        async def step():
            nonlocal status
            job = await session.call("poll fine-tuning job", lambda client: client.fine_tuning.jobs.retrieve(job_id))
            events = await session.call(
                "job events", lambda client: client.fine_tuning.jobs.list_events(job_id, limit=50)
            )
            for event in reversed(events.data):  # the API lists newest first
                if event.id not in seen:
                    seen.add(event.id)
                    log.info("%s: [%s] %s", tag, event.level, event.message)
            if job.status != status:
                status = job.status
                log.info("%s: job %s is %s", tag, job_id, status)
            return job if job.status in DONE_JOB else None

        return await session.poll(step)

    # -- plumbing --------------------------------------------------------------------------------
    def _run(self, work: Callable[["_Session"], Awaitable[T]]) -> T:
        """Run `work` on the backend's own event loop; loop, client and connections live as long as the
        backend, so a judge calling once per small batch does not pay for a new client each time."""
        if self._loop is None:
            self._loop, self._session = asyncio.new_event_loop(), _Session(self)
        return self._loop.run_until_complete(work(self._session))


class _Session:
    """One event loop's use of the API: the client (made at the first request), the concurrency bound, retries."""

    def __init__(self, backend: OpenAIBackend):
        self.backend = backend
        self.limit = asyncio.Semaphore(backend.max_concurrency)
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            b = self.backend
            self._client = openai.AsyncOpenAI(api_key=api_key(), base_url=b.base_url, max_retries=0, timeout=b.timeout)
        return self._client

    async def call(self, what: str, request: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        """`request(client)`, retried on 429/5xx/timeouts/connection errors; other errors become one-line UserErrors."""
        async with self.limit:
            for attempt in itertools.count():
                try:
                    return await request(self.client)
                except openai.APIError as err:
                    delay = retry_delay(err, attempt, self.backend.backoff)
                    if delay is None or attempt >= self.backend.max_retries:
                        raise UserError(describe(err, what, self.backend.base_url)) from None
                    log.warning(
                        "%s: %s; retry %d/%d in %.2fs",
                        what,
                        _one_line(err),
                        attempt + 1,
                        self.backend.max_retries,
                        delay,
                    )
                    await asyncio.sleep(delay)

    @staticmethod
    async def all_of(awaitables: Iterable[Awaitable[Any]]) -> None:
        """Await them all, then raise the first failure: every request that could finish is cached,
        and nothing is left running on the backend's loop."""
        for result in await asyncio.gather(*awaitables, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def create_once(self, what: str, find: Callable, create: Callable):
        """Create a paid object at most once: each attempt first adopts one that an earlier attempt made
        (its reply lost to a timeout or a crash), found by the metadata the creation carries."""

        async def attempt(client):
            return await find(client) or await create(client)

        return await self.call(what, attempt)

    async def poll(self, step: Callable[[], Awaitable[T | None]]) -> T:
        """Call `step` until it returns something, waiting longer each time (up to max_poll_interval)."""
        interval = self.backend.poll_interval
        while (done := await step()) is None:
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.backend.max_poll_interval)
        return done


def retry_delay(err: openai.APIError, attempt: int, backoff: float) -> float | None:
    """Seconds to wait before retrying `err`, or None when waiting cannot help."""
    if isinstance(err, openai.APIStatusError):
        status = err.status_code
        if not (status in (408, 409, 429) or status >= 500) or err.code == "insufficient_quota":
            return None
        hinted = retry_after(err.response.headers)
        if hinted is not None:
            return hinted
    elif not isinstance(err, openai.APIConnectionError):  # e.g. a reply that does not parse
        return None
    return min(backoff * 2**attempt, MAX_BACKOFF) * random.uniform(0.5, 1.0)


def retry_after(headers) -> float | None:
    """The server's requested wait: retry-after-ms, or retry-after in seconds or as an HTTP date."""
    for name, scale in (("retry-after-ms", 1000.0), ("retry-after", 1.0)):
        value = headers.get(name)
        if value is None:
            continue
        try:
            seconds = float(value) / scale
        except ValueError:
            try:
                seconds = email.utils.parsedate_to_datetime(value).timestamp() - time.time()
            except (TypeError, ValueError):
                continue  # unreadable: fall back to our own backoff
        return min(max(seconds, 0.0), MAX_RETRY_AFTER)
    return None


def describe(err: openai.APIError, what: str, base_url: str | None) -> str:
    if isinstance(err, openai.APIStatusError):
        return f"OpenAI API error during {what}: HTTP {err.status_code}: {_one_line(err)}"
    if isinstance(err, openai.APIConnectionError):
        return f"cannot reach the OpenAI API at {base_url or 'api.openai.com'} during {what}: {_one_line(err)}"
    return f"OpenAI API error during {what}: {_one_line(err)}"


def _one_line(err: openai.APIError) -> str:
    body = err.body if isinstance(err.body, dict) else {}
    message = body.get("message") or getattr(err, "message", None) or str(err)
    return " ".join(str(message).split())


def _model_id(handle: Handle) -> str:
    if handle.get("backend") != "openai":
        raise UserError(
            f"model {handle.get('model')!r} has backend {handle.get('backend')!r}; the openai backend cannot use it"
        )
    return str(handle["model"])


def _first_token_logprobs(reply: dict) -> dict[str, float]:
    content = ((reply["choices"][0].get("logprobs") or {}).get("content")) or []
    result: dict[str, float] = {}
    for entry in content[0]["top_logprobs"] if content else []:
        token, logprob = entry["token"], entry["logprob"]
        # Distinct tokens can decode to the same text: add their probabilities.
        result[token] = math.log(math.exp(result[token]) + math.exp(logprob)) if token in result else logprob
    return result


def suffix_for(tag: str) -> str | None:
    """The variant tag as a model-name suffix: lower-case letters, digits and dashes, at most 64 characters."""
    return re.sub(r"[^a-z0-9]+", "-", tag.lower()).strip("-")[:SUFFIX_MAX].rstrip("-") or None


def job_params(parent_id: str, hparams: dict[str, Any], tag: str) -> dict[str, Any]:
    """The fine-tuning job's parameters (all but the training file id) from `training.openai` + seed."""
    unknown = sorted(set(hparams) - set(HPARAM_KEYS) - {"seed"})
    if unknown:
        raise UserError(
            f"unknown OpenAI fine-tuning hyper-parameter(s) {', '.join(unknown)} (known: {', '.join(HPARAM_KEYS)}, seed)"
        )
    hyper = {k: hparams[k] for k in HPARAM_KEYS if hparams.get(k) is not None}
    params: dict[str, Any] = {
        "model": parent_id,
        "method": {"type": "supervised", "supervised": {"hyperparameters": hyper}},
    }
    if hparams.get("seed") is not None:
        params["seed"] = int(hparams["seed"])
    if suffix_for(tag):
        params["suffix"] = suffix_for(tag)
    return params


def read_training_file(path: Path, max_example_tokens: int) -> list[list[dict]]:
    """The conversations of a chat-format training file, checked as the fine-tuning API checks them."""
    conversations = read_chat_file(path)
    for number, messages in enumerate(conversations, 1):
        where = f"{path}: example {number}"
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{where}: has no assistant message to learn from")
        if chat_tokens(messages) > max_example_tokens:
            raise UserError(f"{where}: about {chat_tokens(messages)} tokens, over the limit of {max_example_tokens}")
    if len(conversations) < MIN_EXAMPLES:
        raise UserError(f"{path}: {len(conversations)} examples; the fine-tuning API needs at least {MIN_EXAMPLES}")
    return conversations

"""The OpenAI backend: fine-tuning jobs, chat sampling and a logprob judge, resumable and never paying twice.

- Every chat request goes through a SQLite cache keyed by the full request (`emaware.openai_cache`):
  model, messages, every sampling parameter and the seed. One call sends all of a job's misses: with
  `max_concurrency` requests in flight continuously (`emaware.openai_session`), or with
  `batch_api: true` through the Batch API in as few batches as its limits allow (`emaware.openai_batch`).
- Fine-tuning writes `job.json` (training file hash, file id, job id) before it polls; a re-run with
  the same training file and hyper-parameters polls the recorded job instead of creating one. A job
  whose creation reply was lost is adopted only if its metadata fingerprint, model and training file
  are exactly this variant's (checked here, not left to the server's list filter).
- A budget (`budget_usd`) is checked against the spend ledger before every paid call. The ledger files
  spend under the rule that made it: finetune, sample_generate, and for next-token log-probabilities
  the handle's `ledger` key (the judge sets judge_rate), else sample_logprobs.

Settings (config `backends.openai`): base_url, max_concurrency, cache, batch_api, poll_interval,
max_poll_interval, max_retries, backoff, timeout, max_example_tokens, prices, budget_usd.
The API key is read from OPENAI_API_KEY only, at the first request that needs it.
"""

from __future__ import annotations

import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any, Awaitable, Callable, TypeVar

from .. import UserError
from ..chat_template import system_prompts_seen
from ..data import read_chat_file
from ..io import read_json, write_json
from ..openai_batch import run_batches
from ..openai_cache import ResponseCache, request_key
from ..openai_session import PAGE_SIZE, ApiSession, ApiSettings, newest_since, run_session
from ..pricing import Budget, Estimate, find_price, requests_estimate, training_estimate, usage_cost
from ..tokens import chat_tokens
from .base import Backend, Conversation, Handle

log = logging.getLogger("emaware")
T = TypeVar("T")

CHAT = "/v1/chat/completions"
DEFAULT_CACHE = "results/cache/openai.sqlite"
# Sampling keys sent with each request (the API's name where it differs); batch_size and other
# speed-only keys are not: they do not change a reply.
SAMPLING_KEYS = {"temperature": "temperature", "top_p": "top_p", "max_tokens": "max_completion_tokens", "seed": "seed"}
HPARAM_KEYS = ("n_epochs", "batch_size", "learning_rate_multiplier")
MIN_EXAMPLES = 10  # the fine-tuning API rejects smaller training files
SUFFIX_MAX = 64  # the API's limit on a fine-tuned model's suffix
MAX_TOP_LOGPROBS = 20
DONE_JOB = {"succeeded", "failed", "cancelled"}
DEAD_JOB = {"failed", "cancelled"}
PROGRESS_STEPS = 10  # direct requests: log progress every tenth of a call


class OpenAIBackend(Backend):
    name = "openai"

    def __init__(self, settings: dict[str, Any] | None = None):
        super().__init__(settings)
        s = self.settings
        self.api = ApiSettings.from_settings(s)
        self.batch_api = bool(s.get("batch_api", False))
        self.max_example_tokens = int(s.get("max_example_tokens", 65536))
        self.prices = s.get("prices") or {}
        self.cache_path = Path(s.get("cache", DEFAULT_CACHE))
        self.budget = Budget(s.get("budget_usd"), spent=lambda: self.cache.spent())
        self._cache: ResponseCache | None = None
        self._snapshots: dict[str, set[str]] = {}

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
        if not isinstance(sampling.get("seed"), int):
            # Without it, two seeds of a variant would send identical requests and share cached answers.
            raise UserError("sampling on the openai backend needs an integer `seed` (each replicate its own)")
        params = {api: sampling[key] for key, api in SAMPLING_KEYS.items() if sampling.get(key) is not None}
        bodies = [{"model": _model_id(model), "messages": c, "n": n, **params} for c in conversations]
        replies = self._complete(bodies, "sample_generate")
        return [
            [c["message"].get("content") or "" for c in sorted(r["choices"], key=lambda c: c["index"])] for r in replies
        ]

    def next_token_logprobs(
        self,
        model: Handle,
        conversations: list[Conversation],
        top_k: int = 20,
        candidates: tuple[str, ...] | list[tuple[str, ...]] = (),
    ) -> list[dict[str, float]]:
        """Top-`top_k` (at most 20, the API's limit) first tokens; `candidates` outside them cannot be asked for."""
        common = {
            "max_completion_tokens": 1,
            "temperature": 0,
            "seed": 0,
            "logprobs": True,
            "top_logprobs": min(top_k, MAX_TOP_LOGPROBS),
        }
        bodies = [{"model": _model_id(model), "messages": c, **common} for c in conversations]
        return [_first_token_logprobs(r) for r in self._complete(bodies, model.get("ledger", "sample_logprobs"))]

    def candidate_logprobs(
        self, model: Handle, conversations: list[Conversation], candidates: tuple[str, ...] | list[str]
    ) -> list[dict[str, float]]:
        """The first reply token's top 20 log-probs (the API's limit), read as whole answers: a candidate
        gets the log-prob of the token(s) equal to it, surrounding whitespace ignored, and is absent when no
        such token is among the 20. Unlike the local backend's, this is a first token's probability, not a
        whole reply's: close to it for 0–100, single tokens in GPT tokenizers, short of what lies outside
        the top 20; a candidate that is not one token is never seen. The requests are next_token_logprobs'
        (one cache entry serves both)."""
        wanted = set(candidates)
        return [
            _spelled(logprobs, wanted) for logprobs in self.next_token_logprobs(model, conversations, top_k=MAX_TOP_LOGPROBS)
        ]

    def _complete(self, bodies: list[dict], ledger: str) -> list[dict]:
        """The API's reply to each body: from the cache, else paid for once (misses are deduplicated)."""
        replies = [self.cache.get(CHAT, b, _before_max_completion_tokens(b)) for b in bodies]
        missing = {request_key(CHAT, b): b for b, r in zip(bodies, replies) if r is None}
        if missing:
            if self.budget.limit is not None:
                estimate = requests_estimate(list(missing.values()), self.prices, self.batch_api, ledger).usd
                self.budget.check(estimate, f"{len(missing)} {ledger} requests")
            fetched = self._run(lambda session: self._fetch(session, missing, ledger))
            replies = [r if r is not None else fetched[request_key(CHAT, b)] for b, r in zip(bodies, replies)]
        log.info(self.cache.hit_rate())
        for body, reply in zip(bodies, replies):
            self._snapshots.setdefault(body["model"], set()).add(reply["model"])
        return replies

    async def _fetch(self, session: ApiSession, missing: dict[str, dict], ledger: str) -> dict[str, dict]:
        fetched: dict[str, dict] = {}

        def store(key: str, reply: dict, batch: bool) -> None:
            body = missing[key]
            self.cache.put(CHAT, body, reply)
            price = find_price(body["model"], self.prices)
            if price is not None:
                self.cache.record_spend(key, ledger, body["model"], usage_cost(reply.get("usage") or {}, price, batch))
            fetched[key] = reply

        if self.batch_api:
            await run_batches(session, missing, self.cache_path.parent / "batches", store)
            if len(fetched) < len(missing):
                log.warning(
                    "%d of %d requests did not succeed in the batch; sending them directly",
                    len(missing) - len(fetched),
                    len(missing),
                )
        direct = [(k, b) for k, b in missing.items() if k not in fetched]
        step = max(1, math.ceil(len(direct) / PROGRESS_STEPS))

        async def one(item: tuple[str, dict]) -> None:
            key, body = item
            # The SDK's raw request: the reply as plain JSON (what the cache and the Batch API hold),
            # without the typed-parameter transform that costs a third of the client's CPU time.
            reply = await session.call(ledger, lambda client: client.post("/chat/completions", body=body, cast_to=object))
            store(key, reply, batch=False)
            done = len(fetched) - (len(missing) - len(direct))
            if done % step == 0 or done == len(direct):
                log.info("%s: %d/%d requests done", ledger, done, len(direct))

        await session.each(direct, one)
        return fetched

    # -- fine-tuning -----------------------------------------------------------------------------
    def train(self, parent: Handle, train_file: Path, hparams: dict[str, Any], out_dir: Path, tag: str) -> Handle:
        parent_id = _model_id(parent)
        train_file = Path(train_file)
        conversations = read_training_file(train_file, self.max_example_tokens, parent_id)
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
        if record.get("status") in DEAD_JOB:
            raise UserError(
                f"{tag}: fine-tuning job {record['job_id']} {record['status']}: {record.get('error')} "
                f"(delete {record_path} to start a new job)"
            )
        estimate = None  # needed for the budget (a missing price is then an error), else only for the ledger
        if self.budget.limit is not None or find_price(parent_id, self.prices) is not None:
            epochs = params["method"]["supervised"]["hyperparameters"].get("n_epochs")
            tokens = sum(chat_tokens(c, parent_id) for c in conversations)
            estimate = training_estimate(parent_id, tokens, epochs, self.prices, tag)
        job = self._run(lambda session: self._train(session, record, record_path, train_file, estimate, tag))
        return {
            "backend": self.name,
            "model": job.fine_tuned_model,
            "base": parent_id,
            "job_id": job.id,
            "adapters": [],
            "system_prompt_seen": system_prompts_seen(conversations),  # the API applies no template
        }

    async def _train(
        self,
        session: ApiSession,
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
            record.update(file_id=upload.id, file_created_at=upload.created_at)
            write_json(record_path, record)
            log.info("%s: uploaded %s as %s", tag, train_file, upload.id)
        if "job_id" in record:
            log.info("%s: resumed fine-tuning job %s (recorded in %s)", tag, record["job_id"], record_path)
        else:
            if estimate is not None:
                self.budget.check(estimate.usd, f"fine-tuning {tag}")
            job, created = await self._create_job(session, record, tag)
            record["job_id"] = job.id
            write_json(record_path, record)
            if estimate is not None:
                self.cache.record_spend(job.id, "finetune", estimate.model, estimate.usd)
            if created:
                log.info("%s: created fine-tuning job %s", tag, job.id)
            else:
                log.info("%s: resumed fine-tuning job %s (an earlier attempt created it; its reply was lost)", tag, job.id)
        job = await self._poll_job(session, record["job_id"], tag)
        record.update(status=job.status, fine_tuned_model=job.fine_tuned_model, error=job.error and job.error.message)
        write_json(record_path, record)
        if job.status != "succeeded":
            raise UserError(f"{tag}: fine-tuning job {job.id} {job.status}: {record['error'] or 'no error message'}")
        return job

    async def _create_job(self, session: ApiSession, record: dict, tag: str):
        """(job, created?): adopts an existing job only if it provably is this variant's (`is_own_job`)."""
        metadata = {"emaware_fingerprint": record["fingerprint"], "emaware_variant": tag[:512]}

        async def find(client):
            # The server may ignore the metadata filter (some OpenAI-compatible ones do): every job is checked.
            listing = client.fine_tuning.jobs.list(metadata={"emaware_fingerprint": record["fingerprint"]}, limit=PAGE_SIZE)
            return await newest_since(listing, record.get("file_created_at", 0), lambda job: is_own_job(job, record))

        async def create(client):
            return await client.fine_tuning.jobs.create(
                training_file=record["file_id"], metadata=metadata, **record["params"]
            )

        return await session.create_once("create fine-tuning job", find, create)

    async def _poll_job(self, session: ApiSession, job_id: str, tag: str):
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
    def _run(self, work: Callable[[ApiSession], Awaitable[T]]) -> T:
        return run_session(self.api, work)


def is_own_job(job, record: dict) -> bool:
    """Whether a listed fine-tuning job is the one `record` (job.json) describes: a live job with this
    variant's fingerprint (parameters + training data hash), its uploaded training file, and its model
    (or the dated snapshot the server resolved that alias to)."""
    model = record["params"]["model"]
    return (
        (job.metadata or {}).get("emaware_fingerprint") == record["fingerprint"]
        and job.training_file == record["file_id"]
        and (job.model == model or re.fullmatch(re.escape(model) + r"-\d{4}-\d{2}-\d{2}", job.model or "") is not None)
        and job.status not in DEAD_JOB
    )


def _before_max_completion_tokens(body: dict) -> dict | None:
    """The same request as cached before `max_tokens` was renamed, so old cache entries still answer."""
    if "max_completion_tokens" not in body:
        return None
    legacy = {k: v for k, v in body.items() if k != "max_completion_tokens"}
    return {**legacy, "max_tokens": body["max_completion_tokens"]}


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


def _spelled(logprobs: dict[str, float], candidates: set[str]) -> dict[str, float]:
    """The log-prob of each candidate that a token spells (" 42" and "42" add up), from a token dict."""
    result: dict[str, float] = {}
    for token, logprob in logprobs.items():
        key = token.strip()
        if key in candidates:
            result[key] = math.log(math.exp(result[key]) + math.exp(logprob)) if key in result else logprob
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


def read_training_file(path: Path, max_example_tokens: int, model: str | None = None) -> list[list[dict]]:
    """The conversations of a chat-format training file, checked as the fine-tuning API checks them."""
    conversations = read_chat_file(path)
    for number, messages in enumerate(conversations, 1):
        where = f"{path}: example {number}"
        if not any(m["role"] == "assistant" for m in messages):
            raise UserError(f"{where}: has no assistant message to learn from")
        tokens = chat_tokens(messages, model)
        if tokens > max_example_tokens:
            raise UserError(f"{where}: about {tokens} tokens, over the limit of {max_example_tokens}")
    if len(conversations) < MIN_EXAMPLES:
        raise UserError(f"{path}: {len(conversations)} examples; the fine-tuning API needs at least {MIN_EXAMPLES}")
    return conversations

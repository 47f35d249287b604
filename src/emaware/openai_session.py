"""One backend call's use of the OpenAI API: the client, the concurrency bound, retries, polling, and
creating a paid object at most once. Used by the backend (`backends.openai_backend`) and the Batch API
path (`openai_batch`).

`run_session(settings, work)` runs `work(session)` on a fresh event loop. The SDK's async client is made
in that loop at the first request (so a fully cached call needs no key) and closed with it: an httpx
connection belongs to the loop that opened it, and a client kept across loops, or left for the garbage
collector, fails each of its pooled connections once on the next loop ("Connection error.", then a
retry) or schedules its own close on whatever loop runs next ("Event loop is closed").

Retries are our own (the SDK's are off, `max_retries=0`) so that every wait is logged and tested: 408,
409, 429, 5xx, timeouts and connection errors wait Retry-After (or retry-after-ms) when the server sends
it, else an exponential backoff with jitter; a server's `x-should-retry: true|false` header overrides
the status; anything else fails at once as a one-line UserError.
"""

from __future__ import annotations

import asyncio
import email.utils
import itertools
import logging
import os
import random
import time
from dataclasses import dataclass
from typing import Any, AsyncIterator, Awaitable, Callable, Iterable, TypeVar

import openai

from . import UserError

log = logging.getLogger("emaware")
T = TypeVar("T")
MAX_BACKOFF = 60.0
MAX_RETRY_AFTER = 600.0
PAGE_SIZE = 100  # items per page when listing jobs or batches (the API's maximum)


@dataclass(frozen=True)
class ApiSettings:
    """The connection settings of `backends.openai` (see config/README.md)."""

    base_url: str | None = None
    max_concurrency: int = 32
    max_retries: int = 8
    backoff: float = 1.0
    timeout: float = 120.0
    poll_interval: float = 10.0
    max_poll_interval: float = 120.0

    @classmethod
    def from_settings(cls, settings: dict[str, Any]) -> "ApiSettings":
        return cls(
            base_url=settings.get("base_url") or os.environ.get("OPENAI_BASE_URL") or None,
            max_concurrency=int(settings.get("max_concurrency", 32)),
            max_retries=int(settings.get("max_retries", 8)),
            backoff=float(settings.get("backoff", 1.0)),
            timeout=float(settings.get("timeout", 120.0)),
            poll_interval=float(settings.get("poll_interval", 10.0)),
            max_poll_interval=float(settings.get("max_poll_interval", 120.0)),
        )


def api_key() -> str:
    key = os.environ.get("OPENAI_API_KEY", "").strip()
    if not key:
        raise UserError(
            "OPENAI_API_KEY is not set: export it in the environment that runs the workflow (never in the config)"
        )
    return key


def run_session(settings: ApiSettings, work: Callable[["ApiSession"], Awaitable[T]]) -> T:
    """`work(session)` on a new event loop, with a client that lives and dies with that loop."""

    async def main() -> T:
        session = ApiSession(settings)
        try:
            return await work(session)
        finally:
            await session.close()

    return asyncio.run(main())


class ApiSession:
    def __init__(self, settings: ApiSettings):
        self.settings = settings
        self.limit = asyncio.Semaphore(settings.max_concurrency)
        self._client: openai.AsyncOpenAI | None = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        if self._client is None:
            s = self.settings
            self._client = openai.AsyncOpenAI(api_key=api_key(), base_url=s.base_url, max_retries=0, timeout=s.timeout)
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()

    async def call(self, what: str, request: Callable[[openai.AsyncOpenAI], Awaitable[T]]) -> T:
        """`request(client)` with at most max_concurrency in flight, retried as the module docstring says."""
        s = self.settings
        async with self.limit:
            for attempt in itertools.count():
                try:
                    return await request(self.client)
                except openai.APIError as err:
                    delay = retry_delay(err, attempt, s.backoff)
                    if delay is None or attempt >= s.max_retries:
                        raise UserError(describe(err, what, s.base_url)) from None
                    log.warning("%s: %s; retry %d/%d in %.2fs", what, _one_line(err), attempt + 1, s.max_retries, delay)
                    await asyncio.sleep(delay)

    async def each(self, items: Iterable[T], work: Callable[[T], Awaitable[None]]) -> None:
        """`work(item)` for every item, max_concurrency at a time, a new one starting as soon as one ends.

        After a failure no new item starts; the ones in flight finish (and are cached), then the first
        failure is raised. A worker pool rather than one task per item: a job's 60,000 requests do not
        become 60,000 tasks waiting on the semaphore.
        """
        pending = iter(items)
        failures: list[BaseException] = []

        async def worker() -> None:
            for item in pending:  # shared: each item is taken by exactly one worker
                if failures:
                    return
                try:
                    await work(item)
                except Exception as err:  # noqa: BLE001 - re-raised below, after the others finished
                    failures.append(err)

        await asyncio.gather(*(worker() for _ in range(self.settings.max_concurrency)))
        if failures:
            raise failures[0]

    @staticmethod
    async def all_of(awaitables: Iterable[Awaitable[Any]]) -> None:
        """Await them all together, then raise the first failure: nothing is left running."""
        for result in await asyncio.gather(*awaitables, return_exceptions=True):
            if isinstance(result, BaseException):
                raise result

    async def create_once(self, what: str, find: Callable, create: Callable) -> tuple[Any, bool]:
        """(object, created?): a paid object created at most once. Each attempt first looks for one an
        earlier attempt made (its reply lost to a timeout or a crash) with `find(client)`, which must
        return only an object that provably belongs to the caller."""

        async def attempt(client):
            found = await find(client)
            return (found, False) if found is not None else (await create(client), True)

        return await self.call(what, attempt)

    async def poll(self, step: Callable[[], Awaitable[T | None]]) -> T:
        """Call `step` until it returns something, waiting longer each time (up to max_poll_interval)."""
        interval = self.settings.poll_interval
        while (done := await step()) is None:
            await asyncio.sleep(interval)
            interval = min(interval * 1.5, self.settings.max_poll_interval)
        return done


async def newest_since(listing: AsyncIterator[Any], since: float, matches: Callable[[Any], bool]) -> Any | None:
    """The first item of a newest-first `listing` (the SDK's auto-paginating list) that `matches`,
    looking no further back than `since` (its creation time): a bounded scan even on a server that
    ignores the list's filters."""
    async for item in listing:
        if item.created_at < since:
            return None
        if matches(item):
            return item
    return None


def retry_delay(err: openai.APIError, attempt: int, backoff: float) -> float | None:
    """Seconds to wait before retrying `err`, or None when waiting cannot help."""
    if isinstance(err, openai.APIStatusError):
        status, headers = err.status_code, err.response.headers
        hint = headers.get("x-should-retry")
        retryable = status in (408, 409, 429) or status >= 500
        if hint == "false" or (hint != "true" and not retryable) or err.code == "insufficient_quota":
            return None
        hinted = retry_after(headers)
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

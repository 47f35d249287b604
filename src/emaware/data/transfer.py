"""HTTP GET with retries: exponential backoff on connection errors, timeouts, truncated bodies, 429 and 5xx."""

from __future__ import annotations

import logging
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Callable

import httpx

from .. import UserError

log = logging.getLogger(__name__)

TIMEOUT = httpx.Timeout(60.0, connect=15.0)
CHUNK = 1 << 20


class _Transient(Exception):
    """Worth another try: connection trouble, a timeout, a truncated body, HTTP 429 or 5xx."""


class _Fatal(Exception):
    """Another try would get the same answer: HTTP 4xx, a malformed URL, a redirect loop."""


def download(name: str, url: str, dest: Path, retries: int, backoff: float) -> None:
    """Stream `url` into `dest` (following redirects); UserError naming dataset `name` when it cannot."""
    _with_retries(name, url, retries, backoff, lambda: _stream_to(url, dest))


def get_json(name: str, url: str, retries: int, backoff: float) -> Any:
    return _with_retries(name, url, retries, backoff, lambda: _json_from(url))


def _with_retries(name: str, url: str, retries: int, backoff: float, attempt: Callable):
    for tries in range(1, retries + 2):
        try:
            return attempt()
        except _Fatal as err:
            raise UserError(f"dataset {name}: {url}: {err}") from None
        except _Transient as err:
            if tries > retries:
                raise UserError(f"dataset {name}: {url} failed after {tries} attempts: {err}") from None
            delay = backoff * 2 ** (tries - 1)
            log.warning("dataset %s: %s (attempt %d of %d), retrying in %.1f s", name, err, tries, retries + 1, delay)
            time.sleep(delay)


@contextmanager
def _classified_errors():
    """Translate httpx's exceptions into retry / give up."""
    try:
        yield
    except (httpx.UnsupportedProtocol, httpx.TooManyRedirects, httpx.InvalidURL) as err:
        raise _Fatal(str(err)) from None
    except httpx.RemoteProtocolError as err:  # includes a body shorter than its Content-Length
        raise _Transient(f"response truncated or malformed ({err})") from None
    except httpx.TransportError as err:
        raise _Transient(f"{type(err).__name__}: {err}") from None


def _raise_for_status(response: httpx.Response) -> None:
    code = response.status_code
    if code == 429 or code >= 500:
        raise _Transient(f"HTTP {code}")
    if code >= 400:
        raise _Fatal(f"HTTP {code}")


def _stream_to(url: str, dest: Path) -> None:
    with _classified_errors(), httpx.stream("GET", url, follow_redirects=True, timeout=TIMEOUT) as response:
        _raise_for_status(response)
        with open(dest, "wb") as handle:
            for chunk in response.iter_bytes(CHUNK):
                handle.write(chunk)


def _json_from(url: str) -> Any:
    with _classified_errors():
        response = httpx.get(
            url, follow_redirects=True, timeout=TIMEOUT, headers={"Accept": "application/vnd.api+json"}
        )
    _raise_for_status(response)
    try:
        return response.json()
    except ValueError:
        raise _Fatal("the answer is not JSON") from None

"""What every workflow script shares: logging to the rule's log file and one-line errors.

Scripts under workflow/scripts/ stay thin: `run(snakemake, step)` sets up logging, calls `step` with
the rule's named inputs, outputs, params and wildcards that its signature asks for, and turns a
UserError into a single line on the terminal and in the log.
"""

from __future__ import annotations

import inspect
import logging
import os
import sys
from typing import Any, Callable

from . import UserError, gpus, worktime


def step_arguments(snakemake: Any, step: Callable) -> dict[str, Any]:
    """The rule's named items that `step` takes, by name (inputs, outputs, params, wildcards, threads),
    and `config`: the validated config, where a job reads the settings that do not change its result."""
    available: dict[str, Any] = {"threads": snakemake.threads, "config": snakemake.config}
    for group in (snakemake.wildcards, snakemake.params, snakemake.input, snakemake.output):
        available.update(group.items())
    wanted = inspect.signature(step).parameters
    missing = [name for name, p in wanted.items() if name not in available and p.default is inspect.Parameter.empty]
    if missing:
        raise TypeError(f"rule {snakemake.rule} does not name {missing} needed by {step.__name__}")
    return {name: available[name] for name in wanted if name in available}


def run(snakemake: Any, step: Callable[..., None]) -> None:
    log_path = str(snakemake.log[0]) if len(snakemake.log) else None
    terminal = sys.stderr
    handlers: list[logging.Handler] = [logging.StreamHandler(terminal)]
    if log_path:
        os.makedirs(os.path.dirname(log_path) or ".", exist_ok=True)
        sys.stderr = open(log_path, "a", buffering=1, encoding="utf-8")  # progress bars and warnings
        handlers = [logging.StreamHandler(sys.stderr)]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", handlers=handlers, force=True)
    for noisy in ("httpx", "httpx2", "openai"):  # one INFO line per HTTP request otherwise
        logging.getLogger(noisy).setLevel(logging.WARNING)
    _limit_threads(getattr(snakemake, "threads", None))
    gpus.assign(int(getattr(snakemake.resources, "gpu", 0) or 0))  # before anything imports torch
    try:
        step(**step_arguments(snakemake, step))
        logging.getLogger("emaware").info("%s", worktime.summary())
    except UserError as err:
        logging.getLogger("emaware").error("%s", err)
        print(f"error in rule {snakemake.rule}: {err}", file=terminal)
        sys.exit(1)
    _exit_now()


def _exit_now() -> None:
    """End the job without the interpreter's teardown: after torch and transformers are imported it costs
    about 2 CPU-seconds per job (finalising thousands of modules) and does nothing the job needs. Every
    output is already written and closed (`emaware.io` writes atomically); the logs are flushed here."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        stream.flush()
    os._exit(0)


def _limit_threads(threads: int | None) -> None:
    """Keep torch and BLAS inside the cores Snakemake gave the job (read when torch is imported)."""
    if threads:
        for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ[var] = str(threads)

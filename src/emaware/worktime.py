"""CPU time a job spends on model work (loading weights, forward passes, training) and the models it
loads, so its log can say how its CPU divides between the model and the rest (starting Python,
imports, reading and writing files). `bench/workflow.py` adds these lines up over a run."""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Iterator

log = logging.getLogger("emaware")
_state = {"depth": 0, "start": 0.0, "spent": 0.0, "loads": 0}


@contextlib.contextmanager
def model_work() -> Iterator[None]:
    """Count the CPU time (every thread of this process) spent inside; nested uses count once."""
    if _state["depth"] == 0:
        _state["start"] = time.process_time()
    _state["depth"] += 1
    try:
        yield
    finally:
        _state["depth"] -= 1
        if _state["depth"] == 0:
            _state["spent"] += time.process_time() - _state["start"]


def model_loaded(name: str) -> None:
    _state["loads"] += 1
    log.info("model load: %s", name)


def summary() -> str:
    """The job's closing line, in the form bench/workflow.py parses."""
    return (
        f"cpu: {time.process_time():.2f} s in this job's process, {_state['spent']:.2f} s model work, "
        f"{_state['loads']} model load(s)"
    )

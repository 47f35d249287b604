"""Stand-in for the CUDA boundary of a GPU node (there is none here): `torch.cuda.is_available()` says
yes, and every CUDA call is written, in order, to the record the stand-in vLLM also writes to."""

import json
import os

touched = False  # a forked child inherits this, as it inherits its parent's CUDA driver state


def note(event: str, **data) -> None:
    with open(os.environ["FAKE_VLLM_RECORD"], "a") as record:
        record.write(json.dumps({"event": event, "pid": os.getpid(), **data}) + "\n")


def install() -> None:
    import torch

    def recorded(name, value):
        def call(*args, **kwargs):
            global touched
            touched = True
            note("cuda", call=name)
            return value

        return call

    for name, value in (("is_available", True), ("device_count", 1), ("init", None), ("current_device", 0)):
        setattr(torch.cuda, name, recorded(name, value))

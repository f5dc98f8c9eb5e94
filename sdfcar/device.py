"""Choosing the torch device from a user option."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch

from sdfcar.errors import bad_input

DEVICE_CHOICES = ("auto", "cpu", "cuda")


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name not in DEVICE_CHOICES and not name.startswith("cuda:"):
        raise bad_input("--device", f"expected one of {', '.join(DEVICE_CHOICES)}, got {name!r}")
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise bad_input("--device", "CUDA was requested but torch sees no CUDA device")
    return torch.device(name)


def cpu_workers() -> int:
    """Processes a CPU-bound step (the tube tracer's trials) may use: torch's thread count,
    which is the machine's cores unless set (the batch runner sets it per case)."""
    return max(1, torch.get_num_threads())


@contextmanager
def torch_threads(count: int, device: torch.device) -> Iterator[None]:
    """Run the block with ``count`` intra-op threads on a CPU ``device`` (torch's count is
    put back after it); on any other device the block runs as it is."""
    if device.type != "cpu" or count == torch.get_num_threads():
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)

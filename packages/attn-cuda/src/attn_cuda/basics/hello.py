"""Step 0: launch a kernel that prints from the device."""

from __future__ import annotations

import torch

from ..runtime import i32, launch
from ._common import module


def hello(blocks: int = 2, threads: int = 4, tag: int = 0) -> None:
    """Each of ``blocks x threads`` threads prints its coordinates (device printf goes to stdout at sync)."""
    launch(module("hello.cu"), "hello", blocks, threads, [i32(tag)])
    torch.cuda.synchronize()

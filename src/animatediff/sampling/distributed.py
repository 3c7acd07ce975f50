"""One long clip over several processes: each step's context windows spread over the processes of a
`torchrun` or `accelerate launch` run.

Within a step the windows are independent: each sees the step's latents and gives its own noise prediction,
and only their weighted sum per frame joins them. So process `rank` of `world` runs windows `rank`,
`rank + world`, … of every step, and one all-reduce of the weighted sums gives every process the step's whole
fused prediction: every process then takes the same scheduler step and holds the same latents, and process 0
writes the clip. The processes talk through `torch.distributed`: gloo between CPU processes, NCCL between
GPUs (one per process, by `LOCAL_RANK`).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TypeVar

import torch
import torch.distributed as dist

Window = TypeVar("Window")
Value = TypeVar("Value")


@dataclass(frozen=True)
class WindowSpread:
    """Which of a step's windows this process runs (`rank` of `world` processes), and the sum that joins
    the processes' shares. The default, one process, runs every window and joins nothing."""

    rank: int = 0
    world: int = 1

    def share(self, windows: list[Window]) -> list[Window]:
        """This process's windows: every `world`-th, from the `rank`-th."""
        return windows[self.rank :: self.world]

    def join(self, partial: torch.Tensor) -> torch.Tensor:
        """The sum over the processes of each one's `partial` sum (in place; the same on every process)."""
        if self.world > 1:
            dist.all_reduce(partial, op=dist.ReduceOp.SUM)
        return partial

    def from_first(self, value: Value) -> Value:
        """Process 0's `value` on every process: what each process planned on its own may differ (a random
        seed), and the clip must be one."""
        if self.world == 1:
            return value
        box = [value]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    @property
    def writes(self) -> bool:
        """Whether this process writes the outputs (process 0 only)."""
        return self.rank == 0


ALONE = WindowSpread()


def launched_processes() -> int:
    """How many processes the launcher (`torchrun`, `accelerate launch`) started: its `WORLD_SIZE`, else 1."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def process_device(device: str) -> str:
    """The device this process runs on: with CUDA, the GPU of its `LOCAL_RANK`; otherwise `device` itself."""
    if torch.device(device).type != "cuda":
        return device
    return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"


def join_processes(device: str) -> WindowSpread:
    """Join the launcher's process group (NCCL for CUDA devices, gloo otherwise; the launcher's environment
    names the peers) and return this process's spread. Joined already (e.g. by accelerate): that group."""
    if not dist.is_initialized():
        cuda = torch.device(device).type == "cuda"
        if cuda:
            torch.cuda.set_device(torch.device(device))
        dist.init_process_group("nccl" if cuda else "gloo")
    return WindowSpread(dist.get_rank(), dist.get_world_size())

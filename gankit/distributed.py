"""Data-parallel training under ``torchrun``: which process this is, the process group (gloo on CPU, nccl
on CUDA), DistributedDataParallel wrapping, and the slice of each global batch and noise draw a rank takes.

Semantics (docs/performance.md): ``batch_size`` is per process; a step's global batch is ``world_size`` x
``batch_size`` consecutive examples of the one seeded permutation, rank r taking the r-th slice. Each rank
computes its losses on its slice (BatchNorm statistics of its own slice, as plain DDP does) and the
gradients are averaged across ranks before every optimizer step, so every rank holds the same weights.
"""
from __future__ import annotations

import atexit
import os
from dataclasses import dataclass
from typing import Mapping

import torch
from torch import nn

from gankit.errors import GankitError


@dataclass(frozen=True)
class Distributed:
    """This process's place in a (possibly one-process) data-parallel run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes the run directory: config, metrics, samples and checkpoints."""
        return self.rank == 0

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> Distributed:
        """Read ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` as torchrun sets them; one process without them."""
        environ = os.environ if environ is None else environ
        values = {}
        for key, default in (("RANK", "0"), ("LOCAL_RANK", "0"), ("WORLD_SIZE", "1")):
            text = environ.get(key, default)
            try:
                values[key] = int(text)
            except ValueError:
                raise GankitError(f"environment variable {key} must be an integer, got {text!r}") from None
        world_size, rank = values["WORLD_SIZE"], values["RANK"]
        if world_size < 1 or not 0 <= rank < world_size:
            raise GankitError(f"RANK {rank} and WORLD_SIZE {world_size} do not describe a process of the run")
        return cls(rank=rank, local_rank=values["LOCAL_RANK"], world_size=world_size)

    # -- setup -----------------------------------------------------------------------------------

    def device(self, device: torch.device) -> torch.device:
        """Each process of a multi-GPU run takes the GPU of its local rank, unless told an index."""
        if self.enabled and device.type == "cuda" and device.index is None:
            if self.local_rank >= torch.cuda.device_count():
                raise GankitError(
                    f"local rank {self.local_rank} has no GPU of its own ({torch.cuda.device_count()} visible); "
                    "start at most one process per GPU (torchrun --nproc_per_node)"
                )
            return torch.device("cuda", self.local_rank)
        return device

    def join(self, device: torch.device) -> None:
        """Join the process group torchrun describes (nccl for CUDA, gloo otherwise); no-op for one process."""
        if not self.enabled:
            return
        import torch.distributed as dist

        if device.type == "cuda":
            torch.cuda.set_device(device)
        if dist.is_initialized():
            return
        missing = [key for key in ("MASTER_ADDR", "MASTER_PORT") if key not in os.environ]
        if missing:
            raise GankitError(
                f"WORLD_SIZE is {self.world_size} but {' and '.join(missing)} is not set; start multi-process "
                "runs with torchrun"
            )
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, rank=self.rank, world_size=self.world_size)
        atexit.register(_leave)

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around ``module`` (which keeps its parameters); ``module`` itself for one process."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel

        device_ids = [device.index] if device.type == "cuda" else None
        return DistributedDataParallel(module, device_ids=device_ids)

    # -- data --------------------------------------------------------------------------------------

    def local_slice(self, global_batch: torch.Tensor) -> torch.Tensor:
        """This rank's slice of a tensor drawn for the whole global batch (the same on every rank)."""
        size = global_batch.shape[0] // self.world_size
        return global_batch[self.rank * size : (self.rank + 1) * size]

    def draw_noise(self, batch_size: int, z_dim: int, *, device: torch.device, generator: torch.Generator) -> torch.Tensor:
        """Noise for this rank's ``batch_size`` examples: its slice of one draw for the global batch.

        Every rank advances the same noise generator identically, so the noise a run sees does not depend
        on how many processes share the work (and one process draws exactly ``batch_size`` rows).
        """
        noise = torch.randn(batch_size * self.world_size, z_dim, device=device, generator=generator)
        return self.local_slice(noise)

    # -- statistics --------------------------------------------------------------------------------

    def mean_across_ranks(self, values: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Average scalar tensors over the ranks in one collective, so every rank logs the same numbers."""
        if not self.enabled or not values:
            return values
        import torch.distributed as dist

        keys = list(values)
        stacked = torch.stack([values[key].detach().float() for key in keys])
        dist.all_reduce(stacked, op=dist.ReduceOp.SUM)
        stacked /= self.world_size
        return {key: stacked[index] for index, key in enumerate(keys)}

    def any_rank(self, flag: bool, device: torch.device) -> bool:
        """True on every rank when ``flag`` is true on any rank: for decisions all ranks must take at the same
        step (stopping on a signal), since a rank that leaves early leaves the others waiting in a collective.
        One collective and host sync per call, so call it at logging intervals rather than every step."""
        if not self.enabled:
            return flag
        import torch.distributed as dist

        value = torch.tensor([1.0 if flag else 0.0], device=device)
        dist.all_reduce(value, op=dist.ReduceOp.MAX)
        return bool(value.item())


def _leave() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()

"""``gankit bench``: times full training steps of the engine (img/s, steps/s, achieved GFLOP/s, peak memory)
and, when a data source is named, the data pipeline alone. Without one the batches are synthetic tensors."""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass

import torch

import gankit
from gankit.components import DataSource
from gankit.config import RunConfig
from gankit.errors import GankitError

SYNTHETIC = "bench-synthetic"


class InMemoryImages(DataSource):
    """uint8 images (N, C, H, W) held in memory: drawing a batch is one gather, so only the step is timed."""

    def __init__(self, images: torch.Tensor):
        self.images = images
        self.shape = tuple(images.shape[1:])

    def __len__(self) -> int:
        return self.images.shape[0]

    def __getitem__(self, index: int) -> torch.Tensor:
        return self.images[index].float() / 127.5 - 1.0

    def tensor(self) -> torch.Tensor:
        return self.images


def synthetic_images(*, image_size: int | None = None, channels: int = 3, count: int = 256, seed: int = 0) -> InMemoryImages:
    """Random images of the benchmark's size (the data pipeline then costs nothing)."""
    if not image_size:
        raise GankitError("bench needs --image-size when it makes synthetic data")
    generator = torch.Generator().manual_seed(seed)
    return InMemoryImages(
        torch.randint(0, 256, (count, channels, image_size, image_size), dtype=torch.uint8, generator=generator)
    )


class _SyntheticPlugin:
    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register(SYNTHETIC, synthetic_images, description="random images for gankit bench")


@dataclass
class BenchResult:
    """What one benchmark measured; ``as_dict()`` is the ``--json`` output."""

    arch: str
    loss: str
    reg: list[str]
    data: str
    device: str
    precision: str
    compile: bool
    channels_last: bool
    batch_size: int
    image_size: int
    d_steps: int
    warmup: int
    steps: int
    seconds: float
    img_per_s: float  # real images consumed per second (batch_size x d_steps per step), as the run logs
    steps_per_s: float  # generator updates per second
    flop_per_step: int  # counted FLOPs of the networks' forward and backward passes in one step
    gflop_per_step: float
    gflop_per_s: float
    peak_memory_mib: float
    peak_memory_kind: str  # "cuda max_memory_allocated" or "process max RSS"
    data_img_per_s: float | None  # the data pipeline alone (None without --data)
    torch_version: str
    cpu_threads: int

    def as_dict(self) -> dict:
        return asdict(self)


def bench(
    *,
    steps: int = 10,
    warmup: int = 2,
    image_size: int | None = 64,
    data: str | None = None,
    channels: int = 3,
    **settings,
) -> BenchResult:
    """Build a Trainer as ``gankit run`` would, run ``warmup`` untimed steps, then time ``steps`` steps.

    ``settings`` are run settings (RunConfig keys, e.g. ``arch``, ``batch_size``, ``precision``); ``steps`` here
    are the timed steps, and without ``data`` the batches are synthetic ``channels`` x ``image_size`` images.
    """
    if steps <= 0 or warmup < 0:
        raise GankitError(f"steps must be positive and warmup non-negative, got steps={steps}, warmup={warmup}")
    from gankit.engine import Trainer
    from gankit.plugins import load_plugins
    from gankit.registry import Registry

    batch_size = settings.get("batch_size") or RunConfig.batch_size
    data_spec = data or f"{SYNTHETIC}:channels={channels},count={max(4 * batch_size, 256)}"
    config = RunConfig.from_sources(overrides={**settings, "data": data_spec, "image_size": image_size})
    registry = Registry(load_plugins([("bench", _SyntheticPlugin())]))
    trainer = Trainer(config, registry=registry)
    device_obj = trainer.device
    if device_obj.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device_obj)

    flops = count_step_flops(trainer)
    seconds = _time_steps(trainer, warmup, steps)

    images = sum(config.batch_size * trainer.d_steps_at(step) for step in range(warmup, warmup + steps))
    memory, memory_kind = peak_memory_mib(device_obj)
    return BenchResult(
        arch=config.arch, loss=config.loss, reg=list(config.reg), data=data or "synthetic", device=str(device_obj),
        precision=config.precision, compile=config.compile, channels_last=config.channels_last,
        batch_size=config.batch_size, image_size=trainer.shape[-1], d_steps=trainer.d_steps_at(warmup),
        warmup=warmup, steps=steps, seconds=round(seconds, 4),
        img_per_s=round(images / seconds, 2), steps_per_s=round(steps / seconds, 4),
        flop_per_step=flops, gflop_per_step=round(flops / 1e9, 3), gflop_per_s=round(flops * steps / seconds / 1e9, 2),
        peak_memory_mib=round(memory, 1), peak_memory_kind=memory_kind,
        data_img_per_s=time_data(trainer, steps) if data else None,
        torch_version=torch.__version__, cpu_threads=torch.get_num_threads(),
    )


def _time_steps(trainer, warmup: int, steps: int) -> float:
    """Seconds for ``steps`` training steps after ``warmup`` untimed ones, the device synchronised around them."""
    for step in range(warmup):
        trainer.train_step(step)
    synchronize(trainer.device)
    start = time.perf_counter()
    for step in range(warmup, warmup + steps):
        trainer.train_step(step)
    synchronize(trainer.device)
    return time.perf_counter() - start


def count_step_flops(trainer) -> int:
    """FLOPs of one training step (forward and backward of both networks), counted by torch on eager modules.

    The step runs for real (one more update); it runs on the plain modules instead of the compiled ones,
    since the counter sees eager operators only.
    """
    import dataclasses

    from torch.utils.flop_counter import FlopCounterMode

    from gankit.step import train_step

    run = trainer.run
    eager = dataclasses.replace(run, networks=run.networks.eager(run.distributed))
    with FlopCounterMode(display=False) as counter:
        train_step(eager, 0)
    return int(counter.get_total_flops())


def time_data(trainer, batches: int) -> float:
    """Images per second the data pipeline delivers on the device, alone (no training)."""
    device = trainer.device
    trainer.batches.next()  # first batch: start-up (workers, caches) is not throughput
    synchronize(device)
    start = time.perf_counter()
    for _ in range(batches):
        trainer.batches.next()
    synchronize(device)
    return round(batches * trainer.config.batch_size / (time.perf_counter() - start), 2)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()


def peak_memory_mib(device: torch.device) -> tuple[float, str]:
    """Peak memory and what it is: CUDA's allocator peak, or on CPU the whole process's max RSS."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20, "cuda max_memory_allocated"
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is in KiB on Linux and in bytes on macOS.
    return (peak / 2**20 if sys.platform == "darwin" else peak / 2**10), "process max RSS"

"""Data-parallel training: two CPU processes (gloo) end with the same weights, equal to the documented
semantics, and only rank 0 writes the run directory.

Run as a script (``python tests/test_distributed.py worker SETTINGS_JSON``) this file is one rank of the run,
configured by the RANK/WORLD_SIZE/MASTER_* variables exactly as torchrun sets them.
"""
from __future__ import annotations

import copy
import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import gankit
from gankit.batches import BatchStream, to_unit_range
from gankit.components import DataSource
from gankit.distributed import Distributed
from gankit.errors import GankitError

WORLD_SIZE = 2
SETTINGS = {
    "arch": "dcgan:width=4",
    "data": "ddp-test-images",
    "batch_size": 4,  # per process
    "steps": 3,
    "z_dim": 8,
    "seed": 5,
    "device": "cpu",
    "log_every": 1,
    "sample_every": 3,
    "checkpoint_every": 3,
}
IMAGE_COUNT = 20  # global batch 8: an epoch is 2 steps, so 3 steps cross into a new permutation


class RandomImages(DataSource):
    """20 fixed random 3x16x16 images."""

    def __init__(self, *, seed: int = 0):
        self.shape = (3, 16, 16)
        self.images = torch.randint(0, 256, (IMAGE_COUNT, *self.shape), dtype=torch.uint8,
                                    generator=torch.Generator().manual_seed(123))

    def __len__(self):
        return IMAGE_COUNT

    def __getitem__(self, index):
        return to_unit_range(self.images[index])

    def tensor(self):
        return self.images


class _TestPlugin:
    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("ddp-test-images", RandomImages)


def make_trainer(**changes):
    from gankit.config import RunConfig
    from gankit.engine import Trainer
    from gankit.plugins import load_plugins
    from gankit.registry import Registry

    config = RunConfig.from_sources(overrides={**SETTINGS, **changes})
    return Trainer(config, registry=Registry(load_plugins([("ddp-test", _TestPlugin())], entry_points=False)))


# -- the processes ----------------------------------------------------------------------------------


def worker(out: str) -> None:
    from safetensors.torch import save_file

    trainer = make_trainer()
    trainer.train(out)
    state = {f"generator.{k}": v for k, v in trainer.generator.state_dict().items()}
    state.update({f"discriminator.{k}": v for k, v in trainer.discriminator.state_dict().items()})
    # A decision taken on one rank only (rank 1 here) reaches every rank.
    state["any_rank"] = torch.tensor(trainer.distributed.any_rank(trainer.distributed.rank == 1, trainer.device))
    save_file({k: v.contiguous() for k, v in state.items()}, str(Path(out).parent / f"rank{trainer.distributed.rank}.safetensors"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def run_ranks(out: Path) -> list[dict[str, torch.Tensor]]:
    from safetensors.torch import load_file

    port = free_port()
    processes = []
    for rank in range(WORLD_SIZE):
        env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank), "WORLD_SIZE": str(WORLD_SIZE),
               "MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port), "OMP_NUM_THREADS": "1"}
        processes.append(subprocess.Popen([sys.executable, __file__, "worker", str(out)], env=env,
                                          stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
    for process in processes:
        output, _ = process.communicate(timeout=300)
        assert process.returncode == 0, output
    return [load_file(str(out.parent / f"rank{rank}.safetensors")) for rank in range(WORLD_SIZE)]


# -- the documented semantics, computed by hand in one process ----------------------------------------


def reference_states() -> list[dict[str, torch.Tensor]]:
    """Plain DDP as docs/performance.md states it: rank r trains on the r-th slice of each global batch and
    of each global noise draw, BatchNorm normalises with its own slice's statistics, gradients are
    averaged over ranks before each Adam step; BatchNorm buffers are broadcast from rank 0 before every
    forward pass through a DDP module (the generator step calls D outside DDP)."""
    trainer = make_trainer()  # one process: the same initial weights, optimizer settings and data
    config = trainer.config
    generators = [copy.deepcopy(trainer.generator) for _ in range(WORLD_SIZE)]
    discriminators = [copy.deepcopy(trainer.discriminator) for _ in range(WORLD_SIZE)]

    def adam(module):
        return torch.optim.Adam(module.parameters(), lr=config.lr, betas=tuple(config.betas))

    optimizers_g = [adam(g) for g in generators]
    optimizers_d = [adam(d) for d in discriminators]
    data = to_unit_range(trainer.source.tensor())
    noise = torch.Generator().manual_seed(config.seed)
    batch, global_batch = config.batch_size, config.batch_size * WORLD_SIZE

    def ddp_forward(modules, inputs):
        for module in modules[1:]:
            for mine, rank0 in zip(module.buffers(), modules[0].buffers()):
                mine.data.copy_(rank0.data)  # as DDP's broadcast: below autograd, no version bump
        return [module(x) for module, x in zip(modules, inputs)]

    def average_gradients_and_step(modules, optimizers):
        for parameters in zip(*(m.parameters() for m in modules)):
            mean = torch.stack([p.grad for p in parameters]).mean(0)
            for p in parameters:
                p.grad = mean.clone()
        for optimizer in optimizers:
            optimizer.step()

    position, epoch = 0, 0
    order = torch.randperm(IMAGE_COUNT, generator=torch.Generator().manual_seed(config.seed * 1_000_003))
    for _ in range(config.steps):
        if position + global_batch > IMAGE_COUNT:
            epoch, position = epoch + 1, 0
            order = torch.randperm(IMAGE_COUNT, generator=torch.Generator().manual_seed(config.seed * 1_000_003 + epoch))
        real = [data[order[position + r * batch : position + (r + 1) * batch]] for r in range(WORLD_SIZE)]
        position += global_batch
        z = torch.randn(global_batch, config.z_dim, generator=noise).split(batch)

        fakes = ddp_forward(generators, z)
        real_scores = ddp_forward(discriminators, real)
        fake_scores = ddp_forward(discriminators, [f.detach() for f in fakes])
        for optimizer in optimizers_d:
            optimizer.zero_grad(set_to_none=True)
        for rs, fs in zip(real_scores, fake_scores):
            loss = (F.binary_cross_entropy_with_logits(rs, torch.ones_like(rs))
                    + F.binary_cross_entropy_with_logits(fs, torch.zeros_like(fs)))
            loss.backward()
        average_gradients_and_step(discriminators, optimizers_d)

        for optimizer in optimizers_g:
            optimizer.zero_grad(set_to_none=True)
        for generator_fake, discriminator in zip(fakes, discriminators):
            discriminator.requires_grad_(False)
            scores = discriminator(generator_fake)
            F.binary_cross_entropy_with_logits(scores, torch.ones_like(scores)).backward()
            discriminator.requires_grad_(True)
        average_gradients_and_step(generators, optimizers_g)

    states = []
    for generator, discriminator in zip(generators, discriminators):
        state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
        state.update({f"discriminator.{k}": v for k, v in discriminator.state_dict().items()})
        states.append(state)
    return states


# -- tests ---------------------------------------------------------------------------------------------


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_two_gloo_processes_end_identical_and_equal_to_averaged_gradient_reference(tmp_path):
    out = tmp_path / "run"
    ranks = run_ranks(out)
    expected = reference_states()

    assert all(bool(state.pop("any_rank")) for state in ranks)
    parameters = [name for name in ranks[0] if "running_" not in name and "num_batches" not in name]
    for name in parameters:
        assert torch.equal(ranks[0][name], ranks[1][name]), f"{name} differs between the ranks"
    for rank, (state, reference) in enumerate(zip(ranks, expected)):
        assert set(state) == set(reference)
        for name, value in reference.items():
            assert torch.allclose(state[name], value, rtol=1e-4, atol=1e-5), f"rank {rank}: {name}"
    # The weights moved: the comparison is not between two untouched initialisations.
    assert not torch.allclose(expected[0]["generator.main.0.weight"], make_trainer().generator.state_dict()["main.0.weight"])

    # Rank 0 alone wrote the run: one metrics line per step, one checkpoint and one sample grid.
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3]
    assert [p.name for p in (out / "checkpoints").glob("*.safetensors")] == ["step-0000003.safetensors"]
    assert [p.name for p in (out / "samples").iterdir()] == ["step-0000003.png"]


def test_ranks_read_disjoint_slices_that_make_up_the_single_process_global_batch():
    source = RandomImages()
    single = BatchStream(source, 8, seed=3, device=torch.device("cpu"))
    ranks = [BatchStream(source, 4, seed=3, device=torch.device("cpu"), rank=r, world_size=2) for r in range(2)]
    for _ in range(5):  # crosses epochs (2 global batches per epoch)
        whole = single.next()
        parts = [stream.next() for stream in ranks]
        assert torch.equal(torch.cat(parts), whole)
        assert not torch.equal(parts[0], parts[1])
    assert ranks[0].state_dict() == ranks[1].state_dict() == single.state_dict()


def test_noise_slices_match_one_draw_for_the_global_batch():
    whole = torch.randn(6, 3, generator=torch.Generator().manual_seed(9))
    parts = [
        Distributed(rank=r, local_rank=r, world_size=3).draw_noise(2, 3, device=torch.device("cpu"),
                                                                   generator=torch.Generator().manual_seed(9))
        for r in range(3)
    ]
    assert torch.equal(torch.cat(parts), whole)
    single = Distributed().draw_noise(6, 3, device=torch.device("cpu"), generator=torch.Generator().manual_seed(9))
    assert torch.equal(single, whole)


def test_environment_detection():
    assert Distributed.from_environment({}) == Distributed(rank=0, local_rank=0, world_size=1)
    found = Distributed.from_environment({"RANK": "3", "LOCAL_RANK": "1", "WORLD_SIZE": "4"})
    assert (found.rank, found.local_rank, found.world_size, found.is_main, found.enabled) == (3, 1, 4, False, True)
    with pytest.raises(GankitError, match="RANK 4 and WORLD_SIZE 4"):
        Distributed.from_environment({"RANK": "4", "WORLD_SIZE": "4"})
    with pytest.raises(GankitError, match="WORLD_SIZE must be an integer"):
        Distributed.from_environment({"WORLD_SIZE": "two"})


def test_batch_size_check_counts_every_process():
    with pytest.raises(GankitError, match=r"fewer than the batch size 24 \(2 processes x 12\)"):
        BatchStream(RandomImages(), 12, seed=0, device=torch.device("cpu"), rank=0, world_size=2)


def torchrun_gankit(*arguments: str) -> subprocess.CompletedProcess:
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "gankit", "run", *arguments, "--quiet"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=300, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert result.returncode == 0, result.stdout + result.stderr
    return result


@pytest.mark.skipif(not torch.distributed.is_available() or not torch.distributed.is_gloo_available(),
                    reason="this torch build has no gloo backend")
def test_torchrun_runs_gankit_with_rank_zero_writing_and_resumes_exactly(tmp_path):
    from safetensors.torch import load_file

    settings = ["--arch", "dcgan:width=4", "--data", "digits:count=64", "--batch-size", "8", "--z-dim", "8",
                "--sample-every", "2", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]
    stopped, whole = tmp_path / "stopped", tmp_path / "whole"
    result = torchrun_gankit(*settings, "--steps", "2", "--out", str(stopped))
    assert result.stdout.count("Run written to") == 1
    records = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2]
    assert [p.name for p in (stopped / "checkpoints").glob("step-*.safetensors")] == ["step-0000002.safetensors"]

    torchrun_gankit("--resume", str(stopped), "--steps", "4")
    torchrun_gankit(*settings, "--steps", "4", "--out", str(whole))
    resumed = load_file(str(stopped / "checkpoints" / "step-0000004.safetensors"))
    uninterrupted = load_file(str(whole / "checkpoints" / "step-0000004.safetensors"))
    weights = [k for k in uninterrupted if k.startswith(("generator.", "discriminator."))]
    assert weights and all(torch.equal(resumed[k], uninterrupted[k]) for k in weights)
    records = [json.loads(line) for line in (stopped / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records if "event" not in r] == [1, 2, 3, 4]


if __name__ == "__main__" and sys.argv[1:2] == ["worker"]:
    worker(sys.argv[2])

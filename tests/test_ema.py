"""Generator EMA: the average itself, its warm-up, and that samples, checkpoints and inference use it."""
from __future__ import annotations

import pytest
import torch

from gankit.checkpoint import load_checkpoint, unprefixed
from gankit.config import RunConfig
from gankit.ema import GeneratorEMA
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.inference import load_generator, sample


def test_ema_is_the_exponential_average_with_warm_up():
    network = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        network.weight.fill_(0.0)
    ema = GeneratorEMA(network, 0.9)
    values = []
    for target in (1.0, 1.0, 1.0):
        with torch.no_grad():
            network.weight.fill_(target)
        ema.update(network)
        values.append(ema.module.weight.item())
    # Decays min(0.9, (1+n)/(10+n)): 0.1, 2/11, 3/12.
    expected, average = [], 0.0
    for n in range(3):
        decay = min(0.9, (1 + n) / (10 + n))
        average = decay * average + (1 - decay) * 1.0
        expected.append(average)
    assert values == pytest.approx(expected)
    assert ema.state_dict() == {"updates": 3}


def test_ema_after_many_updates_uses_the_full_decay_and_copies_buffers():
    network = torch.nn.BatchNorm1d(2)
    ema = GeneratorEMA(network, 0.5)
    ema.updates = 100
    with torch.no_grad():
        network.weight.fill_(3.0)
        network.running_mean.fill_(7.0)
    ema.update(network)
    assert torch.allclose(ema.module.weight, torch.full((2,), 2.0))  # 0.5 * 1 + 0.5 * 3
    assert torch.allclose(ema.module.running_mean, torch.full((2,), 7.0))
    assert not any(p.requires_grad for p in ema.module.parameters())


def test_ema_decay_must_be_between_zero_and_one():
    with pytest.raises(GankitError, match="between 0 and 1"):
        GeneratorEMA(torch.nn.Linear(1, 1), 1.0)
    with pytest.raises(GankitError, match="ema"):
        RunConfig.from_sources(overrides={"ema": 1.5})


def test_a_run_with_ema_samples_and_checkpoints_the_average(tiny_run, tmp_path):
    trainer = Trainer(RunConfig.from_sources(overrides={**tiny_run, "ema": 0.9}))
    out = trainer.train(tmp_path / "run")
    tensors, metadata = load_checkpoint(out / "checkpoints" / "step-0000004.safetensors")
    averaged = unprefixed("generator_ema", tensors)
    assert set(averaged) == set(trainer.generator.state_dict())
    for name, value in trainer.ema.module.state_dict().items():
        assert torch.equal(averaged[name], value)
    assert metadata["states"]["ema"] == {"updates": 4}
    # The average differs from the raw generator, and samples come from the average.
    raw = trainer.generator.state_dict()
    assert any(not torch.equal(raw[name], averaged[name]) for name in raw if raw[name].is_floating_point())
    noise = torch.randn(3, tiny_run["z_dim"])
    with torch.no_grad():
        assert torch.equal(trainer.generate(noise), trainer.ema.module(noise))
    # Inference prefers the EMA weights and can be told not to.
    ema_generator, ema_metadata = load_generator(out)
    raw_generator, raw_metadata = load_generator(out, ema=False)
    assert ema_metadata["ema_used"] and not raw_metadata["ema_used"]
    assert not torch.equal(sample(out, 4, seed=1), sample(out, 4, seed=1, ema=False))


def test_a_resumed_run_continues_the_same_average(tiny_run, tmp_path):
    from gankit.resume import resume_trainer

    settings = {**tiny_run, "ema": 0.9}
    whole = Trainer(RunConfig.from_sources(overrides=settings))
    whole.train(tmp_path / "whole")
    first = Trainer(RunConfig.from_sources(overrides={**settings, "steps": 2}))
    first.train(tmp_path / "split")
    resumed = resume_trainer(tmp_path / "split", overrides={"steps": 4})
    resumed.train(tmp_path / "split")
    assert resumed.ema.updates == whole.ema.updates == 4
    for name, value in whole.ema.module.state_dict().items():
        assert torch.equal(resumed.ema.module.state_dict()[name], value), name

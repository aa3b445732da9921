"""The training loop: what a run writes, reproducibility, and the step's use of noise and gradients."""
from __future__ import annotations

import json

import pytest
import torch

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError


def make_trainer(settings: dict, **changes) -> Trainer:
    return Trainer(RunConfig.from_sources(overrides={**settings, **changes}))


def test_run_writes_config_metrics_samples_and_checkpoints(tiny_run, tmp_path):
    out = make_trainer(tiny_run).train(tmp_path / "run")
    assert (out / "config.toml").is_file()
    assert sorted(p.name for p in (out / "samples").iterdir()) == ["step-0000002.png", "step-0000004.png"]
    assert sorted(p.name for p in (out / "checkpoints").iterdir()) == [
        "step-0000002.safetensors",
        "step-0000004.safetensors",
    ]
    records = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [1, 2, 3, 4]
    for record in records:
        for key in ("d_loss", "g_loss", "d_x", "d_g_z", "img_per_s"):
            assert key in record
        assert 0.0 <= record["d_x"] <= 1.0 and 0.0 <= record["d_g_z"] <= 1.0


def test_resolved_config_records_loss_recommendations_and_canonical_specs(tiny_run, tmp_path):
    trainer = make_trainer(tiny_run)
    trainer.train(tmp_path / "run")
    text = (tmp_path / "run" / "config.toml").read_text()
    assert 'arch = "dcgan:dcgan:width=8"' in text
    assert 'data = "digits:digits:count=256"' in text
    assert "image_size = 32" in text
    # bce recommends Adam 2e-4, betas (0.5, 0.999); the digits recipe's rate (3e-3, tuned for bce) wins over its
    # rate, and nothing overrode the rest.
    assert trainer.config.optimizer == "adam" and trainer.config.lr == 3e-3
    assert trainer.config.betas == [0.5, 0.999]
    assert 'lr = 0.003' in text and 'betas = [0.5, 0.999]' in text


def test_user_settings_win_over_loss_recommendations(tiny_run):
    trainer = make_trainer(tiny_run, lr=1e-3, betas="0.0,0.9")
    assert trainer.config.lr == 1e-3 and trainer.config.betas == [0.0, 0.9]
    assert trainer.optimizer_d.param_groups[0]["lr"] == 1e-3


def test_same_seed_same_result_different_seed_different_result(tiny_run, tmp_path):
    def final_weights(seed, name):
        trainer = make_trainer(tiny_run, seed=seed)
        trainer.train(tmp_path / name)
        return torch.cat([p.detach().flatten() for p in trainer.generator.parameters()])

    first, again, other = final_weights(3, "a"), final_weights(3, "b"), final_weights(4, "c")
    assert torch.equal(first, again)
    assert not torch.equal(first, other)


def test_generator_runs_once_per_step_and_discriminator_gets_no_gradient_in_generator_step(tiny_run):
    trainer = make_trainer(tiny_run)
    calls = []
    trainer.generator.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].clone()))
    seen_requires_grad = []
    trainer.discriminator.register_forward_pre_hook(
        lambda module, inputs: seen_requires_grad.append(next(module.parameters()).requires_grad)
    )
    trainer.train_step(0)
    # The article's lesson: the generator update reuses the noise (and fake batch) of the D update.
    assert len(calls) == 1
    # D(real), D(fake.detach()) with gradients on; D(fake) for the generator with D frozen.
    assert seen_requires_grad == [True, True, False]
    assert all(p.requires_grad for p in trainer.discriminator.parameters())


def test_discriminator_sees_a_fresh_real_batch_per_update(tiny_run):
    trainer = make_trainer(tiny_run, d_steps=3)
    batches = []
    original = trainer.batches.next
    trainer.batches.next = lambda: batches.append(original()) or batches[-1]
    trainer.train_step(0)
    assert len(batches) == 3
    assert not torch.equal(batches[0], batches[1])


def test_batches_cover_each_epoch_once_in_a_seeded_order(tiny_run):
    trainer = make_trainer(tiny_run, batch_size=64)
    stream = trainer.batches
    seen = torch.cat([stream.next() for _ in range(len(stream))])
    data = trainer.source.tensor().float() / 127.5 - 1
    assert seen.shape == data.shape
    # Every example exactly once per epoch: compare sorted per-example sums.
    assert torch.allclose(seen.sum(dim=(1, 2, 3)).sort().values, data.sum(dim=(1, 2, 3)).sort().values)
    assert seen.min() >= -1 and seen.max() <= 1


def test_architecture_that_cannot_serve_the_data_fails_before_training(tiny_run):
    with pytest.raises(GankitError, match="dcgan supports square images"):
        make_trainer(tiny_run, image_size=40)


def test_batch_larger_than_the_data_is_an_error(tiny_run):
    with pytest.raises(GankitError, match="fewer than the batch size"):
        make_trainer(tiny_run, batch_size=512)


def test_adam_uses_the_fused_kernel_where_the_device_has_one_and_falls_back_where_not(monkeypatch):
    from gankit.engine import make_optimizer

    weight = torch.nn.Parameter(torch.randn(3, 3))
    assert make_optimizer("adam", [weight], lr=1e-3, betas=[0.5, 0.999]).defaults["fused"] is True

    plain_adam = torch.optim.Adam

    def adam_without_fused(params, *args, fused=None, **kwargs):
        if fused:
            raise RuntimeError("`fused=True` requires all the params to be on a supported device")
        return plain_adam(params, *args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", adam_without_fused)
    optimizer = make_optimizer("adam", (p for p in [weight]), lr=1e-3, betas=[0.5, 0.999])
    assert not optimizer.defaults["fused"] and optimizer.param_groups[0]["params"] == [weight]

"""Speed settings: precision, channels_last and torch.compile change how the step runs, not what it computes.

The CUDA paths (fp16 with a GradScaler, bf16, cuDNN autotuning) run only where a GPU is present.
"""
from __future__ import annotations

import pytest
import torch
from typer.testing import CliRunner

from gankit.cli import app
from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.precision import autocast, backward_and_step, check_precision, make_grad_scaler

needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")

# 16x16 images, width 4: a step takes milliseconds on a CPU core.
SMALL = {
    "arch": "dcgan:width=4", "data": "digits:count=64", "image_size": 16, "batch_size": 8, "steps": 3, "z_dim": 8,
    "device": "cpu", "log_every": 1, "sample_every": 100, "checkpoint_every": 100,
    "lr": 2e-4, "lr_decay": 0.0,  # the article's rate, which the closeness bound below is for
}


def trained_weights(**changes) -> dict[str, torch.Tensor]:
    trainer = Trainer(RunConfig.from_sources(overrides={**SMALL, **changes}))
    for step in range(trainer.config.steps):
        trainer.train_step(step)
    return {
        **{f"G.{k}": v.detach().float().contiguous() for k, v in trainer.generator.state_dict().items()},
        **{f"D.{k}": v.detach().float().contiguous() for k, v in trainer.discriminator.state_dict().items()},
    }


def test_fp16_on_cpu_is_a_one_line_error():
    with pytest.raises(GankitError, match="fp16 needs a CUDA device.*use --precision bf16 or fp32"):
        check_precision("fp16", torch.device("cpu"))
    result = CliRunner().invoke(app, ["run", *_flags(SMALL), "--precision", "fp16", "--quiet"])
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("Error: --precision fp16 needs a CUDA device"), result.output


def test_unknown_precision_is_refused_by_the_config():
    with pytest.raises(GankitError, match="precision must be one of fp32, bf16, fp16"):
        RunConfig.from_sources(overrides={"precision": "fp8"})


def test_fp32_adds_no_autocast_and_no_scaler():
    assert make_grad_scaler("fp32", torch.device("cpu")) is None
    layer = torch.nn.Linear(4, 4)
    with autocast("fp32", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.float32
    with autocast("bf16", torch.device("cpu")):
        assert layer(torch.randn(2, 4)).dtype == torch.bfloat16


def test_backward_and_step_without_scaler_is_backward_then_step():
    torch.manual_seed(0)
    a, b = torch.nn.Linear(3, 1), torch.nn.Linear(3, 1)
    b.load_state_dict(a.state_dict())
    x = torch.randn(5, 3)
    opt_a, opt_b = torch.optim.SGD(a.parameters(), lr=0.1), torch.optim.SGD(b.parameters(), lr=0.1)
    a(x).pow(2).mean().backward()
    opt_a.step()
    backward_and_step(b(x).pow(2).mean(), opt_b, None)
    assert torch.equal(a.weight, b.weight)


def test_bf16_trains_on_cpu_with_fp32_weights_and_close_results():
    reference = trained_weights()
    bf16 = trained_weights(precision="bf16")
    assert all(v.dtype == torch.float32 for v in bf16.values())
    initial = trained_weights(steps=1)
    assert not torch.equal(bf16["G.main.0.weight"], initial["G.main.0.weight"])  # bf16 steps did update G
    for name, value in reference.items():
        assert torch.isfinite(bf16[name]).all()
        # bf16 keeps ~3 significant digits; after 3 Adam steps of lr 2e-4 the weights agree closely.
        assert torch.allclose(bf16[name], value, atol=2e-3, rtol=2e-2), name


def test_channels_last_gives_the_same_training():
    reference = trained_weights()
    nhwc = trained_weights(channels_last=True)
    for name, value in reference.items():
        assert torch.allclose(nhwc[name], value, atol=1e-5, rtol=1e-4), name


def test_channels_last_stores_conv_weights_nhwc():
    trainer = Trainer(RunConfig.from_sources(overrides={**SMALL, "channels_last": True}))
    convs = [m for m in trainer.discriminator.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(m.weight.is_contiguous(memory_format=torch.channels_last) for m in convs)


def test_compile_trains_like_eager(monkeypatch):
    # The "eager" backend runs dynamo's capture and guards (what breaks with requires_grad toggling or
    # wrapping) without a C++ toolchain, so the test stays fast; inductor itself is exercised on GPU runs.
    import gankit.build as build

    compiled = []

    def compile_with_eager_backend(module):
        compiled.append(module)
        return torch.compile(module, backend="eager")

    monkeypatch.setattr(build, "compile_module", compile_with_eager_backend)
    torch._dynamo.reset()
    reference = trained_weights()
    result = trained_weights(compile=True)
    assert len(compiled) == 3  # generator, discriminator, and the discriminator the G step calls
    for name, value in reference.items():
        assert torch.allclose(result[name], value, atol=1e-6, rtol=1e-5), name


def test_run_flags_reach_the_config(tmp_path):
    result = CliRunner().invoke(app, ["run", *_flags(SMALL), "--precision", "bf16", "--channels-last", "--quiet",
                                      "--out", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    text = (tmp_path / "run" / "config.toml").read_text()
    assert 'precision = "bf16"' in text and "channels_last = true" in text and "compile = false" in text


@needs_cuda
def test_fp16_on_cuda_trains_with_a_grad_scaler():
    trainer = Trainer(RunConfig.from_sources(overrides={**SMALL, "device": "cuda", "precision": "fp16"}))
    assert trainer.scaler_d is not None and trainer.scaler_g is not None
    for step in range(3):
        stats = trainer.train_step(step)
    assert torch.isfinite(stats["d_loss"]) and torch.isfinite(stats["g_loss"])
    assert trainer.scaler_g.get_scale() > 0
    assert all(p.dtype == torch.float32 for p in trainer.generator.parameters())
    assert torch.backends.cudnn.benchmark


@needs_cuda
def test_bf16_channels_last_on_cuda_matches_fp32_closely():
    reference = trained_weights(device="cuda")
    fast = trained_weights(device="cuda", precision="bf16", channels_last=True)
    for name, value in reference.items():
        assert torch.allclose(fast[name], value, atol=2e-3, rtol=2e-2), name


def _flags(settings: dict) -> list[str]:
    flags = []
    for key, value in settings.items():
        flags += [f"--{key.replace('_', '-')}", str(value)]
    return flags


# -- --grad-clip-norm (the example of a setting declared once: gankit/config.py, used in the step) ----------


def parameter_change_norms(**changes) -> tuple[float, float]:
    """How far one step moves the generator's and the discriminator's weights under SGD (lr 1): the step is
    the gradient itself, so its norm is the (clipped) gradient norm."""
    trainer = Trainer(RunConfig.from_sources(overrides={**SMALL, "optimizer": "sgd", "lr": 1.0, **changes}))
    before = [[p.detach().clone() for p in net.parameters()] for net in (trainer.generator, trainer.discriminator)]
    trainer.train_step(0)
    return tuple(
        float(torch.cat([(p.detach() - old).flatten() for p, old in zip(net.parameters(), saved)]).norm())
        for net, saved in zip((trainer.generator, trainer.discriminator), before)
    )


def test_grad_clip_norm_bounds_both_networks_updates():
    free = parameter_change_norms()
    assert min(free) > 0.05  # without clipping both updates are larger than the bound below
    clipped = parameter_change_norms(grad_clip_norm=0.05)
    assert all(norm <= 0.05 * 1.0001 for norm in clipped), clipped
    assert all(norm > 0.05 * 0.99 for norm in clipped)  # clipped to the bound, not zeroed


def test_grad_clip_norm_off_is_the_unchanged_step():
    assert RunConfig().grad_clip_norm is None
    default, explicit_none = trained_weights(), trained_weights(grad_clip_norm=None)
    assert all(torch.equal(default[key], explicit_none[key]) for key in default)


def test_grad_clip_norm_flag_and_bad_values():
    result = CliRunner().invoke(app, ["run", *_flags(SMALL), "--grad-clip-norm", "0", "--quiet"])
    assert result.exit_code != 0 and "grad-clip-norm must be positive, got 0.0" in result.output
    result = CliRunner().invoke(app, ["bench", "--arch", "dcgan:width=4", "--image-size", "16", "--batch-size", "4",
                                      "--steps", "1", "--warmup", "0", "--device", "cpu", "--grad-clip-norm", "1",
                                      "--json"])
    assert result.exit_code == 0, result.output


@needs_cuda
def test_grad_clip_norm_under_fp16_clips_unscaled_gradients():
    layer = torch.nn.Linear(4, 1).cuda()
    optimizer = torch.optim.SGD(layer.parameters(), lr=1.0)
    scaler = make_grad_scaler("fp16", torch.device("cuda"))
    before = [p.detach().clone() for p in layer.parameters()]
    with autocast("fp16", torch.device("cuda")):
        loss = layer(torch.full((8, 4), 100.0, device="cuda")).float().sum()
    backward_and_step(loss, optimizer, scaler, max_grad_norm=0.5)
    moved = torch.cat([(p.detach() - old).flatten() for p, old in zip(layer.parameters(), before)]).norm()
    # Clipping the scaled gradients (65536x) and then unscaling would move the weights by 0.5 / 65536.
    assert 0.49 < float(moved) <= 0.5001

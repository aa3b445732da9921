"""The builtin regularizers: clipping bounds in a real run, penalties against closed forms, spectral norm,
combinations, options from flags and TOML, and the conflicts caught before training."""
from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.errors import GankitError
from gankit.registry import default_registry

WASSERSTEIN_CLIP = {"loss": "wasserstein:schedule=false", "reg": ["clip"], "d_steps": 3, "steps": 2}


def build(spec: str):
    return default_registry().build("regularizer", spec).value


def trainer(settings: dict, **changes) -> Trainer:
    return Trainer(RunConfig.from_sources(overrides={**settings, **changes}))


class LinearCritic(nn.Module):
    """D(x) = w . x + b: its input gradient is w everywhere."""

    def __init__(self, weight: list[float]) -> None:
        super().__init__()
        self.linear = nn.Linear(len(weight), 1)
        with torch.no_grad():
            self.linear.weight.copy_(torch.tensor([weight]))
            self.linear.bias.fill_(0.3)

    def forward(self, x):
        return self.linear(x).reshape(x.shape[0])


def penalty(regularizer, critic, step: int = 0):
    real, fake = torch.randn(8, 4), torch.randn(8, 4)
    return regularizer.penalty(
        discriminator=critic, real=real, fake=fake, real_scores=None, fake_scores=None, step=step
    )


def penalty_value(regularizer, critic, step: int = 0) -> float:
    return penalty(regularizer, critic, step).item()


# -- clip -----------------------------------------------------------------------------------------------


def largest_weight(module: nn.Module) -> float:
    return max(p.abs().max().item() for p in module.parameters())


def test_clip_bound_holds_at_every_critic_forward_and_after_every_critic_update(tiny_run):
    bound = 0.02
    run = trainer(tiny_run, **{**WASSERSTEIN_CLIP, "reg": [f"clip:value={bound}"]})
    clip = run.regularizers[0]
    at_forward = []
    run.discriminator.register_forward_pre_hook(lambda module, inputs: at_forward.append(largest_weight(module)))
    before_clip, after_clip = [], []
    original = clip.after_discriminator_step

    def measured(*, discriminator):
        before_clip.append(largest_weight(discriminator))
        original(discriminator=discriminator)
        after_clip.append(largest_weight(discriminator))

    clip.after_discriminator_step = measured
    run.train_step(0)
    run.train_step(1)
    # 2 generator steps x (3 critic updates, each D(real) and D(fake), + the generator's forward).
    assert len(at_forward) == 2 * (3 * 2 + 1)
    assert max(at_forward) <= bound
    assert len(after_clip) == 6 and max(after_clip) <= bound
    assert max(before_clip) > bound  # RMSprop's steps do leave the box; clipping brings the weights back


def test_clip_checkpoint_holds_every_critic_weight_within_the_bound(tiny_run, tmp_path):
    run = trainer(tiny_run, **WASSERSTEIN_CLIP)
    out = run.train(tmp_path / "run")
    checkpoint = sorted((out / "checkpoints").glob("*.safetensors"))[-1]
    tensors = load_file(str(checkpoint))
    names = [f"discriminator.{name}" for name, _ in run.discriminator.named_parameters()]
    assert names and all(name in tensors for name in names)
    assert max(tensors[name].abs().max().item() for name in names) <= 0.01
    # The initial weights, N(0, 0.02), exceed the bound: the bound is the clipping's doing.
    assert any(tensors[name].abs().max().item() == pytest.approx(0.01) for name in names)


def test_clip_value_option_from_flags_and_toml_goes_into_the_run_config(tiny_run, tmp_path):
    config_file = tmp_path / "run.toml"
    config_file.write_text('loss = "wasserstein:schedule=false"\nreg = ["clip:value=0.02"]\nsteps = 1\n')
    overrides = {key: value for key, value in tiny_run.items() if key != "steps"}
    config = RunConfig.from_sources(config_file, overrides)
    run = Trainer(config)
    assert run.regularizers[0].value == 0.02
    out = run.train(tmp_path / "run")
    assert 'reg = ["regularizers:clip:value=0.02"]' in (out / "config.toml").read_text()


def test_clip_option_errors_list_the_valid_options():
    valid = r"regularizer 'clip' has no option 'valu'; valid options: value \(float\) = 0.01"
    with pytest.raises(GankitError, match=valid):
        build("clip:valu=0.02")
    with pytest.raises(GankitError, match="option 'value' must be float, got 'big'"):
        build("clip:value=big")
    with pytest.raises(GankitError, match="value must be positive"):
        build("clip:value=0")


# -- gradient penalties ---------------------------------------------------------------------------------


def test_gradient_penalty_is_zero_for_a_1_lipschitz_linear_critic_and_positive_otherwise():
    gp = build("gp")
    assert penalty_value(gp, LinearCritic([0.6, 0.8, 0.0, 0.0])) == pytest.approx(0.0, abs=1e-10)
    # ||w|| = 2: 10 * (2 - 1)^2 everywhere.
    assert penalty_value(gp, LinearCritic([2.0, 0.0, 0.0, 0.0])) == pytest.approx(10.0, rel=1e-5)
    # ||w|| = 0.5, weight 3: 3 * (0.5 - 1)^2.
    assert penalty_value(build("gp:weight=3"), LinearCritic([0.3, 0.4, 0.0, 0.0])) == pytest.approx(0.75, rel=1e-5)
    nonlinear = nn.Sequential(nn.Linear(4, 16), nn.Tanh(), nn.Linear(16, 1), nn.Flatten(0))
    assert penalty_value(gp, nonlinear) > 0


def test_gradient_penalty_is_differentiable_in_the_critic_weights():
    critic = LinearCritic([2.0, 0.0, 0.0, 0.0])
    penalty(build("gp"), critic).backward()
    # d/dw 10 (||w|| - 1)^2 = 20 (||w|| - 1) w / ||w|| = (20, 0, 0, 0)
    assert critic.linear.weight.grad[0].tolist() == pytest.approx([20.0, 0.0, 0.0, 0.0], rel=1e-5)


def test_r1_penalty_closed_form_and_lazy_application():
    critic = LinearCritic([1.0, 2.0, 0.0, 2.0])  # ||w||^2 = 9
    assert penalty_value(build("r1"), critic) == pytest.approx(10 / 2 * 9, rel=1e-5)
    assert penalty_value(build("r1:gamma=2"), critic) == pytest.approx(9.0, rel=1e-5)
    lazy = build("r1:gamma=2,every=4")
    assert [penalty(lazy, critic, step) is None for step in range(5)] == [False, True, True, True, False]
    assert penalty_value(lazy, critic, 8) == pytest.approx(4 * 9.0, rel=1e-5)


def test_r2_penalty_is_r1_on_the_fake_batch():
    # D(x) = sum(x^2): dD/dx = 2x, so gamma / 2 * mean(||2 x_fake||^2) by hand; the real batch plays no part.
    class SquareCritic(nn.Module):
        def forward(self, x):
            return x.pow(2).sum(1)

    real, fake = torch.randn(8, 4), torch.randn(8, 4)

    def value(spec, step=0):
        result = build(spec).penalty(discriminator=SquareCritic(), real=real, fake=fake, real_scores=None,
                                     fake_scores=None, step=step)
        return None if result is None else result.item()

    expected = 2.0 / 2 * (2 * fake).pow(2).sum(1).mean().item()
    assert value("r2:gamma=2") == pytest.approx(expected, rel=1e-5)
    assert value("r1:gamma=2") == pytest.approx(2.0 / 2 * (2 * real).pow(2).sum(1).mean().item(), rel=1e-5)
    assert value("r2:gamma=2,every=3", step=1) is None
    assert value("r2:gamma=2,every=3", step=3) == pytest.approx(3 * expected, rel=1e-5)


def test_r2_penalty_is_differentiable_in_the_critic_weights():
    critic = LinearCritic([1.0, 2.0, 0.0, 2.0])
    penalty(build("r2:gamma=2"), critic).backward()
    # d/dw gamma / 2 ||w||^2 = gamma w
    assert critic.linear.weight.grad[0].tolist() == pytest.approx([2.0, 4.0, 0.0, 4.0], rel=1e-5)


@pytest.mark.parametrize("spec, message", [("r2:gamma=0", "'r2' option gamma must be positive"),
                                           ("r2:every=0", "'r2' option every must be 1 or more")])
def test_r2_option_errors_name_r2(spec, message):
    with pytest.raises(GankitError, match=message):
        build(spec)


@pytest.mark.parametrize("spec", ["gp", "r1", "r2"])
def test_gradient_penalty_with_batch_norm_is_refused_with_the_norm_option_offered(tiny_run, spec):
    with pytest.raises(GankitError, match=r"BatchNorm.*--arch dcgan:norm=layer"):
        trainer(tiny_run, reg=[spec])


def test_gp_recommends_the_wgan_gp_recipe_over_the_wasserstein_defaults(tiny_run):
    run = trainer(tiny_run, loss="wasserstein", reg=["gp"], arch="dcgan:width=8,norm=layer")
    config = run.config
    assert (config.optimizer, config.lr, config.betas, config.d_steps) == ("adam", 1e-4, [0.0, 0.9], 5)
    assert [run.d_steps_at(step) for step in (0, 24, 500)] == [5, 5, 5]  # no WGAN boosts
    assert run.optimizer_d.param_groups[0]["betas"] == (0.0, 0.9)


# -- spectral norm --------------------------------------------------------------------------------------


def weight_matrices(module: nn.Module):
    for layer in module.modules():
        if isinstance(layer, (nn.Conv2d, nn.Linear)):
            yield layer.weight.detach().flatten(1)


def test_spectral_norm_bounds_the_largest_singular_value_of_every_layer():
    critic = nn.Sequential(
        nn.Conv2d(1, 8, 4, 2, 1), nn.LeakyReLU(0.2), nn.Conv2d(8, 16, 4, 2, 1), nn.Flatten(), nn.Linear(16 * 4 * 4, 1)
    )
    with torch.no_grad():
        for parameter in critic.parameters():
            parameter.mul_(20)
    assert all(torch.linalg.matrix_norm(w, ord=2) > 1.5 for w in weight_matrices(critic))
    regularizer = build("spectral-norm")
    regularizer.check(generator=None, discriminator=critic, loss=None)
    regularizer.prepare(generator=None, discriminator=critic)
    for _ in range(30):  # one power iteration per training-mode forward
        critic(torch.randn(4, 1, 16, 16))
    largest = [float(torch.linalg.matrix_norm(w, ord=2)) for w in weight_matrices(critic)]
    assert len(largest) == 3
    assert all(value == pytest.approx(1.0, abs=1e-3) for value in largest)


def test_spectral_norm_needs_a_weighted_layer():
    with pytest.raises(GankitError, match="no conv or linear layer"):
        build("sn").check(generator=None, discriminator=nn.Sequential(nn.Flatten(0)), loss=None)


def test_regularizers_combine_and_each_acts(tiny_run, tmp_path):
    run = trainer(tiny_run, loss="wasserstein", reg=["gp:weight=5", "spectral-norm"],
                  arch="dcgan:width=8,norm=layer", steps=1, d_steps=1)
    assert run.config.reg == ["regularizers:gp:weight=5.0", "regularizers:spectral-norm"]
    assert [type(r).__name__ for r in run.regularizers] == ["GradientPenalty", "SpectralNorm"]
    assert all(
        torch.nn.utils.parametrize.is_parametrized(layer, "weight")
        for layer in run.discriminator.modules() if isinstance(layer, nn.Conv2d)
    )
    out = run.train(tmp_path / "run")
    assert 'reg = ["regularizers:gp:weight=5.0", "regularizers:spectral-norm"]' in (out / "config.toml").read_text()

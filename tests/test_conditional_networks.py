"""Class-conditional networks (issue 14): dcgan, mlp and the resnet plugin with ``num_classes`` condition the
generator on the labels and give a projection discriminator, optionally with a ``class_logits`` head; without
``num_classes`` they are exactly the unconditional networks (same parameters, same initial weights)."""
from __future__ import annotations

import hashlib
import inspect

import pytest
import torch
import torch.nn.functional as F

from gankit.builtins.conditioning import ConditionalBatchNorm
from gankit.builtins.dcgan import dcgan
from gankit.builtins.mlp import mlp
from gankit.builtins.regularizers import SpectralNorm
from gankit.builtins.wgan import wgan
from gankit.errors import GankitError

CLASSES = 10


def resnet(**kwargs):
    return pytest.importorskip("gankit_resnet").resnet(**kwargs)


# name -> (factory with its tiny options, data shape, z_dim)
ARCHITECTURES = {
    "dcgan32": (lambda **k: dcgan(shape=(1, 32, 32), z_dim=16, width=8, **k), (1, 32, 32), 16),
    "dcgan64": (lambda **k: dcgan(shape=(3, 64, 64), z_dim=16, width=8, **k), (3, 64, 64), 16),
    "mlp": (lambda **k: mlp(shape=(2,), z_dim=4, width=16, depth=2, **k), (2,), 4),
    "resnet": (lambda **k: resnet(shape=(3, 32, 32), z_dim=8, width=2, **k), (3, 32, 32), 8),
}

# sha256 (first 16 hex digits) of the state dicts' names and values, seed 0, taken on the code before issue 14
# (4b9d6bf): the unconditional networks must keep their parameter names, their construction order and their
# initial weights, or seeded runs change.
UNCONDITIONAL = {
    "dcgan32": ("fb535c2157044c5e", "fba3595adc886af0"),
    "dcgan64": ("78627d7e3950c7a4", "fc6b6830ac13c5a3"),
    "mlp": ("e1903267a56c96b9", "b0be42fcc882782b"),
    "mlp-pack": ("e1903267a56c96b9", "c3178b720453fbe6"),
    "resnet": ("1d289ab3069410ab", "413a9e832762307c"),
}


def digest(module: torch.nn.Module) -> str:
    hashed = hashlib.sha256()
    for name, value in module.state_dict().items():
        hashed.update(name.encode())
        hashed.update(value.detach().contiguous().numpy().tobytes())
    return hashed.hexdigest()[:16]


def build(name: str, seed: int = 0, **options):
    torch.manual_seed(seed)
    if name == "mlp-pack":
        return mlp(shape=(2,), z_dim=4, width=16, depth=2, pack=2, **options)
    return ARCHITECTURES[name][0](**options)


def batch(name: str, count: int = 4):
    _, shape, z_dim = ARCHITECTURES[name]
    return torch.randn(count, z_dim), torch.arange(count) % CLASSES, shape


# --- without num_classes: today's networks ----------------------------------------------------------------


@pytest.mark.parametrize("name", list(UNCONDITIONAL))
def test_unconditional_networks_keep_their_parameters_and_initial_weights(name):
    generator, discriminator = build(name)
    assert (digest(generator), digest(discriminator)) == UNCONDITIONAL[name]
    # The new options at their defaults build nothing more.
    generator, discriminator = build(name, discriminator_outputs=(), num_classes=None, projection=False)
    assert (digest(generator), digest(discriminator)) == UNCONDITIONAL[name]


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_unconditional_networks_refuse_labels_rather_than_ignore_them(name):
    generator, discriminator = build(name)
    z, labels, _ = batch(name)
    with pytest.raises(GankitError, match="built without num_classes: it takes no labels"):
        generator(z, labels)
    fake = generator(z)
    with pytest.raises(GankitError, match="takes no labels"):
        discriminator(fake, labels)
    assert discriminator(fake).shape == (4,)


# --- with num_classes ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_conditional_shapes(name):
    generator, discriminator = build(name, num_classes=CLASSES)
    z, labels, shape = batch(name)
    fake = generator(z, labels)
    assert fake.shape == (4, *shape)
    assert discriminator(fake, labels).shape == (4,)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_class_logits_come_with_the_scores(name):
    generator, discriminator = build(name, num_classes=CLASSES, discriminator_outputs=("class_logits",))
    z, labels, _ = batch(name)
    scores, outputs = discriminator(generator(z, labels), labels)
    assert scores.shape == (4,)
    assert list(outputs) == ["class_logits"] and outputs["class_logits"].shape == (4, CLASSES)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_projection_changes_the_score_when_only_the_label_changes(name):
    generator, discriminator = build(name, num_classes=CLASSES)
    discriminator.eval()
    x = generator(*batch(name)[:2]).detach()
    with torch.no_grad():
        scores = [discriminator(x, torch.full((4,), k)) for k in range(3)]
    assert not torch.allclose(scores[0], scores[1]) and not torch.allclose(scores[1], scores[2])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_without_projection_the_discriminator_ignores_the_labels(name):
    generator, discriminator = build(
        name, num_classes=CLASSES, projection=False, discriminator_outputs=("class_logits",)
    )
    discriminator.eval()
    x = generator(*batch(name)[:2]).detach()
    with torch.no_grad():
        first, first_outputs = discriminator(x, torch.zeros(4, dtype=torch.long))
        second, second_outputs = discriminator(x, torch.full((4,), 7))
        unlabelled, _ = discriminator(x, None)  # it still accepts labels, and needs none
    assert torch.equal(first, second) and torch.equal(first, unlabelled)
    assert torch.equal(first_outputs["class_logits"], second_outputs["class_logits"])


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_the_generator_follows_the_labels(name):
    generator, _ = build(name, num_classes=CLASSES)
    generator.eval()
    z = torch.randn(1, ARCHITECTURES[name][2]).repeat(2, 1)
    with torch.no_grad():
        for parameter in generator.parameters():  # no class is special at initialisation: make them differ
            parameter.add_(0.1 * torch.randn_like(parameter))
        first, second = generator(z, torch.tensor([0, 1]))
    assert not torch.allclose(first, second)


def test_dcgan_conditions_every_batch_norm_of_its_generator_starting_as_plain_batch_norm():
    generator, _ = build("dcgan32", num_classes=CLASSES)
    norms = [module for module in generator.modules() if isinstance(module, ConditionalBatchNorm)]
    assert len(norms) == 3  # 32 px: three stages, each ConvT + BN + ReLU before the output layer
    assert not any(isinstance(module, torch.nn.BatchNorm2d) and module.affine for module in generator.modules())
    assert all(torch.equal(norm.gains, torch.ones_like(norm.gains)) for norm in norms)
    assert all(torch.equal(norm.shifts, torch.zeros_like(norm.shifts)) for norm in norms)


def test_conditional_batch_norm_tables_move_their_values_scale_times_as_fast():
    # An equalized learning rate: a step of d in a table entry moves the class's scale or shift by scale * d.
    norm = ConditionalBatchNorm(3, 2, scale=10.0).eval()  # running statistics 0 / 1: norm(x) is x (up to eps)
    x, labels = torch.randn(4, 3, 2, 2), torch.tensor([0, 1, 0, 1])
    plain = norm(x, labels)
    with torch.no_grad():
        norm.gains[1] += 0.01
        norm.shifts[0] -= 0.02
    moved = norm(x, labels)
    assert torch.allclose(moved[labels == 1], plain[labels == 1] * 1.1, atol=1e-4)
    assert torch.allclose(moved[labels == 0], plain[labels == 0] - 0.2, atol=1e-5)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_conditional_networks_build_on_the_meta_device(name):
    # gankit checks the architecture and counts its parameters on the meta device before decoding the data.
    with torch.device("meta"):
        generator, discriminator = build(name, num_classes=CLASSES, discriminator_outputs=("class_logits",))
    assert all(parameter.is_meta for parameter in [*generator.parameters(), *discriminator.parameters()])


# --- refusals -----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_an_output_the_architecture_cannot_give_is_refused_naming_what_it_can(name):
    with pytest.raises(GankitError, match=r"cannot give the discriminator output 'features'.*class_logits"):
        build(name, num_classes=CLASSES, discriminator_outputs=("class_logits", "features"))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_class_logits_need_classes(name):
    with pytest.raises(GankitError, match="--conditional"):
        build(name, discriminator_outputs=("class_logits",))


@pytest.mark.parametrize("name", list(ARCHITECTURES))
@pytest.mark.parametrize("num_classes", [1, 0, -3, True, 2.5, "10"])
def test_a_bad_number_of_classes_is_refused(name, num_classes):
    with pytest.raises(GankitError, match="num_classes of 2 or more"):
        build(name, num_classes=num_classes)


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_conditional_networks_refuse_missing_or_malformed_labels(name):
    generator, discriminator = build(name, num_classes=CLASSES)
    z, labels, _ = batch(name)
    with pytest.raises(GankitError, match="needs the class labels"):
        generator(z)
    with pytest.raises(GankitError, match="needs the class labels"):
        discriminator(generator(z, labels).detach())
    # uint8 labels would index the class tables as a mask; float ones would truncate.
    for bad in (labels.to(torch.uint8), labels.float(), labels[:3], labels.view(2, 2)):
        with pytest.raises(GankitError, match="labels"):
            generator(z, bad)
    # A negative label is no class counted from the end (tensor indexing would take -1 as the last class). The
    # builtins say so in one line; the example plugin's lookup fails inside torch.
    with pytest.raises(GankitError if name != "resnet" else (IndexError, RuntimeError)):
        generator(z, labels - 1)


def test_packed_mlp_refuses_classes():
    with pytest.raises(GankitError, match="pack > 1 cannot condition"):
        mlp(shape=(2,), z_dim=4, pack=2, num_classes=CLASSES)


def test_wgan_does_not_condition():
    # The engine refuses --conditional for a factory without num_classes, naming it.
    assert "num_classes" not in inspect.signature(wgan).parameters


# --- spectral norm ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(ARCHITECTURES))
def test_spectral_norm_also_normalises_the_class_embedding_and_the_classifier(name):
    generator, discriminator = build(name, num_classes=CLASSES, discriminator_outputs=("class_logits",))
    SpectralNorm().prepare(generator=generator, discriminator=discriminator)
    embeddings = [m for m in discriminator.modules() if isinstance(m, torch.nn.Embedding)]
    assert len(embeddings) == 1 and torch.nn.utils.parametrize.is_parametrized(embeddings[0], "weight")
    z, labels, _ = batch(name)
    for _ in range(5):  # power iterations in training mode
        scores, outputs = discriminator(generator(z, labels).detach(), labels)
    assert scores.shape == (4,) and outputs["class_logits"].shape == (4, CLASSES)
    assert torch.linalg.matrix_norm(embeddings[0].weight, ord=2).item() == pytest.approx(1.0, abs=0.05)


def test_a_spectrally_normalised_projection_gan_learns_each_class():
    # Two classes, two points far apart: after a short hinge-loss run the generator puts each class on its side.
    torch.manual_seed(0)
    generator, discriminator = mlp(shape=(2,), z_dim=2, width=32, depth=2, num_classes=2)
    SpectralNorm().prepare(generator=generator, discriminator=discriminator)
    optimizer_g = torch.optim.Adam(generator.parameters(), 5e-3, betas=(0.5, 0.999))
    optimizer_d = torch.optim.Adam(discriminator.parameters(), 5e-3, betas=(0.5, 0.999))
    centres = torch.tensor([[-2.0, 0.0], [2.0, 0.0]])
    for _ in range(80):
        labels = torch.randint(0, 2, (64,))
        real = centres[labels] + 0.1 * torch.randn(64, 2)
        fake = generator(torch.randn(64, 2), labels)
        d_loss = F.relu(1 - discriminator(real, labels)).mean() + F.relu(1 + discriminator(fake.detach(), labels)).mean()
        optimizer_d.zero_grad()
        d_loss.backward()
        optimizer_d.step()
        g_loss = -discriminator(fake, labels).mean()
        optimizer_g.zero_grad()
        g_loss.backward()
        optimizer_g.step()
    generator.eval()
    with torch.no_grad():
        left = generator(torch.randn(500, 2), torch.zeros(500, dtype=torch.long)).mean(0)
        right = generator(torch.randn(500, 2), torch.ones(500, dtype=torch.long)).mean(0)
    assert left[0] < -1 and right[0] > 1


# --- the dcgan shortcuts: the class parts computed once per class, equal to the concatenated inputs ------------


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 64, 64), (3, 96, 96)])
@pytest.mark.parametrize("spectral", [False, True])
def test_dcgan_label_maps_convolved_once_per_class_equal_the_concatenated_maps(shape, spectral):
    from gankit.builtins.conditioning import label_maps_conv, one_hot

    torch.manual_seed(0)
    generator, discriminator = dcgan(shape=shape, z_dim=8, width=4, num_classes=CLASSES)
    if spectral:
        SpectralNorm().prepare(generator=generator, discriminator=discriminator)
    discriminator.eval()  # no power iteration between the two reads of the weight below
    first = discriminator.main[0]
    x, labels = torch.randn(6, *shape), torch.tensor([0, 2, 1, 2, 0, 1])
    maps = one_hot(labels, CLASSES, like=x)[:, :, None, None].expand(-1, -1, *shape[1:])
    expected = first(torch.cat([x, maps], dim=1))
    assert torch.allclose(label_maps_conv(first, x, labels, CLASSES), expected, atol=1e-6)


@pytest.mark.parametrize("shape", [(1, 32, 32), (3, 96, 96)])
def test_dcgan_generator_class_code_computed_once_per_class_equals_the_concatenated_code(shape):
    from gankit.builtins.conditioning import run_layers

    torch.manual_seed(0)
    generator, _ = dcgan(shape=shape, z_dim=8, width=4, num_classes=CLASSES)
    z, labels = torch.randn(6, 8), torch.tensor([0, 2, 1, 2, 0, 1])
    code = generator.class_code(labels).view(6, 8, 1, 1)
    expected = run_layers(generator.main, torch.cat([z.view(6, 8, 1, 1), code], dim=1), labels)
    assert torch.allclose(generator(z, labels), expected, atol=1e-6)


def test_builtin_networks_refuse_a_label_outside_their_classes_in_one_line():
    generator, discriminator = dcgan(shape=(1, 32, 32), z_dim=8, width=4, num_classes=CLASSES)
    images = torch.randn(2, 1, 32, 32)
    mlp_generator, mlp_discriminator = mlp(shape=(2,), z_dim=4, num_classes=CLASSES)
    for bad in (torch.tensor([0, CLASSES]), torch.tensor([-1, 0])):
        for call in (lambda: discriminator(images, bad), lambda: generator(torch.randn(2, 8), bad),
                     lambda: mlp_generator(torch.randn(2, 4), bad), lambda: mlp_discriminator(torch.randn(2, 2), bad)):
            with pytest.raises(GankitError, match=rf"class labels must be in \[0, {CLASSES}\)"):
                call()

"""Class labels through the engine (``--conditional``, docs/conditional.md): what a conditional run asks of the
data, the architecture and the loss, checked once before training, and how the step calls conditional networks.

An unconditional run calls ``generator(z)`` and ``discriminator(x)`` exactly as before; nothing here draws a
random number.
"""
from __future__ import annotations

import inspect
from typing import Any

import torch
from torch import nn

from gankit.errors import GankitError, quoted
from gankit.options import signature_parameters

# The builtins that serve labels, named when --conditional meets unlabelled data.
LABELLED_BUILTINS = "digits, mnist, fashion-mnist, cifar10, ring, grid, folder:classes=subfolders"
GRID_COLUMNS = 8  # samples per class in a training grid, column j from the same noise vector in every row
GRID_MAX_CLASSES = 32  # rows of a training grid at most


# --- checked once before training -----------------------------------------------------------------------


def data_classes(source: Any, name: str) -> tuple[int, tuple[str, ...]]:
    """``(num_classes, class_names)`` of a source a conditional run trains on, or a one-line error."""
    num_classes = getattr(source, "num_classes", None)
    if num_classes is None:
        raise GankitError(
            f"--conditional needs labelled data: data {name!r} has no classes (labelled builtins: {LABELLED_BUILTINS})"
        )
    if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 2:
        raise GankitError(f"data {name!r}: num_classes must be an integer of at least 2, got {quoted(num_classes)}")
    names = getattr(source, "class_names", None)
    if names is None:
        return num_classes, tuple(str(index) for index in range(num_classes))
    if isinstance(names, str) or not all(isinstance(n, str) for n in names) or len(names) != num_classes:
        raise GankitError(
            f"data {name!r}: class_names must be {num_classes} strings (one per class), got {quoted(names)}"
        )
    return num_classes, tuple(names)


def planned_classes(data_factory: Any) -> int | None:
    """The classes a data source declares before it is built (a class attribute), or None when only building tells."""
    num_classes = getattr(data_factory, "num_classes", None)
    if isinstance(num_classes, int) and not isinstance(num_classes, bool) and num_classes >= 2:
        return num_classes
    return None


def architecture_context(factory: Any, name: str, *, num_classes: int | None, outputs: tuple[str, ...],
                         loss_name: str = "") -> dict[str, Any]:
    """The conditional context the architecture factory gets (the hookspec's ``when=`` arguments); an
    architecture that cannot take it is refused in one line."""
    params, takes_kwargs = signature_parameters(factory)
    context: dict[str, Any] = {}
    if num_classes is not None:
        if not (takes_kwargs or "num_classes" in params):
            raise GankitError(
                f"--conditional: architecture {name!r} cannot condition on classes (its factory takes no "
                "num_classes argument); conditional builtins: dcgan, mlp"
            )
        context["num_classes"] = num_classes
    if outputs:
        if not (takes_kwargs or "discriminator_outputs" in params):
            raise GankitError(
                f"loss {loss_name!r} needs the discriminator outputs {', '.join(outputs)}, which architecture "
                f"{name!r} cannot give (its factory takes no discriminator_outputs argument)"
            )
        context["discriminator_outputs"] = outputs
    return context


def loss_outputs(loss: Any, name: str, *, needs_real_scores: bool) -> tuple[str, ...]:
    """The loss's ``discriminator_outputs``, with its losses' keyword signatures checked once, so that a loss
    that declares outputs but cannot take them fails here, not at the first step."""
    outputs = getattr(loss, "discriminator_outputs", ()) or ()
    if isinstance(outputs, str) or not all(isinstance(o, str) and o for o in outputs):
        raise GankitError(f"loss {name!r}: discriminator_outputs must be a tuple of names, got {quoted(outputs)}")
    outputs = tuple(outputs)
    if not outputs:
        return ()
    generator_keywords = {"fake_outputs": None, "labels": None, **({"real_scores": None} if needs_real_scores else {})}
    calls = (
        ("discriminator_loss", (None, None), {"real_outputs": None, "fake_outputs": None, "labels": None},
         "discriminator_loss(self, real_scores, fake_scores, *, real_outputs, fake_outputs, labels)"),
        ("generator_loss", (None,), generator_keywords,
         f"generator_loss(self, fake_scores, *, {', '.join(generator_keywords)})"),
    )
    for method, arguments, keywords, wanted in calls:
        try:
            inspect.signature(getattr(loss, method)).bind(*arguments, **keywords)
        except TypeError:
            raise GankitError(
                f"loss {name!r} declares discriminator_outputs {outputs} but its {method} does not take "
                f"{', '.join(keywords)}: define {wanted}"
            ) from None
        except ValueError:  # a builtin or C function without a signature: trust it
            pass
    return outputs


def check_conditional_outputs(scores: Any, name: str, outputs: tuple[str, ...], count: int) -> torch.Tensor:
    """The scores of a discriminator built with ``discriminator_outputs``, which must return ``(scores, {name:
    tensor})`` with every name asked for; raises a one-line error otherwise."""
    if not (isinstance(scores, tuple) and len(scores) == 2 and isinstance(scores[1], dict)):
        raise GankitError(
            f"architecture {name!r}: built with discriminator_outputs {outputs}, the discriminator must return "
            f"(scores, {{name: tensor}}), got {type(scores).__name__}"
        )
    scores, extras = scores
    missing = [output for output in outputs if output not in extras]
    if missing:
        raise GankitError(f"architecture {name!r}: the discriminator returned no {', '.join(missing)} output")
    for output in outputs:
        if not isinstance(extras[output], torch.Tensor) or extras[output].shape[:1] != (count,):
            raise GankitError(
                f"architecture {name!r}: the discriminator output {output!r} must be a tensor with one row per "
                f"example ({count}), got {getattr(extras[output], 'shape', type(extras[output]).__name__)}"
            )
    return scores


# --- in the training step ---------------------------------------------------------------------------


def generate(generator: nn.Module, noise: torch.Tensor, labels: torch.Tensor | None) -> torch.Tensor:
    return generator(noise) if labels is None else generator(noise, labels)


def discriminate(discriminator: nn.Module, examples: torch.Tensor, labels: torch.Tensor | None,
                 *, outputs: bool = False) -> tuple[torch.Tensor, dict | None]:
    """``(scores, extra outputs)`` of the discriminator; the extras are None unless the loss asked for some."""
    result = discriminator(examples) if labels is None else discriminator(examples, labels)
    return (result[0], result[1]) if outputs else (result, None)


class ScoresOnly(nn.Module):
    """The discriminator as regularizers know it: ``module(x)`` returns the raw scores of ``D(x, labels)`` for
    the step's labels, extra outputs dropped (a gradient penalty differentiates the scores alone)."""

    def __init__(self, discriminator: nn.Module, labels: torch.Tensor | None, *, outputs: bool) -> None:
        super().__init__()
        self.discriminator = discriminator
        self.labels = labels
        self.outputs = outputs

    def forward(self, examples: torch.Tensor) -> torch.Tensor:
        return discriminate(self.discriminator, examples, self.labels, outputs=self.outputs)[0]


def grid_inputs(fixed_noise: torch.Tensor, num_classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise and labels of a conditional sample grid: one row per class (at most ``GRID_MAX_CLASSES``) of
    ``GRID_COLUMNS`` samples, column j from ``fixed_noise[j]`` in every row, so rows differ by class alone."""
    rows = min(num_classes, GRID_MAX_CLASSES)
    noise = fixed_noise[:GRID_COLUMNS].repeat(rows, 1)
    labels = torch.arange(rows, device=fixed_noise.device).repeat_interleave(GRID_COLUMNS)
    return noise, labels

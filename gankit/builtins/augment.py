"""Builtin augmentations: DiffAugment (Zhao et al. 2020) and an adaptive variant after ADA (Karras et al. 2020).

Each op is differentiable with respect to the images, draws from the generator gankit passes and transforms
every image of a batch; ``ada`` keeps each op's result only for the images its probability picks.
Papers, defaults and examples: docs/augmentation.md.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

import gankit
from gankit.components import Augmentation
from gankit.errors import GankitError

# DiffAugment's constants: shifts up to 1/8 of the size, a cut-out square of half the size.
TRANSLATION_RATIO = 0.125
CUTOUT_RATIO = 0.5


def _draw(n: int, x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """One uniform [0, 1) number per image, shaped to broadcast over ``(N, C, H, W)``."""
    return torch.rand(n, 1, 1, 1, generator=generator, device=x.device, dtype=torch.float32)


def color(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Random brightness (+[-0.5, 0.5]), saturation (x[0, 2]) and contrast (x[0.5, 1.5]), as DiffAugment."""
    n = x.shape[0]
    x = x + (_draw(n, x, generator) - 0.5)
    channel_mean = x.mean(dim=1, keepdim=True)
    x = (x - channel_mean) * (_draw(n, x, generator) * 2) + channel_mean
    image_mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - image_mean) * (_draw(n, x, generator) + 0.5) + image_mean


def translation(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Shift each image by whole pixels, up to 1/8 of its size each way, filling with zeros (DiffAugment)."""
    n, _, height, width = x.shape
    shifts = []
    for size in (height, width):
        limit = int(size * TRANSLATION_RATIO + 0.5)
        shifts.append(torch.randint(-limit, limit + 1, (n, 1, 1), generator=generator, device=x.device))
    batch, rows, cols = torch.meshgrid(
        torch.arange(n, device=x.device), torch.arange(height, device=x.device), torch.arange(width, device=x.device),
        indexing="ij",
    )
    # The padded border is zero: a source pixel shifted in from outside the image reads it.
    rows = (rows + shifts[0] + 1).clamp(0, height + 1)
    cols = (cols + shifts[1] + 1).clamp(0, width + 1)
    padded = F.pad(x, [1, 1, 1, 1])
    return _same_layout(padded.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2), x)


def cutout(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Zero a square of half the image's size at a random centre (it may reach over the edge), as DiffAugment."""
    n, _, height, width = x.shape
    inside = []
    for size, view in ((height, (1, height, 1)), (width, (1, 1, width))):
        cut = int(size * CUTOUT_RATIO + 0.5)
        start = torch.randint(0, size + (1 - cut % 2), (n, 1, 1), generator=generator, device=x.device) - cut // 2
        position = torch.arange(size, device=x.device).view(view)
        inside.append((position >= start) & (position < start + cut))
    return x * (~(inside[0] & inside[1])).unsqueeze(1).to(x.dtype)


def flip(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """Mirror each image left-right with probability 1/2."""
    flipped = torch.rand(x.shape[0], generator=generator, device=x.device) < 0.5
    return torch.where(flipped.view(-1, 1, 1, 1), x.flip(3), x)


OPS = {"color": color, "translation": translation, "cutout": cutout, "flip": flip}


def _same_layout(result: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    channels_last = like.is_contiguous(memory_format=torch.channels_last) and not like.is_contiguous()
    return result.contiguous(memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def parse_policy(name: str, policy: str) -> list[str]:
    """The op names of ``policy`` (``color,translation,cutout``), in order; one-line errors otherwise."""
    ops = [op.strip().lower() for op in policy.split(",") if op.strip()]
    if not ops:
        raise GankitError(f"augmentation {name!r}: policy is empty; choose from {', '.join(OPS)}")
    for op in ops:
        if op not in OPS:
            raise GankitError(f"augmentation {name!r}: unknown policy {op!r}; choose from {', '.join(OPS)}")
    if len(set(ops)) != len(ops):
        raise GankitError(f"augmentation {name!r}: policy {policy!r} names an op twice")
    return ops


def check_images(name: str, shape: tuple[int, ...]) -> None:
    if len(shape) != 3:
        raise GankitError(
            f"augmentation {name!r} transforms images (channels, height, width); the data has shape {tuple(shape)}"
        )


class DiffAugment(Augmentation):
    """DiffAugment (Zhao et al. 2020): every op of the policy, on every image, real and fake alike."""

    def __init__(self, *, shape, generator, policy: str = "color,translation,cutout") -> None:
        check_images("diffaug", shape)
        self.ops = [OPS[op] for op in parse_policy("diffaug", policy)]
        self.generator = generator

    def __call__(self, x):
        for op in self.ops:
            x = op(x, self.generator)
        return x


class AdaptiveAugment(Augmentation):
    """Adaptive augmentation after ADA (Karras et al. 2020): each op of the policy applies to each image with
    probability ``p``. Every ``interval`` discriminator updates, ``p`` moves up when the overfitting heuristic
    ``r_t = E[sign(D(real))]`` is above ``target`` and down when it is below, by ``images / (kimg * 1000)``
    (``images``: the real images observed since the last change), so it can cross [0, 1] in ``kimg`` thousand
    images. Without host syncs: ``p`` lives on the device."""

    def __init__(self, *, shape, generator, policy: str = "flip,translation,color", target: float = 0.6,
                 interval: int = 4, kimg: float = 100.0, p: float = 0.0) -> None:
        check_images("ada", shape)
        if not 0 < target < 1:
            raise GankitError(f"augmentation 'ada': target must be between 0 and 1, got {target}")
        if interval < 1:
            raise GankitError(f"augmentation 'ada': interval must be at least 1, got {interval}")
        if not kimg > 0:
            raise GankitError(f"augmentation 'ada': kimg must be positive, got {kimg}")
        if not 0 <= p <= 1:
            raise GankitError(f"augmentation 'ada': p must be between 0 and 1, got {p}")
        self.ops = [OPS[op] for op in parse_policy("ada", policy)]
        self.generator, self.target, self.interval, self.kimg = generator, target, interval, kimg
        device = generator.device
        self.p = torch.tensor(float(p), device=device)
        self.r_t = torch.tensor(0.0, device=device)  # the heuristic at the last adjustment
        self.sign_sum = torch.tensor(0.0, device=device)
        self.images = 0  # real images observed since the last adjustment
        self.updates = 0  # observations since the last adjustment

    def __call__(self, x):
        for op in self.ops:
            # Both branches are computed: the images left alone stay exactly as they were, without a host sync.
            picked = torch.rand(x.shape[0], generator=self.generator, device=x.device) < self.p
            x = torch.where(picked.view(-1, 1, 1, 1), op(x, self.generator), x)
        return x

    def observe(self, real_scores):
        self.sign_sum = self.sign_sum + torch.sign(real_scores).sum()
        self.images += real_scores.shape[0]
        self.updates += 1
        if self.updates < self.interval:
            return
        self.r_t = self.sign_sum / self.images
        step = self.images / (self.kimg * 1000)
        self.p = (self.p + torch.sign(self.r_t - self.target) * step).clamp(0.0, 1.0)
        self.sign_sum, self.images, self.updates = torch.zeros_like(self.sign_sum), 0, 0

    def statistics(self):
        return {"p": self.p, "rt": self.r_t}

    def state_dict(self):
        return {
            "p": self.p.clone(), "r_t": self.r_t.clone(), "sign_sum": self.sign_sum.clone(),
            "images": self.images, "updates": self.updates,
        }

    def load_state_dict(self, state):
        device = self.p.device
        self.p, self.r_t = state["p"].to(device), state["r_t"].to(device)
        self.sign_sum = state["sign_sum"].to(device)
        self.images, self.updates = int(state["images"]), int(state["updates"])


@gankit.hookimpl
def gankit_register_augmentations(register):
    register("diffaug", DiffAugment, aliases=("diffaugment",),
             description="DiffAugment (Zhao et al. 2020): color, translation, cutout on every real and fake batch")
    register("ada", AdaptiveAugment, aliases=("adaptive",),
             description="Adaptive augmentation (Karras et al. 2020): probability p steered by r_t = E[sign(D(real))]")

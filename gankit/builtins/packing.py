"""PacGAN packing (Lin et al. 2018): the discriminator judges ``pack`` samples at once, which penalises
mode collapse. A helper for architectures; ``mlp`` exposes it as its ``pack`` option."""
from __future__ import annotations

import torch
from torch import nn


class PackedDiscriminator(nn.Module):
    """Wraps a discriminator built for ``pack`` samples concatenated along the first data axis.

    ``forward(x)`` takes ``(N, *shape)`` and returns ``(N,)``: each sample gets the score of its pack, so any
    loss that averages scores averages over packs. When ``N`` is not a multiple of ``pack``, the batch is
    completed by repeating its first samples (only small dry-run batches need this).
    """

    def __init__(self, inner: nn.Module, pack: int) -> None:
        super().__init__()
        self.inner = inner
        self.pack = pack

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        count = x.shape[0]
        packs = -(-count // self.pack)
        if packs * self.pack != count:
            x = x[torch.arange(packs * self.pack, device=x.device) % count]
        # (packs*m, C, ...) -> (packs, m*C, ...): the PacGAN concatenation along channels / features.
        grouped = x.reshape(packs, self.pack * x.shape[1], *x.shape[2:])
        scores = self.inner(grouped).reshape(packs)
        return scores.repeat_interleave(self.pack)[:count]

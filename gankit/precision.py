"""Speed settings of the training step: autocast precision, fp16 loss scaling, channels_last memory layout,
torch.compile and cuDNN autotuning. None of them changes the loss or the update rule, only how it runs."""
from __future__ import annotations

import contextlib

import torch
from torch import nn

from gankit.config import PRECISIONS
from gankit.errors import GankitError

AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


def check_precision(precision: str, device: torch.device) -> None:
    """Refuse, in one line, a precision the device cannot train in."""
    if precision not in PRECISIONS:
        raise GankitError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision == "fp16" and device.type != "cuda":
        # fp16 training needs dynamic loss scaling, and torch's GradScaler is meant for CUDA.
        raise GankitError(
            f"--precision fp16 needs a CUDA device (it trains with a GradScaler), not {device.type}; "
            "use --precision bf16 or fp32"
        )
    if precision == "bf16" and device.type == "cuda" and not torch.cuda.is_bf16_supported():
        raise GankitError("--precision bf16 needs a GPU with bfloat16 support (Ampere or newer); use fp16 or fp32")


def autocast(precision: str, device: torch.device):
    """The context for forward passes and losses: autocast to bf16/fp16, or nothing for fp32."""
    if precision == "fp32":
        return contextlib.nullcontext()
    return torch.autocast(device_type=device.type, dtype=AUTOCAST_DTYPES[precision])


def make_grad_scaler(precision: str, device: torch.device):
    """A GradScaler for fp16 (small gradients would underflow to zero), ``None`` otherwise."""
    if precision != "fp16":
        return None
    return torch.amp.GradScaler(device.type)


def backward_and_step(loss: torch.Tensor, optimizer: torch.optim.Optimizer, scaler, max_grad_norm: float | None = None) -> None:
    """``loss.backward(); optimizer.step()``, through the loss scaler when there is one.

    With fp16 a step whose gradients overflowed is skipped and the scale lowered, as GradScaler does.
    ``max_grad_norm`` clips the norm of the optimizer's gradients first (of the unscaled ones under fp16).
    """
    if scaler is None:
        loss.backward()
        clip_gradients(optimizer, max_grad_norm)
        optimizer.step()
        return
    scaler.scale(loss).backward()
    if max_grad_norm is not None:
        scaler.unscale_(optimizer)  # the norm is of the true gradients, not of the scaled ones
        clip_gradients(optimizer, max_grad_norm)
    scaler.step(optimizer)
    scaler.update()


def clip_gradients(optimizer: torch.optim.Optimizer, max_norm: float | None) -> None:
    """Scale the gradients of an optimizer's parameters down to a total norm of ``max_norm`` (None: leave them)."""
    if max_norm is None:
        return
    parameters = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
    torch.nn.utils.clip_grad_norm_(parameters, max_norm)


def to_channels_last(module: nn.Module) -> nn.Module:
    """Store a convolutional network's 4-D weights as NHWC, the layout fast conv kernels prefer."""
    return module.to(memory_format=torch.channels_last)


def batch_to_channels_last(batch: torch.Tensor) -> torch.Tensor:
    """An image batch (N, C, H, W) in NHWC memory layout; other shapes unchanged."""
    if batch.dim() != 4:
        return batch
    return batch.contiguous(memory_format=torch.channels_last)


def compile_module(module: nn.Module) -> nn.Module:
    """``torch.compile`` of a module; it shares the module's parameters, so optimizers and checkpoints
    still see the original module."""
    return torch.compile(module)


def configure_backends(device: torch.device) -> None:
    """cuDNN autotuning on CUDA: the shapes of a GAN step never change, so the search pays off at once."""
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True

"""Training batches in a reproducible order: a seeded permutation per epoch, resumable at any batch."""
from __future__ import annotations

import torch

from gankit.components import DataSource
from gankit.errors import GankitError


def to_unit_range(batch: torch.Tensor) -> torch.Tensor:
    """uint8 pixels in [0, 255] to float in [-1, 1]; float data is taken to be in range already."""
    if batch.dtype == torch.uint8:
        return batch.float().div_(127.5).sub_(1.0)
    return batch.float()


def _held_out_note(source: DataSource) -> str:
    """Says how many examples the source holds out of training, for the error of a too small training set."""
    held_out = source.holdout_tensor() if callable(getattr(source, "holdout_tensor", None)) else None
    return f", besides {len(held_out)} held out for evaluation" if held_out is not None and len(held_out) else ""


class BatchStream:
    """Yields batches of ``batch_size`` examples on ``device``, dropping each epoch's incomplete last batch.

    Sources that provide ``tensor()`` are indexed directly (one gather per batch, no per-item Python);
    others are read item by item through a DataLoader. ``state_dict()`` records the epoch and position,
    so a resumed run sees exactly the batches the uninterrupted run would have.

    With ``world_size`` processes (distributed training) a global batch is ``world_size * batch_size``
    consecutive indices of the permutation and process ``rank`` takes the ``rank``-th slice of it, so the
    ranks read disjoint examples and together exactly the batch one process would read with the global size.

    With ``num_classes`` (a conditional run) :meth:`next_with_labels` also gives each batch's class labels,
    taken at the same indices (no extra random draw): from ``source.labels()`` on the fast path, from
    ``(example, label)`` items otherwise. Without it no label is read; item labels are dropped.
    """

    def __init__(
        self, source: DataSource, batch_size: int, *, seed: int, device: torch.device, num_workers: int = 0,
        rank: int = 0, world_size: int = 1, num_classes: int | None = None,
    ):
        self.source = source
        self.batch_size = batch_size
        self.rank = rank
        self.world_size = world_size
        self.global_batch_size = batch_size * world_size
        self.seed = seed
        self.device = device
        self._num_workers = num_workers
        self.data = source.tensor()
        self.size = int(self.data.shape[0]) if self.data is not None else len(source)
        if self.size < self.global_batch_size:
            raise GankitError(
                f"the data has {self.size} examples, fewer than the batch size {self.global_batch_size}"
                + (f" ({world_size} processes x {batch_size})" if world_size > 1 else "")
                + _held_out_note(source)
            )
        self._num_classes = num_classes
        self._labels = None
        if num_classes is not None and self.data is not None:
            self._labels = checked_labels(source.labels(), num_classes, count=self.size)
        if self.data is not None and device.type == "cuda":
            # Decoded data that fits goes to the GPU once; batches are then gathered there.
            free, _ = torch.cuda.mem_get_info(device)
            if self.data.numel() * self.data.element_size() < free // 4:
                self.data = self.data.to(device)
                self._labels = None if self._labels is None else self._labels.to(device)
        self.epoch = 0
        self.position = 0
        self._order = self._permutation(0)
        self._loader = None
        self.flip = bool(getattr(source, "horizontal_flip", False))
        self._flips: tuple[int, torch.Tensor] | None = None

    def _permutation(self, epoch: int) -> torch.Tensor:
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch)
        return torch.randperm(self.size, generator=generator)

    def __len__(self) -> int:
        """Batches per epoch."""
        return self.size // self.global_batch_size

    def next(self) -> torch.Tensor:
        return self._draw()[0]

    def next_with_labels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The next batch and its class labels (int64 ``(batch_size,)`` on the device); needs ``num_classes``."""
        if self._num_classes is None:
            raise RuntimeError("next_with_labels() needs a BatchStream built with num_classes")
        return self._draw()

    def _draw(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.position + self.global_batch_size > self.size:
            self.epoch += 1
            self.position = 0
            self._order = self._permutation(self.epoch)
            self._loader = None
        start = self.position + self.rank * self.batch_size
        indices = self._order[start : start + self.batch_size]
        self.position += self.global_batch_size
        labels = None
        if self.data is not None:
            # index_select copies whole rows: on CPU ~25x faster than data[indices], which copies byte by byte.
            batch = self.data.index_select(0, indices.to(self.data.device))
            if self._labels is not None:
                labels = self._labels.index_select(0, indices.to(self._labels.device))
        else:
            batch, labels = self._next_items()
        batch = batch.to(self.device, non_blocking=True)
        if self.flip:
            batch = self._mirror(batch, indices)
        if labels is not None:
            labels = labels.to(self.device, non_blocking=True)
        return to_unit_range(batch), labels

    def _next_items(self) -> tuple[torch.Tensor, torch.Tensor | None]:
        """The next batch of the item path; a labelled source's items are ``(example, label)`` pairs."""
        items = next(self._item_loader())
        paired = isinstance(items, (list, tuple))
        if self._num_classes is None:
            return (items[0] if paired else items), None
        if not paired or len(items) != 2:
            raise GankitError(
                f"the data declares num_classes={self._num_classes} but its items are not (example, label) pairs"
            )
        return items[0], checked_labels(items[1], self._num_classes)

    def _mirror(self, batch: torch.Tensor, indices: torch.Tensor) -> torch.Tensor:
        """Mirror examples left-right, each with probability 1/2 per epoch, drawn from the seed (so resumable)."""
        if self._flips is None or self._flips[0] != self.epoch:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + self.epoch + 2**40)
            self._flips = (self.epoch, torch.rand(self.size, generator=generator) < 0.5)
        chosen = self._flips[1][indices].to(batch.device).view(-1, *([1] * (batch.dim() - 1)))
        return torch.where(chosen, batch.flip(-1), batch)

    def _item_loader(self):
        if self._loader is None:
            remaining = self._order[self.position - self.global_batch_size :].split(self.global_batch_size)
            rank_slices = [b[self.rank * self.batch_size : (self.rank + 1) * self.batch_size] for b in remaining]
            batches = [b.tolist() for b, whole in zip(rank_slices, remaining) if len(whole) == self.global_batch_size]
            self._loader = iter(
                torch.utils.data.DataLoader(
                    self.source,
                    batch_sampler=batches,
                    num_workers=self._num_workers,
                    pin_memory=self.device.type == "cuda",
                )
            )
        return self._loader

    def state_dict(self) -> dict:
        return {"epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: dict) -> None:
        self.epoch = int(state["epoch"])
        self.position = int(state["position"])
        self._order = self._permutation(self.epoch)
        self._loader = None


def checked_labels(labels, num_classes: int, *, count: int | None = None) -> torch.Tensor:
    """Class labels as the engine needs them, an int64 tensor ``(N,)`` in ``[0, num_classes)``, or a one-line
    error: a wrong label would otherwise fail deep in an embedding (on CUDA, as a device-side assert)."""
    if labels is None:
        raise GankitError(f"the data declares num_classes={num_classes} but its labels() returned None")
    if not isinstance(labels, torch.Tensor):
        raise GankitError(f"the data's labels must be a tensor, got {type(labels).__name__}")
    if labels.dtype.is_floating_point or labels.dtype.is_complex or labels.dtype == torch.bool:
        raise GankitError(f"the data's labels must be integers, got {labels.dtype}")
    if labels.dim() != 1 or (count is not None and labels.shape[0] != count):
        expected = f"({count},)" if count is not None else "(N,)"
        raise GankitError(f"the data's labels must have shape {expected}, one per example, got {tuple(labels.shape)}")
    if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        raise GankitError(
            f"the data's labels must be in [0, {num_classes}) (num_classes={num_classes}), "
            f"got values from {int(labels.min())} to {int(labels.max())}"
        )
    return labels.to(torch.int64)

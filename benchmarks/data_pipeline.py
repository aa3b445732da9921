"""Images/s of two data pipelines on a folder of images: decoding with PIL through a DataLoader every epoch, and
batches drawn by index from gankit's decode-once image cache (what ``gankit run`` does).

    python3 benchmarks/data_pipeline.py                       # ../shared/data/anime-faces, 96 px, all cores
    python3 benchmarks/data_pipeline.py --data-root DIR --image-size 64 --workers 2 --device cuda

The cache is built in a temporary folder (the first-use cost is reported too), never in the user's cache.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout without installing

from gankit.batches import BatchStream  # noqa: E402
from gankit.builtins.folder import FolderImages, scan_images  # noqa: E402

DEFAULT_ROOT = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"


class DecodingDataset(torch.utils.data.Dataset):
    """The usual pipeline: open, convert and resize each image with PIL, every time it is read."""

    def __init__(self, paths, size: int) -> None:
        self.paths = paths
        self.size = size

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as image:
            image = image.convert("RGB")
            if image.size != (self.size, self.size):
                image = image.resize((self.size, self.size), Image.Resampling.BICUBIC)
            array = np.asarray(image, dtype=np.uint8).transpose(2, 0, 1).copy()
        return torch.from_numpy(array).float() / 127.5 - 1.0


def measure(next_batch, batch_size: int, seconds: float, device: torch.device) -> float:
    """Images per second over ``seconds``, after one warm-up batch (worker start-up is not counted)."""
    next_batch()
    synchronize(device)
    count = 0
    start = time.perf_counter()
    while time.perf_counter() - start < seconds:
        batch = next_batch()
        count += batch.shape[0]
    synchronize(device)
    return count / (time.perf_counter() - start)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def decoding_loader(paths, size: int, batch_size: int, workers: int, device: torch.device):
    loader = torch.utils.data.DataLoader(
        DecodingDataset(paths, size), batch_size=batch_size, shuffle=True, drop_last=True, num_workers=workers,
        persistent_workers=workers > 0, pin_memory=device.type == "cuda",
    )
    iterator = iter(loader)

    def next_batch():
        nonlocal iterator
        try:
            batch = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            batch = next(iterator)
        return batch.to(device, non_blocking=True)

    return next_batch


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data-root", type=Path, default=DEFAULT_ROOT)
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="DataLoader worker processes")
    parser.add_argument("--threads", type=int, default=1, help="torch threads for the cached path (<= workers)")
    parser.add_argument("--seconds", type=float, default=10.0, help="duration of each throughput measurement")
    parser.add_argument("--repeats", type=int, default=2, help="alternate the two measurements this many times")
    parser.add_argument("--device", default="cpu", help="where batches go: cpu or cuda")
    parser.add_argument("--json", action="store_true", help="print one JSON object instead of a table")
    args = parser.parse_args()
    if not args.data_root.is_dir():
        parser.error(f"{args.data_root} is not a folder of images")
    device = torch.device(args.device)
    # The cached path never uses more cores than the decoding workers do.
    torch.set_num_threads(max(1, min(args.threads, args.workers)))
    files, _ = scan_images(args.data_root)
    paths = [file.path for file in files]

    with tempfile.TemporaryDirectory(prefix="gankit-bench-cache-") as cache_dir:
        start = time.perf_counter()
        source = FolderImages(root=str(args.data_root), image_size=args.image_size, cache_dir=cache_dir)
        build_seconds = time.perf_counter() - start
        start = time.perf_counter()
        source = FolderImages(root=str(args.data_root), image_size=args.image_size, cache_dir=cache_dir)
        reuse_seconds = time.perf_counter() - start
        assert not source.built_cache
        stream = BatchStream(source, args.batch_size, seed=0, device=device)
        next_decoded = decoding_loader(paths, args.image_size, args.batch_size, args.workers, device)
        # Alternating the two measurements spreads the effect of other load on the machine over both.
        decoded_runs, cached_runs = [], []
        for _ in range(args.repeats):
            decoded_runs.append(measure(next_decoded, args.batch_size, args.seconds, device))
            cached_runs.append(measure(stream.next, args.batch_size, args.seconds, device))
        decoded, cached = float(np.mean(decoded_runs)), float(np.mean(cached_runs))

    results = {
        "images": len(files),
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "cached_path_threads": torch.get_num_threads(),
        "seconds_x_repeats": f"{args.seconds:g} x {args.repeats}",
        "device": str(device),
        "cpu_count": os.cpu_count(),
        "pil_dataloader_images_per_s": round(decoded, 1),
        "cache_build_seconds": round(build_seconds, 2),
        "cache_build_images_per_s": round(len(files) / build_seconds, 1),
        "cache_reuse_seconds": round(reuse_seconds, 3),
        "cached_batches_images_per_s": round(cached, 1),
        "speedup": round(cached / decoded, 1),
    }
    if args.json:
        print(json.dumps(results))
        return
    width = max(map(len, results))
    for key, value in results.items():
        print(f"{key:<{width}}  {value}")


if __name__ == "__main__":
    main()

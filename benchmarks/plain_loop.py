"""Times gankit's training step against the article's plain DCGAN loop, in one process, interleaved.

The plain loop is the article's ``main.py`` step, line for line: the generator runs twice per step, the
discriminator step backpropagates into the generator too (``fake_data`` is not detached), the generator
step computes discriminator weight gradients it throws away, BCELoss on sigmoid outputs, and two ``.item()``
calls per step for the progress bar. The networks are the same modules gankit trains (``dcgan``; the
article's sigmoid is applied to gankit's raw scores), at the same batch, on the same in-memory batches:
data loading is not timed for either loop.

    python benchmarks/plain_loop.py                      # DCGAN 96x96, batch 64, CPU, 5 rounds
    python benchmarks/plain_loop.py --image-size 64 --batch-size 512 --device cuda --precision bf16 --compile

Rounds alternate the order of the loops (ABC, CBA, ...) so that load from other processes on a shared
machine falls on all of them alike; the report gives per-round medians and the median of the per-round
ratios. ``--with-detach`` adds the article's loop with ``fake_data.detach()`` in the discriminator step
(the one waste the article's loop has beyond those the issue counts), for a stricter comparison.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

import gankit
from gankit.bench import InMemoryImages, peak_memory_mib, synchronize
from gankit.builtins.dcgan import dcgan
from gankit.config import RunConfig

DEFAULT_FACES = Path("/work/shared/data/anime-faces")


# -- the article's loop -------------------------------------------------------------------------------


class ArticleDiscriminator(nn.Module):
    """gankit's DCGAN discriminator with the article's final ``nn.Sigmoid()`` (it feeds ``nn.BCELoss``)."""

    def __init__(self, discriminator: nn.Module) -> None:
        super().__init__()
        self.discriminator = discriminator

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.discriminator(x))


class ArticleLoop:
    """The article's ``main.py`` training step (section 4.4), with its networks, loss and optimizers."""

    def __init__(self, images: torch.Tensor, *, z_dim: int, batch_size: int, device: torch.device, detach: bool = False):
        shape = tuple(images.shape[1:])
        torch.manual_seed(0)
        self.generate, discriminator = dcgan(shape=shape, z_dim=z_dim)
        self.generate.to(device)
        self.discriminator = ArticleDiscriminator(discriminator).to(device)
        self.criterion = nn.BCELoss().to(device)
        self.optimizer_G = torch.optim.Adam(self.generate.parameters(), lr=1e-4, betas=(0.5, 0.999))
        self.optimizer_D = torch.optim.Adam(self.discriminator.parameters(), lr=1e-4, betas=(0.5, 0.999))
        self.images, self.batch_size, self.z_dim, self.device, self.detach = images, batch_size, z_dim, device, detach
        self.order = torch.Generator().manual_seed(0)

    def batch(self) -> torch.Tensor:
        # The same in-memory batches gankit gets: a random batch of decoded uint8 images scaled to [-1, 1].
        indices = torch.randint(0, self.images.shape[0], (self.batch_size,), generator=self.order)
        return self.images[indices.to(self.images.device)].float() / 127.5 - 1.0

    def step(self, inp: torch.Tensor) -> None:
        device, generate, discriminator, criterion = self.device, self.generate, self.discriminator, self.criterion
        optimizer_D, optimizer_G = self.optimizer_D, self.optimizer_G
        # From here on the article's loop body, verbatim but for the optional detach.
        real_data = inp.float().to(device)
        real_label = torch.ones(inp.size()[0]).to(device)
        noise = torch.randn(inp.size()[0], self.z_dim, 1, 1).to(device)
        fake_data = generate(noise)
        if self.detach:
            fake_data = fake_data.detach()
        fake_label = torch.zeros(fake_data.size()[0]).to(device)
        optimizer_D.zero_grad()
        real_output = discriminator(real_data)
        real_loss = criterion(real_output.squeeze(), real_label)
        real_loss.backward()
        fake_output = discriminator(fake_data)
        fake_loss = criterion(fake_output.squeeze(), fake_label)
        fake_loss.backward()
        loss_D = real_loss + fake_loss
        optimizer_D.step()

        # train generate
        optimizer_G.zero_grad()
        fake_data = generate(noise)
        fake_label = torch.ones(fake_data.size()[0]).to(device)
        fake_output = discriminator(fake_data)
        loss_G = criterion(fake_output.squeeze(), fake_label)
        loss_G.backward()
        optimizer_G.step()

        # The article's progress bar: "D:{}, G:{}".format(loss_D.item(), loss_G.item())
        loss_D.item(), loss_G.item()

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.step(self.batch())


# -- gankit's loop ------------------------------------------------------------------------------------


class _ImagesPlugin:
    """Hands gankit the same decoded images the plain loop uses."""

    def __init__(self, images: torch.Tensor) -> None:
        self.images = images

    @gankit.hookimpl
    def gankit_register_data_sources(self, register):
        register("plain-loop-images", lambda: InMemoryImages(self.images), description="benchmark images")


class GankitLoop:
    def __init__(self, images: torch.Tensor, *, z_dim: int, batch_size: int, device: torch.device, precision: str,
                 compile: bool, channels_last: bool) -> None:
        from gankit.engine import Trainer
        from gankit.plugins import load_plugins
        from gankit.registry import Registry

        config = RunConfig.from_sources(overrides={
            "arch": "dcgan", "loss": "bce", "data": "plain-loop-images", "batch_size": batch_size, "z_dim": z_dim,
            "lr": 1e-4, "betas": [0.5, 0.999], "device": str(device), "precision": precision, "compile": compile,
            "channels_last": channels_last,
        })
        self.trainer = Trainer(config, registry=Registry(load_plugins([("plain-loop", _ImagesPlugin(images))])))
        self.next_step = 0

    def run(self, steps: int) -> None:
        for _ in range(steps):
            self.trainer.train_step(self.next_step)
            self.next_step += 1


# -- measuring ----------------------------------------------------------------------------------------


def load_images(size: int, count: int, root: Path | None) -> tuple[torch.Tensor, str]:
    """Decoded anime faces when the folder is there (resized to ``size``), random images otherwise."""
    if root is not None and root.is_dir():
        from PIL import Image

        files = sorted(p for p in root.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))[:count]
        if files:
            arrays = []
            for path in files:
                with Image.open(path) as image:
                    image = image.convert("RGB")
                    if image.size != (size, size):
                        image = image.resize((size, size), Image.Resampling.BICUBIC)
                    arrays.append(np.asarray(image, dtype=np.uint8).transpose(2, 0, 1))
            return torch.from_numpy(np.stack(arrays)), f"{len(files)} images from {root}"
    generator = torch.Generator().manual_seed(0)
    return torch.randint(0, 256, (count, 3, size, size), dtype=torch.uint8, generator=generator), "random images"


def step_flops(run_one_step) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as counter:
        run_one_step()
    return int(counter.get_total_flops())


def matmul_gflop_per_s(device: torch.device, size: int = 2048, repeats: int = 5) -> float:
    """A large fp32 matmul's GFLOP/s on the same device: what the hardware gives a well-shaped kernel."""
    a = torch.randn(size, size, device=device)
    b = torch.randn(size, size, device=device)
    a @ b
    synchronize(device)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        synchronize(device)
        times.append(time.perf_counter() - start)
    return 2 * size**3 / statistics.median(times) / 1e9


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--image-size", type=int, default=96)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--z-dim", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=5, help="timed rounds per loop (interleaved)")
    parser.add_argument("--steps", type=int, default=2, help="steps per loop per round")
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default="fp32", help="gankit loop only: fp32, bf16 or fp16")
    parser.add_argument("--compile", action="store_true", help="gankit loop only: torch.compile")
    parser.add_argument("--channels-last", action="store_true", help="gankit loop only")
    parser.add_argument("--with-detach", action="store_true", help="also time the article's loop with detach")
    parser.add_argument("--data-root", type=Path, default=DEFAULT_FACES)
    parser.add_argument("--images", type=int, default=512, help="images decoded into memory")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args(argv)

    device = torch.device(args.device)
    images, image_note = load_images(args.image_size, max(args.images, args.batch_size), args.data_root)
    if device.type == "cuda":
        images = images.to(device)
    common = dict(z_dim=args.z_dim, batch_size=args.batch_size, device=device)
    loops = {"article": ArticleLoop(images, **common)}
    if args.with_detach:
        loops["article+detach"] = ArticleLoop(images, **common, detach=True)
    loops["gankit"] = GankitLoop(images, **common, precision=args.precision, compile=args.compile,
                                 channels_last=args.channels_last)

    flops = {name: step_flops(lambda loop=loop: loop.run(1)) for name, loop in loops.items()}
    for loop in loops.values():
        loop.run(args.warmup)
    synchronize(device)

    per_round: dict[str, list[float]] = {name: [] for name in loops}
    names = list(loops)
    for round_index in range(args.rounds):
        for name in names if round_index % 2 == 0 else reversed(names):
            start = time.perf_counter()
            loops[name].run(args.steps)
            synchronize(device)
            per_round[name].append(args.steps * args.batch_size / (time.perf_counter() - start))

    baseline = per_round["article"]
    results = {}
    for name, rates in per_round.items():
        median = statistics.median(rates)
        results[name] = {
            "img_per_s_median": round(median, 2),
            "img_per_s_rounds": [round(r, 2) for r in rates],
            "gflop_per_step": round(flops[name] / 1e9, 2),
            "gflop_per_s": round(flops[name] / args.batch_size * median / 1e9, 1),
            "ratio_to_article_median_of_rounds": round(statistics.median(r / b for r, b in zip(rates, baseline)), 3),
        }
    memory, memory_kind = peak_memory_mib(device)
    report = {
        "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k != "json"},
        "images": image_note,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "matmul_fp32_gflop_per_s": round(matmul_gflop_per_s(device), 1),
        "peak_memory_mib": round(memory, 1),
        "peak_memory_kind": memory_kind + " (all loops in one process)",
        "loops": results,
    }
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print(f"DCGAN {args.image_size}x{args.image_size}, batch {args.batch_size}, {device}, torch {torch.__version__}, "
              f"{torch.get_num_threads()} threads; {image_note}")
        print(f"{'loop':<16}{'img/s (median)':>16}{'GFLOP/step':>12}{'GFLOP/s':>10}{'x article':>11}  rounds")
        for name, r in results.items():
            print(f"{name:<16}{r['img_per_s_median']:>16.2f}{r['gflop_per_step']:>12.2f}{r['gflop_per_s']:>10.1f}"
                  f"{r['ratio_to_article_median_of_rounds']:>11.3f}  {r['img_per_s_rounds']}")
        print(f"fp32 matmul {report['matmul_fp32_gflop_per_s']} GFLOP/s; peak memory {memory:.0f} MiB ({memory_kind})")
    return report


if __name__ == "__main__":
    main()

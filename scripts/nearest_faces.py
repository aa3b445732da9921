"""How near a generator's samples lie to its training images, against held-out images: a memorisation check.

For a checkpoint of a run whose data kept a holdout (``--data anime:holdout=N``, ``folder:holdout=N``), draws
``-n`` samples and measures, in pixel L2 distance on the [-1, 1] scale, each sample's nearest training image
and its nearest held-out image, with as many held-out images as training ones (at most the first half of the
holdout). The baseline is the other half of the holdout: real images that were never trained on lie about as near
to either set (ratio about 1, about half nearer a training image). A generator that memorises its data has a
ratio below 1 and most samples nearer a training image.

    python scripts/nearest_faces.py runs/small/checkpoints/step-0012000.safetensors -n 1000
"""
from __future__ import annotations

import argparse
import sys

import torch


def as_unit(images: torch.Tensor) -> torch.Tensor:
    """Images as the generator draws them, [-1, 1], one row each (uint8 sources are 0-255)."""
    images = images.float()
    return (images / 127.5 - 1 if images.dtype == torch.uint8 or images.max() > 1.5 else images).flatten(1)


def nearest(samples: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    return torch.cat([torch.cdist(chunk, reference).min(dim=1).values for chunk in samples.split(500)])


def summary(name: str, samples: torch.Tensor, train: torch.Tensor, held: torch.Tensor) -> str:
    to_train, to_held = nearest(samples, train), nearest(samples, held)
    return (f"{name}: nearest training image {to_train.mean():.2f}, nearest held-out image {to_held.mean():.2f}, "
            f"ratio {to_train.mean() / to_held.mean():.3f}, nearer a training image {(to_train < to_held).float().mean():.0%}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("checkpoint", nargs="+")
    parser.add_argument("-n", "--count", type=int, default=1000)
    parser.add_argument("--no-ema", action="store_true", help="the trained generator, not its EMA")
    args = parser.parse_args(argv)

    import gankit
    from gankit.registry import default_registry

    registry = default_registry()
    for checkpoint in args.checkpoint:
        _, metadata = gankit.load_generator(checkpoint)
        config = metadata["config"]
        data = registry.build("data", registry.recorded_spec("data", config["data"], metadata),
                              root=config.get("data_root"), image_size=config.get("image_size"),
                              seed=config.get("seed", 0)).value
        holdout = data.holdout_tensor() if hasattr(data, "holdout_tensor") else None
        if holdout is None or len(holdout) < 2:
            print(f"{checkpoint}: its data kept no holdout (add holdout=N to --data)", file=sys.stderr)
            return 2
        train, holdout = as_unit(data.tensor()), as_unit(holdout)
        half = min(len(train), len(holdout) // 2)
        held, baseline = holdout[:half], holdout[half:2 * half]
        print(summary(f"real held-out images ({len(baseline)})", baseline, train, held))
        samples = gankit.sample(checkpoint, args.count, ema=not args.no_ema).flatten(1).float()
        print(summary(f"{checkpoint} ({args.count} samples)", samples, train, held))
    return 0


if __name__ == "__main__":
    sys.exit(main())

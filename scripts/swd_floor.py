"""The real-vs-real floor of the ``swd`` metric: real images scored as if a generator had drawn them.

No generator reaches a lower SWD than other real images of the same kind; the number measured here is the floor
that docs/metrics.md gives beside trained runs. The real images stand in for the samples and go through the
metric exactly as ``gankit eval`` sends samples, so the reference is picked the same way (held-out images when
the data source has any, else its training data).

    # anime faces, the issue's split: train on 0-3999, compare 1,000 training faces with held-out 4000-4999
    python3 scripts/swd_floor.py --data anime:holdout=1000 --data-root ../shared/data/anime-faces --image-size 64
    # digits: 2,048 digits of another dataset seed against the training digits
    python3 scripts/swd_floor.py --data digits --samples digits:dataset_seed=1

``--samples SPEC`` is the data source whose images play the samples; without it the samples are the training
images of ``--data`` itself, which is only a floor when ``--data`` holds images out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import time

import torch

from gankit.builtins.metrics import SlicedWasserstein, drawn_images
from gankit.errors import GankitError
from gankit.registry import default_registry

# A different draw from the metric's own (which draws the reference with the metric's seed).
SAMPLE_DRAW_OFFSET = 1000


def build_data(spec: str, root: str | None, image_size: int | None):
    return default_registry().build("data", spec, root=root, image_size=image_size, seed=0, cache=True).value


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="the run's data source spec, e.g. anime:holdout=1000")
    parser.add_argument("--data-root", default=None)
    parser.add_argument("--image-size", type=int, default=None)
    parser.add_argument("--samples", default=None, help="data source spec whose images stand in for samples")
    parser.add_argument("-n", "--count", type=int, default=SlicedWasserstein.sample_count)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2], help="metric seeds (and sample draws)")
    arguments = parser.parse_args()

    torch.set_num_threads(1)  # a shared 2-core machine
    data = build_data(arguments.data, arguments.data_root, arguments.image_size)
    if arguments.samples is None and data.holdout_tensor() is None:
        raise GankitError("without --samples the data needs a holdout, or the samples would be the reference itself")
    stand_in = data if arguments.samples is None else build_data(arguments.samples, arguments.data_root,
                                                                  arguments.image_size)
    results = []
    for seed in arguments.seeds:
        started = time.perf_counter()
        samples = drawn_images(stand_in.tensor(), arguments.count, seed=seed + SAMPLE_DRAW_OFFSET)
        values = SlicedWasserstein(seed=seed).evaluate(samples, data=data)
        values["seconds"] = round(time.perf_counter() - started, 1)
        results.append(values)
        print(json.dumps({"seed": seed, **values}), flush=True)
    headline = [values["swd"] for values in results]
    spread = statistics.stdev(headline) if len(headline) > 1 else 0.0
    print(f"swd floor of {arguments.data}: mean {statistics.mean(headline):.3f}, std {spread:.3f} over "
          f"{len(headline)} seeds; {int(results[0]['reference_images'])} images per set, "
          f"held out: {bool(results[0]['held_out'])}")


if __name__ == "__main__":
    main()

"""The PacGAN 2-D benchmarks (ring: 8 Gaussians, grid: 25) with the recipe the data sources recommend.

Trains ``--seeds`` runs per data set through the engine exactly as ``gankit run --data ring --seed S`` does,
scores each final generator (the EMA one) with the ``modes`` metric on 2,500 samples, and prints the table in
PacGAN's form (Lin et al. 2018, Table 1) with the wall time of each run. ``--drs K ...`` also scores the same
generators through discriminator rejection sampling (``gankit sample --drs K``; docs/sampling.md), ``--refine N ...``
through latent refinement (``gankit sample --refine N``).

    python benchmarks/toy2d.py                      # 10 seeds, ring and grid
    python benchmarks/toy2d.py --data grid --seeds 3 --set steps=1000 --json results.json
    python benchmarks/toy2d.py --data grid --first-seed 10 --drs 1 2 3
    python benchmarks/toy2d.py --data grid --refine 10
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

# Published anchors: PacGAN Table 1, mean over 10 trials (modes, % high quality, KL to uniform).
PUBLISHED = {
    "ring": [("GAN (PacGAN Table 1)", 6.3, 98.2, 0.45), ("PacGAN4 (PacGAN Table 1)", 7.8, 95.9, 0.07)],
    "grid": [("GAN (PacGAN Table 1)", 17.3, 94.8, 0.70), ("PacGAN4 (PacGAN Table 1)", 24.8, 93.6, 0.04)],
}
GOALS = {"ring": (8.0, 97.0, 0.02), "grid": (25.0, 95.0, 0.03)}


def parse_settings(pairs: list[str]) -> dict:
    settings = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep:
            raise SystemExit(f"--set needs key=value, got {pair!r}")
        settings[key.strip()] = value.strip()
    return settings


def run_one(data: str, seed: int, settings: dict, threads: int, drs: list[float] = (), refine: list[int] = (),
            refine_rate: float | None = None) -> dict:
    import torch

    from gankit.config import RunConfig
    from gankit.engine import Trainer
    from gankit.evaluation import score
    from gankit.registry import default_registry

    torch.set_num_threads(threads)
    overrides = {"data": data, "seed": seed, "device": "cpu", **settings}
    with tempfile.TemporaryDirectory() as folder:
        started = time.perf_counter()
        trainer = Trainer(RunConfig.from_sources(overrides=overrides))
        trainer.train(Path(folder) / "run")
        wall = time.perf_counter() - started
    metric = default_registry().build("metric", "modes").value
    values = score(metric, trainer.sampling_generator, trainer.config.z_dim, data=trainer.source,
                   count=2500, seed=10_000 + seed, device=trainer.device)
    row = {"data": data, "seed": seed, "modes": values["modes"], "hq": 100 * values["hq"], "kl": values["kl"],
           "wall_s": wall, "config": {k: getattr(trainer.config, k) for k in (
               "arch", "loss", "reg", "optimizer", "lr", "betas", "batch_size", "steps", "d_steps", "z_dim", "ema")}}
    for sharpness in drs:  # the same generator's samples through discriminator rejection sampling
        from gankit.rejection import RejectionSampler

        networks = trainer.run.networks
        sampler = RejectionSampler(networks.sampling_generator, networks.discriminator.eval(),
                                   trainer.run.objective.loss.log_density_ratio, z_dim=trainer.config.z_dim,
                                   sharpness=sharpness, seed=10_000 + seed)
        kept = score(metric, sampler, trainer.config.z_dim, data=trainer.source, count=2500, seed=10_000 + seed,
                     device=trainer.device)
        row.setdefault("drs", {})[str(sharpness)] = {
            "modes": kept["modes"], "hq": 100 * kept["hq"], "kl": kept["kl"], "acceptance": sampler.acceptance,
            "wall_s": wall,
        }
    for steps in refine:  # the same generator's samples after latent refinement
        from gankit.refinement import DEFAULT_RATE, LatentRefiner

        networks = trainer.run.networks
        refiner = LatentRefiner(networks.sampling_generator, networks.discriminator.eval(),
                                trainer.run.objective.loss.log_density_ratio, steps=steps,
                                rate=DEFAULT_RATE if refine_rate is None else refine_rate)
        moved = score(metric, refiner, trainer.config.z_dim, data=trainer.source, count=2500, seed=10_000 + seed,
                      device=trainer.device)
        row.setdefault("refine", {})[str(steps)] = {
            "modes": moved["modes"], "hq": 100 * moved["hq"], "kl": moved["kl"], "rate": refiner.rate, "wall_s": wall,
        }
    return row


def summary(rows: list[dict]) -> dict:
    def mean_std(key):
        values = [r[key] for r in rows]
        return statistics.fmean(values), (statistics.stdev(values) if len(values) > 1 else 0.0)

    return {key: mean_std(key) for key in ("modes", "hq", "kl", "wall_s")}


def table(results: dict[str, list[dict]]) -> str:
    lines = [
        "| data | method | modes | high quality (%) | KL | wall time per run (s) |",
        "|---|---|---|---|---|---|",
    ]
    for data, rows in results.items():
        for name, modes, hq, kl in PUBLISHED[data]:
            lines.append(f"| {data} | {name} | {modes} | {hq} | {kl} | - |")
        s = summary(rows)
        recipe = rows[0]["config"]
        label = (f"gankit recipe, {len(rows)} seeds ({recipe['arch']}, {recipe['loss']}, d_steps {recipe['d_steps']}, "
                 f"ema {recipe['ema']})")
        lines.append(
            f"| {data} | {label} | {s['modes'][0]:.1f} ± {s['modes'][1]:.1f} | {s['hq'][0]:.1f} ± {s['hq'][1]:.1f} "
            f"| {s['kl'][0]:.3f} ± {s['kl'][1]:.3f} | {s['wall_s'][0]:.1f} ± {s['wall_s'][1]:.1f} |"
        )
        for sharpness in rows[0].get("drs", {}):
            d = summary([row["drs"][sharpness] for row in rows])
            acceptance = sum(row["drs"][sharpness]["acceptance"] for row in rows) / len(rows)
            lines.append(
                f"| {data} | the same + `--drs {float(sharpness):g}` ({acceptance:.0%} of the proposals kept) "
                f"| {d['modes'][0]:.1f} ± {d['modes'][1]:.1f} | {d['hq'][0]:.1f} ± {d['hq'][1]:.1f} "
                f"| {d['kl'][0]:.3f} ± {d['kl'][1]:.3f} | {d['wall_s'][0]:.1f} ± {d['wall_s'][1]:.1f} |"
            )
        for steps in rows[0].get("refine", {}):
            d = summary([row["refine"][steps] for row in rows])
            lines.append(
                f"| {data} | the same + `--refine {steps}` (rate {rows[0]['refine'][steps]['rate']:g}) "
                f"| {d['modes'][0]:.1f} ± {d['modes'][1]:.1f} | {d['hq'][0]:.1f} ± {d['hq'][1]:.1f} "
                f"| {d['kl'][0]:.3f} ± {d['kl'][1]:.3f} | {d['wall_s'][0]:.1f} ± {d['wall_s'][1]:.1f} |"
            )
        goal_modes, goal_hq, goal_kl = GOALS[data]
        met = s["modes"][0] >= goal_modes and s["hq"][0] >= goal_hq and s["kl"][0] <= goal_kl
        verdict = "goal met" if met and s["wall_s"][0] < 60 else "goal NOT met"
        lines.append(f"| {data} | {verdict} (the generator alone) | {goal_modes} | >= {goal_hq} | <= {goal_kl} | < 60 |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", nargs="+", default=["ring", "grid"], choices=["ring", "grid"])
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--first-seed", type=int, default=0)
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override a run setting (a RunConfig key), e.g. --set steps=1000")
    parser.add_argument("--threads", type=int, default=2, help="torch threads per run")
    parser.add_argument("--json", type=Path, help="also write every run's numbers to this file")
    parser.add_argument("--drs", type=float, nargs="+", default=[], metavar="K",
                        help="also score each generator through discriminator rejection sampling with these exponents")
    parser.add_argument("--refine", type=int, nargs="+", default=[], metavar="N",
                        help="also score each generator after these numbers of latent-refinement steps")
    parser.add_argument("--refine-rate", type=float, help="the latent refinement's step size (default 0.001)")
    args = parser.parse_args(argv)
    settings = parse_settings(args.set)
    results: dict[str, list[dict]] = {}
    for data in args.data:
        for seed in range(args.first_seed, args.first_seed + args.seeds):
            row = run_one(data, seed, settings, args.threads, args.drs, args.refine, args.refine_rate)
            results.setdefault(data, []).append(row)
            kept = "".join(f"; --drs {k}: {v['hq']:.1f}% HQ, KL {v['kl']:.4f}" for k, v in row.get("drs", {}).items())
            kept += "".join(f"; --refine {k}: {v['hq']:.1f}% HQ, KL {v['kl']:.4f}"
                            for k, v in row.get("refine", {}).items())
            print(f"{data} seed {seed}: {row['modes']:.0f} modes, {row['hq']:.1f}% HQ, KL {row['kl']:.4f}, "
                  f"{row['wall_s']:.1f} s{kept}", file=sys.stderr, flush=True)
    print(table(results))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The device check of issue 17 in one call: gankit's GPU paths timed and checked, one JSON file and a table.

    python benchmarks/gpu_check.py --device cuda --out benchmarks/gpu-check-h200.json          # about 6 min
    python benchmarks/gpu_check.py --device cuda --quick --out gpu-check-quick.json            # about 3 min
    python benchmarks/gpu_check.py --device cpu --quick --out /tmp/gpu-check-cpu.json          # the code path only

Five parts, each in its own subprocess with its own time limit, so that one that fails, hangs or runs out
of GPU memory is recorded (exit code, the last lines of stderr, or "timed out") and the others still run:

1. ``bench``: ``gankit bench`` (gankit.bench.bench) of DCGAN at each image size and batch size, in fp32, bf16,
   bf16 + channels_last and bf16 + channels_last + compile: img/s, TFLOP/s and its share of the bf16 peak,
   peak memory.
2. ``plain_loop``: benchmarks/plain_loop.py, the article's loop and gankit's (bf16 + channels_last + compile)
   timed interleaved in one process at the same settings: the speed-up is a ratio measured side by side.
3. ``correctness``: ``gankit run`` on digits, fp32 and bf16 with the same seed: finite losses, and digits
   scores within ``SCORE_TOLERANCE`` of each other.
4. ``data``: ``gankit bench --data anime``: images/s of the data pipeline alone (GPU-resident cache).
5. ``ddp``: ``torchrun --nproc_per_node 1``, gankit's multi-process path (nccl on CUDA, gloo on CPU).

On CPU every part runs at its smallest settings (narrow networks, 32 px, a few steps) and the compile
variant is skipped: the check there is that the script and the paths it calls still work, not the figures.
docs/performance.md says how to run it on a device and holds the table of its figures.
"""
from __future__ import annotations

import argparse
import dataclasses
import importlib.util
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPOSITORY = HERE.parent
PARTS = ("bench", "plain_loop", "correctness", "data", "ddp")

# Dense (no sparsity) bf16 tensor-core peaks from NVIDIA's data sheets, in TFLOP/s, by a fragment of the name
# torch reports; the first fragment found in the name wins. An unknown device gets no peak (null).
BF16_DENSE_PEAK_TFLOPS = (
    ("H200", 989.4, "NVIDIA H200 data sheet: BF16 tensor core 1,979 TFLOPS with sparsity, 989 dense (SXM)"),
    ("H100 PCIe", 756.0, "NVIDIA H100 data sheet: BF16 1,513 TFLOPS with sparsity, 756 dense (PCIe)"),
    ("H100", 989.4, "NVIDIA H100 data sheet: BF16 1,979 TFLOPS with sparsity, 989 dense (SXM)"),
    ("A100", 312.0, "NVIDIA A100 data sheet: BF16 tensor core 312 TFLOPS dense"),
)

# The digits score runs from 1 (collapse) to 10 (confident, evenly spread digits). bf16 and fp32 runs with one
# seed follow different trajectories after the first rounding difference, so they cannot agree bit for bit;
# 1.5 points allows the spread between seeds of one precision (about 1 point on short runs) and still catches
# a precision that breaks training (a collapse scores about 1 to 3).
SCORE_TOLERANCE = 1.5

# The goal for one H200 (DCGAN 64x64).
GOAL_IMG_PER_S = 20_000
GOAL_RATIO_TO_ARTICLE = 5.0
GOAL_PEAK_FRACTION_AT_256 = 0.40

# A hidden fault for tests: GPU_CHECK_FAULT="part:fail" or "part:hang" (comma-separated for several parts).
FAULT_VARIABLE = "GPU_CHECK_FAULT"

VARIANTS = {  # name -> gankit bench settings
    "fp32": {"precision": "fp32"},
    "bf16": {"precision": "bf16"},
    "bf16+cl": {"precision": "bf16", "channels_last": True},
    "bf16+cl+compile": {"precision": "bf16", "channels_last": True, "compile": True},
}


@dataclass(frozen=True)
class Profile:
    """How much each part does, and its time limit in seconds."""

    arch: str = "dcgan"
    image_sizes: tuple[int, ...] = (64, 96)
    batch_sizes: tuple[int, ...] = (64, 256)
    variants: tuple[str, ...] = tuple(VARIANTS)
    bench_steps: int = 30
    bench_warmup: int = 5  # compile and cuDNN autotuning happen here
    plain_rounds: int = 3
    plain_steps: int = 10
    plain_variant: str = "bf16+cl+compile"
    plain_images: int = 256  # decoded faces the batches are drawn from
    correctness_steps: int = 300
    correctness_arch: str = "dcgan"
    # Fewer digits than the defaults (60,000 to train on, 20,000 for the classifier): a fresh machine renders
    # them with Pillow at a few ms each, which would take the whole part's time.
    digits_data: str = "digits:count=10000"
    digits_metric: str = "digits:train_count=5000"
    eval_count: int | None = None
    data_image_size: int = 64
    data_batch_size: int = 256
    data_limit: int = 0  # 0: every image in the folder
    ddp_steps: int = 20
    time_limits: tuple[tuple[str, int], ...] = (
        ("bench", 180), ("plain_loop", 120), ("correctness", 120), ("data", 60), ("ddp", 60),
    )


FULL = Profile()
QUICK = dataclasses.replace(
    FULL, image_sizes=(64,), batch_sizes=(256,), bench_steps=20, bench_warmup=3, plain_rounds=2, plain_steps=5,
    correctness_steps=100, data_limit=1000,
    time_limits=(("bench", 90), ("plain_loop", 60), ("correctness", 45), ("data", 45), ("ddp", 45)),
)
# The code path only: every part at its smallest; inductor's C++ compilation takes minutes on 2 cores.
CPU = dataclasses.replace(
    FULL, arch="dcgan:width=8", image_sizes=(32,), batch_sizes=(16,), variants=("fp32", "bf16", "bf16+cl"),
    bench_steps=2, bench_warmup=1, plain_rounds=1, plain_steps=1, plain_variant="bf16+cl", plain_images=16,
    correctness_steps=20, correctness_arch="dcgan:width=8", digits_data="digits:count=512",
    digits_metric="digits:train_count=200,epochs=1",
    eval_count=64, data_image_size=32, data_batch_size=16, data_limit=64, ddp_steps=4,
    time_limits=(("bench", 100), ("plain_loop", 100), ("correctness", 100), ("data", 100), ("ddp", 100)),
)


def profile_for(device: str, quick: bool) -> Profile:
    if device.startswith("cpu"):
        return CPU
    return QUICK if quick else FULL


# -- the parts (each runs in a worker subprocess) -------------------------------------------------------


def part_bench(args, profile: Profile) -> dict:
    """gankit bench at every size, batch and variant; a variant that fails is recorded, the rest still run."""
    from gankit.bench import bench

    peak = bf16_peak(device_name(args.device))[0]
    rows = []
    for size in profile.image_sizes:
        for batch in profile.batch_sizes:
            for variant in VARIANTS:
                row = {"image_size": size, "batch_size": batch, "variant": variant}
                if variant not in profile.variants:
                    rows.append({**row, "skipped": "compile is not timed on CPU (minutes of C++ compilation)"})
                    continue
                try:
                    result = bench(arch=profile.arch, image_size=size, batch_size=batch, steps=profile.bench_steps,
                                   warmup=profile.bench_warmup, device=args.device, **VARIANTS[variant])
                except Exception as error:  # noqa: BLE001 - one variant's failure (OOM, compile) is a figure too
                    rows.append({**row, "error": one_line(error)})
                    continue
                finally:
                    release_memory()
                tflops = result.gflop_per_s / 1000
                rows.append({**row, "img_per_s": result.img_per_s, "tflop_per_s": round(tflops, 3),
                             "peak_fraction": round(tflops / peak, 4) if peak else None,
                             "peak_memory_mib": result.peak_memory_mib, "gflop_per_step": result.gflop_per_step})
    return {"rows": rows}


def part_plain_loop(args, profile: Profile) -> dict:
    """The article's loop against gankit's best variant, interleaved in one process (benchmarks/plain_loop.py)."""
    plain_loop = load_benchmark("plain_loop")
    settings = VARIANTS[profile.plain_variant]
    flags = ["--precision", settings["precision"]]
    flags += ["--channels-last"] * bool(settings.get("channels_last")) + ["--compile"] * bool(settings.get("compile"))
    rows = []
    for size in profile.image_sizes:
        for batch in profile.batch_sizes:
            row = {"image_size": size, "batch_size": batch, "gankit_variant": profile.plain_variant}
            argv = ["--image-size", str(size), "--batch-size", str(batch), "--device", args.device, "--rounds",
                    str(profile.plain_rounds), "--steps", str(profile.plain_steps), "--images", str(max(batch, profile.plain_images)),
                    *flags, *(["--data-root", str(args.data_root)] if args.data_root else [])]
            try:
                with quiet_stdout():
                    report = plain_loop.main(argv)
            except Exception as error:  # noqa: BLE001
                rows.append({**row, "error": one_line(error)})
                continue
            finally:
                release_memory()
            loops = report["loops"]
            rows.append({**row, "article_img_per_s": loops["article"]["img_per_s_median"],
                         "gankit_img_per_s": loops["gankit"]["img_per_s_median"],
                         "ratio": loops["gankit"]["ratio_to_article_median_of_rounds"],
                         "peak_memory_mib": report["peak_memory_mib"]})
    return {"rows": rows}


def part_correctness(args, profile: Profile) -> dict:
    """``gankit run`` on digits in fp32 and in bf16 with one seed: losses finite, scores within the tolerance."""
    runs = {}
    for precision in ("fp32", "bf16"):
        out = Path(args.workdir) / f"digits-{precision}"
        command = [sys.executable, "-m", "gankit", "run", "--arch", profile.correctness_arch, "--data", profile.digits_data,
                   "--steps", str(profile.correctness_steps), "--seed", "0", "--device", args.device,
                   "--precision", precision, "--metric", profile.digits_metric,
                   "--eval-every", str(profile.correctness_steps), "--log-every", "10",
                   "--sample-every", str(profile.correctness_steps),
                   "--checkpoint-every", str(profile.correctness_steps), "--out", str(out), "--overwrite", "--quiet"]
        if profile.eval_count:
            command += ["--eval-count", str(profile.eval_count)]
        started = time.perf_counter()
        subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
        runs[precision] = read_run(out) | {"seconds": round(time.perf_counter() - started, 1)}
    difference = abs(runs["bf16"]["score"] - runs["fp32"]["score"])
    finite = all(run["losses_finite"] for run in runs.values())
    return {"runs": runs, "score_difference": round(difference, 4), "score_tolerance": SCORE_TOLERANCE,
            "passed": finite and difference <= SCORE_TOLERANCE}


def part_data(args, profile: Profile) -> dict:
    """The data path: anime faces decoded once, cached, gathered on the device (gankit bench --data anime)."""
    from gankit.bench import bench

    if args.data_root is None:
        raise SystemExit("no anime faces folder found; give --data-root")
    spec = f"anime:limit={profile.data_limit}" if profile.data_limit else "anime"
    result = bench(arch=profile.arch, data=spec, data_root=str(args.data_root), image_size=profile.data_image_size,
                   batch_size=profile.data_batch_size, steps=profile.bench_steps, warmup=profile.bench_warmup,
                   device=args.device, precision="bf16" if args.device != "cpu" else "fp32")
    return {"data": spec, "image_size": profile.data_image_size, "batch_size": profile.data_batch_size,
            "data_img_per_s": result.data_img_per_s, "train_img_per_s": result.img_per_s}


def part_ddp(args, profile: Profile) -> dict:
    """torchrun with one process: the launcher, gankit's process group (nccl on CUDA), DDP and its all-reduces."""
    result_file = Path(args.workdir) / "ddp-worker.json"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "1",
               str(Path(__file__).resolve()), "--ddp-worker", "--device", args.device,
               "--result", str(result_file), "--workdir", args.workdir, *(["--quick"] if args.quick else [])]
    started = time.perf_counter()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    return json.loads(result_file.read_text()) | {"seconds": round(time.perf_counter() - started, 1)}


def ddp_worker(args, profile: Profile) -> dict:
    """Runs under torchrun. gankit skips the process group when WORLD_SIZE is 1, so this process joins it as a
    one-rank group would under a larger run: join (nccl or gloo), DDP wrapping, mean_across_ranks, any_rank."""
    import torch.distributed as dist

    import gankit.build
    import gankit.engine
    from gankit.config import RunConfig
    from gankit.distributed import Distributed

    class OneRankGroup(Distributed):
        @property
        def enabled(self) -> bool:
            return True

    gankit.build.Distributed = OneRankGroup
    config = RunConfig.from_sources(overrides={
        "arch": profile.correctness_arch, "data": profile.digits_data, "steps": profile.ddp_steps, "device": args.device,
        "log_every": 2, "sample_every": profile.ddp_steps, "checkpoint_every": profile.ddp_steps,
        "out": str(Path(args.workdir) / "ddp-run"),
    })
    trainer = gankit.engine.Trainer(config)
    backend = dist.get_backend()
    trainer.train(config.out)
    losses = read_losses(Path(config.out))
    report = {"backend": backend, "world_size": dist.get_world_size(), "steps": profile.ddp_steps,
              "wrapped_in_ddp": type(trainer.step_generator).__name__, "losses_finite": all_finite(losses),
              "last_losses": losses[-1] if losses else None}
    Path(args.result).write_text(json.dumps(report))
    return report


PART_FUNCTIONS = {"bench": part_bench, "plain_loop": part_plain_loop, "correctness": part_correctness,
                  "data": part_data, "ddp": part_ddp}


# -- helpers the parts share ----------------------------------------------------------------------------


def device_name(device: str) -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    import platform

    return f"cpu ({platform.processor() or platform.machine()}, {os.cpu_count()} cores)"


def bf16_peak(name: str) -> tuple[float | None, str | None]:
    for fragment, tflops, source in BF16_DENSE_PEAK_TFLOPS:
        if fragment in name:
            return tflops, source
    return None, None


def load_benchmark(name: str):
    spec = importlib.util.spec_from_file_location(name, HERE / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def read_losses(run_dir: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines() if line.strip()]
    return [{"step": r["step"], "d_loss": r["d_loss"], "g_loss": r["g_loss"]} for r in rows if "event" not in r]


def read_run(run_dir: Path) -> dict:
    losses = read_losses(run_dir)
    evaluations = [json.loads(line) for line in (run_dir / "eval.jsonl").read_text().splitlines() if line.strip()]
    last = evaluations[-1]
    return {"score": last["score"], "classes": last.get("classes"), "losses_finite": all_finite(losses),
            "last_losses": losses[-1] if losses else None}


def all_finite(losses: list[dict]) -> bool:
    return bool(losses) and all(math.isfinite(row[key]) for row in losses for key in ("d_loss", "g_loss"))


def release_memory() -> None:
    """Between settings: free the last one's memory, and let the next compile afresh (the networks' forward
    functions are shared by all settings, and past dynamo's per-function cache limit it runs eager silently)."""
    import gc

    import torch

    torch._dynamo.reset()
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class quiet_stdout:
    """plain_loop.main prints its own table; the part's result is the JSON it returns."""

    def __enter__(self):
        self.saved, sys.stdout = sys.stdout, open(os.devnull, "w")

    def __exit__(self, *exc):
        sys.stdout.close()
        sys.stdout = self.saved


def one_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {' '.join(str(error).split())}"[:500]


def find_faces() -> Path | None:
    for candidate in (REPOSITORY / "shared/data/anime-faces", REPOSITORY.parent / "shared/data/anime-faces",
                      Path("/work/shared/data/anime-faces")):
        if candidate.is_dir():
            return candidate
    return None


def injected_fault(part: str) -> str | None:
    for item in os.environ.get(FAULT_VARIABLE, "").split(","):
        name, _, mode = item.partition(":")
        if name.strip() == part:
            return mode.strip() or "fail"
    return None


# -- the driver ------------------------------------------------------------------------------------------


def run_worker(args) -> None:
    """One part, in this (sub)process: writes its figures to ``--result``; a failure exits non-zero."""
    fault = injected_fault(args.worker)
    if fault == "hang":
        time.sleep(10**6)
    if fault:
        print(f"injected fault in part {args.worker} ({FAULT_VARIABLE})", file=sys.stderr)
        raise SystemExit(3)
    figures = PART_FUNCTIONS[args.worker](args, profile_for(args.device, args.quick))
    Path(args.result).write_text(json.dumps(figures))


def run_part(part: str, args, limit: int, workdir: Path) -> dict:
    """The part in its own process group, killed whole (torchrun and gankit run children too) at its limit."""
    result = workdir / f"{part}.json"
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", part, "--device", args.device,
               "--result", str(result), "--workdir", str(workdir), *(["--quick"] if args.quick else [])]
    if args.data_root:
        command += ["--data-root", str(args.data_root)]
    print(f"[{time.strftime('%H:%M:%S')}] {part} (limit {limit} s)", flush=True)
    started = time.perf_counter()
    with open(workdir / f"{part}.stderr", "w+") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=stderr, start_new_session=True)
        try:
            code = process.wait(timeout=limit)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
            code = None
        stderr.seek(0)
        tail = stderr.read().splitlines()[-12:]
    record = {"time_limit_s": limit, "seconds": round(time.perf_counter() - started, 1)}
    if code is None:
        return {**record, "status": "timed out", "reason": f"timed out after {limit} s", "stderr_tail": tail}
    if code != 0:
        return {**record, "status": "failed", "reason": f"exit code {code}", "exit_code": code, "stderr_tail": tail}
    return {**record, "status": "ok", "figures": json.loads(result.read_text())}


def goal_check(parts: dict, peak: float | None) -> dict:
    """The issue's goal for DCGAN 64x64, from whatever figures came back (None where one is missing)."""
    bench_rows = [r for r in parts["bench"].get("figures", {}).get("rows", []) if r["image_size"] == 64 and "img_per_s" in r]
    plain_rows = [r for r in parts["plain_loop"].get("figures", {}).get("rows", []) if r["image_size"] == 64 and "ratio" in r]
    best = max((r["img_per_s"] for r in bench_rows), default=None)
    ratio = max((r["ratio"] for r in plain_rows), default=None)
    fraction = max((r["peak_fraction"] for r in bench_rows if r["batch_size"] == 256 and r["peak_fraction"]), default=None)
    return {
        "best_img_per_s_64": best, "img_per_s_goal": GOAL_IMG_PER_S,
        "img_per_s_met": None if best is None else best >= GOAL_IMG_PER_S,
        "best_ratio_to_article_64": ratio, "ratio_goal": GOAL_RATIO_TO_ARTICLE,
        "ratio_met": None if ratio is None else ratio >= GOAL_RATIO_TO_ARTICLE,
        "best_peak_fraction_64_batch_256": fraction, "peak_fraction_goal": GOAL_PEAK_FRACTION_AT_256,
        "peak_fraction_met": None if fraction is None or peak is None else fraction >= GOAL_PEAK_FRACTION_AT_256,
    }


def print_table(report: dict) -> None:
    print(f"\n{report['device_name']} | torch {report['torch']} | bf16 peak {report['bf16_peak_tflops']} TFLOP/s")
    for part, record in report["parts"].items():
        print(f"{part:<12} {record['status']:<10} {record.get('seconds', '-'):>7} s  {record.get('reason', '')}")
    for row in report["parts"]["bench"].get("figures", {}).get("rows", []):
        figures = (f"{row['img_per_s']:>10,.0f} img/s {row['tflop_per_s']:>8.2f} TFLOP/s "
                   f"{'' if row['peak_fraction'] is None else format(row['peak_fraction'], '.1%'):>6} "
                   f"{row['peak_memory_mib']:>8,.0f} MiB") if "img_per_s" in row else row.get("error") or row.get("skipped")
        print(f"  bench {row['image_size']:>3}px b{row['batch_size']:<4} {row['variant']:<16} {figures}")
    for row in report["parts"]["plain_loop"].get("figures", {}).get("rows", []):
        figures = (f"article {row['article_img_per_s']:,.1f} img/s, gankit {row['gankit_img_per_s']:,.1f} img/s, "
                   f"x{row['ratio']}") if "ratio" in row else row["error"]
        print(f"  plain loop {row['image_size']:>3}px b{row['batch_size']:<4} {figures}")
    correctness = report["parts"]["correctness"].get("figures")
    if correctness:
        scores = ", ".join(f"{p} {r['score']:.2f}" for p, r in correctness["runs"].items())
        print(f"  correctness: digits scores {scores} (tolerance {SCORE_TOLERANCE}); passed: {correctness['passed']}")
    print(f"  goal: {json.dumps(report['goal'])}")


def main(argv: list[str] | None = None) -> dict | None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda", help="cuda, cuda:N or cpu (the code path, smallest settings)")
    parser.add_argument("--quick", action="store_true", help="one size (64 px, batch 256), fewer steps")
    parser.add_argument("--out", type=Path, help="the JSON file to write")
    parser.add_argument("--parts", default=",".join(PARTS), help=f"comma-separated subset of {', '.join(PARTS)}")
    parser.add_argument("--time-limit", action="append", default=[], metavar="PART=SECONDS",
                        help="override one part's time limit (repeatable)")
    parser.add_argument("--data-root", type=Path, default=find_faces(), help="the anime faces folder")
    parser.add_argument("--worker", choices=PARTS, help=argparse.SUPPRESS)
    parser.add_argument("--ddp-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--result", help=argparse.SUPPRESS)
    parser.add_argument("--workdir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.worker:
        return run_worker(args)
    if args.ddp_worker:
        return ddp_worker(args, profile_for(args.device, args.quick))
    if args.out is None:
        parser.error("--out is required")
    return check(args)


def check(args) -> dict:
    import torch

    selected = [p.strip() for p in args.parts.split(",") if p.strip()]
    unknown = sorted(set(selected) - set(PARTS))
    if unknown:
        raise SystemExit(f"unknown part(s) {', '.join(unknown)}; choose from {', '.join(PARTS)}")
    profile = profile_for(args.device, args.quick)
    limits = dict(profile.time_limits)
    for item in args.time_limit:
        part, _, seconds = item.partition("=")
        if part not in limits or not seconds.isdigit():
            raise SystemExit(f"--time-limit wants PART=SECONDS with PART one of {', '.join(PARTS)}, got {item!r}")
        limits[part] = int(seconds)
    name = device_name(args.device)
    peak, source = bf16_peak(name)
    started = time.perf_counter()
    # On a GPU the parts never overlap (they time it); on CPU the figures mean nothing and each part computes
    # on one thread, so two share the 2 cores and the check takes half the time.
    jobs = 2 if args.device == "cpu" else 1
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as workdir, ThreadPoolExecutor(jobs) as pool:
        running = {part: pool.submit(run_part, part, args, limits[part], Path(workdir)) for part in PARTS
                   if part in selected}
        parts = {part: running[part].result() if part in running else {"status": "not run", "reason": "not in --parts"}
                 for part in PARTS}
    report = {
        "device": args.device, "device_name": name, "torch": torch.__version__, "cuda": torch.version.cuda,
        "bf16_peak_tflops": peak, "bf16_peak_source": source, "quick": args.quick,
        "profile": dataclasses.asdict(profile), "data_root": str(args.data_root) if args.data_root else None,
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - (time.perf_counter() - started))),
        "wall_s": round(time.perf_counter() - started, 1), "parts": parts,
    }
    report["goal"] = goal_check(parts, peak)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print_table(report)
    print(f"written to {args.out}")
    return report


if __name__ == "__main__":
    main()

"""Kill a training process with SIGKILL at random moments, resume it each time, and compare the result with
the same run trained without interruption (final weights and logged losses, bit for bit).

    python3 scripts/kill_resume.py --kills 10 --steps 120

After every kill it checks that each checkpoint left in the run folder loads. CPU only, one thread per
process, so that the two runs execute the same arithmetic.

First it kills runs while they build their data cache (the image cache of a folder, the digits file), with
SIGKILL and SIGTERM, and checks that a rerun works and that no temporary file is left behind.
It then kills ``gankit sample --out EXISTING --overwrite`` at random moments (``--sample-kills``): each time
the file must be the old one, whole, or the complete new one, never a partial file. ``--only sample`` skips
the training part.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from gankit.checkpoint import checkpoint_step, list_checkpoints, load_checkpoint

RUN_FLAGS = [
    "--arch", "dcgan:width=8", "--data", "digits:count=512", "--batch-size", "32", "--z-dim", "16",
    "--device", "cpu", "--checkpoint-every", "2", "--log-every", "5", "--sample-every", "1000", "--quiet",
]


def environment() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}


def gankit(*args: str) -> list[str]:
    return [sys.executable, "-m", "gankit", *args]


def metrics_rows(run: Path) -> int:
    path = run / "metrics.jsonl"
    return len(path.read_text().splitlines()) if path.exists() else 0


def touched_since(run: Path, moment: float) -> bool:
    """Whether this launch has started writing (resume rewrites the metrics log; training appends to it)."""
    path = run / "metrics.jsonl"
    return path.exists() and path.stat().st_mtime > moment


def wait_for_training(process: subprocess.Popen, run: Path, launched: float) -> None:
    """Until this launch has logged a new interval: the kill then lands in training, not in start-up."""
    while process.poll() is None and not touched_since(run, launched):
        time.sleep(0.02)
    rows = metrics_rows(run)  # after a resume has dropped the rows it will log again
    while process.poll() is None and metrics_rows(run) <= rows:
        time.sleep(0.02)


def logged_losses(run: Path) -> list[dict]:
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return [{k: v for k, v in row.items() if k != "img_per_s"} for row in rows]


def final_networks(run: Path) -> dict[str, torch.Tensor]:
    tensors, _ = load_checkpoint(list_checkpoints(run / "checkpoints")[-1])
    return {k: v for k, v in tensors.items() if k.startswith(("generator.", "discriminator."))}


def all_checkpoints_load(run: Path) -> tuple[bool, list[int]]:
    steps = []
    for path in list_checkpoints(run / "checkpoints"):
        try:
            load_checkpoint(path)
        except Exception as error:  # noqa: BLE001 - reported, this is what the script is for
            print(f"    damaged: {path.name}: {error}")
            return False, steps
        steps.append(checkpoint_step(path))
    return True, steps


CACHE_BUILD_FLAGS = [
    "--arch", "dcgan:width=4", "--batch-size", "8", "--z-dim", "8", "--steps", "1",
    "--device", "cpu", "--quiet",
]


def write_images(folder: Path, count: int) -> None:
    import numpy as np
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    pixels = np.random.default_rng(0).integers(0, 256, (count, 96, 96, 3), dtype=np.uint8)
    for index in range(count):
        Image.fromarray(pixels[index]).save(folder / f"{index}.png")


def wait_for_build(process: subprocess.Popen, cache: Path, pattern: str) -> bool:
    """Until a temporary cache file appears (the build has begun); False when the process ended first."""
    while process.poll() is None:
        if list(cache.rglob(pattern)):
            return True
        time.sleep(0.005)
    return False


def kill_cache_builds(work: Path) -> bool:
    """SIGKILL and SIGTERM during the cache build of a folder and of the digits; then a rerun must work and
    leave no temporary file."""
    images = work / "images"
    write_images(images, 3000)
    folder = ["--data", "folder", "--data-root", str(images), "--image-size", "16"]
    # The digits' temporary file exists only while the rendered arrays are compressed: make that take a while.
    many_digits = ["--data", "digits:count=20000", "--image-size", "32"]
    cases = [
        ("folder", folder, "*.gkimg.pid*.tmp", signal.SIGKILL),
        ("folder", folder, "*.gkimg.pid*.tmp", signal.SIGTERM),
        ("digits", many_digits, "*.npz.pid*.tmp", signal.SIGKILL),
        ("digits", many_digits, "*.npz.pid*.tmp", signal.SIGTERM),
    ]
    good = True
    for index, (name, data, pattern, number) in enumerate(cases):
        cache = work / f"cache-{index}"
        env = {**environment(), "GANKIT_CACHE_DIR": str(cache)}
        command = gankit("run", *data, *CACHE_BUILD_FLAGS, "--out", str(work / f"build-{index}"))
        process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        caught = wait_for_build(process, cache, pattern)
        if caught:
            process.send_signal(number)
        _, stderr = process.communicate()
        left = sorted(p.name for p in cache.rglob("*.tmp"))
        rerun = subprocess.run(
            gankit("run", *data, *CACHE_BUILD_FLAGS, "--out", str(work / f"rerun-{index}")),
            env=env, capture_output=True, text=True,
        )
        stale = sorted(p.name for p in cache.rglob("*.tmp"))
        ok = caught and rerun.returncode == 0 and not stale and (number == signal.SIGKILL or not left)
        good &= ok
        message = stderr.strip().splitlines()[-1] if stderr.strip() else "(no message)"
        print(
            f"cache build of {name}: {number.name} while its temporary file was being written: exit "
            f"{process.returncode}, {message!r}; temporaries left: {len(left)}; rerun exit {rerun.returncode}, "
            f"temporaries after the rerun: {len(stale)}{'' if caught else ' (the build ended before the signal)'}"
        )
    return good


def kill_during_sample(run: Path, work: Path, kills: int, chooser: random.Random, count: int = 20000) -> bool:
    """SIGKILL ``gankit sample --out EXISTING --overwrite`` at random moments, .png and .npy in turn, every
    other kill once the temporary file exists (inside the write itself); after each kill the file must hold
    the old bytes or the complete new ones. Returns whether it always did."""
    sample = gankit("sample", str(run), "-n", str(count), "--overwrite")
    made: dict[str, tuple[bytes, bytes, float]] = {}
    for suffix in (".png", ".npy"):  # the old content (seed 1) and the complete new one (seed 0)
        old, new = work / f"old{suffix}", work / f"new{suffix}"
        subprocess.run([*sample, "--seed", "1", "--out", str(old)], check=True, env=environment(), capture_output=True)
        started = time.monotonic()
        subprocess.run([*sample, "--seed", "0", "--out", str(new)], check=True, env=environment(), capture_output=True)
        made[suffix] = (old.read_bytes(), new.read_bytes(), time.monotonic() - started)
    all_whole = True
    for kill in range(kills):
        suffix, in_write = (".png", ".npy")[kill % 2], kill % 4 >= 2
        old, new, duration = made[suffix]
        folder = work / f"sample-kill-{kill}"
        folder.mkdir(parents=True)
        out = folder / f"samples{suffix}"
        out.write_bytes(old)
        process = subprocess.Popen([*sample, "--seed", "0", "--out", str(out)], env=environment(),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        if in_write:
            while process.poll() is None and not list(folder.glob(".*.tmp")):
                time.sleep(0.001)
            delay = chooser.uniform(0.0, 0.05)
        else:
            delay = chooser.uniform(0.3 * duration, 1.05 * duration)
        time.sleep(delay)
        finished = process.poll() is not None
        process.send_signal(signal.SIGKILL)
        process.wait()
        now = out.read_bytes() if out.exists() else b""
        state = "old file intact" if now == old else "new file complete" if now == new else "PARTIAL OR MISSING"
        all_whole &= now in (old, new)
        leftovers = [p.name for p in folder.glob(".*.tmp")]
        moment = f"{delay:.3f} s after the temporary file appeared" if in_write else f"{delay:.2f} s after launch"
        print(
            f"sample kill {kill + 1:2d} ({suffix}, {len(new):,} bytes, a write takes {duration:.1f} s): SIGKILL "
            f"{moment}{' (already finished)' if finished else ''}: {state}; temporary files left: {len(leftovers)}"
        )
    return all_whole


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=10)
    parser.add_argument("--sample-kills", type=int, default=6, help="kills during gankit sample --overwrite")
    parser.add_argument("--only", choices=("training", "sample"), default=None, help="run one part only")
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--seed", type=int, default=None, help="seed of the kill moments (default: random)")
    parser.add_argument("--max-delay", type=float, default=2.0, help="kill up to this many seconds after training resumes")
    parser.add_argument("--work", type=Path, default=None)
    args = parser.parse_args()
    sys.stdout.reconfigure(line_buffering=True)  # progress shows as it happens, also when piped to a file
    seed = args.seed if args.seed is not None else random.randrange(10**6)
    chooser = random.Random(seed)
    work = args.work or Path(tempfile.mkdtemp(prefix="gankit-kill-resume-"))
    reference, killed = work / "reference", work / "killed"
    flags = [*RUN_FLAGS, "--steps", str(args.steps)]
    print(f"work folder {work}; kill-moment seed {seed}; {args.steps} steps, checkpoint every 2")
    if args.only == "sample":
        subprocess.run(gankit("run", *RUN_FLAGS, "--steps", "2", "--out", str(reference)), check=True, env=environment())
        return 0 if report_sample_kills(reference, work, args.sample_kills, chooser) else 1
    cache_builds_clean = args.only == "training" or kill_cache_builds(work / "cache-builds")
    print(f"every cache build killed, rerun and left no temporary file: {cache_builds_clean}")

    started = time.monotonic()
    subprocess.run(gankit("run", *flags, "--out", str(reference)), check=True, env=environment())
    print(f"reference run (uninterrupted): {time.monotonic() - started:.1f} s")

    kills = 0
    launches = 0
    all_whole = True
    while True:
        resume = (killed / "checkpoints").exists() and bool(list_checkpoints(killed / "checkpoints"))
        if resume:
            command = gankit("run", "--resume", str(killed), "--quiet")
        else:  # killed before its first checkpoint: nothing to resume, start again
            command = gankit("run", *flags, "--out", str(killed), "--overwrite")
        launched = time.time()
        process = subprocess.Popen(command, env=environment(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        launches += 1
        if kills == args.kills:
            stdout, stderr = process.communicate()
            print(f"final launch ({'resume' if resume else 'fresh'}): exit {process.returncode} {stderr.strip()}")
            break
        # A random moment once training is under way (loading torch takes a while on a busy machine);
        # with a checkpoint every 2 steps, some kills land while one is being written.
        wait_for_training(process, killed, launched)
        delay = chooser.uniform(0.0, args.max_delay)
        time.sleep(delay)
        if process.poll() is not None:
            print(f"launch {launches}: finished before the kill (exit {process.returncode}); stopping early")
            break
        newest_before = [checkpoint_step(p) for p in list_checkpoints(killed / "checkpoints")][-1:]
        process.send_signal(signal.SIGKILL)
        process.wait()
        kills += 1
        whole, steps = all_checkpoints_load(killed)
        all_whole &= whole
        leftovers = sorted(p.name for p in (killed / "checkpoints").glob(".*.tmp")) if (killed / "checkpoints").exists() else []
        print(
            f"kill {kills:2d}: {'resumed' if resume else 'fresh  '} run, SIGKILL {delay:.2f} s into training "
            f"(exit {process.returncode}); checkpoints on disk {steps} all load: {whole}; "
            f"newest before kill {newest_before}; partial writes left: {len(leftovers)}"
        )

    same_weights = final_networks(killed).keys() == final_networks(reference).keys() and all(
        torch.equal(a, b) for a, b in zip(final_networks(killed).values(), final_networks(reference).values())
    )
    same_losses = logged_losses(killed) == logged_losses(reference)
    print(f"kills: {kills}, launches: {launches}")
    print(f"every checkpoint loadable after every kill: {all_whole}")
    print(f"final weights bit-for-bit equal to the uninterrupted run: {same_weights}")
    print(f"logged losses equal ({len(logged_losses(reference))} rows): {same_losses}")
    training_ok = same_weights and same_losses and all_whole and kills == args.kills and cache_builds_clean
    sample_ok = args.only == "training" or report_sample_kills(reference, work, args.sample_kills, chooser)
    return 0 if (training_ok and sample_ok) else 1


def report_sample_kills(run: Path, work: Path, kills: int, chooser: random.Random) -> bool:
    whole = kill_during_sample(run, work, kills, chooser)
    print(f"sample output old-and-whole or new-and-complete after every kill: {whole}")
    return whole


if __name__ == "__main__":
    sys.exit(main())

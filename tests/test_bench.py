"""``gankit bench`` and benchmarks/plain_loop.py: consistent figures, and a step without the article's waste."""
from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch
from torch.utils.flop_counter import FlopCounterMode
from typer.testing import CliRunner

from gankit.bench import bench
from gankit.builtins.dcgan import dcgan
from gankit.cli import app

TINY = {"arch": "dcgan:width=4", "image_size": 16, "batch_size": 8, "device": "cpu"}
PLAIN_LOOP = Path(__file__).resolve().parent.parent / "benchmarks" / "plain_loop.py"


def load_plain_loop():
    spec = importlib.util.spec_from_file_location("plain_loop", PLAIN_LOOP)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def flops(work) -> int:
    with FlopCounterMode(display=False) as counter:
        work()
    return counter.get_total_flops()


def test_bench_reports_consistent_figures():
    result = bench(**TINY, steps=3, warmup=1)
    assert result.steps == 3 and result.seconds > 0
    assert result.img_per_s == pytest.approx(8 * 3 / result.seconds, rel=1e-2)
    assert result.steps_per_s == pytest.approx(3 / result.seconds, rel=1e-2)
    assert result.gflop_per_step > 0
    # From the exact FLOP count: gflop_per_step is rounded to 3 decimals, too coarse for a tiny network.
    assert result.gflop_per_s == pytest.approx(result.flop_per_step * 3 / result.seconds / 1e9, rel=2e-2, abs=0.01)
    assert result.peak_memory_kind == "process max RSS" and result.peak_memory_mib > 0
    assert result.data == "synthetic" and result.data_img_per_s is None


def test_step_flops_are_the_article_loops_minus_its_waste():
    """The article's loop = gankit's step + a second generator pass + discriminator weight gradients in the
    generator step + backpropagation into the generator from the discriminator step (no detach)."""
    size, batch, z_dim = 16, 8, 100
    gankit_step = bench(arch="dcgan", image_size=size, batch_size=batch, device="cpu", steps=1, warmup=0)
    images = torch.randint(0, 256, (32, 3, size, size), dtype=torch.uint8)
    article = load_plain_loop().ArticleLoop(images, z_dim=z_dim, batch_size=batch, device=torch.device("cpu"))
    article_step = flops(lambda: article.run(1))

    G, D = dcgan(shape=(3, size, size), z_dim=z_dim)
    z, x = torch.randn(batch, z_dim), torch.randn(batch, 3, size, size)
    generator_pass = flops(lambda: G(z).sum().backward())  # forward, weight and inner input gradients
    discriminator_full = flops(lambda: D(x.clone().requires_grad_()).sum().backward())
    discriminator_weights = flops(lambda: D(x).sum().backward())  # input needs no gradient
    D.requires_grad_(False)
    discriminator_input = flops(lambda: D(x.clone().requires_grad_()).sum().backward())
    # article = D_w(real) + 2 x (G pass + D full) ; gankit = D_w(real) + G pass + D_w(fake.detach()) + D_input
    waste = generator_pass + 2 * discriminator_full - discriminator_weights - discriminator_input
    assert article_step - gankit_step.flop_per_step == waste
    assert gankit_step.flop_per_step < 0.85 * article_step


def test_bench_json_on_the_command_line_with_data_timing():
    result = CliRunner().invoke(app, [
        "bench", "--arch", "dcgan:width=4", "--image-size", "32", "--batch-size", "8", "--steps", "2",
        "--warmup", "1", "--device", "cpu", "--data", "digits:count=64", "--json",
    ])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["img_per_s"] > 0 and report["data_img_per_s"] > 0
    assert report["image_size"] == 32 and report["data"] == "digits:count=64"


def test_bench_table_and_fp16_on_cpu_error():
    result = CliRunner().invoke(app, ["bench", "--arch", "dcgan:width=4", "--image-size", "16", "--batch-size", "4",
                                      "--steps", "1", "--warmup", "0", "--device", "cpu"])
    assert result.exit_code == 0, result.output
    assert "img/s" in result.output and "achieved GFLOP/s" in result.output and "process max RSS" in result.output
    result = CliRunner().invoke(app, ["bench", "--precision", "fp16", "--device", "cpu", "--steps", "1"])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code != 0 and len(lines) == 1 and "fp16 needs a CUDA device" in lines[0]


def test_plain_loop_script_times_both_loops_in_one_run(tmp_path):
    report = load_plain_loop().main([
        "--image-size", "16", "--batch-size", "4", "--rounds", "2", "--steps", "1", "--warmup", "0",
        "--images", "8", "--data-root", str(tmp_path / "absent"), "--with-detach", "--json",
    ])
    assert set(report["loops"]) == {"article", "article+detach", "gankit"}
    for loop in report["loops"].values():
        assert len(loop["img_per_s_rounds"]) == 2 and loop["img_per_s_median"] > 0
    assert report["loops"]["article"]["ratio_to_article_median_of_rounds"] == 1.0
    assert report["loops"]["gankit"]["gflop_per_step"] < report["loops"]["article+detach"]["gflop_per_step"]
    assert report["loops"]["article+detach"]["gflop_per_step"] < report["loops"]["article"]["gflop_per_step"]
    assert report["images"] == "random images"

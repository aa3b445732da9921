"""What a run leaves behind: the loss plot, the evolution GIF (also after an interruption), scatter plots."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from gankit.config import RunConfig
from gankit.engine import Trainer
from gankit.plots import scatter_plot, write_evolution_gif, write_loss_plot


def write_metrics(folder, records):
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in records) + "\n{truncated")


def colours(path):
    return {tuple(c) for c in np.asarray(Image.open(path).convert("RGB")).reshape(-1, 3)}


def test_loss_plot_draws_discriminator_generator_and_wasserstein_lines(tmp_path):
    records = [{"step": s, "d_loss": 1.0 / s, "g_loss": 0.5 + s / 100, "wasserstein": s / 50} for s in range(1, 30)]
    records.append({"step": 15, "event": "divergence", "d_loss": 99.0})  # an event row is not a data point
    write_metrics(tmp_path, records)
    path = write_loss_plot(tmp_path)
    assert path == tmp_path / "losses.png"
    image = Image.open(path)
    assert image.size == (800, 480)
    seen = colours(path)
    assert {(31, 119, 180), (255, 127, 14), (44, 160, 44)} <= seen  # D, G and W lines


def test_loss_plot_without_wasserstein_has_no_green_line(tmp_path):
    write_metrics(tmp_path, [{"step": s, "d_loss": 1.0, "g_loss": float(s)} for s in range(1, 5)])
    assert (44, 160, 44) not in colours(write_loss_plot(tmp_path))


def test_no_metrics_no_plot(tmp_path):
    assert write_loss_plot(tmp_path) is None


def test_evolution_gif_has_one_frame_per_grid_in_step_order(tmp_path):
    for step, shade in ((200, 200), (100, 50), (300, 250)):
        Image.new("RGB", (40, 40), (shade, shade, shade)).save(tmp_path / f"step-{step:07d}.png")
    path = write_evolution_gif(sorted(tmp_path.glob("*.png")), tmp_path / "evolution.gif")
    gif = Image.open(path)
    assert gif.n_frames == 3
    shades = []
    for index in range(3):
        gif.seek(index)
        shades.append(gif.convert("RGB").getpixel((20, 20))[0])
    assert shades == sorted(shades)  # step 100 first, though written second


def test_scatter_plot_marks_points_within_fixed_bounds(tmp_path):
    path = scatter_plot(np.array([[0.0, 0.0], [1.0, 1.0]]), tmp_path / "s.png", bounds=(-1, 1, -1, 1), size=101)
    image = Image.open(path).convert("RGB")
    assert image.getpixel((50, 50)) == (31, 119, 180)  # (0, 0) is the centre
    assert image.getpixel((25, 75)) == (255, 255, 255)


def test_a_run_leaves_a_loss_plot_and_an_evolution_gif(tiny_run, tmp_path):
    out = Trainer(RunConfig.from_sources(overrides=tiny_run)).train(tmp_path / "run")
    assert Image.open(out / "losses.png").size == (800, 480)
    assert Image.open(out / "evolution.gif").n_frames == 2


def test_an_interrupted_run_still_leaves_its_plot_and_gif(tiny_run, tmp_path):
    def fail_after_second_sample(event):
        if event.name == "sample" and event.step == 2:
            raise KeyboardInterrupt

    trainer = Trainer(RunConfig.from_sources(overrides=tiny_run), listeners=[fail_after_second_sample])
    with pytest.raises(KeyboardInterrupt):
        trainer.train(tmp_path / "run")
    assert (tmp_path / "run" / "losses.png").is_file()
    assert Image.open(tmp_path / "run" / "evolution.gif").n_frames == 1


def test_loss_plot_draws_each_statistic_a_loss_logs_and_not_the_engines_own_values(tmp_path):
    records = [{"step": s, "d_loss": 1.0, "g_loss": 2.0, "score_real": 50.0, "score_fake": -50.0, "d_x": 0.6,
                "d_g_z": 0.3, "img_per_s": 900.0} for s in range(1, 5)]
    write_metrics(tmp_path, records)
    seen = colours(write_loss_plot(tmp_path))
    assert {(44, 160, 44), (214, 39, 40)} <= seen  # d_x, then d_g_z, in the statistics' colours
    assert (148, 103, 189) not in seen  # no third statistic: score_real, score_fake and img/s are not drawn


def test_progress_display_shows_the_statistics_a_loss_returns_by_name():
    from gankit.cli import ProgressDisplay

    shown = []
    display = ProgressDisplay()
    display.progress, display.task = type("Progress", (), {"update": lambda self, task, **fields: shown.append(fields)})(), 0
    from gankit.events import StepLogged

    display(StepLogged(step=3, values={"d_loss": 0.5, "g_loss": 1.25, "score_real": 1.0, "score_fake": -1.0, "my_gap": 2.0},
                       images_per_second=812.0, interval_steps=3))
    assert shown == [{"completed": 3, "stats": "D 0.500  G 1.250  my_gap 2.000  812 img/s"}]

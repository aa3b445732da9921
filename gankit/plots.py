"""What a run leaves behind besides checkpoints: the loss plot (PNG), the evolution GIF of the sample grids,
and scatter plots of 2-D samples. Drawn with Pillow (matplotlib is not a dependency)."""
from __future__ import annotations

import itertools
import json
import math
import re
from pathlib import Path
from typing import Iterable, Sequence

from PIL import Image, ImageDraw, ImageFont

LOSS_PLOT = "losses.png"
EVOLUTION_GIF = "evolution.gif"
# The loss plot draws the discriminator and generator losses, then each statistic the loss logs
# (Loss.statistics), in the colours that follow.
LOSS_SERIES = (("d_loss", (31, 119, 180)), ("g_loss", (255, 127, 14)))
STATISTIC_COLOURS = ((44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75), (227, 119, 194), (127, 127, 127))
# Points of a conditional run's scatter, by class (the tab10 palette, repeating after ten classes).
CLASS_COLOURS = ((31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189), (140, 86, 75),
                 (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207))
# What the engine logs at every interval besides the losses; any other value is a loss's statistic.
ENGINE_VALUES = ("step", "img_per_s", "score_real", "score_fake")
MAX_GIF_FRAMES = 60
MAX_GIF_SIDE = 512


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # Pillow < 10.1 has only the bitmap font
        return ImageFont.load_default()


def _nice_ticks(low: float, high: float, count: int = 5) -> list[float]:
    if not math.isfinite(low) or not math.isfinite(high):
        return []
    if high <= low:
        high = low + 1.0
    raw = (high - low) / count
    magnitude = 10 ** math.floor(math.log10(raw))
    step = next(m * magnitude for m in (1, 2, 2.5, 5, 10) if m * magnitude >= raw)
    first = math.ceil(low / step) * step
    ticks = []
    value = first
    while value <= high + 1e-12 * abs(high):
        ticks.append(round(value, 10))
        value += step
    return ticks


def _label(value: float) -> str:
    return f"{value:.4g}"


def read_metrics(path: Path) -> list[dict]:
    records = []
    if not path.is_file():
        return records
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:  # a line cut short by an interruption
            continue
        # Rows with an "event" key (e.g. a divergence) are events, not interval averages.
        if isinstance(record, dict) and isinstance(record.get("step"), (int, float)) and "event" not in record:
            records.append(record)
    return records


def draw_line_plot(series: Sequence[tuple[str, tuple[int, int, int], list[tuple[float, float]]]], path: Path, *,
                   title: str, x_label: str = "step", size: tuple[int, int] = (800, 480)) -> Path | None:
    """Line plot of ``(name, colour, [(x, y), ...])`` series with axes, ticks and a legend; None when empty."""
    series = [(name, colour, [(x, y) for x, y in points if math.isfinite(x) and math.isfinite(y)])
              for name, colour, points in series]
    series = [s for s in series if s[2]]
    if not series:
        return None
    axes = _Axes([x for _, _, points in series for x, _ in points], [y for _, _, points in series for _, y in points],
                 title=title, x_label=x_label, size=size)
    for name, colour, points in series:
        axes.line(points, colour)
    return axes.save([(name, colour) for name, colour, _ in series], path)


def draw_band_plot(series: Sequence[tuple[str, tuple[int, int, int], list[tuple[float, float, float, float]]]], path: Path, *,
                   title: str, x_label: str = "step", size: tuple[int, int] = (800, 480)) -> Path | None:
    """``(name, colour, [(x, y, low, high), ...])`` series: each a line over a lighter band from low to high
    (e.g. the mean over seeds and their range); None when empty."""
    series = [(name, colour, [p for p in points if all(math.isfinite(v) for v in p)]) for name, colour, points in series]
    series = [s for s in series if s[2]]
    if not series:
        return None
    axes = _Axes([p[0] for _, _, points in series for p in points],
                 [v for _, _, points in series for p in points for v in p[1:]], title=title, x_label=x_label, size=size)
    for _, colour, points in series:
        axes.band([(x, low, high) for x, _, low, high in points], colour)
    for _, colour, points in series:
        axes.line([(x, y) for x, y, _, _ in points], colour)
    return axes.save([(name, colour) for name, colour, _ in series], path)


class _Axes:
    """A white canvas with a title, a framed plot area fitted to the data, grid lines and tick labels."""

    LEFT, RIGHT, TOP, BOTTOM = 70, 20, 40, 50

    def __init__(self, xs: list[float], ys: list[float], *, title: str, x_label: str, size: tuple[int, int]) -> None:
        width, height = self.size = size
        left, right, top, bottom = self.LEFT, self.RIGHT, self.TOP, self.BOTTOM
        x_low, x_high = min(xs), max(xs)
        y_low, y_high = min(ys), max(ys)
        if x_high == x_low:
            x_high = x_low + 1
        if y_high == y_low:
            y_low, y_high = y_low - 0.5, y_high + 0.5
        pad = (y_high - y_low) * 0.05
        self.x_range, self.y_range = (x_low, x_high), (y_low - pad, y_high + pad)
        self.image = Image.new("RGB", size, "white")
        self.draw = ImageDraw.Draw(self.image)
        font, self.small = _font(16), _font(12)
        self.draw.text((left, 10), title, fill="black", font=font)
        for tick in _nice_ticks(*self.y_range):
            _, py = self.to_pixel(x_low, tick)
            self.draw.line([(left, py), (width - right, py)], fill=(230, 230, 230))
            self.draw.text((left - 6, py), _label(tick), fill="black", font=self.small, anchor="rm")
        for tick in _nice_ticks(x_low, x_high):
            px, _ = self.to_pixel(tick, self.y_range[0])
            self.draw.line([(px, top), (px, height - bottom)], fill=(230, 230, 230))
            self.draw.text((px, height - bottom + 6), _label(tick), fill="black", font=self.small, anchor="mt")
        self.draw.rectangle([left, top, width - right, height - bottom], outline="black")
        self.draw.text(((left + width - right) / 2, height - 18), x_label, fill="black", font=self.small, anchor="mm")

    def to_pixel(self, x: float, y: float) -> tuple[float, float]:
        width, height = self.size
        (x_low, x_high), (y_low, y_high) = self.x_range, self.y_range
        px = self.LEFT + (x - x_low) / (x_high - x_low) * (width - self.LEFT - self.RIGHT)
        py = self.TOP + (y_high - y) / (y_high - y_low) * (height - self.TOP - self.BOTTOM)
        return px, py

    def line(self, points: list[tuple[float, float]], colour: tuple[int, int, int]) -> None:
        pixels = [self.to_pixel(x, y) for x, y in points]
        if len(pixels) == 1:
            x, y = pixels[0]
            self.draw.ellipse([x - 2, y - 2, x + 2, y + 2], fill=colour)
        else:
            self.draw.line(pixels, fill=colour, width=2)

    def band(self, points: list[tuple[float, float, float]], colour: tuple[int, int, int]) -> None:
        # Translucent, so that overlapping bands of two settings both stay visible.
        outline = [self.to_pixel(x, high) for x, _, high in points] + [self.to_pixel(x, low) for x, low, _ in reversed(points)]
        if len(points) < 2:
            x, top = outline[0]
            self.draw.line([(x, top), outline[-1]], fill=colour, width=1)
            return
        layer = Image.new("RGBA", self.size, (0, 0, 0, 0))
        ImageDraw.Draw(layer).polygon(outline, fill=(*colour, 60))
        self.image.paste(Image.alpha_composite(self.image.convert("RGBA"), layer).convert("RGB"))

    def save(self, legend: list[tuple[str, tuple[int, int, int]]], path: Path) -> Path:
        widest = max((self.draw.textlength(name, font=self.small) for name, _ in legend), default=0)
        legend_x, legend_y = self.size[0] - self.RIGHT - max(150, widest + 40), self.TOP + 8
        # A backing, so that curves and bands under the legend do not hide its names.
        self.draw.rectangle([legend_x - 6, legend_y - 4, self.size[0] - self.RIGHT - 4, legend_y + 18 * len(legend)],
                            fill="white", outline=(210, 210, 210))
        for index, (name, colour) in enumerate(legend):
            y = legend_y + index * 18
            self.draw.line([(legend_x, y + 7), (legend_x + 24, y + 7)], fill=colour, width=3)
            self.draw.text((legend_x + 30, y), name, fill="black", font=self.small)
        path.parent.mkdir(parents=True, exist_ok=True)
        self.image.save(path)
        return path


def loss_statistics(record: dict) -> list[str]:
    """Names of the numbers in a logged record that the loss's ``statistics()`` added, in logged order."""
    losses = {key for key, _ in LOSS_SERIES}
    return [
        key for key, value in record.items()
        if key not in losses and key not in ENGINE_VALUES and isinstance(value, (int, float)) and not isinstance(value, bool)
    ]


def write_loss_plot(run_dir: str | Path) -> Path | None:
    """``losses.png`` from the run's ``metrics.jsonl``: D and G losses, and every statistic the loss logged."""
    run_dir = Path(run_dir)
    records = read_metrics(run_dir / "metrics.jsonl")
    statistics = dict.fromkeys(key for record in records for key in loss_statistics(record))
    palette = itertools.cycle(STATISTIC_COLOURS)
    series = []
    for key, colour in [*LOSS_SERIES, *((key, next(palette)) for key in statistics)]:
        points = [(float(r["step"]), float(r[key])) for r in records if isinstance(r.get(key), (int, float))]
        series.append((key, colour, points))
    return draw_line_plot(series, run_dir / LOSS_PLOT, title="losses (averaged per logged interval)")


def _step_of(path: Path) -> int:
    match = re.search(r"(\d+)", path.stem)
    return int(match.group(1)) if match else 0


def write_evolution_gif(frames: Iterable[str | Path], path: str | Path, *, duration_ms: int = 250) -> Path | None:
    """An animated GIF of sample images (oldest first), each labelled with its step; None without frames.

    At most ``MAX_GIF_FRAMES`` frames (evenly spaced, always the last), scaled to at most ``MAX_GIF_SIDE`` px.
    """
    frames = sorted((Path(f) for f in frames), key=_step_of)
    if not frames:
        return None
    if len(frames) > MAX_GIF_FRAMES:
        keep = {round(i * (len(frames) - 1) / (MAX_GIF_FRAMES - 1)) for i in range(MAX_GIF_FRAMES)}
        frames = [frame for index, frame in enumerate(frames) if index in keep]
    font = _font(12)
    images = []
    for frame in frames:
        with Image.open(frame) as opened:
            image = opened.convert("RGB")
        scale = min(1.0, MAX_GIF_SIDE / max(image.size))
        if scale < 1.0:
            image = image.resize((round(image.width * scale), round(image.height * scale)), Image.Resampling.LANCZOS)
        labelled = Image.new("RGB", (image.width, image.height + 18), "white")
        labelled.paste(image, (0, 0))
        ImageDraw.Draw(labelled).text((4, image.height + 2), f"step {_step_of(frame)}", fill="black", font=font)
        images.append(labelled)
    size = images[0].size
    images = [im if im.size == size else im.resize(size) for im in images]
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    images[0].save(path, save_all=True, append_images=images[1:], duration=duration_ms, loop=0)
    return path


def write_run_outputs(run_dir: str | Path) -> dict[str, Path]:
    """The loss plot and the evolution GIF of a run folder (whatever exists so far, e.g. after an interrupt)."""
    run_dir = Path(run_dir)
    written = {}
    loss_plot = write_loss_plot(run_dir)
    if loss_plot is not None:
        written["loss_plot"] = loss_plot
    gif = write_evolution_gif((run_dir / "samples").glob("step-*.png"), run_dir / EVOLUTION_GIF)
    if gif is not None:
        written["evolution"] = gif
    return written


def scatter_plot(points, path: str | Path, *, reference=None, bounds: tuple[float, float, float, float] | None = None,
                 size: int = 400, title: str = "", classes=None) -> Path:
    """2-D points (an (N, 2) array) as dots over optional grey ``reference`` points (e.g. real data), saved
    to ``path``; see :func:`scatter_image`."""
    image = scatter_image(points, reference=reference, bounds=bounds, size=size, title=title, classes=classes)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


def scatter_image(points, *, reference=None, bounds: tuple[float, float, float, float] | None = None,
                  size: int = 400, title: str = "", classes=None) -> Image.Image:
    """2-D points (an (N, 2) array) as dots over optional grey ``reference`` points (e.g. real data).

    ``bounds`` (x_min, x_max, y_min, y_max) default to the reference's extent (so frames of a run line up),
    else the points'; both with a 10% margin. ``classes`` (one integer per point) colours the points by class.
    """
    import numpy as np

    points = np.asarray(points, dtype=np.float64).reshape(-1, 2)
    reference_points = None if reference is None else np.asarray(reference, dtype=np.float64).reshape(-1, 2)
    if bounds is None:
        basis = reference_points if reference_points is not None and len(reference_points) else points
        finite = basis[np.isfinite(basis).all(axis=1)]
        if len(finite) == 0:
            finite = np.zeros((1, 2))
        low, high = finite.min(axis=0), finite.max(axis=0)
        span = np.maximum(high - low, 1e-3)
        low, high = low - 0.1 * span, high + 0.1 * span
        bounds = (low[0], high[0], low[1], high[1])
    x_min, x_max, y_min, y_max = bounds
    image = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(image)

    def to_pixel(x, y):
        return (x - x_min) / (x_max - x_min) * (size - 1), (y_max - y) / (y_max - y_min) * (size - 1)

    if reference_points is not None:
        for x, y in reference_points:
            px, py = to_pixel(x, y)
            draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=(200, 200, 200))
    colours = [CLASS_COLOURS[int(c) % len(CLASS_COLOURS)] for c in classes] if classes is not None else None
    for index, (x, y) in enumerate(points):
        if math.isfinite(x) and math.isfinite(y):
            px, py = to_pixel(x, y)
            draw.ellipse([px - 1.5, py - 1.5, px + 1.5, py + 1.5], fill=colours[index] if colours else (31, 119, 180))
    draw.rectangle([0, 0, size - 1, size - 1], outline="black")
    if title:
        draw.text((6, 4), title, fill="black", font=_font(12))
    return image


def write_vector_samples(samples, path: str | Path, *, reference=None, classes=None) -> Path:
    """Non-image samples: the raw array as ``.npy``, plus a scatter PNG (returned) for 2-D data, its points
    coloured by ``classes`` when given."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    array = samples.detach().float().cpu().numpy() if hasattr(samples, "detach") else np.asarray(samples)
    npy = path.with_suffix(".npy")
    np.save(npy, array)
    if array.ndim == 2 and array.shape[1] == 2:
        return scatter_plot(array, path.with_suffix(".png"), reference=reference, title=path.stem, classes=classes)
    return npy

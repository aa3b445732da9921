"""Digits 0-9 rendered with Pillow's bundled font, and their cache: the data of the ``digits`` data source,
and the training data of the ``digits`` metric's classifier (a helper module of the builtins, not a plugin).

No download: the images are drawn with ``PIL.ImageFont.load_default(size=...)`` (Aileron Regular, a FreeType
font bundled with Pillow >= 10.1), white on black, each with its own random font size, stroke width, aspect,
slant, rotation and shift, so the shapes vary like MNIST's handwritten digits. Each digit is drawn at 2x-4x
resolution (3x up to 64 px, else 2x) and reduced with box averaging for smooth strokes.

The content depends only on ``(dataset seed, count, image size)`` (and the Pillow/FreeType build): the same
triple always gives byte-identical images, so every run trains on the same data whatever the training seed.
Generated arrays are cached as ``.npz`` in ``$GANKIT_CACHE_DIR``, else ``$XDG_CACHE_HOME/gankit``, else
``~/.cache/gankit``; the cache is written atomically and a cache file that fails to load is regenerated.
"""
from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from gankit.errors import GankitError
from gankit.images import Interrupted, cache_directory, cache_temporary, remove_stale_temporaries, require, signal_name

# Bump whenever the rendering changes, so that old cache files are no longer used.
FORMAT_VERSION = 1

DEFAULT_COUNT = 60000
DEFAULT_IMAGE_SIZE = 32
MIN_IMAGE_SIZE = 8
MAX_IMAGE_SIZE = 2048  # larger is a typo: one digit would be 4 MB and take seconds to draw

# Random numbers per image (the label, then _N_PARAMS shape parameters), drawn row by row from one
# ``rng.random((count, 1 + _N_PARAMS))`` matrix, so that the first images of a larger dataset equal a
# smaller one's with the same seed.
_N_PARAMS = 9

# Font sizes (levels between 0.85x and 1.15x of the size that gives a 70%-high digit) and stroke widths (levels
# between these fractions of the font size) that shape each digit's thickness. Few levels, so that few glyphs
# are drawn: only the affine map is per image.
_FONT_LEVELS = 6
_STROKE_LEVELS = 6
_STROKE_MIN = 0.012
_STROKE_MAX = 0.044

Progress = Callable[[int, int], None]


# --- validation -------------------------------------------------------------------------------------------


def _check_int(name: str, value, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise GankitError(f"digits: {name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise GankitError(f"digits: {name} must be >= {minimum}, got {value}")
    return int(value)


def check_arguments(count, seed, image_size) -> tuple[int, int, int]:
    checked = (
        _check_int("count", count, 1),
        _check_int("dataset seed", seed, 0),
        _check_int("image_size", image_size, MIN_IMAGE_SIZE),
    )
    if checked[2] > MAX_IMAGE_SIZE:
        raise GankitError(f"digits: image_size must be at most {MAX_IMAGE_SIZE}, got {checked[2]}")
    return checked


# --- rendering ------------------------------------------------------------------------------------------


class _Fonts:
    """``load_default(size)`` fonts, loaded once per size."""

    def __init__(self) -> None:
        self._fonts: dict[int, object] = {}

    def get(self, size: int):
        font = self._fonts.get(size)
        if font is None:
            font = self._fonts[size] = _load_font(size)
        return font


def _load_font(size: int):
    try:
        from PIL import ImageFont, features

        if not features.check("freetype2"):
            raise ImportError("no FreeType")
        font = ImageFont.load_default(size=size)
    except (ImportError, TypeError, OSError, AttributeError) as error:
        raise GankitError(
            "the digits data source needs Pillow >= 10.1 built with FreeType "
            f"(its scalable default font is unavailable: {type(error).__name__})"
        ) from None
    if not isinstance(font, ImageFont.FreeTypeFont):
        raise GankitError("the digits data source needs Pillow >= 10.1 built with FreeType (pip install -U pillow)")
    return font


def _supersampling(image_size: int) -> int:
    """Render at 3x up to 64 px, then at 2x: box-reducing that much gives smooth strokes."""
    return 3 if image_size <= 64 else 2


def _glyph(digit: int, font_size: int, stroke: int, fonts: _Fonts, glyphs: dict):
    """The digit drawn white on black at this font size and stroke width, cropped to its ink."""
    from PIL import Image, ImageDraw

    key = (digit, font_size, stroke)
    glyph = glyphs.get(key)
    if glyph is None:
        font = fonts.get(font_size)
        margin = font_size // 2 + stroke
        canvas = Image.new("L", (font_size + 2 * margin, font_size + 2 * margin), 0)
        ImageDraw.Draw(canvas).text(
            (margin, margin), str(digit), fill=255, font=font, stroke_width=stroke, stroke_fill=255
        )
        bbox = canvas.getbbox()
        glyph = glyphs[key] = canvas.crop(bbox) if bbox is not None else None
    return glyph


def _render_one(digit: int, params: np.ndarray, image_size: int, fonts: _Fonts, glyphs: dict) -> np.ndarray:
    """One digit as a ``(S, S)`` uint8 array from nine uniform numbers in [0, 1)."""
    from PIL import Image

    u_height, u_font, u_stroke, u_aspect, u_shear, u_angle, u_dx, u_dy, _ = params.tolist()
    factor = _supersampling(image_size)
    big = image_size * factor

    # The glyph is drawn at roughly its final size (Aileron's digits are ~0.72 em tall), with one of a few
    # font sizes and stroke widths, so that the stroke thickness relative to the digit varies.
    height = big * (0.60 + 0.20 * u_height)  # final digit height: 60-80% of the frame
    base = big * 0.70 / 0.72
    font_size = max(8, int(round(base * (0.85 + 0.30 * int(u_font * _FONT_LEVELS) / (_FONT_LEVELS - 1)))))
    stroke_level = int(u_stroke * _STROKE_LEVELS) / (_STROKE_LEVELS - 1)
    stroke = int(round(font_size * (_STROKE_MIN + (_STROKE_MAX - _STROKE_MIN) * stroke_level)))
    glyph = _glyph(digit, font_size, stroke, fonts, glyphs)
    if glyph is None:  # cannot happen with a real font; keep the frame black rather than fail
        return np.zeros((image_size, image_size), np.uint8)
    gw, gh = glyph.size

    # Forward map from glyph coordinates (centred) to frame coordinates: rotate(shear(scale(p))) + centre.
    sy = height / gh
    sx = sy * (0.80 + 0.35 * u_aspect)
    shear = 0.30 * (u_shear - 0.5)  # x += shear * y (slant)
    angle = math.radians(30.0 * (u_angle - 0.5))  # +-15 degrees
    cos, sin = math.cos(angle), math.sin(angle)
    # M = R @ Sh @ S
    a, b = sx, shear * sy
    c, d = 0.0, sy
    m00, m01 = cos * a - sin * c, cos * b - sin * d
    m10, m11 = sin * a + cos * c, sin * b + cos * d

    # Keep the whole digit inside the frame (with a small margin) after slant and rotation.
    half_w, half_h = gw / 2.0, gh / 2.0
    corners = [(sx_ * half_w, sy_ * half_h) for sx_ in (-1, 1) for sy_ in (-1, 1)]
    extent_x = max(abs(m00 * x + m01 * y) for x, y in corners)
    extent_y = max(abs(m10 * x + m11 * y) for x, y in corners)
    limit = big * 0.46
    shrink = min(1.0, limit / extent_x, limit / extent_y)
    m00, m01, m10, m11 = m00 * shrink, m01 * shrink, m10 * shrink, m11 * shrink
    extent_x, extent_y = extent_x * shrink, extent_y * shrink

    # Small random shift, never pushing the digit out of the frame.
    room_x = max(0.0, big / 2.0 - extent_x - big * 0.02)
    room_y = max(0.0, big / 2.0 - extent_y - big * 0.02)
    max_shift = big * 0.08
    cx = big / 2.0 + (2.0 * u_dx - 1.0) * min(room_x, max_shift)
    cy = big / 2.0 + (2.0 * u_dy - 1.0) * min(room_y, max_shift)

    # Image.transform wants the inverse map: output pixel -> input pixel.
    det = m00 * m11 - m01 * m10
    i00, i01, i10, i11 = m11 / det, -m01 / det, -m10 / det, m00 / det
    # p = Minv @ (q - c) + glyph centre
    data = (
        i00,
        i01,
        half_w - i00 * cx - i01 * cy,
        i10,
        i11,
        half_h - i10 * cx - i11 * cy,
    )
    frame = glyph.transform((big, big), Image.Transform.AFFINE, data, resample=Image.Resampling.BILINEAR, fillcolor=0)
    if factor > 1:
        frame = frame.reduce(factor)
    return np.asarray(frame, dtype=np.uint8)


def render_digits(count: int, *, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                  progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Render ``count`` random digits: images uint8 ``(count, 1, S, S)`` and labels uint8 ``(count,)``.

    Deterministic for ``(seed, count, image_size)``. ``progress(done, total)`` is called now and then.
    """
    count, seed, image_size = check_arguments(count, seed, image_size)
    rng = np.random.default_rng(seed)
    params = rng.random((count, 1 + _N_PARAMS))
    labels = np.minimum((params[:, 0] * 10).astype(np.int64), 9).astype(np.uint8)
    images = np.empty((count, 1, image_size, image_size), dtype=np.uint8)
    fonts = _Fonts()
    glyphs: dict = {}
    step = max(1, min(1000, count // 100))
    for index in range(count):
        images[index, 0] = _render_one(int(labels[index]), params[index, 1:], image_size, fonts, glyphs)
        if progress is not None and ((index + 1) % step == 0 or index + 1 == count):
            progress(index + 1, count)
    return images, labels


# --- cache ----------------------------------------------------------------------------------------------


def cache_path(count: int = DEFAULT_COUNT, *, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
               cache_dir=None) -> Path:
    """The cache file for these arguments: its name keys on everything that changes the content."""
    count, seed, image_size = check_arguments(count, seed, image_size)
    name = f"digits-v{FORMAT_VERSION}-seed{seed}-n{count}-{image_size}px.npz"
    return cache_directory(cache_dir) / name


def _read_cache(path: Path, count: int, image_size: int):
    """The cached arrays, or ``None`` when the file is missing, broken or of the wrong shape."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            images = np.ascontiguousarray(data["images"])
            labels = np.ascontiguousarray(data["labels"])
    except Exception:  # truncated, corrupt or not an npz at all: regenerate
        return None
    if (
        images.dtype != np.uint8
        or labels.dtype != np.uint8
        or images.shape != (count, 1, image_size, image_size)
        or labels.shape != (count,)
    ):
        return None
    return images, labels


def _write_cache(path: Path, images: np.ndarray, labels: np.ndarray) -> None:
    """Write atomically: a locked temporary file in the same folder (removed if this fails), then ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with cache_temporary(path) as (handle, temp):
        with os.fdopen(os.dup(handle), "wb") as stream:
            np.savez_compressed(stream, images=images, labels=labels)
            stream.flush()
            os.fsync(stream.fileno())
        os.replace(temp, path)


def load_digits(count: int = DEFAULT_COUNT, *, seed: int = 0, image_size: int = DEFAULT_IMAGE_SIZE,
                cache_dir=None, progress: Optional[Progress] = None) -> tuple[np.ndarray, np.ndarray]:
    """Like :func:`render_digits`, but read from the cache, or rendered and cached on first use.

    A cache that cannot be written (read-only folder) is not an error: the rendered arrays are returned.
    """
    count, seed, image_size = check_arguments(count, seed, image_size)
    path = cache_path(count, seed=seed, image_size=image_size, cache_dir=cache_dir)
    remove_stale_temporaries(path.parent)
    cached = _read_cache(path, count, image_size)
    if cached is not None:
        return cached
    # Each digit: its pixels, a label and ten float64 shape parameters while rendering.
    require(count * (image_size * image_size + 81), f"{count} digits of {image_size}x{image_size}", label="digits")
    try:
        images, labels = render_digits(count, seed=seed, image_size=image_size, progress=progress)
        try:
            _write_cache(path, images, labels)
        except OSError:
            pass
    except KeyboardInterrupt as stop:  # Ctrl-C or SIGTERM: no temporary file is left; say so in one line
        raise Interrupted(
            f"{signal_name(stop)} received while rendering the digits dataset: stopped, no partial cache left",
            signal_name(stop),
        ) from None
    return images, labels

"""Latent walks (issue 16): `gankit sample --interpolate K` writes a looping GIF or a PNG strip of a spherical
interpolation between the noise vectors of `gankit sample -n K`."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageSequence

from conditional_checkpoints import install, invoke, one_line_error, toy_state, write_checkpoint
from gankit.walks import slerp, walk_noise


SHAPE = (1, 8, 8)
Z_DIM = 4
TILE = 8 + 2  # an image and the grid's padding


@pytest.fixture
def plugin(install_entry_points):
    install(install_entry_points)


@pytest.fixture
def plain(plugin, tmp_path):
    return write_checkpoint(tmp_path / "plain.safetensors", "cond-toy", toy_state(SHAPE, Z_DIM, None), shape=SHAPE,
                            z_dim=Z_DIM)


@pytest.fixture
def conditional(plugin, tmp_path):
    return write_checkpoint(tmp_path / "cond.safetensors", "cond-toy", toy_state(SHAPE, Z_DIM, 3), shape=SHAPE,
                            z_dim=Z_DIM, num_classes=3, class_names=["cat", "dog", "bird"])


def tile(picture: np.ndarray, row: int, column: int) -> np.ndarray:
    return picture[2 + row * TILE: row * TILE + TILE, 2 + column * TILE: column * TILE + TILE]


# --- slerp -------------------------------------------------------------------------------------------


def test_slerp_follows_the_great_circle_between_two_vectors():
    start, end = torch.tensor([1.0, 0.0, 0.0]), torch.tensor([0.0, 1.0, 0.0])
    points = slerp(start, end, torch.linspace(0, 1, 5))
    torch.testing.assert_close(points.norm(dim=1), torch.ones(5))  # a straight line would dip to 0.71
    torch.testing.assert_close(points[2], torch.tensor([math.sqrt(0.5), math.sqrt(0.5), 0.0]))
    torch.testing.assert_close(points[[0, -1]], torch.stack([start, end]))


def test_slerp_of_parallel_vectors_is_the_line():
    start = torch.tensor([1.0, 2.0])
    points = slerp(start, 3 * start, torch.tensor([0.0, 0.5, 1.0]))
    torch.testing.assert_close(points, torch.stack([start, 2 * start, 3 * start]))


def test_a_walk_passes_every_key_unchanged():
    keys = torch.randn(4, 6, generator=torch.Generator().manual_seed(0))
    noise = walk_noise(keys, 5)
    assert noise.shape == (16, 6)
    assert torch.equal(noise[::5], keys)


# --- gankit sample --interpolate ---------------------------------------------------------------------


def test_a_gif_walk_loops_through_every_frame_and_starts_at_the_first_sample(plain, tmp_path):
    result = invoke("sample", plain, "--interpolate", "3", "--frames", "4", "--seed", "5", "--out", tmp_path / "w.gif")
    assert result.exit_code == 0, result.output
    with Image.open(tmp_path / "w.gif") as gif:
        assert gif.info.get("loop") == 0 and gif.n_frames == (3 - 1) * 4 + 1
        frames = [np.asarray(frame.convert("RGB")) for frame in ImageSequence.Iterator(gif)]
    assert frames[0].shape == (8, 8, 3)  # one image: torchvision's grid of one has no padding
    assert invoke("sample", plain, "-n", "3", "--seed", "5", "--out", tmp_path / "plain.png").exit_code == 0
    plain_grid = np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))  # 2 x 2 grid of 3 samples
    np.testing.assert_array_equal(frames[0], tile(plain_grid, 0, 0))
    np.testing.assert_array_equal(frames[-1], tile(plain_grid, 1, 0))


def test_a_png_strip_has_the_plain_samples_at_its_key_frames(plain, tmp_path):
    result = invoke("sample", plain, "--interpolate", "3", "--frames", "2", "--out", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    strip = np.asarray(Image.open(tmp_path / "w.png").convert("RGB"))
    assert strip.shape[:2] == (TILE + 2, 5 * TILE + 2)
    assert invoke("sample", plain, "-n", "3", "--out", tmp_path / "plain.png").exit_code == 0
    plain_grid = np.asarray(Image.open(tmp_path / "plain.png").convert("RGB"))
    for key, (row, column) in enumerate([(0, 0), (0, 1), (1, 0)]):
        np.testing.assert_array_equal(tile(strip, 0, 2 * key), tile(plain_grid, row, column))
    assert not np.array_equal(tile(strip, 0, 1), tile(strip, 0, 0))  # frames between the keys move


def test_a_conditional_walk_has_one_row_per_class_walking_the_same_noise(conditional, tmp_path):
    result = invoke("sample", conditional, "--interpolate", "2", "--frames", "3", "--out", tmp_path / "w.png")
    assert result.exit_code == 0, result.output
    strip = np.asarray(Image.open(tmp_path / "w.png").convert("RGB"))
    assert strip.shape[:2] == (3 * TILE + 2, 4 * TILE + 2)
    assert invoke("sample", conditional, "--class", "bird", "--interpolate", "2", "--frames", "3",
                  "--out", tmp_path / "bird.png").exit_code == 0
    bird = np.asarray(Image.open(tmp_path / "bird.png").convert("RGB"))
    np.testing.assert_array_equal(bird[2:TILE], strip[2 + 2 * TILE: 3 * TILE])
    assert invoke("sample", conditional, "--class", "bird", "-n", "2", "--out", tmp_path / "s.png").exit_code == 0
    samples = np.asarray(Image.open(tmp_path / "s.png").convert("RGB"))
    np.testing.assert_array_equal(tile(bird, 0, 3), tile(samples, 0, 1))  # the walk ends at sample 2


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--interpolate", "1"], "at least 2 noise vectors"),
        (["--interpolate", "-3"], "at least 2 noise vectors"),
        (["--interpolate", "3", "--frames", "0"], "--frames must be at least 1"),
        (["--frames", "4", "--out", "{tmp}/x.png"], "--frames applies to a latent walk"),
        (["--interpolate", "3", "-n", "4"], "-n does not apply to --interpolate"),
        (["--interpolate", "3", "--out", "{tmp}/w.npy"], "must end in .gif"),
        (["--out", "{tmp}/w.gif"], ".gif is for --interpolate"),
        (["--interpolate", str(10**12)], "walk frames need about"),
        (["--interpolate", "2", "--frames", str(10**12)], "walk frames need about"),
        (["--interpolate", "2", "--class", "0"], "has no classes"),
    ],
)
def test_bad_walks_are_one_line_and_write_nothing(plain, tmp_path, flags, message):
    flags = [flag.replace("{tmp}", str(tmp_path)) for flag in flags]
    if "--out" not in flags:
        flags += ["--out", str(tmp_path / "w.gif")]
    assert message in one_line_error(invoke("sample", plain, *flags))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["plain.safetensors", "plugin-src"]


def test_a_walk_of_two_d_points_is_refused_in_one_line(plugin, tmp_path):
    path = write_checkpoint(tmp_path / "p.safetensors", "cond-toy", toy_state((2,), 2, None), shape=(2,), z_dim=2)
    line = one_line_error(invoke("sample", path, "--interpolate", "2", "--out", tmp_path / "w.gif"))
    assert "--interpolate draws images" in line and "(2,)" in line
    assert not (tmp_path / "w.gif").exists()


def test_an_existing_walk_is_replaced_only_with_overwrite(plain, tmp_path):
    out = tmp_path / "w.gif"
    out.write_bytes(b"mine")
    assert "already exists" in one_line_error(invoke("sample", plain, "--interpolate", "2", "--out", out))
    assert out.read_bytes() == b"mine"
    assert invoke("sample", plain, "--interpolate", "2", "--out", out, "--overwrite").exit_code == 0
    assert Image.open(out).n_frames == 9  # the default: 8 frames from one vector to the next

"""The ``folder`` and ``anime`` data sources: which files they find, how images are sized, flip augmentation,
the architecture/shape check, and the real anime faces (skipped when ../shared/data/anime-faces is absent)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gankit.batches import BatchStream
from gankit.builtins.anime import AnimeFaces
from gankit.builtins.folder import FolderImages
from gankit.errors import GankitError
from gankit.registry import default_registry
from image_folders import fingerprint, write_image

ANIME_FACES = Path(__file__).resolve().parents[2] / "shared" / "data" / "anime-faces"


@pytest.fixture(autouse=True)
def private_cache(tmp_path, monkeypatch):
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(tmp_path / "cache"))


def banded(path: Path, size, bands, vertical=False) -> Path:
    """Three equal bands of colour, left to right (or top to bottom)."""
    image = Image.new("RGB", size)
    width, height = size
    for index, color in enumerate(bands):
        if vertical:
            image.paste(color, (0, height * index // 3, width, height * (index + 1) // 3))
        else:
            image.paste(color, (width * index // 3, 0, width * (index + 1) // 3, height))
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path)
    return path


RED, BLUE, GREEN = (255, 0, 0), (0, 0, 255), (0, 255, 0)


def test_folder_is_searched_recursively_for_every_image_format(tmp_path):
    root = tmp_path / "mine"
    for name in ("a.jpg", "b.JPEG", "c.png", "d.webp", "e.bmp", "f.gif", "sub/g.jpg", "sub/deeper/h.png"):
        write_image(root / name)
    (root / "notes.txt").write_text("ignored")
    write_image(root / ".hidden.png")
    write_image(root / ".thumbnails" / "x.png")
    source = FolderImages(root=str(root), image_size=8)
    assert source.names == ["a.jpg", "b.JPEG", "c.png", "d.webp", "e.bmp", "f.gif", "sub/deeper/h.png", "sub/g.jpg"]
    assert source.skipped == []
    assert source.shape == (3, 8, 8) and tuple(source.tensor().shape) == (8, 3, 8, 8)
    assert source.tensor().dtype == torch.uint8
    item = source[0]
    assert item.dtype == torch.float32 and -1.0 <= float(item.min()) <= float(item.max()) <= 1.0


def test_default_size_and_registration(tmp_path):
    write_image(tmp_path / "one" / "x.png", size=(100, 80))
    built = default_registry().build("data", "folder:channels=1", root=str(tmp_path / "one"), image_size=None, seed=0)
    assert built.value.shape == (1, 64, 64)


@pytest.mark.parametrize("vertical", [False, True])
def test_images_are_resized_and_centre_cropped(tmp_path, vertical):
    size = (90, 30) if not vertical else (30, 90)
    banded(tmp_path / "wide" / "x.png", size, (RED, BLUE, GREEN), vertical=vertical)
    image = FolderImages(root=str(tmp_path / "wide"), image_size=10).images[0]
    # The centre square is the blue band: red and green are cropped away, not squeezed in.
    assert image[2].min() > 200 and image[0].max() < 40 and image[1].max() < 40


def test_numbered_files_keep_their_order(tmp_path):
    for number in (10, 2, 1, 33, 0):
        write_image(tmp_path / "n" / f"{number}.jpg", color=(number, 0, 0))
    assert FolderImages(root=str(tmp_path / "n"), image_size=4).names == ["0.jpg", "1.jpg", "2.jpg", "10.jpg", "33.jpg"]


def test_flip_mirrors_about_half_the_batches_reproducibly(tmp_path):
    for index in range(32):
        banded(tmp_path / "f" / f"{index}.png", (12, 12), (RED, BLUE, GREEN))
    plain = FolderImages(root=str(tmp_path / "f"), image_size=12)
    flipping = FolderImages(root=str(tmp_path / "f"), image_size=12, flip=True)
    assert not plain.horizontal_flip and flipping.horizontal_flip

    def left_red(source, seed=0, state=None):
        stream = BatchStream(source, 8, seed=seed, device=torch.device("cpu"))
        if state is not None:
            stream.load_state_dict(state)
        batches = [stream.next() for _ in range(8)]  # two epochs
        return torch.cat([b[:, 0, :, 0] > 0.5 for b in batches]).all(dim=1).tolist(), stream

    unflipped, _ = left_red(plain)
    assert all(unflipped)
    mirrored, _ = left_red(flipping)
    assert 10 < mirrored.count(False) < 54  # each mirrored with probability 1/2: green on the left
    again, _ = left_red(flipping)
    assert again == mirrored
    # A resumed stream sees the same flips as the uninterrupted one.
    stream = BatchStream(flipping, 8, seed=0, device=torch.device("cpu"))
    for _ in range(5):
        stream.next()
    resumed, _ = left_red(flipping, state=stream.state_dict())
    assert resumed[:3 * 8] == mirrored[5 * 8 :]


def test_user_folder_is_never_written(tmp_path):
    for index in range(4):
        write_image(tmp_path / "keep" / f"{index}.png")
    before = fingerprint(tmp_path / "keep")
    FolderImages(root=str(tmp_path / "keep"), image_size=8)
    FolderImages(root=str(tmp_path / "keep"), image_size=8)
    FolderImages(root=str(tmp_path / "keep"), image_size=8, cache=False)
    assert fingerprint(tmp_path / "keep") == before


def test_folder_needs_a_root():
    with pytest.raises(GankitError, match="--data-root"):
        FolderImages()


def test_architecture_that_cannot_serve_the_shape_names_both(tmp_path):
    from gankit.config import RunConfig
    from gankit.engine import Trainer

    for index in range(4):
        write_image(tmp_path / "odd" / f"{index}.png")
    config = RunConfig.from_sources(
        overrides={"arch": "dcgan:width=4", "data": "folder", "data_root": str(tmp_path / "odd"), "image_size": 20,
                   "batch_size": 2, "steps": 1, "device": "cpu"}
    )
    with pytest.raises(GankitError) as raised:
        Trainer(config)
    message = str(raised.value)
    assert "'folder'" in message and "(3, 20, 20)" in message and "dcgan" in message and "\n" not in message


# -- anime --------------------------------------------------------------------------------------------------


def test_anime_defaults_to_faces_folder_and_the_cpu_recipe_at_64_rgb(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for number in (3, 1, 2):
        write_image(tmp_path / "faces" / f"{number}.jpg", size=(96, 96), mode="L", color=number * 50)
    source = AnimeFaces()
    assert source.shape == (3, 64, 64) and source.recipe == "cpu"
    assert source.names == ["1.jpg", "2.jpg", "3.jpg"]
    assert source.recommended["arch"] == "dcgan:dcgan:width=32" and source.recommended["ema"] == 0.999
    assert AnimeFaces.planned_shape(image_size=None) == (3, 64, 64)


def test_anime_article_recipe_is_the_articles_96_pixels_with_the_engine_defaults(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_image(tmp_path / "faces" / "0.jpg", size=(96, 96))
    source = AnimeFaces(recipe="article")
    assert source.shape == (3, 96, 96) and source.recommended == {}
    assert AnimeFaces.planned_shape(image_size=None, recipe="article") == (3, 96, 96)
    assert AnimeFaces(recipe="article", image_size=48).shape == (3, 48, 48)  # --image-size still wins


def test_anime_recipes_recommend_and_the_users_settings_win(tmp_path):
    write_image(tmp_path / "faces" / "0.jpg", size=(96, 96))
    write_image(tmp_path / "faces" / "1.jpg", size=(96, 96))
    from gankit.config import RunConfig
    from gankit.engine import Trainer

    def built(**settings):
        overrides = {"data_root": str(tmp_path / "faces"), "device": "cpu", "batch_size": 2, **settings}
        return Trainer(RunConfig.from_sources(overrides=overrides)).config

    cpu = built(data="anime")
    assert (cpu.arch, cpu.ema, cpu.steps, cpu.augment) == ("dcgan:dcgan:width=32", 0.999, 1500, [])
    mine = built(data="anime", arch="dcgan:width=8", ema=0.99, steps=3)
    assert mine.arch.endswith("width=8") and (mine.ema, mine.steps) == (0.99, 3)
    article = built(data="anime:recipe=article")
    assert article.arch.endswith("dcgan") and article.augment == [] and article.ema is None


def test_anime_missing_folder_says_how_to_point_at_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(GankitError) as raised:
        AnimeFaces()
    message = str(raised.value)
    assert "'faces'" in message and "not found" in message and "--data-root" in message and "\n" not in message


@pytest.mark.skipif(not ANIME_FACES.is_dir(), reason="needs ../shared/data/anime-faces")
def test_real_anime_faces_shapes_range_and_cache_reuse():
    first = AnimeFaces(root=str(ANIME_FACES), limit=600, recipe="article")
    assert first.built_cache and first.skipped == []
    data = first.tensor()
    assert tuple(data.shape) == (600, 3, 96, 96) and data.dtype == torch.uint8
    assert first.names[:3] == ["0.jpg", "1.jpg", "2.jpg"]
    # Real photos use the whole range; scaled items lie in [-1, 1].
    assert int(data.min()) <= 5 and int(data.max()) >= 250
    item = first[7]
    assert -1.0 <= float(item.min()) and float(item.max()) <= 1.0
    with Image.open(ANIME_FACES / "7.jpg") as image:
        expected = np.asarray(image.convert("RGB")).transpose(2, 0, 1)
    assert np.array_equal(np.asarray(first.images[7]), expected)  # 96x96 files are stored exactly
    second = AnimeFaces(root=str(ANIME_FACES), limit=600, recipe="article")
    assert not second.built_cache and second.cache_path == first.cache_path
    assert torch.equal(second.tensor(), data)
    batch = BatchStream(second, 64, seed=0, device=torch.device("cpu")).next()
    assert tuple(batch.shape) == (64, 3, 96, 96) and batch.dtype == torch.float32


def test_photos_are_turned_by_their_exif_orientation(tmp_path):
    image = Image.new("RGB", (40, 20), RED)
    image.paste(BLUE, (0, 0, 20, 20))  # stored: blue left, red right
    exif = image.getexif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise: blue on top, red below
    (tmp_path / "photo").mkdir()
    image.save(tmp_path / "photo" / "turned.jpg", exif=exif, quality=95)
    pixels = FolderImages(root=str(tmp_path / "photo"), image_size=8).images[0]
    top, bottom = pixels[:, 1, 4], pixels[:, 6, 4]
    assert top[2] > 200 and top[0] < 60
    assert bottom[0] > 200 and bottom[2] < 60


def test_progress_bar_shows_only_on_a_terminal_and_only_once_decoding(monkeypatch):
    import io

    import rich.console

    from gankit.images import progress_bar

    with progress_bar("decoding", 10_000) as update:  # pytest captures stderr: not a terminal
        assert update is None
    output = io.StringIO()
    terminal = rich.console.Console
    monkeypatch.setattr(rich.console, "Console", lambda **_: terminal(file=output, force_terminal=True, width=80))
    with progress_bar("decoding", 10_000) as update:
        assert output.getvalue() == ""  # a reused cache never shows a bar
        update(5_000, 10_000)
    assert "decoding" in output.getvalue()

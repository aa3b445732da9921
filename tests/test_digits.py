"""The builtin ``digits`` data source: rendering, determinism, caching, validation and registration."""
import numpy as np
import pytest
import torch

import gankit
from gankit.builtins import digits, rendered_digits
from gankit.builtins.digits import DigitsDataSource
from gankit.builtins.rendered_digits import cache_path, load_digits, render_digits
from gankit.components import DataSource

COUNT = 200


@pytest.fixture(autouse=True)
def cache_dir(tmp_path, monkeypatch):
    """Every test caches into its own folder, never into the user's cache."""
    folder = tmp_path / "cache"
    monkeypatch.setenv("GANKIT_CACHE_DIR", str(folder))
    return folder


@pytest.fixture(scope="module")
def rendered():
    return render_digits(COUNT, seed=0)


# --- rendering ------------------------------------------------------------------------------------------


def test_shapes_and_dtypes(rendered):
    images, labels = rendered
    assert images.shape == (COUNT, 1, 32, 32)
    assert images.dtype == np.uint8
    assert labels.shape == (COUNT,)
    assert labels.dtype == np.uint8


def test_other_image_size():
    images, labels = render_digits(10, seed=0, image_size=20)
    assert images.shape == (10, 1, 20, 20)
    assert labels.shape == (10,)


def test_same_seed_gives_identical_bytes(rendered):
    images, labels = render_digits(COUNT, seed=0)
    assert images.tobytes() == rendered[0].tobytes()
    assert labels.tobytes() == rendered[1].tobytes()


def test_different_seed_gives_different_images(rendered):
    images, labels = render_digits(COUNT, seed=1)
    assert images.tobytes() != rendered[0].tobytes()
    assert labels.tobytes() != rendered[1].tobytes()


def test_labels_cover_all_classes(rendered):
    _, labels = rendered
    assert labels.max() <= 9
    assert set(np.unique(labels).tolist()) == set(range(10))


def test_images_are_white_digits_on_black(rendered):
    images, _ = rendered
    flat = images.reshape(COUNT, -1)
    assert (flat.max(axis=1) == 255).all()  # every image has ink
    borders = np.concatenate([images[:, 0, 0, :], images[:, 0, -1, :], images[:, 0, :, 0], images[:, 0, :, -1]], 1)
    assert borders.max() < 64  # the digit stays inside the frame, on black
    ink = (flat > 127).mean(axis=1)
    assert 0.05 < ink.mean() < 0.35
    assert len(np.unique(flat, axis=0)) == COUNT  # no two images alike


def test_digit_fills_most_of_the_frame(rendered):
    images, _ = rendered
    heights = []
    for image in images[:, 0]:
        rows = np.nonzero(image.max(axis=1) > 127)[0]
        heights.append(rows[-1] - rows[0] + 1)
    mean_height = np.mean(heights) / 32
    assert 0.5 < mean_height < 0.85


def test_progress_callback():
    calls = []
    render_digits(30, progress=lambda done, total: calls.append((done, total)))
    assert calls and calls[-1] == (30, 30)
    assert all(total == 30 for _, total in calls)


# --- cache ----------------------------------------------------------------------------------------------


def test_cache_is_created_and_reused(cache_dir, monkeypatch):
    images, labels = load_digits(COUNT, seed=0)
    path = cache_path(COUNT, seed=0)
    assert path.parent == cache_dir
    assert path.is_file()
    assert [p.name for p in cache_dir.iterdir()] == [path.name]  # no temp file left behind

    def fail(*args, **kwargs):
        raise AssertionError("render_digits called although the cache exists")

    monkeypatch.setattr(rendered_digits, "render_digits", fail)
    again_images, again_labels = load_digits(COUNT, seed=0)
    assert again_images.tobytes() == images.tobytes()
    assert again_labels.tobytes() == labels.tobytes()


def test_cache_name_keys_on_content():
    names = {
        cache_path(COUNT, seed=0).name,
        cache_path(COUNT, seed=1).name,
        cache_path(COUNT + 1, seed=0).name,
        cache_path(COUNT, seed=0, image_size=28).name,
    }
    assert len(names) == 4
    assert all(f"v{rendered_digits.FORMAT_VERSION}" in name for name in names)


def test_cache_folder_from_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("GANKIT_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert rendered_digits.cache_directory() == tmp_path / "xdg" / "gankit"
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert rendered_digits.cache_directory() == tmp_path / "home" / ".cache" / "gankit"
    assert rendered_digits.cache_directory(tmp_path / "explicit") == tmp_path / "explicit"


def test_explicit_cache_dir(tmp_path, cache_dir):
    folder = tmp_path / "elsewhere"
    load_digits(20, cache_dir=folder)
    assert cache_path(20, cache_dir=folder).is_file()
    assert not cache_dir.exists()


@pytest.mark.parametrize("content", [b"", b"not an npz file at all", b"PK\x03\x04truncated"])
def test_corrupt_cache_is_regenerated(content, monkeypatch):
    expected_images, expected_labels = load_digits(50)
    path = cache_path(50)
    path.write_bytes(content)

    calls = []
    real_render = rendered_digits.render_digits
    monkeypatch.setattr(rendered_digits, "render_digits", lambda *a, **k: calls.append(1) or real_render(*a, **k))
    images, labels = load_digits(50)
    assert calls == [1]
    assert images.tobytes() == expected_images.tobytes()
    assert labels.tobytes() == expected_labels.tobytes()
    # ...and the regenerated cache is good again.
    monkeypatch.setattr(rendered_digits, "render_digits", lambda *a, **k: pytest.fail("cache not rewritten"))
    assert load_digits(50)[0].tobytes() == expected_images.tobytes()


def test_cache_with_wrong_shape_is_regenerated():
    path = cache_path(50)
    path.parent.mkdir(parents=True)
    np.savez(path, images=np.zeros((3, 1, 32, 32), np.uint8), labels=np.zeros(3, np.uint8))
    images, labels = load_digits(50)
    assert images.shape == (50, 1, 32, 32) and labels.shape == (50,)


def test_interrupted_write_leaves_no_cache(cache_dir, monkeypatch):
    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(np, "savez_compressed", interrupted)
    with pytest.raises(KeyboardInterrupt):
        load_digits(20)
    assert list(cache_dir.iterdir()) == []


# --- validation -----------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs",
    [
        {"count": 0},
        {"count": -5},
        {"count": 2.5},
        {"count": True},
        {"count": 10, "image_size": 7},
        {"count": 10, "image_size": 0},
        {"count": 10, "image_size": -32},
        {"count": 10, "seed": -1},
    ],
)
def test_bad_arguments_raise(kwargs):
    for function in (render_digits, load_digits):
        with pytest.raises(gankit.GankitError) as info:
            function(**kwargs)
        assert "\n" not in str(info.value)


@pytest.mark.parametrize("kwargs", [{"count": 0}, {"image_size": 4}, {"count": 10, "dataset_seed": -1}])
def test_data_source_bad_arguments_raise(kwargs):
    with pytest.raises(gankit.GankitError):
        DigitsDataSource(**kwargs)


# --- data source ----------------------------------------------------------------------------------------


@pytest.fixture
def source():
    return DigitsDataSource(count=COUNT)


def test_data_source_shape_and_items(source):
    assert isinstance(source, DataSource)
    assert source.shape == (1, 32, 32)
    assert len(source) == COUNT
    item, label = source[0]
    assert item.dtype == torch.float32
    assert item.shape == (1, 32, 32)
    assert label == int(source.labels()[0])


def test_data_source_value_range(source):
    items = torch.stack([source[i][0] for i in range(len(source))])
    assert items.min().item() == -1.0
    assert items.max().item() <= 1.0
    assert items.max().item() > 0.99
    # exactly x / 127.5 - 1, not the precedence bug x - 127.5 / 127.5
    raw = source.tensor()[3].float()
    assert torch.allclose(source[3][0], raw / 127.5 - 1)


def test_data_source_tensor_and_labels(source):
    images, labels = load_digits(COUNT, seed=0)
    tensor = source.tensor()
    assert tensor.dtype == torch.uint8
    assert tensor.shape == (COUNT, 1, 32, 32)
    assert np.array_equal(tensor.numpy(), images)
    assert source.labels().dtype == torch.int64
    assert source.labels().shape == (COUNT,)
    assert np.array_equal(source.labels().numpy(), labels)


def test_data_source_ignores_training_seed():
    a = DigitsDataSource(count=50, seed=1)
    b = DigitsDataSource(count=50, seed=2)
    assert torch.equal(a.tensor(), b.tensor())
    c = DigitsDataSource(count=50, dataset_seed=1)
    assert not torch.equal(a.tensor(), c.tensor())


def test_data_source_image_size_and_root(tmp_path, cache_dir):
    source = DigitsDataSource(root=str(tmp_path / "root"), image_size=16, count=20)
    assert source.shape == (1, 16, 16)
    assert source.tensor().shape == (20, 1, 16, 16)
    assert source[0][0].shape == (1, 16, 16)
    assert cache_path(20, image_size=16, cache_dir=tmp_path / "root").is_file()
    assert not cache_dir.exists()


# --- registration ---------------------------------------------------------------------------------------


def test_registers_through_the_public_hook():
    registered = []

    def register(name, factory, *, description="", aliases=()):
        registered.append((name, factory, description, tuple(aliases)))

    digits.gankit_register_data_sources(register=register)
    assert len(registered) == 1
    name, factory, description, aliases = registered[0]
    assert name == "digits"
    assert factory is DigitsDataSource
    assert description
    assert aliases == ("mnist-like",)
    assert hasattr(digits.gankit_register_data_sources, "gankit_impl")

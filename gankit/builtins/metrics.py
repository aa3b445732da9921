"""Builtin metrics: ``modes`` (the PacGAN 2-D protocol), ``swd`` (sliced Wasserstein distance on Laplacian
pyramid patches), ``fid`` (Frechet Inception distance, local weights only) and ``digits`` (a classifier's view
of generated digits)."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

import gankit
from gankit.components import Metric
from gankit.errors import GankitError


def real_examples(data, count: int, *, seed: int = 0) -> torch.Tensor:
    """``count`` examples of a DataSource (fewer if it is smaller), drawn without replacement, as float in
    the training range ([-1, 1] for images)."""
    whole = data.tensor()
    size = int(whole.shape[0]) if whole is not None else len(data)
    order = torch.randperm(size, generator=torch.Generator().manual_seed(seed))[: min(count, size)]
    if whole is not None:
        batch = whole[order]
    else:
        batch = torch.stack([torch.as_tensor(data[int(i)]) for i in order])
    if batch.dtype == torch.uint8:
        return batch.float() / 127.5 - 1.0
    return batch.float()


def _require_images(name: str, shape) -> None:
    if len(shape) != 3:
        raise GankitError(f"metric {name!r} scores images (channels, height, width), the data has shape {tuple(shape)}")


# --- modes: the PacGAN 2-D protocol ------------------------------------------------------------------------


def mode_statistics(samples: torch.Tensor, modes: torch.Tensor, std: float) -> dict[str, float]:
    """PacGAN's synthetic-data scores: a sample is high quality (HQ) when its nearest mode is within 3 std;
    a mode is covered when it is the nearest mode of at least one HQ sample; ``kl`` is KL(p || uniform) of the
    HQ samples' nearest-mode histogram (0 when every mode gets the same share)."""
    distances = torch.cdist(samples.double().reshape(len(samples), -1), modes.double())
    nearest_distance, nearest = distances.min(dim=1)
    high_quality = nearest_distance <= 3 * std
    counts = torch.bincount(nearest[high_quality], minlength=len(modes)).double()
    hq_count = float(counts.sum())
    if hq_count == 0:
        # No HQ sample: the histogram is undefined; report log K, the KL of a total collapse, the worst case.
        return {"modes": 0.0, "hq": 0.0, "kl": math.log(len(modes))}
    share = counts / hq_count
    present = share > 0
    kl = float((share[present] * torch.log(share[present] * len(modes))).sum())
    return {"modes": float(present.sum()), "hq": float(high_quality.double().mean()), "kl": kl}


def conditional_mode_statistics(samples: torch.Tensor, labels: torch.Tensor, modes: torch.Tensor,
                                std: float) -> dict[str, float]:
    """How well a conditional generator hits the mode it is asked for: ``mode_accuracy``, the share of samples
    asked for as mode k within 3 std of mode k, and ``worst_mode_coverage``, that share for the mode asked for
    that gets the lowest (a mode the generator cannot produce on request scores 0)."""
    labels = _checked_labels(labels, len(samples), len(modes), "modes")
    points = samples.double().reshape(len(samples), -1)
    on_target = (points - modes.double()[labels]).norm(dim=1) <= 3 * std
    asked = torch.bincount(labels, minlength=len(modes))
    hits = torch.bincount(labels[on_target], minlength=len(modes))
    per_mode = hits[asked > 0].double() / asked[asked > 0].double()
    return {"mode_accuracy": float(on_target.double().mean()), "worst_mode_coverage": float(per_mode.min())}


def _checked_labels(labels, count: int, classes: int, metric: str) -> torch.Tensor:
    labels = torch.as_tensor(labels, dtype=torch.int64).reshape(-1)
    if len(labels) != count:
        raise GankitError(f"metric {metric!r}: {len(labels)} labels for {count} samples")
    if len(labels) and (int(labels.min()) < 0 or int(labels.max()) >= classes):
        raise GankitError(
            f"metric {metric!r}: labels must be 0 to {classes - 1}, got {int(labels.min())} to {int(labels.max())}"
        )
    return labels


class ModeCoverage(Metric):
    """Modes covered, the HQ fraction and KL to uniform, for data sources that declare ``modes`` and ``mode_std``."""

    key = "modes"
    higher_is_better = True
    sample_count = 2500

    def check(self, *, shape, data) -> None:
        if getattr(data, "modes", None) is None or getattr(data, "mode_std", None) is None:
            raise GankitError(
                "metric 'modes' needs a data source with known modes (e.g. ring or grid): "
                f"{type(data).__name__} declares no modes and mode_std"
            )

    def evaluate(self, samples, *, data, labels=None) -> dict[str, float]:
        modes, std = torch.as_tensor(data.modes), float(data.mode_std)
        values = mode_statistics(samples, modes, std)
        if labels is not None:  # a conditional generator: did each sample land on the mode asked for?
            values.update(conditional_mode_statistics(samples, labels, modes, std))
        return values


# --- swd: sliced Wasserstein distance on Laplacian pyramid patches (Karras et al. 2018) ------------------


_BINOMIAL = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0]) / 16.0


def _blur(images: torch.Tensor) -> torch.Tensor:
    channels = images.shape[1]
    kernel = (_BINOMIAL[:, None] * _BINOMIAL[None, :]).to(images)
    kernel = kernel.expand(channels, 1, 5, 5)
    return F.conv2d(F.pad(images, (2, 2, 2, 2), mode="reflect"), kernel, groups=channels)


def laplacian_pyramid(images: torch.Tensor, min_size: int = 16) -> list[torch.Tensor]:
    """Band-pass levels from the full resolution down to the last size of at least ``min_size`` (the last level
    is the low-pass image): 64 -> 64, 32, 16 and 96 -> 96, 48, 24, as Karras et al.'s resolutions ``res >= 16``."""
    levels = []
    current = images
    height, width = current.shape[-2:]
    while min(height, width) // 2 >= min_size and height % 2 == 0 and width % 2 == 0:
        smaller = _blur(current)[:, :, ::2, ::2]
        upsampled = torch.zeros_like(current)
        upsampled[:, :, ::2, ::2] = smaller * 4.0
        levels.append(current - _blur(upsampled))
        current = smaller
        height, width = current.shape[-2:]
    levels.append(current)
    return levels


def _patches(level: torch.Tensor, ys: torch.Tensor, xs: torch.Tensor, size: int) -> torch.Tensor:
    """The ``size`` x ``size`` neighbourhoods at corners ``(ys, xs)`` (each ``(N, P)``), flattened:
    ``(N*P, C*size*size)``."""
    count, channels = level.shape[:2]
    offsets = torch.arange(size)
    rows = (ys[..., None] + offsets)[..., :, None]  # (N, P, size, 1)
    cols = (xs[..., None] + offsets)[..., None, :]  # (N, P, 1, size)
    index = torch.arange(count)[:, None, None, None]
    gathered = level.permute(0, 2, 3, 1)[index, rows, cols]  # (N, P, size, size, C)
    return gathered.permute(0, 1, 4, 2, 3).reshape(count * ys.shape[1], channels * size * size)


def _normalize_descriptors(descriptors: torch.Tensor, channels: int) -> torch.Tensor:
    # Per-channel mean and std over all patches, as in Karras et al.'s reference code.
    shaped = descriptors.reshape(descriptors.shape[0], channels, -1)
    mean = shaped.mean(dim=(0, 2), keepdim=True)
    std = shaped.std(dim=(0, 2), keepdim=True).clamp_min(1e-8)
    return ((shaped - mean) / std).reshape(descriptors.shape[0], -1)


def _sorted_columns(values: torch.Tensor) -> torch.Tensor:
    # numpy sorts each column about 10x faster than torch.sort(dim=0) on a CPU (2.6 s against 26 s for the
    # 128,000 x 128 projections of 1,000 images); the sorted values are the same.
    return torch.from_numpy(np.sort(values.numpy(), axis=0))


def sliced_wasserstein(first: torch.Tensor, second: torch.Tensor, *, directions: int, repeats: int,
                       generator: torch.Generator) -> float:
    """Mean over random unit directions of the 1-D Wasserstein distance between the projected point sets."""
    count = min(len(first), len(second))
    first, second = first[:count], second[:count]
    results = []
    for _ in range(repeats):
        projection = torch.randn(first.shape[1], directions, generator=generator)
        projection /= projection.norm(dim=0, keepdim=True)
        projected_first = _sorted_columns(first @ projection)
        projected_second = _sorted_columns(second @ projection)
        results.append(float((projected_first - projected_second).abs().mean()))
    return sum(results) / len(results)


def drawn_images(images: torch.Tensor, count: int, *, seed: int) -> torch.Tensor:
    """``count`` of ``images`` (all when there are fewer), drawn without replacement, as float in [-1, 1]."""
    order = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[: min(count, len(images))]
    batch = images[order]
    return batch.float() / 127.5 - 1.0 if batch.dtype == torch.uint8 else batch.float()


def reference_folder_files(root: str, shape):
    """The folder and image files of ``swd:reference=DIR``, checked against the run's image ``shape``."""
    from gankit.images import IMAGE_SUFFIXES, check_folder, scan_images

    channels, height, width = shape
    if height != width or channels not in (1, 3):
        raise GankitError(
            f"swd reference=DIR decodes square grayscale or RGB images; the run's images are {channels}x{height}x{width}"
        )
    folder = check_folder(root, label="swd reference", hint="pass swd:reference=DIR, a folder of images")
    files, skipped = scan_images(folder)
    if not files:
        raise GankitError(f"swd reference folder {str(folder)!r} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return folder, files, skipped


def reference_folder_images(root: str, shape) -> torch.Tensor:
    """Every image of the folder ``root``, decoded (through the image cache) to the run's ``shape``, uint8."""
    from gankit.images import ImageFiles

    folder, files, skipped = reference_folder_files(root, shape)
    images = ImageFiles()
    images.load(folder, files, skipped, label="swd reference", image_size=shape[-1], channels=shape[0])
    return images.tensor()


class SlicedWasserstein(Metric):
    """SWD x 1e3 between generated and real images, per pyramid level and averaged (``swd``); lower is better.

    The real images are, in this order of preference: the folder ``reference=DIR``, the data source's held-out
    images (``holdout_tensor()``), the training data. ``reference_images`` reports how many were compared and
    ``held_out`` whether they were held out of training (1) or not (0)."""

    key = "swd"
    higher_is_better = False
    sample_count = 2048

    def __init__(self, *, patch_size: int = 7, patches_per_image: int = 128, directions: int = 128,
                 repeats: int = 4, seed: int = 0, reference: str | None = None) -> None:
        for name, value in (("patch_size", patch_size), ("patches_per_image", patches_per_image),
                            ("directions", directions), ("repeats", repeats)):
            if value <= 0:
                raise GankitError(f"swd option {name} must be positive, got {value}")
        self.patch_size, self.patches_per_image = patch_size, patches_per_image
        self.directions, self.repeats, self.seed = directions, repeats, seed
        if reference is not None and not reference.strip():
            raise GankitError("swd option reference needs a folder of images: swd:reference=DIR")
        self.reference = reference
        self._reference_images: torch.Tensor | None = None

    def check(self, *, shape, data) -> None:
        _require_images("swd", shape)
        if self.reference:
            reference_folder_files(self.reference, shape)

    def real_images(self, data, count: int, shape) -> tuple[torch.Tensor, bool]:
        """The real images to compare ``count`` samples of ``shape`` with, and whether they are held out."""
        if self.reference:
            if self._reference_images is None:
                self._reference_images = reference_folder_images(self.reference, shape)
            return drawn_images(self._reference_images, count, seed=self.seed), False
        holdout = getattr(data, "holdout_tensor", None)
        held_out = holdout() if callable(holdout) else None
        if held_out is not None and len(held_out):
            if tuple(held_out.shape[1:]) != tuple(shape):
                raise GankitError(f"swd: the held-out images have shape {tuple(held_out.shape[1:])}, "
                                  f"the samples {tuple(shape)}")
            return drawn_images(held_out, count, seed=self.seed), True
        return real_examples(data, count, seed=self.seed), False

    def evaluate(self, samples, *, data) -> dict[str, float]:
        real, held_out = self.real_images(data, len(samples), tuple(samples.shape[1:]))
        values = self.distance(samples, real)
        values["reference_images"] = float(min(len(samples), len(real)))
        values["held_out"] = float(held_out)
        return values

    def distance(self, first: torch.Tensor, second: torch.Tensor) -> dict[str, float]:
        generator = torch.Generator().manual_seed(self.seed)
        count = min(len(first), len(second))
        results: dict[str, float] = {}
        with torch.no_grad():
            for level_first, level_second in zip(laplacian_pyramid(first[:count].float()),
                                                 laplacian_pyramid(second[:count].float())):
                channels, height, width = level_first.shape[1:]
                size = min(self.patch_size, height, width)
                # The same random patch positions in both sets: uniform either way, and a set scores 0 with itself.
                ys = torch.randint(0, height - size + 1, (count, self.patches_per_image), generator=generator)
                xs = torch.randint(0, width - size + 1, (count, self.patches_per_image), generator=generator)
                descriptors = [
                    _normalize_descriptors(_patches(level, ys, xs, size), channels)
                    for level in (level_first, level_second)
                ]
                value = sliced_wasserstein(*descriptors, directions=self.directions, repeats=self.repeats,
                                           generator=generator)
                results[f"swd_{level_first.shape[-1]}px"] = round(value * 1e3, 4)
        results["swd"] = round(sum(results.values()) / len(results), 4)
        return results


# --- fid: Frechet Inception distance ----------------------------------------------------------------------


def frechet_distance(mean_a, covariance_a, mean_b, covariance_b) -> float:
    """||mu_a - mu_b||^2 + Tr(S_a + S_b - 2 (S_a S_b)^(1/2)), in float64.

    Tr((S_a S_b)^(1/2)) = Tr((A S_b A)^(1/2)) with A = S_a^(1/2): symmetric eigendecompositions only, which
    stay accurate for the rank-deficient covariances of small sample sets (negative eigenvalues are rounding).
    """
    mean_a, mean_b = np.asarray(mean_a, np.float64), np.asarray(mean_b, np.float64)
    covariance_a, covariance_b = np.asarray(covariance_a, np.float64), np.asarray(covariance_b, np.float64)
    values, vectors = np.linalg.eigh((covariance_a + covariance_a.T) / 2)
    root_a = (vectors * np.sqrt(np.clip(values, 0, None))) @ vectors.T
    middle = root_a @ covariance_b @ root_a
    eigenvalues = np.linalg.eigvalsh((middle + middle.T) / 2)
    trace_sqrt = float(np.sqrt(np.clip(eigenvalues, 0, None)).sum())
    difference = mean_a - mean_b
    return float(difference @ difference + np.trace(covariance_a) + np.trace(covariance_b) - 2 * trace_sqrt)


def gaussian_statistics(features: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    array = features.double().cpu().numpy()
    return array.mean(axis=0), np.cov(array, rowvar=False)


WEIGHT_FILES = ("pt_inception-2015-12-05*.pth", "inception_v3_google*.pth", "inception_v3*.safetensors")
HOW_TO_GET_WEIGHTS = (
    "fid needs Inception v3 weights from a local file: pass --weights PATH (or --metric fid:weights=PATH) to "
    "pytorch-fid's pt_inception-2015-12-05-6726825d.pth or torchvision's inception_v3_google-0cc3c7bd.pth, "
    "or copy one into {hub}; gankit never downloads them"
)


def find_inception_weights(weights: str | None) -> Path:
    """The weights file to use: ``weights`` when given, else the first known file in torch hub's cache."""
    if weights:
        path = Path(weights).expanduser()
        if not path.is_file():
            raise GankitError(f"fid weights file not found: {path}")
        return path
    hub = Path(torch.hub.get_dir()) / "checkpoints"
    for pattern in WEIGHT_FILES:
        found = sorted(hub.glob(pattern))
        if found:
            return found[0]
    raise GankitError(HOW_TO_GET_WEIGHTS.format(hub=hub))


def _read_state(path: Path) -> dict[str, torch.Tensor]:
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file

            return load_file(str(path))
        # weights_only: a plain tensor dictionary is read without running any code from the file.
        state = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as error:
        raise GankitError(f"cannot read Inception weights {path}: {type(error).__name__}") from None
    if isinstance(state, dict) and "state_dict" in state:
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise GankitError(f"{path} does not hold an Inception v3 state dict")
    return state


def _fid_blocks():
    """pytorch-fid's variants of torchvision's Inception blocks: the TF graph behind the published FID numbers
    averages without padding in the pooling branch, and the last block max-pools."""
    from torchvision.models import inception

    def variant(base, pool):
        class Block(base):
            def _forward(self, x):
                outputs = super()._forward(x)
                outputs[-1] = self.branch_pool(pool(x))
                return outputs

        Block.__name__ = f"FID{base.__name__}"
        return Block

    average = lambda x: F.avg_pool2d(x, kernel_size=3, stride=1, padding=1, count_include_pad=False)  # noqa: E731
    maximum = lambda x: F.max_pool2d(x, kernel_size=3, stride=1, padding=1)  # noqa: E731
    return {
        "A": variant(inception.InceptionA, average),
        "C": variant(inception.InceptionC, average),
        "E_1": variant(inception.InceptionE, average),
        "E_2": variant(inception.InceptionE, maximum),
    }


def inception_features_network(state: dict[str, torch.Tensor]) -> nn.Module:
    """Inception v3 up to its 2048-d pool features, from torchvision's or pytorch-fid's state dict."""
    from torchvision.models import inception

    classes = int(state["fc.weight"].shape[0]) if "fc.weight" in state else 1000
    aux = any(name.startswith("AuxLogits.") for name in state)
    network = inception.Inception3(num_classes=classes, aux_logits=aux, transform_input=False, init_weights=False)
    if classes == 1008:  # pytorch-fid's port of the TF FID graph
        blocks = _fid_blocks()
        for name in ("Mixed_5b", "Mixed_5c", "Mixed_5d"):
            old = getattr(network, name)
            setattr(network, name, blocks["A"](old.branch1x1.conv.in_channels, old.branch_pool.conv.out_channels))
        for name in ("Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e"):
            old = getattr(network, name)
            setattr(network, name, blocks["C"](768, old.branch7x7_1.conv.out_channels))
        network.Mixed_7b = blocks["E_1"](1280)
        network.Mixed_7c = blocks["E_2"](2048)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise GankitError(f"the weights do not fit Inception v3: {str(error).splitlines()[0]}") from None
    network.fc = nn.Identity()
    return network.eval()


class FrechetInception(Metric):
    """FID between generated and real images with Inception v3 pool features (Heusel et al. 2017)."""

    key = "fid"
    higher_is_better = False
    sample_count = 2000

    def __init__(self, *, weights: str = "", batch_size: int = 50, seed: int = 0, device: str = "cpu") -> None:
        self.weights = weights or None
        self.batch_size = batch_size
        self.seed = seed
        self.device = torch.device(device)
        self._network = None

    def check(self, *, shape, data) -> None:
        _require_images("fid", shape)
        if shape[0] not in (1, 3):
            raise GankitError(f"fid scores grayscale or RGB images, the data has {shape[0]} channels")
        find_inception_weights(self.weights)

    def network(self) -> nn.Module:
        if self._network is None:
            self._network = inception_features_network(_read_state(find_inception_weights(self.weights))).to(self.device)
        return self._network

    def features(self, images: torch.Tensor) -> torch.Tensor:
        """2048-d features of images in [-1, 1] (grayscale repeated to RGB, resized to 299 x 299)."""
        network = self.network()
        outputs = []
        with torch.no_grad():
            for batch in images.split(self.batch_size):
                batch = batch.to(self.device).float()
                if batch.shape[1] == 1:
                    batch = batch.repeat(1, 3, 1, 1)
                batch = F.interpolate(batch, size=(299, 299), mode="bilinear", align_corners=False)
                outputs.append(network(batch).cpu())
        return torch.cat(outputs)

    def evaluate(self, samples, *, data) -> dict[str, float]:
        real = real_examples(data, len(samples), seed=self.seed)
        fake_stats = gaussian_statistics(self.features(samples))
        real_stats = gaussian_statistics(self.features(real))
        return {"fid": round(frechet_distance(*fake_stats, *real_stats), 4)}


# --- digits: a classifier trained once on the embedded digits -------------------------------------------


class DigitClassifier(nn.Module):
    """A small CNN for (1, S, S) digit images in [-1, 1]."""

    def __init__(self, image_size: int) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        )
        reduced = image_size // 4
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(64 * reduced * reduced, 128), nn.ReLU(), nn.Linear(128, 10))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))


# The classifier trains on digits rendered with this dataset seed, not the default training data's seed 0.
CLASSIFIER_DATA_SEED = 1


def classifier_path(image_size: int, train_count: int, epochs: int) -> Path:
    from gankit.images import cache_directory

    return cache_directory() / f"digits-classifier-v1-{image_size}px-n{train_count}-e{epochs}.safetensors"


def train_digit_classifier(image_size: int, *, train_count: int, epochs: int, seed: int = 0) -> DigitClassifier:
    from gankit.builtins.rendered_digits import load_digits

    images, labels = load_digits(train_count, seed=CLASSIFIER_DATA_SEED, image_size=image_size)
    inputs = torch.from_numpy(images).float() / 127.5 - 1.0
    targets = torch.from_numpy(labels).long()
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        model = DigitClassifier(image_size)
        optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
        for _ in range(epochs):
            for index in torch.randperm(len(inputs)).split(128):
                loss = F.cross_entropy(model(inputs[index]), targets[index])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
    finally:
        torch.random.set_rng_state(torch_state)  # training the metric must not change the run's random stream
    return model.eval()


def load_digit_classifier(image_size: int, *, train_count: int, epochs: int) -> DigitClassifier:
    """The cached classifier for this image size, trained and cached on first use."""
    from safetensors.torch import load_file, save_file

    path = classifier_path(image_size, train_count, epochs)
    model = DigitClassifier(image_size)
    if path.is_file():
        try:
            model.load_state_dict(load_file(str(path)))
            return model.eval()
        except Exception:  # a damaged cache file is retrained
            pass
    model = train_digit_classifier(image_size, train_count=train_count, epochs=epochs)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        temporary = path.with_name(path.name + ".tmp")
        save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(temporary))
        temporary.replace(path)
    except OSError:
        pass  # a read-only cache is not an error: the classifier is simply retrained next time
    return model


def class_statistics(probabilities: torch.Tensor, min_share: float = 0.01) -> dict[str, float]:
    """Coverage (classes predicted for at least ``min_share`` of the samples), KL(p || uniform) of the
    predicted-class histogram, mean confidence, and the classifier's Inception-style score
    exp(E_x KL(p(y|x) || p(y))), which is 10 for confident, evenly spread digits and 1 for a collapse."""
    classes = probabilities.shape[1]
    predicted = probabilities.argmax(dim=1)
    share = torch.bincount(predicted, minlength=classes).double() / len(predicted)
    present = share > 0
    kl = float((share[present] * torch.log(share[present] * classes)).sum())
    probabilities = probabilities.double().clamp_min(1e-12)
    marginal = probabilities.mean(dim=0)
    score = math.exp(float((probabilities * (probabilities.log() - marginal.log())).sum(dim=1).mean()))
    return {
        "classes": float((share >= min_share).sum()),
        "kl": round(kl, 6),
        "confidence": round(float(probabilities.max(dim=1).values.mean()), 6),
        "score": round(score, 4),
    }


DIGIT_NAMES = tuple(str(digit) for digit in range(10))


class DigitsMetric(Metric):
    """A CNN trained once on the embedded digits (cached) classifies the samples: class coverage, KL to uniform,
    mean confidence and the Inception-style ``score`` (the headline, 1 to 10); for a conditional generator also
    ``class_consistency``, the share of samples the classifier labels as the digit they were asked for."""

    key = "score"
    higher_is_better = True
    sample_count = 2500

    def __init__(self, *, train_count: int = 20000, epochs: int = 2, device: str = "cpu") -> None:
        if train_count < 10 or epochs <= 0:
            raise GankitError("digits metric: train_count must be >= 10 and epochs positive")
        self.train_count, self.epochs = train_count, epochs
        self.device = torch.device(device)

    def check(self, *, shape, data) -> None:
        if len(shape) != 3 or shape[0] != 1 or shape[1] != shape[2] or shape[1] % 4:
            raise GankitError(
                f"metric 'digits' scores square grayscale digit images (1, S, S) with S a multiple of 4, "
                f"the data has shape {tuple(shape)}"
            )

    def evaluate(self, samples, *, data, labels=None) -> dict[str, float]:
        model = load_digit_classifier(samples.shape[-1], train_count=self.train_count, epochs=self.epochs)
        model.to(self.device)
        with torch.no_grad():
            probabilities = torch.cat([
                F.softmax(model(batch.to(self.device).float()), dim=1).cpu() for batch in samples.split(500)
            ])
        values = class_statistics(probabilities)
        # The classifier knows digits: the labels of other 10-class data (fashion-mnist) are not digits.
        if labels is not None and tuple(getattr(data, "class_names", None) or DIGIT_NAMES) == DIGIT_NAMES:
            labels = _checked_labels(labels, len(samples), len(DIGIT_NAMES), "digits")
            values["class_consistency"] = round(float((probabilities.argmax(dim=1) == labels).double().mean()), 6)
        return values


@gankit.hookimpl
def gankit_register_metrics(register):
    register("modes", ModeCoverage, description="Modes covered, % high quality, KL to uniform (PacGAN 2-D protocol)")
    register("swd", SlicedWasserstein, description="Sliced Wasserstein distance on Laplacian pyramid patches (x1e3)")
    register("fid", FrechetInception, description="Frechet Inception distance; Inception v3 weights from a local file")
    register("digits", DigitsMetric, description="Digit classes covered, KL to uniform, confidence (embedded digits)")

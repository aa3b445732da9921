"""The public Python API: configure, train, load and sample without the command line (docs/python-api.md).

This module imports no torch itself; each function imports what it needs when it is called.
"""
from __future__ import annotations

import copy
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

from gankit import config as _config
from gankit.errors import GankitError


class RunConfig(_config.RunConfig):
    """Every setting of a run: ``RunConfig(steps=200, arch="dcgan:width=32")``, keywords as the TOML keys.

    The settings given are checked and converted as a config file's are, and count as the user's own, so
    no component's recommendation overrides them (as with flags).
    """

    def __init__(self, **settings: Any) -> None:
        super().__init__()
        self.update({key: value for key, value in settings.items() if value is not None}, source="RunConfig(...)")
        self.validate()


def train(config: _config.RunConfig | Mapping[str, Any], out: str | Path | None = None, *, overwrite: bool = False,
          listeners: Iterable[Callable] = ()) -> Path:
    """Train a run and return its folder: ``out``, else ``config.out``, else runs/<time>-<arch>-<loss>.

    As ``gankit run``: a folder that holds a run is refused unless ``overwrite``. ``config`` is not changed
    (the resolved settings are in the run's config.toml). ``listeners`` receive the engine's events.
    """
    from gankit.runs import new_run, train_in_folder

    if isinstance(config, Mapping):
        config = RunConfig(**config)
    if not isinstance(config, _config.RunConfig):
        raise GankitError(f"train() needs a gankit.RunConfig (or a dict of settings), got {type(config).__name__}")
    config = copy.deepcopy(config)
    if out is not None:
        config.out = str(out)
    trainer, out_dir = new_run(config, overwrite=overwrite, listeners=listeners)
    train_in_folder(out_dir, trainer, overwrite=overwrite)
    return out_dir


def load_generator(path: str | Path, *, device: str = "cpu", ema: bool = True):
    """``(generator, metadata)`` from a checkpoint file or a run folder (its newest checkpoint).

    The generator is in eval mode on ``device``; the EMA weights are used when the run kept them, unless
    ``ema`` is False. ``metadata`` holds the run's config, the step, the data shape and ``z_dim``.
    """
    from gankit.inference import load_generator as load

    return load(path, device=device, ema=ema)


def sample(path: str | Path, n: int, *, seed: int = 0, ema: bool = True, device: str = "cpu", classes=None,
           drs: float | None = None, refine: int | None = None, refine_rate: float | None = None):
    """``n`` samples from a checkpoint's generator: a CPU tensor ``(n, *shape)`` in [-1, 1].

    A conditional run's checkpoint gives ``n`` samples of each class of ``classes`` (indices or names, a list
    or ``"0,1,2"``; all classes when None), class after class: ``(len(classes) * n, *shape)``. ``drs`` (a
    positive number, 1 the plain rule) keeps only samples that pass discriminator rejection sampling
    (docs/sampling.md); unconditional runs of a loss whose discriminator estimates a density ratio (bce).
    ``refine`` (a number of steps) moves each sample's noise uphill on that ratio before generating, with step
    size ``refine_rate`` (default 0.001): latent refinement, the same runs as ``drs``.
    """
    from gankit.inference import sample as draw

    if not isinstance(n, int) or isinstance(n, bool):
        raise GankitError(f"the number of samples must be a whole number, got {n!r}")
    from gankit.inference import check_count

    check_count(n, "the number of samples")
    from gankit.refinement import sample as draw_refined, settings

    refinement = settings(refine, refine_rate, drs=drs)
    if (drs is not None or refinement) and classes is not None:
        raise GankitError(f"{'drs' if drs is not None else 'refine'} samples unconditional runs: leave out classes")
    if drs is not None:
        from gankit.rejection import sample as draw_kept

        return draw_kept(path, n, sharpness=drs, seed=seed, ema=ema, device=device)
    if refinement:
        return draw_refined(path, n, **refinement, seed=seed, ema=ema, device=device)
    return draw(path, n, seed=seed, ema=ema, device=device, classes=classes)


def list_plugins() -> list[dict[str, Any]]:
    """Every plugin as ``gankit list-plugins --json`` lists it: status, what it provides, and per component
    its description, aliases and the plugins that register the same name."""
    from gankit.catalog import list_plugins as listing

    return listing()

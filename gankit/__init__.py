"""gankit: a plugin-based toolkit for training GANs with PyTorch.

For plugin authors: ``GankitError`` and ``hookimpl``. For training and sampling from Python:
``RunConfig``, ``train``, ``load_generator``, ``sample`` and ``list_plugins`` (docs/python-api.md).
Importing gankit never imports torch; those functions import it when they are called.
"""
from gankit.errors import GankitError
from gankit.hookspecs import hookimpl

__version__ = "0.1.0"

# Loaded from gankit.api on first use, so that `import gankit` (and the CLI's --help) stays fast.
_API = ("RunConfig", "train", "load_generator", "sample", "list_plugins")

__all__ = ["GankitError", "hookimpl", "__version__", *_API]


def __getattr__(name: str):
    if name in _API:
        from gankit import api

        return getattr(api, name)
    raise AttributeError(f"module 'gankit' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_API))

"""gankit: a plugin-based toolkit for training GANs with PyTorch.

The public API for plugin authors is what this module exports. Importing it never imports torch.
"""
from gankit.errors import GankitError
from gankit.hookspecs import hookimpl

__version__ = "0.1.0"

__all__ = ["GankitError", "hookimpl", "__version__"]

"""gankit-resnet: an example third-party gankit plugin providing the ``resnet`` architecture."""
from gankit_resnet.networks import SUPPORTED_SIZES, resnet

__all__ = ["SUPPORTED_SIZES", "resnet"]

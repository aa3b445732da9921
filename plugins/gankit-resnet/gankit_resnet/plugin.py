"""The module the ``gankit`` entry point names: it registers the ``resnet`` architecture with gankit."""
import gankit
from gankit_resnet.networks import resnet


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "resnet",
        resnet,
        description="Small ResNet (residual up/down blocks) for square images of 32, 64, 96 or 128 px; options: width, "
        "projection (conditional runs)",
        aliases=("resnet-gan",),
    )

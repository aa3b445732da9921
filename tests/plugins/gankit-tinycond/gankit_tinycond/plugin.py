"""The whole integration with gankit: one registration hook."""
import gankit
from gankit_tinycond.networks import tinycond


@gankit.hookimpl
def gankit_register_architectures(register):
    register(
        "tinycond",
        tinycond,
        description="Tiny conditional nets: label embedding beside z, projection discriminator; options: width, embed",
    )

"""Hook specifications: the contract between gankit's engine and every plugin, builtin or third-party.

Every registration hook receives a ``register`` callback:

    register(name, factory, *, description="", aliases=())

A factory is a class or callable, never a built object, so listing plugins builds nothing.
"""
import pluggy

hookspec = pluggy.HookspecMarker("gankit")
hookimpl = pluggy.HookimplMarker("gankit")


# --- components: the parts a GAN is built from -------------------------------------------------------


@hookspec
def gankit_register_architectures(register):
    """Register architectures: factories ``(*, shape, z_dim, **options) -> (generator, discriminator)``."""


@hookspec
def gankit_register_losses(register):
    """Register losses: factories ``(**options) -> gankit.components.Loss``."""


@hookspec
def gankit_register_regularizers(register):
    """Register regularizers: factories ``(**options) -> gankit.components.Regularizer``."""


@hookspec
def gankit_register_data_sources(register):
    """Register data sources: factories ``(*, root, image_size, seed, **options) -> gankit.components.DataSource``."""


# --- evaluation and reporting ------------------------------------------------------------------------


@hookspec
def gankit_register_metrics(register):
    """Register metrics: factories ``(**options) -> gankit.components.Metric`` (``device`` if they accept it)."""


@hookspec
def gankit_register_loggers(register):
    """Register loggers: factories ``(*, out, **options) -> gankit.components.Logger`` (``out``: the run folder)."""

"""gankit's builtin plugins. Each module is one plugin, written only against gankit's public API."""

# The components a run uses unless told otherwise (RunConfig's defaults): the article's DCGAN.
DEFAULT_ARCH = "dcgan:dcgan"
DEFAULT_LOSS = "losses:bce"

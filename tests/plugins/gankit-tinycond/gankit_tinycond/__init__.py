"""A small class-conditional architecture for gankit, written as a third party would: from the docs alone."""
from gankit_tinycond.networks import tinycond

__all__ = ["tinycond"]

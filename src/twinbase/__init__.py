"""twinbase: a self-hosted implementation of the iTwin Platform REST APIs."""

__version__ = "0.1.0"

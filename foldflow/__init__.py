"""Foldflow's shared kernel: settings, topology, observability, resilience and the CLI."""

from importlib.metadata import PackageNotFoundError, version

try:
    #: The installed distribution's version (from the git tag it was built at).
    __version__ = version("foldflow")
except PackageNotFoundError:  # running from a checkout that was never installed
    __version__ = "0+unknown"

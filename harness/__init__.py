"""harness: trust tests for machine-learned interatomic potentials of molecular liquids."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("liquid-mlip-harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

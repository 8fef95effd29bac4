"""harness: trust tests for machine-learned interatomic potentials of molecular liquids."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("liquid-mlip-harness")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__", "Workspace"]


def __getattr__(name: str):
    if name == "Workspace":  # imported on first use: ``import harness`` stays light
        from harness.workspace import Workspace

        return Workspace
    raise AttributeError(f"module 'harness' has no attribute {name!r}")
